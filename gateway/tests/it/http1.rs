//! HTTP/1.1 at the socket level: `Expect: 100-continue`, keep-alive and
//! pipelined requests, answers sent before the body. Clients (botocore
//! above all) depend on every response being framed exactly, so these
//! tests read the raw bytes the gateway writes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// One raw client connection with its read buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

/// A response's status line and headers (names lowercased).
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length").map_or(0, |v| v.parse().expect("numeric content-length"))
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        Self { s: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes into the buffer; false when the peer closed or
    /// nothing came within `wait`.
    async fn fill(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(wait, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next response head, or None if none arrives within `wait`.
    async fn head(&mut self, wait: Duration) -> Option<Head> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
                self.buf.drain(..end + 4);
                let mut lines = text.split("\r\n");
                let status_line = lines.next().unwrap();
                let mut parts = status_line.splitn(3, ' ');
                assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
                let status = parts.next().unwrap().parse().expect("numeric status");
                let headers = lines
                    .map(|l| {
                        let (k, v) = l.split_once(':').unwrap_or_else(|| {
                            panic!("not a header line {l:?} in a head of {status}: {text:?}")
                        });
                        (k.trim().to_ascii_lowercase(), v.trim().to_string())
                    })
                    .collect();
                return Some(Head { status, headers });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
    }

    /// The body of a response with a Content-Length.
    async fn body(&mut self, head: &Head) -> Vec<u8> {
        let n = head.content_length();
        while self.buf.len() < n {
            assert!(self.fill(Duration::from_secs(10)).await, "body cut short");
        }
        self.buf.drain(..n).collect()
    }

    /// True if the peer closes the connection within `wait` without
    /// sending anything more.
    async fn closed_by_peer(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(wait, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(_) => false,
        }
    }

    /// Asserts that nothing more arrives for a while: no second status
    /// line, no stray 100 Continue.
    async fn assert_quiet(&mut self) {
        assert!(self.buf.is_empty(), "stray bytes: {:?}", String::from_utf8_lossy(&self.buf));
        assert!(
            !self.fill(Duration::from_millis(300)).await,
            "stray bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// A request head signed for an unsigned payload, as bytes.
fn request_head(method: &str, url: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let path = url.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in signed_headers(method, url, extra) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_uploads_waiting_for_continue_share_one_connection() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("http1").send().await.unwrap();
    let up = s3.create_multipart_upload().bucket("http1").key("big").send().await.unwrap();
    let id = up.upload_id().unwrap().to_string();
    let ep = t.endpoint();
    let mut conn = Conn::open(t.gw().s3_addr()).await;
    let parts: Vec<Vec<u8>> = vec![bytes(5 << 20, 1), bytes(5 << 20, 2), bytes(300_000, 3)];
    let mut done = aws_sdk_s3::types::CompletedMultipartUpload::builder();
    for (i, data) in parts.iter().enumerate() {
        let n = i + 1;
        let url = format!("{ep}/http1/big?partNumber={n}&uploadId={id}");
        let len = data.len().to_string();
        conn.send(&request_head(
            "PUT",
            &url,
            &[("content-length", &len), ("expect", "100-continue")],
        ))
        .await;
        let cont = conn.head(Duration::from_secs(5)).await.expect("an answer to Expect");
        assert_eq!(cont.status, 100, "part {n}: {cont:?}");
        assert!(cont.headers.is_empty(), "part {n}: {cont:?}");
        conn.send(data).await;
        let fin = conn.head(Duration::from_secs(30)).await.expect("the part's response");
        assert_eq!(fin.status, 200, "part {n}: {fin:?}");
        let etag = format!("\"{}\"", md5_hex(data));
        assert_eq!(fin.header("etag"), Some(etag.as_str()), "part {n}: {fin:?}");
        assert_ne!(fin.header("connection"), Some("close"), "part {n}: keep-alive expected");
        assert!(conn.body(&fin).await.is_empty());
        done = done.parts(
            aws_sdk_s3::types::CompletedPart::builder().part_number(n as i32).e_tag(etag).build(),
        );
    }
    conn.assert_quiet().await;
    s3.complete_multipart_upload()
        .bucket("http1")
        .key("big")
        .upload_id(&id)
        .multipart_upload(done.build())
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("http1").key("big").send().await.unwrap();
    let got = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(got.as_ref(), parts.concat().as_slice());
}

/// hyper sends no `100 Continue` for an empty body, so the final answer
/// arrives where botocore waits for the interim one; botocore before
/// 1.43.77 then misreads the next response on that connection (the `aws
/// s3 sync` failure). The gateway closes such a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_waiting_for_continue_is_answered_and_its_connection_closed() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("http1").send().await.unwrap();
    let url = format!("{}/http1/empty", t.endpoint());
    let mut conn = Conn::open(t.gw().s3_addr()).await;
    conn.send(&request_head("PUT", &url, &[("content-length", "0"), ("expect", "100-continue")]))
        .await;
    // botocore waits a second for an interim response; whatever comes
    // in that slot is taken for the final one (a loaded machine may take
    // longer here, which changes nothing below).
    let fin = conn.head(Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(fin.status, 200, "{fin:?}");
    assert_eq!(fin.header("etag"), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    // The header is what makes botocore drop the connection (hyper would
    // keep it open otherwise: the empty body was read in full).
    assert_eq!(fin.header("connection"), Some("close"), "{fin:?}");
    assert!(conn.body(&fin).await.is_empty());
    assert!(conn.closed_by_peer(Duration::from_secs(5)).await, "the connection stays open");

    // The same request without Expect keeps its connection.
    let mut conn = Conn::open(t.gw().s3_addr()).await;
    conn.send(&request_head("PUT", &url, &[("content-length", "0")])).await;
    let fin = conn.head(Duration::from_secs(5)).await.unwrap();
    assert_eq!((fin.status, fin.header("connection")), (200, None), "{fin:?}");
    assert!(conn.body(&fin).await.is_empty());
    conn.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_its_body_is_answered_at_once_and_closed() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("http1").send().await.unwrap();
    let url = format!("{}/http1/refused", t.endpoint());
    let len = (1u32 << 20).to_string();
    let head = String::from_utf8(request_head(
        "PUT",
        &url,
        &[("content-length", &len), ("expect", "100-continue")],
    ))
    .unwrap();
    // Flip the signature's last digit.
    let at = head.find("Signature=").unwrap() + "Signature=".len() + 63;
    let flipped = if &head[at..=at] == "0" { "1" } else { "0" };
    let head = format!("{}{flipped}{}", &head[..at], &head[at + 1..]);
    let mut conn = Conn::open(t.gw().s3_addr()).await;
    conn.send(head.as_bytes()).await;
    let fin = conn.head(Duration::from_secs(10)).await.expect("an early answer");
    assert_eq!(fin.status, 403, "no 100 Continue for a refused request: {fin:?}");
    // hyper closes a connection whose body was never read anyway; the
    // header tells the client so before it reuses the connection.
    assert_eq!(fin.header("connection"), Some("close"), "{fin:?}");
    let body = String::from_utf8(conn.body(&fin).await).unwrap();
    assert!(body.contains("<Code>SignatureDoesNotMatch</Code>"), "{body}");
    assert!(conn.closed_by_peer(Duration::from_secs(5)).await, "the connection stays open");
    let missing = t.client().head_object().bucket("http1").key("refused").send().await;
    assert!(missing.is_err(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("http1").send().await.unwrap();
    let ep = t.endpoint();
    let mut wire = request_head("PUT", &format!("{ep}/http1/p1"), &[("content-length", "5")]);
    wire.extend_from_slice(b"hello");
    wire.extend(request_head("PUT", &format!("{ep}/http1/p2"), &[("content-length", "7")]));
    wire.extend_from_slice(b"goodbye");
    wire.extend(request_head("GET", &format!("{ep}/http1/p1"), &[]));
    wire.extend(request_head("GET", &format!("{ep}/http1/p2"), &[]));
    let mut conn = Conn::open(t.gw().s3_addr()).await;
    conn.send(&wire).await;
    for (what, want) in [("put p1", ""), ("put p2", ""), ("get p1", "hello"), ("get p2", "goodbye")]
    {
        let h = conn.head(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("{what}"));
        assert_eq!(h.status, 200, "{what}: {h:?}");
        assert_eq!(conn.body(&h).await, want.as_bytes(), "{what}");
    }
    conn.assert_quiet().await;
}
