//! The method surface compared with OpenClaw's published protocol schema
//! (`@openclaw/gateway-protocol@2026.9.1`, `protocol.schema.json`, installed by
//! `scripts/openclaw-compat`).
//!
//! For every method clawline implements: the method exists in the protocol, needs the same
//! scope (or a documented stricter one), requires the same parameters, and accepts every
//! parameter the protocol defines except those listed here on purpose. Parameters clawline
//! accepts beyond the published schema are the ones newer (2026.9.6) clients send.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clawline_gateway::protocol::schema::Schema;
use serde_json::Value;

fn compat_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CLAWLINE_OPENCLAW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openclaw-compat"));
    dir.join("node_modules/@openclaw/gateway-protocol/protocol.schema.json").exists().then_some(dir)
}

fn pascal(method: &str) -> String {
    method.split(['.', '-']).map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

/// Methods whose scope here is deliberately stricter than OpenClaw's.
const STRICTER: &[(&str, &str, &str)] = &[
    // Tools that change files or run programs need admin; read-only tools need write.
    ("tools.invoke", "operator.write", "dynamic"),
];

/// Published parameters clawline refuses, with why.
const NOT_ACCEPTED: &[(&str, &str)] = &[
    // Internal fields of OpenClaw's own runtimes (sub-agents, ACP, swarms, approvals):
    // clients do not send them, and accepting them silently would pretend they work.
    ("agent", "expectedExistingSessionId"),
    ("agent", "groupChannel"),
    ("agent", "groupSpace"),
    ("agent", "cwd"),
    ("agent", "cleanupBundleMcpOnRunEnd"),
    ("agent", "modelRun"),
    ("agent", "promptMode"),
    ("agent", "bootstrapContextMode"),
    ("agent", "bootstrapContextRunKind"),
    ("agent", "acpTurnSource"),
    ("agent", "internalRuntimeHandoffId"),
    ("agent", "internalExecutionIdentityRetry"),
    ("agent", "internalExecutionIdentityRecoveryAttempt"),
    ("agent", "execApprovalFollowupExpectedSessionId"),
    ("agent", "internalEvents"),
    ("agent", "inputProvenance"),
    ("agent", "suppressPromptPersistence"),
    ("agent", "sessionEffects"),
    ("agent", "sourceReplyDeliveryMode"),
    ("agent", "disableMessageTool"),
    ("agent", "swarmCollector"),
    ("agent", "swarmOutputSchema"),
    ("agent", "forceRestartSafeTools"),
    ("agent", "forceCodeModeTools"),
    ("agent", "voiceWakeTrigger"),
    ("chat.send", "intent"),
    ("chat.send", "fastAutoOnSeconds"),
    ("chat.send", "toolBindings"),
    ("chat.send", "systemInputProvenance"),
    ("chat.send", "systemProvenanceReceipt"),
    ("chat.send", "suppressCommandInterpretation"),
    ("chat.send", "expectedSessionRoutingContract"),
    ("chat.send", "expectedPermissionMode"),
    ("chat.send", "expectedToolOverrides"),
    ("tools.invoke", "conversationReadOrigin"),
    ("cron.list", "scheduleKind"),
    ("cron.list", "lastRunStatus"),
    ("cron.list", "trigger"),
    ("cron.list", "sortBy"),
    ("cron.list", "sortDir"),
    ("cron.list", "includeDeliveryPreviews"),
    ("sessions.delete", "expectedLifecycleRevision"),
    ("sessions.delete", "expectedSessionUpdatedAt"),
    ("sessions.delete", "emitLifecycleHooks"),
    ("sessions.delete", "archivedOnly"),
    ("sessions.list", "requireLastInteraction"),
    // Per-session model, permission and tool settings: the agent does not read them yet, so
    // storing them would only pretend they work.
    ("sessions.patch", "expectedLifecycleRevision"),
    ("sessions.patch", "expectedPermissionMode"),
    ("sessions.patch", "expectedToolOverrides"),
    ("sessions.patch", "expectedMarkedUnreadAt"),
    ("sessions.patch", "ttlMinutes"),
    ("sessions.patch", "contextWindow"),
    ("sessions.patch", "thinkingLevel"),
    ("sessions.patch", "fastMode"),
    ("sessions.patch", "toolOverrides"),
    ("sessions.patch", "verboseLevel"),
    ("sessions.patch", "traceLevel"),
    ("sessions.patch", "reasoningLevel"),
    ("sessions.patch", "responseUsage"),
    ("sessions.patch", "elevatedLevel"),
    ("sessions.patch", "execHost"),
    ("sessions.patch", "execSecurity"),
    ("sessions.patch", "execAsk"),
    ("sessions.patch", "execNode"),
    ("sessions.patch", "permissionMode"),
    ("sessions.patch", "model"),
    ("sessions.patch", "completionOwnerSessionKey"),
    ("sessions.patch", "inheritedToolPolicyVersion"),
    ("sessions.patch", "inheritedToolAllow"),
    ("sessions.patch", "inheritedToolDeny"),
    ("sessions.patch", "sendPolicy"),
    ("sessions.patch", "groupActivation"),
    // Standing grants do not expire (they are revoked instead); refusing the parameter is
    // better than a grant that outlives what the owner asked for.
    ("exec.approval.resolve", "grantExpiresInDays"),
];

/// Parameters accepted beyond the published schema: sent by OpenClaw 2026.9.6 clients.
const NEWER: &[(&str, &str)] = &[("chat.history", "maxBytes"), ("models.list", "sessionKey")];

fn props(schema: &Schema) -> (BTreeSet<String>, BTreeSet<String>) {
    let Schema::Object(o) = schema else { panic!("params are objects") };
    let all = o.props.iter().map(|p| p.name.to_string()).collect();
    let required = o.props.iter().filter(|p| p.required).map(|p| p.name.to_string()).collect();
    (all, required)
}

#[test]
fn methods_match_the_published_protocol() {
    let Some(dir) = compat_dir() else {
        if std::env::var_os("CLAWLINE_SKIP_OPENCLAW").is_some() {
            eprintln!("skipped: CLAWLINE_SKIP_OPENCLAW is set");
            return;
        }
        panic!(
            "the OpenClaw protocol schema is not installed: run scripts/openclaw-compat (or set CLAWLINE_SKIP_OPENCLAW=1)"
        );
    };
    let text =
        std::fs::read_to_string(dir.join("node_modules/@openclaw/gateway-protocol/protocol.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let methods = &schema["methods"];
    let defs = &schema["definitions"];
    let mut problems = Vec::new();
    for (name, scope, params) in clawline_gateway::protocol_surface() {
        let Some(published) = methods.get(name) else {
            problems.push(format!("{name}: not a method of the protocol"));
            continue;
        };
        let theirs = published["scope"].as_str().unwrap_or_default();
        let stricter = STRICTER.iter().any(|(m, t, o)| *m == name && *t == theirs && *o == scope);
        if theirs != scope && !stricter && !(theirs == "dynamic" && scope.starts_with("operator.")) {
            problems.push(format!("{name}: scope {scope}, the protocol says {theirs}"));
        }
        let def_name = match name {
            "agent.identity.get" => "AgentIdentityParams".to_string(),
            other => format!("{}Params", pascal(other)),
        };
        let (ours, ours_required) = props(params);
        let Some(def) = defs.get(&def_name).filter(|d| d.get("properties").is_some()) else {
            // The memory methods are published without parameter schemas; clawline accepts the
            // parameters OpenClaw's handlers read (`agentId`, `probe`/`deep`; `query`,
            // `maxResults`, `minScore`).
            if !ours.is_empty()
                && !matches!(name, "health" | "status" | "chat.startup" | "doctor.memory.status" | "memory.search")
            {
                problems.push(format!("{name}: accepts {ours:?} but the protocol defines no {def_name}"));
            }
            continue;
        };
        let published_props: BTreeSet<String> = def["properties"].as_object().unwrap().keys().cloned().collect();
        let published_required: BTreeSet<String> = def["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if ours_required != published_required {
            problems.push(format!("{name}: requires {ours_required:?}, the protocol requires {published_required:?}"));
        }
        for p in &published_props {
            if !ours.contains(p) && !NOT_ACCEPTED.contains(&(name, p.as_str())) {
                problems.push(format!("{name}: does not accept the published parameter `{p}`"));
            }
        }
        for p in &ours {
            if !published_props.contains(p) && !NEWER.contains(&(name, p.as_str())) {
                problems.push(format!("{name}: accepts `{p}`, which the protocol does not define"));
            }
        }
        for (m, p) in NOT_ACCEPTED.iter().filter(|(m, _)| *m == name) {
            assert!(published_props.contains(*p), "{m}.{p} is listed as not accepted but is not published");
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences from the published protocol:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
