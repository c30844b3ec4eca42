//! The operator's own installation, generated from code so it cannot
//! drift from what the operator needs: `manifests/install.yaml` (CRDs,
//! RBAC, Deployment, metrics Service) and the parts of the Helm chart that
//! code owns (its `crds/` and ClusterRole rules). Tests compare the
//! checked-in files with this output; `UPDATE_GOLDEN=1` rewrites them.

use serde_json::{Value, json};

use crate::crd;

/// Namespace `install.yaml` installs into.
pub const NAMESPACE: &str = "predastore-system";
/// Name of the operator's Deployment, ServiceAccount and ClusterRole.
pub const NAME: &str = "predastore-operator";
/// Lease name for leader election.
pub const LEASE: &str = "predastore-operator-leader";
/// Port of the operator's `/metrics`, `/healthz`, `/readyz`.
pub const METRICS_PORT: u16 = 8080;

/// Image of the operator itself (same tag as the binaries it deploys).
pub fn image() -> String {
    crd::DEFAULT_IMAGE.to_string()
}

/// What the operator may do; one rule per API group, least privilege.
pub fn cluster_role_rules() -> Value {
    let write = json!(["get", "list", "watch", "create", "update", "patch", "delete"]);
    json!([
        {
            "apiGroups": ["predastore.io"],
            "resources": ["predastoreclusters", "buckets", "storageclasses"],
            "verbs": ["get", "list", "watch", "patch", "update"],
        },
        {
            "apiGroups": ["predastore.io"],
            "resources": [
                "predastoreclusters/status", "buckets/status", "storageclasses/status",
                "predastoreclusters/finalizers", "buckets/finalizers", "storageclasses/finalizers",
            ],
            "verbs": ["get", "patch", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets", "configmaps", "services"], "verbs": write},
        {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": write},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    ])
}

fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/part-of": "predastore",
    })
}

/// The operator's Deployment: two replicas behind a Lease, non-root,
/// read-only root filesystem, probes on the metrics port.
pub fn deployment(namespace: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "operator",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["predastore-operator"],
                        "args": ["run", "--lease-namespace", namespace, "--listen", format!("0.0.0.0:{METRICS_PORT}")],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "PREDASTORE_LOG", "value": "info"},
                        ],
                        "ports": [{"name": "http", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"memory": "256Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    })
}

/// Every object of `install.yaml`, in apply order.
pub fn install_objects() -> Vec<Value> {
    let ns = NAMESPACE;
    let mut out = vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "predastore"}},
    })];
    out.extend(crd::crds().into_iter().map(|c| serde_json::to_value(c).expect("CRD serialises")));
    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": NAME, "labels": labels()},
        "rules": cluster_role_rules(),
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}],
    }));
    out.push(deployment(ns, &image()));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{NAME}-metrics"), "namespace": ns, "labels": labels()},
        "spec": {
            "selector": {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME},
            "ports": [{"name": "http", "port": METRICS_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }));
    out
}

const GENERATED: &str = "# Generated from predastore-operator; regenerate with `UPDATE_GOLDEN=1 cargo test -p predastore-operator`.\n";

/// `manifests/install.yaml`.
pub fn install_yaml() -> String {
    let mut s = String::from(GENERATED);
    for o in install_objects() {
        s.push_str("---\n");
        s.push_str(&serde_yaml::to_string(&o).expect("object renders as YAML"));
    }
    s
}

/// `crds/predastore.io.yaml` (and the chart's copy).
pub fn crds_file() -> String {
    format!("{GENERATED}{}", crd::crds_yaml())
}

/// The chart's `templates/clusterrole.yaml`: code-owned rules under a
/// templated name.
pub fn chart_cluster_role() -> String {
    let rules = serde_yaml::to_string(&json!({ "rules": cluster_role_rules() }))
        .expect("rules render as YAML");
    format!(
        "{GENERATED}apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {{{{ include \"predastore-operator.fullname\" . }}}}\n  labels:\n    {{{{- include \"predastore-operator.labels\" . | nindent 4 }}}}\n{rules}"
    )
}
