//! In-place edits of JSON5 source text that keep comments and formatting.
//!
//! `clawline config set` changes one value in a file a person wrote by hand. Re-serializing the
//! parsed tree would drop every comment, so instead this module splices new text into the
//! original at the spans the parser recorded. It only produces text; the caller re-validates the
//! result before writing it anywhere.

use super::parser::parse;
use super::value::{Key, Node, Value, split_path};

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the file does not parse: {0}")]
    Parse(String),
    #[error("the path is empty")]
    EmptyPath,
    #[error("`{0}` is not an object, so `{1}` cannot be set inside it")]
    NotAnObject(String, String),
    #[error("array index `{0}` does not exist in `{1}` (only existing items can be replaced)")]
    NoSuchIndex(String, String),
}

/// Returns `src` with the value at `path` set to `value` (rendered as JSON, which is valid JSON5).
/// Missing intermediate objects are created; an existing value is replaced in place.
pub fn set(src: &str, path: &str, value: &serde_json::Value) -> Result<String, EditError> {
    set_segments(src, &split_path(path), value)
}

/// [`set`] with the path as its segments, for keys that contain `.` or `[` (a header name, a
/// provider id) and so cannot be written as a dotted path.
pub fn set_segments(src: &str, segments: &[&str], value: &serde_json::Value) -> Result<String, EditError> {
    let root = parse(src).map_err(|e| EditError::Parse(e.message))?;
    if segments.is_empty() {
        return Err(EditError::EmptyPath);
    }
    let rendered = serde_json::to_string(value).unwrap_or_else(|_| "null".into());

    // Walk down as far as the path exists.
    let mut node = &root;
    let mut walked = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let next = match &node.value {
            Value::Object(_) => node.get(segment),
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(item) => Some(item),
                None => {
                    return Err(EditError::NoSuchIndex(segment.to_string(), walked.join(".")));
                }
            },
            _ => {
                return Err(EditError::NotAnObject(walked.join("."), segments[i..].join(".")));
            }
        };
        match next {
            Some(child) => {
                node = child;
                walked.push(*segment);
            }
            None => {
                let Value::Object(members) = &node.value else {
                    return Err(EditError::NotAnObject(walked.join("."), segments[i..].join(".")));
                };
                return Ok(insert(src, node, members, &segments[i..], &rendered));
            }
        }
    }
    // The whole path exists: replace the value's text.
    let mut out = String::with_capacity(src.len() + rendered.len());
    out.push_str(&src[..node.span.start]);
    out.push_str(&rendered);
    out.push_str(&src[node.span.end..]);
    Ok(out)
}

/// Returns `src` without the object member at `path` (and its separating comma). A path that
/// does not exist leaves the text unchanged. Comments around the member are kept.
pub fn remove(src: &str, path: &str) -> Result<String, EditError> {
    remove_segments(src, &split_path(path))
}

/// [`remove`] with the path as its segments (see [`set_segments`]).
pub fn remove_segments(src: &str, segments: &[&str]) -> Result<String, EditError> {
    let root = parse(src).map_err(|e| EditError::Parse(e.message))?;
    let Some((last, init)) = segments.split_last() else { return Err(EditError::EmptyPath) };
    let Some(parent) = root.at_segments(init) else { return Ok(src.to_string()) };
    let Value::Object(members) = &parent.value else {
        return Err(EditError::NotAnObject(init.join("."), last.to_string()));
    };
    let Some(i) = members.iter().position(|(k, _)| k.name == *last) else { return Ok(src.to_string()) };
    let (key, value) = &members[i];
    let mut start = key.span.start;
    let mut end = value.span.end;
    let gap = src[end..].len() - src[end..].trim_start_matches([' ', '\t']).len();
    if src[end + gap..].starts_with(',') {
        end += gap + 1;
    } else if i > 0 {
        let prev_end = members[i - 1].1.span.end;
        if let Some(comma) = src[prev_end..start].find(',') {
            start = prev_end + comma;
        }
    }
    // Drop the whole line when the member was alone on it.
    let line_start = src[..start].rfind('\n').map_or(0, |n| n + 1);
    let line_end = src[end..].find('\n').map_or(src.len(), |n| end + n);
    if src[line_start..start].trim().is_empty() && src[end..line_end].trim().is_empty() && line_start > 0 {
        start = line_start - 1;
        end = line_end;
    }
    Ok(format!("{}{}", &src[..start], &src[end..]))
}

fn render_key(key: &str) -> String {
    let mut chars = key.chars();
    let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident { key.to_string() } else { serde_json::to_string(key).unwrap_or_default() }
}

/// Inserts `rest[0]: { rest[1]: { … value } }` as a new member of the object `parent`.
fn insert(src: &str, parent: &Node, members: &[(Key, Node)], rest: &[&str], rendered: &str) -> String {
    let mut member_value = rendered.to_string();
    for key in rest[1..].iter().rev() {
        member_value = format!("{{ {}: {} }}", render_key(key), member_value);
    }
    let member = format!("{}: {}", render_key(rest[0]), member_value);
    match members.last() {
        Some((last_key, last_value)) => {
            let indent = line_indent(src, last_key.span.start);
            let after = last_value.span.end;
            let gap = src[after..].len() - src[after..].trim_start_matches([' ', '\t']).len();
            if src[after + gap..].starts_with(',') {
                let at = after + gap + 1;
                format!("{}\n{indent}{member},{}", &src[..at], &src[at..])
            } else {
                format!("{},\n{indent}{member}{}", &src[..after], &src[after..])
            }
        }
        None => {
            // `{}` or `{ /* comments */ }`: put the member on its own line after the brace.
            let open = parent.span.start + 1;
            let outer = line_indent(src, parent.span.start);
            format!("{}\n{outer}  {member},\n{outer}{}", &src[..open], src[open..].trim_start_matches([' ', '\t']))
        }
    }
}

/// The leading whitespace of the line that contains `offset`.
fn line_indent(src: &str, offset: usize) -> &str {
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &src[line_start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(src: &str, path: &str) -> serde_json::Value {
        parse(src).unwrap().at_path(path).unwrap().to_json()
    }

    #[test]
    fn replaces_an_existing_value_and_keeps_comments() {
        let src = "{\n  // the port\n  gateway: { port: 18789 }, // trailing\n}\n";
        let out = set(src, "gateway.port", &json!(19000)).unwrap();
        assert_eq!(out, "{\n  // the port\n  gateway: { port: 19000 }, // trailing\n}\n");
    }

    #[test]
    fn inserts_missing_members_and_objects() {
        let src = "{\n  // keep me\n  gateway: {\n    port: 1,\n  },\n}\n";
        let out = set(src, "gateway.auth.token", &json!("${TOKEN}")).unwrap();
        assert!(out.contains("// keep me"));
        assert_eq!(get(&out, "gateway.auth.token"), json!("${TOKEN}"));
        assert_eq!(get(&out, "gateway.port"), json!(1));

        let out = set("{ a: 1 }", "b", &json!([1, 2])).unwrap();
        assert_eq!(get(&out, "b"), json!([1, 2]));
        assert_eq!(get(&out, "a"), json!(1));

        let out = set("{}", "x.y-z", &json!(true)).unwrap();
        assert_eq!(get(&out, "x.y-z"), json!(true));

        let out =
            set("{\n  models: { providers: {} },\n}", "models.providers.local.baseUrl", &json!("http://h")).unwrap();
        assert_eq!(get(&out, "models.providers.local.baseUrl"), json!("http://h"));
    }

    #[test]
    fn removes_members_and_their_commas() {
        let src = "{\n  // keep\n  a: 1,\n  b: { c: 2, d: 3 },\n}\n";
        let out = remove(src, "a").unwrap();
        assert_eq!(out, "{\n  // keep\n  b: { c: 2, d: 3 },\n}\n");
        let out = remove(&out, "b.d").unwrap();
        assert_eq!(get(&out, "b"), json!({"c": 2}));
        let out = remove(&out, "b.c").unwrap();
        assert_eq!(get(&out, "b"), json!({}));
        assert_eq!(remove("{ a: 1 }", "zz.y").unwrap(), "{ a: 1 }");
        assert_eq!(get(&remove("{ a: 1, b: 2 }", "b").unwrap(), ""), json!({"a": 1}));
    }

    #[test]
    fn replaces_array_items_but_does_not_invent_them() {
        let out = set("{ list: [1, 2] }", "list[1]", &json!(5)).unwrap();
        assert_eq!(get(&out, "list"), json!([1, 5]));
        assert!(matches!(set("{ list: [1] }", "list.3", &json!(5)), Err(EditError::NoSuchIndex(..))));
        assert!(matches!(set("{ a: 1 }", "a.b", &json!(5)), Err(EditError::NotAnObject(..))));
    }
}
