//! The accept loop: TCP connections in, HTTP/1.1 (and WebSocket upgrades) served, with limits
//! that keep a flood of idle or slow sockets from costing memory.
//!
//! - At most [`MAX_HTTP_CONNECTIONS`] connections are served at once; beyond that, accepting
//!   pauses and new connections wait in the kernel's backlog.
//! - A client must send a request's headers within [`HEADER_READ_TIMEOUT`] (also between
//!   requests on a kept-alive connection), so silent sockets and slowloris clients are closed.
//! - Upgraded connections leave this loop: the WebSocket code bounds them (pending handshakes,
//!   live connections).
//! - On shutdown, connections finish their current request (up to [`DRAIN`]) and close.
//!
//! This is the only place that touches raw TCP; it knows nothing about routes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Connections served at once (upgraded WebSockets are not counted here).
pub const MAX_HTTP_CONNECTIONS: usize = 4096;
/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open requests get to finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` is cancelled, then drains.
pub async fn run(listener: tokio::net::TcpListener, app: Router, stop: CancellationToken) -> std::io::Result<()> {
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(svc) = make.call(addr).await;
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)).with_upgrades();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => drop(r),
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
            drop(permit);
        });
    }
    // Wait until the open connections have drained (each gives up after DRAIN).
    let all = u32::try_from(MAX_HTTP_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await.is_err() {
        tracing::warn!("open requests did not finish within {} s of shutdown; closing them", DRAIN.as_secs());
    }
    Ok(())
}

/// Cancels `stop` when `shutdown` resolves.
pub fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static, stop: CancellationToken) {
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
}
