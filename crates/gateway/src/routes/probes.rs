//! `/healthz` (the process answers) and `/readyz` (and it can do its work).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"ok": true, "status": "live"}))
}

/// Ready when the state store answers within a second.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store_ok = matches!(
        tokio::time::timeout(Duration::from_secs(1), state.runtime.store().call(|_| Ok(()))).await,
        Ok(Ok(()))
    );
    let failing: Vec<&str> = if store_ok { vec![] } else { vec!["store"] };
    let status = if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({"ready": store_ok, "failing": failing, "uptimeMs": state.started.elapsed().as_millis() as u64})),
    )
}
