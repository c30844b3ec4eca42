//! Admin listener, metrics, TLS on the S3 port and virtual-hosted style.

use std::time::Duration;

use predastore_core::config::BucketConfig;

use crate::common::*;

/// GET of an admin API path with the test token, as JSON.
async fn admin_json(http: &reqwest::Client, url: String) -> serde_json::Value {
    http.get(url).bearer_auth("admin-token").send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn health_metrics_and_admin_api() {
    let t = TestGateway::start().await;
    let http = http_client();
    let a = t.admin();
    assert_eq!(http.get(format!("{a}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{a}/readyz")).send().await.unwrap().status(), 200);
    let s3 = t.client();
    s3.create_bucket().bucket("stats").send().await.unwrap();
    s3.put_object().bucket("stats").key("a").body(vec![0u8; 1000].into()).send().await.unwrap();
    s3.put_object().bucket("stats").key("b").body(vec![0u8; 24].into()).send().await.unwrap();
    s3.put_object().bucket("stats").key("a").body(vec![0u8; 100].into()).send().await.unwrap();
    s3.get_object().bucket("stats").key("a").send().await.unwrap().body.collect().await.unwrap();

    let r = http.get(format!("{a}/metrics")).send().await.unwrap();
    // The body is OpenMetrics text (`# EOF`, `_total` samples of a typed
    // family); the content type must say so or scrapers mis-type it.
    assert!(
        r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text")
    );
    let metrics = r.text().await.unwrap();
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert!(
        metrics
            .contains(r#"predastore_gateway_requests_total{operation="PutObject",status="200"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("predastore_gateway_request_duration_seconds_bucket"));
    assert!(metrics.contains("predastore_gateway_received_bytes_total"));
    assert!(metrics.contains("predastore_gateway_sent_bytes_total"));

    let r = http.get(format!("{a}/admin/v1/buckets")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(format!("{a}/admin/v1/buckets")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v = admin_json(&http, format!("{a}/admin/v1/buckets/stats")).await;
    assert_eq!(v["objects"], 2);
    assert_eq!(v["bytes"], 124);
    assert_eq!(v["public"], false);
    let v = admin_json(&http, format!("{a}/admin/v1/buckets")).await;
    assert_eq!(v["buckets"].as_array().unwrap().len(), 1);
    let r = http
        .get(format!("{a}/admin/v1/buckets/none"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A repair pass finds nothing to do on a healthy store; fs mode keeps
    // no shards and reports zeros.
    let repair = format!("{a}/admin/v1/repair");
    assert_eq!(http.post(&repair).send().await.unwrap().status(), 401);
    let r = http.post(&repair).bearer_auth("admin-token").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!((v["degraded"].as_u64(), v["repaired"].as_u64()), (Some(0), Some(0)), "{v}");
    let looked_at = if t.backend().name() == "distributed" { 2 } else { 0 };
    assert_eq!(v["objects"].as_u64(), Some(looked_at), "{v}");
    let v = admin_json(&http, format!("{a}/admin/v1/cluster")).await;
    assert_eq!(v["mode"], t.backend().name());
    // Counters survive a restart (rebuilt from disk).
    let mut t = t;
    t.restart().await;
    if t.backend().name() == "distributed" {
        // Known from the readiness probe, before any S3 request.
        let v = admin_json(&http, format!("{}/admin/v1/cluster", t.admin())).await;
        assert!(v["leader"].is_u64(), "{v}");
    }
    let v = admin_json(&http, format!("{}/admin/v1/buckets/stats", t.admin())).await;
    assert_eq!((v["objects"].as_u64(), v["bytes"].as_u64()), (Some(2), Some(124)));
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let t = TestGateway::with(|c| c.admin_token = None).await;
    let r = http_client().get(format!("{}/admin/v1/buckets", t.admin())).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn tls_on_the_s3_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let d = dir.path().to_path_buf();
    let t = TestGateway::with(move |c| {
        c.tls_cert = Some(d.join("cert.pem"));
        c.tls_key = Some(d.join("key.pem"));
    })
    .await;
    assert!(t.endpoint().starts_with("https://"));
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(cert_pem.as_bytes()))
                .build()
                .unwrap(),
        )
        .build_https();
    let port = t.gw().s3_addr().port();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(format!("https://localhost:{port}"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(AK, SK, None, None, "t"))
        .force_path_style(true)
        .http_client(http)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    s3.create_bucket().bucket("secure").send().await.unwrap();
    s3.put_object()
        .bucket("secure")
        .key("k")
        .body(b"over tls".to_vec().into())
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("secure").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"over tls");
    // Plain HTTP to the TLS port does not get served.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{port}/")).send().await.is_err());
    // A socket that never starts its handshake is closed after the limit.
    use tokio::io::AsyncReadExt;
    let mut silent = tokio::net::TcpStream::connect(t.gw().s3_addr()).await.unwrap();
    let started = std::time::Instant::now();
    let limit = predastore_gateway::http::HANDSHAKE_TIMEOUT;
    let r = tokio::time::timeout(limit * 2, silent.read(&mut [0u8; 16])).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "still open after {:?}: {r:?}", limit * 2);
    assert!(started.elapsed() >= limit - Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn virtual_hosted_style_with_a_domain() {
    let t = TestGateway::with(|c| {
        c.domain = Some("s3.example.test".into());
        c.buckets.push(BucketConfig { name: "site".into(), public: true, pathname: None });
    })
    .await;
    let s3 = t.client();
    s3.put_object()
        .bucket("site")
        .key("index.html")
        .body(b"<h1>hi</h1>".to_vec().into())
        .send()
        .await
        .unwrap();
    let addr = t.gw().s3_addr();
    let http = reqwest::Client::builder().resolve("site.s3.example.test", addr).build().unwrap();
    let r = http
        .get(format!("http://site.s3.example.test:{}/index.html", addr.port()))
        .send()
        .await
        .unwrap();
    let st = r.status();
    assert_eq!(st, 200, "{}", r.text().await.unwrap());
    assert_eq!(r.text().await.unwrap(), "<h1>hi</h1>");
    // Path style keeps working next to it.
    let r = http_client().get(format!("{}/site/index.html", t.endpoint())).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `PUT /admin/v1/buckets/{name}` sets the class objects get when their
/// PUT names none; only classes the store offers, only with the token.
#[tokio::test]
async fn a_buckets_default_storage_class_is_set_through_the_admin_api() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("cls").send().await.unwrap();
    let http = http_client();
    let put = |bucket: &str, body: &str, token: Option<&str>| {
        let mut r =
            http.put(format!("{}/admin/v1/buckets/{bucket}", t.admin())).body(body.to_string());
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        async move { r.send().await.unwrap() }
    };
    let ok = r#"{"storage_class":"STANDARD"}"#;
    let r = put("cls", ok, Some("admin-token")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["storage_class"], "STANDARD");
    assert_eq!(put("cls", ok, None).await.status(), 401);
    assert_eq!(put("cls", ok, Some("wrong")).await.status(), 401);
    assert_eq!(put("nope", ok, Some("admin-token")).await.status(), 404);
    let r = put("cls", r#"{"storage_class":"GLACIER"}"#, Some("admin-token")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("GLACIER"));
    for bad in ["", "{", r#"{"class":"STANDARD"}"#, r#"{"storage_class":1}"#] {
        assert_eq!(put("cls", bad, Some("admin-token")).await.status(), 400, "{bad}");
    }
    let v = admin_json(&http, format!("{}/admin/v1/buckets/cls", t.admin())).await;
    assert_eq!(v["storage_class"], "STANDARD");
}
