//! The operator's runtime pieces: leader election on a Lease (two
//! candidates against one in-memory API server) and its own HTTP endpoints
//! (`/healthz`, `/readyz`, `/metrics` after real reconciles).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use predastore_operator::http::{HttpState, router};
use predastore_operator::leader::{Elector, Timing};
use predastore_operator::reconcile;

use crate::fixtures::{self, FakeAdmin, NS};

#[tokio::test]
async fn one_candidate_leads_and_the_lease_moves_only_after_it_expires() {
    let (client, _) = fixtures::api_server(vec![]).await;
    let api = Api::<Lease>::namespaced(client, NS);
    let timing = Timing { lease: Duration::from_secs(1), retry: Duration::from_millis(100) };
    let a = Elector::new(api.clone(), "leader", "a", timing);
    let b = Elector::new(api.clone(), "leader", "b", timing);

    assert!(a.try_once().await.unwrap(), "a takes the free Lease");
    assert!(!b.try_once().await.unwrap(), "b waits while a's lease is live");
    assert!(a.try_once().await.unwrap(), "a renews");
    assert!(!b.try_once().await.unwrap(), "b still waits after a renewed");

    // a stops renewing (a crashed leader); b takes over after the duration.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(b.try_once().await.unwrap(), "b takes the expired Lease");
    assert!(!a.try_once().await.unwrap(), "a, back, must not lead again");
    let spec = api.get("leader").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn hold_returns_when_another_candidate_took_the_lease() {
    let (client, _) = fixtures::api_server(vec![]).await;
    let api = Api::<Lease>::namespaced(client, NS);
    let timing = Timing { lease: Duration::from_secs(1), retry: Duration::from_millis(50) };
    let a = Elector::new(api.clone(), "leader", "a", timing);
    assert!(a.try_once().await.unwrap());
    // Someone else wrote the Lease as its holder (e.g. after a partition).
    let mut lease = api.get("leader").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("b".into());
    api.replace("leader", &Default::default(), &lease).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), a.hold())
        .await
        .expect("hold() returns once the Lease is someone else's");
}

#[tokio::test]
async fn health_and_metrics_endpoints_report_reconciles() {
    let c = fixtures::three();
    let (client, _) = fixtures::api_server(vec![serde_json::to_value(&c).unwrap()]).await;
    let admin = Arc::new(FakeAdmin::default());
    let ctx = fixtures::context(client.clone(), admin);
    let fresh = Api::<predastore_operator::crd::PredastoreCluster>::namespaced(client, NS)
        .get(&c.metadata.name.clone().unwrap())
        .await
        .unwrap();
    reconcile::cluster(Arc::new(fresh), ctx.clone()).await.expect("reconcile succeeds");

    let leading = Arc::new(AtomicBool::new(false));
    let app = router(HttpState { metrics: ctx.metrics.clone(), leading: leading.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();

    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/readyz").await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "standby\n".to_string()));
    leading.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get("/readyz").await.unwrap().text().await.unwrap(), "leading\n");

    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        text.contains("predastore_operator_reconciles_total{controller=\"cluster\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "predastore_operator_reconcile_duration_seconds_count{controller=\"cluster\"} 1"
        ),
        "{text}"
    );
}
