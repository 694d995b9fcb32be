//! The shape of a provider preset: what the config resolver needs to know about a provider it
//! knows by name (wire API, base URL, credential variables, models with prices).
//!
//! The presets themselves live with the providers (`clawline_providers::catalog`) and are
//! handed to the loader in [`LoadContext`](super::LoadContext); this crate knows no provider.
//! A preset becomes a provider in three ways: `models.providers.<id>` names it (the file's
//! fields override the preset's, models merge by id), a credential variable of the preset is set
//! in the environment, or an agent's model refers to it (its credentials may then come from a
//! stored auth profile). Prices are USD per million tokens; 0 means "not published".
//!
//! Base URLs may hold `{region}`, `{accountId}` and `{gatewayId}`, filled from
//! `models.providers.<id>.region` / `.accountId` / `.gatewayId`.
//!
//! This file is types plus pure helpers; it must not read the environment or do I/O.

use super::resolve::ApiKind;

/// How a provider can list the models it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Only the models listed here and in the config.
    None,
    /// `GET {baseUrl}/models` (OpenAI-compatible servers and routers).
    OpenAiModels,
    /// Ollama's `/api/tags` and `/api/show`.
    Ollama,
    /// Bedrock's `ListFoundationModels`.
    Bedrock,
}

/// How the provider's credential is obtained, beyond an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// API keys (or tokens) only.
    Key,
    /// A local server: no credential needed.
    Local,
    /// AWS credentials (SigV4) or a Bedrock API key.
    Aws,
    /// OAuth sign-in offered by the provider (PKCE or device flow), besides keys where noted.
    OAuth,
    /// The key is exchanged for a short-lived token before each use (GitHub Copilot).
    TokenExchange,
}

/// A well-known model of a preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetModel {
    pub id: &'static str,
    pub name: &'static str,
    pub context_window: u64,
    pub max_tokens: u32,
    pub image: bool,
    pub reasoning: bool,
    /// Input, output, cache read, cache write; USD per million tokens.
    pub cost: [f64; 4],
}

/// One built-in provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    pub api: ApiKind,
    pub base_url: &'static str,
    /// Other documented endpoints: (what selects it, URL). Set `baseUrl` to use one.
    pub alt_base_urls: &'static [(&'static str, &'static str)],
    /// Variables holding its key, in the order they are read.
    pub key_vars: &'static [&'static str],
    /// A variable that overrides the base URL.
    pub base_url_var: Option<&'static str>,
    pub login: Login,
    pub discovery: Discovery,
    /// The model chosen when the provider is found and no model is configured.
    pub default_model: &'static str,
    pub models: &'static [PresetModel],
    /// Extra request headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// Sends its key as `Authorization: Bearer` although its API has a key header.
    pub bearer: bool,
    /// With [`Login::TokenExchange`]: where the key is exchanged.
    pub token_exchange_url: Option<&'static str>,
    /// Files under the user's config directory (`$XDG_CONFIG_HOME` or `~/.config`) where editors
    /// keep a sign-in for this provider: JSON objects whose `<host>…` entries hold `oauth_token`.
    pub token_files: &'static [&'static str],
    /// The host prefix of the entries in [`Preset::token_files`].
    pub token_file_host: &'static str,
}

impl Preset {
    /// The preset's entry for `model`, if it lists it.
    pub fn model(&self, model: &str) -> Option<&'static PresetModel> {
        self.models.iter().find(|m| m.id == model)
    }
}

/// Fills `{name}` placeholders of a base URL; `None` when one has no value.
pub fn fill_base_url(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &rest[start + 1..start + end];
        match value(name).filter(|v| !v.trim().is_empty()) {
            Some(v) => out.push_str(v.trim()),
            None => return Err(name.to_string()),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_placeholders_are_filled_or_named() {
        let v = |n: &str| match n {
            "accountId" => Some("acc".to_string()),
            "gatewayId" => Some("gw".to_string()),
            _ => None,
        };
        assert_eq!(fill_base_url("https://g/v1/{accountId}/{gatewayId}/x", &v).unwrap(), "https://g/v1/acc/gw/x");
        assert_eq!(fill_base_url("https://r.{region}.example", &v).unwrap_err(), "region");
        assert_eq!(fill_base_url("http://x/{a", &v).unwrap(), "http://x/{a");
    }
}
