//! End-to-end: a flood of idle and half-open sockets costs bounded memory, and the gateway
//! keeps serving a real client while it lasts.
//!
//! Ten thousand connections (fewer if the file-descriptor limit is lower) from many loopback
//! addresses: half open TCP and send nothing, half ask for a WebSocket upgrade and never send
//! `connect`. The gateway's memory is read from `/proc` before and during the flood; the bound
//! asserted is memory, not time.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer};
use clawline_testkit::ws_client::{Client, cli_params};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's open-file limit as far as allowed; returns the limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Connects from loopback address number `i` (127.1.x.y), 24 connections per address.
async fn connect_from(i: usize, to: SocketAddr) -> std::io::Result<TcpStream> {
    let n = i / 24;
    let src = Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src.into(), 0))?;
    socket.connect(to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_sockets_cost_bounded_memory() {
    let limit = raise_nofile();
    // The gateway inherits the same limit; keep headroom on both sides.
    let n = 10_000usize.min(limit.saturating_sub(500) as usize);
    assert!(n >= 1000, "the open-file limit ({limit}) is too low for this test");
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "");
    let gw = spawn(dir.path()).await;
    let addr: SocketAddr = gw.base_url.trim_start_matches("http://").parse().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(gw.pid());

    let mut held = Vec::with_capacity(n);
    let (mut upgraded, mut refused) = (0usize, 0usize);
    for i in 0..n {
        let Ok(mut s) = connect_from(i, addr).await else { continue };
        if i % 2 == 1 {
            let req = format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).await.is_err() {
                continue;
            }
            let mut buf = [0u8; 12];
            match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
                Ok(Ok(_)) if &buf[9..12] == b"101" => upgraded += 1,
                Ok(Ok(_)) if &buf[9..12] == b"503" => refused += 1,
                _ => {}
            }
        }
        held.push(s);
    }
    let during = rss_kib(gw.pid());
    eprintln!(
        "{} sockets held ({upgraded} upgraded and idle, {refused} upgrades refused with 503); gateway RSS {before} KiB -> {during} KiB",
        held.len()
    );
    assert!(held.len() >= n * 9 / 10, "most connections were accepted: {}", held.len());
    assert!(upgraded > 0 && refused > 0, "some upgrades wait for their handshake, the rest are refused");

    // A real client still gets in and is served while the flood lasts.
    let url = gw.base_url.replacen("http://", "ws://", 1);
    let (mut c, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(c.request("health", serde_json::json!({})).await.unwrap()["payload"]["ok"], true);
    let probe = http().get(format!("{}/healthz", gw.base_url)).send().await.unwrap();
    assert_eq!(probe.status(), 200);

    // Memory stays bounded: a few KiB per socket at most (measured: see the README).
    let grown_mib = during.saturating_sub(before) / 1024;
    assert!(grown_mib < 128, "{} sockets grew the gateway by {grown_mib} MiB", held.len());
    drop(held);
}
