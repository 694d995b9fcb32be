//! The metrics registry in OTLP/HTTP's JSON encoding (`ExportMetricsServiceRequest`), and,
//! with the `otel` feature, the task that posts it to a collector's `/v1/metrics`.
//!
//! Counters are cumulative monotonic sums, gauges gauges, latency histograms explicit-bucket
//! histograms; every point carries the process start as its start time, so a collector sees
//! the same cumulative series `/metrics` shows. Names are the Prometheus names without the
//! `_total` suffix (a collector's Prometheus exporter adds it back). The export is periodic
//! and best-effort: a failed post is logged and the next one carries the totals anyway.

use serde_json::{Value, json};

use crate::exposition::Kind;
use crate::metrics::{LATENCY_BUCKETS, Point, SeriesPoint};

fn attrs(labels: &[(&'static str, String)]) -> Vec<Value> {
    labels.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect()
}

/// One request for `series`, taken at `now_nanos`, counted since `start_nanos`.
pub fn metrics_request(service_name: &str, series: &[SeriesPoint], start_nanos: u64, now_nanos: u64) -> Value {
    let (start, now) = (start_nanos.to_string(), now_nanos.to_string());
    let mut metrics: Vec<Value> = Vec::new();
    let mut i = 0;
    while i < series.len() {
        let family = series[i].0;
        let mut points = Vec::new();
        while i < series.len() && std::ptr::eq(series[i].0, family) {
            let (_, labels, point) = &series[i];
            points.push(match point {
                Point::Scalar(v) => {
                    json!({"attributes": attrs(labels), "startTimeUnixNano": start, "timeUnixNano": now, "asDouble": v})
                }
                Point::Histogram { counts, sum } => json!({
                    "attributes": attrs(labels), "startTimeUnixNano": start, "timeUnixNano": now,
                    "count": counts.iter().sum::<u64>().to_string(), "sum": sum,
                    "bucketCounts": counts.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "explicitBounds": LATENCY_BUCKETS,
                }),
            });
            i += 1;
        }
        let name = family.name.strip_suffix("_total").unwrap_or(family.name);
        let data = match family.kind {
            Kind::Counter => ("sum", json!({"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": points})),
            Kind::Gauge => ("gauge", json!({"dataPoints": points})),
            Kind::Histogram => ("histogram", json!({"aggregationTemporality": 2, "dataPoints": points})),
        };
        let unit = if family.name.ends_with("_seconds") {
            "s"
        } else if family.name.contains("usd") {
            "USD"
        } else {
            "1"
        };
        let mut m = json!({"name": name, "description": family.help, "unit": unit});
        m[data.0] = data.1;
        metrics.push(m);
    }
    json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service_name}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeMetrics": [{"scope": {"name": "clawline", "version": env!("CARGO_PKG_VERSION")}, "metrics": metrics}],
        }],
    })
}

#[cfg(feature = "otel")]
pub use exporter::start;

#[cfg(feature = "otel")]
mod exporter {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::metrics::Metrics;
    use crate::otlp_batch::{Destination, post};
    use crate::trace::now_unix_nanos;

    /// Posts `metrics` to `to` every flush interval, on the current Tokio runtime. Nothing is
    /// sent at shutdown: the totals since the last post are lost, as a restarted process's
    /// counters are.
    pub fn start(to: Destination, service_name: String, metrics: Arc<Metrics>, http: reqwest::Client) {
        let start = now_unix_nanos();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(to.flush_interval.max(Duration::from_millis(10)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let series = metrics.snapshot();
                if series.is_empty() {
                    continue;
                }
                let body = super::metrics_request(&service_name, &series, start, now_unix_nanos());
                post(&to, &http, "metrics", body, series.len()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{self, Metrics};

    #[test]
    fn counters_gauges_and_histograms_in_the_json_mapping() {
        let m = Metrics::new();
        m.inc(&metrics::TURNS, &["main", "cli", "ok"]);
        m.inc(&metrics::TURNS, &["main", "cli", "budget"]);
        m.set(&metrics::RUNS_ACTIVE, &[], 1.0);
        m.observe(&metrics::MODEL_LATENCY, &["p", "m"], 0.3);
        let v = metrics_request("clawline", &m.snapshot(), 1, 2);
        let ms = v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].as_array().unwrap();
        let turns = ms.iter().find(|x| x["name"] == "clawline_turns").unwrap();
        assert_eq!(turns["sum"]["isMonotonic"], true);
        assert_eq!(turns["sum"]["aggregationTemporality"], 2);
        assert_eq!(turns["sum"]["dataPoints"].as_array().unwrap().len(), 2);
        assert_eq!(turns["sum"]["dataPoints"][0]["startTimeUnixNano"], "1");
        let active = ms.iter().find(|x| x["name"] == "clawline_runs_active").unwrap();
        assert_eq!(active["gauge"]["dataPoints"][0]["asDouble"], 1.0);
        let lat = ms.iter().find(|x| x["name"] == "clawline_model_latency_seconds").unwrap();
        let p = &lat["histogram"]["dataPoints"][0];
        assert_eq!(p["count"], "1");
        assert_eq!(p["bucketCounts"].as_array().unwrap().len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(p["explicitBounds"].as_array().unwrap().len(), LATENCY_BUCKETS.len());
        assert_eq!(lat["unit"], "s");
    }
}
