//! The load tool in its short mode, so it cannot rot: a few seconds of turns through each
//! entry point against the debug binary. The figures it prints are not checked (a debug build
//! on a shared CI machine says nothing about speed); that every turn succeeded and that the
//! gateway was sampled is.

mod common;

use std::time::Duration;

use clawline_testkit::load::{Entry, Options, run};
use common::bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_drives_every_entry_point_without_errors() {
    for entry in [Entry::OpenAi, Entry::Ws, Entry::Telegram] {
        let opts = Options {
            bin: bin(),
            entry,
            sessions: 12,
            turns: 2,
            concurrency: 4,
            max_duration: Duration::from_secs(60),
            sample_every: Duration::from_millis(50),
        };
        let r = run(&opts).await.unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        eprintln!("{}", serde_json::to_string(&r).unwrap_or_default());
        assert_eq!((r.turns_ok, r.errors), (24, 0), "{entry:?}: {:?}", r.error_samples);
        assert!(r.latency_ms_p50 > 0.0 && r.latency_ms_p99 >= r.latency_ms_p50, "{r:?}");
        assert!(r.rss_kib_idle > 1000 && r.rss_kib_peak >= r.rss_kib_idle, "{r:?}");
        assert!(!r.samples.is_empty());
    }
}
