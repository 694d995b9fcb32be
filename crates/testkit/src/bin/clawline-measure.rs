//! Measures a clawline binary: time from spawn to the first `200` from `/readyz`, resident
//! memory after it has idled, and the binary's size.
//!
//! ```text
//! cargo build --release -p clawline
//! cargo run --release -p clawline-testkit --bin clawline-measure -- --bin target/release/clawline
//! ```
//!
//! Each run starts the gateway on a fresh port against a state directory that was initialized
//! once beforehand (so key generation and the first-start config write are not counted; the
//! first start is reported separately). The config has a model provider and the web chat on,
//! like a real install; with `--channels` it also connects three chat accounts (Telegram,
//! Discord and Slack, served by the testkit twins on loopback), the DESIGN budget's "web chat
//! + 3 channels" case. Readiness is polled over raw TCP every 200 µs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Args {
    bin: PathBuf,
    runs: usize,
    idle: Duration,
    json: bool,
    channels: bool,
    smaps: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/clawline"),
        runs: 20,
        idle: Duration::from_secs(3),
        json: false,
        channels: false,
        smaps: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bin" => a.bin = it.next().map(PathBuf::from).unwrap_or(a.bin),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--idle-secs" => a.idle = Duration::from_secs(it.next().and_then(|v| v.parse().ok()).unwrap_or(3)),
            "--json" => a.json = true,
            "--channels" => a.channels = true,
            "--smaps" => a.smaps = true,
            "-h" | "--help" => {
                println!(
                    "usage: clawline-measure [--bin PATH] [--runs N] [--idle-secs S] [--channels] [--smaps] [--json]\n\
                     --smaps: after the first idle run, print where its resident memory is (/proc/<pid>/smaps)"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}; see --help");
                std::process::exit(2);
            }
        }
    }
    a
}

const TG_TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";
const DC_TOKEN: &str = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GabcDe.measure-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18999)
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// Resident memory by mapping, summed per file (or `[heap]`, `[stack]`, anonymous), split
/// into clean and dirty pages, largest first: what the idle RSS is made of.
fn print_smaps(pid: u32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        eprintln!("cannot read /proc/{pid}/smaps");
        return;
    };
    // name -> (rss, clean, dirty, mappings) in KiB
    let mut by: std::collections::BTreeMap<String, (u64, u64, u64, u64)> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: range perms offset dev inode [path]
            let perms = words.next().unwrap_or_default().to_string();
            let path = words.nth(3).unwrap_or("[anonymous]");
            current = format!("{path} {perms}");
            by.entry(current.clone()).or_default().3 += 1;
            continue;
        }
        let kib = words.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let e = by.entry(current.clone()).or_default();
        match first {
            "Rss:" => e.0 += kib,
            "Shared_Clean:" | "Private_Clean:" => e.1 += kib,
            "Shared_Dirty:" | "Private_Dirty:" => e.2 += kib,
            _ => {}
        }
    }
    let mut rows: Vec<_> = by.into_iter().filter(|(_, v)| v.0 > 0).collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    println!("resident memory of pid {pid} after idling (KiB): rss clean dirty mappings name perms");
    for (name, (rss, clean, dirty, n)) in rows.iter().take(15) {
        println!("  {rss:>7} {clean:>7} {dirty:>7} {n:>4}  {name}");
    }
}

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field =
        |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok();
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn spawn(bin: &Path, state: &Path, port: u16) -> Child {
    clawline_testkit::gateway::command(bin, state)
        .args(["gateway", "--port", &port.to_string()])
        .env("MEASURE_KEY", "sk-measure-0000000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

fn wait_ready(child: &mut Child, port: u16, started: Instant) -> Duration {
    loop {
        if ready(port) {
            return started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the gateway exited with {status} before it was ready");
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("not ready after 30 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    // The channel twins live on a runtime of their own for the whole measurement.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let channels = if args.channels {
        let (tg, dc, sl) = runtime.block_on(async {
            let tg = clawline_testkit::telegram_server::TelegramServer::start(TG_TOKEN).await;
            let dc = clawline_testkit::discord_server::DiscordServer::start(DC_TOKEN).await;
            let sl = clawline_testkit::slack_server::SlackServer::start("xoxb-measure", "xapp-measure", "secret").await;
            (tg, dc, sl)
        });
        let text = format!(
            "channels: {{ telegram: {{ botToken: '{TG_TOKEN}', apiRoot: '{}' }}, discord: {{ token: '{DC_TOKEN}', baseUrl: '{}' }},
               slack: {{ botToken: 'xoxb-measure', appToken: 'xapp-measure', baseUrl: '{}/api' }} }},",
            tg.api_root(),
            dc.api_url(),
            sl.base_url()
        );
        Some(((tg, dc, sl), text))
    } else {
        None
    };
    let channel_config = channels.as_ref().map_or(String::new(), |(_, t)| t.clone());
    std::fs::write(
        state.join("clawline.json"),
        format!(
            r#"{{
          models: {{ providers: {{ local: {{ baseUrl: "http://127.0.0.1:9/v1", apiKey: "${{MEASURE_KEY}}", models: [{{ id: "m" }}] }} }} }},
          agents: {{ defaults: {{ model: "local/m" }} }},
          {channel_config}
        }}"#
        ),
    )
    .expect("config");

    // First start: creates the key, the database, the token and the workspace.
    let port = free_port();
    let t0 = Instant::now();
    let mut child = spawn(&args.bin, &state, port);
    let first = wait_ready(&mut child, port, t0);
    stop(child);

    let mut ready_ms = Vec::new();
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    for i in 0..args.runs {
        let port = free_port();
        let t0 = Instant::now();
        let mut child = spawn(&args.bin, &state, port);
        ready_ms.push(wait_ready(&mut child, port, t0).as_secs_f64() * 1000.0);
        // Memory is read on a few runs only, after idling, to keep the whole measurement short.
        if i < 3 {
            std::thread::sleep(args.idle);
            if let Some((r, h)) = rss_kib(child.id()) {
                rss.push(r as f64);
                hwm.push(h as f64);
            }
            if args.smaps && i == 0 {
                print_smaps(child.id());
            }
        }
        stop(child);
    }
    ready_ms.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    hwm.sort_by(f64::total_cmp);
    let size = std::fs::metadata(&args.bin).map(|m| m.len()).unwrap_or(0);
    let median_rss = percentile(&rss, 0.5);
    let median_hwm = percentile(&hwm, 0.5);
    if args.json {
        println!(
            "{{\"binaryBytes\":{size},\"firstStartMs\":{:.2},\"readyMsMedian\":{:.2},\"readyMsP90\":{:.2},\"readyMsMin\":{:.2},\"idleRssKiB\":{median_rss},\"peakRssKiB\":{median_hwm},\"runs\":{}}}",
            first.as_secs_f64() * 1000.0,
            percentile(&ready_ms, 0.5),
            percentile(&ready_ms, 0.9),
            ready_ms[0],
            args.runs
        );
    } else {
        println!("binary                {} ({:.1} MiB)", args.bin.display(), size as f64 / 1048576.0);
        println!("first start → ready   {:.1} ms", first.as_secs_f64() * 1000.0);
        println!(
            "spawn → /readyz       median {:.1} ms, p90 {:.1} ms, min {:.1} ms ({} runs)",
            percentile(&ready_ms, 0.5),
            percentile(&ready_ms, 0.9),
            ready_ms[0],
            args.runs
        );
        println!(
            "idle RSS after {} s    {:.1} MiB (peak {:.1} MiB)",
            args.idle.as_secs(),
            median_rss / 1024.0,
            median_hwm / 1024.0
        );
    }
}
