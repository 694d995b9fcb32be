//! The Telegram Bot API on the wire: `{apiRoot}/bot<token>/<method>` with a JSON body, answers
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description", "parameters"}`
//! (https://core.telegram.org/bots/api#making-requests), and the types clawline reads.
//!
//! The token is part of every URL, so no URL, and no reqwest error that would print one, ever
//! leaves this file: errors carry the method name and Telegram's description only. This file
//! does not decide what to do about an error; callers map [`ApiError`] to retry or give up.

use std::time::Duration;

use clawline_core::secret::SecretString;

use crate::multipart::Part;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The largest answer read from the Bot API (a getUpdates batch of 100 big messages fits).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Telegram answered `ok: false`.
    #[error("{method}: {code} {description}")]
    Refused { method: String, code: u16, description: String, retry_after: Option<u64>, migrate_to: Option<i64> },
    /// No usable answer: connection, timeout, a body that is not the Bot API's.
    #[error("{method}: {detail}")]
    Transport { method: String, detail: String },
}

impl ApiError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Refused { code, .. } => Some(*code),
            ApiError::Transport { .. } => None,
        }
    }

    pub fn description(&self) -> &str {
        match self {
            ApiError::Refused { description, .. } => description,
            ApiError::Transport { detail, .. } => detail,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    result: Option<serde_json::Value>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// `User`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
}

/// `Chat`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: Option<String>,
    #[serde(default)]
    pub is_forum: bool,
}

/// `MessageEntity` (only what mention detection needs).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    /// In UTF-16 code units, as Telegram counts.
    pub offset: usize,
    pub length: usize,
    pub user: Option<User>,
}

/// `PhotoSize`, `Document`, `Voice`, `Audio`, `Video`, `Sticker`: the fields clawline keeps.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub file_id: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub file_size: Option<u64>,
}

/// `File` (what `getFile` answers).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct File {
    pub file_id: String,
    pub file_size: Option<u64>,
    /// Where to download it; absent when Telegram cannot serve it.
    pub file_path: Option<String>,
}

/// `Message` (only what clawline reads).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Message {
    pub message_id: i64,
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub is_topic_message: bool,
    pub from: Option<User>,
    pub chat: Chat,
    pub date: i64,
    pub text: Option<String>,
    pub caption: Option<String>,
    #[serde(default)]
    pub entities: Vec<Entity>,
    #[serde(default)]
    pub caption_entities: Vec<Entity>,
    pub reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    pub photo: Vec<FileRef>,
    pub document: Option<FileRef>,
    pub voice: Option<FileRef>,
    pub audio: Option<FileRef>,
    pub video: Option<FileRef>,
    pub sticker: Option<FileRef>,
    pub migrate_to_chat_id: Option<i64>,
    /// The inline keyboard under the message (to name a pressed button).
    pub reply_markup: Option<serde_json::Value>,
}

/// `CallbackQuery` (a button pressed).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    pub message: Option<Message>,
    pub data: Option<String>,
}

/// `Update`, with every kind clawline does not handle left as raw JSON.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
    pub edited_message: Option<serde_json::Value>,
    pub callback_query: Option<CallbackQuery>,
}

/// `WebhookInfo` (what liveness in webhook mode looks at).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WebhookInfo {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pending_update_count: i64,
    pub last_error_date: Option<i64>,
    pub last_error_message: Option<String>,
}

/// A Bot API client for one token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    root: String,
    token: SecretString,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("root", &self.root).field("token", &"[redacted]").finish()
    }
}

impl Api {
    pub fn new(http: reqwest::Client, root: &str, token: SecretString) -> Api {
        Api { http, root: root.trim_end_matches('/').to_string(), token }
    }

    /// Calls `method` with `body`; waits at most `timeout` for the whole answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let url = format!("{}/bot{}/{method}", self.root, self.token.expose());
        self.answer(method, self.http.post(url).json(body).timeout(timeout)).await
    }

    /// Calls `method` with `fields` and one file as `multipart/form-data` (an upload).
    pub async fn call_with_file<T: DeserializeOwned>(
        &self,
        method: &str,
        fields: &[(String, String)],
        file: Upload<'_>,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let url = format!("{}/bot{}/{method}", self.root, self.token.expose());
        let (content_type, body) = multipart(fields, &file);
        let req = self.http.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body).timeout(timeout);
        self.answer(method, req).await
    }

    async fn answer<T: DeserializeOwned>(&self, method: &str, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let transport = |detail: String| ApiError::Transport { method: method.to_string(), detail };
        let resp = req.send().await.map_err(|e| transport(describe(&e.without_url())))?;
        let status = resp.status();
        let bytes = read_capped(resp, MAX_ANSWER_BYTES).await.map_err(transport)?;
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|_| {
            transport(format!(
                "HTTP {} with a body that is not a Bot API answer ({} bytes)",
                status.as_u16(),
                bytes.len()
            ))
        })?;
        if env.ok {
            let result = env.result.unwrap_or(serde_json::Value::Null);
            return serde_json::from_value(result).map_err(|e| transport(format!("unexpected result shape: {e}")));
        }
        let params = env.parameters;
        Err(ApiError::Refused {
            method: method.to_string(),
            code: env.error_code.unwrap_or(status.as_u16()),
            description: env.description.unwrap_or_else(|| "no description".into()),
            retry_after: params.as_ref().and_then(|p| p.retry_after),
            migrate_to: params.as_ref().and_then(|p| p.migrate_to_chat_id),
        })
    }

    /// Downloads a file `getFile` named, refusing more than `max_bytes`.
    pub async fn download(&self, file_path: &str, max_bytes: u64, timeout: Duration) -> Result<Vec<u8>, ApiError> {
        let transport = |detail: String| ApiError::Transport { method: "file".into(), detail };
        let url = format!("{}/file/bot{}/{}", self.root, self.token.expose(), file_path.trim_start_matches('/'));
        let resp =
            self.http.get(url).timeout(timeout).send().await.map_err(|e| transport(describe(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Refused {
                method: "file".into(),
                code: status.as_u16(),
                description: format!("the file download answered HTTP {}", status.as_u16()),
                retry_after: None,
                migrate_to: None,
            });
        }
        read_capped(resp, usize::try_from(max_bytes).unwrap_or(usize::MAX)).await.map_err(transport)
    }
}

/// A file to upload: the form field it goes in, its name and its bytes.
pub struct Upload<'a> {
    pub field: &'a str,
    pub file_name: &'a str,
    pub bytes: &'a [u8],
}

/// The form for an upload: the fields, then the file.
fn multipart(fields: &[(String, String)], file: &Upload<'_>) -> (String, Vec<u8>) {
    let mut parts: Vec<Part<'_>> = fields.iter().map(|(k, v)| Part::text(k, v)).collect();
    parts.push(Part::file(file.field, file.file_name, file.bytes));
    crate::multipart::encode(&parts)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    }
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e.without_url()))? {
        if out.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_with_unknown_kinds_and_fields() {
        let u: Update = serde_json::from_value(serde_json::json!({
            "update_id": 5,
            "message": {"message_id": 1, "date": 1, "chat": {"id": 7, "type": "private"}, "text": "hi",
                         "from": {"id": 7, "is_bot": false, "first_name": "A"}, "new_field": [1, 2]},
        }))
        .unwrap();
        assert_eq!(u.message.unwrap().text.as_deref(), Some("hi"));
        let u: Update = serde_json::from_value(serde_json::json!({"update_id": 6, "my_chat_member": {}})).unwrap();
        assert!(u.message.is_none());
    }

    #[test]
    fn the_token_never_shows() {
        let api = Api::new(reqwest::Client::new(), "http://x", SecretString::new("1:secret"));
        assert!(!format!("{api:?}").contains("secret"));
    }
}
