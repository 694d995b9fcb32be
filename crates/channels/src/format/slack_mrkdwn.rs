//! Markdown to Slack `mrkdwn`, the markup of a message's `text` and of `mrkdwn` text objects.
//!
//! Slack's syntax: `*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks (no
//! language), `<url|text>` links, `>` quotes; no headings or list syntax, so headings become bold
//! lines and list items `• item`. Slack treats `&`, `<` and `>` as control characters: in text
//! they are always written `&amp;`, `&lt;`, `&gt;`, so the model cannot produce a mention such as
//! `<!channel>` or a link of its own; the only raw `<…>` in the output are links this module
//! generates for `http`, `https` and `mailto` URLs.
//!
//! This module must not split text, emit Slack control sequences other than those links, or panic
//! on any input. Slack has no escape for `*`, `_`, `~` or `` ` ``, so those stay as written.

use super::markdown::{self, Block, Inline};

/// Schemes a Slack link may point to; any other link becomes its text.
const LINK_SCHEMES: &[&str] = &["http", "https", "mailto"];

/// Converts the model's Markdown into Slack mrkdwn.
pub fn to_slack_mrkdwn(md: &str) -> String {
    render_blocks(&markdown::parse(md), false)
}

fn render_blocks(blocks: &[Block], in_quote: bool) -> String {
    markdown::join_blocks(blocks, |block| render_block(block, in_quote))
}

fn render_block(block: &Block, in_quote: bool) -> String {
    let mut out = String::new();
    match block {
        Block::Paragraph(content) => render_inline(content, Style::default(), &mut out),
        Block::Heading { content, .. } => {
            let mut inner = String::new();
            render_inline(content, Style { bold: true, ..Style::default() }, &mut inner);
            wrap(&mut out, '*', &inner);
        }
        Block::CodeBlock { code, .. } => code_block(code, &mut out),
        Block::Quote(inner) => {
            let body = render_blocks(inner, true);
            if in_quote {
                out.push_str(&body);
            } else {
                let quoted: Vec<String> =
                    body.lines().map(|l| if l.is_empty() { ">".to_owned() } else { format!("> {l}") }).collect();
                out.push_str(&quoted.join("\n"));
            }
        }
        Block::ListItem { marker, depth, content } => {
            out.push_str(&markdown::list_prefix(*marker, *depth));
            render_inline(content, Style::default(), &mut out);
        }
        Block::Rule => out.push_str(markdown::RULE_TEXT),
        Block::Table { header, rows } => code_block(&markdown::table_to_text(header, rows), &mut out),
    }
    out
}

fn code_block(code: &str, out: &mut String) {
    if code.is_empty() {
        return;
    }
    out.push_str("```\n");
    out.push_str(&escape(code));
    out.push_str("\n```");
}

/// Which styles enclose the current position, so none is nested in itself.
#[derive(Debug, Clone, Copy, Default)]
struct Style {
    bold: bool,
    italic: bool,
    strike: bool,
}

fn render_inline(nodes: &[Inline], style: Style, out: &mut String) {
    for node in nodes {
        match node {
            Inline::Text(s) => out.push_str(&escape(s)),
            Inline::LineBreak => out.push('\n'),
            Inline::Code(s) => wrap(out, '`', &escape(s)),
            Inline::Bold(children) if style.bold => render_inline(children, style, out),
            Inline::Bold(children) => styled(out, children, Style { bold: true, ..style }, '*'),
            Inline::Italic(children) if style.italic => render_inline(children, style, out),
            Inline::Italic(children) => styled(out, children, Style { italic: true, ..style }, '_'),
            Inline::Strike(children) if style.strike => render_inline(children, style, out),
            Inline::Strike(children) => styled(out, children, Style { strike: true, ..style }, '~'),
            Inline::Url(url) if markdown::link_allowed(url, LINK_SCHEMES) => link(out, url, ""),
            Inline::Url(url) => out.push_str(&escape(url)),
            Inline::Link { text, url } if markdown::link_allowed(url, LINK_SCHEMES) => {
                link(out, url, &markdown::inline_plain(text));
            }
            Inline::Link { text, .. } => render_inline(text, style, out),
        }
    }
}

fn styled(out: &mut String, children: &[Inline], style: Style, marker: char) {
    let mut inner = String::new();
    render_inline(children, style, &mut inner);
    wrap(out, marker, &inner);
}

/// `<url>` or `<url|label>`; the label is plain text (Slack does not style link labels).
fn link(out: &mut String, url: &str, label: &str) {
    out.push('<');
    out.push_str(&escape_url(url));
    let label = label.replace('\n', " ");
    if !label.trim().is_empty() && label != url {
        out.push('|');
        out.push_str(&escape(&label));
    }
    out.push('>');
}

/// `marker inner marker`, or nothing for empty `inner`.
fn wrap(out: &mut String, marker: char, inner: &str) {
    if inner.is_empty() {
        return;
    }
    out.push(marker);
    out.push_str(inner);
    out.push(marker);
}

/// Escapes Slack's three control characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// A URL inside `<…>`: `&` as an entity, and the characters that would end the link or start
/// its label percent-encoded.
fn escape_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emphasis_and_headings() {
        assert_eq!(to_slack_mrkdwn("**bold** *it* ~~gone~~ `x`"), "*bold* _it_ ~gone~ `x`");
        assert_eq!(to_slack_mrkdwn("**bold _both_**"), "*bold _both_*");
        assert_eq!(to_slack_mrkdwn("## Plan **now**"), "*Plan now*");
        assert_eq!(to_slack_mrkdwn("snake_case_name and **open"), "snake_case_name and **open");
    }

    #[test]
    fn escaping() {
        assert_eq!(to_slack_mrkdwn("a < b & c > d"), "a &lt; b &amp; c &gt; d");
        assert_eq!(to_slack_mrkdwn("<!channel> <@U123>"), "&lt;!channel&gt; &lt;@U123&gt;");
        assert_eq!(to_slack_mrkdwn("`<tag>&`"), "`&lt;tag&gt;&amp;`");
        assert_eq!(to_slack_mrkdwn("```rust\nif a < b {}\n```"), "```\nif a &lt; b {}\n```");
    }

    #[test]
    fn links() {
        assert_eq!(to_slack_mrkdwn("[the docs](https://x.y/?a=1&b=2)"), "<https://x.y/?a=1&amp;b=2|the docs>");
        assert_eq!(to_slack_mrkdwn("[a > b](https://x.y/a|b)"), "<https://x.y/a%7Cb|a &gt; b>");
        assert_eq!(to_slack_mrkdwn("see https://x.y/p."), "see <https://x.y/p>.");
        assert_eq!(to_slack_mrkdwn("[https://x.y](https://x.y)"), "<https://x.y>");
        assert_eq!(to_slack_mrkdwn("[mail](mailto:a@b.c)"), "<mailto:a@b.c|mail>");
        assert_eq!(to_slack_mrkdwn("[click](javascript:alert(1))"), "click");
        assert_eq!(to_slack_mrkdwn("**[b](https://x.y)**"), "*<https://x.y|b>*");
    }

    #[test]
    fn blocks() {
        assert_eq!(to_slack_mrkdwn("- one\n- two\n  1. sub"), "• one\n• two\n  1. sub");
        assert_eq!(to_slack_mrkdwn("> quoted\n>\n> more"), "> quoted\n>\n> more");
        assert_eq!(to_slack_mrkdwn("a\n\n***\n\nb"), "a\n\n———\n\nb");
        assert_eq!(to_slack_mrkdwn("|k|v|\n|--|--|\n|a|1|"), "```\nk | v\n- | -\na | 1\n```");
        assert_eq!(to_slack_mrkdwn("**日本語** 🎉"), "*日本語* 🎉");
    }

    /// No raw `<` or `&` except in generated links and entities, and no raw `>` except closing
    /// such a link or starting a quote line.
    fn check_mrkdwn(out: &str) -> Result<(), String> {
        let mut in_link = false;
        for (line_no, line) in out.split('\n').enumerate() {
            for (i, c) in line.char_indices() {
                let rest = &line[i..];
                match c {
                    '&' if !["&amp;", "&lt;", "&gt;"].iter().any(|e| rest.starts_with(e)) => {
                        return Err(format!("raw & on line {line_no}: {line:?}"));
                    }
                    '<' if in_link => return Err(format!("< inside a link: {line:?}")),
                    '<' if ["<http://", "<https://", "<mailto:"].iter().any(|p| rest.starts_with(p)) => in_link = true,
                    '<' => return Err(format!("raw < on line {line_no}: {line:?}")),
                    '>' if in_link => in_link = false,
                    '>' if i == 0 => {}
                    '>' => return Err(format!("raw > on line {line_no}: {line:?}")),
                    c if in_link && c.is_whitespace() && !line[..i].contains('|') => {
                        return Err(format!("whitespace in a link URL: {line:?}"));
                    }
                    _ => {}
                }
            }
            if in_link {
                return Err(format!("link spans lines: {line:?}"));
            }
        }
        Ok(())
    }

    fn noise() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("**"),
            Just("_"),
            Just("*"),
            Just("~~"),
            Just("`"),
            Just("```\n"),
            Just("\n"),
            Just("\n\n"),
            Just("# "),
            Just("> "),
            Just(">"),
            Just("- "),
            Just("1. "),
            Just("["),
            Just("]("),
            Just(")"),
            Just("https://x.y/?a=1&b"),
            Just("mailto:a@b"),
            Just("javascript:x"),
            Just("<"),
            Just(">"),
            Just("&"),
            Just("|"),
            Just("|-|\n"),
            Just("<!here>"),
            Just(" "),
            Just("word"),
            Just("🙂"),
            Just("\\"),
            Just("<https://x.y|z>"),
        ];
        prop::collection::vec(token, 0..50).prop_map(|v| v.concat())
    }

    proptest! {
        // Failures are reported, not written under the crate as regression files.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn control_characters_only_in_generated_links(
            md in prop_oneof![noise().boxed(), "\\PC{0,200}".boxed(), any::<String>().boxed()],
        ) {
            let out = to_slack_mrkdwn(&md);
            if let Err(e) = check_mrkdwn(&out) {
                prop_assert!(false, "{} for {:?} -> {:?}", e, md, out);
            }
        }
    }
}
