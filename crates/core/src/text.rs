//! Small text helpers that respect character boundaries.

/// Cuts `s` to at most `max_chars` characters. Returns the kept prefix and whether anything was cut.
pub fn truncate_chars(s: &str, max_chars: usize) -> (&str, bool) {
    match s.char_indices().nth(max_chars) {
        Some((byte, _)) => (&s[..byte], true),
        None => (s, false),
    }
}

/// Cuts `s` to at most `max_bytes` bytes without splitting a character.
pub fn truncate_bytes(s: &str, max_bytes: usize) -> (&str, bool) {
    if s.len() <= max_bytes {
        return (s, false);
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), ("hé", true));
        assert_eq!(truncate_chars("hé", 5), ("hé", false));
        assert_eq!(truncate_bytes("héllo", 2), ("h", true));
        assert_eq!(truncate_bytes("héllo", 3), ("hé", true));
        assert_eq!(truncate_bytes("hi", 3), ("hi", false));
    }
}
