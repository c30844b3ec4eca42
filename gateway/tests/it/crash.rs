//! Crash safety with a real process: SIGKILL during writes, restart, and
//! every acknowledged object is intact; no partial object is ever listed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

fn write_config(dir: &std::path::Path, s3: u16, admin: u16) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{s3}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[storage.fs]\nbase_path = \"{}\"\n[[auth]]\naccess_key_id = \"{AK}\"\nsecret_access_key = \"{SK}\"\n",
            data.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (s3p, adp) = (free_port(), free_port());
    let cfg = write_config(dir.path(), s3p, adp);
    let cfg_s = cfg.to_str().unwrap().to_string();
    let mut proc =
        GatewayProcess::spawn(&["--config", &cfg_s], s3p, adp, &dir.path().join("log1")).await;
    let s3 = client(&proc.s3, AK, SK);
    s3.create_bucket().bucket("crash").send().await.unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let s3 = s3.clone();
        let acked = Arc::clone(&acked);
        writers.push(tokio::spawn(async move {
            for n in 0..10_000u64 {
                let data =
                    bytes(1000 + ((w * 7919 + n * 104_729) % 400_000) as usize, w * 1_000_000 + n);
                let key = format!("w{w}/obj-{n}");
                match s3
                    .put_object()
                    .bucket("crash")
                    .key(&key)
                    .body(data.clone().into())
                    .send()
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push((key, md5_hex(&data))),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes pile up, then kill without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 150 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proc.kill();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50, "only {} writes acknowledged before the kill", acked.len());

    let proc2 =
        GatewayProcess::spawn(&["--config", &cfg_s], s3p, adp, &dir.path().join("log2")).await;
    let s3 = client(&proc2.s3, AK, SK);
    for (key, md5) in &acked {
        let o = s3
            .get_object()
            .bucket("crash")
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let body = o.body.collect().await.unwrap().to_vec();
        assert_eq!(&md5_hex(&body), md5, "{key} intact");
    }
    // Everything listed is whole: its bytes hash to its ETag.
    let mut token = None;
    let mut listed = 0;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("crash")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in out.contents() {
            let got = s3.get_object().bucket("crash").key(o.key().unwrap()).send().await.unwrap();
            let body = got.body.collect().await.unwrap().to_vec();
            assert_eq!(format!("\"{}\"", md5_hex(&body)), o.e_tag().unwrap());
            listed += 1;
        }
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    assert!(listed >= acked.len());
    assert!(temp_files(&dir.path().join("data")).is_empty(), "restart removes temp files");
}

#[tokio::test]
async fn a_second_gateway_on_the_same_data_dir_is_refused() {
    let mut t = TestGateway::start().await;
    let err = match predastore_gateway::server::Gateway::start(t.config.clone()).await {
        Ok(_) => panic!("two gateways must not share a data directory"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("is in use by another predastore-gateway"), "{err}");
    // A clean shutdown hands the directory over.
    t.restart().await;
    let s3 = t.client();
    s3.create_bucket().bucket("after-restart").send().await.unwrap();
}

/// A bucket deletion stopped by a crash after its rename leaves a
/// `.trash-*` directory; the next start removes it.
#[tokio::test]
async fn a_deleted_buckets_leftovers_are_swept_at_start() {
    let mut t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("gone").send().await.unwrap();
    s3.delete_bucket().bucket("gone").send().await.unwrap();
    let base = t.data_dir();
    let leftover = base.join(".trash-0123456789abcdef");
    std::fs::create_dir_all(leftover.join("objects/ab")).unwrap();
    std::fs::write(leftover.join("objects/ab/data"), vec![1u8; 4096]).unwrap();
    let names = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert!(names(&base).iter().filter(|n| n.starts_with(".trash-")).count() == 1);
    t.restart().await;
    let left: Vec<String> = names(&base).into_iter().filter(|n| n.starts_with(".trash-")).collect();
    assert!(left.is_empty(), "{left:?}");
    t.client().list_buckets().send().await.expect("serving after the sweep");
}
