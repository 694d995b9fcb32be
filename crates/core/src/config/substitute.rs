//! `${NAME}` environment substitution in every string of the config tree.
//!
//! `${NAME}` (NAME = `[A-Z_][A-Z0-9_]*`) is replaced by the variable's value; `$${` writes a
//! literal `${`. A reference to a variable that is not set is an error at that string, so a
//! typo in a variable name is found at load time, not at the first model call.

use crate::json5::{Node, Value};

/// A reference to an unset variable, found at `node_span_start` under `path`.
pub(crate) struct Missing {
    pub var: String,
    pub path: String,
    pub offset: usize,
}

/// Replaces references in place. Returns every missing variable.
pub(crate) fn substitute(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<Missing>,
) {
    let span_start = node.span.start;
    match &mut node.value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(var) => missing.push(Missing { var, path: path.to_string(), offset: span_start }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), env, missing);
            }
        }
        Value::Object(members) => {
            for (key, value) in members.iter_mut() {
                let child = if path.is_empty() { key.name.clone() } else { format!("{path}.{}", key.name) };
                substitute(value, &child, env, missing);
            }
        }
        _ => {}
    }
}

/// Expands one string. On a missing variable, returns its name.
pub(crate) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(literal) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(body) = after.strip_prefix("${") {
            match body.find('}') {
                Some(end) if is_var_name(&body[..end]) => {
                    let name = &body[..end];
                    out.push_str(&env(name).ok_or_else(|| name.to_string())?);
                    rest = &body[end + 1..];
                }
                _ => {
                    out.push_str("${");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `s` is exactly one `${NAME}` reference.
pub(crate) fn is_single_reference(s: &str) -> bool {
    s.strip_prefix("${").and_then(|b| b.strip_suffix('}')).is_some_and(is_var_name)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(expand("${KEY}", &env).unwrap(), "sk-1");
        assert_eq!(expand("Bearer ${KEY}!", &env).unwrap(), "Bearer sk-1!");
        assert_eq!(expand("$${KEY}", &env).unwrap(), "${KEY}");
        assert_eq!(expand("cost $5 ${EMPTY}", &env).unwrap(), "cost $5 ");
        assert_eq!(expand("${lower}", &env).unwrap(), "${lower}");
        assert_eq!(expand("${UNSET}", &env).unwrap_err(), "UNSET");
        assert!(is_single_reference("${KEY}"));
        assert!(!is_single_reference("x${KEY}"));
    }
}
