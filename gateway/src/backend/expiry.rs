//! Incomplete multipart uploads expire: an upload neither completed nor
//! aborted within `abort_incomplete_uploads_secs` is aborted, so its parts
//! stop holding space (what AWS's `AbortIncompleteMultipartUpload`
//! lifecycle rule does, here as one default for the whole store). Works on
//! any backend through the [`Backend`] trait; with several gateways each
//! sweeps, and an upload another gateway aborted first is simply gone.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendError, Result, UploadsQuery};

/// Whether an upload initiated at `initiated` has outlived `max_age`.
pub fn is_stale(initiated: OffsetDateTime, now: OffsetDateTime, max_age: Duration) -> bool {
    now - initiated >= max_age
}

/// Time between sweeps: a quarter of the age limit, between 1 s and 1 h,
/// so an upload is aborted at most a quarter late.
pub fn sweep_every(max_age: Duration) -> Duration {
    (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Aborts every upload older than `max_age` in every bucket; returns how
/// many it aborted.
pub async fn abort_stale_uploads(backend: &dyn Backend, max_age: Duration) -> Result<usize> {
    let mut aborted = 0;
    for bucket in backend.list_buckets().await? {
        let mut query = UploadsQuery { max_uploads: 1000, ..UploadsQuery::default() };
        loop {
            let page = backend.list_uploads(&bucket.name, &query).await?;
            let now = OffsetDateTime::now_utc();
            for u in page.uploads.iter().filter(|u| is_stale(u.initiated, now, max_age)) {
                match backend.abort_multipart(&bucket.name, &u.key, &u.upload_id).await {
                    Ok(()) => {
                        aborted += 1;
                        tracing::info!(
                            bucket = %bucket.name,
                            key = %u.key,
                            upload_id = %u.upload_id,
                            initiated = %u.initiated,
                            "aborted an incomplete multipart upload past its age limit"
                        );
                    }
                    Err(BackendError::NoSuchUpload { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if !page.is_truncated {
                break;
            }
            query.key_marker = page.next_key_marker;
            query.upload_id_marker = page.next_upload_id_marker;
        }
    }
    Ok(aborted)
}

/// Sweeps until `stop`; a failed sweep (a cluster without a leader yet)
/// is retried at the next one.
pub async fn run(backend: Arc<dyn Backend>, max_age: Duration, stop: CancellationToken) {
    let every = sweep_every(max_age);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = abort_stale_uploads(backend.as_ref(), max_age).await {
            tracing::debug!(error = %e, "sweeping incomplete multipart uploads failed; retrying later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_expire_at_their_age_and_sweeps_keep_up() {
        let now = OffsetDateTime::now_utc();
        let week = Duration::from_secs(7 * 86400);
        assert!(!is_stale(now - week + Duration::from_secs(1), now, week));
        assert!(is_stale(now - week, now, week));
        assert!(!is_stale(now + Duration::from_secs(5), now, week), "a clock ahead is not stale");
        assert_eq!(sweep_every(week), Duration::from_secs(3600));
        assert_eq!(sweep_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(sweep_every(Duration::from_secs(400)), Duration::from_secs(100));
    }
}
