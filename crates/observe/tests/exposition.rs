//! The registry's text read back by two independent parsers: testkit's strict reader and the
//! `prometheus-parse` crate; label values with every character that needs escaping survive.

use clawline_observe::exposition::Writer;
use clawline_observe::metrics::{self, Metrics};
use clawline_testkit::prometheus_text;
use proptest::prelude::*;

fn filled() -> Metrics {
    let m = Metrics::new();
    m.inc(&metrics::TURNS, &["main", "telegram", "ok"]);
    m.inc(&metrics::TURNS, &["main", "cli", "budget"]);
    m.add(&metrics::MODEL_TOKENS, &["main", "p/m", "input"], 1200.0);
    m.add(&metrics::MODEL_COST, &["main", "p/m"], 0.0125);
    m.observe(&metrics::MODEL_LATENCY, &["p", "m"], 0.2);
    m.observe(&metrics::MODEL_LATENCY, &["p", "m"], 7.0);
    m.inc(&metrics::ERRORS, &["rate_limit"]);
    m.set(&metrics::RUNS_ACTIVE, &[], 2.0);
    m
}

#[test]
fn strict_and_third_party_parsers_agree() {
    let mut w = Writer::new();
    filled().write(&mut w);
    metrics::write_family(&mut w, &metrics::CHANNEL_UP, &[(vec!["telegram", "default"], 1.0)]);
    let text = w.finish();

    let strict = prometheus_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(strict.families["clawline_turns_total"].kind, "counter");
    assert_eq!(strict.families["clawline_model_latency_seconds"].kind, "histogram");
    assert_eq!(strict.value("clawline_turns_total", &[("channel", "cli"), ("outcome", "budget")]), Some(1.0));
    assert_eq!(strict.value("clawline_model_latency_seconds_count", &[("model", "m")]), Some(2.0));
    assert_eq!(strict.value("clawline_model_cost_usd_total", &[]), Some(0.0125));
    assert_eq!(strict.value("clawline_channel_up", &[("channel", "telegram")]), Some(1.0));

    let lines = text.lines().map(|l| Ok(l.to_string()));
    let loose = prometheus_parse::Scrape::parse(lines).expect("prometheus-parse reads it");
    let turns: Vec<_> = loose.samples.iter().filter(|s| s.metric == "clawline_turns_total").collect();
    assert_eq!(turns.len(), 2);
    assert!(turns.iter().all(|s| matches!(s.value, prometheus_parse::Value::Counter(v) if v == 1.0)));
    let hist = loose.samples.iter().find(|s| s.metric == "clawline_model_latency_seconds").expect("the histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 2.0)));
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert!(loose.docs.contains_key("clawline_runs_active"));
}

proptest! {
    #[test]
    fn any_label_value_round_trips(value in "\\PC{0,40}|[\"\\\\\n{},= ]{0,12}") {
        let m = Metrics::new();
        m.inc(&metrics::TOOL_CALLS, &[&value, "ok"]);
        let mut w = Writer::new();
        m.write(&mut w);
        let text = w.finish();
        let parsed = prometheus_text::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.value("clawline_tool_calls_total", &[("tool", value.as_str())]), Some(1.0));
    }
}
