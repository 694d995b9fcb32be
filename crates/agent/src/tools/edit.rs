//! `edit`: exact text replacements in one file. Each `oldText` must occur exactly once in the
//! original; edits may not overlap; all apply or none do.

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, blocking, path, str_arg};

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Replace exact text in a file. Each oldText must appear exactly once in the original file; edits must not overlap. All edits apply together or not at all.",
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace."},
                "edits": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "oldText": {"type": "string", "description": "Exact text to replace; unique in the file."},
                            "newText": {"type": "string", "description": "Replacement text."}
                        },
                        "required": ["oldText", "newText"]
                    }
                }
            },
            "required": ["path", "edits"]
        }),
    )
}

/// Applies `edits` to `original`, or explains why not.
pub(crate) fn apply(original: &str, edits: &[(String, String)]) -> Result<String, String> {
    let mut spans: Vec<(usize, usize, &str, usize)> = Vec::new();
    for (i, (old, new)) in edits.iter().enumerate() {
        let n = i + 1;
        if old.is_empty() {
            return Err(format!("edit {n}: oldText is empty."));
        }
        let mut found = original.match_indices(old.as_str());
        let Some((at, _)) = found.next() else {
            return Err(format!("edit {n}: oldText was not found. Read the file again and copy the text exactly."));
        };
        let more = found.count();
        if more > 0 {
            return Err(format!(
                "edit {n}: oldText appears {} times; include more surrounding text to make it unique.",
                more + 1
            ));
        }
        spans.push((at, at + old.len(), new.as_str(), n));
    }
    spans.sort_by_key(|s| s.0);
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!("edits {} and {} overlap; merge them into one edit.", pair[0].3, pair[1].3));
        }
    }
    let mut out = String::with_capacity(original.len());
    let mut cursor = 0;
    for (start, end, new, _) in spans {
        out.push_str(&original[cursor..start]);
        out.push_str(new);
        cursor = end;
    }
    out.push_str(&original[cursor..]);
    Ok(out)
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let requested = match str_arg(args, "path") {
        Ok(p) => p.to_string(),
        Err(e) => return e,
    };
    let Some(Value::Array(items)) = args.get("edits") else {
        return ToolOutput::err("`edits` is required: a list of {oldText, newText}.");
    };
    let mut edits = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match (item.get("oldText").and_then(Value::as_str), item.get("newText").and_then(Value::as_str)) {
            (Some(o), Some(n)) => edits.push((o.to_string(), n.to_string())),
            _ => return ToolOutput::err(format!("edit {}: oldText and newText must both be strings.", i + 1)),
        }
    }
    if edits.is_empty() {
        return ToolOutput::err("`edits` is empty.");
    }
    let ws = ctx.workspace.clone();
    blocking(move || {
        let file = match path::resolve(&ws, &requested) {
            Ok(p) => p,
            Err(e) => return ToolOutput::err(e),
        };
        let original = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ToolOutput::err(format!("`{requested}` does not exist. Use write to create it."));
            }
            Err(e) => return ToolOutput::err(format!("cannot read `{requested}`: {e}")),
        };
        match apply(&original, &edits) {
            Ok(updated) => {
                let tmp = file.with_extension("clawline-tmp");
                match std::fs::write(&tmp, updated).and_then(|_| std::fs::rename(&tmp, &file)) {
                    Ok(()) => ToolOutput::ok(format!(
                        "Edited {} ({} replacement(s)).",
                        path::display(&ws, &file),
                        edits.len()
                    )),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        ToolOutput::err(format!("cannot write `{requested}`: {e}"))
                    }
                }
            }
            Err(why) => ToolOutput::err(why),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::apply;

    fn e(o: &str, n: &str) -> (String, String) {
        (o.into(), n.into())
    }

    #[test]
    fn applies_unique_non_overlapping_edits() {
        assert_eq!(apply("a b c", &[e("a", "A"), e("c", "C")]).unwrap(), "A b C");
        assert!(apply("a a", &[e("a", "x")]).unwrap_err().contains("appears 2 times"));
        assert!(apply("abc", &[e("z", "x")]).unwrap_err().contains("not found"));
        assert!(apply("abcdef", &[e("abc", "x"), e("cde", "y")]).unwrap_err().contains("overlap"));
        assert!(apply("abc", &[e("", "x")]).unwrap_err().contains("empty"));
    }
}
