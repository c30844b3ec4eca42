//! The admin listener: `/healthz`, `/readyz`, `/metrics` for probes and
//! Prometheus, and the JSON API under `/admin/v1/` (bearer token; off when
//! no `admin_token` is configured). Kept off the S3 port so no path can
//! collide with a bucket name. Responses are versioned by the path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::backend::{Backend, BackendError, BucketUsage, ClusterView};

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub backend: Arc<dyn Backend>,
    pub token: Option<String>,
    pub ready: Arc<AtomicBool>,
}

/// `GET /admin/v1/buckets`.
#[derive(Debug, Serialize)]
pub struct BucketsResponse {
    pub buckets: Vec<BucketUsage>,
}

/// `GET /admin/v1/cluster`: the backend's [`ClusterView`] and its mode.
#[derive(Debug, Serialize)]
pub struct ClusterResponse {
    pub mode: String,
    #[serde(flatten)]
    pub cluster: ClusterView,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/buckets", get(buckets))
        .route("/admin/v1/buckets/{name}", get(bucket).put(set_bucket))
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/repair", post(repair).get(last_repair))
        .route("/admin/v1/scrub", post(scrub).get(scrub_status))
        .route("/admin/v1/drain", post(drain).get(drain_status))
        .route("/admin/v1/rebalance", post(rebalance).get(rebalance_status))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if !s.ready.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    } else if !s.backend.ready().await {
        (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        crate::metrics::global().render(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A backend failure as an admin answer: 503 while the storage cannot be
/// reached (retry later), 500 otherwise.
fn backend_error(e: &BackendError) -> Response {
    match e {
        BackendError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        BackendError::NoSuchBucket { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
        BackendError::InvalidArgument(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Checks the bearer token in constant time; `Some` is the refusal to send.
fn refuse(s: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.token else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "the admin API is off: set admin_token to enable it",
        ));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let equal = sent.len() == token.len()
        && sent.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    (!equal).then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

async fn buckets(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.usage().await {
        Ok(buckets) => Json(BucketsResponse { buckets }).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn bucket(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.usage().await {
        Ok(all) => match all.into_iter().find(|b| b.name == name) {
            Some(b) => Json(b).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such bucket"),
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Bucket settings the operator applies (`PUT /admin/v1/buckets/{name}`).
#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BucketSettings {
    /// Storage class of new objects whose PUT names none.
    storage_class: String,
}

async fn set_bucket(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let settings: BucketSettings = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"storage_class\": \"<name>\"}}: {e}"),
            );
        }
    };
    match s.backend.set_bucket_storage_class(&name, &settings.storage_class).await {
        Ok(()) => Json(settings).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn cluster(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    Json(ClusterResponse { mode: s.backend.kind().to_string(), cluster: s.backend.cluster().await })
        .into_response()
}

/// `POST /admin/v1/repair`: one repair pass now (e.g. after a node came
/// back), answered with its [`RepairReport`](crate::backend::RepairReport)
/// once done.
async fn repair(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.repair().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => backend_error(&e),
    }
}

/// `GET /admin/v1/repair`: `{"last": …, "below_full": …, "survives": …}`:
/// the last pass this gateway ran (background or requested; null before
/// the first), how many objects are below full redundancy right now and
/// the fewest further shard losses any of them survives (null when none
/// is; both null without redundancy, fs mode).
async fn last_repair(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let now = match s.backend.redundancy().await {
        Ok(r) => r,
        Err(e) => return backend_error(&e),
    };
    let (below_full, survives) = match now {
        Some(r) => (serde_json::json!(r.below_full), serde_json::json!(r.survives)),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    Json(serde_json::json!({
        "last": s.backend.last_repair().await,
        "below_full": below_full,
        "survives": survives,
    }))
    .into_response()
}

/// `POST /admin/v1/drain`: one relocation pass now (shards off draining
/// and removed nodes), answered with its report once done; 400 without
/// nodes (fs mode).
async fn drain(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.relocate().await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => error(StatusCode::BAD_REQUEST, "this gateway's storage has no nodes to drain"),
        Err(e) => backend_error(&e),
    }
}

/// `GET /admin/v1/drain`: `{"running", "draining": [{"id", "since_ms",
/// "referenced", "referenced_ms", "empty"}], "last": …}` — a node listed `empty` holds
/// nothing any record or open upload part names, and can be removed from
/// the cluster file.
async fn drain_status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.drain_status().await {
        Ok(status) => Json(status).into_response(),
        Err(e) => backend_error(&e),
    }
}

/// `POST /admin/v1/rebalance`: one rebalance pass now (chunks onto their
/// placement under the current ring, in their class's current code),
/// answered with its report once done; 400 without nodes (fs mode).
async fn rebalance(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.backend.rebalance().await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => {
            error(StatusCode::BAD_REQUEST, "this gateway's storage has no nodes to rebalance")
        }
        Err(e) => backend_error(&e),
    }
}

/// `GET /admin/v1/rebalance`: `{"running": bool, "last": …}`.
async fn rebalance_status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    Json(s.backend.rebalance_status().await).into_response()
}

/// `POST /admin/v1/scrub` parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubParams {
    /// `false`: a light pass (`Stat` per shard). Default deep.
    pub deep: Option<bool>,
    /// `true`: answer with the report once the pass is done. Default: 202
    /// once started.
    pub wait: Option<bool>,
}

/// `POST /admin/v1/scrub[?deep=false][&wait=true]`: checks every shard of
/// every object now and rebuilds those found lost. 202 once started, or
/// the [`ScrubReport`](crate::backend::ScrubReport) with `wait=true`; 409
/// while another pass runs (unless waiting, which queues behind it).
async fn scrub(
    State(s): State<AdminState>,
    headers: HeaderMap,
    params: Result<Query<ScrubParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let Ok(Query(p)) = params else {
        return error(StatusCode::BAD_REQUEST, "parameters: deep=true|false, wait=true|false");
    };
    let (deep, wait) = (p.deep.unwrap_or(true), p.wait.unwrap_or(false));
    if !wait && s.backend.scrub_status().await.running {
        return error(StatusCode::CONFLICT, "a scrub pass is running");
    }
    match s.backend.scrub(deep, wait).await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "started": true, "deep": deep })))
                .into_response()
        }
        Err(e) => backend_error(&e),
    }
}

/// `GET /admin/v1/scrub`: `{"running": bool, "last": …}`.
async fn scrub_status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    Json(s.backend.scrub_status().await).into_response()
}
