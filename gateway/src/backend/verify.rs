//! Body verification shared by every backend: size limits, idle timeouts,
//! Content-MD5 and `x-amz-checksum-*` (sent as headers or as trailers after
//! an aws-chunked body), all checked before anything is committed.
//!
//! A backend pulls the body through [`CheckedBody`], writes each chunk, and
//! calls [`CheckedBody::finish`] before making the write visible; a mismatch
//! there aborts the write, so a corrupted upload never becomes an object.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use serde::{Deserialize, Serialize};

use super::{BackendError, ByteStream, Result};

/// Base64 checksums of a body, as S3 sends and returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    /// Whether no checksum is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Pairs of (algorithm name, value) that are set.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("CRC32", &self.crc32),
            ("CRC32C", &self.crc32c),
            ("CRC64NVME", &self.crc64nvme),
            ("SHA1", &self.sha1),
            ("SHA256", &self.sha256),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
    }

    /// Sets the value of algorithm `name` (case-insensitive); false when the
    /// name is not a known algorithm.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name.to_ascii_uppercase().as_str() {
            "CRC32" => &mut self.crc32,
            "CRC32C" => &mut self.crc32c,
            "CRC64NVME" => &mut self.crc64nvme,
            "SHA1" => &mut self.sha1,
            "SHA256" => &mut self.sha256,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// Supplies checksums that arrive after the body (aws-chunked trailers).
pub type TrailerSource = Arc<dyn Fn() -> Checksums + Send + Sync>;

/// What a body must satisfy before it may be committed.
#[derive(Clone, Default)]
pub struct BodyCheck {
    /// `Content-MD5` as sent (base64).
    pub content_md5: Option<String>,
    /// Checksums sent as headers.
    pub expected: Checksums,
    /// Algorithms to compute and store even if no value was sent
    /// (`x-amz-checksum-algorithm`, `x-amz-sdk-checksum-algorithm`).
    pub compute: Vec<String>,
    /// Checksums sent as trailers, read once the body has ended.
    pub trailer: Option<TrailerSource>,
    /// Longest wait for the next piece of body before giving up.
    pub idle_timeout: Option<Duration>,
    /// Largest body accepted.
    pub max_size: Option<u64>,
}

impl fmt::Debug for BodyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyCheck")
            .field("content_md5", &self.content_md5)
            .field("expected", &self.expected)
            .field("compute", &self.compute)
            .field("trailer", &self.trailer.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// What a verified body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySummary {
    pub size: u64,
    /// Hex MD5: the ETag of a single-part object.
    pub md5_hex: String,
    /// Every checksum computed (requested or sent).
    pub checksums: Checksums,
}

/// A body being read under a [`BodyCheck`].
pub struct CheckedBody {
    body: ByteStream,
    check: BodyCheck,
    declared: Option<u64>,
    size: u64,
    md5: s3s::crypto::Md5,
    hasher: ChecksumHasher,
}

impl CheckedBody {
    /// Starts reading `body`; `declared` is the length the client announced.
    pub fn new(body: ByteStream, declared: Option<u64>, check: BodyCheck) -> Result<Self> {
        if let (Some(d), Some(max)) = (declared, check.max_size)
            && d > max
        {
            return Err(BackendError::EntityTooLarge { limit: max });
        }
        let mut names: Vec<String> = check.compute.clone();
        names.extend(check.expected.iter().map(|(n, _)| n.to_string()));
        let mut hasher = ChecksumHasher::default();
        for n in &names {
            match n.to_ascii_uppercase().as_str() {
                "CRC32" => hasher.crc32 = Some(s3s::crypto::Crc32::new()),
                "CRC32C" => hasher.crc32c = Some(s3s::crypto::Crc32c::new()),
                "CRC64NVME" => hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
                "SHA1" => hasher.sha1 = Some(s3s::crypto::Sha1::new()),
                "SHA256" => hasher.sha256 = Some(s3s::crypto::Sha256::new()),
                other => {
                    return Err(BackendError::InvalidArgument(format!(
                        "unknown checksum algorithm {other}"
                    )));
                }
            }
        }
        // Trailers may name any algorithm; compute all the cheap ones when
        // a trailer is expected and nothing was announced.
        if check.trailer.is_some() && names.is_empty() {
            hasher.crc32 = Some(s3s::crypto::Crc32::new());
            hasher.crc32c = Some(s3s::crypto::Crc32c::new());
            hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new());
        }
        Ok(Self { body, check, declared, size: 0, md5: s3s::crypto::Md5::new(), hasher })
    }

    /// The next piece of body, hashed; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        let next = match self.check.idle_timeout {
            Some(t) => tokio::time::timeout(t, self.body.next())
                .await
                .map_err(|_| BackendError::RequestTimeout)?,
            None => self.body.next().await,
        };
        match next {
            None => Ok(None),
            Some(Err(e)) => Err(BackendError::BodyRead(e)),
            Some(Ok(chunk)) => {
                self.size += chunk.len() as u64;
                if let Some(max) = self.check.max_size
                    && self.size > max
                {
                    return Err(BackendError::EntityTooLarge { limit: max });
                }
                if let Some(d) = self.declared
                    && self.size > d
                {
                    return Err(BackendError::InvalidArgument(format!(
                        "the body is longer than the declared {d} bytes"
                    )));
                }
                self.md5.update(&chunk);
                self.hasher.update(&chunk);
                Ok(Some(chunk))
            }
        }
    }

    /// Checks length and digests once the body has ended.
    pub fn finish(self) -> Result<BodySummary> {
        if let Some(d) = self.declared
            && self.size != d
        {
            return Err(BackendError::IncompleteBody { expected: d, received: self.size });
        }
        let md5 = self.md5.finalize();
        if let Some(sent) = &self.check.content_md5 {
            let sent = base64::engine::general_purpose::STANDARD
                .decode(sent.trim())
                .map_err(|_| BackendError::InvalidDigest)?;
            if sent.len() != 16 {
                return Err(BackendError::InvalidDigest);
            }
            if sent != md5 {
                return Err(BackendError::BadDigest);
            }
        }
        let got = self.hasher.finalize();
        let computed = Checksums {
            crc32: got.checksum_crc32,
            crc32c: got.checksum_crc32c,
            crc64nvme: got.checksum_crc64nvme,
            sha1: got.checksum_sha1,
            sha256: got.checksum_sha256,
        };
        let mut expected = self.check.expected.clone();
        if let Some(trailer) = &self.check.trailer {
            let late = trailer();
            for (name, value) in late.iter() {
                expected.set(name, value.to_string());
            }
        }
        let mut stored = Checksums::default();
        for (name, want) in expected.iter() {
            let have = computed.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
            match have {
                Some(have) if have == want => {}
                _ => return Err(BackendError::ChecksumMismatch { algorithm: name }),
            }
            stored.set(name, want.to_string());
        }
        for name in &self.check.compute {
            if let Some((n, v)) =
                computed.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
            {
                stored.set(n, v.to_string());
            }
        }
        Ok(BodySummary { size: self.size, md5_hex: hex::encode(md5), checksums: stored })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(items))
    }

    async fn drain(mut b: CheckedBody) -> Result<BodySummary> {
        while b.next().await?.is_some() {}
        b.finish()
    }

    #[tokio::test]
    async fn md5_and_checksums_verify() {
        let md5 = base64::engine::general_purpose::STANDARD
            .encode(hex::decode("5eb63bbbe01eeed093cb22bb8f5acdc3").unwrap());
        let check = BodyCheck {
            content_md5: Some(md5),
            compute: vec!["crc32".into()],
            ..Default::default()
        };
        let s = drain(CheckedBody::new(body(&[b"hello ", b"world"]), Some(11), check).unwrap())
            .await
            .unwrap();
        assert_eq!(s.md5_hex, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(s.checksums.crc32.as_deref(), Some("DUoRhQ=="));
    }

    #[tokio::test]
    async fn mismatches_are_typed() {
        let bad_md5 = BodyCheck {
            content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
            ..Default::default()
        };
        let e = drain(CheckedBody::new(body(&[b"x"]), None, bad_md5).unwrap()).await.unwrap_err();
        assert!(matches!(e, BackendError::BadDigest), "{e}");

        let expected = Checksums { crc32c: Some("AAAAAA==".into()), ..Default::default() };
        let bad_sum = BodyCheck { expected, ..Default::default() };
        let e = drain(CheckedBody::new(body(&[b"x"]), None, bad_sum).unwrap()).await.unwrap_err();
        assert!(matches!(e, BackendError::ChecksumMismatch { algorithm: "CRC32C" }), "{e}");

        let short =
            drain(CheckedBody::new(body(&[b"abc"]), Some(5), BodyCheck::default()).unwrap())
                .await
                .unwrap_err();
        assert!(matches!(short, BackendError::IncompleteBody { expected: 5, received: 3 }));

        let big = BodyCheck { max_size: Some(2), ..Default::default() };
        let e = drain(CheckedBody::new(body(&[b"abc"]), None, big).unwrap()).await.unwrap_err();
        assert!(matches!(e, BackendError::EntityTooLarge { limit: 2 }));
    }

    #[tokio::test]
    async fn trailer_checksums_are_checked_after_the_body() {
        let late = Checksums { crc32: Some("DUoRhQ==".into()), ..Default::default() };
        let check =
            BodyCheck { trailer: Some(Arc::new(move || late.clone())), ..Default::default() };
        let s =
            drain(CheckedBody::new(body(&[b"hello world"]), None, check).unwrap()).await.unwrap();
        assert_eq!(s.checksums.crc32.as_deref(), Some("DUoRhQ=="));
        assert!(s.checksums.crc32c.is_none(), "only what was sent is stored");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let stalled: ByteStream = Box::pin(futures::stream::pending());
        let check =
            BodyCheck { idle_timeout: Some(Duration::from_millis(50)), ..Default::default() };
        let e = drain(CheckedBody::new(stalled, None, check).unwrap()).await.unwrap_err();
        assert!(matches!(e, BackendError::RequestTimeout));
    }
}
