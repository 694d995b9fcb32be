//! The load tool: drives a clawline binary with many sessions at once through its real entry
//! points, against a model twin that answers at once, and reports throughput, latency and the
//! gateway's memory and CPU (see `clawline_testkit::load`).
//!
//! ```text
//! cargo build --release -p clawline
//! cargo run --release -p clawline-testkit --bin clawline-load -- --bin target/release/clawline \
//!     --entry openai --sessions 1000 --turns 3 --concurrency 16
//! ```
//!
//! Loopback only; bounded by `--sessions × --turns` and `--max-secs`.

use std::path::PathBuf;
use std::time::Duration;

use clawline_testkit::load::{Entry, Options, Report, run};

fn usage() -> ! {
    println!(
        "usage: clawline-load [--bin PATH] [--entry openai|ws|telegram] [--sessions N] [--turns N] [--concurrency N] \
         [--max-secs S] [--json] [--samples]\n\
         defaults: --bin target/release/clawline --entry openai --sessions 100 --turns 3 --concurrency 16 --max-secs 120"
    );
    std::process::exit(0)
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    match v.as_deref().map(str::parse::<T>) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{flag} needs a number; see --help");
            std::process::exit(2)
        }
    }
}

fn print(r: &Report, samples: bool) {
    println!(
        "entry {}: {} sessions × {} turns planned, {} at a time",
        r.entry,
        r.sessions,
        r.turns_planned / r.sessions.max(1),
        r.concurrency
    );
    println!(
        "  turns ok {} / errors {}   in {:.2} s   → {:.1} turns/s",
        r.turns_ok, r.errors, r.wall_secs, r.turns_per_sec
    );
    println!(
        "  latency (request → final answer, model answers at once): p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99, r.latency_ms_max
    );
    println!(
        "  gateway RSS: idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; CPU {:.2} s",
        r.rss_kib_idle as f64 / 1024.0,
        r.rss_kib_peak as f64 / 1024.0,
        r.rss_kib_end as f64 / 1024.0,
        r.cpu_secs
    );
    for e in &r.error_samples {
        println!("  error: {e}");
    }
    if samples {
        println!("  t (ms)   RSS (MiB)   CPU %");
        for s in &r.samples {
            println!("  {:>6}   {:>9.1}   {:>5.1}", s.at_ms, s.rss_kib as f64 / 1024.0, s.cpu_percent);
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut opts = Options::default();
    let (mut json, mut samples) = (false, false);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bin" => opts.bin = it.next().map(PathBuf::from).unwrap_or(opts.bin),
            "--entry" => {
                opts.entry = it.next().as_deref().and_then(Entry::parse).unwrap_or_else(|| {
                    eprintln!("--entry is openai, ws or telegram");
                    std::process::exit(2)
                })
            }
            "--sessions" => opts.sessions = number::<usize>("--sessions", it.next()).max(1),
            "--turns" => opts.turns = number::<usize>("--turns", it.next()).max(1),
            "--concurrency" => opts.concurrency = number::<usize>("--concurrency", it.next()).max(1),
            "--max-secs" => opts.max_duration = Duration::from_secs(number("--max-secs", it.next())),
            "--json" => json = true,
            "--samples" => samples = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other}; see --help");
                std::process::exit(2)
            }
        }
    }
    match run(&opts).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print(&report, samples);
            }
            if report.errors > 0 {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("clawline-load: {e}");
            std::process::exit(1)
        }
    }
}
