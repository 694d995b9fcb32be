//! The JSON5 grammar (<https://spec.json5.org>) as a hand-written recursive-descent parser.
//!
//! Accepts everything JSON5 allows: comments, trailing commas, single-quoted strings, unquoted
//! identifier keys, hexadecimal numbers, leading/trailing decimal points, `+`, `Infinity`, `NaN`,
//! and escaped line continuations. Two deliberate restrictions, both reported precisely: duplicate
//! keys in one object (ambiguous in a config file) and `\u` escapes inside unquoted keys.

use super::position::line_col;
use super::value::{Key, Node, Number, Span, Value};

/// Nesting deeper than this is rejected, so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// A syntax error and the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}

/// Parses one JSON5 value (surrounded by optional whitespace and comments) from `src`.
pub fn parse(src: &str) -> Result<Node, ParseError> {
    let mut p = Parser { src, pos: 0, depth: 0 };
    p.skip_trivia()?;
    if p.pos >= src.len() {
        return Err(p.error("the file is empty: expected a JSON5 object such as `{}`"));
    }
    let node = p.value()?;
    p.skip_trivia()?;
    if p.pos < src.len() {
        return Err(p.error(format!("unexpected {} after the end of the document", describe(p.peek_char()))));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "end of file".to_string(),
        Some(c) if c.is_control() => format!("character U+{:04X}", c as u32),
        Some(c) => format!("character `{c}`"),
    }
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_json5_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | ' ' | '\u{a0}' | '\u{feff}')
        || is_line_terminator(c)
        || (c as u32 > 127 && c.is_whitespace())
}

fn is_ident_start(c: char) -> bool {
    c == '$' || c == '_' || c.is_alphabetic()
}

fn is_ident_part(c: char) -> bool {
    is_ident_start(c) || c.is_alphanumeric() || c == '\u{200c}' || c == '\u{200d}'
}

impl<'a> Parser<'a> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError { message: message.into(), offset: self.pos }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError { message: message.into(), offset }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_byte(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn starts_with(&self, s: &str) -> bool {
        self.src[self.pos..].starts_with(s)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek_char() {
                Some(c) if is_json5_whitespace(c) => {
                    self.bump();
                }
                Some('/') if self.starts_with("//") => {
                    while let Some(c) = self.peek_char() {
                        if is_line_terminator(c) {
                            break;
                        }
                        self.bump();
                    }
                }
                Some('/') if self.starts_with("/*") => {
                    let start = self.pos;
                    match self.src[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => {
                            return Err(self.error_at(start, "unterminated block comment: add `*/`"));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        let value = match self.peek_char() {
            Some('{') => self.nested(Self::object)?,
            Some('[') => self.nested(Self::array)?,
            Some(q @ ('"' | '\'')) => Value::String(self.string(q)?),
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => Value::Number(self.number()?),
            Some('I') | Some('N') => Value::Number(self.number()?),
            Some(c) if is_ident_start(c) => {
                let word = self.identifier()?;
                match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => {
                        return Err(self.error_at(
                            start,
                            format!("unexpected word `{word}`: strings must be quoted, e.g. \"{word}\""),
                        ));
                    }
                }
            }
            other => return Err(self.error(format!("expected a value, found {}", describe(other)))),
        };
        Ok(Node { value, span: Span::new(start, self.pos) })
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, ParseError>) -> Result<Value, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        let open = self.pos;
        self.bump(); // '{'
        let mut members: Vec<(Key, Node)> = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek_char() {
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                None => return Err(self.error_at(open, "unterminated object: missing `}`")),
                _ => {}
            }
            let key = self.key()?;
            if let Some((first, _)) = members.iter().find(|(k, _)| k.name == key.name) {
                let at = line_col(self.src, first.span.start);
                return Err(self.error_at(
                    key.span.start,
                    format!("duplicate key \"{}\" (first defined at line {}, column {})", key.name, at.line, at.column),
                ));
            }
            self.skip_trivia()?;
            if self.peek_char() != Some(':') {
                return Err(self.error(format!(
                    "expected `:` after key \"{}\", found {}",
                    key.name,
                    describe(self.peek_char())
                )));
            }
            self.bump();
            self.skip_trivia()?;
            let value = self.value()?;
            members.push((key, value));
            self.skip_trivia()?;
            match self.peek_char() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                None => return Err(self.error_at(open, "unterminated object: missing `}`")),
                other => {
                    return Err(self.error(format!("expected `,` or `}}` after a member, found {}", describe(other))));
                }
            }
        }
    }

    fn key(&mut self) -> Result<Key, ParseError> {
        let start = self.pos;
        let name = match self.peek_char() {
            Some(q @ ('"' | '\'')) => self.string(q)?,
            Some(c) if is_ident_start(c) => self.identifier()?,
            Some('\\') => {
                return Err(self.error("escape sequences in unquoted keys are not supported: quote the key"));
            }
            other => return Err(self.error(format!("expected a key, found {}", describe(other)))),
        };
        Ok(Key { name, span: Span::new(start, self.pos) })
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek_char() {
            if is_ident_part(c) {
                self.bump();
            } else if c == '\\' {
                return Err(self.error("escape sequences in unquoted keys are not supported: quote the key"));
            } else {
                break;
            }
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        let open = self.pos;
        self.bump(); // '['
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek_char() {
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error_at(open, "unterminated array: missing `]`")),
                _ => {}
            }
            items.push(self.value()?);
            self.skip_trivia()?;
            match self.peek_char() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error_at(open, "unterminated array: missing `]`")),
                other => {
                    return Err(self.error(format!("expected `,` or `]` after an item, found {}", describe(other))));
                }
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error_at(open, format!("unterminated string: missing closing {quote}")));
            };
            match c {
                c if c == quote => return Ok(out),
                '\\' => self.escape(&mut out)?,
                '\n' | '\r' => {
                    return Err(self
                        .error_at(open, "unterminated string: a line break inside a string must be escaped as `\\n`"));
                }
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let at = self.pos - 1;
        let Some(c) = self.bump() else {
            return Err(self.error_at(at, "unterminated escape sequence"));
        };
        match c {
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => {
                out.push('\r');
            }
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '0' if !self.peek_char().is_some_and(|d| d.is_ascii_digit()) => out.push('\0'),
            '1'..='9' | '0' => {
                return Err(self.error_at(at, "octal escape sequences are not allowed"));
            }
            'x' => {
                let v = self.hex_digits(2, at)?;
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'u' => {
                let hi = self.hex_digits(4, at)?;
                if (0xD800..0xDC00).contains(&hi) && self.starts_with("\\u") {
                    let save = self.pos;
                    self.pos += 2;
                    let lo = self.hex_digits(4, at)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    } else {
                        out.push('\u{fffd}');
                        self.pos = save;
                    }
                } else {
                    out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
                }
            }
            // Line continuation: the escaped terminator is dropped.
            '\r' => {
                if self.peek_char() == Some('\n') {
                    self.bump();
                }
            }
            '\n' | '\u{2028}' | '\u{2029}' => {}
            other => out.push(other),
        }
        Ok(())
    }

    fn hex_digits(&mut self, n: usize, at: usize) -> Result<u32, ParseError> {
        let digits = self.src.get(self.pos..self.pos + n).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        match digits {
            Some(d) => {
                self.pos += n;
                u32::from_str_radix(d, 16).map_err(|_| self.error_at(at, "invalid hexadecimal escape"))
            }
            None => Err(self.error_at(at, format!("invalid escape: expected {n} hexadecimal digits"))),
        }
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let start = self.pos;
        let mut negative = false;
        if let Some(sign @ (b'+' | b'-')) = self.peek_byte() {
            negative = sign == b'-';
            self.pos += 1;
        }
        let sign = if negative { -1.0 } else { 1.0 };
        if self.starts_with("Infinity") {
            self.pos += "Infinity".len();
            return self.after_number(start, sign * f64::INFINITY, None);
        }
        if self.starts_with("NaN") {
            self.pos += "NaN".len();
            return self.after_number(start, f64::NAN, None);
        }
        if self.starts_with("0x") || self.starts_with("0X") {
            self.pos += 2;
            let digits_start = self.pos;
            while self.peek_byte().is_some_and(|b| b.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            if self.pos == digits_start {
                return Err(self.error_at(start, "invalid hexadecimal number: no digits after `0x`"));
            }
            let magnitude = i128::from_str_radix(&self.src[digits_start..self.pos], 16).ok();
            let int = magnitude.map(|m| if negative { -m } else { m });
            let float = int.map_or(sign * f64::INFINITY, |i| i as f64);
            return self.after_number(start, float, int);
        }
        let digits_start = self.pos;
        while self.peek_byte().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let int_digits = self.pos - digits_start;
        if int_digits > 1 && self.src.as_bytes()[digits_start] == b'0' {
            return Err(self.error_at(start, "numbers may not have leading zeros"));
        }
        let mut is_int = true;
        let mut frac_digits = 0;
        if self.peek_byte() == Some(b'.') {
            is_int = false;
            self.pos += 1;
            let f = self.pos;
            while self.peek_byte().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            frac_digits = self.pos - f;
        }
        if int_digits == 0 && frac_digits == 0 {
            return Err(self.error_at(start, format!("expected a number, found {}", describe(self.peek_char()))));
        }
        if let Some(b'e' | b'E') = self.peek_byte() {
            is_int = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek_byte() {
                self.pos += 1;
            }
            let e = self.pos;
            while self.peek_byte().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            if self.pos == e {
                return Err(self.error_at(start, "invalid number: exponent has no digits"));
            }
        }
        let text = &self.src[start..self.pos];
        let unsigned = text.trim_start_matches(['+', '-']);
        let float = unsigned.parse::<f64>().map(|f| sign * f).map_err(|_| self.error_at(start, "invalid number"))?;
        let int = if is_int { text.trim_start_matches('+').parse::<i128>().ok() } else { None };
        self.after_number(start, float, int)
    }

    fn after_number(&mut self, start: usize, float: f64, int: Option<i128>) -> Result<Number, ParseError> {
        if self.peek_char().is_some_and(is_ident_part) {
            return Err(self.error_at(start, format!("invalid number: unexpected {}", describe(self.peek_char()))));
        }
        Ok(self.finish_number(start, float, int))
    }

    fn finish_number(&self, start: usize, float: f64, int: Option<i128>) -> Number {
        Number { text: self.src[start..self.pos].to_string(), float, int }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json5::line_col;

    fn json(src: &str) -> serde_json::Value {
        parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).to_json()
    }

    #[test]
    fn reads_the_json5_extensions() {
        let src = r#"
        // a comment
        {
          unquoted: 'single',
          "double": "esc\"aped\n",
          hex: 0x1F, neg: -0x10, lead: .5, trail: 5., plus: +3, exp: 1e3,
          /* block */ arr: [1, 2, 3,],
          line: 'a\
b',
          nested: { deep: { ok: true, no: false, nothing: null } },
        }
        "#;
        let v = json(src);
        assert_eq!(v["unquoted"], "single");
        assert_eq!(v["double"], "esc\"aped\n");
        assert_eq!(v["hex"], 31);
        assert_eq!(v["neg"], -16);
        assert_eq!(v["lead"], 0.5);
        assert_eq!(v["trail"], 5.0);
        assert_eq!(v["plus"], 3);
        assert_eq!(v["exp"], 1000.0);
        assert_eq!(v["arr"], serde_json::json!([1, 2, 3]));
        assert_eq!(v["line"], "ab");
        assert_eq!(v["nested"]["deep"]["ok"], true);
        assert!(v["nested"]["deep"]["nothing"].is_null());
    }

    #[test]
    fn special_numbers_and_unicode_escapes() {
        let n = parse("[Infinity, -Infinity, NaN, '\\u00e9\\uD83D\\uDE00\\x41']").unwrap();
        let Value::Array(items) = &n.value else { panic!() };
        let f = |i: usize| match &items[i].value {
            Value::Number(n) => n.float,
            _ => panic!(),
        };
        assert!(f(0).is_infinite() && f(0) > 0.0);
        assert!(f(1).is_infinite() && f(1) < 0.0);
        assert!(f(2).is_nan());
        assert_eq!(items[3].value, Value::String("é😀A".into()));
    }

    #[test]
    fn big_integers_keep_precision() {
        let n = parse("18446744073709551615").unwrap();
        let Value::Number(num) = n.value else { panic!() };
        assert_eq!(num.int, Some(18_446_744_073_709_551_615));
    }

    fn err(src: &str) -> (String, usize, usize) {
        let e = parse(src).expect_err(src);
        let at = line_col(src, e.offset);
        (e.message, at.line, at.column)
    }

    #[test]
    fn errors_point_at_the_problem() {
        let (m, l, c) = err("{\n  a: 1,\n  b: ,\n}");
        assert!(m.contains("expected a value"), "{m}");
        assert_eq!((l, c), (3, 6));

        let (m, l, c) = err("{ a: 1 b: 2 }");
        assert!(m.contains("expected `,` or `}`"), "{m}");
        assert_eq!((l, c), (1, 8));

        let (m, l, _) = err("{\n a: 1,\n a: 2 }");
        assert!(m.contains("duplicate key \"a\" (first defined at line 2, column 2)"), "{m}");
        assert_eq!(l, 3);

        let (m, ..) = err("{ a: 'open }");
        assert!(m.contains("unterminated string"), "{m}");
        let (m, ..) = err("{ a: 1 /* never closed }");
        assert!(m.contains("unterminated block comment"), "{m}");
        let (m, ..) = err("{ a: yes }");
        assert!(m.contains("strings must be quoted"), "{m}");
        let (m, ..) = err("{ a: 012 }");
        assert!(m.contains("leading zeros"), "{m}");
        let (m, ..) = err("{} {}");
        assert!(m.contains("after the end of the document"), "{m}");
        let (m, ..) = err("   // only a comment\n");
        assert!(m.contains("empty"), "{m}");
        let (m, ..) = err("{ a: 1");
        assert!(m.contains("unterminated object"), "{m}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let src = "[".repeat(100_000);
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("nesting deeper"));
    }

    #[test]
    fn spans_cover_values_and_keys() {
        let src = "{ port: 18789, name: 'x' }";
        let n = parse(src).unwrap();
        let port = n.get("port").unwrap();
        assert_eq!(&src[port.span.start..port.span.end], "18789");
        assert_eq!(n.key_span_at_path("name").map(|s| &src[s.start..s.end]), Some("name"));
        assert_eq!(&src[n.span.start..n.span.end], src);
    }

    mod properties {
        use super::super::parse;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(serde_json::Value::from),
                "[^\\u{0}]{0,12}".prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                    prop::collection::btree_map("[a-zA-Z_$][a-zA-Z0-9_]{0,6}", inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
                let _ = parse(&s);
            }

            #[test]
            fn never_panics_on_json5_like_noise(s in "[{}\\[\\]:,'\"/*\\\\ \\n0-9a-zA-Z.+-]{0,120}") {
                let _ = parse(&s);
            }

            #[test]
            fn json_round_trips(v in arb_json()) {
                let text = serde_json::to_string_pretty(&v).unwrap();
                let parsed = parse(&text).unwrap().to_json();
                prop_assert_eq!(parsed, v);
            }
        }
    }
}
