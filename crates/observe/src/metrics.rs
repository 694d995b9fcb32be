//! The metrics registry: every family clawline reports, and the values it has counted so far.
//!
//! A family is a constant ([`Family`]) naming the metric, its help text, kind and label names;
//! the code that counts passes the family and the label values. Values live in memory only
//! (a restart starts from zero, which is what Prometheus expects of counters) and are written
//! out by [`Metrics::write`]. Families whose values are read at scrape time (process memory,
//! channel counters, queue depths) are declared here too, so every name is in one list, and
//! written by the caller with [`write_family`].
//!
//! It must not become a place for text: label values are names (agents, models, tools,
//! channels, outcome classes), never message content, arguments or secrets. Each family keeps
//! at most [`MAX_SERIES`] label combinations; later ones are counted under `other`, so a
//! model that invents tool names cannot grow the registry without bound.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::exposition::{Kind, Writer};

/// Label combinations kept per family before new ones fold into `other`.
pub const MAX_SERIES: usize = 500;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// One metric family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $help:literal) => {
        pub static $id: Family = Family { name: $name, help: $help, kind: Kind::$kind, labels: &[$($l),*] };
    };
}

family!(
    TURNS,
    "clawline_turns_total",
    Counter,
    ["agent", "channel", "outcome"],
    "Agent runs finished, by how they ended (ok, or the error class)."
);
family!(
    MODEL_CALLS,
    "clawline_model_calls_total",
    Counter,
    ["provider", "model", "outcome"],
    "Model calls, by outcome (ok, or the provider error class)."
);
family!(
    MODEL_TOKENS,
    "clawline_model_tokens_total",
    Counter,
    ["agent", "model", "kind"],
    "Tokens the models reported, by kind (input, output, cache_read, cache_write)."
);
family!(
    MODEL_COST,
    "clawline_model_cost_usd_total",
    Counter,
    ["agent", "model"],
    "Cost of the model calls in US dollars, from the configured prices."
);
family!(
    MODEL_LATENCY,
    "clawline_model_latency_seconds",
    Histogram,
    ["provider", "model"],
    "Time from sending a model request to the end of its answer."
);
family!(
    TOOL_CALLS,
    "clawline_tool_calls_total",
    Counter,
    ["tool", "outcome"],
    "Tool calls the agent made, by outcome (ok, error, not_run)."
);
family!(
    ERRORS,
    "clawline_errors_total",
    Counter,
    ["class"],
    "Failures, by class: model call errors by provider class, tool errors, run stops."
);
family!(
    BUDGET_STOPS,
    "clawline_budget_stops_total",
    Counter,
    ["agent", "limit"],
    "Runs stopped by a budget (daily_tokens, daily_cost, tool_loop, max_turns)."
);
family!(RUNS_ACTIVE, "clawline_runs_active", Gauge, [], "Agent runs in progress.");
family!(
    JOURNAL_DROPPED,
    "clawline_observability_dropped_total",
    Counter,
    [],
    "Observability rows dropped because the writer fell behind."
);

family!(PROCESS_RSS, "clawline_process_resident_memory_bytes", Gauge, [], "Resident memory of the gateway process.");
family!(
    PROCESS_CPU,
    "clawline_process_cpu_seconds_total",
    Counter,
    [],
    "CPU time (user and system) the gateway process used."
);
family!(PROCESS_START, "clawline_process_start_time_seconds", Gauge, [], "When the gateway started, in Unix seconds.");
family!(
    CHANNEL_UP,
    "clawline_channel_up",
    Gauge,
    ["channel", "account"],
    "1 when the chat account is connected and receiving, else 0."
);
family!(
    CHANNEL_INBOUND,
    "clawline_channel_inbound_total",
    Counter,
    ["channel", "account"],
    "Messages received from the platform and journaled."
);
family!(
    CHANNEL_OUTBOUND,
    "clawline_channel_outbound_total",
    Counter,
    ["channel", "account"],
    "Replies the platform accepted."
);
family!(
    CHANNEL_DUPLICATES,
    "clawline_channel_duplicates_total",
    Counter,
    ["channel", "account"],
    "Deliveries the platform repeated, recognized and dropped."
);
family!(
    CHANNEL_SEND_FAILURES,
    "clawline_channel_send_failures_total",
    Counter,
    ["channel", "account"],
    "Send attempts that failed (they are retried)."
);
family!(
    CHANNEL_DEAD_LETTERS,
    "clawline_channel_dead_letters_total",
    Counter,
    ["channel", "account"],
    "Replies given up on."
);
family!(
    CHANNEL_RECONNECTS,
    "clawline_channel_reconnects_total",
    Counter,
    ["channel", "account"],
    "Times the account's connection was made again."
);
family!(
    QUEUE_DEPTH,
    "clawline_queue_depth",
    Gauge,
    ["queue"],
    "Rows waiting: outbound replies not yet delivered, inbound messages not yet answered."
);

/// Every family, in the order `/metrics` writes them.
pub static ALL: &[&Family] = &[
    &TURNS,
    &MODEL_CALLS,
    &MODEL_TOKENS,
    &MODEL_COST,
    &MODEL_LATENCY,
    &TOOL_CALLS,
    &ERRORS,
    &BUDGET_STOPS,
    &RUNS_ACTIVE,
    &JOURNAL_DROPPED,
    &PROCESS_RSS,
    &PROCESS_CPU,
    &PROCESS_START,
    &CHANNEL_UP,
    &CHANNEL_INBOUND,
    &CHANNEL_OUTBOUND,
    &CHANNEL_DUPLICATES,
    &CHANNEL_SEND_FAILURES,
    &CHANNEL_DEAD_LETTERS,
    &CHANNEL_RECONNECTS,
    &QUEUE_DEPTH,
];

/// Families the registry itself counts: the first ones of [`ALL`] (the rest are read at
/// scrape time).
static COUNTED: &[&Family] = ALL.split_at(10).0;

#[derive(Debug, Clone)]
enum Value {
    Scalar(f64),
    Histogram { counts: Vec<u64>, sum: f64 },
}

type Series = BTreeMap<Vec<String>, Value>;

/// One series' value in a [`Metrics::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Scalar(f64),
    /// Per-bucket counts (not cumulative; one more than [`LATENCY_BUCKETS`]) and the sum.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
    },
}

/// One series: its family, its labels by name, its value.
pub type SeriesPoint = (&'static Family, Vec<(&'static str, String)>, Point);

/// The in-memory values. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<&'static str, Series>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, family: &'static Family, labels: &[&str], f: impl FnOnce(&mut Value) -> R, init: Value) -> R {
        debug_assert_eq!(family.labels.len(), labels.len(), "{}: wrong number of labels", family.name);
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let series = all.entry(family.name).or_default();
        let mut key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        if !series.contains_key(&key) && series.len() >= MAX_SERIES {
            key = vec!["other".to_string(); labels.len()];
        }
        f(series.entry(key).or_insert(init))
    }

    fn update_scalar(&self, family: &'static Family, labels: &[&str], f: impl FnOnce(&mut f64)) {
        self.with(
            family,
            labels,
            |val| {
                if let Value::Scalar(x) = val {
                    f(x);
                }
            },
            Value::Scalar(0.0),
        );
    }

    /// Adds `v` to a counter (or gauge).
    pub fn add(&self, family: &'static Family, labels: &[&str], v: f64) {
        self.update_scalar(family, labels, |x| *x += v);
    }

    /// Adds one.
    pub fn inc(&self, family: &'static Family, labels: &[&str]) {
        self.add(family, labels, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, family: &'static Family, labels: &[&str], v: f64) {
        self.update_scalar(family, labels, |x| *x = v);
    }

    /// Records one observation in a histogram with [`LATENCY_BUCKETS`].
    pub fn observe(&self, family: &'static Family, labels: &[&str], v: f64) {
        let slot = LATENCY_BUCKETS.iter().position(|b| v <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.with(
            family,
            labels,
            |val| {
                if let Value::Histogram { counts, sum } = val {
                    counts[slot] += 1;
                    *sum += v;
                }
            },
            Value::Histogram { counts: vec![0; LATENCY_BUCKETS.len() + 1], sum: 0.0 },
        );
    }

    /// A counter's or gauge's current value (a histogram's count), if it was ever touched.
    pub fn value(&self, family: &'static Family, labels: &[&str]) -> Option<f64> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        match all.get(family.name)?.get(&key)? {
            Value::Scalar(v) => Some(*v),
            Value::Histogram { counts, .. } => Some(counts.iter().sum::<u64>() as f64),
        }
    }

    /// Every series this registry counts, family by family (for the OTLP metrics export).
    pub fn snapshot(&self) -> Vec<SeriesPoint> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        for family in COUNTED {
            for (key, value) in all.get(family.name).into_iter().flatten() {
                let labels = family.labels.iter().copied().zip(key.iter().cloned()).collect();
                let point = match value {
                    Value::Scalar(v) => Point::Scalar(*v),
                    Value::Histogram { counts, sum } => Point::Histogram { counts: counts.clone(), sum: *sum },
                };
                out.push((*family, labels, point));
            }
        }
        out
    }

    /// Writes every family this registry counts, with its samples.
    pub fn write(&self, w: &mut Writer) {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for family in COUNTED {
            w.family(family.name, family.help, family.kind);
            let Some(series) = all.get(family.name) else {
                if family.labels.is_empty() && family.kind != Kind::Histogram {
                    w.sample(family.name, &[], 0.0);
                }
                continue;
            };
            for (key, value) in series {
                let labels: Vec<(&str, &str)> =
                    family.labels.iter().copied().zip(key.iter().map(String::as_str)).collect();
                match value {
                    Value::Scalar(v) => w.sample(family.name, &labels, *v),
                    Value::Histogram { counts, sum } => {
                        w.histogram(family.name, &labels, LATENCY_BUCKETS, counts, *sum)
                    }
                }
            }
        }
    }
}

/// Writes a family whose samples the caller read at scrape time.
pub fn write_family(w: &mut Writer, family: &'static Family, samples: &[(Vec<&str>, f64)]) {
    w.family(family.name, family.help, family.kind);
    for (values, v) in samples {
        let labels: Vec<(&str, &str)> = family.labels.iter().copied().zip(values.iter().copied()).collect();
        w.sample(family.name, &labels, *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::valid_name;

    #[test]
    fn every_family_is_well_named_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for f in ALL {
            assert!(valid_name(f.name, false), "{}", f.name);
            assert!(f.labels.iter().all(|l| valid_name(l, true) && *l != "le"), "{}", f.name);
            assert!(seen.insert(f.name), "{} twice", f.name);
            if f.kind == Kind::Counter {
                assert!(f.name.ends_with("_total"), "{}: counters end in _total", f.name);
            }
        }
        assert!(COUNTED.iter().all(|c| ALL.iter().any(|a| a.name == c.name)));
    }

    #[test]
    fn counts_sets_and_observes() {
        let m = Metrics::new();
        m.inc(&TURNS, &["main", "webchat", "ok"]);
        m.add(&TURNS, &["main", "webchat", "ok"], 2.0);
        m.set(&RUNS_ACTIVE, &[], 4.0);
        m.observe(&MODEL_LATENCY, &["p", "m"], 0.3);
        m.observe(&MODEL_LATENCY, &["p", "m"], 500.0);
        assert_eq!(m.value(&TURNS, &["main", "webchat", "ok"]), Some(3.0));
        assert_eq!(m.value(&RUNS_ACTIVE, &[]), Some(4.0));
        assert_eq!(m.value(&MODEL_LATENCY, &["p", "m"]), Some(2.0));
        let mut w = Writer::new();
        m.write(&mut w);
        let text = w.finish();
        assert!(text.contains("clawline_turns_total{agent=\"main\",channel=\"webchat\",outcome=\"ok\"} 3\n"));
        assert!(text.contains("clawline_model_latency_seconds_bucket{provider=\"p\",model=\"m\",le=\"0.5\"} 1\n"));
        assert!(text.contains("clawline_model_latency_seconds_bucket{provider=\"p\",model=\"m\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("clawline_observability_dropped_total 0\n"));
    }

    #[test]
    fn series_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 50 {
            m.inc(&TOOL_CALLS, &[&format!("tool{i}"), "ok"]);
        }
        assert_eq!(m.value(&TOOL_CALLS, &["other", "other"]), Some(50.0));
        assert_eq!(m.value(&TOOL_CALLS, &["tool0", "ok"]), Some(1.0));
    }
}
