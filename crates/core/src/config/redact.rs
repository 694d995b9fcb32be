//! Hiding the secrets written in a config file, and putting them back.
//!
//! Secrets live at known key paths (the gateway token and password, the hooks token, every
//! provider's `apiKey` and header values, the OpenTelemetry export's header values). A secret written literally is hidden; a reference (`"${VAR}"`,
//! `{source, id}`) is not a secret and is shown. Redacting the *text* keeps comments and layout,
//! so a client can edit the redacted text and send it back: [`restore_text`] then puts the real
//! values back wherever the marker still stands, so a round trip never loses a secret and never
//! needs to show one. Pure functions over text; no I/O.

use crate::json5::{self, Node, Value, split_path};

/// The marker OpenClaw clients recognize in redacted config text.
pub const SECRET_MARKER: &str = "__OPENCLAW_REDACTED__";

/// A key path as its segments: provider ids and header names may contain dots, so secret
/// paths are never joined into dotted strings to be split again.
pub type Segments = Vec<String>;

fn segs(path: &[&str]) -> Segments {
    path.iter().map(|s| s.to_string()).collect()
}

/// Key paths in `tree` that may hold secrets.
pub fn secret_paths_in(tree: &Node) -> Vec<Segments> {
    let mut out =
        vec![segs(&["gateway", "auth", "token"]), segs(&["gateway", "auth", "password"]), segs(&["hooks", "token"])];
    if let Some(Value::Object(providers)) = tree.at_path("models.providers").map(|n| &n.value) {
        for (id, provider) in providers {
            out.push(segs(&["models", "providers", &id.name, "apiKey"]));
            if let Some(Value::Object(headers)) = provider.get("headers").map(|n| &n.value) {
                out.extend(headers.iter().map(|(h, _)| segs(&["models", "providers", &id.name, "headers", &h.name])));
            }
        }
    }
    if let Some(Value::Object(headers)) = tree.at_path("diagnostics.otel.headers").map(|n| &n.value) {
        out.extend(headers.iter().map(|(h, _)| segs(&["diagnostics", "otel", "headers", &h.name])));
    }
    out
}

fn is_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}')
}

/// The literal secrets in `tree`: path and node.
fn literal_secrets(tree: &Node) -> Vec<(Segments, &Node)> {
    secret_paths_in(tree)
        .into_iter()
        .filter_map(|p| {
            let node = tree.at_segments(&p)?;
            matches!(&node.value, Value::String(s) if !is_reference(s) && s != SECRET_MARKER).then_some((p, node))
        })
        .collect()
}

/// A JSON pointer for `segments` (`~` and `/` escaped).
fn pointer(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

/// Replaces literal secrets at or below `path` (dotted, as a person types it) in `value` (the
/// JSON of the node at `path`).
pub fn redact_value(tree: &Node, path: &str, value: &mut serde_json::Value, marker: &str) {
    let prefix = split_path(path);
    for (secret, _) in literal_secrets(tree) {
        let under = secret.len() >= prefix.len() && secret.iter().zip(&prefix).all(|(a, b)| a == b);
        if !under {
            continue;
        }
        let rest = &secret[prefix.len()..];
        if rest.is_empty() {
            *value = serde_json::Value::String(marker.into());
        } else if let Some(v) = value.pointer_mut(&pointer(rest)) {
            *v = serde_json::Value::String(marker.into());
        }
    }
}

/// Is `path` (dotted) one of the secret paths of `tree`?
pub fn is_secret_path(tree: &Node, path: &str) -> bool {
    let path = split_path(path);
    secret_paths_in(tree).iter().any(|s| s.iter().eq(path.iter().copied()))
}

fn splice(text: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, with) in edits {
        out.replace_range(start..end, &with);
    }
    out
}

/// The file text with every literal secret replaced by `"<marker>"`.
pub fn redact_text(text: &str) -> Result<String, json5::ParseError> {
    let tree = json5::parse(text)?;
    let edits = literal_secrets(&tree)
        .into_iter()
        .map(|(_, node)| (node.span.start, node.span.end, format!("\"{SECRET_MARKER}\"")))
        .collect();
    Ok(splice(text, edits))
}

/// `new_text` with each marker at a secret path replaced by the value the same path has in
/// `old_text`. A marker whose path has no old value is an error (the secret would be lost).
pub fn restore_text(new_text: &str, old_text: &str) -> Result<String, String> {
    let new = json5::parse(new_text).map_err(|e| e.message)?;
    let old = json5::parse(old_text).ok();
    let mut edits = Vec::new();
    for path in secret_paths_in(&new) {
        let Some(node) = new.at_segments(&path) else { continue };
        if !matches!(&node.value, Value::String(s) if s == SECRET_MARKER) {
            continue;
        }
        let original = old.as_ref().and_then(|o| o.at_segments(&path)).map(|n| &old_text[n.span.start..n.span.end]);
        match original {
            Some(o) => edits.push((node.span.start, node.span.end, o.to_string())),
            None => {
                return Err(format!(
                    "`{}` holds the redaction marker but has no stored value to restore",
                    path.join(".")
                ));
            }
        }
    }
    Ok(splice(new_text, edits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
  // the token
  gateway: { auth: { token: "s3cret-token" } },
  models: { providers: {
    a: { apiKey: "${A_KEY}", headers: { "x-k": 'hv' } },
    b: { apiKey: "sk-b" },
  } },
}"#;

    #[test]
    fn redacts_literals_keeps_references_and_restores() {
        let red = redact_text(FILE).unwrap();
        assert!(!red.contains("s3cret-token") && !red.contains("sk-b") && !red.contains("'hv'"), "{red}");
        assert!(red.contains("${A_KEY}") && red.contains("// the token"));
        assert_eq!(red.matches(SECRET_MARKER).count(), 3);
        assert_eq!(restore_text(&red, FILE).unwrap(), FILE);
        let edited = red.replace("a: {", "a: { baseUrl: \"http://x\",");
        let restored = restore_text(&edited, FILE).unwrap();
        assert!(restored.contains("s3cret-token") && restored.contains("baseUrl"));
        let orphan = format!("{{ gateway: {{ auth: {{ password: \"{SECRET_MARKER}\" }} }} }}");
        assert!(restore_text(&orphan, FILE).is_err());
    }

    #[test]
    fn redacts_values_below_a_path() {
        let tree = json5::parse(FILE).unwrap();
        let mut v = tree.at_path("models").unwrap().to_json();
        redact_value(&tree, "models", &mut v, "[x]");
        assert_eq!(v["providers"]["b"]["apiKey"], "[x]");
        assert_eq!(v["providers"]["a"]["apiKey"], "${A_KEY}");
        assert!(is_secret_path(&tree, "gateway.auth.token"));
        assert!(!is_secret_path(&tree, "gateway.port"));
    }

    #[test]
    fn keys_with_dots_and_slashes_are_still_secrets() {
        let file =
            r#"{ models: { providers: { "my.llm": { apiKey: "sk-dot", headers: { "x.api/key~1": "hv-dot" } } } } }"#;
        let red = redact_text(file).unwrap();
        assert!(!red.contains("sk-dot") && !red.contains("hv-dot"), "{red}");
        assert_eq!(restore_text(&red, file).unwrap(), file);
        let tree = json5::parse(file).unwrap();
        let mut v = tree.to_json();
        redact_value(&tree, "", &mut v, "[x]");
        assert_eq!(v["models"]["providers"]["my.llm"]["apiKey"], "[x]");
        assert_eq!(v["models"]["providers"]["my.llm"]["headers"]["x.api/key~1"], "[x]");
        let mut v = tree.at_path("models").unwrap().to_json();
        redact_value(&tree, "models", &mut v, "[x]");
        assert!(!v.to_string().contains("-dot"), "{v}");
    }
}
