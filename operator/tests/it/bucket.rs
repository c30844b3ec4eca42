//! Bucket reconcile against a real in-process gateway (fs mode, loopback),
//! with kube-fake-client as the API server.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use kube::api::Api;
use kube::{Client, ResourceExt};
use predastore_core::config::{AuthConfig, GatewayConfig};
use predastore_gateway::server::Gateway;
use predastore_operator::admin::HttpAdmin;
use predastore_operator::context::{GatewayUrls, Settings};
use predastore_operator::crd::Bucket;
use predastore_operator::reconcile::bucket;
use predastore_operator::s3::S3;
use serde_json::{Value, json};

use crate::fixtures::{self, NS};

const AK: &str = "AKOPERATORTEST";
const SK: &str = "operator-test-secret";
const TOKEN: &str = "admin-test-token";

struct Env {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

async fn gateway() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(TOKEN.into()),
        auth: vec![AuthConfig {
            access_key_id: AK.into(),
            secret_access_key: SK.into(),
            policy: vec![],
        }],
        ..GatewayConfig::default()
    };
    config.storage.fs.base_path = dir.path().to_path_buf();
    Env { gw: Gateway::start(config).await.unwrap(), _dir: dir }
}

/// A Ready cluster (its status points at the in-process gateway, but the
/// operator goes by its own settings: see `reconcile`), its credentials
/// Secret, and `extra` objects.
fn seed(env: &Env, extra: Vec<Value>) -> Vec<Value> {
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let mut c = serde_json::to_value(fixtures::fs()).unwrap();
    c["status"] = json!({
        "phase": "Ready",
        "endpoint": format!("http://{}", env.gw.s3_addr()),
        "adminEndpoint": format!("http://{}", env.gw.admin_addr()),
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "dev-credentials", "namespace": NS},
        "data": {"accessKeyId": b64(AK), "secretAccessKey": b64(SK), "adminToken": b64(TOKEN)},
    });
    let mut objects = vec![c, secret];
    objects.extend(extra);
    objects
}

fn bucket_obj(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "predastore.io/v1alpha1", "kind": "Bucket",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": spec,
    })
}

/// The same Bucket, being deleted (as the API server shows it once
/// `kubectl delete` ran and finalizers hold it).
fn deleting(name: &str, spec: Value) -> Value {
    let mut b = bucket_obj(name, spec);
    b["metadata"]["finalizers"] = json!(["predastore.io/bucket"]);
    b["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    b
}

async fn reconcile(env: &Env, client: &Client, name: &str) -> Option<Bucket> {
    let api: Api<Bucket> = Api::namespaced(client.clone(), NS);
    let b = Arc::new(api.get(name).await.unwrap());
    // The in-process gateway stands in for the cluster's Service.
    let urls = GatewayUrls {
        s3: format!("http://{}", env.gw.s3_addr()),
        admin: format!("http://{}", env.gw.admin_addr()),
    };
    let settings = Settings { gateway_urls: Some(urls), ..Settings::default() };
    let ctx = fixtures::context_with(client.clone(), Arc::new(HttpAdmin::new()), settings);
    bucket::reconcile(b, ctx).await.expect("bucket reconcile succeeds");
    api.get_opt(name).await.unwrap()
}

fn s3(env: &Env) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{}", env.gw.s3_addr()))
        .credentials_provider(aws_credential_types::Credentials::new(AK, SK, None, None, "t"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn anonymous_get(env: &Env, path: &str) -> u16 {
    reqwest::get(format!("http://{}/{path}", env.gw.s3_addr())).await.unwrap().status().as_u16()
}

fn reason(b: &Bucket) -> String {
    b.status.as_ref().unwrap().conditions[0].reason.clone()
}

#[tokio::test]
async fn public_bucket_is_created_ready_and_readable_anonymously() {
    let env = gateway().await;
    let (client, _) = fixtures::api_server(seed(
        &env,
        vec![
            bucket_obj("downloads", json!({"clusterRef": "dev", "public": true})),
            bucket_obj("private", json!({"clusterRef": "dev", "bucketName": "secret-stuff"})),
        ],
    ))
    .await;
    let b = reconcile(&env, &client, "downloads").await.unwrap();
    let s = b.status.clone().unwrap();
    assert_eq!(s.phase.as_deref(), Some("Ready"), "{s:?}");
    assert_eq!(s.endpoint, Some(format!("http://{}/downloads", env.gw.s3_addr())));
    assert_eq!(s.objects, Some(0));
    assert!(b.finalizers().contains(&"predastore.io/bucket".to_string()));

    let client_s3 = s3(&env);
    client_s3
        .put_object()
        .bucket("downloads")
        .key("a.txt")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&env, "downloads/a.txt").await, 200);

    // Usage refresh: Objects and Size from the admin API.
    let s = reconcile(&env, &client, "downloads").await.unwrap().status.unwrap();
    assert_eq!((s.objects, s.bytes, s.size.as_deref()), (Some(1), Some(5), Some("5 B")));

    let p = reconcile(&env, &client, "private").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().bucket_name.as_deref(), Some("secret-stuff"));
    client_s3
        .put_object()
        .bucket("secret-stuff")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&env, "secret-stuff/k").await, 403);
    env.gw.shutdown().await;
}

#[tokio::test]
async fn delete_policy_waits_for_empty_then_deletes() {
    let env = gateway().await;
    let spec = json!({"clusterRef": "dev", "deletionPolicy": "Delete"});
    let (client, _) =
        fixtures::api_server(seed(&env, vec![bucket_obj("temp", spec.clone())])).await;
    reconcile(&env, &client, "temp").await.unwrap();
    let ops = S3::new(&format!("http://{}", env.gw.s3_addr()), AK, SK);
    s3(&env)
        .put_object()
        .bucket("temp")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();

    // kubectl delete: the API server keeps the object while the finalizer holds.
    let (client, _) = fixtures::api_server(seed(&env, vec![deleting("temp", spec)])).await;
    let b = reconcile(&env, &client, "temp").await.expect("finalizer stays while not empty");
    assert_eq!(reason(&b), "BucketNotEmpty");
    assert_eq!(b.status.as_ref().unwrap().phase.as_deref(), Some("Deleting"));
    assert!(!ops.ensure_bucket("temp").await.unwrap(), "bucket still there");

    s3(&env).delete_object().bucket("temp").key("k").send().await.unwrap();
    assert!(reconcile(&env, &client, "temp").await.is_none(), "finalizer removed");
    let head = s3(&env).head_bucket().bucket("temp").send().await;
    assert!(head.is_err(), "bucket deleted in S3");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn retain_policy_keeps_the_bucket() {
    let env = gateway().await;
    let spec = json!({"clusterRef": "dev"});
    let (client, _) =
        fixtures::api_server(seed(&env, vec![bucket_obj("keep", spec.clone())])).await;
    reconcile(&env, &client, "keep").await.unwrap();
    let (client, _) = fixtures::api_server(seed(&env, vec![deleting("keep", spec)])).await;
    assert!(reconcile(&env, &client, "keep").await.is_none(), "finalizer removed");
    s3(&env).head_bucket().bucket("keep").send().await.expect("bucket kept");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn invalid_names_and_unready_clusters_give_conditions() {
    let env = gateway().await;
    let (client, writes) = fixtures::api_server(seed(
        &env,
        vec![
            bucket_obj("bad", json!({"clusterRef": "dev", "bucketName": "Bad_Name"})),
            bucket_obj("orphan", json!({"clusterRef": "nope"})),
            bucket_obj("gold", json!({"clusterRef": "dev", "storageClass": "gold"})),
        ],
    ))
    .await;
    let b = reconcile(&env, &client, "bad").await.unwrap();
    assert_eq!(reason(&b), "InvalidBucketName");
    assert!(b.status.as_ref().unwrap().conditions[0].message.contains("Bad_Name"));
    assert!(b.finalizers().is_empty(), "nothing to clean up, no finalizer");
    assert!(writes.log().iter().all(|w| !w.starts_with("patch bad")));
    assert_eq!(reason(&reconcile(&env, &client, "orphan").await.unwrap()), "ClusterNotFound");
    assert_eq!(reason(&reconcile(&env, &client, "gold").await.unwrap()), "UnknownStorageClass");
    let listed = s3(&env).list_buckets().send().await.unwrap();
    assert!(listed.buckets().is_empty(), "no S3 bucket was made");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn the_storage_class_a_bucket_names_is_applied_or_its_refusal_reported() {
    let env = gateway().await;
    let cold = json!({
        "apiVersion": "predastore.io/v1alpha1", "kind": "StorageClass",
        "metadata": {"name": "cold"},
        "spec": {"dataShards": 4, "parityShards": 2, "s3Name": "COLD"},
    });
    let mut objects = seed(
        &env,
        vec![
            cold,
            bucket_obj("plain", json!({"clusterRef": "dev"})),
            bucket_obj("archive", json!({"clusterRef": "dev", "storageClass": "cold"})),
        ],
    );
    objects[0]["spec"]["storageClasses"] = json!(["cold"]);
    let (client, _) = fixtures::api_server(objects).await;
    // STANDARD is what the fs gateway already reports: Ready, nothing to set.
    let b = reconcile(&env, &client, "plain").await.unwrap();
    assert_eq!(b.status.unwrap().phase.as_deref(), Some("Ready"));
    // COLD is asked of the gateway, which (fs: one class) refuses it: the
    // Bucket says so instead of claiming a class its objects do not get.
    let b = reconcile(&env, &client, "archive").await.unwrap();
    assert_eq!(reason(&b), "StorageClassNotApplied", "{:?}", b.status);
    let s = b.status.unwrap();
    assert_ne!(s.phase.as_deref(), Some("Ready"));
    assert!(s.conditions[0].message.contains("COLD"), "{}", s.conditions[0].message);
}
