//! Metrics hot paths: what every model call adds to the registry, and rendering `/metrics`.
//!
//!     cargo bench -p clawline-observe --bench metrics

use clawline_observe::exposition::Writer;
use clawline_observe::metrics::{self, Metrics};

fn main() {
    divan::main();
}

#[divan::bench]
fn count_one_model_call(b: divan::Bencher) {
    let m = Metrics::new();
    b.bench(|| {
        m.inc(&metrics::MODEL_CALLS, &["anthropic", "claude-sonnet", "ok"]);
        m.observe(&metrics::MODEL_LATENCY, &["anthropic", "claude-sonnet"], 1.2);
        m.add(&metrics::MODEL_TOKENS, &["main", "anthropic/claude-sonnet", "input"], 1200.0);
    });
}

#[divan::bench]
fn render_exposition(b: divan::Bencher) {
    let m = Metrics::new();
    for agent in ["main", "work", "family"] {
        for model in ["a/x", "b/y", "c/z"] {
            m.inc(&metrics::TURNS, &[agent, "telegram", "ok"]);
            m.add(&metrics::MODEL_TOKENS, &[agent, model, "input"], 10.0);
            m.observe(&metrics::MODEL_LATENCY, &[agent, model], 0.7);
        }
    }
    b.bench(|| {
        let mut w = Writer::new();
        m.write(&mut w);
        w.finish().len()
    });
}
