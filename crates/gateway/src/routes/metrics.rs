//! `GET /metrics`: the Prometheus text exposition, behind the gateway token like every API.
//!
//! What the runs counted comes from the registry ([`clawline_observe::Metrics`]); what is read
//! at scrape time (process memory and CPU, each chat account's counters and whether it is up,
//! the channel queues) is read here. It must stay cheap: two `count(*)` queries on indexed
//! columns and a few `/proc` reads, nothing that scans transcripts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use clawline_channels::health::ConnState;
use clawline_observe::exposition::{CONTENT_TYPE, Writer};
use clawline_observe::metrics::{self, write_family};
use clawline_observe::process;

use crate::state::AppState;

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut w = Writer::new();
    state.runtime.observer().metrics().write(&mut w);

    write_family(&mut w, &metrics::PROCESS_RSS, &sample(process::resident_bytes().map(|b| b as f64)));
    write_family(&mut w, &metrics::PROCESS_CPU, &sample(process::cpu_seconds()));
    write_family(&mut w, &metrics::PROCESS_START, &[(vec![], state.started_ms as f64 / 1000.0)]);

    let reports = state.channels.as_ref().map(|c| c.status()).unwrap_or_default();
    let per_account = |f: &dyn Fn(&clawline_channels::health::AccountStatus) -> f64| -> Vec<(Vec<&str>, f64)> {
        reports.iter().map(|r| (vec![r.status.channel.as_str(), r.status.account_id.as_str()], f(&r.status))).collect()
    };
    write_family(
        &mut w,
        &metrics::CHANNEL_UP,
        &per_account(&|s| if s.state == ConnState::Connected { 1.0 } else { 0.0 }),
    );
    write_family(&mut w, &metrics::CHANNEL_INBOUND, &per_account(&|s| s.inbound as f64));
    write_family(&mut w, &metrics::CHANNEL_OUTBOUND, &per_account(&|s| s.outbound as f64));
    write_family(&mut w, &metrics::CHANNEL_DUPLICATES, &per_account(&|s| s.duplicates as f64));
    write_family(&mut w, &metrics::CHANNEL_SEND_FAILURES, &per_account(&|s| s.send_failures as f64));
    write_family(&mut w, &metrics::CHANNEL_DEAD_LETTERS, &per_account(&|s| s.dead_letters as f64));
    write_family(&mut w, &metrics::CHANNEL_RECONNECTS, &per_account(&|s| s.reconnects as f64));

    let queues = match state.runtime.store().channel_queue_depths().await {
        Ok((inbound, outbound)) => {
            vec![(vec!["channel_inbound"], inbound as f64), (vec!["channel_outbound"], outbound as f64)]
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not count the channel queues for /metrics");
            vec![]
        }
    };
    write_family(&mut w, &metrics::QUEUE_DEPTH, &queues);

    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], w.finish()).into_response()
}

fn sample(v: Option<f64>) -> Vec<(Vec<&'static str>, f64)> {
    v.map(|v| vec![(vec![], v)]).unwrap_or_default()
}
