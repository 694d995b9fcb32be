//! `models.list`: the models the configured providers offer.
//!
//! Every model listed under `models.providers.<id>.models` is a choice, plus each agent's
//! configured model when its provider lists none (providers found through `OPENAI_API_KEY` and
//! the like). `available` says whether the provider can be called (it has a key, or it is a
//! local server that needs none). With `view: "all"`, the built-in providers that are not set
//! up are listed too, unavailable (`missing-auth`). A model whose every credential
//! is resting after failures is unavailable with `cooldown`.

use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method};
use crate::protocol::schema::{Object, Schema, opt};
use crate::protocol::scopes::READ;

static LIST: Object = Object {
    props: &[
        opt("agentId", Schema::NON_EMPTY),
        opt("includeProviderCapabilities", Schema::Bool),
        opt("preparedOnly", Schema::Bool),
        opt("refresh", Schema::Bool),
        opt("view", Schema::Enum(&["default", "configured", "provider-config", "all"])),
        // Sent by 2026.9.6 clients, newer than the published schema.
        opt("sessionKey", Schema::STRING),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![method!("models.list", Access::Scope(READ), Schema::Object(&LIST), list)]
}

/// Input kinds in the protocol's vocabulary (unknown ones are left out).
fn inputs(declared: &[String]) -> Vec<&'static str> {
    const KNOWN: &[&str] = &["text", "image", "audio", "video", "document"];
    let mut out: Vec<&'static str> = KNOWN.iter().copied().filter(|k| declared.iter().any(|d| d == k)).collect();
    if out.is_empty() {
        out.push("text");
    }
    out
}

async fn list(ctx: Ctx, p: Value) -> Reply {
    let runtime = &ctx.state.runtime;
    let config = runtime.config();
    let mut models: Vec<Value> = Vec::new();
    for p in config.providers.values() {
        let available = runtime.check_provider(&p.id).is_ok();
        for m in &p.models {
            models.push(json!({
                "id": m.id,
                "name": m.name.clone().unwrap_or_else(|| m.id.clone()),
                "provider": p.id,
                "available": available,
                "reasoning": m.reasoning,
                "input": inputs(&m.input),
                "supportsTools": m.compat.supports_tools.unwrap_or(true),
            }));
            if let Some(w) = m.context_window.filter(|w| *w > 0) {
                models.last_mut().into_iter().for_each(|v| v["contextWindow"] = json!(w));
            }
            if !available {
                models.last_mut().into_iter().for_each(|v| v["unavailableReason"] = json!("missing-auth"));
            } else if runtime.all_resting(&p.id, &m.id) {
                models.last_mut().into_iter().for_each(|v| {
                    v["available"] = json!(false);
                    v["unavailableReason"] = json!("cooldown");
                });
            }
        }
    }
    for a in config.agents.values() {
        let Some(m) = &a.model else { continue };
        let listed = models.iter().any(|v| v["provider"] == m.provider.as_str() && v["id"] == m.model.as_str());
        if !listed && config.providers.contains_key(&m.provider) {
            let available = runtime.check_provider(&m.provider).is_ok();
            let mut v = json!({"id": m.model, "name": m.model, "provider": m.provider, "available": available, "input": ["text"]});
            if !available {
                v["unavailableReason"] = json!("missing-auth");
            }
            models.push(v);
        }
    }
    // `view: "all"` also lists the built-in providers that are not set up.
    if p.get("view").and_then(Value::as_str) == Some("all") {
        for k in clawline_providers::catalog::PRESETS.iter().filter(|k| !config.providers.contains_key(k.id)) {
            for m in k.models {
                let mut input = vec!["text"];
                if m.image {
                    input.push("image");
                }
                models.push(json!({
                    "id": m.id, "name": m.name, "provider": k.id, "available": false,
                    "reasoning": m.reasoning, "input": input, "contextWindow": m.context_window,
                    "unavailableReason": "missing-auth",
                }));
            }
        }
    }
    Ok(json!({"models": models}))
}
