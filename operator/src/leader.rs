//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator
//! replicas are safe: only the holder runs controllers. The decision is a
//! pure function of the Lease and the clock ([`decide`]); the loop around
//! it reads the Lease and writes it back with optimistic concurrency
//! (`resourceVersion`), so two candidates never both win one term.
//!
//! A leader that fails to renew within the lease duration steps down
//! (the process exits and is restarted), which keeps the time two leaders
//! could overlap below one lease duration even across a partition.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// Timings of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub lease: Duration,
    /// How often the holder renews and candidates retry.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { lease: Duration::from_secs(15), retry: Duration::from_secs(5) }
    }
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder's lease expired): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease: wait.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides from a Lease spec (`None`: no Lease yet) at time `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Acquire };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match renewed {
        Some(t) if t + SignedDuration::from_secs(duration) > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// One candidate for the Lease `name` in the namespace of `api`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    timing: Timing,
}

impl Elector {
    /// A candidate named `me`.
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        me: impl Into<String>,
        timing: Timing,
    ) -> Self {
        Self { api, name: name.into(), me: me.into(), timing }
    }

    /// One round: reads the Lease and acquires or renews it if allowed.
    /// Returns whether this candidate holds the Lease afterwards.
    pub async fn try_once(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.me, now);
        let lease_secs = i32::try_from(self.timing.lease.as_secs()).unwrap_or(i32::MAX);
        let wanted = |prev: Option<&LeaseSpec>, acquire: bool| LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(lease_secs),
            acquire_time: if acquire {
                Some(MicroTime(now))
            } else {
                prev.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: {
                let n = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
                Some(if acquire && prev.is_some() { n + 1 } else { n })
            },
            ..LeaseSpec::default()
        };
        let result = match (decision, current) {
            (Decision::Wait { .. }, _) => return Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(wanted(None, true)),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            (d, Some(mut lease)) => {
                lease.spec = Some(wanted(lease.spec.as_ref(), d == Decision::Acquire));
                // resourceVersion stays set: a concurrent writer makes this
                // a 409 Conflict instead of a second leader.
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_once().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election round failed"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews until a renewal fails for a whole lease duration; returns
    /// then, and the caller must stop acting as leader.
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            match self.try_once().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if last_ok.elapsed() >= self.timing.lease {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", 990)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990)), "a", now), Decision::Wait { holder: "b".into() });
        assert_eq!(decide(Some(&spec("b", 980)), "a", now), Decision::Acquire, "expired");
        assert_eq!(decide(Some(&spec("", 999)), "a", now), Decision::Acquire);
    }
}
