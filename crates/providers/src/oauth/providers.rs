//! How each provider signs in: endpoints, public client ids, scopes and redirect ports, as the
//! providers' own command-line tools register them (the values OpenClaw uses too).
//!
//! Every value can be replaced in the config (`models.providers.<id>.oauth`), which is also how
//! tests point a sign-in at a local authorization server. Providers whose client id is not
//! public (Google's Gemini CLI client, Chutes) need it from the environment or the config.
//!
//! Note for users: Anthropic does not allow Claude subscription sign-ins in third-party tools;
//! an API key is the supported way to use Claude from clawline.
//!
//! This file is data plus lookups; it must not do I/O.

use clawline_core::config::schema::OAuthFile;
use clawline_core::secret::SecretString;

use super::code_flow::CodeFlow;
use super::device_flow::{DeviceDialect, DeviceFlow};
use super::wire::BodyFormat;

/// How a sign-in runs.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// Browser + redirect to `http://127.0.0.1:<port><path>` (or a pasted code).
    Code { flow: CodeFlow, port: u16, path: String },
    /// A code the user types at `verification_uri`.
    Device(DeviceFlow),
}

/// Where refresh tokens are traded.
#[derive(Debug, Clone)]
pub struct RefreshEndpoint {
    pub provider: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub body: BodyFormat,
}

impl RefreshEndpoint {
    /// Trades a refresh token for new tokens (keeping the old refresh token when none comes back).
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &SecretString,
    ) -> Result<super::Grant, super::OAuthError> {
        let flow = CodeFlow {
            provider: self.provider.clone(),
            authorize_url: String::new(),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: vec![],
            redirect_uri: String::new(),
            body: self.body,
            extra_authorize: vec![],
            state_in_token_request: false,
        };
        flow.refresh(http, refresh_token).await
    }
}

struct Builtin {
    id: &'static str,
    device: bool,
    authorize_url: &'static str,
    device_url: &'static str,
    token_url: &'static str,
    /// Empty: must come from `client_id_var` or the config.
    client_id: &'static str,
    client_id_var: &'static str,
    client_secret_var: &'static str,
    scopes: &'static [&'static str],
    body: BodyFormat,
    port: u16,
    path: &'static str,
    /// `localhost` or `127.0.0.1`, as the client registration expects.
    host: &'static str,
    extra: &'static [(&'static str, &'static str)],
    state_in_token_request: bool,
    pkce_device: bool,
    dialect: DeviceDialect,
    /// The same sign-in for the provider's other region: `(marker in the configured baseUrl,
    /// host to use, host it replaces)`.
    region: Option<(&'static str, &'static str, &'static str)>,
}

const BUILTIN: &[Builtin] = &[
    Builtin {
        id: "anthropic",
        device: false,
        authorize_url: "https://claude.ai/oauth/authorize",
        device_url: "",
        token_url: "https://platform.claude.com/v1/oauth/token",
        client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        client_id_var: "CLAWLINE_ANTHROPIC_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &["org:create_api_key", "user:profile", "user:inference"],
        body: BodyFormat::Json,
        port: 53692,
        path: "/callback",
        host: "localhost",
        extra: &[("code", "true")],
        state_in_token_request: true,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "openai-codex",
        device: false,
        authorize_url: "https://auth.openai.com/oauth/authorize",
        device_url: "",
        token_url: "https://auth.openai.com/oauth/token",
        client_id: "app_EMoamEEZ73f0CkXaXp7hrann",
        client_id_var: "CLAWLINE_CODEX_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &["openid", "profile", "email", "offline_access"],
        body: BodyFormat::Form,
        port: 1455,
        path: "/auth/callback",
        host: "localhost",
        extra: &[("id_token_add_organizations", "true"), ("codex_cli_simplified_flow", "true")],
        state_in_token_request: false,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "google",
        device: false,
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        device_url: "",
        token_url: "https://oauth2.googleapis.com/token",
        client_id: "",
        client_id_var: "CLAWLINE_GEMINI_OAUTH_CLIENT_ID",
        client_secret_var: "CLAWLINE_GEMINI_OAUTH_CLIENT_SECRET",
        scopes: &[
            "https://www.googleapis.com/auth/cloud-platform",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
        ],
        body: BodyFormat::Form,
        port: 8085,
        path: "/oauth2callback",
        host: "localhost",
        extra: &[("access_type", "offline"), ("prompt", "consent")],
        state_in_token_request: false,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "chutes",
        device: false,
        authorize_url: "https://api.chutes.ai/idp/authorize",
        device_url: "",
        token_url: "https://api.chutes.ai/idp/token",
        client_id: "",
        client_id_var: "CHUTES_CLIENT_ID",
        client_secret_var: "CHUTES_CLIENT_SECRET",
        scopes: &["openid", "profile", "chutes:invoke"],
        body: BodyFormat::Form,
        port: 1456,
        path: "/oauth-callback",
        host: "127.0.0.1",
        extra: &[],
        state_in_token_request: false,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "qwen-portal",
        device: true,
        authorize_url: "",
        device_url: "https://chat.qwen.ai/api/v1/oauth2/device/code",
        token_url: "https://chat.qwen.ai/api/v1/oauth2/token",
        client_id: "f0304373b74a44d2b584a3fb70ca9e56",
        client_id_var: "CLAWLINE_QWEN_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &["openid", "profile", "email", "model.completion"],
        body: BodyFormat::Form,
        port: 0,
        path: "",
        host: "",
        extra: &[],
        state_in_token_request: false,
        pkce_device: true,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "github-copilot",
        device: true,
        authorize_url: "",
        device_url: "https://github.com/login/device/code",
        token_url: "https://github.com/login/oauth/access_token",
        client_id: "Iv1.b507a08c87ecfe98",
        client_id_var: "CLAWLINE_COPILOT_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &["read:user"],
        body: BodyFormat::Form,
        port: 0,
        path: "",
        host: "",
        extra: &[],
        state_in_token_request: false,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "kimi-coding",
        device: true,
        authorize_url: "",
        device_url: "https://auth.kimi.com/api/oauth/device_authorization",
        token_url: "https://auth.kimi.com/api/oauth/token",
        client_id: "17e5f671-d194-4dfb-9706-5516cb48c098",
        client_id_var: "CLAWLINE_KIMI_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &[],
        body: BodyFormat::Form,
        port: 0,
        path: "",
        host: "",
        extra: &[],
        state_in_token_request: false,
        pkce_device: false,
        dialect: DeviceDialect::Rfc8628,
        region: None,
    },
    Builtin {
        id: "minimax",
        device: true,
        authorize_url: "",
        device_url: "https://api.minimax.io/oauth/code",
        token_url: "https://api.minimax.io/oauth/token",
        client_id: "78257093-7e40-4613-99e0-527b14b39113",
        client_id_var: "CLAWLINE_MINIMAX_OAUTH_CLIENT_ID",
        client_secret_var: "",
        scopes: &["group_id", "profile", "model.completion"],
        body: BodyFormat::Form,
        port: 0,
        path: "",
        host: "",
        extra: &[],
        state_in_token_request: false,
        pkce_device: true,
        dialect: DeviceDialect::MiniMaxUserCode,
        // Accounts on the China platform sign in there.
        region: Some(("minimaxi.com", "api.minimaxi.com", "api.minimax.io")),
    },
];

/// Providers clawline can sign in to.
pub fn supported() -> Vec<&'static str> {
    BUILTIN.iter().map(|b| b.id).collect()
}

/// Why a sign-in cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The sign-in and refresh endpoint for `provider`, with the config's overrides applied.
/// `base_url` is the provider's configured `baseUrl`, which picks the region where a provider
/// signs in per region (MiniMax).
pub fn sign_in(
    provider: &str,
    overrides: &OAuthFile,
    base_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SignIn, RefreshEndpoint), SetupError> {
    let b = BUILTIN.iter().find(|b| b.id == provider);
    let custom = overrides.token_url.is_some();
    let regional = |url: &str| match b.and_then(|b| b.region) {
        Some((marker, to, from)) if base_url.is_some_and(|u| u.contains(marker)) => url.replacen(from, to, 1),
        _ => url.to_string(),
    };
    if b.is_none() && !custom {
        return Err(SetupError(format!(
            "clawline cannot sign in to `{provider}` (it can: {}); store a key with `clawline auth add {provider}`, or set models.providers.{provider}.oauth",
            supported().join(", ")
        )));
    }
    let pick = |o: &Option<String>, d: &str| o.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| d.to_string());
    let token_url = pick(&overrides.token_url, &regional(b.map_or("", |b| b.token_url)));
    let client_id = overrides
        .client_id
        .clone()
        .or_else(|| b.and_then(|b| env(b.client_id_var)))
        .or_else(|| b.map(|b| b.client_id.to_string()))
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            SetupError(format!(
                "`{provider}` has no public OAuth client id: export {} (or set models.providers.{provider}.oauth.clientId)",
                b.map_or("…", |b| b.client_id_var)
            ))
        })?;
    let client_secret = b
        .and_then(|b| (!b.client_secret_var.is_empty()).then(|| env(b.client_secret_var)).flatten())
        .map(SecretString::new);
    let body = match overrides.body.as_deref() {
        Some("json") => BodyFormat::Json,
        Some(_) => BodyFormat::Form,
        None => b.map_or(BodyFormat::Form, |b| b.body),
    };
    let scopes: Vec<String> = match &overrides.scopes {
        Some(s) => s.clone(),
        None => b.map(|b| b.scopes.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
    };
    let refresh = RefreshEndpoint {
        provider: provider.to_string(),
        token_url: token_url.clone(),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        body,
    };
    let device = overrides.device_url.is_some() || b.is_some_and(|b| b.device);
    if device {
        let flow = DeviceFlow {
            provider: provider.to_string(),
            device_url: pick(&overrides.device_url, &regional(b.map_or("", |b| b.device_url))),
            token_url,
            client_id,
            scopes,
            body,
            pkce: b.is_some_and(|b| b.pkce_device),
            dialect: b.map_or(DeviceDialect::Rfc8628, |b| b.dialect),
        };
        return Ok((SignIn::Device(flow), refresh));
    }
    let port = overrides.redirect_port.unwrap_or(b.map_or(0, |b| b.port));
    let path = b.map_or("/callback", |b| b.path).to_string();
    let host = b.map_or("127.0.0.1", |b| b.host);
    let flow = CodeFlow {
        provider: provider.to_string(),
        authorize_url: pick(&overrides.authorize_url, b.map_or("", |b| b.authorize_url)),
        token_url,
        client_id,
        client_secret,
        scopes,
        redirect_uri: format!("http://{host}:{port}{path}"),
        body,
        extra_authorize: b
            .map(|b| b.extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default(),
        state_in_token_request: b.is_some_and(|b| b.state_in_token_request),
    };
    Ok((SignIn::Code { flow, port, path }, refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sign_ins_and_overrides() {
        let none = |_: &str| None;
        let (s, r) = sign_in("openai-codex", &OAuthFile::default(), None, &none).unwrap();
        let SignIn::Code { flow, port, path } = s else { panic!("codex signs in with a browser") };
        assert_eq!((port, path.as_str()), (1455, "/auth/callback"));
        assert_eq!(flow.redirect_uri, "http://localhost:1455/auth/callback");
        assert_eq!(r.token_url, "https://auth.openai.com/oauth/token");
        assert!(matches!(sign_in("github-copilot", &OAuthFile::default(), None, &none).unwrap().0, SignIn::Device(_)));

        let e = sign_in("google", &OAuthFile::default(), None, &none).unwrap_err();
        assert!(e.0.contains("CLAWLINE_GEMINI_OAUTH_CLIENT_ID"), "{e}");
        let e = sign_in("venice", &OAuthFile::default(), None, &none).unwrap_err();
        assert!(e.0.contains("clawline auth add venice"), "{e}");

        let o = OAuthFile {
            authorize_url: Some("http://127.0.0.1:9/authorize".into()),
            token_url: Some("http://127.0.0.1:9/token".into()),
            client_id: Some("test-client".into()),
            redirect_port: Some(0),
            ..Default::default()
        };
        let (s, r) = sign_in("anthropic", &o, None, &none).unwrap();
        let SignIn::Code { flow, .. } = s else { panic!() };
        assert_eq!(flow.authorize_url, "http://127.0.0.1:9/authorize");
        assert_eq!((flow.client_id.as_str(), flow.body), ("test-client", BodyFormat::Json));
        assert_eq!(r.client_id, "test-client");

        // MiniMax signs in where the account lives.
        let (s, r) =
            sign_in("minimax", &OAuthFile::default(), Some("https://api.minimax.io/anthropic"), &none).unwrap();
        let SignIn::Device(flow) = s else { panic!("minimax signs in with a user code") };
        assert_eq!(flow.dialect, DeviceDialect::MiniMaxUserCode);
        assert_eq!(
            (flow.device_url.as_str(), r.token_url.as_str()),
            ("https://api.minimax.io/oauth/code", "https://api.minimax.io/oauth/token")
        );
        let (s, r) =
            sign_in("minimax", &OAuthFile::default(), Some("https://api.minimaxi.com/anthropic"), &none).unwrap();
        let SignIn::Device(flow) = s else { panic!() };
        assert_eq!(
            (flow.device_url.as_str(), r.token_url.as_str()),
            ("https://api.minimaxi.com/oauth/code", "https://api.minimaxi.com/oauth/token")
        );
    }
}
