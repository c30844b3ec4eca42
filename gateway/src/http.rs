//! The HTTP shell around s3s: accept loop (TCP_NODELAY, optional TLS,
//! graceful shutdown) and the per-request layer that assigns the request
//! id, enforces header limits, records metrics and logs, and completes
//! error bodies the way AWS writes them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::OpName;
use crate::metrics;

/// Largest header section accepted on the S3 port (AWS allows 8 KiB of
/// user metadata within its own header limit; 16 KiB leaves room for
/// signatures and long keys in copy sources).
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Error body of AWS's shape for requests rejected before s3s sees them.
fn xml_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// A fresh request id: 16 uppercase hex digits, like AWS's.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase()
}

/// The per-request layer on the S3 router.
pub async fn s3_layer(mut req: Request, next: Next) -> Response {
    let id = request_id();
    let started = Instant::now();
    let m = metrics::global();
    let header_bytes: usize =
        req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES {
        m.observe("Unknown", 400, started.elapsed().as_secs_f64());
        let mut r = xml_error(
            StatusCode::BAD_REQUEST,
            "RequestHeaderSectionTooLarge",
            &format!(
                "Your request header section exceeds the maximum allowed size of {MAX_HEADER_BYTES} bytes."
            ),
            &id,
        );
        set_id(&mut r, &id);
        return r;
    }
    let op = OpName::default();
    req.extensions_mut().insert(op.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let req = req.map(|b| Body::new(Counted { inner: b, count: Direction::In }));
    let span = tracing::info_span!("s3", request_id = %id, %method, path = %path);
    m.in_flight().inc();
    let mut resp = next.run(req).instrument(span.clone()).await;
    m.in_flight().dec();
    let status = resp.status();
    let elapsed = started.elapsed();
    m.observe(op.get(), status.as_u16(), elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            operation = op.get(),
            status = status.as_u16(),
            ms = elapsed.as_millis() as u64,
            "request"
        )
    });
    if status == StatusCode::NOT_MODIFIED {
        *resp.body_mut() = Body::empty();
    } else if (status.is_client_error() || status.is_server_error()) && method != http::Method::HEAD
    {
        resp = with_request_id(resp, &id).await;
    }
    set_id(&mut resp, &id);
    resp.map(|b| Body::new(Counted { inner: b, count: Direction::Out }))
}

fn set_id(resp: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-amz-request-id", v.clone());
        resp.headers_mut().insert("x-amz-id-2", v);
    }
}

/// Adds `<RequestId>` (and a `<Message>` where missing) to an S3 error
/// body; s3s leaves both out.
async fn with_request_id(resp: Response, id: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, 64 << 10).collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let patched = crate::s3::error::complete_error_xml(&String::from_utf8_lossy(&bytes), id);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(patched))
}

enum Direction {
    In,
    Out,
}

/// Counts body bytes into the metrics as they flow.
struct Counted {
    inner: Body,
    count: Direction,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p
            && let Some(d) = f.data_ref()
        {
            match self.count {
                Direction::In => metrics::global().received(d.len() as u64),
                Direction::Out => metrics::global().sent(d.len() as u64),
            }
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `stop` fires, then lets in-flight
/// requests finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // Without this, small responses on reused connections wait ~40 ms
        // for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => serve_conn(TokioIo::new(s), app, watcher, peer).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                },
                None => serve_conn(TokioIo::new(stream), app, watcher, peer).await,
            }
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still busy after {drain:?}; closing them");
    }
}

async fn serve_conn<I>(io: TokioIo<I>, app: axum::Router, watcher: Watcher, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(256 << 10);
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(app));
    let conn = watcher.watch(conn.into_owned());
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
