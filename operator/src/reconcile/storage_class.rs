//! StorageClass reconciler: validates the code, reports its S3 name and the
//! clusters offering it, and checks it against each of them (a class wider
//! than a cluster's node count cannot be placed there). A finalizer keeps
//! a class while a cluster offers it: its objects are stored with it.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::context::{self, Context, Result};
use crate::crd::{Mode, PredastoreCluster, StorageClass, StorageClassStatus};
use crate::names::STORAGE_CLASS_FINALIZER;
use crate::plan::{class_erasure, s3_class_name};
use crate::status::{self, Cond, phase};

/// Clusters (`namespace/name`, node count) offering the class `name`.
pub fn users(clusters: &[PredastoreCluster], name: &str) -> Vec<(String, i32)> {
    clusters
        .iter()
        .filter(|c| {
            c.spec.default_storage_class.as_deref() == Some(name)
                || c.spec.storage_classes.iter().any(|s| s == name)
        })
        .map(|c| {
            (
                format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()),
                c.spec.nodes.replicas,
            )
        })
        .collect()
}

/// The status for `sc` given the clusters that offer it. Pure.
pub fn derive(sc: &StorageClass, used_by: &[(String, i32)], now: &Time) -> StorageClassStatus {
    let name = sc.name_any();
    let previous = sc.status.clone().unwrap_or_default();
    let cond = match class_erasure(&sc.spec) {
        Err(why) => Cond::new("Ready", false, "InvalidStorageClass", why),
        Ok(e) => {
            let width = i32::from(e.data_shards) + i32::from(e.parity_shards);
            let too_small: Vec<String> = used_by
                .iter()
                .filter(|(_, nodes)| *nodes < width)
                .map(|(c, nodes)| format!("{c} ({nodes} nodes)"))
                .collect();
            if too_small.is_empty() {
                Cond::new(
                    "Ready",
                    true,
                    "Valid",
                    format!(
                        "RS({},{}) survives the loss of {} nodes per chunk",
                        e.data_shards, e.parity_shards, e.parity_shards
                    ),
                )
            } else {
                Cond::new(
                    "Ready",
                    false,
                    "InsufficientNodes",
                    format!(
                        "RS({},{}) needs {width} nodes, one per shard; too wide for {}",
                        e.data_shards,
                        e.parity_shards,
                        too_small.join(", ")
                    ),
                )
            }
        }
    };
    let ready = cond.status;
    StorageClassStatus {
        phase: Some(if ready { phase::READY } else { phase::FAILED }.into()),
        conditions: status::conditions(
            vec![cond],
            &previous.conditions,
            sc.metadata.generation,
            now,
        ),
        s3_name: Some(s3_class_name(&name, &sc.spec)),
        used_by: used_by.iter().map(|(c, _)| c.clone()).collect(),
        observed_generation: sc.metadata.generation,
    }
}

/// Reconciles one StorageClass.
pub async fn reconcile(sc: Arc<StorageClass>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    let clusters: Api<PredastoreCluster> = Api::all(ctx.client.clone());
    let clusters: Vec<PredastoreCluster> = clusters
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|c| c.spec.mode == Mode::Distributed)
        .collect();
    let used_by = users(&clusters, &sc.name_any());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    if sc.meta().deletion_timestamp.is_some() {
        if used_by.is_empty() {
            context::remove_finalizer(&api, &sc, STORAGE_CLASS_FINALIZER).await?;
            return Ok(Action::await_change());
        }
        let previous = sc.status.clone().unwrap_or_default();
        let msg = format!(
            "still offered by {}; remove it from their spec first",
            used_by.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
        );
        let new = StorageClassStatus {
            phase: Some(phase::DELETING.into()),
            conditions: status::conditions(
                vec![Cond::new("Ready", false, "InUse", msg)],
                &previous.conditions,
                sc.metadata.generation,
                &now,
            ),
            ..previous
        };
        context::patch_status(&api, &sc, sc.status.as_ref(), &new).await?;
        return Ok(Action::requeue(ctx.settings.progress_period));
    }
    let sc = context::add_finalizer(&api, &sc, STORAGE_CLASS_FINALIZER).await?;
    let new = derive(&sc, &used_by, &now);
    context::patch_status(&api, &sc, sc.status.as_ref(), &new).await?;
    Ok(Action::requeue(ctx.settings.ready_period))
}
