//! Every example in manifests/examples/ validates against the generated
//! CRD schemas: structure (unknown fields are errors, as with kubectl's
//! strict field validation), types, ranges, enums, and the CEL rules;
//! accepted cluster examples also plan without problems.

use std::collections::BTreeMap;

use kube::core::cel::Validator;
use predastore_operator::crd::{self, PredastoreCluster, StorageClass};
use predastore_operator::plan::{self, PlanInputs};
use serde_json::{Value, json};

use crate::golden::workspace_root;

/// The openAPIV3Schema of each kind, by kind.
fn schemas() -> BTreeMap<String, Value> {
    crd::crds()
        .into_iter()
        .map(|c| {
            let schema = c.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            (c.spec.names.kind.clone(), serde_json::to_value(schema).unwrap())
        })
        .collect()
}

/// JSON Schema for the structural check: objects with listed properties
/// reject others (strict field validation); metadata is the API server's.
fn strict(mut s: Value) -> Value {
    fn walk(s: &mut Value) {
        if let Some(o) = s.as_object_mut() {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), json!(false));
            }
            for v in o.values_mut() {
                walk(v);
            }
        } else if let Some(a) = s.as_array_mut() {
            a.iter_mut().for_each(walk);
        }
    }
    walk(&mut s);
    s["properties"]["metadata"] = json!({"type": "object"});
    s["properties"]["apiVersion"] = json!({"type": "string"});
    s["properties"]["kind"] = json!({"type": "string"});
    s
}

/// Problems of `doc` under the CRD schemas; empty when it is valid.
fn check(schemas: &BTreeMap<String, Value>, doc: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let Some(schema) = schemas.get(kind) else {
        return vec![format!("kind {kind:?} is not a Predastore CRD")];
    };
    let mut out = Vec::new();
    if doc["apiVersion"] != "predastore.io/v1alpha1" {
        out.push(format!("apiVersion {}", doc["apiVersion"]));
    }
    let validator =
        jsonschema::validator_for(&strict(schema.clone())).expect("CRD schema compiles");
    out.extend(validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())));
    if let Err(errors) = Validator::new().validate(schema, doc, old) {
        out.extend(errors.into_iter().map(|e| format!("CEL: {e}")));
    }
    out
}

fn examples() -> Vec<(String, Value)> {
    let dir = workspace_root().join("manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, part) in text.split("\n---").enumerate() {
            let v: Value = serde_yaml::from_str(part).unwrap_or(Value::Null);
            if v.is_object() {
                out.push((format!("{}#{i}", f.file_name().unwrap().to_string_lossy()), v));
            }
        }
    }
    out
}

#[test]
fn every_example_validates_against_the_crds() {
    let schemas = schemas();
    let all = examples();
    assert!(all.len() >= 7, "expected fs, 3-node, 5-node, two classes, two buckets: {}", all.len());
    let classes: BTreeMap<String, _> = all
        .iter()
        .filter(|(_, v)| v["kind"] == "StorageClass")
        .map(|(_, v)| {
            let sc: StorageClass = serde_json::from_value(v.clone()).unwrap();
            (v["metadata"]["name"].as_str().unwrap().to_string(), sc.spec)
        })
        .collect();
    for (name, doc) in &all {
        let problems = check(&schemas, doc, None);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        if doc["kind"] == "PredastoreCluster" {
            let c: PredastoreCluster = serde_json::from_value(doc.clone()).unwrap();
            let inputs = PlanInputs { classes: classes.clone(), ..PlanInputs::default() };
            if let Err(p) = plan::plan(&c.spec, &inputs) {
                panic!("{name} does not plan: {p:?}");
            }
        }
    }
}

#[test]
fn schema_rejects_what_the_api_server_would() {
    let s = schemas();
    let cluster = |spec: Value| json!({"apiVersion": "predastore.io/v1alpha1", "kind": "PredastoreCluster", "metadata": {"name": "x"}, "spec": spec});
    let fs = check(&s, &cluster(json!({"mode": "fs"})), None);
    assert!(fs.is_empty(), "{fs:?}");
    let narrow = cluster(
        json!({"mode": "distributed", "nodes": {"replicas": 2}, "erasure": {"dataShards": 2, "parityShards": 1}}),
    );
    assert!(
        check(&s, &narrow, None)
            .iter()
            .any(|p| p.contains("each shard of a chunk needs its own node"))
    );
    assert!(!check(&s, &cluster(json!({"mode": "raid"})), None).is_empty(), "enum");
    assert!(
        !check(&s, &cluster(json!({"mode": "fs", "nodez": {}})), None).is_empty(),
        "unknown field"
    );
    let old = cluster(json!({"mode": "fs"}));
    let new = cluster(json!({"mode": "distributed"}));
    assert!(check(&s, &new, Some(&old)).iter().any(|p| p.contains("mode is immutable")));

    let class = |spec: Value| json!({"apiVersion": "predastore.io/v1alpha1", "kind": "StorageClass", "metadata": {"name": "c"}, "spec": spec});
    assert!(
        check(&s, &class(json!({"dataShards": 2, "parityShards": 1, "writeQuorum": 4})), None)
            .iter()
            .any(|p| p.contains("writeQuorum"))
    );
    let before = class(json!({"dataShards": 2, "parityShards": 1}));
    let after = class(json!({"dataShards": 3, "parityShards": 1}));
    assert!(check(&s, &after, Some(&before)).iter().any(|p| p.contains("dataShards is immutable")));

    let bucket = |spec: Value| json!({"apiVersion": "predastore.io/v1alpha1", "kind": "Bucket", "metadata": {"name": "b"}, "spec": spec});
    let b1 = bucket(json!({"clusterRef": "c", "bucketName": "one"}));
    let b2 = bucket(json!({"clusterRef": "c", "bucketName": "two"}));
    assert!(check(&s, &b2, Some(&b1)).iter().any(|p| p.contains("bucketName is immutable")));
    assert!(
        !check(&s, &bucket(json!({"clusterRef": "c", "deletionPolicy": "Shred"})), None).is_empty()
    );
}

#[test]
fn printer_columns_read_at_a_glance() {
    let cols = |kind: &str| -> Vec<String> {
        let c = crd::crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
        c.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(
        cols("PredastoreCluster"),
        ["Mode", "Nodes", "Gateways", "Redundancy", "Phase", "Endpoint", "Age"]
    );
    assert_eq!(
        cols("Bucket"),
        ["Cluster", "Bucket", "Class", "Public", "Objects", "Size", "Phase", "Age"]
    );
    assert_eq!(cols("StorageClass"), ["Data", "Parity", "Chunk", "Age"]);
    let sc = crd::crds().into_iter().find(|c| c.spec.names.kind == "StorageClass").unwrap();
    assert_eq!(sc.spec.names.short_names, Some(vec!["pdsc".to_string()]));
    assert_eq!(sc.spec.scope, "Cluster");
}
