//! Status derivation, pure: what the reconciler saw in, the status to
//! write out. Conditions keep their `lastTransitionTime` while their
//! status is unchanged, so an unchanged world derives an identical status
//! and the reconciler writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{Mode, PredastoreCluster, PredastoreClusterStatus};
use crate::names::Names;
use crate::plan::{Plan, SpecProblem, redundancy};

/// Phase names.
pub mod phase {
    /// Nothing observed yet.
    pub const PENDING: &str = "Pending";
    /// Rolling out or scaling.
    pub const PROGRESSING: &str = "Progressing";
    /// Everything desired is ready.
    pub const READY: &str = "Ready";
    /// Was ready; some pods are not now.
    pub const DEGRADED: &str = "Degraded";
    /// The spec cannot be acted on; see the conditions.
    pub const FAILED: &str = "Failed";
    /// Waiting for cleanup before deletion completes.
    pub const DELETING: &str = "Deleting";
}

/// One condition to set: `(type, status, reason, message)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// `Ready`, `Progressing`, `Degraded`.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For humans.
    pub message: String,
}

impl Cond {
    /// A condition.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Turns `conds` into API conditions, keeping `previous` transition times
/// of conditions whose status did not change.
pub fn conditions(
    conds: Vec<Cond>,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let last = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.into(),
                status: status.into(),
                reason: c.reason,
                message: c.message,
                last_transition_time: last,
                observed_generation: generation,
            }
        })
        .collect()
}

/// What the cluster reconciler observed after applying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Ready node pods (StatefulSet `readyReplicas`).
    pub ready_nodes: usize,
    /// Ready gateway pods.
    pub ready_gateways: usize,
    /// Ring epoch from the admin API, when it answered.
    pub ring_epoch: Option<u64>,
    /// Healthy nodes as the gateway sees them, when it answered.
    pub healthy_nodes: Option<usize>,
}

/// Status of a cluster whose spec was accepted.
pub fn cluster(
    c: &PredastoreCluster,
    plan: &Plan,
    seen: &Observed,
    now: &Time,
) -> PredastoreClusterStatus {
    let names = Names::of(c);
    let previous = c.status.clone().unwrap_or_default();
    let generation = c.metadata.generation;
    let want_gateways = match plan.mode {
        Mode::Fs => 1,
        Mode::Distributed => usize::try_from(c.spec.gateways.replicas).unwrap_or(0),
    };
    let want_nodes = plan.members;
    // The admin API's view wins when it has one: a pod can be Ready while
    // its peers cannot reach it.
    let up_nodes = seen.healthy_nodes.map_or(seen.ready_nodes, |h| h.min(seen.ready_nodes));
    let all_ready = seen.ready_nodes >= want_nodes && seen.ready_gateways >= want_gateways;
    let was_ready = matches!(previous.phase.as_deref(), Some(phase::READY | phase::DEGRADED))
        && previous.observed_generation == generation;
    let counts = format!(
        "{}/{want_nodes} nodes and {}/{want_gateways} gateways ready",
        seen.ready_nodes, seen.ready_gateways
    );
    let redundancy = redundancy(plan.tolerance(), want_nodes, up_nodes);

    let (phase, mut conds) = if all_ready {
        (
            phase::READY,
            vec![
                Cond::new("Ready", true, "AllReady", counts.clone()),
                Cond::new("Progressing", false, "Stable", "nothing to roll out"),
                Cond::new(
                    "Degraded",
                    false,
                    "AllReady",
                    format!("survives {redundancy} node failures"),
                ),
            ],
        )
    } else if was_ready {
        (
            phase::DEGRADED,
            vec![
                Cond::new("Ready", false, "PodsNotReady", counts.clone()),
                Cond::new("Progressing", false, "Stable", "nothing to roll out"),
                Cond::new(
                    "Degraded",
                    true,
                    "PodsNotReady",
                    format!("{counts}; survives {redundancy} more node failures"),
                ),
            ],
        )
    } else {
        (
            phase::PROGRESSING,
            vec![
                Cond::new("Ready", false, "RollingOut", counts.clone()),
                Cond::new("Progressing", true, "RollingOut", counts.clone()),
                Cond::new("Degraded", false, "RollingOut", "not ready yet"),
            ],
        )
    };
    let mut phase = phase;
    if !plan.draining.is_empty() {
        let ids = plan.draining.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        conds[1] = Cond::new(
            "Progressing",
            true,
            DECOMMISSIONING,
            format!(
                "decommissioning node(s) {ids}: their shards are moving to the other nodes; they leave \
                 the cluster and the StatefulSet once the gateways prove them empty (GET /admin/v1/drain)"
            ),
        );
        if phase == phase::READY {
            phase = phase::PROGRESSING;
        }
    }

    PredastoreClusterStatus {
        phase: Some(phase.into()),
        conditions: conditions(conds, &previous.conditions, generation, now),
        observed_generation: generation,
        ready_nodes: seen.ready_nodes as i32,
        ready_gateways: seen.ready_gateways as i32,
        nodes: Some(format!("{}/{want_nodes}", seen.ready_nodes)),
        gateways: Some(format!("{}/{want_gateways}", seen.ready_gateways)),
        members: (plan.mode == Mode::Distributed).then_some(want_nodes as i32),
        ring_epoch: seen.ring_epoch.map(|e| e as i64).or(previous.ring_epoch),
        redundancy: Some(redundancy as i32),
        endpoint: Some(names.s3_endpoint()),
        admin_endpoint: Some(names.admin_endpoint()),
    }
}

/// Reason of the Progressing condition while nodes are drained before a
/// scale-down.
pub const DECOMMISSIONING: &str = "Decommissioning";

/// Status of a cluster whose spec was rejected: the reasons, nothing else
/// changes (counts from before stay).
pub fn rejected(
    c: &PredastoreCluster,
    problems: &[SpecProblem],
    now: &Time,
) -> PredastoreClusterStatus {
    let previous = c.status.clone().unwrap_or_default();
    let reason = problems.first().map_or("InvalidSpec", |p| p.reason);
    let message = problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; ");
    let conds = vec![
        Cond::new("Ready", false, reason, message.clone()),
        Cond::new("Progressing", false, reason, "the spec is rejected; nothing was changed"),
        Cond::new("Degraded", false, reason, "not evaluated while the spec is rejected"),
    ];
    PredastoreClusterStatus {
        phase: Some(phase::FAILED.into()),
        conditions: conditions(conds, &previous.conditions, c.metadata.generation, now),
        observed_generation: c.metadata.generation,
        ..previous
    }
}

/// Reason of the conditions when the API server refused an applied object.
pub const APPLY_FAILED: &str = "ApplyFailed";

/// Status of a cluster whose objects the API server refused (a quota, an
/// admission policy, a field Kubernetes will not change): Failed, with the
/// refusal as the Ready message, for this generation.
pub fn apply_failed(c: &PredastoreCluster, message: String, now: &Time) -> PredastoreClusterStatus {
    let previous = c.status.clone().unwrap_or_default();
    let conds = vec![
        Cond::new("Ready", false, APPLY_FAILED, message),
        Cond::new(
            "Progressing",
            false,
            APPLY_FAILED,
            "applying stopped there; retrying with backoff",
        ),
        Cond::new("Degraded", false, APPLY_FAILED, "not evaluated while applying fails"),
    ];
    PredastoreClusterStatus {
        phase: Some(phase::FAILED.into()),
        conditions: conditions(conds, &previous.conditions, c.metadata.generation, now),
        observed_generation: c.metadata.generation,
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_status_keeps_transition_times() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap());
        let first = conditions(vec![Cond::new("Ready", true, "AllReady", "ok")], &[], Some(1), &t0);
        let again =
            conditions(vec![Cond::new("Ready", true, "AllReady", "ok")], &first, Some(1), &t1);
        assert_eq!(first, again);
        let flipped =
            conditions(vec![Cond::new("Ready", false, "Down", "x")], &first, Some(1), &t1);
        assert_eq!(flipped[0].last_transition_time, t1);
    }
}
