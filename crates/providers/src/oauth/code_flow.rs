//! The authorization-code flow with PKCE (RFC 6749 §4.1 + RFC 7636) and token refresh.
//!
//! [`CodeFlow::begin`] makes the URL the user opens, with a fresh verifier and `state`; the
//! code comes back to a loopback listener ([`super::loopback`]) or is pasted by the user
//! ([`parse_pasted`], which takes the whole redirect URL, its query, Anthropic's `code#state`,
//! or the bare code). [`CodeFlow::exchange`] checks the state before the code is spent, and
//! [`CodeFlow::refresh`] trades a refresh token for new tokens, keeping the old refresh token
//! when the server does not rotate it. This file must not log codes, verifiers or tokens.

use clawline_core::secret::SecretString;

use super::pkce::{self, Pkce};
use super::wire::{BodyFormat, Grant, OAuthError, encode, parse_query, token_request};

/// One provider's authorization-code client.
#[derive(Debug, Clone)]
pub struct CodeFlow {
    /// The provider id, for messages.
    pub provider: String,
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    /// Some providers issue confidential clients (Chutes); most are public.
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub body: BodyFormat,
    /// Extra parameters for the authorize URL (e.g. `access_type=offline`).
    pub extra_authorize: Vec<(String, String)>,
    /// Whether the token request carries `state` too (Anthropic's does).
    pub state_in_token_request: bool,
}

/// A sign-in in progress: what to open, and what to keep for the exchange.
#[derive(Debug, Clone)]
pub struct Pending {
    pub url: String,
    pub state: String,
    pub pkce: Pkce,
}

/// Reads the code out of whatever the user pasted: the redirect URL, its query string,
/// `code#state`, or the bare code. Checks the state whenever the input carries one.
pub fn parse_pasted(provider: &str, input: &str, expected_state: &str) -> Result<String, OAuthError> {
    let input = input.trim();
    let query = match input.split_once('?') {
        Some((_, q)) => Some(q.split('#').next().unwrap_or_default()),
        None if input.contains("code=") => Some(input),
        None => None,
    };
    let (code, state) = match query {
        Some(q) => {
            let params = parse_query(q);
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let Some(err) = get("error") {
                return Err(OAuthError::Denied {
                    provider: provider.into(),
                    reason: get("error_description").unwrap_or(err),
                });
            }
            (get("code"), get("state"))
        }
        None => match input.split_once('#') {
            Some((c, s)) => (Some(c.to_string()), Some(s.to_string())),
            None => (Some(input.to_string()), None),
        },
    };
    if let Some(s) = state
        && s != expected_state
    {
        return Err(OAuthError::StateMismatch { provider: provider.into() });
    }
    match code.filter(|c| !c.is_empty() && !c.contains(char::is_whitespace)) {
        Some(c) => Ok(c),
        None => Err(OAuthError::Protocol {
            provider: provider.into(),
            message: "no authorization code in what was pasted; paste the whole address the browser ended on".into(),
        }),
    }
}

impl CodeFlow {
    /// Starts a sign-in: the URL to open, with S256 PKCE and a fresh `state`.
    pub fn begin(&self) -> Pending {
        let pkce = pkce::generate();
        let state = pkce::random_state();
        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), self.client_id.clone()),
            ("redirect_uri".into(), self.redirect_uri.clone()),
            ("scope".into(), self.scopes.join(" ")),
            ("state".into(), state.clone()),
            ("code_challenge".into(), pkce.challenge.clone()),
            ("code_challenge_method".into(), "S256".into()),
        ];
        params.extend(self.extra_authorize.iter().cloned());
        let query = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let sep = if self.authorize_url.contains('?') { '&' } else { '?' };
        Pending { url: format!("{}{sep}{query}", self.authorize_url), state, pkce }
    }

    /// Trades the code for tokens. `state` is the state that came back with the code.
    pub async fn exchange(
        &self,
        http: &reqwest::Client,
        pending: &Pending,
        code: &str,
        state: Option<&str>,
    ) -> Result<Grant, OAuthError> {
        if let Some(s) = state
            && s != pending.state
        {
            return Err(OAuthError::StateMismatch { provider: self.provider.clone() });
        }
        let mut params: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", pending.pkce.verifier.expose()),
        ];
        if self.state_in_token_request {
            params.push(("state", &pending.state));
        }
        if let Some(secret) = &self.client_secret {
            params.push(("client_secret", secret.expose()));
        }
        match token_request(http, &self.provider, &self.token_url, self.body, &params, "authorization code").await? {
            Ok(grant) => Ok(grant),
            Err((error, _)) => Err(OAuthError::Protocol {
                provider: self.provider.clone(),
                message: format!("unexpected `{error}` from the token endpoint"),
            }),
        }
    }

    /// Trades a refresh token for new tokens. A server that does not send a new refresh token
    /// leaves the old one in place.
    pub async fn refresh(&self, http: &reqwest::Client, refresh_token: &SecretString) -> Result<Grant, OAuthError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", &self.client_id),
        ];
        if let Some(secret) = &self.client_secret {
            params.push(("client_secret", secret.expose()));
        }
        match token_request(http, &self.provider, &self.token_url, self.body, &params, "refresh token").await? {
            Ok(mut grant) => {
                if grant.refresh_token.is_none() {
                    grant.refresh_token = Some(refresh_token.clone());
                }
                Ok(grant)
            }
            Err((error, _)) => Err(OAuthError::Protocol {
                provider: self.provider.clone(),
                message: format!("unexpected `{error}` from the token endpoint"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> CodeFlow {
        CodeFlow {
            provider: "p".into(),
            authorize_url: "https://auth.example/authorize".into(),
            token_url: "https://auth.example/token".into(),
            client_id: "client 1".into(),
            client_secret: None,
            scopes: vec!["a".into(), "b:c".into()],
            redirect_uri: "http://127.0.0.1:1455/auth/callback".into(),
            body: BodyFormat::Form,
            extra_authorize: vec![("access_type".into(), "offline".into())],
            state_in_token_request: false,
        }
    }

    #[test]
    fn the_authorize_url_carries_pkce_state_and_scopes() {
        let p = flow().begin();
        assert!(p.url.starts_with("https://auth.example/authorize?response_type=code&client_id=client%201&"));
        let q = parse_query(p.url.split_once('?').unwrap().1);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:1455/auth/callback"));
        assert_eq!(get("scope"), Some("a b:c"));
        assert_eq!(get("state"), Some(p.state.as_str()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("code_challenge"), Some(pkce::challenge_for(p.pkce.verifier.expose()).as_str()));
        assert_eq!(get("access_type"), Some("offline"));
    }

    #[test]
    fn pasted_input_in_every_form() {
        let url = "http://127.0.0.1:1455/auth/callback?code=abc%2F1&state=st";
        assert_eq!(parse_pasted("p", url, "st").unwrap(), "abc/1");
        assert_eq!(parse_pasted("p", "code=abc&state=st", "st").unwrap(), "abc");
        assert_eq!(parse_pasted("p", "  abc#st \n", "st").unwrap(), "abc");
        assert_eq!(parse_pasted("p", "abc", "st").unwrap(), "abc");
        assert!(matches!(parse_pasted("p", "abc#other", "st"), Err(OAuthError::StateMismatch { .. })));
        assert!(matches!(
            parse_pasted("p", &url.replace("state=st", "state=x"), "st"),
            Err(OAuthError::StateMismatch { .. })
        ));
        assert!(matches!(
            parse_pasted("p", "http://x/cb?error=access_denied&state=st", "st"),
            Err(OAuthError::Denied { .. })
        ));
        assert!(matches!(parse_pasted("p", "", "st"), Err(OAuthError::Protocol { .. })));
    }
}
