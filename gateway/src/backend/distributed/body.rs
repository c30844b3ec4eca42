//! The body of a distributed PUT: verified as it streams into the data
//! path, with the verdict (size, MD5, checksums, or the typed error) kept
//! for the backend, and a look at the first bytes to decide whether the
//! object is small enough to live inline in its record.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;

use crate::backend::verify::{BodySummary, CheckedBody};
use crate::backend::{BackendError, Result};

/// The start of a body: either all of it (it ended within the limit) or
/// the bytes read so far.
pub enum Head {
    /// The body ended after these bytes.
    Whole(Vec<Bytes>),
    /// More follows these bytes.
    Partial(Vec<Bytes>),
}

/// Reads until more than `limit` bytes arrived or the body ended.
pub async fn read_head(body: &mut CheckedBody, limit: u64) -> Result<Head> {
    let mut got = Vec::new();
    let mut len = 0u64;
    while len <= limit {
        match body.next().await? {
            None => return Ok(Head::Whole(got)),
            Some(b) => {
                len += b.len() as u64;
                got.push(b);
            }
        }
    }
    Ok(Head::Partial(got))
}

/// Where the outcome of a body lands once the stream has ended.
pub type Verdict = Arc<Mutex<Option<Result<BodySummary>>>>;

/// Takes the outcome out of `v`: the summary, the typed body error, or
/// `None` when the stream was not read to its end.
pub fn take(v: &Verdict) -> Option<Result<BodySummary>> {
    v.lock().expect("verdict lock").take()
}

/// `head` then the rest of `body`, as the data path wants it. The body is
/// checked when it ends; a failed check (or a failed read) ends the stream
/// with an error, so the data path never commits it, and the typed error
/// waits in the returned [`Verdict`].
pub fn stream(
    head: Vec<Bytes>,
    body: CheckedBody,
) -> (impl Stream<Item = std::result::Result<Bytes, String>> + Unpin + Send, Verdict) {
    use futures::StreamExt;
    let verdict: Verdict = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&verdict);
    let rest = futures::stream::unfold(Some(body), move |state| {
        let slot = Arc::clone(&slot);
        async move {
            let mut body = state?;
            let failed = |e: BackendError| {
                let msg = e.to_string();
                *slot.lock().expect("verdict lock") = Some(Err(e));
                Some((Err(msg), None))
            };
            match body.next().await {
                Ok(Some(b)) => Some((Ok(b), Some(body))),
                Ok(None) => match body.finish() {
                    Ok(summary) => {
                        *slot.lock().expect("verdict lock") = Some(Ok(summary));
                        None
                    }
                    Err(e) => failed(e),
                },
                Err(e) => failed(e),
            }
        }
    });
    let s = futures::stream::iter(head.into_iter().map(Ok)).chain(rest);
    (Box::pin(s), verdict)
}

/// Joins the pieces of a small body.
pub fn concat(parts: Vec<Bytes>) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        v.extend_from_slice(&p);
    }
    v
}

/// Body failures that mean "the client sent something wrong", as opposed
/// to the cluster failing: they win over the data path's own error.
pub fn body_error(v: &Verdict) -> Option<BackendError> {
    match take(v) {
        Some(Err(e)) => Some(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::backend::verify::BodyCheck;

    fn body(parts: &[&'static [u8]]) -> CheckedBody {
        let items: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        CheckedBody::new(Box::pin(futures::stream::iter(items)), None, BodyCheck::default())
            .unwrap()
    }

    #[tokio::test]
    async fn small_bodies_are_whole_and_large_ones_continue() {
        let mut b = body(&[b"ab", b"cd"]);
        let Head::Whole(v) = read_head(&mut b, 4).await.unwrap() else { panic!("not whole") };
        assert_eq!(concat(v), b"abcd");
        let mut b = body(&[b"ab", b"cd", b"e", b"f"]);
        let Head::Partial(head) = read_head(&mut b, 3).await.unwrap() else { panic!() };
        let (s, verdict) = stream(head, b);
        let all: Vec<_> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(concat(all), b"abcdef");
        assert_eq!(take(&verdict).unwrap().unwrap().size, 6);
    }

    #[tokio::test]
    async fn a_bad_body_ends_the_stream_with_its_typed_error() {
        let items: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"abc"))];
        let check = BodyCheck {
            content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
            ..BodyCheck::default()
        };
        let b = CheckedBody::new(Box::pin(futures::stream::iter(items)), None, check).unwrap();
        let (s, verdict) = stream(Vec::new(), b);
        let all: Vec<_> = s.collect().await;
        assert!(all.last().unwrap().is_err());
        assert!(matches!(body_error(&verdict), Some(BackendError::BadDigest)));
    }
}
