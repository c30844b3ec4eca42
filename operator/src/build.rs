//! Pure builders: a cluster, its [`Plan`] and its secret [`Material`] in,
//! Kubernetes objects out. No I/O; the reconciler applies what
//! [`desired`] returns, and the golden tests render it.
//!
//! - fs mode: ConfigMap (`gateway.toml`), credentials Secret, one gateway
//!   pod as a StatefulSet of one with a PVC, S3 and admin Services.
//! - distributed: ConfigMap (`gateway.toml`, `cluster.toml`), credentials
//!   and TLS Secrets, headless Service + StatefulSet of nodes (PVCs,
//!   probes, zone spread), gateway Deployment + Services, PDBs.
//!
//! Config files are produced by serialising `predastore_core::config`
//! types, never by templates, so the operator and the binaries read the
//! same schema. PVCs come from StatefulSet templates and are kept when a
//! cluster is deleted (Kubernetes' default retention): data outlives a
//! mistaken `kubectl delete`.
//!
//! The node id comes from the StatefulSet pod-index label through the
//! downward API (`PREDASTORE_NODE_ID`) and reaches the node as
//! `--id $(PREDASTORE_NODE_ID)`, which Kubernetes expands in args; no init
//! step or hostname parsing is needed.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use predastore_core::config::{
    ClusterFile, DistributedStorageConfig, FsStorageConfig, GatewayConfig, NodeConfig, RingConfig,
    StorageConfig, StorageKind,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::certs::{self, TlsMaterial};
use crate::crd::{Mode, PredastoreCluster};
use crate::names::{self, Component, Names};
use crate::plan::Plan;

/// Secret inputs the builders cannot invent (they are random): made once
/// by the reconciler and then read back from the cluster's Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// Generated root credentials `(access key id, secret)`; `None` when
    /// the spec references its own Secret.
    pub credentials: Option<(String, String)>,
    /// Bearer token of the gateway admin API.
    pub admin_token: String,
    /// PEMs of the `<name>-tls` Secret (distributed mode).
    pub tls: TlsMaterial,
    /// Hash of the root credentials in force (generated or the user's
    /// Secret), put on gateway pod templates: gateways read the
    /// credentials from the environment at start, so a rotated Secret must
    /// roll them, else every client signing with the new key gets 403.
    pub credentials_hash: String,
}

/// Every object a cluster should have, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Credentials and TLS.
    pub secrets: Vec<Secret>,
    /// `gateway.toml` and `cluster.toml`.
    pub config_maps: Vec<ConfigMap>,
    /// Node headless Service, S3 and admin Services.
    pub services: Vec<Service>,
    /// Nodes (distributed) or the fs gateway.
    pub stateful_sets: Vec<StatefulSet>,
    /// Gateways (distributed).
    pub deployments: Vec<Deployment>,
    /// Disruption budgets of nodes and gateways.
    pub pdbs: Vec<PodDisruptionBudget>,
}

impl Desired {
    /// All objects as JSON, in a fixed order (for golden files and hashes).
    pub fn to_values(&self) -> Vec<Value> {
        fn add<T: serde::Serialize>(out: &mut Vec<Value>, items: &[T]) {
            out.extend(items.iter().map(|i| serde_json::to_value(i).expect("object serialises")));
        }
        let mut out = Vec::new();
        add(&mut out, &self.secrets);
        add(&mut out, &self.config_maps);
        add(&mut out, &self.services);
        add(&mut out, &self.stateful_sets);
        add(&mut out, &self.deployments);
        add(&mut out, &self.pdbs);
        out
    }

    /// A multi-document YAML rendering, as the golden files hold it.
    pub fn to_yaml(&self) -> String {
        let mut s = String::new();
        for v in self.to_values() {
            s.push_str("---\n");
            s.push_str(&serde_yaml::to_string(&v).expect("object renders as YAML"));
        }
        s
    }
}

/// The gateway config the ConfigMap carries. Listens on all interfaces;
/// credentials and the admin token come from the environment (Secrets),
/// never from the ConfigMap.
pub fn gateway_config(plan: &Plan) -> GatewayConfig {
    let storage = match plan.mode {
        Mode::Fs => StorageConfig {
            kind: StorageKind::Fs,
            fs: FsStorageConfig { base_path: names::DATA_DIR.into() },
            distributed: None,
        },
        Mode::Distributed => StorageConfig {
            kind: StorageKind::Distributed,
            fs: FsStorageConfig::default(),
            distributed: Some(DistributedStorageConfig::new(
                format!("{}/{}", names::CONFIG_DIR, names::CLUSTER_TOML).into(),
                format!("{}/{}", names::TLS_DIR, certs::CA_CERT).into(),
                format!("{}/{}", names::TLS_DIR, certs::GATEWAY_CERT).into(),
                format!("{}/{}", names::TLS_DIR, certs::GATEWAY_KEY).into(),
            )),
        },
    };
    GatewayConfig {
        listen: ([0, 0, 0, 0], names::S3_PORT as u16).into(),
        admin_listen: ([0, 0, 0, 0], names::GATEWAY_ADMIN_PORT as u16).into(),
        max_in_flight_bytes: gateway_memory_budget(plan.gateway_memory_limit),
        storage,
        ..GatewayConfig::default()
    }
}

/// The gateway's budget for object data in flight: half its container's
/// memory limit (the rest for the process, metadata and socket buffers),
/// or the gateway's default without a limit.
fn gateway_memory_budget(limit: Option<u64>) -> u64 {
    match limit {
        Some(l) => (l / 2).max(predastore_core::config::MIN_IN_FLIGHT_BYTES),
        None => GatewayConfig::default().max_in_flight_bytes,
    }
}

/// The cluster file: membership (one entry per StatefulSet ordinal, by
/// stable DNS name) and the offered erasure codes.
pub fn cluster_file(names: &Names, plan: &Plan) -> ClusterFile {
    ClusterFile {
        cluster_id: names.cluster_id(),
        erasure: plan.default_erasure(),
        ring: RingConfig::default(),
        storage_classes: plan.storage_class_configs(),
        nodes: (0..plan.members as u64)
            .map(|id| NodeConfig {
                id,
                addr: names.node_addr(id),
                zone: plan.node_zones.get(&id).cloned(),
                drain: plan.draining.contains(&id),
            })
            .collect(),
    }
}

/// Everything `c` should have under `plan`, owned by `c`.
pub fn desired(c: &PredastoreCluster, plan: &Plan, material: &Material) -> Desired {
    let names = Names::of(c);
    let owner = c.controller_owner_ref(&());
    let b = Builder { c, plan, names: &names, owner: owner.as_slice(), material };
    let mut d = Desired {
        secrets: vec![b.credentials_secret()],
        config_maps: vec![b.config_map()],
        services: vec![b.s3_service(), b.admin_service()],
        ..Desired::default()
    };
    match plan.mode {
        Mode::Fs => d.stateful_sets.push(b.fs_gateway()),
        Mode::Distributed => {
            d.secrets.push(b.ca_secret());
            d.secrets.push(b.tls_secret());
            d.services.insert(0, b.nodes_service());
            d.stateful_sets.push(b.nodes());
            d.deployments.push(b.gateway_deployment());
            d.pdbs.push(b.nodes_pdb());
            if c.spec.gateways.replicas > 1 {
                d.pdbs.push(b.gateway_pdb());
            }
        }
    }
    d
}

/// Gateway pod annotation carrying [`Material::credentials_hash`].
pub const CREDENTIALS_HASH: &str = "predastore.io/credentials-hash";

/// A hex SHA-256 of `v`'s canonical JSON; used for the applied-hash and
/// config-hash annotations.
pub fn hash_value(v: &Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(v).expect("JSON serialises"));
    hex::encode(&digest[..16])
}

struct Builder<'a> {
    c: &'a PredastoreCluster,
    plan: &'a Plan,
    names: &'a Names,
    owner: &'a [OwnerReference],
    material: &'a Material,
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("builder output matches the Kubernetes schema")
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

impl Builder<'_> {
    fn meta(&self, name: String, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.names.namespace.clone()),
            labels: Some(names::labels(self.names, component)),
            owner_references: (!self.owner.is_empty()).then(|| self.owner.to_vec()),
            ..ObjectMeta::default()
        }
    }

    fn meta_json(&self, name: String, component: Component) -> Value {
        serde_json::to_value(self.meta(name, component)).expect("metadata serialises")
    }

    /// The Secret and keys holding the S3 credentials.
    fn credential_ref(&self) -> (String, &'static str, &'static str) {
        match &self.c.spec.credentials_secret {
            Some(s) => (s.clone(), names::ACCESS_KEY_ID_KEY, names::SECRET_ACCESS_KEY_KEY),
            None => {
                (self.names.credentials(), names::ACCESS_KEY_ID_KEY, names::SECRET_ACCESS_KEY_KEY)
            }
        }
    }

    fn credentials_secret(&self) -> Secret {
        let mut data = BTreeMap::from([(
            names::ADMIN_TOKEN_KEY.to_string(),
            bytes(&self.material.admin_token),
        )]);
        if let Some((id, secret)) = &self.material.credentials {
            data.insert(names::ACCESS_KEY_ID_KEY.into(), bytes(id));
            data.insert(names::SECRET_ACCESS_KEY_KEY.into(), bytes(secret));
        }
        Secret {
            metadata: self.meta(self.names.credentials(), Component::Cluster),
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    /// Certificates and leaf keys; never the CA key, so the whole Secret
    /// can be mounted (into the node pods' init container) without listing
    /// items — a list that would change, and restart every node, whenever
    /// a node is added.
    fn tls_secret(&self) -> Secret {
        let data = self.material.tls.iter().filter(|(k, _)| k.as_str() != certs::CA_KEY);
        Secret {
            metadata: self.meta(self.names.tls(), Component::Cluster),
            data: Some(data.map(|(k, v)| (k.clone(), bytes(v))).collect()),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    /// The CA pair, for the operator alone. Applied before
    /// [`Builder::tls_secret`]: that one no longer carries the key (it did
    /// before), so the key must be stored here first.
    fn ca_secret(&self) -> Secret {
        let data = self
            .material
            .tls
            .iter()
            .filter(|(k, _)| [certs::CA_CERT, certs::CA_KEY].contains(&k.as_str()));
        Secret {
            metadata: self.meta(self.names.ca(), Component::Cluster),
            data: Some(data.map(|(k, v)| (k.clone(), bytes(v))).collect()),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    fn config_map(&self) -> ConfigMap {
        let mut data = BTreeMap::from([(
            names::GATEWAY_TOML.to_string(),
            gateway_config(self.plan).to_toml(),
        )]);
        if self.plan.mode == Mode::Distributed {
            data.insert(names::CLUSTER_TOML.into(), cluster_file(self.names, self.plan).to_toml());
        }
        ConfigMap {
            metadata: self.meta(self.names.config(), Component::Cluster),
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    fn nodes_service(&self) -> Service {
        typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": self.meta_json(self.names.nodes_service(), Component::Node),
            "spec": {
                "clusterIP": "None",
                // Raft peers must find each other before they are ready.
                "publishNotReadyAddresses": true,
                "selector": names::selector(self.names, Component::Node),
                "ports": [
                    {"name": "quic", "port": names::NODE_PORT, "protocol": "UDP"},
                    {"name": "admin", "port": names::NODE_ADMIN_PORT, "protocol": "TCP"},
                ],
            },
        }))
    }

    fn s3_service(&self) -> Service {
        typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": self.meta_json(self.names.s3_service(), Component::Gateway),
            "spec": {
                "type": self.c.spec.gateways.service_type.as_str(),
                "selector": names::selector(self.names, Component::Gateway),
                "ports": [{"name": "s3", "port": names::S3_PORT, "targetPort": "s3", "protocol": "TCP"}],
            },
        }))
    }

    fn admin_service(&self) -> Service {
        typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": self.meta_json(self.names.admin_service(), Component::Gateway),
            "spec": {
                "type": "ClusterIP",
                "selector": names::selector(self.names, Component::Gateway),
                "ports": [{"name": "admin", "port": names::GATEWAY_ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"}],
            },
        }))
    }

    fn container_security(&self) -> Value {
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    }

    fn probes(&self, port: &str) -> (Value, Value) {
        let readiness = json!({
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 5, "failureThreshold": 3,
        });
        let liveness = json!({
            "httpGet": {"path": "/healthz", "port": port},
            "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6,
        });
        (readiness, liveness)
    }

    /// Gateway container; `Mode` decides its mounts.
    fn gateway_container(&self) -> Value {
        let (secret, id_key, secret_key) = self.credential_ref();
        let (readiness, liveness) = self.probes("admin");
        let mut mounts = vec![
            json!({"name": "config", "mountPath": names::CONFIG_DIR, "readOnly": true}),
            json!({"name": "tmp", "mountPath": "/tmp"}),
        ];
        match self.plan.mode {
            Mode::Fs => mounts.push(json!({"name": "data", "mountPath": names::DATA_DIR})),
            Mode::Distributed => {
                mounts.push(json!({"name": "tls", "mountPath": names::TLS_DIR, "readOnly": true}))
            }
        }
        let mut container = json!({
            "name": "gateway",
            "image": self.c.spec.image,
            "imagePullPolicy": self.c.spec.image_pull_policy.as_str(),
            "command": ["predastore-gateway"],
            "args": gateway_args(),
            "env": [
                {"name": names::ENV_ACCESS_KEY_ID, "valueFrom": {"secretKeyRef": {"name": secret, "key": id_key}}},
                {"name": names::ENV_SECRET_ACCESS_KEY, "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key}}},
                {"name": names::ENV_ADMIN_TOKEN, "valueFrom": {"secretKeyRef": {"name": self.names.credentials(), "key": names::ADMIN_TOKEN_KEY}}},
            ],
            "ports": [
                {"name": "s3", "containerPort": names::S3_PORT, "protocol": "TCP"},
                {"name": "admin", "containerPort": names::GATEWAY_ADMIN_PORT, "protocol": "TCP"},
            ],
            "readinessProbe": readiness,
            "livenessProbe": liveness,
            "securityContext": self.container_security(),
            "volumeMounts": mounts,
        });
        if let Some(r) = &self.c.spec.gateways.resources {
            container["resources"] = serde_json::to_value(r).expect("resources serialise");
        }
        container
    }

    fn pod_security(&self) -> Value {
        json!({
            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    }

    fn config_volume(&self) -> Value {
        json!({"name": "config", "configMap": {"name": self.names.config()}})
    }

    /// Pod annotation that changes when `gateway.toml` does, so gateways
    /// roll on a config change. Membership changes (cluster.toml) do not
    /// roll anything: binaries re-read the mounted cluster file.
    fn gateway_config_hash(&self) -> String {
        hash_value(&serde_json::to_value(gateway_config(self.plan)).expect("config serialises"))
    }

    /// What rolls the gateways when it changes: their config and the root
    /// credentials.
    fn gateway_pod_annotations(&self) -> Value {
        json!({
            "predastore.io/config-hash": self.gateway_config_hash(),
            CREDENTIALS_HASH: self.material.credentials_hash,
        })
    }

    fn fs_gateway(&self) -> StatefulSet {
        let selector = names::selector(self.names, Component::Gateway);
        typed(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": self.meta_json(self.names.gateway(), Component::Gateway),
            "spec": {
                "replicas": 1,
                "serviceName": self.names.s3_service(),
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": names::pod_labels(self.names, Component::Gateway),
                        "annotations": self.gateway_pod_annotations(),
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": self.pod_security(),
                        "containers": [self.gateway_container()],
                        "volumes": [self.config_volume(), {"name": "tmp", "emptyDir": {}}],
                    },
                },
                "volumeClaimTemplates": [self.pvc_template()],
            },
        }))
    }

    fn pvc_template(&self) -> Value {
        let s = &self.c.spec.nodes.storage;
        let component = match self.plan.mode {
            Mode::Fs => Component::Gateway,
            Mode::Distributed => Component::Node,
        };
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": s.size}},
        });
        if let Some(class) = &s.storage_class_name {
            spec["storageClassName"] = json!(class);
        }
        json!({
            "metadata": {"name": "data", "labels": names::selector(self.names, component)},
            "spec": spec,
        })
    }

    fn node_container(&self) -> Value {
        let (readiness, liveness) = self.probes("admin");
        let mut container = json!({
            "name": "node",
            "image": self.c.spec.image,
            "imagePullPolicy": self.c.spec.image_pull_policy.as_str(),
            "command": ["predastore-node"],
            "args": node_args(),
            "env": [{
                "name": names::ENV_NODE_ID,
                "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.labels['{}']", names::POD_INDEX_LABEL)}},
            }],
            "ports": [
                {"name": "quic", "containerPort": names::NODE_PORT, "protocol": "UDP"},
                {"name": "admin", "containerPort": names::NODE_ADMIN_PORT, "protocol": "TCP"},
            ],
            "readinessProbe": readiness,
            "livenessProbe": liveness,
            "securityContext": self.container_security(),
            "volumeMounts": [
                {"name": "config", "mountPath": names::CONFIG_DIR, "readOnly": true},
                {"name": "tls", "mountPath": names::TLS_DIR, "readOnly": true},
                {"name": "data", "mountPath": names::DATA_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        });
        if let Some(r) = &self.c.spec.nodes.resources {
            container["resources"] = serde_json::to_value(r).expect("resources serialise");
        }
        container
    }

    /// Copies this pod's own pair (and the CA certificate) from the whole
    /// TLS Secret into the memory volume the node container mounts, so a
    /// node holds its own key only and cannot speak as its peers.
    fn node_tls_init(&self) -> Value {
        json!({
            "name": "tls",
            "image": self.c.spec.image,
            "imagePullPolicy": self.c.spec.image_pull_policy.as_str(),
            "command": ["predastore-node"],
            "args": ["certs", "install", "--from", NODE_TLS_ALL_DIR, "--out", names::TLS_DIR],
            "env": [{
                "name": names::ENV_NODE_ID,
                "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.labels['{}']", names::POD_INDEX_LABEL)}},
            }],
            "securityContext": self.container_security(),
            "volumeMounts": [
                {"name": "tls-all", "mountPath": NODE_TLS_ALL_DIR, "readOnly": true},
                {"name": "tls", "mountPath": names::TLS_DIR},
            ],
        })
    }

    /// The TLS volume: the CA certificate and leaf pairs, never the CA key.
    fn tls_volume(&self, keys: Vec<String>) -> Value {
        let items: Vec<Value> = keys.into_iter().map(|k| json!({"key": k, "path": k})).collect();
        json!({"name": "tls", "secret": {"secretName": self.names.tls(), "items": items, "defaultMode": 0o440}})
    }

    fn nodes(&self) -> StatefulSet {
        let selector = names::selector(self.names, Component::Node);
        let mut spread = vec![json!({
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        })];
        if let Some(zone) = &self.c.spec.nodes.zone_topology_key {
            spread.insert(
                0,
                json!({
                    "maxSkew": 1,
                    "topologyKey": zone,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": selector},
                }),
            );
        }
        typed(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": self.meta_json(self.names.nodes(), Component::Node),
            "spec": {
                "replicas": self.plan.members,
                "serviceName": self.names.nodes_service(),
                // Raft needs its peers up together, not one by one.
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": names::pod_labels(self.names, Component::Node)},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": self.pod_security(),
                        "terminationGracePeriodSeconds": 60,
                        "topologySpreadConstraints": spread,
                        "initContainers": [self.node_tls_init()],
                        "containers": [self.node_container()],
                        "volumes": [
                            self.config_volume(),
                            {"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                            {"name": "tls-all", "secret": {"secretName": self.names.tls(), "defaultMode": 0o440}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
                "volumeClaimTemplates": [self.pvc_template()],
            },
        }))
    }

    fn gateway_deployment(&self) -> Deployment {
        let selector = names::selector(self.names, Component::Gateway);
        let tls_keys = vec![
            certs::CA_CERT.to_string(),
            certs::GATEWAY_CERT.to_string(),
            certs::GATEWAY_KEY.to_string(),
        ];
        typed(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": self.meta_json(self.names.gateway(), Component::Gateway),
            "spec": {
                "replicas": self.c.spec.gateways.replicas,
                "selector": {"matchLabels": selector},
                // Never fewer gateways than asked while rolling.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {
                        "labels": names::pod_labels(self.names, Component::Gateway),
                        "annotations": self.gateway_pod_annotations(),
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": self.pod_security(),
                        "topologySpreadConstraints": [{
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }],
                        "containers": [self.gateway_container()],
                        "volumes": [self.config_volume(), self.tls_volume(tls_keys), {"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        }))
    }

    /// Voluntary disruptions of nodes never stop writes: at most what every
    /// class's write quorum and the Raft quorum can lose
    /// ([`Plan::write_tolerance`]); 0 blocks drains of a cluster that
    /// cannot lose a node and keep writing.
    fn nodes_pdb(&self) -> PodDisruptionBudget {
        typed(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": self.meta_json(self.names.nodes_pdb(), Component::Node),
            "spec": {
                "maxUnavailable": self.plan.write_tolerance(),
                "selector": {"matchLabels": names::selector(self.names, Component::Node)},
            },
        }))
    }

    fn gateway_pdb(&self) -> PodDisruptionBudget {
        typed(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": self.meta_json(self.names.gateway_pdb(), Component::Gateway),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": names::selector(self.names, Component::Gateway)},
            },
        }))
    }
}

/// Where a node pod's init container sees the whole TLS Secret.
const NODE_TLS_ALL_DIR: &str = "/etc/predastore/tls-all";

/// Arguments of `predastore-gateway` in every gateway pod.
pub fn gateway_args() -> Vec<String> {
    vec!["--config".into(), format!("{}/{}", names::CONFIG_DIR, names::GATEWAY_TOML)]
}

/// Arguments of `predastore-node` in every node pod; `$(PREDASTORE_NODE_ID)`
/// is expanded by Kubernetes from the pod-index label.
pub fn node_args() -> Vec<String> {
    let id = format!("$({})", names::ENV_NODE_ID);
    [
        "--cluster".to_string(),
        format!("{}/{}", names::CONFIG_DIR, names::CLUSTER_TOML),
        "--id".into(),
        id.clone(),
        "--data-dir".into(),
        names::DATA_DIR.into(),
        "--listen".into(),
        format!("0.0.0.0:{}", names::NODE_PORT),
        "--admin-listen".into(),
        format!("0.0.0.0:{}", names::NODE_ADMIN_PORT),
        "--tls-ca".into(),
        format!("{}/{}", names::TLS_DIR, certs::CA_CERT),
        "--tls-cert".into(),
        format!("{}/node-{id}.crt", names::TLS_DIR),
        "--tls-key".into(),
        format!("{}/node-{id}.key", names::TLS_DIR),
    ]
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_budget_is_half_its_memory_limit() {
        assert_eq!(gateway_memory_budget(Some(2 << 30)), 1 << 30);
        assert_eq!(gateway_memory_budget(None), GatewayConfig::default().max_in_flight_bytes);
        let tiny = gateway_memory_budget(Some(1 << 10));
        assert_eq!(tiny, predastore_core::config::MIN_IN_FLIGHT_BYTES, "never below the minimum");
    }
}
