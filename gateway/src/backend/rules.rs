//! S3 rules every backend applies the same way: key limits, part numbers,
//! multipart ETags and composite checksums, upload listing pages. Pure
//! functions, so the fs and distributed backends cannot drift apart.

use base64::Engine as _;
use s3s::crypto::Checksum as _;
use time::OffsetDateTime;

use super::{
    BackendError, Checksums, MAX_PART_NUMBER, MIN_PART_SIZE, PartInfo, Result, UploadInfo,
    UploadsPage, UploadsQuery,
};

/// Longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Refuses keys S3 refuses: empty or longer than [`MAX_KEY_LEN`].
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(BackendError::InvalidKey { reason: "the key is empty".into() });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(BackendError::InvalidKey {
            reason: format!("the key is {} bytes; the limit is {MAX_KEY_LEN}", key.len()),
        });
    }
    Ok(())
}

/// Now, at millisecond precision: what every backend stores, so a value
/// read back equals the value written.
pub fn now_millis() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000).unwrap_or(now)
}

/// AWS's part number range.
pub fn check_part_number(n: u32) -> Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(BackendError::InvalidArgument(format!(
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        )))
    }
}

/// Checks a CompleteMultipartUpload part list against the stored parts:
/// ascending part numbers, each one stored with the given ETag (quotes
/// optional), every part but the last at least 5 MiB. Returns the index in
/// `stored` of each listed part, in order.
pub fn choose_parts(wanted: &[(u32, String)], stored: &[PartInfo]) -> Result<Vec<usize>> {
    for w in wanted.windows(2) {
        if w[1].0 <= w[0].0 {
            return Err(BackendError::InvalidPartOrder);
        }
    }
    let mut chosen = Vec::with_capacity(wanted.len());
    for (n, etag) in wanted {
        let etag = etag.trim().trim_matches('"');
        match stored.iter().position(|p| p.part_number == *n) {
            Some(i) if stored[i].etag == etag => chosen.push(i),
            _ => return Err(BackendError::InvalidPart { part_number: *n }),
        }
    }
    if let Some((_, all_but_last)) = chosen.split_last() {
        for &i in all_but_last {
            if stored[i].size < MIN_PART_SIZE {
                return Err(BackendError::EntityTooSmall { part_number: stored[i].part_number });
            }
        }
    }
    Ok(chosen)
}

/// S3's multipart ETag: MD5 of the concatenated binary part MD5s, `-N`.
pub fn multipart_etag(part_etags: &[&str]) -> Result<String> {
    let mut all = Vec::with_capacity(part_etags.len() * 16);
    for e in part_etags {
        all.extend(hex::decode(e).map_err(|e| BackendError::Internal(e.to_string()))?);
    }
    Ok(format!("{}-{}", hex::encode(s3s::crypto::Md5::checksum(&all)), part_etags.len()))
}

/// S3's COMPOSITE checksums: the checksum of the concatenated part
/// checksums, suffixed `-N`, for each algorithm every part carries.
pub fn composite_checksums(parts: &[PartInfo]) -> Checksums {
    let b64 = base64::engine::general_purpose::STANDARD;
    let n = parts.len();
    let mut out = Checksums::default();
    let collect = |get: fn(&Checksums) -> &Option<String>| -> Option<Vec<u8>> {
        let mut all = Vec::new();
        for p in parts {
            all.extend(b64.decode(get(&p.checksums).as_ref()?).ok()?);
        }
        Some(all)
    };
    if let Some(all) = collect(|c| &c.crc32) {
        out.crc32 = Some(format!("{}-{n}", b64.encode(s3s::crypto::Crc32::checksum(&all))));
    }
    if let Some(all) = collect(|c| &c.crc32c) {
        out.crc32c = Some(format!("{}-{n}", b64.encode(s3s::crypto::Crc32c::checksum(&all))));
    }
    if let Some(all) = collect(|c| &c.sha1) {
        out.sha1 = Some(format!("{}-{n}", b64.encode(s3s::crypto::Sha1::checksum(&all))));
    }
    if let Some(all) = collect(|c| &c.sha256) {
        out.sha256 = Some(format!("{}-{n}", b64.encode(s3s::crypto::Sha256::checksum(&all))));
    }
    out
}

/// A new multipart upload id: 32 lowercase hex digits (never a path),
/// time-ordered (UUIDv7) so that (key, upload id) order, which the
/// `upload-id-marker` of ListMultipartUploads pages by, is initiation order
/// as in S3.
pub fn new_upload_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Pure paging of uploads (shared logic, tested without disks): by key,
/// then upload id, the order the markers page by.
pub fn page_uploads(mut all: Vec<UploadInfo>, q: &UploadsQuery) -> UploadsPage {
    all.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
    let mut page = UploadsPage::default();
    let max = q.max_uploads.min(1000);
    let mut count = 0;
    for u in all {
        if !u.key.starts_with(&q.prefix) {
            continue;
        }
        if let Some(km) = &q.key_marker {
            let after = match &q.upload_id_marker {
                Some(um) => u.key > *km || (u.key == *km && u.upload_id > *um),
                None => u.key > *km,
            };
            if !after {
                continue;
            }
        }
        let cp = q.delimiter.as_deref().filter(|d| !d.is_empty()).and_then(|d| {
            u.key[q.prefix.len()..]
                .find(d)
                .map(|p| u.key[..q.prefix.len() + p + d.len()].to_string())
        });
        if let Some(cp) = &cp
            && (page.common_prefixes.last() == Some(cp) || q.key_marker.as_ref() == Some(cp))
        {
            continue;
        }
        if count == max {
            page.is_truncated = true;
            break;
        }
        count += 1;
        match cp {
            Some(cp) => {
                page.next_key_marker = Some(cp.clone());
                page.next_upload_id_marker = None;
                page.common_prefixes.push(cp);
            }
            None => {
                page.next_key_marker = Some(u.key.clone());
                page.next_upload_id_marker = Some(u.upload_id.clone());
                page.uploads.push(u);
            }
        }
    }
    page
}
