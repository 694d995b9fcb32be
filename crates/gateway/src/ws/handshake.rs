//! Deciding whether a `connect` request gets in, and with which role and scopes.
//!
//! The order of checks follows OpenClaw's gateway, so each bad connect gets the answer its
//! clients expect; every refusal ends the connection (close 1008, or 1002 for the protocol):
//!
//! 1. the parameters (closed schema);
//! 2. the protocol range must include 4 (probes may offer 3..4, nodes 3), else `PROTOCOL_MISMATCH`;
//! 3. the role (`operator` or `node`);
//! 4. the browser origin, whenever there is an `Origin` header or the client is a browser UI:
//!    an allowed origin, this gateway's own private address, or a loopback page on this machine;
//! 5. browser UIs and the TUI must present a device identity;
//! 6. the credential: the shared token or password (either field, in either mode), behind the
//!    failed-auth lockout; a wrong one counts towards it;
//! 7. clients without a device: allowed with the shared secret (scopes kept only for a local
//!    CLI or local backend client; everyone else gets none), otherwise `DEVICE_IDENTITY_REQUIRED`;
//! 8. the device proof: id, a `signedAt` within 120 s, this connection's nonce, the signature;
//! 9. a device token instead of the shared secret: bound to this device and role, covering the
//!    requested scopes;
//! 10. pairing: a device not approved for its role and scopes is approved silently when it
//!     connects from this machine with the shared secret; otherwise a pending request is kept
//!     (five minutes) and the answer is `NOT_PAIRED`.
//!
//! An approved device gets exactly the scopes it asked for, and a device token for later.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Value, json};

use super::conn::ClientInfo;
use crate::auth::LimitKey;
use crate::protocol::device::{self, DeviceError, DeviceProof, SignedFields, VerifiedDevice};
use crate::protocol::error::{ErrorCode, RpcError};
use crate::protocol::schema::{self, Object, Schema, opt, req};
use crate::protocol::scopes::{self, Role};
use crate::protocol::{MIN_LEGACY_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::state::AppState;

/// Close codes used by the handshake.
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_PROTOCOL: u16 = 1002;

const CLIENT_IDS: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];
const CLIENT_MODES: &[&str] = &["webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"];

static CLIENT: Object = Object {
    props: &[
        req("id", Schema::Enum(CLIENT_IDS)),
        opt("displayName", Schema::NON_EMPTY),
        req("version", Schema::NON_EMPTY),
        opt("buildId", Schema::str_range(1, 96)),
        req("platform", Schema::NON_EMPTY),
        opt("deviceFamily", Schema::NON_EMPTY),
        opt("modelIdentifier", Schema::NON_EMPTY),
        opt("timeZone", Schema::str_range(1, 64)),
        req("mode", Schema::Enum(CLIENT_MODES)),
        opt("instanceId", Schema::NON_EMPTY),
    ],
    closed: true,
};
static DEVICE: Object = Object {
    props: &[
        req("id", Schema::NON_EMPTY),
        req("publicKey", Schema::NON_EMPTY),
        req("signature", Schema::NON_EMPTY),
        req("signedAt", Schema::UINT),
        req("nonce", Schema::NON_EMPTY),
    ],
    closed: true,
};
static AUTH: Object = Object {
    props: &[
        opt("token", Schema::STRING),
        opt("bootstrapToken", Schema::STRING),
        opt("deviceToken", Schema::STRING),
        opt("password", Schema::STRING),
        opt("approvalRuntimeToken", Schema::STRING),
        opt("agentRuntimeIdentityToken", Schema::STRING),
    ],
    closed: true,
};
static CONNECT: Object = Object {
    props: &[
        req("minProtocol", Schema::int_min(1)),
        req("maxProtocol", Schema::int_min(1)),
        req("client", Schema::Object(&CLIENT)),
        opt("caps", Schema::Array { items: &Schema::NON_EMPTY, min_items: 0, max_items: Some(64) }),
        opt("commands", Schema::Array { items: &Schema::NON_EMPTY, min_items: 0, max_items: Some(256) }),
        opt("computerUse", Schema::Any),
        opt("workerRuns", Schema::Any),
        opt("permissions", Schema::OBJECT),
        opt("pathEnv", Schema::STRING),
        opt("role", Schema::NON_EMPTY),
        opt("scopes", Schema::Array { items: &Schema::NON_EMPTY, min_items: 0, max_items: Some(32) }),
        opt("device", Schema::Object(&DEVICE)),
        opt("auth", Schema::Object(&AUTH)),
        opt("locale", Schema::STRING),
        opt("userAgent", Schema::STRING),
        // Sent by 2026.9.6 clients, newer than the published schema.
        opt("modelCatalog", Schema::Any),
    ],
    closed: true,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientParams {
    id: String,
    display_name: Option<String>,
    version: String,
    platform: String,
    device_family: Option<String>,
    mode: String,
    instance_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthParams {
    token: Option<String>,
    device_token: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectParams {
    min_protocol: u64,
    max_protocol: u64,
    client: ClientParams,
    #[serde(default)]
    caps: Vec<String>,
    role: Option<String>,
    scopes: Option<Vec<String>>,
    device: Option<DeviceProof>,
    #[serde(default)]
    auth: AuthParams,
}

/// Where the connection comes from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address (behind a trusted proxy: the address the proxy reports).
    pub ip: IpAddr,
    /// The browser's `Origin`, when a browser opened the socket.
    pub origin: Option<String>,
    pub host: Option<String>,
    /// On this machine and talking to us directly: a loopback peer and no proxy headers.
    pub local: bool,
}

/// The challenge this connection was sent.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub nonce: String,
    pub ts: i64,
}

/// A successful handshake.
#[derive(Debug, Clone)]
pub struct Grant {
    pub protocol: u64,
    pub role: Role,
    pub scopes: Vec<String>,
    pub client: ClientInfo,
    pub caps: Vec<String>,
    pub device: Option<VerifiedDevice>,
    /// A device token for the client to keep, and when it was issued.
    pub device_token: Option<(String, i64)>,
    /// How the client authenticated: `token`, `password` or `device-token`.
    pub method: &'static str,
}

/// A refused handshake: the error to answer (none for frames that are not requests) and how
/// to close.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub error: RpcError,
    pub close: u16,
    /// The close reason, when it differs from the error message.
    pub reason: Option<String>,
}

fn refuse(error: RpcError) -> Refusal {
    Refusal { error, close: CLOSE_POLICY, reason: None }
}

fn device_refusal(e: DeviceError) -> Refusal {
    refuse(
        RpcError::invalid(e.message())
            .details(json!({"code": e.detail_code(), "reason": e.reason(), "hint": e.hint()})),
    )
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_private_name(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if h.ends_with(".local") || h.ends_with(".ts.net") {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || v4.is_loopback() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// `scheme://host[:port]` → (host, host:port as written). `None` for anything else.
fn parse_origin(origin: &str) -> Option<(String, String)> {
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, rest) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        format!("[{}]", v6.split(']').next()?)
    } else {
        rest.rsplit_once(':')
            .map_or(rest, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { rest })
            .to_string()
    };
    Some((host, rest.to_ascii_lowercase()))
}

/// Why a browser origin is refused, if it is. Allowed: listed in
/// `gateway.controlUi.allowedOrigins` (or `*`); this gateway's own address when that is a
/// private one (loopback only for local clients); or a loopback page on this machine.
pub fn origin_refusal(state: &AppState, origin: Option<&str>, host: Option<&str>, local: bool) -> Option<&'static str> {
    let Some((origin_host, authority)) = origin.filter(|o| *o != "null").and_then(parse_origin) else {
        return Some("origin missing or invalid");
    };
    let allowed = &state.runtime.config().gateway.allowed_origins;
    let serialized = origin.unwrap_or_default().trim_end_matches('/').to_ascii_lowercase();
    if allowed.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(&serialized)) {
        return None;
    }
    if let Some(host) = host {
        let host_l = host.to_ascii_lowercase();
        let host_name = parse_origin(&format!("http://{host_l}")).map(|(h, _)| h).unwrap_or_default();
        if authority == host_l && (if is_loopback_name(&host_name) { local } else { is_private_name(&host_name) }) {
            return None;
        }
    }
    if local && is_loopback_name(&origin_host) {
        return None;
    }
    Some("origin not allowed")
}

fn auth_failure(reason: &str, message: String, can_retry_with_device_token: bool) -> Refusal {
    let code = match reason {
        "token_missing" => "AUTH_TOKEN_MISSING",
        "token_mismatch" => "AUTH_TOKEN_MISMATCH",
        "password_missing" => "AUTH_PASSWORD_MISSING",
        "password_mismatch" => "AUTH_PASSWORD_MISMATCH",
        "device_token_mismatch" => "AUTH_DEVICE_TOKEN_MISMATCH",
        "scope_mismatch" => "AUTH_SCOPE_MISMATCH",
        "rate_limited" => "AUTH_RATE_LIMITED",
        _ => "AUTH_UNAUTHORIZED",
    };
    let next = match reason {
        _ if can_retry_with_device_token => "retry_with_device_token",
        "token_missing" | "password_missing" => "update_auth_configuration",
        "token_mismatch" | "password_mismatch" | "device_token_mismatch" => "update_auth_credentials",
        "rate_limited" => "wait_then_retry",
        _ => "review_auth_configuration",
    };
    refuse(RpcError::invalid(message).details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry_with_device_token,
        "recommendedNextStep": next,
    })))
}

/// Clients OpenClaw treats as its browser/terminal operator UIs.
fn is_operator_ui(client_id: &str) -> bool {
    matches!(client_id, "openclaw-control-ui" | "openclaw-tui")
}

fn is_browser_ui(client: &ClientParams) -> bool {
    matches!(client.id.as_str(), "openclaw-control-ui" | "openclaw-browser-copilot" | "webchat-ui")
        || client.mode == "webchat"
}

fn pairing_text(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "not-paired" => ("device is not approved yet", "Approve this device from the pending pairing requests."),
        "role-upgrade" => (
            "device is asking for a higher role than currently approved",
            "Review the requested role upgrade, then approve the pending request.",
        ),
        "metadata-upgrade" => (
            "device identity changed and must be re-approved",
            "Review the refreshed device details, then approve the pending request.",
        ),
        _ => (
            "device is asking for more scopes than currently approved",
            "Review the requested scopes, then approve the pending upgrade.",
        ),
    }
}

/// Runs the checks (see the module docs).
pub async fn authorize(state: &AppState, peer: &Peer, challenge: &Challenge, params: Value) -> Result<Grant, Refusal> {
    if let Err(why) = schema::validate(&Schema::Object(&CONNECT), &params) {
        return Err(refuse(RpcError::invalid(format!("invalid connect params: {why}"))));
    }
    let p: ConnectParams = serde_json::from_value(params)
        .map_err(|e| refuse(RpcError::invalid(format!("invalid connect params: {e}"))))?;

    // 2. Protocol.
    let role_name = p.role.clone().unwrap_or_else(|| "operator".into());
    let (min, max) = (p.min_protocol, p.max_protocol);
    let v4 = min <= PROTOCOL_VERSION && PROTOCOL_VERSION <= max;
    let probe = p.client.mode == "probe" && max >= MIN_LEGACY_PROTOCOL_VERSION && min <= PROTOCOL_VERSION;
    let node = role_name == "node"
        && p.client.mode == "node"
        && min <= MIN_LEGACY_PROTOCOL_VERSION
        && MIN_LEGACY_PROTOCOL_VERSION <= max;
    if !(v4 || probe || node) {
        return Err(Refusal {
            error: RpcError::invalid("protocol mismatch").details(json!({
                "code": "PROTOCOL_MISMATCH",
                "clientMinProtocol": min,
                "clientMaxProtocol": max,
                "expectedProtocol": PROTOCOL_VERSION,
                "minimumProbeProtocol": MIN_LEGACY_PROTOCOL_VERSION,
            })),
            close: CLOSE_PROTOCOL,
            reason: Some("protocol mismatch".into()),
        });
    }
    // 3. Role.
    let Some(role) = Role::parse(&role_name) else {
        return Err(refuse(RpcError::invalid("invalid role")));
    };

    // 4. Browser origin.
    if (peer.origin.is_some() || is_browser_ui(&p.client))
        && let Some(why) = origin_refusal(state, peer.origin.as_deref(), peer.host.as_deref(), peer.local)
    {
        return Err(refuse(
            RpcError::invalid(
                "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)",
            )
            .details(json!({"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": why})),
        ));
    }
    // 5. Browser UIs and the TUI must bring a device.
    if p.device.is_none() && is_operator_ui(&p.client.id) {
        return Err(refuse(
            RpcError::invalid("control ui requires device identity (use HTTPS or localhost secure context)")
                .details(json!({"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"})),
        ));
    }

    let client = ClientInfo {
        id: p.client.id.clone(),
        mode: p.client.mode.clone(),
        version: p.client.version.clone(),
        platform: p.client.platform.clone(),
        display_name: p.client.display_name.clone(),
        device_family: p.client.device_family.clone(),
        instance_id: p.client.instance_id.clone(),
    };
    let requested = scopes::normalize(p.scopes.as_deref().unwrap_or_default());
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let (token, password, device_token) =
        (nonempty(&p.auth.token), nonempty(&p.auth.password), nonempty(&p.auth.device_token));
    let password_mode = state.credentials.mode == clawline_core::config::AuthMode::Password;
    let secret = if password_mode { password.clone().or(token.clone()) } else { token.clone().or(password.clone()) };

    // 6. The shared secret, behind the lockout.
    let key = LimitKey {
        ip: peer.ip,
        scope: match &peer.origin {
            Some(o) if peer.ip.is_loopback() => format!("browser-origin:{}", o.to_ascii_lowercase()),
            _ => "shared-secret".into(),
        },
        browser: peer.origin.is_some(),
    };
    let mut shared_ok = false;
    let mut shared_reason = if password_mode { "password_missing" } else { "token_missing" };
    if let Some(secret) = &secret {
        if let Err(wait) = state.limiter.check(&key) {
            return Err(refuse(
                RpcError::invalid("unauthorized: too many failed authentication attempts (retry later)")
                    .retry_after(wait.as_millis() as u64)
                    .details(json!({
                        "code": "AUTH_RATE_LIMITED",
                        "authReason": "rate_limited",
                        "canRetryWithDeviceToken": false,
                        "recommendedNextStep": "wait_then_retry",
                    })),
            ));
        }
        shared_ok = state.credentials.accepts(secret);
        if !shared_ok {
            shared_reason = if password_mode { "password_mismatch" } else { "token_mismatch" };
        }
    }
    let hint = if p.client.mode == "cli" {
        if peer.local {
            "use this gateway's token: `clawline token` prints it"
        } else {
            "set the client's token to this gateway's token"
        }
    } else if is_operator_ui(&p.client.id) || p.client.mode == "webchat" {
        "open the dashboard URL and paste the token in Control UI settings"
    } else {
        "provide gateway auth token"
    };
    let unauthorized = |reason: &str, can_retry: bool| {
        let message = match reason {
            "token_missing" => format!("unauthorized: gateway token missing ({hint})"),
            "token_mismatch" => format!("unauthorized: gateway token mismatch ({hint})"),
            "password_missing" => "unauthorized: gateway password missing (provide gateway auth password)".to_string(),
            "password_mismatch" => {
                "unauthorized: gateway password mismatch (provide gateway auth password)".to_string()
            }
            "device_token_mismatch" => "unauthorized: device token mismatch (rotate/reissue device token)".to_string(),
            "scope_mismatch" => {
                "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)".to_string()
            }
            _ => "unauthorized".to_string(),
        };
        auth_failure(reason, message, can_retry)
    };

    // 7. No device.
    let Some(proof) = &p.device else {
        if shared_ok && role == Role::Operator {
            state.limiter.success(&key);
            let keeps = peer.local
                && peer.origin.is_none()
                && ((p.client.id == "cli" && p.client.mode == "cli")
                    || (p.client.id == "gateway-client" && p.client.mode == "backend"));
            let scopes = if keeps { requested } else { Vec::new() };
            let method = if password_mode { "password" } else { "token" };
            return Ok(Grant {
                protocol: PROTOCOL_VERSION,
                role,
                scopes,
                client,
                caps: p.caps,
                device: None,
                device_token: None,
                method,
            });
        }
        if secret.is_some() && !shared_ok {
            state.limiter.failure(&key);
            tracing::info!(client = %peer.ip, client_id = %p.client.id, "refused a connect with a wrong credential");
            return Err(unauthorized(shared_reason, false));
        }
        return Err(refuse(
            RpcError::new(ErrorCode::NotPaired, "device identity required")
                .details(json!({"code": "DEVICE_IDENTITY_REQUIRED"})),
        ));
    };

    // 8. The device proof. The signed token is the credential sent in `auth.token`, else the device token.
    let signed_token = p.auth.token.clone().or(p.auth.device_token.clone()).unwrap_or_default();
    let fields = SignedFields {
        client_id: &p.client.id,
        client_mode: &p.client.mode,
        role: role.as_str(),
        scopes: p.scopes.as_deref().unwrap_or_default(),
        token: &signed_token,
        platform: &p.client.platform,
        device_family: p.client.device_family.as_deref().unwrap_or_default(),
    };
    let dev = device::verify(proof, &fields, &challenge.nonce, clawline_store::now_ms()).map_err(device_refusal)?;
    let store = state.runtime.store();
    let unavailable = |e: clawline_store::StoreError| refuse(RpcError::unavailable(e.to_string()));
    let paired = store.get_device(&dev.id).await.map_err(unavailable)?.filter(|d| d.public_key == dev.public_key);

    // 9. A device token in place of the shared secret.
    let mut method = if password_mode { "password" } else { "token" };
    let mut presented_token = None;
    if !shared_ok {
        let candidate = device_token.clone().or(token.clone());
        let dkey = LimitKey { scope: "device-token".into(), ..key.clone() };
        let Some(candidate) = candidate else {
            if secret.is_some() {
                state.limiter.failure(&key);
            }
            return Err(unauthorized(shared_reason, false));
        };
        if let Err(wait) = state.limiter.check(&dkey) {
            return Err(auth_failure(
                "rate_limited",
                "unauthorized: too many failed authentication attempts (retry later)".into(),
                false,
            )
            .with_retry(wait.as_millis() as u64));
        }
        let row = store.check_device_token(&candidate).await.map_err(unavailable)?;
        match row {
            Some(row) if row.device_id == dev.id && row.role == role.as_str() && paired.is_some() => {
                if !scopes::covered(&requested, &row.scopes) {
                    state.limiter.failure(&dkey);
                    return Err(unauthorized("scope_mismatch", false));
                }
                method = "device-token";
                presented_token = Some((candidate, row.issued_at));
                state.limiter.success(&dkey);
            }
            _ => {
                state.limiter.failure(&dkey);
                if secret.is_some() {
                    state.limiter.failure(&key);
                }
                let reason = if device_token.is_some() { "device_token_mismatch" } else { shared_reason };
                let can_retry = reason == "token_mismatch" && device_token.is_none() && token.is_some();
                return Err(unauthorized(reason, can_retry));
            }
        }
    } else {
        state.limiter.success(&key);
    }

    // 10. Pairing.
    let wanted = if role == Role::Node { Vec::new() } else { requested };
    let pin = |d: &clawline_store::DeviceRow| {
        d.platform.as_deref().is_none_or(|pl| pl.eq_ignore_ascii_case(&client.platform))
    };
    let reason = match &paired {
        None => Some("not-paired"),
        Some(d) if !pin(d) => Some("metadata-upgrade"),
        Some(d) if d.role != role.as_str() => Some("role-upgrade"),
        Some(d) if !wanted.is_empty() && !scopes::covered(&wanted, &d.scopes) => Some("scope-upgrade"),
        Some(_) => None,
    };
    let mut device_scopes = paired.as_ref().map(|d| d.scopes.clone()).unwrap_or_default();
    if let Some(reason) = reason {
        let silent = peer.local
            && state.runtime.config().gateway.auto_approve_local
            && (peer.origin.is_none() || is_operator_ui(&p.client.id) || p.client.mode == "webchat")
            && (reason != "scope-upgrade" || method != "device-token")
            && reason != "metadata-upgrade"
            && !(role == Role::Node && paired.is_some());
        if silent && method != "device-token" {
            let mut merged = match &paired {
                Some(d) if d.role == role.as_str() => d.scopes.clone(),
                _ => Vec::new(),
            };
            merged.extend(wanted.iter().cloned());
            device_scopes = scopes::normalize(&merged);
            store
                .pair_device(clawline_store::DeviceRow {
                    device_id: dev.id.clone(),
                    public_key: dev.public_key.clone(),
                    role: role.as_str().into(),
                    scopes: device_scopes.clone(),
                    label: client.display_name.clone(),
                    client_id: Some(client.id.clone()),
                    client_mode: Some(client.mode.clone()),
                    platform: Some(client.platform.clone()),
                    remote_ip: Some(peer.ip.to_string()),
                    paired_at: clawline_store::now_ms(),
                    last_seen_at: None,
                })
                .await
                .map_err(unavailable)?;
            tracing::info!(device = %dev.id, client_id = %client.id, reason, "approved a local device silently");
        } else {
            let outcome = store
                .request_pairing(clawline_store::PairingRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    device_id: dev.id.clone(),
                    public_key: dev.public_key.clone(),
                    role: role.as_str().into(),
                    scopes: wanted.clone(),
                    client: serde_json::to_value(&client).unwrap_or_default(),
                    remote_ip: Some(peer.ip.to_string()),
                    reason: reason.into(),
                    created_at: clawline_store::now_ms(),
                })
                .await
                .map_err(unavailable)?;
            if let Some(old) = &outcome.replaced {
                crate::methods::announce_resolved(state, old, &dev.id, "superseded");
            }
            let request = outcome.request;
            // Announced once: a client retrying its connect does not page the approvers again.
            if outcome.created {
                let event = crate::protocol::frame::Event::new(
                    "device.pair.requested",
                    &crate::methods::pending_json(&request),
                );
                state.hub.broadcast(&event, |_| true);
            }
            let (requirement, remedy) = pairing_text(reason);
            let mut details = json!({
                "code": "PAIRING_REQUIRED",
                "reason": reason,
                "requestId": request.request_id,
                "remediationHint": remedy,
                "deviceId": dev.id,
                "requestedRole": role.as_str(),
            });
            if is_operator_ui(&p.client.id) {
                details["recommendedNextStep"] = json!("wait_then_retry");
                details["retryable"] = json!(true);
                details["pauseReconnect"] = json!(false);
            }
            if !wanted.is_empty() {
                details["requestedScopes"] = json!(wanted);
            }
            if let Some(d) = &paired {
                details["approvedRoles"] = json!([d.role]);
                details["approvedScopes"] = json!(d.scopes);
            }
            let message = format!("pairing required: {requirement}");
            return Err(Refusal {
                reason: Some(format!("{message} (requestId: {})", request.request_id)),
                error: RpcError::new(ErrorCode::NotPaired, message).details(details),
                close: CLOSE_POLICY,
            });
        }
    }
    let _ = store.touch_device(&dev.id).await;
    let device_token = match presented_token {
        Some(t) => Some(t),
        None => Some(store.issue_device_token(&dev.id, role.as_str(), &device_scopes).await.map_err(unavailable)?),
    };
    Ok(Grant {
        protocol: PROTOCOL_VERSION,
        role,
        scopes: wanted,
        client,
        caps: p.caps,
        device: Some(dev),
        device_token,
        method,
    })
}

impl Refusal {
    fn with_retry(mut self, ms: u64) -> Self {
        self.error = self.error.retry_after(ms);
        self
    }
}
