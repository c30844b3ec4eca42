//! The admin listener of a node: `/healthz` (the process runs), `/readyz`
//! (the store is open and the QUIC endpoint accepts; off while draining),
//! `/metrics` (Prometheus text), `/status` (JSON view of the metadata
//! plane: node id, role, term, leader, last applied, members, ring epoch).
//! Kept off the QUIC port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::meta::MetaService;
use crate::store::ShardStore;

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// Set once serving, cleared when shutdown starts.
    pub ready: Arc<AtomicBool>,
    /// For usage gauges at scrape time.
    pub store: ShardStore,
    /// The metadata plane, when the node runs one.
    pub meta: Option<Arc<MetaService>>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let m = crate::metrics::global();
    let store = s.store.clone();
    if let Ok(Ok(u)) = tokio::task::spawn_blocking(move || store.usage()).await {
        m.used_bytes.set(u.used as i64);
        m.shards.set(u.shards as i64);
        m.available_bytes.set(u.available.min(i64::MAX as u64) as i64);
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        m.render(),
    )
        .into_response()
}

async fn status(State(s): State<AdminState>) -> Response {
    match &s.meta {
        Some(m) => axum::Json(m.status().await).into_response(),
        None => (StatusCode::NOT_FOUND, "no metadata plane on this node\n").into_response(),
    }
}
