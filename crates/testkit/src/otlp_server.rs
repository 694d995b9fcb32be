//! A twin of an OpenTelemetry collector's OTLP/HTTP receiver (`POST /v1/traces`,
//! `POST /v1/metrics` and `POST /v1/logs`, JSON encoding), strict about what the specification
//! requires so an exporter that drifts fails here rather than in a user's collector.
//!
//! Logs: `resourceLogs[].scopeLogs[].logRecords[]`, times as decimal strings, `severityNumber`
//! 0–24, `body` one `AnyValue`, and `traceId` / `spanId` either both absent or both valid hex.
//!
//! Metrics: `resourceMetrics[].scopeMetrics[].metrics[]`, each with a name and exactly one of
//! `sum` (with `aggregationTemporality` 1 or 2 and `isMonotonic`), `gauge` or `histogram`;
//! points with decimal-string times, `asDouble` (a number) or `asInt` (a string); histogram
//! points with `count` and `bucketCounts` as decimal strings, one more bucket than
//! `explicitBounds`, bounds increasing and buckets adding up to `count`.
//!
//! Checked on every request: `Content-Type: application/json`; the body is an
//! `ExportTraceServiceRequest` in the protobuf JSON mapping — `resourceSpans[].scopeSpans[].spans[]`,
//! `traceId` 32 and `spanId` / `parentSpanId` 16 lowercase hex digits (never all zero),
//! `startTimeUnixNano` / `endTimeUnixNano` as decimal strings with the end not before the
//! start, `kind` 0–5, attributes as `{key, value: {stringValue | intValue (a string) |
//! doubleValue | boolValue}}`, `status.code` 0–2, and headers the test asked for. A bad request
//! is answered `400` with the reason (as a collector does) and kept in [`OtlpServer::rejections`].
//! Good spans are kept, flattened with their resource's attributes ([`OtlpServer::spans`]).
//! [`OtlpServer::fail_next`] answers the next request with a status (e.g. `503`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One received span.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: i64,
    pub start_nanos: u64,
    pub end_nanos: u64,
    /// Values as JSON: strings, numbers (ints parsed from their strings), booleans.
    pub attributes: BTreeMap<String, Value>,
    pub status_code: i64,
    pub status_message: String,
    pub resource: BTreeMap<String, Value>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
}

/// One received metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    pub metric: String,
    /// `sum`, `gauge` or `histogram`.
    pub kind: String,
    pub attributes: BTreeMap<String, Value>,
    /// The value; a histogram's count.
    pub value: f64,
}

/// One received log record.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    pub time_nanos: u64,
    pub severity_number: i64,
    pub severity_text: String,
    /// The body's string value (other body kinds are kept as their JSON text).
    pub body: String,
    pub attributes: BTreeMap<String, Value>,
    /// Empty when the record names no span.
    pub trace_id: String,
    pub span_id: String,
    pub resource: BTreeMap<String, Value>,
}

#[derive(Default)]
struct Inner {
    logs: Vec<ReceivedLog>,
    points: Vec<ReceivedPoint>,
    spans: Vec<ReceivedSpan>,
    rejections: Vec<String>,
    fail_next: Vec<u16>,
    required_headers: Vec<(String, String)>,
    requests: usize,
}

/// The running receiver.
pub struct OtlpServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex_id(v: &Value, len: usize, field: &str, optional: bool) -> Result<String, String> {
    let s = match v {
        Value::Null if optional => return Ok(String::new()),
        Value::String(s) if optional && s.is_empty() => return Ok(String::new()),
        Value::String(s) => s,
        other => return Err(format!("{field} must be a hex string, got {other}")),
    };
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{field} must be {len} lowercase hex digits, got {s:?}"));
    }
    if s.bytes().all(|b| b == b'0') {
        return Err(format!("{field} is all zeros"));
    }
    Ok(s.clone())
}

fn nanos(v: &Value, field: &str) -> Result<u64, String> {
    match v {
        Value::String(s) => s.parse().map_err(|_| format!("{field} is not a decimal string: {s:?}")),
        other => Err(format!("{field} must be a decimal string (64-bit integers are strings in JSON), got {other}")),
    }
}

fn attributes(v: &Value, at: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    let Some(list) = v.as_array() else {
        return if v.is_null() { Ok(out) } else { Err(format!("{at}.attributes must be an array")) };
    };
    for a in list {
        let key = a["key"].as_str().filter(|k| !k.is_empty()).ok_or(format!("{at}: an attribute without a key"))?;
        let value = a["value"].as_object().ok_or(format!("{at}: attribute {key} has no value object"))?;
        if value.len() != 1 {
            return Err(format!("{at}: attribute {key} must have exactly one value field"));
        }
        let (kind, val) = value.iter().next().ok_or(format!("{at}: attribute {key} is empty"))?;
        let parsed = match (kind.as_str(), val) {
            ("stringValue", Value::String(s)) => json!(s),
            ("intValue", Value::String(s)) => {
                json!(s.parse::<i64>().map_err(|_| format!("{at}: attribute {key} intValue {s:?} is not an integer"))?)
            }
            ("doubleValue", Value::Number(n)) => json!(n),
            ("boolValue", Value::Bool(b)) => json!(b),
            (k, v) => return Err(format!("{at}: attribute {key} has {k} = {v}, which OTLP/JSON does not allow")),
        };
        if out.insert(key.to_string(), parsed).is_some() {
            return Err(format!("{at}: attribute {key} twice"));
        }
    }
    Ok(out)
}

fn parse(body: &Value) -> Result<Vec<ReceivedSpan>, String> {
    let resources = body["resourceSpans"].as_array().ok_or("resourceSpans must be an array")?;
    let mut out = Vec::new();
    for (ri, rs) in resources.iter().enumerate() {
        let resource = attributes(&rs["resource"]["attributes"], &format!("resourceSpans[{ri}].resource"))?;
        let scopes = rs["scopeSpans"].as_array().ok_or(format!("resourceSpans[{ri}].scopeSpans must be an array"))?;
        for (si, ss) in scopes.iter().enumerate() {
            let spans = ss["spans"].as_array().ok_or(format!("scopeSpans[{si}].spans must be an array"))?;
            for (i, s) in spans.iter().enumerate() {
                let at = format!("spans[{i}]");
                let start = nanos(&s["startTimeUnixNano"], &format!("{at}.startTimeUnixNano"))?;
                let end = nanos(&s["endTimeUnixNano"], &format!("{at}.endTimeUnixNano"))?;
                if end < start {
                    return Err(format!("{at}: ends before it starts"));
                }
                let kind = s["kind"].as_i64().unwrap_or(0);
                if !(0..=5).contains(&kind) {
                    return Err(format!("{at}: kind {kind} is not a SpanKind"));
                }
                let status_code = s["status"]["code"].as_i64().unwrap_or(0);
                if !(0..=2).contains(&status_code) {
                    return Err(format!("{at}: status.code {status_code} is not a StatusCode"));
                }
                out.push(ReceivedSpan {
                    trace_id: hex_id(&s["traceId"], 32, &format!("{at}.traceId"), false)?,
                    span_id: hex_id(&s["spanId"], 16, &format!("{at}.spanId"), false)?,
                    parent_span_id: hex_id(&s["parentSpanId"], 16, &format!("{at}.parentSpanId"), true)?,
                    name: s["name"].as_str().filter(|n| !n.is_empty()).ok_or(format!("{at}: no name"))?.to_string(),
                    kind,
                    start_nanos: start,
                    end_nanos: end,
                    attributes: attributes(&s["attributes"], &at)?,
                    status_code,
                    status_message: s["status"]["message"].as_str().unwrap_or_default().to_string(),
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn parse_metrics(body: &Value) -> Result<Vec<ReceivedPoint>, String> {
    let resources = body["resourceMetrics"].as_array().ok_or("resourceMetrics must be an array")?;
    let mut out = Vec::new();
    for rm in resources {
        attributes(&rm["resource"]["attributes"], "resource")?;
        let scopes = rm["scopeMetrics"].as_array().ok_or("scopeMetrics must be an array")?;
        for sm in scopes {
            for m in sm["metrics"].as_array().ok_or("metrics must be an array")? {
                let name = m["name"].as_str().filter(|n| !n.is_empty()).ok_or("a metric without a name")?;
                let kinds: Vec<&str> =
                    ["sum", "gauge", "histogram"].into_iter().filter(|k| m.get(*k).is_some()).collect();
                let [kind] = kinds.as_slice() else {
                    return Err(format!("{name}: needs exactly one of sum, gauge, histogram"));
                };
                let data = &m[*kind];
                if *kind != "gauge" && !matches!(data["aggregationTemporality"].as_i64(), Some(1 | 2)) {
                    return Err(format!("{name}: aggregationTemporality must be 1 or 2"));
                }
                if *kind == "sum" && !data["isMonotonic"].is_boolean() {
                    return Err(format!("{name}: a sum needs isMonotonic"));
                }
                for p in data["dataPoints"].as_array().ok_or(format!("{name}: dataPoints must be an array"))? {
                    nanos(&p["timeUnixNano"], &format!("{name}.timeUnixNano"))?;
                    if !p["startTimeUnixNano"].is_null() {
                        nanos(&p["startTimeUnixNano"], &format!("{name}.startTimeUnixNano"))?;
                    }
                    let value = if *kind == "histogram" {
                        let count = nanos(&p["count"], &format!("{name}.count"))?;
                        let buckets = p["bucketCounts"].as_array().ok_or(format!("{name}: no bucketCounts"))?;
                        let bounds = p["explicitBounds"].as_array().ok_or(format!("{name}: no explicitBounds"))?;
                        if buckets.len() != bounds.len() + 1 {
                            return Err(format!("{name}: {} buckets for {} bounds", buckets.len(), bounds.len()));
                        }
                        let mut total = 0;
                        for b in buckets {
                            total += nanos(b, &format!("{name}.bucketCounts"))?;
                        }
                        if total != count {
                            return Err(format!("{name}: buckets add up to {total}, count is {count}"));
                        }
                        let b: Vec<f64> = bounds.iter().filter_map(Value::as_f64).collect();
                        if b.len() != bounds.len() || b.windows(2).any(|w| w[0] >= w[1]) {
                            return Err(format!("{name}: explicitBounds must be increasing numbers"));
                        }
                        count as f64
                    } else {
                        match (&p["asDouble"], &p["asInt"]) {
                            (Value::Number(n), Value::Null) => n.as_f64().unwrap_or(f64::NAN),
                            (Value::Null, Value::String(s)) => {
                                s.parse::<i64>().map_err(|_| format!("{name}: asInt {s:?}"))? as f64
                            }
                            _ => return Err(format!("{name}: a point needs asDouble (number) or asInt (string)")),
                        }
                    };
                    out.push(ReceivedPoint {
                        metric: name.to_string(),
                        kind: kind.to_string(),
                        attributes: attributes(&p["attributes"], name)?,
                        value,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn parse_logs(body: &Value) -> Result<Vec<ReceivedLog>, String> {
    let resources = body["resourceLogs"].as_array().ok_or("resourceLogs must be an array")?;
    let mut out = Vec::new();
    for (ri, rl) in resources.iter().enumerate() {
        let resource = attributes(&rl["resource"]["attributes"], &format!("resourceLogs[{ri}].resource"))?;
        let scopes = rl["scopeLogs"].as_array().ok_or(format!("resourceLogs[{ri}].scopeLogs must be an array"))?;
        for ss in scopes {
            for (i, r) in
                ss["logRecords"].as_array().ok_or("scopeLogs[].logRecords must be an array")?.iter().enumerate()
            {
                let at = format!("logRecords[{i}]");
                let time = if r["timeUnixNano"].is_null() {
                    0
                } else {
                    nanos(&r["timeUnixNano"], &format!("{at}.timeUnixNano"))?
                };
                if !r["observedTimeUnixNano"].is_null() {
                    nanos(&r["observedTimeUnixNano"], &format!("{at}.observedTimeUnixNano"))?;
                }
                let severity_number = match &r["severityNumber"] {
                    Value::Null => 0,
                    Value::Number(n) => n
                        .as_i64()
                        .filter(|n| (0..=24).contains(n))
                        .ok_or(format!("{at}: severityNumber {n} is not 0–24"))?,
                    other => return Err(format!("{at}: severityNumber must be a number, got {other}")),
                };
                let body = match r["body"].as_object() {
                    None if r["body"].is_null() => String::new(),
                    None => return Err(format!("{at}: body must be an AnyValue object")),
                    Some(b) if b.len() != 1 => return Err(format!("{at}: body must have exactly one value field")),
                    Some(b) => match b.get("stringValue") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => return Err(format!("{at}: body stringValue must be a string, got {other}")),
                        None => Value::Object(b.clone()).to_string(),
                    },
                };
                let trace_id = hex_id(&r["traceId"], 32, &format!("{at}.traceId"), true)?;
                let span_id = hex_id(&r["spanId"], 16, &format!("{at}.spanId"), true)?;
                if trace_id.is_empty() != span_id.is_empty() {
                    return Err(format!("{at}: traceId and spanId go together"));
                }
                out.push(ReceivedLog {
                    time_nanos: time,
                    severity_number,
                    severity_text: r["severityText"].as_str().unwrap_or_default().to_string(),
                    body,
                    attributes: attributes(&r["attributes"], &at)?,
                    trace_id,
                    span_id,
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// What every receiver checks: the content type, the headers the test asked for, then the body
/// by `parse`. `Err` is the response a collector gives, with the reason kept.
fn accept<T>(
    g: &mut Inner,
    headers: &HeaderMap,
    body: &Bytes,
    parse: impl Fn(&Value) -> Result<Vec<T>, String>,
) -> Result<Vec<T>, Box<Response>> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.starts_with("application/json") {
        g.rejections.push(format!("content-type {ct:?}"));
        return Err(Box::new((StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported content type").into_response()));
    }
    for (k, v) in g.required_headers.clone() {
        if headers.get(&k).and_then(|h| h.to_str().ok()) != Some(v.as_str()) {
            g.rejections.push(format!("header {k} missing or wrong"));
            return Err(Box::new((StatusCode::UNAUTHORIZED, "unauthorized").into_response()));
        }
    }
    serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()).and_then(|v| parse(&v)).map_err(|why| {
        g.rejections.push(why.clone());
        let body = json!({"code": 3, "message": why}).to_string();
        Box::new((StatusCode::BAD_REQUEST, [("content-type", "application/json")], body).into_response())
    })
}

fn accepted() -> Response {
    (StatusCode::OK, [("content-type", "application/json")], "{}").into_response()
}

/// Checks a request with `parse` and hands what it held to `keep`, answering as a collector does.
fn receive<T>(
    inner: &Mutex<Inner>,
    headers: &HeaderMap,
    body: &Bytes,
    parse: impl Fn(&Value) -> Result<Vec<T>, String>,
    keep: impl FnOnce(&mut Inner, Vec<T>),
) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    match accept(&mut g, headers, body, parse) {
        Ok(items) => {
            keep(&mut g, items);
            accepted()
        }
        Err(refused) => *refused,
    }
}

async fn metrics(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    receive(&inner, &headers, &body, parse_metrics, |g, points| g.points.extend(points))
}

async fn logs(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    receive(&inner, &headers, &body, parse_logs, |g, records| g.logs.extend(records))
}

/// Traces also count requests and answer the statuses [`OtlpServer::fail_next`] queued.
async fn traces(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests += 1;
        if !g.fail_next.is_empty() {
            let status = g.fail_next.remove(0);
            return (StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), "try later")
                .into_response();
        }
    }
    receive(&inner, &headers, &body, parse, |g, spans| g.spans.extend(spans))
}

impl OtlpServer {
    pub async fn start() -> OtlpServer {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .route("/v1/logs", post(logs))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind otlp twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`: the `endpoint` (traces go to `/v1/traces` under it).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request must carry this header with this value.
    pub fn require_header(&self, name: &str, value: &str) {
        self.lock().required_headers.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The next traces request is answered with `status` (and its spans are lost, as with a real collector).
    pub fn fail_next(&self, status: u16) {
        self.lock().fail_next.push(status);
    }

    /// Metric points received so far (every export repeats the cumulative totals).
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.lock().points.clone()
    }

    /// Log records received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.lock().logs.clone()
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    /// Traces requests received, refused ones included.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// Waits until at least `n` spans named `name` arrived; panics with what did on timeout.
    pub async fn wait_spans(&self, name: &str, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<ReceivedSpan> = self.spans().into_iter().filter(|s| s.name == name).collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                let names: Vec<String> = self.spans().iter().map(|s| s.name.clone()).collect();
                panic!(
                    "otlp twin: {n} × {name:?} not received in {timeout:?}; got {names:?}; rejected {:?}",
                    self.rejections()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_the_json_mapping_forbids() {
        let good = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7", "name": "x", "kind": 1,
            "startTimeUnixNano": "1", "endTimeUnixNano": "2",
            "attributes": [{"key": "n", "value": {"intValue": "5"}}], "status": {"code": 1}}]}]}]});
        let spans = parse(&good).expect("good");
        assert_eq!(spans[0].attr("n"), Some(&json!(5)));
        for (path, bad) in [
            ("traceId", json!("4BF92F3577B34DA6A3CE929D0E0E4736")),
            ("traceId", json!("S/kvNXezTaajzpKdDg5HNg==")),
            ("spanId", json!("0000000000000000")),
            ("startTimeUnixNano", json!(1)),
            ("endTimeUnixNano", json!("0")),
            ("kind", json!(9)),
            ("attributes", json!([{"key": "n", "value": {"intValue": 5}}])),
        ] {
            let mut b = good.clone();
            b["resourceSpans"][0]["scopeSpans"][0]["spans"][0][path] = bad;
            assert!(parse(&b).is_err(), "{path} accepted");
        }
    }

    #[test]
    fn refuses_log_records_the_json_mapping_forbids() {
        let good = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "5", "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "hi"},
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
            "attributes": [{"key": "n", "value": {"intValue": "5"}}]}]}]}]});
        let logs = parse_logs(&good).expect("good");
        assert_eq!((logs[0].body.as_str(), logs[0].severity_number, logs[0].time_nanos), ("hi", 9, 5));
        for (path, bad) in [
            ("timeUnixNano", json!(5)),
            ("severityNumber", json!(30)),
            ("body", json!("hi")),
            ("body", json!({"stringValue": "a", "intValue": "1"})),
            ("spanId", Value::Null),
            ("traceId", json!("xyz")),
        ] {
            let mut b = good.clone();
            b["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0][path] = bad;
            assert!(parse_logs(&b).is_err(), "{path} accepted");
        }
    }
}
