//! `doctor.memory.status` and `memory.search`: an agent's long-term memory as operators see it.
//!
//! `doctor.memory.status {agentId?, probe?, deep?}` answers `{agentId, provider, searchMode
//! ("hybrid" | "fts-only"), reason?, embedding: {ok, error?}, status}`: the mode is what search
//! would use now and `reason` why it is text-only, `status` is `clawline memory status --json`'s
//! object. With `probe` (or `deep`) the embedder is called once to see that it answers;
//! without, `embedding.ok` says whether vectors are usable. OpenClaw's dreaming fields are not
//! there: clawline has no dreaming.
//!
//! `memory.search {query, agentId?, maxResults? (1–50, default 20), minScore?}` catches the
//! index up (as the tool does) and answers `{agentId, provider, searchMode, reason?, results:
//! [{path, startLine, endLine, score, snippet}]}`; `minScore` drops results below it on top of
//! `memory.search.query.minScore`.
//!
//! OpenClaw publishes no parameter schemas for these two; the parameters are the ones its
//! handlers read. Memory switched off, or an index that cannot open, is `UNAVAILABLE`.

use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::READ;
use clawline_memory::index::{Mode, SearchOptions};

static STATUS: Object = Object {
    props: &[opt("agentId", Schema::STRING), opt("probe", Schema::Bool), opt("deep", Schema::Bool)],
    closed: true,
};

static SEARCH: Object = Object {
    props: &[
        req("query", Schema::NON_EMPTY),
        opt("agentId", Schema::STRING),
        opt("maxResults", Schema::Num { min: None, max: None }),
        opt("minScore", Schema::Num { min: None, max: None }),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![
        method!("doctor.memory.status", Access::Scope(READ), Schema::Object(&STATUS), status),
        method!("memory.search", Access::Scope(READ), Schema::Object(&SEARCH), search),
    ]
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusParams {
    agent_id: Option<String>,
    #[serde(default)]
    probe: bool,
    #[serde(default)]
    deep: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchParams {
    query: String,
    agent_id: Option<String>,
    max_results: Option<f64>,
    min_score: Option<f64>,
}

/// The agent (given or default) and its memory, or the refusal.
async fn memory_of(
    ctx: &Ctx,
    agent: Option<String>,
) -> Result<(String, clawline_agent::tools::MemoryAccess), RpcError> {
    let runtime = &ctx.state.runtime;
    let config = runtime.config();
    let id = agent.map(|a| a.trim().to_lowercase()).unwrap_or_else(|| config.default_agent.clone());
    if config.agent(&id).is_none() {
        return Err(RpcError::bad(format!("unknown agent id \"{id}\"")));
    }
    if !config.memory.enabled {
        return Err(RpcError::unavailable("memory search is off (memory.search.enabled: false)"));
    }
    let tools = runtime.tool_context(&id).await.ok_or_else(|| RpcError::bad(format!("unknown agent id \"{id}\"")))?;
    let memory =
        tools.memory.ok_or_else(|| RpcError::unavailable("the memory index cannot be opened; see the gateway log"))?;
    Ok((id, memory))
}

fn mode_fields(v: &mut Value, mode: &Mode) {
    match mode {
        Mode::Hybrid => v["searchMode"] = json!("hybrid"),
        Mode::TextOnly { reason } => {
            v["searchMode"] = json!("fts-only");
            v["reason"] = json!(reason);
        }
    }
}

async fn status(ctx: Ctx, p: Value) -> Reply {
    let p: StatusParams = parse("doctor.memory.status", p)?;
    let (id, memory) = memory_of(&ctx, p.agent_id).await?;
    let s = memory.index.status().await.map_err(|e| RpcError::unavailable(format!("memory status failed: {e}")))?;
    let embedding = if p.probe || p.deep {
        match memory.index.probe().await {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e}),
        }
    } else {
        match &s.mode {
            Mode::Hybrid => json!({"ok": true}),
            Mode::TextOnly { reason } => json!({"ok": false, "error": reason}),
        }
    };
    let mut answer = json!({
        "agentId": id,
        "provider": s.provider.clone().unwrap_or_else(|| "none".into()),
        "embedding": embedding,
        "status": s,
    });
    mode_fields(&mut answer, &s.mode);
    Ok(answer)
}

async fn search(ctx: Ctx, p: Value) -> Reply {
    let p: SearchParams = parse("memory.search", p)?;
    let query = p.query.trim().to_string();
    if query.is_empty() {
        return Err(RpcError::bad("query must be a non-empty string"));
    }
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    if !finite(p.max_results) || !finite(p.min_score) {
        return Err(RpcError::bad("maxResults and minScore must be finite numbers when provided"));
    }
    let max = p.max_results.map_or(20, |m| m.floor().clamp(1.0, 50.0) as usize);
    let (id, memory) = memory_of(&ctx, p.agent_id).await?;
    if let Err(e) = memory.memories.refresh(&id, &memory.index).await {
        tracing::warn!(agent = %id, error = %e, "memory sync failed; searching what is indexed");
    }
    let options = SearchOptions { max_results: Some(max), ..SearchOptions::default() };
    let outcome = memory
        .index
        .search_with(&query, &options)
        .await
        .map_err(|e| RpcError::unavailable(format!("memory search failed: {e}")))?;
    let results: Vec<Value> = outcome
        .results
        .iter()
        .filter(|s| p.min_score.is_none_or(|m| s.score >= m))
        .map(clawline_agent::tools::memory_result_json)
        .collect();
    let provider = memory.index.provider().unwrap_or("none");
    let mut answer = json!({"agentId": id, "provider": provider, "results": results});
    mode_fields(&mut answer, &outcome.mode);
    Ok(answer)
}
