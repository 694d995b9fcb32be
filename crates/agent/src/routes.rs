//! Which credentials can reach each provider, and the routes an agent's turn may take.
//!
//! A provider's credentials are tried in this order: the key written in the config file (or
//! found in `<ID>_API_KEY`), then stored auth profiles (OAuth before tokens before API keys),
//! then the rotation keys of `<ID>_API_KEYS` / `<ID>_API_KEY_<n>`. A local server (loopback
//! `baseUrl`) and Bedrock with AWS credentials need no key. The routes of a turn are every
//! credential of the agent's primary model, then every credential of each fallback, in the
//! order the config lists them, without repeats.
//!
//! This file must not make calls or touch the store: it only arranges what it is given.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use clawline_core::config::{AgentSettings, ModelRef, ProviderSettings};
use clawline_core::secret::SecretString;
use clawline_providers::{ModelClient, Route};

use crate::auth_profiles::{AuthProfile, ProfileKind};

/// One way to reach a provider: its settings with one credential filled in.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The profile id: `<provider>:config`, `<provider>:env`, `<provider>:<name>`, `<provider>:local`.
    pub profile: String,
    /// Only this agent may use it (`None`: every agent).
    pub agent: Option<String>,
    pub settings: Arc<ProviderSettings>,
}

pub(crate) fn is_loopback_url(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or_default().split(['/', '?']).next().unwrap_or_default();
    let host =
        host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn with_key(p: &ProviderSettings, profile: String, key: SecretString, source: String) -> Credential {
    let mut s = p.clone();
    s.api_key = Some(key);
    s.api_key_source = Some(source);
    s.extra_keys.clear();
    Credential { profile, agent: None, settings: Arc::new(s) }
}

/// Every credential of `p`, in the order they are tried.
pub fn credentials_for(p: &ProviderSettings, profiles: &[AuthProfile]) -> Vec<Credential> {
    let mut out = Vec::new();
    if let Some(key) = &p.api_key {
        let source = p.api_key_source.clone().unwrap_or_else(|| "config".into());
        let label = if source.starts_with("env") { "env" } else { "config" };
        out.push(with_key(p, format!("{}:{label}", p.id), key.clone(), source));
    }
    let mut stored: Vec<&AuthProfile> = profiles.iter().filter(|a| a.provider == p.id).collect();
    stored.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.id.cmp(&b.id)));
    for a in stored {
        match (&a.secret, &a.aws) {
            (Some(secret), _) => {
                let mut c = with_key(p, a.id.clone(), secret.clone(), format!("auth profile {}", a.id));
                if matches!(a.kind, ProfileKind::OAuth | ProfileKind::Token) {
                    let mut s = (*c.settings).clone();
                    s.bearer = true;
                    c.settings = Arc::new(s);
                }
                c.agent = a.agent.clone();
                out.push(c);
            }
            (None, Some(aws)) => {
                let mut s = p.clone();
                s.aws = Some(aws.clone());
                s.api_key = None;
                s.extra_keys.clear();
                out.push(Credential { profile: a.id.clone(), agent: a.agent.clone(), settings: Arc::new(s) });
            }
            (None, None) => {}
        }
    }
    for (i, (source, key)) in p.extra_keys.iter().enumerate() {
        out.push(with_key(p, format!("{}:env-{}", p.id, i + 2), key.clone(), source.clone()));
    }
    if out.is_empty() && p.aws.is_some() {
        out.push(Credential { profile: format!("{}:aws-env", p.id), agent: None, settings: Arc::new(p.clone()) });
    }
    if out.is_empty() && is_loopback_url(&p.base_url) {
        out.push(Credential { profile: format!("{}:local", p.id), agent: None, settings: Arc::new(p.clone()) });
    }
    out
}

/// Credentials of every configured provider.
#[derive(Debug, Clone, Default)]
pub struct CredentialTable {
    by_provider: HashMap<String, Vec<Credential>>,
}

impl CredentialTable {
    pub fn build(providers: &HashMap<String, Arc<ProviderSettings>>, profiles: &[AuthProfile]) -> CredentialTable {
        let by_provider = providers.iter().map(|(id, p)| (id.clone(), credentials_for(p, profiles))).collect();
        CredentialTable { by_provider }
    }

    /// The credentials of `provider` that `agent` may use (`None`: any agent's).
    pub fn usable<'a>(&'a self, provider: &str, agent: Option<&'a str>) -> impl Iterator<Item = &'a Credential> + 'a {
        self.by_provider.get(provider).into_iter().flatten().filter(move |c| match (&c.agent, agent) {
            (None, _) | (_, None) => true,
            (Some(only), Some(a)) => only == a,
        })
    }

    /// The routes for `agent`: its primary model's credentials, then each fallback's.
    pub fn routes(&self, agent: &AgentSettings, http: &reqwest::Client) -> Vec<Route> {
        let mut models: Vec<&ModelRef> = Vec::new();
        for m in agent.model.iter().chain(agent.fallbacks.iter()) {
            if !models.contains(&m) {
                models.push(m);
            }
        }
        let mut out = Vec::new();
        for m in models {
            for c in self.usable(&m.provider, Some(&agent.id)) {
                let entry = c.settings.model(&m.model);
                let mut route =
                    Route::new(m.clone(), c.profile.clone(), ModelClient::new(c.settings.clone(), http.clone()));
                route.cost = entry.map(|e| e.cost).unwrap_or_default();
                route.compat = entry.map(|e| e.compat.clone()).unwrap_or_default();
                route.max_tokens =
                    agent.max_tokens.or(entry.and_then(|e| e.max_tokens)).or(c.settings.max_tokens).unwrap_or(4096);
                out.push(route);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(id: &str, base: &str, key: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            id: id.into(),
            base_url: base.into(),
            api_key: key.map(SecretString::new),
            api_key_source: key.map(|_| format!("env {}_API_KEY", id.to_uppercase())),
            ..Default::default()
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:8080/v1"));
        assert!(is_loopback_url("http://localhost/v1"));
        assert!(is_loopback_url("http://[::1]:9000"));
        assert!(!is_loopback_url("https://api.openai.com/v1"));
        assert!(!is_loopback_url("http://10.0.0.2:8080"));
    }

    #[test]
    fn credentials_come_in_a_fixed_order() {
        let mut p = provider("openai", "https://api.openai.com/v1", Some("sk-env"));
        p.extra_keys = vec![("env OPENAI_API_KEYS[1]".into(), SecretString::new("sk-2"))];
        let profiles = vec![
            AuthProfile {
                id: "openai:work".into(),
                provider: "openai".into(),
                kind: ProfileKind::ApiKey,
                secret: Some(SecretString::new("sk-work")),
                aws: None,
                agent: None,
            },
            AuthProfile {
                id: "openai:me@example.com".into(),
                provider: "openai".into(),
                kind: ProfileKind::OAuth,
                secret: Some(SecretString::new("oauth-access")),
                aws: None,
                agent: Some("main".into()),
            },
            AuthProfile {
                id: "anthropic:x".into(),
                provider: "anthropic".into(),
                kind: ProfileKind::ApiKey,
                secret: Some(SecretString::new("sk-ant")),
                aws: None,
                agent: None,
            },
        ];
        let c = credentials_for(&p, &profiles);
        let ids: Vec<&str> = c.iter().map(|c| c.profile.as_str()).collect();
        assert_eq!(ids, ["openai:env", "openai:me@example.com", "openai:work", "openai:env-2"]);
        assert_eq!(c[2].settings.api_key.as_ref().unwrap().expose(), "sk-work");
        assert!(c.iter().all(|c| c.settings.extra_keys.is_empty()));
        assert_eq!(c[1].agent.as_deref(), Some("main"));
    }

    #[test]
    fn keyless_providers_are_usable_only_when_local() {
        assert_eq!(
            credentials_for(&provider("llama", "http://127.0.0.1:8080/v1", None), &[])[0].profile,
            "llama:local"
        );
        assert!(credentials_for(&provider("remote", "https://example.com/v1", None), &[]).is_empty());
    }

    #[test]
    fn routes_cover_primary_then_fallbacks_without_repeats() {
        let mut providers = HashMap::new();
        providers.insert("a".to_string(), Arc::new(provider("a", "https://a.example/v1", Some("ka"))));
        providers.insert("b".to_string(), Arc::new(provider("b", "https://b.example/v1", Some("kb"))));
        let table = CredentialTable::build(&providers, &[]);
        let r = |s: &str| ModelRef::parse(s).unwrap();
        let agent = AgentSettings {
            id: "main".into(),
            name: "main".into(),
            workspace: "/tmp".into(),
            model: Some(r("a/m1")),
            fallbacks: vec![r("b/m2"), r("a/m1"), r("c/none")],
            max_turns: 1,
            timeout_secs: 1,
            max_tokens: None,
            bootstrap_max_chars: 1,
            bootstrap_total_max_chars: 1,
            user_timezone: None,
            budget: Default::default(),
        };
        let routes = table.routes(&agent, &reqwest::Client::new());
        let got: Vec<String> = routes.iter().map(|r| format!("{} {}", r.model, r.profile)).collect();
        assert_eq!(got, ["a/m1 a:env", "b/m2 b:env"]);
    }
}
