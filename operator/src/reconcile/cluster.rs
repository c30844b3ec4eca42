//! PredastoreCluster reconciler: observe, plan, build, apply, status.
//!
//! A rejected spec ([`crate::plan`]) changes nothing but the status. An
//! accepted one is applied object by object (server-side apply, skipped
//! when the live object already matches), then readiness is read back from
//! the StatefulSet and Deployment and, once gateways are up, ring epoch and
//! node health from the gateway admin API. The finalizer holds deletion
//! until the cluster's Buckets are gone, so bucket cleanup can still reach
//! S3; everything else is garbage-collected through owner references.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use predastore_core::config::ClusterFile;

use crate::build::{self, Material};
use crate::certs::{self, TlsMaterial};
use crate::context::{self, Context, Result};
use crate::crd::{Bucket, Mode, PredastoreCluster, PredastoreClusterStatus, StorageClass};
use crate::names::{self, CLUSTER_FINALIZER, Names};
use crate::plan::{self, PlanInputs};
use crate::status::{self, Observed, phase};

/// Reconciles one PredastoreCluster.
pub async fn reconcile(c: Arc<PredastoreCluster>, ctx: Arc<Context>) -> Result<Action> {
    let names = Names::of(&c);
    let api: Api<PredastoreCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    if c.meta().deletion_timestamp.is_some() {
        return cleanup(&c, &api, &ctx, &names).await;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    let mut inputs = observe_inputs(&c, &ctx, &names).await?;
    if scaling_down(&c, &inputs) {
        inputs.proven_empty =
            observe_proven_empty(&c, &ctx, &names, &secrets_api(&ctx, &names)).await?;
    }
    let plan = match plan::plan(&c.spec, &inputs) {
        Ok(p) => p,
        Err(problems) => {
            let new = status::rejected(&c, &problems, &now);
            if c.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(phase::FAILED) {
                let note = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                ctx.event(c.as_ref(), EventType::Warning, "InvalidSpec", note).await;
            }
            context::patch_status(&api, &c, c.status.as_ref(), &new).await?;
            return Ok(Action::requeue(ctx.settings.ready_period));
        }
    };

    // Only an accepted spec gets the finalizer: a rejected one has nothing
    // to clean up.
    let c = context::add_finalizer(&api, &c, CLUSTER_FINALIZER).await?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut user_credentials = None;
    if let Some(user) = &c.spec.credentials_secret {
        let found = secrets.get_opt(user).await?;
        user_credentials = found.as_ref().and_then(|s| {
            Some((
                secret_text(s, names::ACCESS_KEY_ID_KEY)?,
                secret_text(s, names::SECRET_ACCESS_KEY_KEY)?,
            ))
        });
        if user_credentials.is_none() {
            let problem = plan::SpecProblem {
                reason: "CredentialsSecretMissing",
                message: format!(
                    "Secret {user} with keys {} and {} not found in namespace {}",
                    names::ACCESS_KEY_ID_KEY,
                    names::SECRET_ACCESS_KEY_KEY,
                    names.namespace
                ),
            };
            let new = status::rejected(&c, &[problem], &now);
            context::patch_status(&api, &c, c.status.as_ref(), &new).await?;
            return Ok(Action::requeue(ctx.settings.progress_period));
        }
    }

    let (material, legacy_ca_key) =
        material(&c, &secrets, &names, plan.members, user_credentials).await?;
    let desired = build::desired(&c, &plan, &material);
    let wrote = match apply_all(&ctx, &desired).await {
        Ok(n) => n,
        Err((what, e)) => {
            // A refusal (quota, admission, an immutable field) will not go
            // away by retrying alone: say so in the status, then back off.
            if let Some(refusal) = refused(&e) {
                let message = format!("the API server refused {what}: {refusal}");
                let new = status::apply_failed(&c, message.clone(), &now);
                if c.status.as_ref().and_then(|s| s.conditions.first()).map(|c| c.reason.as_str())
                    != Some(status::APPLY_FAILED)
                {
                    ctx.event(&c, EventType::Warning, status::APPLY_FAILED, message).await;
                }
                context::patch_status(&api, &c, c.status.as_ref(), &new).await?;
            }
            return Err(e);
        }
    };
    tracing::debug!(cluster = %names.cluster, wrote, "applied");
    if legacy_ca_key {
        // Stored in `<name>-ca` by the apply above; an apply does not drop
        // a key another field manager (or an older apply) put there.
        let patch =
            serde_json::json!([{"op": "remove", "path": format!("/data/{}", certs::CA_KEY)}]);
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("a valid JSON patch");
        secrets
            .patch(
                &names.tls(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Json::<()>(patch),
            )
            .await?;
        tracing::info!(cluster = %names.cluster, "moved the CA key out of the TLS Secret");
    }

    if let Some(before) = inputs.current_members
        && plan.members > before
    {
        let note = format!(
            "scaling from {before} to {} nodes; new members added to the cluster file",
            plan.members
        );
        ctx.event(&c, EventType::Normal, "ScalingUp", note).await;
    }

    let seen = observe_readiness(&c, &ctx, &names, &plan, &material).await?;
    let new = status::cluster(&c, &plan, &seen, &now);
    let old_phase = c.status.as_ref().and_then(|s| s.phase.clone());
    if old_phase != new.phase {
        let p = new.phase.clone().unwrap_or_default();
        let kind = if p == phase::DEGRADED { EventType::Warning } else { EventType::Normal };
        let msg = new.conditions.first().map(|c| c.message.clone()).unwrap_or_default();
        ctx.event(&c, kind, &p, msg).await;
    }
    if !plan.draining.is_empty() && !decommission_reported(c.status.as_ref()) {
        let msg = new.conditions[1].message.clone();
        ctx.event(&c, EventType::Normal, status::DECOMMISSIONING, msg).await;
    }
    if let Some(before) = inputs.current_members
        && plan.members < before
    {
        let note = format!(
            "nodes {}..{before} proven empty; removed from the cluster file, scaling to {} nodes",
            plan.members, plan.members
        );
        ctx.event(&c, EventType::Normal, "ScalingDown", note).await;
    }
    context::patch_status(&api, &c, c.status.as_ref(), &new).await?;
    Ok(Action::requeue(if new.phase.as_deref() == Some(phase::READY) {
        ctx.settings.ready_period
    } else {
        ctx.settings.progress_period
    }))
}

/// Applies every desired object in dependency order; the count written,
/// or the object that failed and why.
async fn apply_all(
    ctx: &Context,
    d: &build::Desired,
) -> std::result::Result<usize, (String, context::Error)> {
    async fn one<K>(ctx: &Context, o: &K) -> std::result::Result<usize, (String, context::Error)>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let what = format!("{} {}", K::kind(&()), o.name_any());
        context::apply(&ctx.client, o).await.map(usize::from).map_err(|e| (what, e))
    }
    let mut wrote = 0;
    for o in &d.secrets {
        wrote += one(ctx, o).await?;
    }
    for o in &d.config_maps {
        wrote += one(ctx, o).await?;
    }
    for o in &d.services {
        wrote += one(ctx, o).await?;
    }
    for o in &d.stateful_sets {
        wrote += one(ctx, o).await?;
    }
    for o in &d.deployments {
        wrote += one(ctx, o).await?;
    }
    for o in &d.pdbs {
        wrote += one(ctx, o).await?;
    }
    Ok(wrote)
}

/// The API server's message when it refused a write for a reason retrying
/// will not fix by itself (4xx but conflicts and rate limits). A namespace
/// being deleted refuses new objects with a 403 (NamespaceTerminating,
/// which kube's error type carries only in the message); that is the
/// deletion in progress, not a broken spec, so it is no condition.
fn refused(e: &context::Error) -> Option<String> {
    match e {
        context::Error::Kube(kube::Error::Api(s))
            if (400..500).contains(&s.code)
                && s.code != 409
                && s.code != 429
                && !s.message.contains("because it is being terminated") =>
        {
            Some(s.message.clone())
        }
        _ => None,
    }
}

fn decommission_reported(s: Option<&PredastoreClusterStatus>) -> bool {
    s.is_some_and(|s| s.conditions.iter().any(|c| c.reason == status::DECOMMISSIONING))
}

/// Whether the spec asks for fewer nodes than the cluster file lists.
fn scaling_down(c: &PredastoreCluster, inputs: &PlanInputs) -> bool {
    c.spec.mode == Mode::Distributed
        && inputs
            .current_members
            .is_some_and(|n| n > usize::try_from(c.spec.nodes.replicas.max(0)).unwrap_or(0))
}

fn secrets_api(ctx: &Context, names: &Names) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &names.namespace)
}

/// Draining nodes the gateways report proven empty. Unreachable gateways
/// prove nothing: the nodes stay until they answer.
async fn observe_proven_empty(
    c: &PredastoreCluster,
    ctx: &Context,
    names: &Names,
    secrets: &Api<Secret>,
) -> Result<BTreeSet<u64>> {
    let token = secrets
        .get_opt(&names.credentials())
        .await?
        .and_then(|s| secret_text(&s, names::ADMIN_TOKEN_KEY));
    let Some(token) = token else { return Ok(BTreeSet::new()) };
    match ctx.admin.drain(&ctx.settings.gateway(names).admin, &token).await {
        Ok(d) => Ok(d.draining.into_iter().filter(|n| n.empty).map(|n| n.id).collect()),
        Err(e) => {
            tracing::info!(cluster = %c.name_any(), error = %e,
                "admin API not reachable; draining nodes stay until it proves them empty");
            Ok(BTreeSet::new())
        }
    }
}

async fn observe_inputs(c: &PredastoreCluster, ctx: &Context, names: &Names) -> Result<PlanInputs> {
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let classes: BTreeMap<_, _> = classes
        .list(&ListParams::default())
        .await?
        .into_iter()
        .map(|sc| (sc.name_any(), sc.spec))
        .collect();
    let zones = match &c.spec.nodes.zone_topology_key {
        Some(key) if c.spec.mode == Mode::Distributed => {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let zones: BTreeSet<String> = nodes
                .list(&ListParams::default())
                .await?
                .into_iter()
                .filter_map(|n| n.labels().get(key).cloned())
                .collect();
            Some(zones)
        }
        _ => None,
    };
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let written = cms
        .get_opt(&names.config())
        .await?
        .and_then(|cm| cm.data?.get(names::CLUSTER_TOML).cloned())
        .and_then(|text| ClusterFile::from_toml(&text).ok());
    let current_members = written.as_ref().map(|f| f.nodes.len());
    let node_zones = match &c.spec.nodes.zone_topology_key {
        Some(key) if c.spec.mode == Mode::Distributed => {
            let written_zones = written
                .iter()
                .flat_map(|f| &f.nodes)
                .filter_map(|n| Some((n.id, n.zone.clone()?)))
                .collect();
            plan::member_zones(observe_node_zones(ctx, names, key).await?, written_zones)
        }
        _ => BTreeMap::new(),
    };
    Ok(PlanInputs { classes, zones, current_members, node_zones, ..PlanInputs::default() })
}

/// Zone of each scheduled node pod, by node id: the `key` label of the
/// Kubernetes node it was bound to.
async fn observe_node_zones(
    ctx: &Context,
    names: &Names,
    key: &str,
) -> Result<BTreeMap<u64, String>> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let zone_of: BTreeMap<String, String> = nodes
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter_map(|n| Some((n.name_any(), n.labels().get(key)?.clone())))
        .collect();
    let selector = names::selector(names, names::Component::Node)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter_map(|p| {
            let id = p.labels().get(names::POD_INDEX_LABEL)?.parse().ok()?;
            let zone = zone_of.get(p.spec.as_ref()?.node_name.as_ref()?)?;
            Some((id, zone.clone()))
        })
        .collect())
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    let b = s.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

fn random_token(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

/// Reads the cluster's Secrets and makes what is missing.
async fn material(
    c: &PredastoreCluster,
    secrets: &Api<Secret>,
    names: &Names,
    members: usize,
    user_credentials: Option<(String, String)>,
) -> Result<(Material, bool)> {
    let own = secrets.get_opt(&names.credentials()).await?;
    let admin_token = own
        .as_ref()
        .and_then(|s| secret_text(s, names::ADMIN_TOKEN_KEY))
        .unwrap_or_else(|| random_token(24));
    let credentials = match &c.spec.credentials_secret {
        Some(_) => None,
        None => Some(
            own.as_ref()
                .and_then(|s| {
                    Some((
                        secret_text(s, names::ACCESS_KEY_ID_KEY)?,
                        secret_text(s, names::SECRET_ACCESS_KEY_KEY)?,
                    ))
                })
                .unwrap_or_else(|| {
                    (format!("PD{}", random_token(9).to_uppercase()), random_token(20))
                }),
        ),
    };
    let mut legacy_ca_key = false;
    let tls = match c.spec.mode {
        Mode::Fs => TlsMaterial::new(),
        Mode::Distributed => {
            // The CA pair lives in `<name>-ca`; clusters made before it
            // kept the key in `<name>-tls`, which is read first.
            let mut existing = TlsMaterial::new();
            for name in [names.tls(), names.ca()] {
                let data = secrets.get_opt(&name).await?.and_then(|s| s.data).unwrap_or_default();
                legacy_ca_key |= name == names.tls() && data.contains_key(certs::CA_KEY);
                existing.extend(
                    data.into_iter().filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?))),
                );
            }
            certs::ensure(&existing, names, members)?
        }
    };
    // Keyed with the admin token (a secret too), so the annotation gives
    // nobody who can read pod templates a way to test guesses offline.
    let in_force = credentials.clone().or(user_credentials).unwrap_or_default();
    let credentials_hash =
        build::hash_value(&serde_json::json!([admin_token, in_force.0, in_force.1]));
    Ok((Material { credentials, admin_token, tls, credentials_hash }, legacy_ca_key))
}

async fn observe_readiness(
    c: &PredastoreCluster,
    ctx: &Context,
    names: &Names,
    plan: &plan::Plan,
    material: &Material,
) -> Result<Observed> {
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let deploys: Api<Deployment> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let ready_sts = |s: Option<StatefulSet>| {
        s.and_then(|s| s.status).and_then(|s| s.ready_replicas).unwrap_or(0).max(0) as usize
    };
    let (ready_nodes, ready_gateways) = match c.spec.mode {
        Mode::Fs => (0, ready_sts(sts.get_opt(&names.gateway()).await?)),
        Mode::Distributed => (
            ready_sts(sts.get_opt(&names.nodes()).await?),
            deploys
                .get_opt(&names.gateway())
                .await?
                .and_then(|d| d.status)
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                .max(0) as usize,
        ),
    };
    let mut seen = Observed { ready_nodes, ready_gateways, ..Observed::default() };
    if ready_gateways > 0 && plan.mode == Mode::Distributed {
        // From the names, never from the status: whoever may write the
        // status must not be able to point the admin token elsewhere.
        match ctx.admin.cluster(&ctx.settings.gateway(names).admin, &material.admin_token).await {
            Ok(info) => {
                seen.ring_epoch = Some(info.ring_epoch);
                seen.healthy_nodes = Some(info.nodes.iter().filter(|n| n.healthy).count());
            }
            Err(e) => {
                tracing::info!(cluster = %names.cluster, error = %e, "admin API not reachable")
            }
        }
    }
    Ok(seen)
}

async fn cleanup(
    c: &PredastoreCluster,
    api: &Api<PredastoreCluster>,
    ctx: &Context,
    names: &Names,
) -> Result<Action> {
    let buckets: Api<Bucket> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let left: Vec<String> = buckets
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|b| b.spec.cluster_ref == names.cluster)
        .map(|b| b.name_any())
        .collect();
    if left.is_empty() {
        context::remove_finalizer(api, c, CLUSTER_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let previous = c.status.clone().unwrap_or_default();
    let message =
        format!("waiting for {} Bucket(s) to be deleted first: {}", left.len(), left.join(", "));
    let new = PredastoreClusterStatus {
        phase: Some(phase::DELETING.into()),
        conditions: status::conditions(
            vec![status::Cond::new("Ready", false, "WaitingForBuckets", message)],
            &previous.conditions,
            c.metadata.generation,
            &now,
        ),
        ..previous
    };
    context::patch_status(api, c, c.status.as_ref(), &new).await?;
    Ok(Action::requeue(ctx.settings.progress_period))
}
