//! Plain HTTP GETs to the admin listeners of nodes and of the gateway
//! (`/readyz`, `/status`) on loopback: one connection per request, with a
//! deadline, so a hung process cannot stall the caller.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting, sending or reading failed.
    #[error("GET http://{addr}{path}: {message}")]
    Failed { addr: SocketAddr, path: String, message: String },
    /// No answer within the deadline.
    #[error("GET http://{addr}{path}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, path: String, timeout: Duration },
}

/// `GET http://addr{path}`: the status code and body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), ProbeError> {
    let failed = |e: &dyn std::fmt::Display| ProbeError::Failed {
        addr,
        path: path.to_string(),
        message: e.to_string(),
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| failed(&e))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(&e))?;
        let resp = send.send_request(req).await.map_err(|e| failed(&e))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| failed(&e))?.to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(ProbeError::Timeout { addr, path: path.to_string(), timeout }))
}

/// Whether `GET /readyz` answers 200.
pub async fn ready(addr: SocketAddr) -> bool {
    matches!(get(addr, "/readyz", Duration::from_secs(2)).await, Ok((200, _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gets_status_and_body_and_reports_refusals() {
        let app =
            axum::Router::new().route("/readyz", axum::routing::get(|| async { "ready\n" })).route(
                "/busy",
                axum::routing::get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "no") }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(l, app).await });
        assert!(ready(addr).await);
        let (code, body) = get(addr, "/busy", Duration::from_secs(2)).await.unwrap();
        assert_eq!((code, &body[..]), (503, &b"no"[..]));
        server.abort();
        let _ = server.await;
        let err = get(addr, "/readyz", Duration::from_secs(2)).await.unwrap_err();
        assert!(err.to_string().contains("/readyz"), "{err}");
        assert!(!ready(addr).await);
    }
}
