//! Whole requests through an s3s service with SigV4 credentials: the
//! parsers of the `Authorization` header, presigned query strings,
//! aws-chunked bodies with trailers, routing and XML bodies all see the
//! fuzzer's bytes. Input: a request line (`METHOD target`), header lines,
//! a blank line, the body. The handler behind is s3s's default (501), so
//! only parsing and authentication run; none of it may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s3s::S3;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};

struct Refuses;

impl S3 for Refuses {}

fn service() -> &'static S3Service {
    static SERVICE: OnceLock<S3Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let mut b = S3ServiceBuilder::new(Refuses);
        b.set_auth(SimpleAuth::from_single("AKIAFUZZ", "fuzz-secret-key"));
        b.build()
    })
}

/// The request the bytes describe, or None when they do not form one.
fn request(data: &[u8]) -> Option<http::Request<s3s::Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n").unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let body = body.get(2..).unwrap_or_default();
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut b = http::Request::builder().method(method).uri(target);
    for line in lines {
        let (k, v) = line.split_once(':')?;
        b = b.header(k.trim(), v.trim());
    }
    b.body(s3s::Body::from(bytes::Bytes::copy_from_slice(body))).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = request(data) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _ = rt.block_on(service().call(req));
});
