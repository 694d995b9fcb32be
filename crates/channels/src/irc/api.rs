//! The IRC wire format (RFC 1459 / RFC 2812, with IRCv3 message tags): parsing a line from the
//! server into a [`Message`], and writing lines that are always valid — at most 512 bytes with
//! CRLF, no CR, LF or NUL inside, the last parameter marked with `:` when it needs to be.
//!
//! Pure: no I/O. Anything a server sends parses to something or to `None`; nothing panics.

/// The longest line, CRLF included (RFC 2812 §2.3).
pub const MAX_LINE: usize = 512;

/// One line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// IRCv3 tags, unparsed (`msgid=…;time=…`).
    pub tags: Option<String>,
    /// `nick!user@host` or a server name.
    pub prefix: Option<String>,
    /// Upper-cased command or three-digit numeric.
    pub command: String,
    pub params: Vec<String>,
}

impl Message {
    /// The nick of the prefix (`alice` of `alice!a@host`).
    pub fn nick(&self) -> Option<&str> {
        let p = self.prefix.as_deref()?;
        let nick = p.split(['!', '@']).next().unwrap_or(p);
        (!nick.is_empty()).then_some(nick)
    }

    /// A tag's value (`msgid`), unescaped only as far as clawline needs (ids have no escapes).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.as_deref()?.split(';').find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if kv == key => Some(""),
            _ => None,
        })
    }

    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }
}

/// Parses one line (without or with its CR/LF). `None` for an empty or command-less line.
pub fn parse(line: &str) -> Option<Message> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    let mut tags = None;
    if let Some(r) = rest.strip_prefix('@') {
        let (t, r) = r.split_once(' ')?;
        tags = Some(t.to_string());
        rest = r.trim_start_matches(' ');
    }
    let mut prefix = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (p, r) = r.split_once(' ')?;
        prefix = Some(p.to_string());
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if command.is_empty() || !command.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        match rest.split_once(' ') {
            Some((p, r)) => {
                params.push(p.to_string());
                rest = r;
            }
            None => {
                params.push(rest.to_string());
                break;
            }
        }
    }
    Some(Message { tags, prefix, command: command.to_ascii_uppercase(), params })
}

/// Why a line could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("an IRC parameter cannot contain CR, LF or NUL")]
    ControlCharacter,
    #[error("only the last IRC parameter may contain spaces or start with ':'")]
    MiddleParameter,
    #[error("the line is longer than 512 bytes")]
    TooLong,
}

/// Writes `command params…` with CRLF. The last parameter is sent as trailing when needed.
pub fn line(command: &str, params: &[&str]) -> Result<String, LineError> {
    let mut out = command.to_string();
    for (i, p) in params.iter().enumerate() {
        if p.contains(['\r', '\n', '\0']) {
            return Err(LineError::ControlCharacter);
        }
        let last = i + 1 == params.len();
        let needs_colon = p.is_empty() || p.contains(' ') || p.starts_with(':');
        if needs_colon && !last {
            return Err(LineError::MiddleParameter);
        }
        out.push(' ');
        if needs_colon {
            out.push(':');
        }
        out.push_str(p);
    }
    out.push_str("\r\n");
    if out.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    Ok(out)
}

/// Splits `text` into pieces that each fit in `PRIVMSG <target> :<piece>` as the server relays
/// it to others, with our `:nick!user@host ` prefix (`prefix_len` bytes, a generous guess
/// when unknown). Lines stay lines; long lines break at spaces when possible, never inside a
/// character; control characters other than IRC formatting become spaces; empty lines vanish.
pub fn split_privmsg(target: &str, text: &str, prefix_len: usize) -> Vec<String> {
    let overhead = prefix_len + "PRIVMSG ".len() + target.len() + " :".len() + 2;
    let room = MAX_LINE.saturating_sub(overhead).max(16);
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let clean: String = raw
            .chars()
            .map(|c| if c.is_control() && !matches!(c, '\x02' | '\x03' | '\x0f' | '\x1d' | '\x1f') { ' ' } else { c })
            .collect();
        let mut rest = clean.trim_end();
        while !rest.is_empty() {
            if rest.len() <= room {
                out.push(rest.to_string());
                break;
            }
            let mut cut = room;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(space) = rest[..cut].rfind(' ').filter(|s| *s > room / 2) {
                cut = space;
            }
            out.push(rest[..cut].trim_end().to_string());
            rest = rest[cut..].trim_start();
        }
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

/// A CTCP message (`\x01VERSION\x01`, `\x01ACTION waves\x01`): its command, if the text is one.
pub fn ctcp(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    Some(inner.split(' ').next().unwrap_or_default())
}

/// Lowercases a nick or channel the way RFC 1459 casemapping does (`[]\~` ≡ `{}|^`).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_parse_with_tags_prefixes_and_trailing_parameters() {
        let m = parse("@msgid=abc;time=2026-01-01T00:00:00Z :alice!a@host PRIVMSG #ops :hello there :)\r\n").unwrap();
        assert_eq!(m.tag("msgid"), Some("abc"));
        assert_eq!(m.nick(), Some("alice"));
        assert_eq!((m.command.as_str(), m.params.clone()), ("PRIVMSG", vec!["#ops".into(), "hello there :)".into()]));
        let m = parse("PING :irc.example").unwrap();
        assert_eq!((m.prefix, m.params), (None, vec!["irc.example".into()]));
        let m = parse(":srv 001 claw :Welcome").unwrap();
        assert_eq!((m.command.as_str(), m.param(0)), ("001", Some("claw")));
        assert!(parse("").is_none());
        assert!(parse(":only-a-prefix").is_none());
        assert!(parse("@tags-only").is_none());
    }

    #[test]
    fn written_lines_are_always_valid() {
        assert_eq!(line("PRIVMSG", &["#ops", "hi there"]).unwrap(), "PRIVMSG #ops :hi there\r\n");
        assert_eq!(line("NICK", &["claw"]).unwrap(), "NICK claw\r\n");
        assert_eq!(line("PRIVMSG", &["#ops", ""]).unwrap(), "PRIVMSG #ops :\r\n");
        assert_eq!(line("PRIVMSG", &["#ops", "a\r\nQUIT"]), Err(LineError::ControlCharacter));
        assert_eq!(line("PRIVMSG", &["#o ps", "x"]), Err(LineError::MiddleParameter));
        assert_eq!(line("PRIVMSG", &["#ops", &"x".repeat(600)]), Err(LineError::TooLong));
    }

    #[test]
    fn long_text_splits_at_spaces_within_the_limit() {
        let text = format!("{}\n\nsecond line\r\n{}", "word ".repeat(200), "é".repeat(400));
        let pieces = split_privmsg("#ops", &text, 100);
        for p in &pieces {
            let l = line("PRIVMSG", &["#ops", p]).unwrap();
            assert!(l.len() + 100 <= MAX_LINE, "{}", l.len());
        }
        assert!(pieces.iter().any(|p| p == "second line"));
        assert!(pieces[0].ends_with("word"));
    }

    #[test]
    fn ctcp_and_casemapping() {
        assert_eq!(ctcp("\x01VERSION\x01"), Some("VERSION"));
        assert_eq!(ctcp("\x01ACTION waves\x01"), Some("ACTION"));
        assert_eq!(ctcp("hello"), None);
        assert_eq!(fold("Claw[Bot]"), "claw{bot}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parsing_anything_never_panics(s in "\\PC{0,600}") {
            let _ = parse(&s);
        }

        #[test]
        fn split_pieces_always_make_valid_lines(target in "#[a-z]{1,20}", text in "\\PC{0,3000}", prefix in 0usize..200) {
            for p in split_privmsg(&target, &text, prefix) {
                let l = line("PRIVMSG", &[&target, &p]).expect("valid line");
                prop_assert!(l.len() + prefix <= MAX_LINE, "{} + {prefix}", l.len());
                prop_assert!(!p.contains(['\r', '\n', '\0']));
                prop_assert!(!p.is_empty());
            }
        }
    }
}
