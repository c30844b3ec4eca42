//! The operator's own admin listener: `/healthz` and `/readyz` (the
//! process serves; `/readyz` says whether this replica leads or stands by,
//! and is 200 for both so a standby replica does not stall a rollout) and
//! `/metrics` (Prometheus text: reconciles, errors, durations).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::context::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Set once this replica leads.
    pub leading: Arc<AtomicBool>,
}

/// The router; served by the binary, driven directly by tests.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let role = if s.leading.load(Ordering::Relaxed) { "leading\n" } else { "standby\n" };
    (StatusCode::OK, role)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        s.metrics.encode(),
    )
}
