//! The load tool's engine: a real gateway process driven through its real entry points by many
//! sessions at once, against a model twin that answers at once, so what is measured is the
//! gateway's own cost.
//!
//! [`run`] writes a config into a fresh state directory (a token, the twin as the only
//! provider, budgets off so the load is not stopped by them), spawns the binary, and then
//! `concurrency` workers take turns from a fixed list: turn `i` belongs to session
//! `load-<i mod sessions>`, so every session gets `turns` turns and their histories grow as a
//! user's would. Inputs are deterministic; the run is bounded by the number of turns and by
//! `max_duration`, and talks to loopback only. The gateway's resident memory and CPU are
//! sampled from `/proc/<pid>` every `sample_every` while it runs.
//!
//! Entry points: `openai` (`POST /v1/chat/completions` with a `user` per session, so the
//! stored history is used), `ws` (OpenClaw's protocol: one connection per worker, `agent`
//! answered twice, accepted then final) and `telegram` (a Bot API twin the gateway long-polls:
//! each session is a private chat with a session of its own, a turn is a message pushed to the
//! twin and ends when the bot's reply to that chat arrives). Latency is the client's: request
//! sent (or message pushed) to final answer. Telegram's pacing (about one message a second per
//! chat after a burst of three) bounds that entry's rate per chat, as it does in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gateway::GatewayProcess;
use crate::model_server::{Api, ModelServer, Reply};
use crate::telegram_server::TelegramServer;
use crate::ws_client::{Client, cli_params};

const TOKEN: &str = "load-gateway-token-0123456789abcdef";
const KEY: &str = "sk-load-model-key-0123456789";
const BOT_TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";
/// Session `i`'s chat (and user) id on the Telegram twin.
const CHAT_BASE: i64 = 700_000;

/// The entry point turns go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    OpenAi,
    Ws,
    Telegram,
}

impl Entry {
    pub fn parse(s: &str) -> Option<Entry> {
        match s {
            "openai" => Some(Entry::OpenAi),
            "ws" => Some(Entry::Ws),
            "telegram" => Some(Entry::Telegram),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Entry::OpenAi => "openai",
            Entry::Ws => "ws",
            Entry::Telegram => "telegram",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub bin: PathBuf,
    pub entry: Entry,
    /// Distinct sessions (conversations).
    pub sessions: usize,
    /// Turns per session.
    pub turns: usize,
    /// Turns in flight at once.
    pub concurrency: usize,
    /// The run stops taking new turns after this long.
    pub max_duration: Duration,
    pub sample_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bin: PathBuf::from("target/release/clawline"),
            entry: Entry::OpenAi,
            sessions: 100,
            turns: 3,
            concurrency: 16,
            max_duration: Duration::from_secs(120),
            sample_every: Duration::from_millis(250),
        }
    }
}

/// One sample of the gateway process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at_ms: u64,
    pub rss_kib: u64,
    /// CPU used since the previous sample, in percent of one core.
    pub cpu_percent: f64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub entry: &'static str,
    pub sessions: usize,
    pub concurrency: usize,
    pub turns_planned: usize,
    pub turns_ok: usize,
    pub errors: usize,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    pub wall_secs: f64,
    pub turns_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub rss_kib_idle: u64,
    pub rss_kib_peak: u64,
    pub rss_kib_end: u64,
    pub cpu_secs: f64,
    pub samples: Vec<Sample>,
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn write_config(dir: &Path, server: &ModelServer, telegram: Option<&TelegramServer>) -> Result<(), String> {
    // Every chat may talk to the bot, and each chat is its own conversation.
    let channels = telegram.map_or(String::new(), |tg| {
        format!(
            "channels: {{ telegram: {{ botToken: \"{BOT_TOKEN}\", apiRoot: \"{}\", pollTimeoutSeconds: 2, dmPolicy: \"open\",
               allowFrom: [\"*\"] }} }}, session: {{ dmScope: \"per-channel-peer\" }},",
            tg.api_root()
        )
    });
    let text = format!(
        r#"{{
  gateway: {{ auth: {{ token: "${{LOAD_TOKEN}}" }} }},
  models: {{ mode: "replace", providers: {{ twin: {{ baseUrl: "{}", api: "openai-completions", apiKey: "${{LOAD_KEY}}",
             models: [{{ id: "twin-model", cost: {{ input: 1, output: 2 }} }}] }} }} }},
  agents: {{ defaults: {{ model: "twin/twin-model", budget: {{ dailyTokens: 0, dailyCostUsd: 0 }} }} }},
  logging: {{ level: "warn", consoleLevel: "warn" }},
  {}
}}
"#,
        server.base_url(),
        channels
    );
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("clawline.json"), text).map_err(|e| e.to_string())
}

enum Worker {
    Http(reqwest::Client),
    Ws(Box<Client>),
    Telegram(Arc<TelegramServer>),
}

async fn one_turn(worker: &mut Worker, base: &str, session: usize, turn: usize) -> Result<(), String> {
    let message = format!("turn {turn} of session {session}: say ok");
    match worker {
        Worker::Http(http) => {
            let resp = http
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(TOKEN)
                .json(&json!({"model": "clawline", "user": format!("load-{session}"),
                              "messages": [{"role": "user", "content": message}]}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() || body["choices"][0]["message"]["content"] != "ok" {
                return Err(format!("{status}: {body}"));
            }
            Ok(())
        }
        Worker::Ws(c) => {
            let id = c
                .send_request(
                    "agent",
                    json!({"message": message, "agentId": "main", "sessionKey": format!("load-{session}"),
                           "idempotencyKey": format!("load-{session}-{turn}")}),
                )
                .await?;
            let accepted = c.response(&id, Duration::from_secs(30)).await?;
            if accepted["ok"] != true {
                return Err(format!("not accepted: {accepted}"));
            }
            let done = c.response(&id, Duration::from_secs(60)).await?;
            if done["ok"] != true || done["payload"]["status"] != "ok" {
                return Err(format!("not ok: {done}"));
            }
            // Events for the run are not needed; keep the client's buffers from growing.
            c.events.clear();
            c.frames.clear();
            Ok(())
        }
        Worker::Telegram(tg) => {
            let chat = CHAT_BASE + session as i64;
            tg.push_text(chat, chat, &message);
            // The reply to this turn is the chat's (turn + 1)-th message from the bot.
            let deadline = Instant::now() + Duration::from_secs(60);
            while tg.sent_count_to(chat) <= turn {
                if Instant::now() > deadline {
                    return Err(format!("no reply in chat {chat} to turn {turn} within 60 s"));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        }
    }
}

/// Runs the load described by `opts` and reports what it measured.
pub async fn run(opts: &Options) -> Result<Report, String> {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("ok"));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let telegram = match opts.entry {
        Entry::Telegram => {
            let tg = TelegramServer::start(BOT_TOKEN).await;
            for s in 0..opts.sessions {
                let id = CHAT_BASE + s as i64;
                tg.add_private_chat(id, &format!("Load {s}"), None);
            }
            Some(Arc::new(tg))
        }
        _ => None,
    };
    write_config(dir.path(), &server, telegram.as_deref())?;
    let gw = GatewayProcess::spawn(&opts.bin, dir.path(), &[("LOAD_TOKEN", TOKEN), ("LOAD_KEY", KEY)]).await?;
    let pid = gw.pid();
    let base = gw.base_url.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = proc_rss_kib(pid).unwrap_or(0);
    let cpu_start = proc_cpu_secs(pid).unwrap_or(0.0);

    let stop_sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        let every = opts.sample_every;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (Instant::now(), proc_cpu_secs(pid).unwrap_or(0.0));
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                let now = Instant::now();
                let cpu = proc_cpu_secs(pid).unwrap_or(last.1);
                let pct = (cpu - last.1) / now.duration_since(last.0).as_secs_f64().max(1e-6) * 100.0;
                last = (now, cpu);
                samples.push(Sample {
                    at_ms: started.elapsed().as_millis() as u64,
                    rss_kib: proc_rss_kib(pid).unwrap_or(0),
                    cpu_percent: (pct * 10.0).round() / 10.0,
                });
            }
            samples
        })
    };

    let total = opts.sessions * opts.turns;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + opts.max_duration;
    let started = Instant::now();
    let ws_url = base.replacen("http://", "ws://", 1);
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (next, base, ws_url, sessions, entry, telegram) =
            (next.clone(), base.clone(), ws_url.clone(), opts.sessions, opts.entry, telegram.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut worker = match entry {
                Entry::OpenAi => Worker::Http(reqwest::Client::new()),
                Entry::Ws => match Client::connect(&ws_url, &[], cli_params(TOKEN, &["operator.admin"]), None).await {
                    Ok((c, res)) if res["ok"] == true => Worker::Ws(Box::new(c)),
                    Ok((_, res)) => return (latencies, vec![format!("connect refused: {res}")]),
                    Err(e) => return (latencies, vec![format!("connect: {e}")]),
                },
                Entry::Telegram => match telegram {
                    Some(tg) => Worker::Telegram(tg),
                    None => return (latencies, vec!["no Telegram twin".to_string()]),
                },
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() > deadline {
                    break;
                }
                // Turn i: session i mod sessions, its (i / sessions)-th turn: sessions advance together.
                let (session, turn) = (i % sessions, i / sessions);
                let t = Instant::now();
                match one_turn(&mut worker, &base, session, turn).await {
                    Ok(()) => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed().as_secs_f64();
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let rss_end = proc_rss_kib(pid).unwrap_or(0);
    let cpu_secs = proc_cpu_secs(pid).unwrap_or(cpu_start) - cpu_start;
    drop(gw);
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(rss_end).max(rss_end);
    Ok(Report {
        entry: opts.entry.as_str(),
        sessions: opts.sessions,
        concurrency: opts.concurrency,
        turns_planned: total,
        turns_ok: latencies.len(),
        errors: errors.len(),
        error_samples: errors.into_iter().take(5).collect(),
        wall_secs: (wall * 1000.0).round() / 1000.0,
        turns_per_sec: ((latencies.len() as f64 / wall.max(1e-6)) * 10.0).round() / 10.0,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p95: percentile(&latencies, 0.95),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        rss_kib_idle: rss_idle,
        rss_kib_peak: peak,
        rss_kib_end: rss_end,
        cpu_secs: (cpu_secs * 100.0).round() / 100.0,
        samples,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 51.0);
        assert_eq!(super::percentile(&v, 0.99), 99.0);
        assert_eq!(super::percentile(&[], 0.9), 0.0);
    }
}
