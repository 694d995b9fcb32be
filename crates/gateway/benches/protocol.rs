//! Protocol hot paths: parsing a request frame, checking its parameters against the method's
//! closed schema, and rendering a response and an event frame.
//!
//!     cargo bench -p clawline-gateway --bench protocol

use clawline_gateway::protocol::frame::{self, Event};
use clawline_gateway::protocol::schema::{self, Object, Schema, opt, req};
use serde_json::json;

fn main() {
    divan::main();
}

const CHAT_SEND: &str = r#"{"type":"req","id":"7:0d2c1b6e-4a8f-4c11-9a57-3e1f0b2d9c44","method":"chat.send","params":{"sessionKey":"agent:main:main","message":"What is on my calendar today, and can you move the 3pm?","idempotencyKey":"0d2c1b6e-4a8f-4c11-9a57-3e1f0b2d9c44","deliver":false,"thinking":"low"}}"#;

static PARAMS: Object = Object {
    props: &[
        req("sessionKey", Schema::NON_EMPTY),
        req("message", Schema::STRING),
        req("idempotencyKey", Schema::NON_EMPTY),
        opt("deliver", Schema::Bool),
        opt("thinking", Schema::STRING),
    ],
    closed: true,
};

#[divan::bench]
fn parse_request_frame() -> frame::Request {
    frame::parse_request(divan::black_box(CHAT_SEND)).expect("frame")
}

#[divan::bench]
fn validate_params(b: divan::Bencher) {
    let r = frame::parse_request(CHAT_SEND).expect("frame");
    b.bench(|| schema::validate(&Schema::Object(&PARAMS), divan::black_box(&r.params)).expect("valid"));
}

#[divan::bench]
fn render_response_frame() -> String {
    frame::response_ok("7:abc", divan::black_box(&json!({"runId": "0d2c1b6e", "status": "started"})))
}

#[divan::bench]
fn render_chat_delta_event() -> String {
    let payload = json!({"runId": "0d2c1b6e", "sessionKey": "agent:main:main", "seq": 12, "state": "delta",
                         "message": {"role": "assistant", "content": [{"type": "text", "text": "Your 3pm with Dana is now at 4pm."}]}});
    Event::new("chat", divan::black_box(&payload)).render(Some(42))
}
