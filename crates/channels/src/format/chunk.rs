//! Splitting a long Markdown reply into pieces a chat platform accepts.
//!
//! Limits are counted in characters (Unicode scalar values), never bytes, and a cut never falls
//! inside a character or, on a hard cut, inside an emoji sequence or before a combining mark. A
//! fenced code block cut in two is closed at the end of one piece and reopened with the same
//! fence and language at the start of the next, so every piece renders on its own; those added
//! lines count against the limit.
//!
//! This module only decides where to cut: it must not convert markup, look inside inline
//! syntax, do I/O, or panic on any input.

use std::ops::Range;

use super::markdown::{fence_open, is_fence_close};

/// Telegram's limit for one message's text, in characters after entity parsing.
pub const TELEGRAM_MAX_CHARS: usize = 4096;
/// Discord's limit for one message's content, in characters.
pub const DISCORD_MAX_CHARS: usize = 2000;
/// Lines per Discord message before the client collapses it; OpenClaw's default soft cap.
pub const DISCORD_MAX_LINES: usize = 17;

/// Where [`chunk_text`] prefers to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkMode {
    /// Fill each piece as far as the limit allows, cutting at the last newline, else the last
    /// whitespace, within the final 20% of the window; mid-word only when neither is there.
    #[default]
    Length,
    /// Cut at the last blank-line paragraph boundary that fits, else the last newline, else the
    /// last whitespace, and only as a last resort mid-word.
    Newline,
}

/// Splits `text` into pieces of at most `limit` characters (a `limit` of 0 counts as 1).
///
/// No piece is empty or only whitespace. Whitespace at a cut is dropped and the indentation of
/// the line a piece starts on kept. Joining the pieces gives back `text` except for that
/// whitespace and the fence lines added around a split code block (the original closing fence
/// line is dropped when the previous piece already closed the block). When `limit` is too small
/// to hold the fence lines plus some content, that piece is cut without fence repair.
pub fn chunk_text(text: &str, limit: usize, mode: ChunkMode) -> Vec<String> {
    Chunker::new(text, Limits { chars: limit.max(1), lines: None, mode }).run()
}

/// Like [`chunk_text`] in [`ChunkMode::Length`], but each piece also has at most `max_lines`
/// lines (a `max_lines` of 0 counts as 1), added fence lines included. For Discord:
/// `chunk_lines(text, DISCORD_MAX_CHARS, DISCORD_MAX_LINES)`.
pub fn chunk_lines(text: &str, limit_chars: usize, max_lines: usize) -> Vec<String> {
    let limits = Limits { chars: limit_chars.max(1), lines: Some(max_lines.max(1)), mode: ChunkMode::Length };
    Chunker::new(text, limits).run()
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    chars: usize,
    lines: Option<usize>,
    mode: ChunkMode,
}

/// A fenced code block of the input, by byte offsets.
#[derive(Debug)]
struct Fence<'a> {
    /// Start of the opening fence line.
    open_start: usize,
    /// End of the opening fence line, trailing whitespace excluded.
    open_end: usize,
    /// Start of the closing fence line; for an unclosed block, the end of the trimmed text.
    close_start: usize,
    /// End of the closing fence line, trailing whitespace excluded.
    close_end: usize,
    closed: bool,
    /// The opening line, trimmed: what a continuation piece starts with.
    opener: &'a str,
    ch: char,
    len: usize,
}

/// One output piece: an optional reopened fence, a range of the input, an optional added close.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    reopen: Option<usize>,
    range: Range<usize>,
    close: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Space,
    Newline,
    Paragraph,
}

/// A whitespace position a piece may end before.
struct Candidate {
    pos: usize,
    class: Class,
    /// Characters between the piece start and `pos`.
    chars_before: usize,
}

struct Chunker<'a> {
    text: &'a str,
    limits: Limits,
    fences: Vec<Fence<'a>>,
    /// The longest closing fence any piece may need, in characters.
    max_close: usize,
}

impl<'a> Chunker<'a> {
    fn new(text: &'a str, limits: Limits) -> Self {
        let fences = scan_fences(text);
        let max_close = fences.iter().map(|f| f.len).max().unwrap_or(0);
        Chunker { text, limits, fences, max_close }
    }

    fn run(&self) -> Vec<String> {
        self.plan().iter().map(|p| self.render(p)).collect()
    }

    fn render(&self, piece: &Piece) -> String {
        let mut out = String::new();
        if let Some(f) = piece.reopen.and_then(|i| self.fences.get(i)) {
            out.push_str(f.opener);
            out.push('\n');
        }
        out.push_str(self.text.get(piece.range.clone()).unwrap_or(""));
        if let Some(f) = piece.close.and_then(|i| self.fences.get(i)) {
            out.push('\n');
            out.extend(std::iter::repeat_n(f.ch, f.len));
        }
        out
    }

    fn plan(&self) -> Vec<Piece> {
        let text = self.text;
        let mut pieces = Vec::new();
        let mut start = self.next_start(0, None);
        while start < text.len() {
            if let Some(piece) = self.fenced_piece(start) {
                start = self.next_start(piece.range.end, piece.close);
                pieces.push(piece);
                continue;
            }
            // Indentation that leaves no room: drop it and try again.
            let first = start + (text[start..].len() - text[start..].trim_start().len());
            if first > start {
                start = first;
                continue;
            }
            // An opening fence line with no room for its contents: the next piece reopens it.
            let opener = self.fence_before(start + 1).filter(|&i| start < self.fences[i].open_end);
            if let Some(i) = opener.filter(|&i| self.room_to_reopen(i)) {
                start = self.next_start(self.fences[i].open_end, Some(i));
                continue;
            }
            let piece = self.plain_piece(start);
            start = self.next_start(piece.range.end, None);
            pieces.push(piece);
        }
        pieces
    }

    /// Whether a piece reopening fence `i` can hold a character besides its fence lines.
    fn room_to_reopen(&self, i: usize) -> bool {
        let needed = self.fences[i].opener.chars().count() + 1 + self.max_close + 1 + 1;
        needed <= self.limits.chars && self.limits.lines.is_none_or(|l| l >= 3)
    }

    /// Where the piece after one ending at `pos` starts: past the whitespace, at the start of the
    /// line it lands on if that whitespace crossed a newline (keeping indentation), and past the
    /// closing line of fence `closed` when the previous piece already supplied it.
    fn next_start(&self, mut pos: usize, closed: Option<usize>) -> usize {
        let text = self.text;
        loop {
            let rest = text.get(pos..).unwrap_or("");
            let first = pos + (rest.len() - rest.trim_start().len());
            if first >= text.len() {
                return text.len();
            }
            let line_start = text[..first].rfind('\n').map_or(0, |i| i + 1);
            let begin = if line_start >= pos { line_start } else { first };
            match closed.filter(|&i| self.fence_before(first + 1) == Some(i)).map(|i| &self.fences[i]) {
                Some(f) if f.closed && f.close_start <= first && first < f.close_end => pos = f.close_end,
                _ => return begin,
            }
        }
    }

    /// The last fence whose opening line starts before `pos`.
    fn fence_before(&self, pos: usize) -> Option<usize> {
        self.fences.partition_point(|f| f.open_start < pos).checked_sub(1)
    }

    /// The fence whose contents `pos` lies in, if any.
    fn inside(&self, pos: usize) -> Option<usize> {
        let i = self.fence_before(pos)?;
        let f = &self.fences[i];
        (f.open_end <= pos && pos < f.close_start).then_some(i)
    }

    /// Whether a piece `start..end` may end at `end`: not inside a fence line, and not right
    /// after an opening fence it contains (an empty block). On failure, the start of the line
    /// to cut before instead.
    fn check_end(&self, start: usize, end: usize) -> Result<(), usize> {
        let Some(f) = self.fence_before(end).map(|i| &self.fences[i]) else { return Ok(()) };
        if (f.open_start < end && end < f.open_end) || (end == f.open_end && f.open_start >= start) {
            return Err(f.open_start);
        }
        if f.closed && f.close_start < end && end < f.close_end {
            return Err(f.close_start);
        }
        Ok(())
    }

    /// A piece with fence repair, or `None` when the limits cannot fit it.
    fn fenced_piece(&self, start: usize) -> Option<Piece> {
        let reopen = self.inside(start);
        let prefix_chars = reopen.map_or(0, |i| self.fences[i].opener.chars().count() + 1);
        let prefix_lines = usize::from(reopen.is_some());
        let mut reserve = (0, 0);
        for _ in 0..2 {
            let avail_chars = self.limits.chars.checked_sub(prefix_chars + reserve.0)?;
            let avail_lines = match self.limits.lines {
                Some(l) => Some(l.checked_sub(prefix_lines + reserve.1)?),
                None => None,
            };
            if avail_chars == 0 || avail_lines == Some(0) {
                return None;
            }
            let end = self.find_end(start, avail_chars, avail_lines, true)?;
            let close = self.inside(end);
            let content = &self.text[start..end];
            let chars = prefix_chars + content.chars().count() + close.map_or(0, |i| self.fences[i].len + 1);
            let lines = prefix_lines + content.matches('\n').count() + 1 + usize::from(close.is_some());
            if chars <= self.limits.chars && self.limits.lines.is_none_or(|l| lines <= l) {
                return Some(Piece { reopen, range: start..end, close });
            }
            // Cut again leaving room for any closing fence.
            reserve = (self.max_close + 1, 1);
        }
        None
    }

    /// A piece without fence repair, for limits too small to hold fence lines.
    fn plain_piece(&self, start: usize) -> Piece {
        let end = self.find_end(start, self.limits.chars, self.limits.lines, false).unwrap_or_else(|| {
            start + self.text[start..].chars().next().map_or(self.text.len() - start, char::len_utf8)
        });
        Piece { reopen: None, range: start..end, close: None }
    }

    /// The end of a piece starting at `start` holding at most `avail_chars` characters and
    /// `avail_lines` lines, trailing whitespace excluded.
    fn find_end(&self, start: usize, avail_chars: usize, avail_lines: Option<usize>, fences: bool) -> Option<usize> {
        let text = self.text;
        let ok = |end: usize| end > start && (!fences || self.check_end(start, end).is_ok());
        let trimmed = |pos: usize| start + text[start..pos].trim_end().len();

        let mut candidates = Vec::new();
        let mut count = 0;
        let mut newlines = 0;
        let mut hard = None;
        for (off, c) in text[start..].char_indices() {
            let pos = start + off;
            let full = count == avail_chars || (c == '\n' && avail_lines.is_some_and(|l| newlines + 1 >= l));
            if c.is_whitespace() && pos > start {
                candidates.push(Candidate { pos, class: self.classify(pos, c), chars_before: count });
            }
            if full {
                hard = Some(pos);
                break;
            }
            newlines += usize::from(c == '\n');
            count += 1;
        }
        let Some(hard) = hard else {
            // The rest fits.
            let end = trimmed(text.len());
            if ok(end) {
                return Some(end);
            }
            return self.pick(&candidates, count, trimmed, ok);
        };
        if let Some(end) = self.pick(&candidates, count, trimmed, ok) {
            return Some(end);
        }
        // Mid-word, backing off so an emoji sequence or a combining mark stays whole, and off
        // any fence line the cut would land in.
        let mut pos = grapheme_safe(text, start, hard);
        for _ in 0..4 {
            let end = trimmed(pos);
            if end <= start {
                return None;
            }
            if !fences {
                return Some(end);
            }
            match self.check_end(start, end) {
                Ok(()) => return Some(end),
                Err(line_start) => pos = line_start.max(start),
            }
        }
        None
    }

    /// The preferred whitespace cut among `candidates` in a window of `window` characters.
    fn pick(
        &self,
        candidates: &[Candidate],
        window: usize,
        trimmed: impl Fn(usize) -> usize,
        ok: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let best = |min_class: Class, min_chars: usize| {
            candidates
                .iter()
                .rev()
                .filter(|c| c.class >= min_class && c.chars_before >= min_chars)
                .map(|c| trimmed(c.pos))
                .find(|&end| ok(end))
        };
        match self.limits.mode {
            ChunkMode::Newline => {
                best(Class::Paragraph, 0).or_else(|| best(Class::Newline, 0)).or_else(|| best(Class::Space, 0))
            }
            ChunkMode::Length => {
                let zone = window - window / 5;
                best(Class::Newline, zone).or_else(|| best(Class::Space, zone))
            }
        }
    }

    fn classify(&self, pos: usize, c: char) -> Class {
        if c != '\n' {
            return Class::Space;
        }
        let next_line = self.text.get(pos + 1..).unwrap_or("");
        let blank = next_line.split('\n').next().is_none_or(|l| l.trim().is_empty());
        if blank { Class::Paragraph } else { Class::Newline }
    }
}

/// Moves a hard cut at `pos` back (at most a few characters, never to `start`) so it does not
/// separate a character from a following joiner, variation selector, skin tone or combining mark.
fn grapheme_safe(text: &str, start: usize, mut pos: usize) -> usize {
    for _ in 0..16 {
        let next = text.get(pos..).and_then(|s| s.chars().next());
        let prev = text.get(..pos).and_then(|s| s.chars().next_back());
        let (Some(next), Some(prev)) = (next, prev) else { break };
        if !(is_extender(next) || prev == '\u{200D}') {
            break;
        }
        let back = pos - prev.len_utf8();
        if back <= start {
            break;
        }
        pos = back;
    }
    pos
}

fn is_extender(c: char) -> bool {
    matches!(c as u32,
        0x200D | 0x20E3 | 0xFE00..=0xFE0F | 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF | 0xFE20..=0xFE2F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
}

fn scan_fences(text: &str) -> Vec<Fence<'_>> {
    let mut fences = Vec::new();
    let mut open: Option<(usize, usize, &str, char, usize)> = None;
    let mut pos = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end();
        let (start, end) = (pos, pos + line.len());
        pos += raw.len();
        match open {
            None => {
                if let Some(f) = fence_open(line) {
                    open = Some((start, end, line.trim(), f.ch, f.len));
                }
            }
            Some((open_start, open_end, opener, ch, len)) => {
                if is_fence_close(line, ch, len) {
                    fences.push(Fence {
                        open_start,
                        open_end,
                        close_start: start,
                        close_end: end,
                        closed: true,
                        opener,
                        ch,
                        len,
                    });
                    open = None;
                }
            }
        }
    }
    if let Some((open_start, open_end, opener, ch, len)) = open {
        let end = text.trim_end().len().max(open_end);
        fences.push(Fence { open_start, open_end, close_start: end, close_end: end, closed: false, opener, ch, len });
    }
    fences
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(text: &str, limits: Limits) -> Vec<Piece> {
        Chunker::new(text, limits).plan()
    }

    /// What the pieces leave out of `text` is only whitespace and dropped fence lines.
    fn assert_covers(text: &str, pieces: &[Piece]) {
        let dropped = |l: &str| l.chars().all(|c| c == '`' || c == '~') || fence_open(l).is_some();
        let mut pos = 0;
        for p in pieces {
            assert!(p.range.start >= pos && p.range.end > p.range.start, "{pieces:?}");
            let gap = &text[pos..p.range.start];
            assert!(gap.split('\n').map(str::trim).all(dropped), "gap {gap:?}");
            pos = p.range.end;
        }
        let tail = &text[pos..];
        assert!(tail.split('\n').map(str::trim).all(dropped), "tail {tail:?}");
    }

    fn non_ws(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Whether every fence a piece opens, it closes.
    fn balanced(piece: &str) -> bool {
        scan_fences(piece).iter().all(|f| f.closed)
    }

    #[test]
    fn empty_and_short() {
        assert!(chunk_text("", 10, ChunkMode::Length).is_empty());
        assert!(chunk_text(" \n\t\n ", 10, ChunkMode::Newline).is_empty());
        assert_eq!(chunk_text("  hi there  \n", 100, ChunkMode::Length), vec!["  hi there"]);
        assert_eq!(chunk_text("\n\n  - item", 100, ChunkMode::Length), vec!["  - item"]);
    }

    #[test]
    fn newline_mode_prefers_paragraphs_then_lines_then_spaces() {
        let text = "para one.\n\npara two is here.\n\npara three.";
        assert_eq!(chunk_text(text, 30, ChunkMode::Newline), vec!["para one.\n\npara two is here.", "para three."]);
        let lines = "aaaa\nbbbbbbb ccccccc dddd";
        assert_eq!(chunk_text(lines, 20, ChunkMode::Newline), vec!["aaaa", "bbbbbbb ccccccc dddd"]);
        assert_eq!(chunk_text("one two three four", 9, ChunkMode::Newline), vec!["one two", "three", "four"]);
    }

    #[test]
    fn length_mode_fills_and_breaks_in_the_last_fifth() {
        let lines = "aaaa\nbbbbbbb ccccccc dddd";
        assert_eq!(chunk_text(lines, 20, ChunkMode::Length), vec!["aaaa\nbbbbbbb ccccccc", "dddd"]);
        let words = "alpha beta gamma delta epsilon zeta eta theta";
        for piece in chunk_text(words, 12, ChunkMode::Length) {
            assert!(piece.chars().count() <= 12 && !piece.starts_with(' ') && !piece.ends_with(' '));
            assert!(words.split(' ').any(|w| piece.ends_with(w)), "{piece:?}");
        }
        // A space early in the window is not worth a short piece: cut mid-word instead.
        assert_eq!(chunk_text("ab cdefghijklmnop", 10, ChunkMode::Length), vec!["ab cdefghi", "jklmnop"]);
    }

    #[test]
    fn very_long_words_are_cut_on_char_boundaries() {
        let word = "x".repeat(25);
        assert_eq!(chunk_text(&word, 10, ChunkMode::Newline), vec!["x".repeat(10), "x".repeat(10), "x".repeat(5)]);
        let cjk = "你好世界".repeat(10);
        let pieces = chunk_text(&cjk, 7, ChunkMode::Length);
        assert!(pieces.iter().all(|p| p.chars().count() <= 7));
        assert_eq!(pieces.concat(), cjk);
        let accents = "e\u{301}".repeat(10);
        let pieces = chunk_text(&accents, 5, ChunkMode::Length);
        assert!(pieces.iter().all(|p| !p.starts_with('\u{301}')), "{pieces:?}");
        assert_eq!(pieces.concat(), accents);
    }

    #[test]
    fn emoji_sequences_stay_whole() {
        let family = "👨\u{200D}👩\u{200D}👧";
        let text = family.repeat(4);
        let pieces = chunk_text(&text, 7, ChunkMode::Length);
        assert_eq!(pieces, vec![family; 4]);
        let thumbs = "👍🏽".repeat(5);
        let pieces = chunk_text(&thumbs, 3, ChunkMode::Length);
        assert!(pieces.iter().all(|p| p == "👍🏽"), "{pieces:?}");
    }

    #[test]
    fn code_fence_is_closed_and_reopened() {
        let text = "Intro text.\n\n```rust\nlet a = 1;\nlet b = 2;\nlet c = 3;\nlet d = 4;\n```\nOutro.";
        let pieces = chunk_text(text, 36, ChunkMode::Newline);
        assert_eq!(
            pieces,
            vec![
                "Intro text.",
                "```rust\nlet a = 1;\nlet b = 2;\n```",
                "```rust\nlet c = 3;\nlet d = 4;\n```",
                "Outro.",
            ]
        );
        for p in &pieces {
            assert!(p.chars().count() <= 36 && balanced(p), "{p:?}");
        }
    }

    #[test]
    fn closing_fence_already_supplied_is_dropped() {
        let text = "```\naaaa\nbbbb\n```\nafter";
        let pieces = chunk_text(text, 13, ChunkMode::Length);
        assert_eq!(pieces, vec!["```\naaaa\n```", "```\nbbbb\n```", "after"]);
        let blank_before_close = "```\naaaa\n\n```\nafter";
        assert_eq!(chunk_text(blank_before_close, 14, ChunkMode::Newline), vec!["```\naaaa\n```", "after"]);
    }

    #[test]
    fn never_ends_a_piece_on_a_bare_opening_fence() {
        let text = "some words\n~~~~python\nprint(1)\nprint(2)\n~~~~";
        let pieces = chunk_text(text, 30, ChunkMode::Newline);
        assert_eq!(pieces[0], "some words");
        assert!(pieces.iter().all(|p| balanced(p) && p.chars().count() <= 30), "{pieces:?}");
        assert!(pieces[1..].iter().all(|p| p.starts_with("~~~~python\n")), "{pieces:?}");
    }

    #[test]
    fn tiny_limits_still_terminate() {
        let text = "```rust\nfn main() {}\n```";
        let pieces = chunk_text(text, 3, ChunkMode::Length);
        assert!(pieces.iter().all(|p| !p.trim().is_empty() && p.chars().count() <= 3), "{pieces:?}");
        assert_eq!(non_ws(&pieces.concat()), non_ws(text));
        assert_eq!(chunk_text("abc", 0, ChunkMode::Length), vec!["a", "b", "c"]);
    }

    #[test]
    fn discord_lines() {
        let text = (1..=40).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let pieces = chunk_lines(&text, DISCORD_MAX_CHARS, DISCORD_MAX_LINES);
        let counts: Vec<usize> = pieces.iter().map(|p| p.lines().count()).collect();
        assert_eq!(counts, vec![17, 17, 6]);
        assert_eq!(pieces.join("\n"), text);

        let code = format!("```js\n{}\n```", (1..=30).map(|i| format!("f({i});")).collect::<Vec<_>>().join("\n"));
        let pieces = chunk_lines(&code, DISCORD_MAX_CHARS, DISCORD_MAX_LINES);
        assert_eq!(pieces.len(), 2);
        for p in &pieces {
            assert!(p.lines().count() <= 17 && balanced(p) && p.starts_with("```js\n"), "{p:?}");
        }
        assert!(chunk_lines("a\nb\nc", 100, 0).iter().all(|p| p.lines().count() == 1));
    }

    fn arb_mode() -> impl Strategy<Value = ChunkMode> {
        prop_oneof![Just(ChunkMode::Length), Just(ChunkMode::Newline)]
    }

    fn markdownish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("```".to_owned()),
            Just("```rust\n".to_owned()),
            Just("~~~\n".to_owned()),
            Just("\n".to_owned()),
            Just("\n\n".to_owned()),
            Just(" ".to_owned()),
            Just("\r\n".to_owned()),
            Just("👨\u{200D}👩\u{200D}👧".to_owned()),
            Just("e\u{301}".to_owned()),
            "[a-z]{1,12}",
            "\\PC{1,6}",
        ];
        prop::collection::vec(token, 0..60).prop_map(|v| v.concat())
    }

    /// Paragraphs and closed code blocks, for the fence-balance property.
    fn fenced_doc() -> impl Strategy<Value = String> {
        let para = prop::collection::vec("[a-z]{1,9}", 1..12).prop_map(|w| w.join(" "));
        let block =
            (prop_oneof![Just("```"), Just("```py"), Just("~~~~sh")], prop::collection::vec("[a-z ]{0,15}", 1..8))
                .prop_map(|(open, lines)| {
                    let close = if open.starts_with('~') { "~~~~" } else { "```" };
                    format!("{open}\n{}\n{close}", lines.join("\n"))
                });
        prop::collection::vec(prop_oneof![para, block], 1..8).prop_map(|b| b.join("\n\n"))
    }

    proptest! {
        // Failures are reported, not written under the crate as regression files.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn pieces_fit_are_nonempty_and_cover_the_text(
            text in prop_oneof!["\\PC{0,300}".boxed(), markdownish().boxed()],
            limit in 0usize..80,
            mode in arb_mode(),
        ) {
            let limits = Limits { chars: limit.max(1), lines: None, mode };
            let pieces = plan(&text, limits);
            assert_covers(&text, &pieces);
            for piece in chunk_text(&text, limit, mode) {
                prop_assert!(piece.chars().count() <= limit.max(1), "{:?}", piece);
                prop_assert!(!piece.trim().is_empty());
            }
        }

        #[test]
        fn fence_free_text_is_preserved(text in "[a-z \\n\\t.,你好🙂]{0,400}", limit in 1usize..60, mode in arb_mode()) {
            let pieces = chunk_text(&text, limit, mode);
            prop_assert_eq!(non_ws(&pieces.concat()), non_ws(&text));
        }

        #[test]
        fn line_limits_hold(text in markdownish(), limit in 1usize..120, lines in 0usize..6) {
            let pieces = plan(&text, Limits { chars: limit, lines: Some(lines.max(1)), mode: ChunkMode::Length });
            assert_covers(&text, &pieces);
            for piece in chunk_lines(&text, limit, lines) {
                prop_assert!(piece.chars().count() <= limit && piece.split('\n').count() <= lines.max(1));
                prop_assert!(!piece.trim().is_empty());
            }
        }

        #[test]
        fn every_piece_renders_its_code_blocks_closed(doc in fenced_doc(), limit in 24usize..160, mode in arb_mode()) {
            for piece in chunk_text(&doc, limit, mode) {
                prop_assert!(piece.chars().count() <= limit);
                prop_assert!(balanced(&piece), "{:?}", piece);
            }
            for piece in chunk_lines(&doc, limit, 5) {
                prop_assert!(piece.split('\n').count() <= 5 && balanced(&piece), "{:?}", piece);
            }
        }
    }
}
