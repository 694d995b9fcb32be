//! Markdown for Discord message content.
//!
//! Discord renders Markdown itself, so the text passes through as written, with three changes:
//! `@everyone` and `@here` get a zero-width space after the `@` (in any letter case, code
//! included) so a model cannot mass-ping a server; pipe tables, which Discord does not render,
//! become aligned columns in a code block; and `####`–`######` headings, which Discord shows
//! literally, become `###`.
//!
//! This module must not split text (chunk the result with [`super::chunk::chunk_lines`]), touch
//! anything inside code blocks other than the mentions, or panic on any input. It is no
//! substitute for sending with `allowed_mentions`, which also covers user and role mentions.

use super::markdown::{self, fence_open, is_fence_close};

/// Converts the model's Markdown into Discord message content.
pub fn to_discord_markdown(md: &str) -> String {
    let lines: Vec<&str> = md.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut fence: Option<(char, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if let Some((ch, len)) = fence {
            if is_fence_close(line, ch, len) {
                fence = None;
            }
            out.push(line.to_owned());
            continue;
        }
        if let Some(open) = fence_open(line) {
            fence = Some((open.ch, open.len));
            out.push(line.to_owned());
            continue;
        }
        if let Some((header, rows, next)) = markdown::table_at(&lines, i - 1) {
            let table = markdown::table_to_text(&header, &rows);
            if !table.contains("```") {
                out.extend(["```".to_owned(), table, "```".to_owned()]);
                i = next;
                continue;
            }
        }
        match markdown::heading(line) {
            Some((level, content)) if level > 3 && !content.is_empty() => out.push(format!("### {content}")),
            _ => out.push(line.to_owned()),
        }
    }
    neutralize_mass_mentions(&out.join("\n"))
}

/// Inserts U+200B after the `@` of every `@everyone` and `@here`.
fn neutralize_mass_mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('@') {
        let (head, after) = rest.split_at(at + 1);
        out.push_str(head);
        if starts_with_ignore_case(after, "everyone") || starts_with_ignore_case(after, "here") {
            out.push('\u{200B}');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mass_mentions_are_neutralized() {
        assert_eq!(to_discord_markdown("hey @everyone and @here!"), "hey @\u{200B}everyone and @\u{200B}here!");
        assert_eq!(to_discord_markdown("@EveryOne @HERE"), "@\u{200B}EveryOne @\u{200B}HERE");
        assert_eq!(to_discord_markdown("```\n@everyone\n```"), "```\n@\u{200B}everyone\n```");
        assert_eq!(to_discord_markdown("mail a@b.c or @someone"), "mail a@b.c or @someone");
    }

    #[test]
    fn everything_else_passes_through() {
        let md = "# Title\n\n**bold** __under__ *it* ~~s~~ ||spoiler|| `a|b` <@123>\n\n> quote\n- item\n\n```rust\nlet x = a | b;\n```";
        assert_eq!(to_discord_markdown(md), md);
        assert_eq!(to_discord_markdown("snake_case 你好 🎉\r\nnext"), "snake_case 你好 🎉\r\nnext");
    }

    #[test]
    fn tables_and_deep_headings() {
        assert_eq!(
            to_discord_markdown("Scores:\n| name | pts |\n|---|--:|\n| **ann** | 3 |\nafter"),
            "Scores:\n```\nname | pts\n---- | ---\nann  | 3\n```\nafter"
        );
        assert_eq!(to_discord_markdown("```\n| a | b |\n|---|---|\n```"), "```\n| a | b |\n|---|---|\n```");
        assert_eq!(to_discord_markdown("#### Small\n###### Tiny"), "### Small\n### Tiny");
    }

    proptest! {
        // Failures are reported, not written under the crate as regression files.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn no_mass_mention_survives_and_nothing_else_changes(
            md in prop::collection::vec(
                prop_oneof![
                    Just("@everyone"), Just("@here"), Just("@HeRe"), Just("@"), Just("```"), Just("\n"),
                    Just("`"), Just("**"), Just(" "), Just("word"), Just("é"), Just("@@"),
                ],
                0..40,
            ).prop_map(|v| v.concat()),
        ) {
            let out = to_discord_markdown(&md);
            let lower = out.to_lowercase();
            prop_assert!(!lower.contains("@everyone") && !lower.contains("@here"));
            prop_assert_eq!(out.replace("@\u{200B}", "@"), md);
        }

        #[test]
        fn never_panics(md in any::<String>()) {
            let _ = to_discord_markdown(&md);
        }
    }
}
