//! Reads: GetObject and HeadObject with ranges, part numbers and the four
//! conditional headers evaluated as RFC 7232 and AWS do.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use time::OffsetDateTime;

use super::error::OrS3;
use super::{Front, blob, etag, etag_matches, parse_http_date, ticketed, ts};
use crate::backend::{ObjectInfo, ReadRange};

/// Outcome of evaluating conditional headers against an object.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Proceed,
    NotModified,
    PreconditionFailed,
}

/// AWS's rules: If-Match decides over If-Unmodified-Since, If-None-Match
/// over If-Modified-Since; a failed If-Match/Unmodified is 412, a matched
/// If-None-Match or unmodified If-Modified-Since is 304.
pub(super) fn evaluate(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Verdict {
    let modified = info.last_modified;
    let after = |t: &Timestamp| modified > OffsetDateTime::from(t.clone());
    match if_match {
        Some(c) if !etag_matches(c, &info.etag) => return Verdict::PreconditionFailed,
        Some(_) => {}
        None => {
            if if_unmodified_since.is_some_and(after) {
                return Verdict::PreconditionFailed;
            }
        }
    }
    match if_none_match {
        Some(c) if etag_matches(c, &info.etag) => return Verdict::NotModified,
        Some(_) => {}
        None => {
            if if_modified_since.is_some_and(|t| !after(t)) {
                return Verdict::NotModified;
            }
        }
    }
    Verdict::Proceed
}

/// The error for a verdict, with the validators a 304 carries.
pub(super) fn verdict_error(v: Verdict, info: &ObjectInfo) -> Option<S3Error> {
    match v {
        Verdict::Proceed => None,
        Verdict::PreconditionFailed => Some(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )),
        Verdict::NotModified => {
            let mut e = S3Error::new(S3ErrorCode::NotModified);
            let mut h = http::HeaderMap::new();
            if let Ok(v) = format!("\"{}\"", info.etag).parse() {
                h.insert(http::header::ETAG, v);
            }
            e.set_headers(h);
            Some(e)
        }
    }
}

/// Range header and partNumber into one read range.
fn read_range(range: Option<Range>, part_number: Option<i32>) -> S3Result<Option<ReadRange>> {
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(Range::Int { first, last }), None) => Ok(Some(ReadRange::Bytes { first, last })),
        (Some(Range::Suffix { length }), None) => Ok(Some(ReadRange::Suffix(length))),
        (None, Some(n)) if (1..=10_000).contains(&n) => Ok(Some(ReadRange::Part(n as u32))),
        (None, Some(_)) => Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        )),
        (None, None) => Ok(None),
    }
}

fn expires(info: &ObjectInfo) -> Option<Timestamp> {
    info.http.expires.as_deref().and_then(parse_http_date)
}

fn metadata(info: &ObjectInfo) -> Option<Metadata> {
    (!info.user_meta.is_empty())
        .then(|| info.user_meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", r.start, r.end - 1)
}

/// How many bytes a range asks for, where it says.
fn requested_len(range: Option<&ReadRange>) -> Option<u64> {
    match range? {
        ReadRange::Bytes { first, last: Some(last) } => Some(last.saturating_sub(*first) + 1),
        ReadRange::Suffix(n) => Some(*n),
        _ => None,
    }
}

pub async fn get_object(
    f: &Front,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let i = req.input;
    let part = i.part_number;
    let range = read_range(i.range, part)?;
    let check = |info: &ObjectInfo| {
        let verdict = evaluate(
            info,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        );
        verdict_error(verdict, info).map_or(Ok(()), Err)
    };
    // A conditional GET is decided on the metadata first: a 304 or 412
    // reads no data (opening an object may already fetch its first chunk).
    let conditional = i.if_match.is_some()
        || i.if_none_match.is_some()
        || i.if_modified_since.is_some()
        || i.if_unmodified_since.is_some();
    if conditional {
        check(&f.backend.head_object(&i.bucket, &i.key).await.or_s3()?)?;
    }
    let mut ticket = f.admit_open(requested_len(range.as_ref())).await?;
    let got = f.backend.get_object(&i.bucket, &i.key, range).await.or_s3()?;
    let info = &got.info;
    // Again on the version actually read (it may have changed meanwhile).
    check(info)?;
    let len = got.range.as_ref().map_or(info.size, |r| r.end - r.start);
    f.admit_read(&mut ticket, len).await?;
    let checksums = i.checksum_mode.is_some() && got.range.is_none();
    let mut out = GetObjectOutput {
        accept_ranges: Some("bytes".into()),
        body: Some(blob(ticketed(got.body, ticket))),
        cache_control: info.http.cache_control.clone(),
        content_disposition: info.http.content_disposition.clone(),
        content_encoding: info.http.content_encoding.clone(),
        content_language: info.http.content_language.clone(),
        content_length: Some(len as i64),
        content_range: got.range.as_ref().map(|r| content_range(r, info.size)),
        content_type: info.http.content_type.clone(),
        e_tag: Some(etag(&info.etag)),
        expires: expires(info),
        last_modified: Some(ts(info.last_modified)),
        metadata: metadata(info),
        parts_count: part.and(info.parts_count().map(|n| n as i32)),
        storage_class: Some(StorageClass::from(info.storage_class.clone())),
        tag_count: (!info.tags.is_empty()).then_some(info.tags.len() as i32),
        ..Default::default()
    };
    if checksums {
        super::put::with_checksums!(out, info);
    }
    Ok(S3Response::new(out))
}

pub async fn head_object(
    f: &Front,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let i = req.input;
    let range = read_range(i.range, i.part_number)?;
    let info = f.backend.head_object(&i.bucket, &i.key).await.or_s3()?;
    let verdict = evaluate(
        &info,
        i.if_match.as_ref(),
        i.if_none_match.as_ref(),
        i.if_modified_since.as_ref(),
        i.if_unmodified_since.as_ref(),
    );
    if let Some(e) = verdict_error(verdict, &info) {
        return Err(e);
    }
    let resolved = range.map(|r| r.resolve(&info)).transpose().or_s3()?;
    let len = resolved.as_ref().map_or(info.size, |r| r.end - r.start);
    let mut out = HeadObjectOutput {
        accept_ranges: Some("bytes".into()),
        cache_control: info.http.cache_control.clone(),
        content_disposition: info.http.content_disposition.clone(),
        content_encoding: info.http.content_encoding.clone(),
        content_language: info.http.content_language.clone(),
        content_length: Some(len as i64),
        content_range: resolved.as_ref().map(|r| content_range(r, info.size)),
        content_type: info.http.content_type.clone(),
        e_tag: Some(etag(&info.etag)),
        expires: expires(&info),
        last_modified: Some(ts(info.last_modified)),
        metadata: metadata(&info),
        parts_count: i.part_number.and(info.parts_count().map(|n| n as i32)),
        storage_class: Some(StorageClass::from(info.storage_class.clone())),
        ..Default::default()
    };
    if i.checksum_mode.is_some() && resolved.is_none() {
        super::put::with_checksums!(out, info);
    }
    let mut resp = S3Response::new(out);
    if resolved.is_some() {
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(etag: &str, modified: OffsetDateTime) -> ObjectInfo {
        ObjectInfo {
            key: "k".into(),
            size: 1,
            etag: etag.into(),
            last_modified: modified,
            http: Default::default(),
            user_meta: Default::default(),
            checksums: Default::default(),
            storage_class: "STANDARD".into(),
            parts: vec![],
            tags: vec![],
            upload_id: None,
        }
    }

    #[test]
    fn conditional_rules_follow_aws() {
        let t = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let before = Timestamp::from(t - time::Duration::seconds(10));
        let after = Timestamp::from(t + time::Duration::seconds(10));
        let o = info("abc", t);
        let m = ETagCondition::ETag(ETag::Strong("abc".into()));
        let other = ETagCondition::ETag(ETag::Strong("zzz".into()));
        assert_eq!(evaluate(&o, Some(&m), None, None, None), Verdict::Proceed);
        assert_eq!(evaluate(&o, Some(&other), None, None, None), Verdict::PreconditionFailed);
        // If-Match true wins over If-Unmodified-Since false.
        assert_eq!(evaluate(&o, Some(&m), None, None, Some(&before)), Verdict::Proceed);
        assert_eq!(evaluate(&o, None, None, None, Some(&before)), Verdict::PreconditionFailed);
        assert_eq!(evaluate(&o, None, Some(&m), None, None), Verdict::NotModified);
        // If-None-Match false + If-Modified-Since "not modified" → 200.
        assert_eq!(evaluate(&o, None, Some(&other), Some(&after), None), Verdict::Proceed);
        assert_eq!(evaluate(&o, None, None, Some(&after), None), Verdict::NotModified);
        assert_eq!(evaluate(&o, None, None, Some(&before), None), Verdict::Proceed);
    }
}
