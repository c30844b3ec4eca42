//! What every reconcile shares: the API client, the gateway admin client,
//! metrics, events, per-object backoff; plus the thin I/O helpers the
//! reconcilers act through (server-side apply that skips no-op writes,
//! finalizers, status patches, events).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::admin::GatewayAdmin;
use crate::build::hash_value;
use crate::certs::CertError;
use crate::names::{APPLIED_HASH, FIELD_MANAGER};
use crate::s3::S3Error;

/// Why a reconcile failed. User-fixable problems are not errors: they
/// become conditions. These are the transient ones, retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// TLS material could not be produced.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// An S3 call through the cluster's endpoint failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// An object could not be (de)serialised.
    #[error("serialising {what}: {source}")]
    Json {
        /// Which object.
        what: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

impl Error {
    /// Metric label of the error kind.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Cert(_) => "certificates",
            Self::S3(_) => "s3",
            Self::Json { .. } => "serialisation",
        }
    }
}

/// Reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Labels of the operator metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `cluster`, `bucket` or `storageclass`.
    pub controller: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `cluster`, `bucket` or `storageclass`.
    pub controller: String,
    /// [`Error::label`].
    pub error: String,
}

/// Prometheus metrics of the operator (`/metrics`).
pub struct Metrics {
    /// Registry the HTTP endpoint encodes.
    pub registry: Registry,
    /// Reconciles run.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles failed, by error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Family<ControllerLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("predastore_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed", errors.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        Self { registry, reconciles, errors, duration }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Periods the reconcilers requeue after, and where gateways are reached.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Refresh of Bucket usage (`Objects`, `Size`). Default 60 s.
    pub usage_period: Duration,
    /// Recheck of a Ready cluster. Default 5 min.
    pub ready_period: Duration,
    /// Recheck of a cluster still converging. Default 15 s.
    pub progress_period: Duration,
    /// Where every cluster's gateway is reached, instead of its Service's
    /// DNS name: for an operator running outside Kubernetes against one
    /// port-forwarded cluster, and for tests with an in-process gateway.
    /// Set by whoever starts the operator, never read from an object, so
    /// credentials only go where the operator's own configuration says.
    pub gateway_urls: Option<GatewayUrls>,
}

/// A gateway's S3 and admin base URLs.
#[derive(Clone, Debug)]
pub struct GatewayUrls {
    /// S3 API, e.g. `http://127.0.0.1:9000`.
    pub s3: String,
    /// Admin API, e.g. `http://127.0.0.1:9001`.
    pub admin: String,
}

impl Settings {
    /// The gateway URLs of the cluster named by `names`.
    pub fn gateway(&self, names: &crate::names::Names) -> GatewayUrls {
        self.gateway_urls.clone().unwrap_or_else(|| GatewayUrls {
            s3: names.s3_endpoint(),
            admin: names.admin_endpoint(),
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            usage_period: Duration::from_secs(60),
            ready_period: Duration::from_secs(300),
            progress_period: Duration::from_secs(15),
            gateway_urls: None,
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// Kubernetes API.
    pub client: Client,
    /// Gateway admin API client.
    pub admin: Arc<dyn GatewayAdmin>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requeue periods.
    pub settings: Settings,
    reporter: Reporter,
    failures: Mutex<Backoffs>,
}

impl Context {
    /// A context over `client`.
    pub fn new(
        client: Client,
        admin: Arc<dyn GatewayAdmin>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter =
            Reporter { controller: FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { client, admin, metrics, settings, reporter, failures: Mutex::default() }
    }

    /// Records a failure of `key` and returns how long to wait before the
    /// next try.
    pub fn failed(&self, key: String) -> Duration {
        self.failures.lock().expect("backoff map lock").failed_at(key, Instant::now())
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff map lock").0.remove(key);
    }

    /// Publishes an event about `obj`; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// Consecutive failures per object key, with the time of the last one.
#[derive(Debug, Default)]
pub struct Backoffs(HashMap<String, (u32, Instant)>);

impl Backoffs {
    /// Records a failure of `key` at `now`; the wait before the next try.
    pub fn failed_at(&mut self, key: String, now: Instant) -> Duration {
        // An object deleted while failing never succeeds: entries not
        // renewed for longer than any backoff are of such objects.
        self.0.retain(|_, (_, last)| now.duration_since(*last) <= FORGET_FAILURES_AFTER);
        let (n, last) = self.0.entry(key).or_insert((0, now));
        *n = n.saturating_add(1);
        *last = now;
        backoff(*n)
    }

    /// Objects with failures on record.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no object has failures on record.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How long a failure is remembered without a new one: twice the longest
/// backoff, so a live failing object always fails again before.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(600);

/// Exponential backoff: 1 s doubling per consecutive failure, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

/// Whether `live` holds everything in `want` (objects: every key of
/// `want`, recursively; arrays: same length, element-wise; scalars: equal).
pub fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => {
            w.iter().all(|(k, wv)| l.get(k).is_some_and(|lv| contains(lv, wv)))
        }
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| contains(lv, wv))
        }
        (l, w) => l == w,
    }
}

/// Server-side applies `obj` with the operator's field manager, unless the
/// live object already carries the same applied hash and every applied
/// field. Returns whether it wrote.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    let what = format!("{}/{ns}/{name}", K::kind(&()));
    let mut value =
        serde_json::to_value(obj).map_err(|source| Error::Json { what: what.clone(), source })?;
    let hash = hash_value(&value);
    value["metadata"]["annotations"] = json!({ APPLIED_HASH: hash });
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    if let Some(live) = api.get_opt(&name).await? {
        let live = serde_json::to_value(&live).map_err(|source| Error::Json { what, source })?;
        if contains(&live, &value) {
            return Ok(false);
        }
    }
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&value)).await?;
    Ok(true)
}

/// Adds `finalizer` to `obj` if missing; returns the object as stored.
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(obj.clone());
    }
    let patch: json_patch::Patch = serde_json::from_value(if obj.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    })
    .expect("static JSON patch");
    Ok(api.patch(&obj.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await?)
}

/// Removes `finalizer` from `obj` (no-op when absent).
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(i) = obj.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
    .expect("static JSON patch");
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Merge-patches `status` onto `obj` unless it is unchanged. Returns
/// whether it wrote.
pub async fn patch_status<K, S>(api: &Api<K>, obj: &K, old: Option<&S>, new: &S) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(false);
    }
    let body = json!({ "status": new });
    api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }

    #[test]
    fn failures_of_objects_that_stopped_failing_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Backoffs::default();
        assert_eq!(b.failed_at("Bucket/ns/deleted".into(), t0), Duration::from_secs(1));
        assert_eq!(b.failed_at("Bucket/ns/live".into(), t0), Duration::from_secs(1));
        // The live one keeps failing within the longest backoff...
        let t1 = t0 + Duration::from_secs(300);
        assert_eq!(b.failed_at("Bucket/ns/live".into(), t1), Duration::from_secs(2));
        // ...the deleted one never comes back and is dropped.
        let t2 = t0 + FORGET_FAILURES_AFTER + Duration::from_secs(1);
        assert_eq!(b.failed_at("Bucket/ns/live".into(), t2), Duration::from_secs(4));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn contains_is_a_subset_check() {
        let live = json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "x": true});
        assert!(contains(&live, &json!({"b": {"c": [1, {"d": 2}]}})));
        assert!(!contains(&live, &json!({"b": {"c": [1]}})));
        assert!(!contains(&live, &json!({"a": 2})));
        assert!(!contains(&live, &json!({"y": null})));
    }
}
