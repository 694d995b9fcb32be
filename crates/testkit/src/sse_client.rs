//! A minimal reader for `text/event-stream` responses in tests, kept independent of clawline's
//! own decoder so the two check each other.

/// One event: its `event:` name (if any) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

/// Splits a complete SSE body into events.
pub fn parse(body: &str) -> Vec<Event> {
    let body = body.replace("\r\n", "\n");
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (!data.is_empty()).then(|| Event { event, data: data.join("\n") })
        })
        .collect()
}

/// Reads a whole streaming response and parses it.
pub async fn read_all(resp: reqwest::Response) -> Vec<Event> {
    parse(&resp.text().await.unwrap_or_default())
}
