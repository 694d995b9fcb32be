//! Case-insensitive text patterns from the config (`mentionPatterns`).
//!
//! A small, bounded regular-expression engine (`regex-lite`): linear time whatever the input, and
//! a compiled size cap, so a pattern in the config cannot make matching a hostile message slow.
//! This file compiles and matches; it does not decide what a match means.

/// The largest compiled pattern accepted, in bytes.
const SIZE_LIMIT: usize = 1 << 16;

/// A compiled, case-insensitive pattern.
#[derive(Debug, Clone)]
pub struct Pattern(regex_lite::Regex);

impl Pattern {
    /// Compiles `source`; the error says what is wrong with it.
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex_lite::RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| e.to_string())
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ignoring_case_and_refuses_broken_patterns() {
        let p = Pattern::new(r"\bclaw(line)?\b").unwrap();
        assert!(p.is_match("hey Clawline, what's up"));
        assert!(p.is_match("CLAW?"));
        assert!(!p.is_match("clawing"));
        assert!(Pattern::new("(unclosed").is_err());
    }
}
