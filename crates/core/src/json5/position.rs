//! Byte offsets to human positions (1-based line and column, columns counted in characters).

/// A 1-based line and column in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for LineCol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Converts a byte offset in `src` to a line and column. Offsets past the end, or inside a
/// multi-byte character, are clamped to the nearest preceding character boundary.
pub fn line_col(src: &str, offset: usize) -> LineCol {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    LineCol { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_characters() {
        let src = "a\nbé c\n";
        assert_eq!(line_col(src, 0), LineCol { line: 1, column: 1 });
        assert_eq!(line_col(src, 2), LineCol { line: 2, column: 1 });
        // 'c' sits after "bé " which is 4 bytes but 3 characters.
        assert_eq!(line_col(src, 6), LineCol { line: 2, column: 4 });
        assert_eq!(line_col(src, 999), LineCol { line: 3, column: 1 });
        // Inside the two-byte 'é': clamped back to its start.
        assert_eq!(line_col(src, 4), LineCol { line: 2, column: 2 });
    }
}
