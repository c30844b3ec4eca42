//! The three custom resources of group `predastore.io`, version `v1alpha1`:
//! [`PredastoreCluster`], [`StorageClass`] and [`Bucket`].
//!
//! What the API server can check is put in the schema: ranges, enums,
//! defaults, and CEL rules (`x-kubernetes-validations`) for immutable fields
//! and for cross-field rules that need nothing but the object itself. What
//! needs other objects (a referenced StorageClass, the zones of the
//! Kubernetes nodes) is checked by the reconciler in [`crate::plan`] before
//! anything is created. `crdgen` prints [`crds`]; `crds/` holds its output.

// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads the
// repeats as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest PredastoreCluster name: `<name>-gateway-<10-char revision
/// hash>` must fit the 63-character label value Kubernetes puts on pods.
pub const MAX_CLUSTER_NAME: usize = 40;

/// API group of every Predastore resource.
pub const GROUP: &str = "predastore.io";

/// Default container image of gateways and nodes; the operator's own
/// version so a fresh install runs matching binaries.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/predastore/predastore:", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------
// PredastoreCluster
// ---------------------------------------------------------------------------

/// Desired state of one Predastore deployment: its mode, storage nodes,
/// S3 gateways, default erasure code and credentials.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "predastore.io",
    version = "v1alpha1",
    kind = "PredastoreCluster",
    plural = "predastoreclusters",
    shortname = "pdc",
    category = "predastore",
    namespaced,
    status = "PredastoreClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Predastore S3 service: storage nodes (distributed mode) and S3 gateways.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Nodes", type_ = "string", json_path = ".status.nodes"),
    printcolumn(name = "Gateways", type_ = "string", json_path = ".status.gateways"),
    printcolumn(
        name = "Redundancy",
        type_ = "integer",
        json_path = ".status.redundancy",
        description = "Node failures the cluster survives right now"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message(
        "metadata.name must be at most 40 characters: it prefixes the names of the cluster's \
         StatefulSets, pods and Services, and Kubernetes limits those (63 characters with \
         the pod's revision hash)"
    )
)]
#[x_kube(validation = Rule::new(
    "self.mode != 'distributed' || has(self.defaultStorageClass) || (has(self.nodes) ? self.nodes.replicas : 3) >= (has(self.erasure) ? self.erasure.dataShards + self.erasure.parityShards : 3)"
).message("distributed mode needs nodes.replicas >= erasure.dataShards + erasure.parityShards: each shard of a chunk needs its own node").field_path(".nodes.replicas"))]
#[x_kube(validation = Rule::new(
    "self.mode != 'distributed' || !has(self.nodes) || self.nodes.replicas >= 1"
).message("distributed mode needs at least one storage node").field_path(".nodes.replicas"))]
#[serde(rename_all = "camelCase")]
pub struct PredastoreClusterSpec {
    /// `fs`: one gateway pod on a persistent volume, no storage nodes (dev
    /// clusters). `distributed`: erasure-coded storage nodes behind S3
    /// gateways. Immutable: the two keep data in different layouts.
    #[x_kube(validation = Rule::new("self == oldSelf").message("mode is immutable"))]
    pub mode: Mode,
    /// Container image of the gateway and node binaries.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of every container. Default IfNotPresent.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Storage nodes. In fs mode only `storage` is used: it sizes the
    /// volume of the single gateway pod. `storage` is immutable: it is the
    /// StatefulSet's volumeClaimTemplates, which Kubernetes never changes.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.storage == oldSelf.storage").message(
        "nodes.storage is immutable: it is the volume template of the StatefulSet, which \
         Kubernetes does not let change. To grow volumes, expand each PersistentVolumeClaim \
         (kubectl edit pvc) where its storage class allows expansion"
    ))]
    pub nodes: NodesSpec,
    /// S3 gateways.
    #[serde(default)]
    pub gateways: GatewaysSpec,
    /// Name of a `StorageClass` (predastore.io) to use as the default code
    /// (S3 class `STANDARD`). Unset: `erasure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_storage_class: Option<String>,
    /// The default erasure code when `defaultStorageClass` is unset.
    /// Default RS(2,1).
    #[serde(default)]
    pub erasure: ErasureSpec,
    /// Further `StorageClass` names this cluster offers (S3
    /// `x-amz-storage-class`); each must fit the node count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_classes: Vec<String>,
    /// Secret in this namespace with keys `accessKeyId` and
    /// `secretAccessKey`. Unset: the operator generates a pair into
    /// `<name>-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

/// What an empty spec deserialises to (with `mode: fs`); lets tools and the
/// in-memory API server build blank objects.
impl Default for PredastoreClusterSpec {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            image: default_image(),
            image_pull_policy: PullPolicy::default(),
            nodes: NodesSpec::default(),
            gateways: GatewaysSpec::default(),
            default_storage_class: None,
            erasure: ErasureSpec::default(),
            storage_classes: Vec::new(),
            credentials_secret: None,
        }
    }
}

/// How the cluster stores objects.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One gateway on a local filesystem volume.
    #[default]
    Fs,
    /// Storage nodes with Reed–Solomon shards and Raft metadata.
    Distributed,
}

impl Mode {
    /// The value as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::Distributed => "distributed",
        }
    }
}

/// Kubernetes image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The value as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// `spec.nodes`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodesSpec {
    /// Storage node count (distributed mode). Scale-up adds members to the
    /// cluster file; scale-down first drains the highest ordinals and
    /// removes them once the gateways prove them empty.
    #[serde(default = "default_node_replicas")]
    #[schemars(range(min = 0, max = 255))]
    pub replicas: i32,
    /// Persistent volume of each node (or of the fs gateway).
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory of each node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node label that names a failure zone, e.g.
    /// `topology.kubernetes.io/zone`. Set: pods spread across zones, and a
    /// code that a single zone loss would break is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_topology_key: Option<String>,
}

fn default_node_replicas() -> i32 {
    3
}

impl Default for NodesSpec {
    fn default() -> Self {
        Self {
            replicas: default_node_replicas(),
            storage: StorageSpec::default(),
            resources: None,
            zone_topology_key: None,
        }
    }
}

/// A persistent volume request.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size as a Kubernetes quantity. Default `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub size: String,
    /// Kubernetes (storage.k8s.io) StorageClass of the volume. Unset: the
    /// cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "10Gi".into()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

/// `spec.gateways`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaysSpec {
    /// Gateway pods (distributed mode; fs mode always runs one).
    /// Default 2.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Type of the S3 Service. Default ClusterIP.
    #[serde(default)]
    pub service_type: ServiceType,
    /// CPU and memory of each gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_gateway_replicas() -> i32 {
    2
}

impl Default for GatewaysSpec {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            service_type: ServiceType::default(),
            resources: None,
        }
    }
}

/// Kubernetes Service type of the S3 endpoint.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every Kubernetes node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The value as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// An inline Reed–Solomon code: any `dataShards` of the
/// `dataShards + parityShards` shards of a chunk rebuild it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureSpec {
    /// k: shards carrying data. Default 2.
    #[schemars(range(min = 1, max = 32))]
    pub data_shards: i32,
    /// m: parity shards; a chunk survives losing m of its shards. Default 1.
    #[schemars(range(min = 0, max = 16))]
    pub parity_shards: i32,
}

impl Default for ErasureSpec {
    fn default() -> Self {
        Self { data_shards: 2, parity_shards: 1 }
    }
}

/// Observed state of a [`PredastoreCluster`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredastoreClusterStatus {
    /// `Pending`, `Progressing`, `Ready`, `Degraded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready`, `Progressing`, `Degraded` (standard condition shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready storage nodes.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Ready gateways.
    #[serde(default)]
    pub ready_gateways: i32,
    /// `ready/desired` nodes, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// `ready/desired` gateways, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<String>,
    /// Members written to the cluster file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i32>,
    /// Committed ring epoch as the gateway's admin API reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_epoch: Option<i64>,
    /// Node failures the cluster survives right now: the weakest storage
    /// class's parity and the Raft quorum's slack, less nodes already down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<i32>,
    /// S3 endpoint URL inside the Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Gateway admin API URL (bearer token in the credentials Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_endpoint: Option<String>,
}

// ---------------------------------------------------------------------------
// StorageClass
// ---------------------------------------------------------------------------

/// A named erasure code offered to buckets and objects (S3
/// `x-amz-storage-class`). Cluster-scoped; short name `pdsc` so it never
/// shadows `storage.k8s.io`'s `storageclass`/`sc`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "predastore.io",
    version = "v1alpha1",
    kind = "StorageClass",
    plural = "storageclasses",
    shortname = "pdsc",
    category = "predastore",
    status = "StorageClassStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An erasure code (Reed–Solomon data + parity shards) that Predastore clusters offer as an S3 storage class.",
    printcolumn(name = "Data", type_ = "integer", json_path = ".spec.dataShards"),
    printcolumn(name = "Parity", type_ = "integer", json_path = ".spec.parityShards"),
    printcolumn(name = "Chunk", type_ = "string", json_path = ".spec.chunkSize"),
    printcolumn(name = "S3 Name", type_ = "string", json_path = ".status.s3Name", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new(
    "!has(self.writeQuorum) || (self.writeQuorum >= self.dataShards && self.writeQuorum <= self.dataShards + self.parityShards)"
).message("writeQuorum must be between dataShards and dataShards + parityShards").field_path(".writeQuorum"))]
#[serde(rename_all = "camelCase")]
pub struct StorageClassSpec {
    /// k: shards carrying data. Immutable: stored chunks keep their code.
    #[schemars(range(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("dataShards is immutable: objects are stored with this code"))]
    pub data_shards: i32,
    /// m: parity shards; a chunk survives losing m shards. Immutable.
    #[schemars(range(min = 0, max = 16))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("parityShards is immutable: objects are stored with this code"))]
    pub parity_shards: i32,
    /// Bytes per chunk before encoding, as `<n>`, `<n>Ki`, `<n>Mi` or
    /// `<n>Gi`, between 64Ki and 1Gi. Default `8Mi`. Immutable.
    #[serde(default = "default_chunk_size")]
    #[schemars(regex(pattern = r"^[0-9]{1,10}(Ki|Mi|Gi)?$"), length(max = 12))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("chunkSize is immutable"))]
    pub chunk_size: String,
    /// Shards durable before a PUT is acknowledged (k..=k+m). Default
    /// k + ⌊m/2⌋.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 48))]
    pub write_quorum: Option<i32>,
    /// S3 name (`x-amz-storage-class`). Default: the resource name in
    /// upper case with `-` and `.` as `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub s3_name: Option<String>,
}

fn default_chunk_size() -> String {
    "8Mi".into()
}

/// RS(2,1) with the default chunk size: the same code a cluster uses when
/// no class is named.
impl Default for StorageClassSpec {
    fn default() -> Self {
        Self {
            data_shards: 2,
            parity_shards: 1,
            chunk_size: default_chunk_size(),
            write_quorum: None,
            s3_name: None,
        }
    }
}

/// Observed state of a [`StorageClass`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassStatus {
    /// `Ready` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready` with the reason when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The effective S3 name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_name: Option<String>,
    /// `namespace/name` of the clusters offering this class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

// ---------------------------------------------------------------------------
// Bucket
// ---------------------------------------------------------------------------

/// An S3 bucket in a [`PredastoreCluster`] of the same namespace.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "predastore.io",
    version = "v1alpha1",
    kind = "Bucket",
    plural = "buckets",
    shortname = "bkt",
    category = "predastore",
    namespaced,
    status = "BucketStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An S3 bucket in a Predastore cluster of the same namespace.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(name = "Bucket", type_ = "string", json_path = ".status.bucketName"),
    printcolumn(name = "Class", type_ = "string", json_path = ".status.storageClass"),
    printcolumn(name = "Public", type_ = "boolean", json_path = ".spec.public"),
    printcolumn(name = "Objects", type_ = "integer", json_path = ".status.objects"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new(
    "has(self.bucketName) == has(oldSelf.bucketName) && (!has(self.bucketName) || self.bucketName == oldSelf.bucketName)"
).message("bucketName is immutable").field_path(".bucketName"))]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// Name of the PredastoreCluster (same namespace). Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable"))]
    pub cluster_ref: String,
    /// S3 bucket name (3–63 characters: lowercase letters, digits, `-`,
    /// `.`). Default: `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket_name: Option<String>,
    /// Name of a `StorageClass` (predastore.io) the cluster offers.
    /// Unset: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Anonymous GET and HEAD of objects allowed. Default false.
    #[serde(default)]
    pub public: bool,
    /// What deleting this resource does to the bucket: `Retain` (default)
    /// keeps it; `Delete` removes it when it is empty.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What happens to the S3 bucket when its [`Bucket`] is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the bucket and its objects.
    #[default]
    Retain,
    /// Delete the bucket if empty; otherwise report `BucketNotEmpty` and
    /// keep waiting.
    Delete,
}

/// Observed state of a [`Bucket`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatus {
    /// `Pending`, `Ready`, `Deleting` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready` with the reason when not (`InvalidBucketName`,
    /// `ClusterNotReady`, `BucketNotEmpty`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The effective S3 bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// The effective storage class name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// URL of the bucket (path style) inside the Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Object count from the gateway admin API, refreshed periodically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<i64>,
    /// Total bytes from the gateway admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// `bytes` for humans (`1.5 MiB`), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Every CRD of the operator, in the order `crdgen` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![PredastoreCluster::crd(), StorageClass::crd(), Bucket::crd()]
}

/// The CRDs as one multi-document YAML stream: what `crdgen` prints and
/// `crds/predastore.io.yaml` holds.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD serialises"));
    }
    out
}
