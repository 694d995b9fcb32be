//! HTML to readable text for `web_fetch`: headings, paragraphs, lists, links and code kept in
//! a Markdown-like form; scripts, styles, navigation and other page furniture dropped.
//!
//! It is a forgiving tokenizer, not a browser: it never fails and never panics on any input
//! (a property test feeds it arbitrary bytes), it keeps no state between calls, and it must not
//! fetch anything a page refers to.

/// Elements whose whole content is skipped.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "nav", "aside", "footer", "button",
    "select", "head",
];

/// Elements that start and end a block of text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "ul",
    "ol",
    "table",
    "tr",
    "form",
    "blockquote",
    "dl",
    "dd",
    "dt",
    "figure",
    "figcaption",
    "details",
    "summary",
    "hr",
    "address",
    "fieldset",
    "body",
    "html",
];

/// What a page turned into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readable {
    pub title: Option<String>,
    pub text: String,
}

/// Converts an HTML document; relative links are kept as written.
pub fn convert(html: &str) -> Readable {
    let mut out = Writer::default();
    let mut title = None;
    let mut rest = html;
    // Open `<a href>`s, innermost last: the href to print at `</a>`.
    let mut links: Vec<Option<String>> = Vec::new();
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(rest);
            break;
        };
        out.text(&rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |i| &after[i + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |i| &rest[i + 1..]);
            continue;
        }
        let Some(tag) = Tag::parse(rest) else {
            // A `<` that starts no tag is text.
            out.text("<");
            rest = &rest[1..];
            continue;
        };
        rest = &rest[tag.len..];
        let name = tag.name.as_str();
        if !tag.closing && (name == "title" || SKIPPED.contains(&name)) {
            let (inner, after) = raw_content(rest, name);
            if name == "title" && title.is_none() {
                let t = collapse(&decode_entities(inner));
                if !t.is_empty() {
                    title = Some(t);
                }
            } else if name == "head" {
                // The title lives in the head.
                if title.is_none() {
                    title = convert_title(inner);
                }
            }
            rest = after;
            continue;
        }
        match (name, tag.closing) {
            ("br", _) => out.line_break(),
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", false) => {
                out.block();
                let level = name.as_bytes()[1] - b'0';
                out.raw(&"#".repeat(level as usize));
                out.raw(" ");
            }
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", true) => out.block(),
            ("li", false) => {
                out.line_break();
                out.raw("- ");
            }
            ("li", true) => out.line_break(),
            ("td" | "th", false) => out.raw(" | "),
            ("pre", false) => {
                out.block();
                out.raw("```\n");
                out.pre += 1;
            }
            ("pre", true) => {
                out.pre = out.pre.saturating_sub(1);
                out.line_break();
                out.raw("```");
                out.block();
            }
            ("code", _) if out.pre == 0 => out.raw("`"),
            ("a", false) => {
                let href = tag.attr("href").filter(|h| !h.is_empty() && !h.starts_with('#'));
                let href = href.filter(|h| !h.trim_start().to_ascii_lowercase().starts_with("javascript:"));
                if href.is_some() {
                    out.raw("[");
                }
                links.push(href);
            }
            ("a", true) => {
                if let Some(Some(href)) = links.pop() {
                    out.raw("](");
                    out.raw(&href.replace(')', "%29").replace(char::is_whitespace, ""));
                    out.raw(")");
                }
            }
            ("img", _) => {
                if let Some(alt) = tag.attr("alt").filter(|a| !a.trim().is_empty()) {
                    out.text(&format!("[image: {}]", alt.trim()));
                }
            }
            _ if BLOCKS.contains(&name) => out.block(),
            _ => {}
        }
    }
    Readable { title, text: out.finish() }
}

fn convert_title(head: &str) -> Option<String> {
    let lower = head.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + head[start..].find('>')? + 1;
    let (inner, _) = raw_content(&head[open_end..], "title");
    let t = collapse(&decode_entities(inner));
    (!t.is_empty()).then_some(t)
}

/// The text up to `</name` (case-insensitive) and what follows the closing tag.
fn raw_content<'a>(s: &'a str, name: &str) -> (&'a str, &'a str) {
    let bytes = s.as_bytes();
    let needle = format!("</{name}");
    let mut i = 0;
    while let Some(off) = s[i..].find("</") {
        let at = i + off;
        let candidate = &bytes[at..];
        if candidate.len() >= needle.len() && candidate[..needle.len()].eq_ignore_ascii_case(needle.as_bytes()) {
            let after = s[at..].find('>').map_or("", |j| &s[at + j + 1..]);
            return (&s[..at], after);
        }
        i = at + 2;
    }
    (s, "")
}

/// One start or end tag.
struct Tag {
    name: String,
    closing: bool,
    attrs: Vec<(String, String)>,
    /// Bytes of the source it spans, `<` to `>`.
    len: usize,
}

impl Tag {
    fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let mut i = 1;
        let closing = b.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        if i == start || !b[start].is_ascii_alphabetic() {
            return None;
        }
        let name = s[start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            match b.get(i) {
                None => return Some(Tag { name, closing, attrs, len: s.len() }),
                Some(b'>') => return Some(Tag { name, closing, attrs, len: i + 1 }),
                _ => {}
            }
            let key_start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
                i += 1;
            }
            let key = s[key_start..i].to_ascii_lowercase();
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if b.get(i) == Some(&b'=') {
                i += 1;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                match b.get(i) {
                    Some(&q @ (b'"' | b'\'')) => {
                        let end = s[i + 1..].find(q as char).map_or(s.len(), |e| i + 1 + e);
                        value = decode_entities(&s[i + 1..end]);
                        i = (end + 1).min(s.len());
                    }
                    _ => {
                        let v_start = i;
                        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                            i += 1;
                        }
                        value = decode_entities(&s[v_start..i]);
                    }
                }
            }
            // A stray `=value` without a name has been stepped over; it names nothing.
            if !key.is_empty() {
                attrs.push((key, value));
            }
        }
    }

    fn attr(&self, key: &str) -> Option<String> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_string())
    }
}

/// Collects text, collapsing whitespace outside `<pre>`.
#[derive(Default)]
struct Writer {
    out: String,
    pre: u32,
    /// A space is owed before the next word.
    space: bool,
}

impl Writer {
    fn text(&mut self, raw: &str) {
        if raw.is_empty() {
            return;
        }
        let decoded = decode_entities(raw);
        if self.pre > 0 {
            self.out.push_str(&decoded);
            return;
        }
        for (i, word) in decoded.split(|c: char| c.is_whitespace()).enumerate() {
            if i > 0 {
                self.space = true;
            }
            if word.is_empty() {
                continue;
            }
            if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', ' ', '[', '(', '`']) {
                self.out.push(' ');
            }
            self.space = false;
            self.out.push_str(word);
        }
    }

    fn raw(&mut self, s: &str) {
        if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', ' ']) && !s.starts_with([']', ' ']) {
            self.out.push(' ');
        }
        self.space = false;
        self.out.push_str(s);
    }

    fn line_break(&mut self) {
        self.space = false;
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn block(&mut self) {
        self.line_break();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn finish(self) -> String {
        let mut text = String::with_capacity(self.out.len());
        let mut blank = 0;
        for line in self.out.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.trim() == "-" {
                blank += 1;
                if blank > 1 {
                    continue;
                }
                text.push('\n');
                continue;
            }
            blank = 0;
            text.push_str(line);
            text.push('\n');
        }
        text.trim().to_string()
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes character references: numeric ones and the named ones pages commonly use.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(|c: char| !c.is_ascii_alphanumeric() && c != '#').map(|e| e + 1);
        let (name, consumed) = match end {
            Some(e) if rest.as_bytes()[e] == b';' => (&rest[1..e], e + 1),
            Some(e) => (&rest[1..e], e),
            None => (&rest[1..], rest.len()),
        };
        match entity(name) {
            Some(c) => {
                out.push(c);
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return Some(char::from_u32(code).filter(|c| *c != '\0').unwrap_or('\u{fffd}'));
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "middot" => '·',
        "bull" => '•',
        "euro" => '€',
        "pound" => '£',
        "deg" => '°',
        "times" => '×',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_page_becomes_readable_markdown() {
        let page = r#"<!DOCTYPE html><html><head><title>Tide &amp; Times</title>
            <style>body { color: red }</style><script>alert("x < y")</script></head>
            <body><nav><a href="/">Home</a></nav>
            <h1>High  tide</h1><p>The tide is <b>high</b> at <a href="https://tides.example/today">noon</a>.</p>
            <ul><li>Monday: 12:04</li><li>Tuesday&nbsp;12:51</li></ul>
            <pre>let  x = 1;
let y = 2;</pre><!-- a comment --><footer>© nobody</footer></body></html>"#;
        let r = convert(page);
        assert_eq!(r.title.as_deref(), Some("Tide & Times"));
        assert_eq!(
            r.text,
            "# High tide\n\nThe tide is high at [noon](https://tides.example/today).\n\n- Monday: 12:04\n- Tuesday 12:51\n\n```\nlet  x = 1;\nlet y = 2;\n```"
        );
    }

    #[test]
    fn entities_decode_and_unknown_ones_stay() {
        assert_eq!(decode_entities("a &lt;b&gt; &#65;&#x42; &bogus; &amp"), "a <b> AB &bogus; &");
        assert_eq!(decode_entities("&#0; &#xFFFFFFFF;"), "\u{fffd} \u{fffd}");
    }

    #[test]
    fn broken_markup_is_text_not_a_failure() {
        let r = convert("1 < 2 and <p unclosed=\"yes");
        assert!(r.text.starts_with("1 < 2 and"), "{r:?}");
        let r = convert("<script>never closed");
        assert_eq!(r.text, "");
    }

    proptest! {
        #[test]
        fn any_input_converts_without_panicking(s in "\\PC{0,300}") {
            let _ = convert(&s);
        }

        #[test]
        fn tag_soup_converts_without_panicking(parts in proptest::collection::vec(
            prop_oneof![
                Just("<".to_string()), Just(">".to_string()), Just("</".to_string()), Just("<a href=\"".to_string()),
                Just("<script>".to_string()), Just("</script".to_string()), Just("<!--".to_string()), Just("&#x".to_string()),
                Just("<pre>".to_string()), Just("</pre>".to_string()), Just("<title>".to_string()), Just("'".to_string()),
                "[a-z ]{0,5}".prop_map(|s| s),
            ], 0..40)) {
            let html = parts.concat();
            let r = convert(&html);
            prop_assert!(!r.text.contains("<script"));
        }
    }
}
