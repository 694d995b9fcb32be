//! Frames: one JSON object per WebSocket text message, told apart by `type`.
//!
//! - request (client → gateway): `{type:"req", id, method, params?, traceparent?}`
//! - response (gateway → client): `{type:"res", id, ok, payload?|error?}`
//! - event (gateway → client): `{type:"event", event, payload?, seq?, stateVersion?}`
//!
//! Parsing is strict about the request frame (closed object, non-empty `id` and `method`) and
//! reports problems in OpenClaw's words, keeping the frame's `id` when it has a usable one so
//! the client can match the error to its request. Events are rendered from a payload that was
//! serialized once, so a broadcast to many connections costs one serialization plus a small
//! per-connection envelope with that connection's `seq`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::error::RpcError;
use super::schema::{self, Object, Schema, opt, req};

/// A request a client sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub method: String,
    /// `Value::Null` when the frame had no `params` (methods treat that like `{}`).
    pub params: Value,
    /// The frame's W3C `traceparent`, if it carried one: runs the request starts join that trace.
    pub traceparent: Option<String>,
}

/// Why a text message was not a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all. After the handshake such messages are ignored.
    NotJson,
    /// JSON, but not a valid request frame; `id` is the frame's id when it had a usable one.
    Invalid { id: Option<String>, message: String },
}

static REQUEST_FRAME: Object = Object {
    props: &[
        req("type", Schema::Const("req")),
        req("id", Schema::NON_EMPTY),
        req("method", Schema::NON_EMPTY),
        opt("params", Schema::Any),
        opt("traceparent", Schema::str_max(128)),
    ],
    closed: true,
};

/// Parses one text message as a request frame.
pub fn parse_request(text: &str) -> Result<Request, FrameError> {
    let mut value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let id = value.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    if let Err(why) = schema::validate(&Schema::Object(&REQUEST_FRAME), &value) {
        return Err(FrameError::Invalid { id, message: format!("invalid request frame: {why}") });
    }
    let method = value.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let params = value.get_mut("params").map(Value::take).unwrap_or(Value::Null);
    let traceparent = value.get("traceparent").and_then(Value::as_str).map(str::to_string);
    Ok(Request { id: id.unwrap_or_default(), method, params, traceparent })
}

#[derive(Serialize)]
struct OkFrame<'a, T: Serialize> {
    r#type: &'static str,
    id: &'a str,
    ok: bool,
    payload: &'a T,
}

#[derive(Serialize)]
struct ErrFrame<'a> {
    r#type: &'static str,
    id: &'a str,
    ok: bool,
    error: &'a RpcError,
}

/// `{type:"res", id, ok:true, payload}`.
pub fn response_ok<T: Serialize>(id: &str, payload: &T) -> String {
    serde_json::to_string(&OkFrame { r#type: "res", id, ok: true, payload }).unwrap_or_else(|_| {
        // Serializing our own values cannot fail in practice; answer with an error rather than nothing.
        response_err(id, &RpcError::unavailable("the response could not be encoded"))
    })
}

/// `{type:"res", id, ok:false, error}`.
pub fn response_err(id: &str, error: &RpcError) -> String {
    serde_json::to_string(&ErrFrame { r#type: "res", id, ok: false, error }).unwrap_or_else(|_| {
        r#"{"type":"res","id":"","ok":false,"error":{"code":"UNAVAILABLE","message":"encoding failed"}}"#.into()
    })
}

/// The `stateVersion` counters carried by `presence` and `health` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateVersion {
    pub presence: u64,
    pub health: u64,
}

/// An event ready to send to any number of connections.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: Arc<str>,
    /// The payload, already serialized.
    pub payload: Arc<str>,
    pub state_version: Option<StateVersion>,
}

impl Event {
    pub fn new<T: Serialize>(name: &str, payload: &T) -> Event {
        let payload = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        Event { name: name.into(), payload: payload.into(), state_version: None }
    }

    pub fn with_state_version(mut self, v: StateVersion) -> Event {
        self.state_version = Some(v);
        self
    }

    /// The frame text, with `seq` when the event is sequenced (everything but `connect.challenge`).
    pub fn render(&self, seq: Option<u64>) -> String {
        let name = serde_json::to_string(&*self.name).unwrap_or_else(|_| "\"\"".into());
        let mut out = String::with_capacity(self.payload.len() + name.len() + 64);
        out.push_str(r#"{"type":"event","event":"#);
        out.push_str(&name);
        out.push_str(r#","payload":"#);
        out.push_str(&self.payload);
        if let Some(seq) = seq {
            out.push_str(r#","seq":"#);
            out.push_str(&seq.to_string());
        }
        if let Some(v) = self.state_version {
            out.push_str(&format!(r#","stateVersion":{{"presence":{},"health":{}}}"#, v.presence, v.health));
        }
        out.push('}');
        out
    }

    /// Bytes the rendered frame takes, near enough for buffer accounting.
    pub fn approx_len(&self) -> usize {
        self.payload.len() + self.name.len() + 80
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_requests_and_words_frame_errors() {
        let r = parse_request(r#"{"type":"req","id":"1:a","method":"health"}"#).unwrap();
        assert_eq!((r.id.as_str(), r.method.as_str(), &r.params), ("1:a", "health", &Value::Null));
        assert_eq!(r.traceparent, None);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let r = parse_request(&format!(r#"{{"type":"req","id":"t","method":"agent","traceparent":"{tp}"}}"#)).unwrap();
        assert_eq!(r.traceparent.as_deref(), Some(tp));
        let r =
            parse_request(r#"{"type":"req","id":"c1","method":"chat.history","params":{"sessionKey":"k"}}"#).unwrap();
        assert_eq!(r.params, json!({"sessionKey": "k"}));
        assert_eq!(parse_request("not json"), Err(FrameError::NotJson));
        assert_eq!(
            parse_request(r#"{"type":"req","id":"r2"}"#),
            Err(FrameError::Invalid {
                id: Some("r2".into()),
                message: "invalid request frame: must have required property 'method'".into()
            })
        );
        let long = "x".repeat(129);
        let err =
            parse_request(&format!(r#"{{"type":"req","id":"a","method":"m","traceparent":"{long}"}}"#)).unwrap_err();
        assert!(matches!(err, FrameError::Invalid { message, .. } if message.contains("/traceparent")));
        assert!(matches!(
            parse_request(r#"{"type":"res","id":"","method":"x","extra":1}"#),
            Err(FrameError::Invalid { id: None, .. })
        ));
        assert!(matches!(parse_request("[1,2]"), Err(FrameError::Invalid { id: None, .. })));
    }

    #[test]
    fn renders_frames() {
        assert_eq!(response_ok("1", &json!({"a": 1})), r#"{"type":"res","id":"1","ok":true,"payload":{"a":1}}"#);
        let e = Event::new("tick", &json!({"ts": 5}));
        let v: Value = serde_json::from_str(&e.render(Some(3))).unwrap();
        assert_eq!(v, json!({"type": "event", "event": "tick", "payload": {"ts": 5}, "seq": 3}));
        let e = e.with_state_version(StateVersion { presence: 2, health: 1 });
        let v: Value = serde_json::from_str(&e.render(None)).unwrap();
        assert_eq!(v["stateVersion"], json!({"presence": 2, "health": 1}));
        assert!(v.get("seq").is_none());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_any_text(s in "\\PC{0,200}") {
                let _ = parse_request(&s);
            }

            #[test]
            fn never_panics_on_json_like_text(s in r#"[{}\[\]":,a-z0-9 .\-]{0,120}"#) {
                let _ = parse_request(&s);
            }

            #[test]
            fn valid_requests_round_trip(id in "[!-~]{1,40}", method in "[a-z.]{1,30}", n in any::<i64>()) {
                let frame = json!({"type": "req", "id": id, "method": method, "params": {"n": n}});
                let r = parse_request(&frame.to_string()).unwrap();
                prop_assert_eq!(r.id, id);
                prop_assert_eq!(r.method, method);
                prop_assert_eq!(r.params, json!({"n": n}));
            }
        }
    }
}
