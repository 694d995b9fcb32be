//! `config.get`, `config.set`, `config.patch`, `config.apply`, `config.schema`: the config file as raw JSON5
//! text, with secrets redacted and optimistic concurrency.
//!
//! `config.get` returns the file's text with every literal secret replaced by the marker
//! `__OPENCLAW_REDACTED__`, and a hash of the real text (`hmac-sha256:v1:…`, keyed per process,
//! so it reveals nothing about the content). A write must send that hash as `baseHash`; if the
//! file changed meanwhile the write is refused. Markers left in written text are replaced by the
//! stored secrets, so a client can edit redacted text without ever seeing a secret. Every write
//! is validated first (the same checks as `clawline config validate`) and written atomically;
//! an invalid config is never written. The running gateway keeps its loaded config: answers
//! say `restartRequired`.
//!
//! `config.patch` merges a JSON5 object into the file: objects merge, `null` removes a key,
//! anything else replaces, and the file's comments stay.

use aws_lc_rs::hmac;
use clawline_core::config::redact;
use clawline_core::json5;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::device::encode_base64url;
use crate::protocol::error::RpcError;
use crate::protocol::schema::{EMPTY, Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, READ};
use crate::state::{AppState, ConfigFile};

static DELIVERY: Object = Object {
    props: &[
        opt("channel", Schema::STRING),
        opt("to", Schema::STRING),
        opt("accountId", Schema::STRING),
        opt("threadId", Schema::AnyOf(&[Schema::STRING, Schema::Num { min: None, max: None }])),
    ],
    closed: true,
};
static SET: Object =
    Object { props: &[req("raw", Schema::NON_EMPTY), opt("baseHash", Schema::NON_EMPTY)], closed: true };
static APPLY: Object = Object {
    props: &[
        req("raw", Schema::NON_EMPTY),
        opt("baseHash", Schema::NON_EMPTY),
        opt("sessionKey", Schema::STRING),
        opt("deliveryContext", Schema::Object(&DELIVERY)),
        opt("note", Schema::STRING),
        opt("restartDelayMs", Schema::UINT),
    ],
    closed: true,
};
static PATCH: Object = Object {
    props: &[
        req("raw", Schema::NON_EMPTY),
        opt("baseHash", Schema::NON_EMPTY),
        opt("sessionKey", Schema::STRING),
        opt("deliveryContext", Schema::Object(&DELIVERY)),
        opt("note", Schema::STRING),
        opt("restartDelayMs", Schema::UINT),
        opt("replacePaths", Schema::Array { items: &Schema::NON_EMPTY, min_items: 0, max_items: Some(256) }),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![
        method!("config.get", Access::Scope(READ), Schema::Object(&EMPTY), get),
        method!("config.set", Access::Scope(ADMIN), Schema::Object(&SET), set),
        method!("config.patch", Access::Scope(ADMIN), Schema::Object(&PATCH), patch),
        method!("config.apply", Access::Scope(ADMIN), Schema::Object(&APPLY), apply),
        method!("config.schema", Access::Scope(READ), Schema::Object(&EMPTY), schema),
    ]
}

/// `config.schema`: the config file's JSON Schema, generated from the same definitions the
/// loader uses (so it cannot drift from what is accepted).
async fn schema(_ctx: Ctx, _p: Value) -> Reply {
    static GENERATED: std::sync::OnceLock<(Value, String)> = std::sync::OnceLock::new();
    let (schema, at) = GENERATED.get_or_init(|| {
        let at = clawline_core::time::iso8601_from_ms(clawline_store::now_ms());
        (clawline_core::config::schema::json_schema(), at)
    });
    Ok(json!({"schema": schema, "uiHints": {}, "version": env!("CARGO_PKG_VERSION"), "generatedAt": at}))
}

/// `hmac-sha256:v1:<base64url>` of the text under this process's key.
pub fn hash(state: &AppState, text: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, state.hash_key());
    format!("hmac-sha256:v1:{}", encode_base64url(hmac::sign(&key, text.as_bytes()).as_ref()))
}

fn file(state: &AppState) -> Result<&ConfigFile, RpcError> {
    state.config_file.as_ref().ok_or_else(|| RpcError::unavailable("this gateway was started without a config file"))
}

async fn read(file: &ConfigFile) -> Result<Option<String>, RpcError> {
    let path = file.path.clone();
    tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RpcError::unavailable(format!("cannot read {}: {e}", path.display()))),
    })
    .await
    .map_err(|e| RpcError::unavailable(e.to_string()))?
}

async fn get(ctx: Ctx, _p: Value) -> Reply {
    let state = &ctx.state;
    let file = file(state)?;
    let text = read(file).await?;
    let exists = text.is_some();
    let text = text.unwrap_or_else(|| "{}\n".into());
    let (valid, issues, warnings) = match check(file, &text).await? {
        Ok(w) => (true, Vec::new(), w),
        Err(problems) => (false, problems, Vec::new()),
    };
    let raw = redact::redact_text(&text).unwrap_or_else(|_| String::new());
    let parsed = json5::parse(&text)
        .ok()
        .map(|tree| {
            let mut v = tree.to_json();
            redact::redact_value(&tree, "", &mut v, redact::SECRET_MARKER);
            v
        })
        .unwrap_or(Value::Null);
    let h = hash(state, &text);
    Ok(json!({
        "path": file.path.display().to_string(),
        "exists": exists,
        "raw": raw,
        "parsed": parsed,
        "config": parsed,
        "valid": valid,
        "issues": issues,
        "warnings": warnings,
        "legacyIssues": [],
        "includedPaths": [],
        "hash": h,
        "configRevisionHash": h,
        "appliedConfigHash": h,
    }))
}

/// Runs the binary's config check off the async threads (it may read secret files and
/// resolve the whole config).
async fn check(file: &ConfigFile, text: &str) -> Result<Result<Vec<String>, Vec<String>>, RpcError> {
    let (check, text) = (file.check.clone(), text.to_string());
    tokio::task::spawn_blocking(move || check(&text)).await.map_err(|e| RpcError::unavailable(e.to_string()))
}

/// One config write at a time, so a check of `baseHash` and the write it allows are atomic.
static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Checks `baseHash` against `current` (the text `new_text` was made from), restores secrets,
/// validates and writes. Hold [`WRITING`] from reading `current` until this returns.
async fn write(state: &AppState, current: Option<String>, base_hash: Option<&str>, new_text: String) -> Reply {
    let file = file(state)?;
    if let Some(current) = &current {
        let expected = hash(state, current);
        match base_hash {
            None => {
                return Err(RpcError::bad("config base hash required: call config.get and send its hash as baseHash"));
            }
            Some(h) if h != expected => {
                return Err(RpcError::bad(
                    "config changed since it was read (baseHash does not match); call config.get again and reapply your change",
                ));
            }
            Some(_) => {}
        }
    }
    let text = redact::restore_text(&new_text, current.as_deref().unwrap_or("{}"))
        .map_err(|e| RpcError::bad(format!("invalid config: {e}")))?;
    let warnings = check(file, &text).await?.map_err(|problems| {
        RpcError::bad(format!("invalid config: {}", problems.join("; "))).details(json!({"issues": problems}))
    })?;
    let path = file.path.clone();
    let body = text.clone();
    tokio::task::spawn_blocking(move || clawline_store::write_private_file(&path, &body))
        .await
        .map_err(|e| RpcError::unavailable(e.to_string()))?
        .map_err(|e| RpcError::unavailable(format!("cannot write the config: {e}")))?;
    tracing::info!(path = %file.path.display(), "config written through the control plane");
    Ok(json!({
        "ok": true,
        "path": file.path.display().to_string(),
        "hash": hash(state, &text),
        "warnings": warnings,
        "restartRequired": true,
        "note": "saved; restart the gateway to apply it",
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParams {
    raw: String,
    base_hash: Option<String>,
}

async fn set(ctx: Ctx, p: Value) -> Reply {
    let p: RawParams = parse("config.set", p)?;
    replace(&ctx.state, p).await
}

async fn apply(ctx: Ctx, p: Value) -> Reply {
    let p: RawParams = parse("config.apply", p)?;
    replace(&ctx.state, p).await
}

/// `config.set` and `config.apply`: the whole text replaced.
async fn replace(state: &AppState, p: RawParams) -> Reply {
    json5::parse(&p.raw).map_err(|e| {
        RpcError::bad(format!("invalid config: {} at {}", e.message, json5::line_col(&p.raw, e.offset)))
    })?;
    let _writing = WRITING.lock().await;
    let current = read(file(state)?).await?;
    write(state, current, p.base_hash.as_deref(), p.raw).await
}

/// A leaf edit of a merge patch: the key path as segments (keys may contain dots), and
/// `Some(value)` to set or `None` to remove.
type PatchEdit = (Vec<String>, Option<Value>);

/// The leaf edits a merge patch makes. `replace` names (dotted) objects set whole, not merged.
fn patch_edits(prefix: &[String], patch: &Value, replace: &[String], out: &mut Vec<PatchEdit>) {
    let Value::Object(map) = patch else { return };
    for (k, v) in map {
        let mut path = prefix.to_vec();
        path.push(k.clone());
        match v {
            Value::Null => out.push((path, None)),
            Value::Object(_) if !replace.contains(&path.join(".")) => patch_edits(&path, v, replace, out),
            other => out.push((path, Some(other.clone()))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchParams {
    raw: String,
    base_hash: Option<String>,
    #[serde(default)]
    replace_paths: Vec<String>,
}

async fn patch(ctx: Ctx, p: Value) -> Reply {
    let p: PatchParams = parse("config.patch", p)?;
    let tree = json5::parse(&p.raw).map_err(|e| {
        RpcError::bad(format!("invalid config patch: {} at {}", e.message, json5::line_col(&p.raw, e.offset)))
    })?;
    let patch = tree.to_json();
    if !patch.is_object() {
        return Err(RpcError::bad("invalid config patch: raw must be a JSON5 object"));
    }
    let _writing = WRITING.lock().await;
    let current = read(file(&ctx.state)?).await?;
    let mut text = current.clone().unwrap_or_else(|| "{}\n".into());
    let mut edits = Vec::new();
    patch_edits(&[], &patch, &p.replace_paths, &mut edits);
    for (path, value) in edits {
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        text = match value {
            Some(v) => json5::edit::set_segments(&text, &segments, &v),
            None => json5::edit::remove_segments(&text, &segments),
        }
        .map_err(|e| RpcError::bad(format!("cannot patch `{}`: {e}", path.join("."))))?;
    }
    write(&ctx.state, current, p.base_hash.as_deref(), text).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_edits() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut out = Vec::new();
        patch_edits(
            &[],
            &json!({"gateway": {"port": 1, "auth": null}, "tools": {"exec": {"safeBins": ["ls"]}}}),
            &[],
            &mut out,
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            out,
            vec![
                (p(&["gateway", "auth"]), None),
                (p(&["gateway", "port"]), Some(json!(1))),
                (p(&["tools", "exec", "safeBins"]), Some(json!(["ls"]))),
            ]
        );
        let mut out = Vec::new();
        patch_edits(&[], &json!({"agents": {"entries": {"a": {}}}}), &["agents.entries".to_string()], &mut out);
        assert_eq!(out, vec![(p(&["agents", "entries"]), Some(json!({"a": {}})))]);
        // A key with a dot is one key, not two levels.
        let mut out = Vec::new();
        patch_edits(&[], &json!({"models": {"providers": {"my.llm": {"baseUrl": "http://x"}}}}), &[], &mut out);
        assert_eq!(out, vec![(p(&["models", "providers", "my.llm", "baseUrl"]), Some(json!("http://x")))]);
        let text =
            json5::edit::set_segments("{}", &["models", "providers", "my.llm", "baseUrl"], &json!("http://x")).unwrap();
        assert_eq!(json5::parse(&text).unwrap().to_json()["models"]["providers"]["my.llm"]["baseUrl"], "http://x");
    }
}
