//! `commands.list`, `tools.catalog`, `tools.invoke`, `cron.list`.
//!
//! These describe what exists, and what exists is reported truthfully: no scheduled jobs
//! exist yet (`cron.list` is empty), and there are no slash commands. `tools.invoke` runs one built-in tool in an
//! agent's workspace with the same confinement as a model's call; tools that change files or
//! run programs need `operator.admin`.

use clawline_agent::tools;

use crate::tool_invoke;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, READ, WRITE};

static COMMANDS: Object = Object {
    props: &[
        opt("agentId", Schema::NON_EMPTY),
        opt("scope", Schema::Enum(&["text", "native", "both"])),
        opt("includeArgs", Schema::Bool),
        opt("provider", Schema::STRING),
        opt("sessionKey", Schema::STRING),
    ],
    closed: true,
};
static CATALOG: Object =
    Object { props: &[opt("agentId", Schema::NON_EMPTY), opt("includePlugins", Schema::Bool)], closed: true };
static INVOKE: Object = Object {
    props: &[
        req("name", Schema::NON_EMPTY),
        opt("args", Schema::OBJECT),
        opt("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("confirm", Schema::Bool),
        opt("idempotencyKey", Schema::NON_EMPTY),
    ],
    closed: true,
};
static CRON: Object = Object {
    props: &[
        opt("includeDisabled", Schema::Bool),
        opt("limit", Schema::int_range(1, 200)),
        opt("offset", Schema::UINT),
        opt("query", Schema::STRING),
        opt("enabled", Schema::Enum(&["all", "enabled", "disabled"])),
        opt("agentId", Schema::NON_EMPTY),
        opt("compact", Schema::Bool),
    ],
    closed: true,
};

/// Tools that only read.
const READ_ONLY_TOOLS: &[&str] = &["read", "ls"];

fn invoke_scope(params: &Value) -> &'static str {
    match params.get("name").and_then(Value::as_str) {
        Some(n) if READ_ONLY_TOOLS.contains(&n) => WRITE,
        _ => ADMIN,
    }
}

pub fn methods() -> Vec<Method> {
    vec![
        method!("commands.list", Access::Scope(READ), Schema::Object(&COMMANDS), commands),
        method!("tools.catalog", Access::Scope(READ), Schema::Object(&CATALOG), catalog),
        method!("tools.invoke", Access::Dynamic(invoke_scope), Schema::Object(&INVOKE), invoke),
        method!("cron.list", Access::Scope(READ), Schema::Object(&CRON), cron),
    ]
}

async fn commands(_ctx: Ctx, _p: Value) -> Reply {
    Ok(json!({"commands": []}))
}

fn agent_id(ctx: &Ctx, requested: Option<String>) -> Result<String, RpcError> {
    let config = ctx.state.runtime.config();
    let id = requested.unwrap_or_else(|| config.default_agent.clone());
    config.agent(&id).map(|a| a.id.clone()).ok_or_else(|| RpcError::bad(format!("unknown agent id: {id}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentOnly {
    agent_id: Option<String>,
}

async fn catalog(ctx: Ctx, p: Value) -> Reply {
    let p: AgentOnly = parse("tools.catalog", p)?;
    let id = agent_id(&ctx, p.agent_id)?;
    let specs = tools::specs(&ctx.state.runtime.config().tools, ctx.state.runtime.config().memory.enabled);
    let list: Vec<Value> = specs
        .iter()
        .map(|s| {
            let risk = match s.name.as_str() {
                "exec" => "high",
                "write" | "edit" => "medium",
                _ => "low",
            };
            json!({
                "id": s.name, "label": s.name, "description": s.description, "source": "core",
                "risk": risk, "defaultProfiles": ["coding", "full"],
            })
        })
        .collect();
    Ok(json!({
        "agentId": id,
        "profiles": [{"id": "coding", "label": "Coding"}, {"id": "full", "label": "Full"}],
        "groups": [{"id": "workspace", "label": "Workspace", "source": "core", "tools": list}],
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvokeParams {
    name: String,
    #[serde(default)]
    args: serde_json::Map<String, Value>,
    agent_id: Option<String>,
    idempotency_key: Option<String>,
}

async fn invoke(ctx: Ctx, p: Value) -> Reply {
    let p: InvokeParams = parse("tools.invoke", p)?;
    let caller = format!("ws:{}", ctx.conn.id);
    let out = match tool_invoke::run(
        &ctx.state,
        p.agent_id.as_deref(),
        &p.name,
        p.args,
        p.idempotency_key.as_deref(),
        &caller,
    )
    .await
    {
        Ok(out) => out,
        Err(e @ (tool_invoke::NotRun::UnknownAgent(_) | tool_invoke::NotRun::KeyReused(_))) => {
            return Err(RpcError::bad(e.message()));
        }
        Err(e @ tool_invoke::NotRun::NotAvailable(_)) => {
            return Ok(
                json!({"ok": false, "toolName": p.name, "error": {"code": "not_found", "message": e.message()}}),
            );
        }
    };
    if out.is_error {
        Ok(
            json!({"ok": false, "toolName": p.name, "source": "core", "error": {"code": "tool_error", "message": out.text}}),
        )
    } else {
        Ok(
            json!({"ok": true, "toolName": p.name, "source": "core", "output": {"content": [{"type": "text", "text": out.text}]}}),
        )
    }
}

async fn cron(_ctx: Ctx, _p: Value) -> Reply {
    Ok(json!({"jobs": [], "total": 0}))
}
