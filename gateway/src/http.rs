//! The HTTP shell around s3s: accept loop (TCP_NODELAY, optional TLS,
//! graceful shutdown) and the per-request layer that assigns the request
//! id, enforces header limits, records metrics and logs, closes
//! connections whose `Expect: 100-continue` got no interim response, and
//! completes error bodies the way AWS writes them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
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

use crate::admission::{Budget, Exhausted};
use crate::auth::OpName;
use crate::metrics;

/// Largest header section accepted on the S3 port (AWS allows 8 KiB of
/// user metadata within its own header limit; 16 KiB leaves room for
/// signatures and long keys in copy sources).
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Error response of AWS's shape (request id in the body and headers) for
/// requests rejected before s3s sees them.
fn xml_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut r = (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response();
    set_id(&mut r, request_id);
    r
}

/// A fresh request id: 16 uppercase hex digits, like AWS's.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase()
}

/// Whether the request waits for `100 Continue` ([`waits_for_continue`]),
/// in its extensions for handlers that answer before the body.
#[derive(Debug, Clone, Copy)]
pub struct ContinueExpected(pub bool);

/// Largest XML request body (DeleteObjects, CompleteMultipartUpload,
/// tagging…); s3s reads it whole before the handler runs.
pub const XML_MAX_BODY: usize = 4 << 20;

/// Largest file of a browser POST upload; s3s reads it whole too.
pub const POST_MAX_FILE: u64 = 64 << 20;

/// Bytes of the memory budget a request's body takes when s3s buffers it
/// whole (POST forms, XML bodies), charged before s3s reads it; `None`
/// for bodies streamed to a handler (PutObject, UploadPart), which charge
/// themselves, and for empty ones.
pub fn buffered_body_charge(req: &Request) -> Option<u64> {
    let declared: Option<u64> =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared == Some(0) || (declared.is_none() && !chunked) {
        return None;
    }
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"));
    let cap = match *req.method() {
        http::Method::POST if form => POST_MAX_FILE + XML_MAX_BODY as u64,
        http::Method::POST => XML_MAX_BODY as u64,
        // A PUT with a subresource (`?tagging`, `?acl`, …) sends XML; one
        // with none, or a part (`?partNumber=&uploadId=`), streams data.
        http::Method::PUT => {
            let query = req.uri().query().unwrap_or_default();
            let streamed = query.is_empty()
                || query.split('&').all(|kv| {
                    let k = kv.split('=').next().unwrap_or_default();
                    matches!(
                        k,
                        "partNumber"
                            | "uploadId"
                            | "x-id"
                            | "AWSAccessKeyId"
                            | "Expires"
                            | "Signature"
                    ) || k.starts_with("X-Amz-")
                });
            if streamed {
                return None;
            }
            XML_MAX_BODY as u64
        }
        _ => return None,
    };
    Some(declared.map_or(cap, |n| n.min(cap)))
}

/// The per-request layer on the S3 router; `budget` is the memory budget
/// bodies that s3s buffers are charged to.
pub async fn s3_layer(State(budget): State<Budget>, mut req: Request, next: Next) -> Response {
    let charge = buffered_body_charge(&req);
    let _held = match charge {
        Some(bytes) => match budget.take(bytes).await {
            Ok(t) => Some(t),
            Err(Exhausted) => {
                metrics::global().observe("Unknown", 503, 0.0);
                return xml_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                    &request_id(),
                );
            }
        },
        None => None,
    };
    let waits_for_continue = waits_for_continue(&req);
    req.extensions_mut().insert(ContinueExpected(waits_for_continue));
    let body_empty = req.body().is_end_stream();
    let body_polled = Arc::new(AtomicBool::new(false));
    let polled = Arc::clone(&body_polled);
    let req = req.map(|b| Body::new(Counted { inner: b, count: Direction::In(polled) }));
    let mut resp = answer(req, next).await;
    // On every answer, refusals before s3s included.
    if answered_in_interim_slot(waits_for_continue, body_empty, body_polled.load(Ordering::Relaxed))
    {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| Body::new(Counted { inner: b, count: Direction::Out }))
}

/// The response to one request, with its request id, metrics and log line.
async fn answer(mut req: Request, next: Next) -> Response {
    let id = request_id();
    let started = Instant::now();
    let m = metrics::global();
    let header_bytes: usize =
        req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES {
        m.observe("Unknown", 400, started.elapsed().as_secs_f64());
        return xml_error(
            StatusCode::BAD_REQUEST,
            "RequestHeaderSectionTooLarge",
            &format!(
                "Your request header section exceeds the maximum allowed size of {MAX_HEADER_BYTES} bytes."
            ),
            &id,
        );
    }
    if let Some(r) = unkept_promise(&req, &id) {
        m.observe("Unknown", 501, started.elapsed().as_secs_f64());
        return r;
    }
    if let Some(r) = signature_v2(&req, &id) {
        m.observe("Unknown", 400, started.elapsed().as_secs_f64());
        return r;
    }
    if let Some(r) = malformed_presigned_signature(&req, &id) {
        m.observe("Unknown", 403, started.elapsed().as_secs_f64());
        return r;
    }
    let op = OpName::default();
    req.extensions_mut().insert(op.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
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
    resp
}

/// An HTTP/1.1 request that asked for `100 Continue` before its body
/// (hyper ignores the expectation from HTTP/1.0 clients, which send the
/// body at once).
fn waits_for_continue(req: &Request) -> bool {
    req.version() == http::Version::HTTP_11
        && req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether a request that waited for `100 Continue` gets its final
/// response where the client looks for the interim one: hyper sends
/// `100 Continue` only when the body is first read, and never for an
/// empty body (RFC 9110 allows both). Such a connection is closed after
/// the response. botocore before 1.43.77 (so the aws cli and boto3 of
/// most installs) remembers that early status line on the pooled
/// connection and applies it to the *next* response there, which then
/// parses as garbage: `aws s3 sync` of a tree with an empty file failed
/// its next multipart upload with a missing ETag (botocore #3755). A new
/// connection costs little; a poisoned one fails an upload.
fn answered_in_interim_slot(waits_for_continue: bool, body_empty: bool, body_read: bool) -> bool {
    waits_for_continue && (body_empty || !body_read)
}

/// Request headers that ask for a guarantee this store does not give:
/// server-side encryption (SSE-S3, SSE-KMS, SSE-C, also for a copy source)
/// and object lock. Accepting them would store in clear what the client
/// believes encrypted, or let a "locked" object be deleted; they are
/// refused with 501 NotImplemented, naming the header.
fn unkept_promise(req: &Request, id: &str) -> Option<Response> {
    let h = req.headers();
    let on = |name: &str, yes: &str| {
        h.get(name).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(yes.as_bytes()))
    };
    let named = h.keys().map(|k| k.as_str()).find(|k| {
        k.starts_with("x-amz-server-side-encryption")
            || k.starts_with("x-amz-copy-source-server-side-encryption")
            || *k == "x-amz-object-lock-mode"
            || *k == "x-amz-object-lock-retain-until-date"
    });
    let named = named.map(str::to_string).or_else(|| {
        [("x-amz-object-lock-legal-hold", "ON"), ("x-amz-bucket-object-lock-enabled", "true")]
            .into_iter()
            .find(|(n, yes)| on(n, yes))
            .map(|(n, _)| n.to_string())
    })?;
    Some(xml_error(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        &format!(
            "A header you provided implies functionality that is not implemented: {named} (this store keeps no encryption at rest and no object lock, and will not pretend to)."
        ),
        id,
    ))
}

/// Signature version 2 in the `Authorization` header (`AWS <key>:<sig>`)
/// is refused as AWS refuses it in every region opened since 2014: it
/// carries no age limit, so a captured request would replay forever.
/// URLs presigned with SigV2 (`AWSAccessKeyId`, `Expires`, `Signature`:
/// what `aws s3 presign` and boto3 make by default) stay accepted; s3s
/// refuses them once `Expires` has passed.
fn signature_v2(req: &Request, id: &str) -> Option<Response> {
    let header_v2 =
        req.headers().get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"AWS "));
    header_v2.then(|| {
        xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            id,
        )
    })
}

/// A presigned URL whose `X-Amz-Signature` is not 64 lowercase hex
/// digits: AWS answers 403 SignatureDoesNotMatch (s3s would answer 400
/// InvalidRequest, as if the URL lacked its fields). A URL without
/// `X-Amz-Algorithm` is left to s3s (400: not a presigned URL at all).
fn malformed_presigned_signature(req: &Request, id: &str) -> Option<Response> {
    let query = req.uri().query()?;
    let mut params = query.split('&');
    if !params.clone().any(|kv| kv.starts_with("X-Amz-Algorithm=")) {
        return None;
    }
    // A well-formed signature needs no percent-decoding: any `%` already
    // makes it malformed.
    let signature = params.find_map(|kv| kv.strip_prefix("X-Amz-Signature="))?;
    if signature.len() == 64 && signature.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some(xml_error(
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        id,
    ))
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
    /// A request body; the flag records that the handler read from it.
    In(Arc<AtomicBool>),
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
        if let Direction::In(polled) = &self.count {
            polled.store(true, Ordering::Relaxed);
        }
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p
            && let Some(d) = f.data_ref()
        {
            match self.count {
                Direction::In(_) => metrics::global().received(d.len() as u64),
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

/// Bounds on what one listener's connections may hold, so slow or
/// hostile clients cannot pile up sockets, handshakes or responses.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once; beyond it new ones are closed at accept.
    pub max_connections: usize,
    /// Time a client has to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a response may wait on a client that stopped reading it.
    pub write_stall: Duration,
}

/// Time to finish a TLS handshake (a client that opens a socket and
/// sends nothing would otherwise hold it for good).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` fires, then lets in-flight
/// requests finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
    drain: Duration,
    limits: ConnLimits,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let m = metrics::global();
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            m.connections_refused.inc();
            tracing::debug!(%peer, "closed at accept: max_connections are open");
            continue;
        };
        // Without this, small responses on reused connections wait ~40 ms
        // for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            m.connections.inc();
            let stall = limits.write_stall;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => serve_conn(s, app, watcher, peer, stall).await,
                        Ok(Err(e)) => {
                            m.handshakes_failed.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            m.handshakes_failed.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
                None => serve_conn(stream, app, watcher, peer, stall).await,
            }
            m.connections.dec();
            drop(slot);
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still busy after {drain:?}; closing them");
    }
}

async fn serve_conn<I>(
    io: I,
    app: axum::Router,
    watcher: Watcher,
    peer: SocketAddr,
    write_stall: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let stalled = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(WriteWatch { inner: io, started, stalled: Arc::clone(&stalled) });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(256 << 10);
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(app));
    let conn = watcher.watch(conn.into_owned());
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        () = write_stalled(started, &stalled, write_stall) => {
            metrics::global().stalled_writes.inc();
            tracing::debug!(%peer, "closed: the client stopped reading its response");
        }
    }
}

/// Resolves once a write has been pending for `limit` (`stalled` holds
/// when it started, in ms after `started` plus one; 0 when none is).
async fn write_stalled(started: Instant, stalled: &AtomicU64, limit: Duration) {
    let tick = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let since = stalled.load(Ordering::Relaxed);
        if since > 0 && write_stall_over(started.elapsed(), since, limit) {
            return;
        }
    }
}

/// Whether a write pending since `since` (ms after the connection
/// started, plus one) has waited `limit` at `now`.
fn write_stall_over(now: Duration, since: u64, limit: Duration) -> bool {
    now.as_millis() as u64 >= since - 1 + limit.as_millis() as u64
}

/// The connection's socket, noting when a write starts waiting on a
/// client that does not read (hyper has no write timeout of its own).
struct WriteWatch<I> {
    inner: I,
    started: Instant,
    stalled: Arc<AtomicU64>,
}

impl<I> WriteWatch<I> {
    fn note<T>(&self, p: Poll<T>) -> Poll<T> {
        match &p {
            Poll::Pending => {
                let now = self.started.elapsed().as_millis() as u64 + 1;
                let _ = self.stalled.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.stalled.store(0, Ordering::Relaxed),
        }
        p
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteWatch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteWatch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(p)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(p)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_final_answer_in_the_interim_slot_closes_the_connection() {
        // (waits for continue, body empty, body read) -> close
        assert!(answered_in_interim_slot(true, true, false), "empty body: hyper sends no 100");
        assert!(answered_in_interim_slot(true, true, true), "empty body, even if polled");
        assert!(answered_in_interim_slot(true, false, false), "refused before the body");
        assert!(!answered_in_interim_slot(true, false, true), "100 went out before the answer");
        assert!(!answered_in_interim_slot(false, true, false), "no Expect: nothing to confuse");
        assert!(!answered_in_interim_slot(false, false, false));
    }

    #[test]
    fn bodies_s3s_buffers_are_charged_and_streamed_ones_are_not() {
        let req = |method: &str, uri: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        let len = |n: &'static str| ("content-length", n);
        let xml = XML_MAX_BODY as u64;
        assert_eq!(buffered_body_charge(&req("POST", "/b?delete", &[len("300")])), Some(300));
        assert_eq!(
            buffered_body_charge(&req("POST", "/b/k?uploadId=x", &[len("9999999")])),
            Some(xml)
        );
        let form = ("content-type", "multipart/form-data; boundary=x");
        assert_eq!(
            buffered_body_charge(&req("POST", "/b", &[form, ("transfer-encoding", "chunked")])),
            Some(POST_MAX_FILE + xml)
        );
        assert_eq!(buffered_body_charge(&req("PUT", "/b/k?tagging", &[len("200")])), Some(200));
        assert_eq!(buffered_body_charge(&req("PUT", "/b?cors", &[len("200")])), Some(200));
        for streamed in [
            "/b/k",
            "/b/k?partNumber=2&uploadId=u",
            "/b/k?x-id=PutObject",
            "/b/k?AWSAccessKeyId=A&Expires=1&Signature=s",
        ] {
            assert_eq!(
                buffered_body_charge(&req("PUT", streamed, &[len("500")])),
                None,
                "{streamed}"
            );
        }
        assert_eq!(buffered_body_charge(&req("POST", "/b/k?uploads", &[len("0")])), None);
        assert_eq!(buffered_body_charge(&req("POST", "/b/k?uploads", &[])), None, "no body");
        assert_eq!(buffered_body_charge(&req("GET", "/b/k", &[len("10")])), None);
    }

    fn presigned(sig: &str) -> Request {
        let uri = format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={sig}");
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn a_presigned_signature_of_the_wrong_shape_is_a_signature_mismatch() {
        let good = "a".repeat(64);
        assert!(malformed_presigned_signature(&presigned(&good), "ID").is_none());
        for bad in ["abc", &"a".repeat(63), &"a".repeat(65), &"g".repeat(64), &"A".repeat(64), ""] {
            let r = malformed_presigned_signature(&presigned(bad), "ID").expect(bad);
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad}");
        }
        let header_auth = Request::builder().uri("/b/k?list-type=2").body(Body::empty()).unwrap();
        assert!(malformed_presigned_signature(&header_auth, "ID").is_none());
        let no_algorithm = Request::builder().uri("/b/k?X-Amz-Signature=abc").body(Body::empty());
        assert!(malformed_presigned_signature(&no_algorithm.unwrap(), "ID").is_none());
    }
}
