//! Splitting a text file into overlapping chunks that keep their line ranges.
//!
//! A chunk holds about [`ChunkSize::tokens`] tokens (estimated at four characters each, the
//! measure OpenClaw's index uses) and starts [`ChunkSize::overlap`] tokens before the previous
//! one ended, so a sentence cut at a boundary is whole in one of the two. Chunks follow line
//! boundaries; a single line longer than a chunk is cut at character boundaries and every piece
//! reports that line. Line numbers are 1-based and inclusive.
//!
//! This file is pure: no I/O.

/// Chunk size and overlap, in estimated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSize {
    pub tokens: usize,
    pub overlap: usize,
}

impl Default for ChunkSize {
    fn default() -> Self {
        ChunkSize { tokens: 400, overlap: 80 }
    }
}

/// Characters per estimated token.
pub const CHARS_PER_TOKEN: usize = 4;

/// One piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub start_line: usize,
    pub end_line: usize,
    pub text: String,
}

/// A line, or a piece of an over-long line.
struct Piece<'a> {
    line: usize,
    text: &'a str,
}

/// Splits `text` into chunks. Empty or whitespace-only text has none.
pub fn chunk(text: &str, size: ChunkSize) -> Vec<Chunk> {
    let max = size.tokens.max(1) * CHARS_PER_TOKEN;
    let overlap = (size.overlap * CHARS_PER_TOKEN).min(max / 2);
    let mut all: Vec<Piece<'_>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.chars().count() <= max {
            all.push(Piece { line: i + 1, text: line });
            continue;
        }
        let mut rest = line;
        while !rest.is_empty() {
            let cut = rest.char_indices().nth(max).map_or(rest.len(), |(b, _)| b);
            all.push(Piece { line: i + 1, text: &rest[..cut] });
            rest = &rest[cut..];
        }
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < all.len() {
        // Grow the window up to `max` characters (always at least one piece).
        let mut end = start;
        let mut chars = 0;
        while end < all.len() {
            let len = all[end].text.chars().count() + 1;
            if end > start && chars + len > max {
                break;
            }
            chars += len;
            end += 1;
        }
        let window = &all[start..end];
        let body: Vec<&str> = window.iter().map(|p| p.text).collect();
        let text = body.join("\n");
        if !text.trim().is_empty() {
            chunks.push(Chunk { start_line: window[0].line, end_line: window[window.len() - 1].line, text });
        }
        if end >= all.len() {
            break;
        }
        // Step back over about `overlap` characters for the next window, but always move on.
        let mut back = end;
        let mut kept = 0;
        while back > start + 1 {
            let len = all[back - 1].text.chars().count() + 1;
            if kept + len > overlap {
                break;
            }
            kept += len;
            back -= 1;
        }
        start = back.max(start + 1);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkSize {
        ChunkSize { tokens: 10, overlap: 3 }
    }

    #[test]
    fn short_text_is_one_chunk_with_its_lines() {
        let c = chunk("# Title\n\nhello\n", ChunkSize::default());
        assert_eq!(c, vec![Chunk { start_line: 1, end_line: 3, text: "# Title\n\nhello".into() }]);
        assert!(chunk("  \n\n", ChunkSize::default()).is_empty());
    }

    #[test]
    fn long_text_overlaps_by_whole_lines() {
        let text: String = (1..=20).map(|i| format!("line {i:02}\n")).collect();
        let c = chunk(&text, small());
        assert!(c.len() > 2);
        for pair in c.windows(2) {
            assert!(pair[1].start_line <= pair[0].end_line, "{pair:?} overlap");
            assert!(pair[1].start_line > pair[0].start_line, "{pair:?} progress");
        }
        assert_eq!(c[0].start_line, 1);
        assert_eq!(c.last().unwrap().end_line, 20);
    }

    #[test]
    fn an_over_long_line_is_cut_and_keeps_its_number() {
        let text = format!("intro\n{}\nend", "é".repeat(100));
        let c = chunk(&text, small());
        assert!(c.iter().any(|c| c.start_line == 2 && c.end_line == 2));
        assert!(c.iter().all(|c| c.text.chars().count() <= 40 + 1));
    }

    proptest! {
        #[test]
        fn every_line_is_covered_and_text_is_verbatim(lines in proptest::collection::vec("[a-zé ]{0,60}", 0..60)) {
            let text = lines.join("\n");
            let c = chunk(&text, small());
            for ch in &c {
                prop_assert!(ch.start_line >= 1 && ch.start_line <= ch.end_line);
                prop_assert!(ch.end_line <= lines.len().max(1));
            }
            for (i, l) in lines.iter().enumerate() {
                if !l.trim().is_empty() {
                    let n = i + 1;
                    prop_assert!(c.iter().any(|ch| ch.start_line <= n && n <= ch.end_line), "line {} uncovered", n);
                }
            }
        }
    }
}
