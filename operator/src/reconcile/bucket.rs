//! Bucket reconciler: validates the name, waits for its cluster, creates
//! the S3 bucket through the cluster's endpoint with its root credentials,
//! applies the public flag, and refreshes `Objects`/`Size` from the gateway
//! admin API every usage period.
//!
//! Deletion: `Retain` drops the finalizer and keeps the bucket; `Delete`
//! removes the bucket when it is empty and otherwise reports
//! `BucketNotEmpty` and keeps the finalizer, retrying until it is emptied.
//! When the cluster itself is being deleted (or its namespace), the
//! finalizer is released at once: the cluster waits for its Buckets, and
//! the bucket goes with the cluster's storage.
//! An invalid name never gets a finalizer: nothing outside Kubernetes was
//! made, so there is nothing to clean up.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use predastore_core::config::validate_bucket_name;

use crate::admin::human_bytes;
use crate::context::{self, Context, Result};
use crate::crd::{Bucket, BucketStatus, DeletionPolicy, PredastoreCluster, StorageClass};
use crate::names::{self, BUCKET_FINALIZER, Names};
use crate::s3::{S3, S3Error};
use crate::status::{self, Cond, phase};

/// The S3 name of `b`: `spec.bucketName` or `metadata.name`.
pub fn bucket_name(b: &Bucket) -> String {
    b.spec.bucket_name.clone().unwrap_or_else(|| b.name_any())
}

/// Why a bucket cannot be served yet; becomes the Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blocked {
    reason: &'static str,
    message: String,
    /// A spec error the user must fix (slow requeue) or a wait.
    user_fixable: bool,
}

/// Connection details of a Ready cluster.
struct Endpoint {
    s3: S3,
    url: String,
    admin_url: Option<String>,
    admin_token: Option<String>,
    default_class: String,
    /// The S3 storage class the bucket's objects get by default.
    s3_class: String,
}

/// The S3 class a Bucket asks for: `STANDARD` without `storageClass` or
/// with the cluster's default class (its S3 name), else the S3 name of
/// the predastore.io StorageClass it names.
fn bucket_s3_class(
    asked: Option<&str>,
    cluster_default: Option<&str>,
    class: Option<&StorageClass>,
) -> String {
    match (asked, class) {
        (Some(name), Some(sc)) if cluster_default != Some(name) => {
            crate::plan::s3_class_name(name, &sc.spec)
        }
        _ => crate::plan::DEFAULT_S3_CLASS.to_string(),
    }
}

/// Reconciles one Bucket.
pub async fn reconcile(b: Arc<Bucket>, ctx: Arc<Context>) -> Result<Action> {
    let ns = b.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Bucket> = Api::namespaced(ctx.client.clone(), &ns);
    let name = bucket_name(&b);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    if b.meta().deletion_timestamp.is_some() {
        return cleanup(&b, &api, &ctx, &ns, &name, &now).await;
    }
    if let Err(why) = validate_bucket_name(&name) {
        let blocked = Blocked {
            reason: "InvalidBucketName",
            message: format!("{name:?} is not a valid S3 bucket name: {why}"),
            user_fixable: true,
        };
        return report(&b, &api, &ctx, &name, blocked, &now).await;
    }
    let endpoint = match connect(&b, &ctx, &ns).await? {
        Ok(e) => e,
        Err(blocked) => return report(&b, &api, &ctx, &name, blocked, &now).await,
    };
    let b = context::add_finalizer(&api, &b, BUCKET_FINALIZER).await?;
    if endpoint.s3.ensure_bucket(&name).await? {
        ctx.event(&b, EventType::Normal, "Created", format!("bucket {name} created")).await;
    }
    endpoint.s3.set_public(&name, b.spec.public).await?;

    let previous = b.status.clone().unwrap_or_default();
    let mut usage = match (&endpoint.admin_url, &endpoint.admin_token) {
        (Some(url), Some(token)) => match ctx.admin.bucket(url, token, &name).await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(bucket = %name, error = %e, "usage not available");
                None
            }
        },
        _ => None,
    };
    // The class objects get by default, applied until the gateway reports
    // it (a write only when it differs, so a quiet reconcile writes none).
    let applied = usage.as_ref().and_then(|u| u.storage_class.as_deref());
    if applied != Some(endpoint.s3_class.as_str()) {
        let (Some(url), Some(token)) = (&endpoint.admin_url, &endpoint.admin_token) else {
            let blocked = Blocked {
                reason: "StorageClassNotApplied",
                message: "the cluster's admin token is not there yet".into(),
                user_fixable: false,
            };
            return report(&b, &api, &ctx, &name, blocked, &now).await;
        };
        if let Err(e) = ctx.admin.set_bucket_class(url, token, &name, &endpoint.s3_class).await {
            let blocked = Blocked {
                reason: "StorageClassNotApplied",
                message: format!(
                    "the gateways refused storage class {} for bucket {name}: {e}",
                    endpoint.s3_class
                ),
                user_fixable: false,
            };
            return report(&b, &api, &ctx, &name, blocked, &now).await;
        }
        if let Some(u) = usage.as_mut() {
            u.storage_class = Some(endpoint.s3_class.clone());
        }
    }
    let (objects, bytes) = match usage {
        Some(u) => (Some(u.objects as i64), Some(u.bytes as i64)),
        None => (previous.objects, previous.bytes),
    };
    let new = BucketStatus {
        phase: Some(phase::READY.into()),
        conditions: status::conditions(
            vec![Cond::new("Ready", true, "Created", format!("bucket {name} is served"))],
            &previous.conditions,
            b.metadata.generation,
            &now,
        ),
        bucket_name: Some(name.clone()),
        storage_class: Some(b.spec.storage_class.clone().unwrap_or(endpoint.default_class)),
        endpoint: Some(format!("{}/{name}", endpoint.url.trim_end_matches('/'))),
        objects,
        bytes,
        size: bytes.map(|v| human_bytes(v.max(0) as u64)),
        observed_generation: b.metadata.generation,
    };
    if previous.phase.as_deref() != Some(phase::READY) {
        ctx.event(&b, EventType::Normal, "Ready", format!("bucket {name} is ready")).await;
    }
    context::patch_status(&api, &b, b.status.as_ref(), &new).await?;
    Ok(Action::requeue(ctx.settings.usage_period))
}

async fn report(
    b: &Bucket,
    api: &Api<Bucket>,
    ctx: &Context,
    name: &str,
    blocked: Blocked,
    now: &Time,
) -> Result<Action> {
    let previous = b.status.clone().unwrap_or_default();
    let phase = if blocked.user_fixable { phase::FAILED } else { phase::PENDING };
    if previous.conditions.first().map(|c| c.reason.as_str()) != Some(blocked.reason) {
        ctx.event(b, EventType::Warning, blocked.reason, blocked.message.clone()).await;
    }
    let new = BucketStatus {
        phase: Some(phase.into()),
        conditions: status::conditions(
            vec![Cond::new("Ready", false, blocked.reason, blocked.message)],
            &previous.conditions,
            b.metadata.generation,
            now,
        ),
        bucket_name: Some(name.to_string()),
        observed_generation: b.metadata.generation,
        ..previous
    };
    context::patch_status(api, b, b.status.as_ref(), &new).await?;
    Ok(Action::requeue(if blocked.user_fixable {
        ctx.settings.ready_period
    } else {
        ctx.settings.progress_period
    }))
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    String::from_utf8(s.data.as_ref()?.get(key)?.0.clone()).ok()
}

/// The cluster's endpoint and credentials, or why it cannot be used yet.
async fn connect(
    b: &Bucket,
    ctx: &Context,
    ns: &str,
) -> Result<std::result::Result<Endpoint, Blocked>> {
    let clusters: Api<PredastoreCluster> = Api::namespaced(ctx.client.clone(), ns);
    let cluster_name = &b.spec.cluster_ref;
    let Some(c) = clusters.get_opt(cluster_name).await? else {
        return Ok(Err(Blocked {
            reason: "ClusterNotFound",
            message: format!("PredastoreCluster {cluster_name} not found in namespace {ns}"),
            user_fixable: false,
        }));
    };
    if let Some(class) = &b.spec.storage_class {
        let offered = c.spec.default_storage_class.as_deref() == Some(class.as_str())
            || c.spec.storage_classes.contains(class);
        if !offered {
            return Ok(Err(Blocked {
                reason: "UnknownStorageClass",
                message: format!(
                    "cluster {cluster_name} does not offer storage class {class}; add it to its spec.storageClasses"
                ),
                user_fixable: true,
            }));
        }
    }
    let status = c.status.clone().unwrap_or_default();
    let ready = matches!(status.phase.as_deref(), Some(phase::READY | phase::DEGRADED));
    let names = Names::of(&c);
    // Endpoints come from the names (or the operator's own settings),
    // never from the status: whoever may write the status must not be
    // able to send the root credentials or the admin token elsewhere.
    let urls = ctx.settings.gateway(&names);
    let Some(url) = ready.then(|| urls.s3.clone()) else {
        return Ok(Err(Blocked {
            reason: "ClusterNotReady",
            message: format!("waiting for PredastoreCluster {cluster_name} to be Ready"),
            user_fixable: false,
        }));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let cred_secret = c.spec.credentials_secret.clone().unwrap_or_else(|| names.credentials());
    let creds = secrets.get_opt(&cred_secret).await?.and_then(|s| {
        Some((
            secret_text(&s, names::ACCESS_KEY_ID_KEY)?,
            secret_text(&s, names::SECRET_ACCESS_KEY_KEY)?,
        ))
    });
    let Some((id, secret)) = creds else {
        return Ok(Err(Blocked {
            reason: "CredentialsNotFound",
            message: format!(
                "credentials Secret {cred_secret} of cluster {cluster_name} is not there yet"
            ),
            user_fixable: false,
        }));
    };
    let admin_token = secrets
        .get_opt(&names.credentials())
        .await?
        .and_then(|s| secret_text(&s, names::ADMIN_TOKEN_KEY));
    // Listed, not read by name: the classes are few, and the test API
    // server cannot read a cluster-scoped object by name.
    let class = match &b.spec.storage_class {
        Some(name) => Api::<StorageClass>::all(ctx.client.clone())
            .list(&kube::api::ListParams::default())
            .await?
            .into_iter()
            .find(|sc| sc.name_any() == *name),
        None => None,
    };
    let s3_class = bucket_s3_class(
        b.spec.storage_class.as_deref(),
        c.spec.default_storage_class.as_deref(),
        class.as_ref(),
    );
    Ok(Ok(Endpoint {
        s3_class,
        s3: S3::new(&url, &id, &secret),
        url,
        admin_url: Some(urls.admin),
        admin_token,
        default_class: c.spec.default_storage_class.clone().unwrap_or_else(|| "default".into()),
    }))
}

async fn cleanup(
    b: &Bucket,
    api: &Api<Bucket>,
    ctx: &Context,
    ns: &str,
    name: &str,
    now: &Time,
) -> Result<Action> {
    if !b.finalizers().iter().any(|f| f == BUCKET_FINALIZER) {
        return Ok(Action::await_change());
    }
    if b.spec.deletion_policy == DeletionPolicy::Retain {
        context::remove_finalizer(api, b, BUCKET_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    // The cluster going too (its deletion, or its namespace's): it waits
    // for its Buckets, so waiting here for it to serve S3 again would
    // deadlock. The bucket lives in the cluster's storage and goes with it.
    let clusters: Api<PredastoreCluster> = Api::namespaced(ctx.client.clone(), ns);
    if clusters
        .get_opt(&b.spec.cluster_ref)
        .await?
        .is_some_and(|c| c.meta().deletion_timestamp.is_some())
    {
        let msg = format!(
            "cluster {} is being deleted; bucket {name} goes with its storage",
            b.spec.cluster_ref
        );
        ctx.event(b, EventType::Normal, "ClusterDeleting", msg).await;
        context::remove_finalizer(api, b, BUCKET_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let endpoint = match connect(b, ctx, ns).await? {
        Ok(e) => e,
        Err(blocked) if blocked.reason == "ClusterNotFound" => {
            let msg =
                format!("cluster {} is gone; bucket {name} cannot be deleted", b.spec.cluster_ref);
            ctx.event(b, EventType::Warning, "ClusterGone", msg).await;
            context::remove_finalizer(api, b, BUCKET_FINALIZER).await?;
            return Ok(Action::await_change());
        }
        Err(blocked) => {
            deleting(b, api, blocked.reason, blocked.message, now).await?;
            return Ok(Action::requeue(ctx.settings.progress_period));
        }
    };
    match endpoint.s3.delete_bucket(name).await {
        Ok(()) => {
            ctx.event(b, EventType::Normal, "Deleted", format!("bucket {name} deleted")).await;
            context::remove_finalizer(api, b, BUCKET_FINALIZER).await?;
            Ok(Action::await_change())
        }
        Err(S3Error::NotEmpty(_)) => {
            let msg = format!(
                "bucket {name} still holds objects; deletionPolicy Delete removes only empty buckets. \
                 Empty it, or set deletionPolicy: Retain to keep it"
            );
            let before =
                b.status.as_ref().and_then(|s| s.conditions.first()).map(|c| c.reason.clone());
            if before.as_deref() != Some("BucketNotEmpty") {
                ctx.event(b, EventType::Warning, "BucketNotEmpty", msg.clone()).await;
            }
            deleting(b, api, "BucketNotEmpty", msg, now).await?;
            Ok(Action::requeue(ctx.settings.progress_period))
        }
        Err(e) => Err(e.into()),
    }
}

async fn deleting(
    b: &Bucket,
    api: &Api<Bucket>,
    reason: &str,
    message: String,
    now: &Time,
) -> Result<()> {
    let previous = b.status.clone().unwrap_or_default();
    let new = BucketStatus {
        phase: Some(phase::DELETING.into()),
        conditions: status::conditions(
            vec![Cond::new("Ready", false, reason, message)],
            &previous.conditions,
            b.metadata.generation,
            now,
        ),
        ..previous
    };
    context::patch_status(api, b, b.status.as_ref(), &new).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::StorageClassSpec;

    #[test]
    fn a_bucket_gets_the_s3_name_of_the_class_it_names() {
        let cold = StorageClass::new(
            "cold-archive",
            StorageClassSpec {
                data_shards: 4,
                parity_shards: 2,
                chunk_size: "8Mi".into(),
                write_quorum: None,
                s3_name: None,
            },
        );
        assert_eq!(bucket_s3_class(None, None, None), "STANDARD");
        assert_eq!(bucket_s3_class(Some("cold-archive"), None, Some(&cold)), "COLD_ARCHIVE");
        assert_eq!(
            bucket_s3_class(Some("cold-archive"), Some("cold-archive"), Some(&cold)),
            "STANDARD",
            "the cluster's default class is STANDARD in S3"
        );
        let mut named = cold.clone();
        named.spec.s3_name = Some("GLACIER_IR".into());
        assert_eq!(bucket_s3_class(Some("cold-archive"), None, Some(&named)), "GLACIER_IR");
    }
}
