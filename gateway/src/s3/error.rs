//! Backend errors become S3 errors here, in one match, so every backend
//! answers a client with the same code, status and message AWS would send.

use s3s::{S3Error, S3ErrorCode};

use crate::backend::BackendError;

/// Maps a backend error to the S3 error a client should see.
pub fn to_s3(err: BackendError) -> S3Error {
    use BackendError as B;
    use S3ErrorCode as C;
    let (code, msg): (C, String) = match &err {
        B::NoSuchBucket { .. } => (C::NoSuchBucket, "The specified bucket does not exist".into()),
        B::BucketAlreadyOwnedByYou { .. } => (
            C::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
                .into(),
        ),
        B::BucketNotEmpty { .. } => {
            (C::BucketNotEmpty, "The bucket you tried to delete is not empty".into())
        }
        B::NoSuchKey { .. } => (C::NoSuchKey, "The specified key does not exist.".into()),
        B::NoSuchUpload { .. } => (
            C::NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.".into(),
        ),
        B::InvalidRange { .. } => (C::InvalidRange, "The requested range is not satisfiable".into()),
        B::InvalidPartNumber { .. } => {
            return custom(
                "InvalidPartNumber",
                http::StatusCode::RANGE_NOT_SATISFIABLE,
                "The requested partnumber is not satisfiable",
            );
        }
        B::PreconditionFailed => (
            C::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold".into(),
        ),
        B::BadDigest => (
            C::BadDigest,
            "The Content-MD5 you specified did not match what we received.".into(),
        ),
        B::InvalidDigest => (C::InvalidDigest, "The Content-MD5 you specified is not valid.".into()),
        B::ChecksumMismatch { algorithm } => (
            C::BadDigest,
            format!("The {algorithm} you specified did not match the calculated checksum."),
        ),
        B::IncompleteBody { .. } => (
            C::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
                .into(),
        ),
        B::EntityTooLarge { .. } => (
            C::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size.".into(),
        ),
        B::EntityTooSmall { .. } => (
            C::EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size.".into(),
        ),
        B::InvalidPart { .. } => (
            C::InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.".into(),
        ),
        B::InvalidPartOrder => (
            C::InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number."
                .into(),
        ),
        B::InvalidKey { reason } => (C::InvalidArgument, reason.clone()),
        B::InvalidArgument(m) => (C::InvalidArgument, m.clone()),
        B::RequestTimeout => (
            C::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period.".into(),
        ),
        B::BodyRead(e) => (C::IncompleteBody, format!("The request body could not be read: {e}")),
        B::QuorumNotMet { acked, needed } => {
            tracing::warn!(error = %err, "storage unavailable");
            let m = format!(
                "Too few storage nodes are reachable to store this object durably \
                 ({acked} of the {needed} shards needed were written). Please try again later."
            );
            (C::ServiceUnavailable, m)
        }
        B::Unavailable(_) => {
            // The cause names nodes and addresses: logged, not sent.
            tracing::warn!(error = %err, "storage unavailable");
            let m = "The storage cluster cannot serve this request now (too few storage nodes \
                     or no metadata leader reachable). Please try again later.";
            (C::ServiceUnavailable, m.into())
        }
        B::Corrupt { .. } | B::Io(_) | B::Internal(_) => {
            tracing::error!(error = %err, "internal storage error");
            (C::InternalError, "We encountered an internal error. Please try again.".into())
        }
    };
    let mut e = S3Error::with_message(code, msg);
    e.set_source(Box::new(err));
    e
}

/// An S3 error code s3s has no variant for, with its AWS status.
pub fn custom(code: &'static str, status: http::StatusCode, message: &'static str) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(status);
    e
}

/// `?`-friendly conversion for handlers.
pub trait OrS3<T> {
    fn or_s3(self) -> s3s::S3Result<T>;
}

impl<T> OrS3<T> for Result<T, BackendError> {
    fn or_s3(self) -> s3s::S3Result<T> {
        self.map_err(to_s3)
    }
}

/// AWS's wording for an error code, for errors raised inside s3s (auth,
/// routing, XML parsing) that carry no message: clients show the message,
/// and "Unknown" helps nobody.
pub fn default_message(code: &str) -> &'static str {
    match code {
        "AccessDenied" => "Access Denied",
        "BadDigest" => "The Content-MD5 you specified did not match what we received.",
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed size",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidBucketName" => {
            "The specified bucket is not valid: names are 3-63 characters of lowercase letters, \
             digits, '.' and '-', start and end with a letter or digit, have no two adjacent \
             periods, and are not IP addresses."
        }
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part may not have been \
             uploaded, or the specified entity tag may not match the part's entity tag."
        }
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        }
        "InvalidRange" => "The requested range is not satisfiable",
        "InvalidRequest" => "Invalid Request",
        "InvalidStorageClass" => "The storage class you specified is not valid",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchUpload" => {
            "The specified upload does not exist. The upload ID may be invalid, or the upload may \
             have been aborted or completed."
        }
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "RequestTimeout" => {
            "Your socket connection to the server was not read from or written to within the \
             timeout period."
        }
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method."
        }
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        _ => "The request could not be served; see the error code.",
    }
}

/// Completes an S3 error body: adds `<Message>` when s3s left it out or
/// empty, and `<RequestId>`. Pure, so the rules are tested on strings.
pub fn complete_error_xml(text: &str, request_id: &str) -> String {
    let mut out = text.replace("<Message></Message>", "").replace("<Message/>", "");
    if !out.contains("<Message>")
        && let Some(start) = out.find("<Code>")
        && let Some(len) = out[start..].find("</Code>")
    {
        let code = out[start + "<Code>".len()..start + len].to_string();
        let at = start + len + "</Code>".len();
        out.insert_str(at, &format!("<Message>{}</Message>", default_message(&code)));
    }
    if !out.contains("<RequestId>")
        && let Some(pos) = out.rfind("</Error>")
    {
        out.insert_str(pos, &format!("<RequestId>{request_id}</RequestId>"));
    }
    out
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn missing_or_empty_messages_are_filled_and_request_ids_added() {
        let bare = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        let out = complete_error_xml(bare, "ID1");
        assert!(out.contains("<Code>SignatureDoesNotMatch</Code><Message>The request signature"));
        assert!(out.ends_with("<RequestId>ID1</RequestId></Error>"), "{out}");
        let empty = "<Error><Code>MalformedXML</Code><Message></Message></Error>";
        assert!(complete_error_xml(empty, "x").contains("<Message>The XML you provided"));
        let kept =
            "<Error><Code>NoSuchKey</Code><Message>mine</Message><RequestId>A</RequestId></Error>";
        assert_eq!(complete_error_xml(kept, "B"), kept);
        assert_eq!(complete_error_xml("not xml", "B"), "not xml");
    }
}
