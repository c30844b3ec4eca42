//! The three controllers on kube-runtime's `Controller`, and the shell
//! around each reconcile: metrics, backoff on error, logging.
//!
//! - PredastoreCluster: owns its Secrets, ConfigMap, Services,
//!   StatefulSets, Deployments and PDBs; also wakes on StorageClass changes
//!   (every cluster offering the class), Bucket changes (its cluster,
//!   for the deletion finalizer) and changes of the credentials Secret it
//!   references.
//! - Bucket: wakes on its cluster's changes (readiness, endpoint).
//! - StorageClass: wakes on cluster changes (which classes are in use).

pub mod bucket;
pub mod cluster;
pub mod storage_class;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::{Context, ControllerLabels, Error, ErrorLabels, Result};
use crate::crd::{Bucket, PredastoreCluster, StorageClass};

/// Runs `f` for `controller`, recording count, duration and errors, and
/// clearing the object's backoff on success.
async fn measured<F>(controller: &str, key: String, ctx: Arc<Context>, f: F) -> Result<Action>
where
    F: Future<Output = Result<Action>>,
{
    let labels = ControllerLabels { controller: controller.into() };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let start = Instant::now();
    let out = f.await;
    ctx.metrics.duration.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
    match &out {
        Ok(_) => ctx.succeeded(&key),
        Err(e) => {
            let labels = ErrorLabels { controller: controller.into(), error: e.label().into() };
            ctx.metrics.errors.get_or_create(&labels).inc();
        }
    }
    out
}

/// The per-object key of the backoff table: the same for a reconcile and
/// its error policy, so a success clears the backoff of earlier failures.
fn key<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), o.namespace().unwrap_or_default(), o.name_any())
}

/// Reconciles a PredastoreCluster with metrics (the controller's entry).
pub async fn cluster(c: Arc<PredastoreCluster>, ctx: Arc<Context>) -> Result<Action> {
    let k = key(c.as_ref());
    measured("cluster", k, ctx.clone(), cluster::reconcile(c, ctx)).await
}

/// Reconciles a Bucket with metrics.
pub async fn bucket(b: Arc<Bucket>, ctx: Arc<Context>) -> Result<Action> {
    let k = key(b.as_ref());
    measured("bucket", k, ctx.clone(), bucket::reconcile(b, ctx)).await
}

/// Reconciles a StorageClass with metrics.
pub async fn storage_class(sc: Arc<StorageClass>, ctx: Arc<Context>) -> Result<Action> {
    let k = key(sc.as_ref());
    measured("storageclass", k, ctx.clone(), storage_class::reconcile(sc, ctx)).await
}

/// Error policy of every controller: exponential backoff per object.
pub fn error_policy<K: kube::Resource<DynamicType = ()>>(
    o: Arc<K>,
    e: &Error,
    ctx: Arc<Context>,
) -> Action {
    let k = key(o.as_ref());
    let wait = ctx.failed(k.clone());
    tracing::warn!(object = %k, error = %e, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the three controllers until `shutdown` resolves. `namespace`
/// limits PredastoreClusters and Buckets (and their children) to one
/// namespace; StorageClasses are cluster-scoped.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let wc = watcher::Config::default();
    let owned = || watcher::Config::default().labels("app.kubernetes.io/part-of=predastore");

    let clusters = Controller::new(api::<PredastoreCluster>(&client, ns), wc.clone())
        .owns(api::<Secret>(&client, ns), owned())
        .owns(api::<ConfigMap>(&client, ns), owned())
        .owns(api::<Service>(&client, ns), owned())
        .owns(api::<StatefulSet>(&client, ns), owned())
        .owns(api::<Deployment>(&client, ns), owned())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned())
        .watches(api::<Bucket>(&client, ns), wc.clone(), |b| {
            let ns = b.namespace().unwrap_or_default();
            Some(ObjectRef::<PredastoreCluster>::new(&b.spec.cluster_ref).within(&ns))
        });
    let cluster_store = clusters.store();
    let by_secret = cluster_store.clone();
    let clusters = clusters
        // A user's credentials Secret carries no label of ours: watch all
        // Secrets and wake the clusters that reference the changed one,
        // so a rotation rolls the gateways.
        .watches(api::<Secret>(&client, ns), wc.clone(), move |s| {
            let (name, ns) = (s.name_any(), s.namespace());
            by_secret
                .state()
                .into_iter()
                .filter(|c| {
                    c.spec.credentials_secret.as_deref() == Some(name.as_str())
                        && c.namespace() == ns
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(Api::<StorageClass>::all(client.clone()), wc.clone(), move |sc| {
            let name = sc.name_any();
            cluster_store
                .state()
                .into_iter()
                .filter(|c| {
                    c.spec.default_storage_class.as_deref() == Some(name.as_str())
                        || c.spec.storage_classes.contains(&name)
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(cluster, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster controller event");
            }
        });

    let buckets = Controller::new(api::<Bucket>(&client, ns), wc.clone());
    let bucket_store = buckets.store();
    let buckets = buckets
        .watches(api::<PredastoreCluster>(&client, ns), wc.clone(), move |c| {
            let name = c.name_any();
            let cns = c.namespace();
            bucket_store
                .state()
                .into_iter()
                .filter(|b| b.spec.cluster_ref == name && b.namespace() == cns)
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(bucket, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "bucket controller event");
            }
        });

    let classes = Controller::new(Api::<StorageClass>::all(client.clone()), wc.clone())
        .reconcile_all_on(
            watcher::watcher(api::<PredastoreCluster>(&client, ns), wc)
                .filter_map(|e| async move { e.ok().map(|_| ()) }),
        )
        .graceful_shutdown_on(shutdown)
        .run(storage_class, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "storageclass controller event");
            }
        });

    tokio::join!(clusters, buckets, classes);
}
