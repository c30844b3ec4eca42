//! Healing benchmark: what scrub costs and how fast repair rebuilds, on a
//! running 3-node RS(2,1) dev cluster (results in docs/healing.md).
//!
//! `cargo bench -p predastore-gateway --bench healing` (`BENCH_DIR`: where
//! the data goes, default the temp dir; `BENCH_QUICK=1`: 4 objects instead
//! of 16).
//!
//! Every process is real: `predastore-gateway node` processes started by
//! `DevCluster`, and the gateway as its own process with unthrottled scrub
//! (`scrub_bytes_per_sec = 0`) and no background passes. Phases:
//! 1. PUT the objects (64 MiB each, concurrency 4).
//! 2. A deep scrub pass: every shard read and checked; MiB/s of shard
//!    bytes read.
//! 3. GET every object (concurrency 4) alone, then while a deep scrub pass
//!    runs: what an unthrottled scrub costs readers (the default pace,
//!    32 MiB/s, is a fraction of it).
//! 4. Node 1 stopped, its data directory deleted, restarted: light scrub
//!    passes until nothing is left; MiB/s of shard bytes rebuilt onto it.
//!    Then every object is read back and checked byte for byte.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use bytes::Bytes;
use common::{MIB, Proc, client, free_port, spawn_gateway};
use predastore_core::config::AuthConfig;
use predastore_gateway::dev_cluster::{DevCluster, DevClusterOptions, NodeCommand};

const BUCKET: &str = "heal";
const SIZE: usize = 64 * MIB;
const CONC: usize = 4;
const TOKEN: &str = "bench-admin-token";

fn object(i: usize) -> Bytes {
    let mut v = common::data(SIZE, 0x4ea1 + i as u64);
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v.into()
}

/// A gateway process in front of `c` with the admin API and unthrottled,
/// on-demand scrub and repair.
async fn gateway(c: &DevCluster, dir: &Path) -> Proc {
    let (s3, admin) = (free_port(), free_port());
    let mut cfg = c.gateway_config().clone();
    cfg.listen = format!("127.0.0.1:{s3}").parse().unwrap();
    cfg.admin_listen = format!("127.0.0.1:{admin}").parse().unwrap();
    cfg.admin_token = Some(TOKEN.into());
    cfg.auth = vec![AuthConfig {
        access_key_id: common::AK.into(),
        secret_access_key: common::SK.into(),
        policy: Vec::new(),
    }];
    let d = cfg.storage.distributed.as_mut().expect("a distributed gateway config");
    d.scrub_bytes_per_sec = 0;
    d.scrub_interval_secs = 0;
    d.repair_interval_secs = 0;
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    spawn_gateway(&path, s3, admin).await
}

async fn admin(gw: &Proc, method: reqwest::Method, path: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .request(method, format!("{}/admin/v1/{path}", gw.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn scrub(gw: &Proc, deep: bool) -> serde_json::Value {
    admin(gw, reqwest::Method::POST, &format!("scrub?deep={deep}&wait=true")).await
}

fn n(v: &serde_json::Value, f: &str) -> u64 {
    v[f].as_u64().unwrap_or_else(|| panic!("{f} in {v}"))
}

/// Bytes of the shard files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

async fn get_all(s3: &Client, count: usize) -> f64 {
    let t = Instant::now();
    futures::future::join_all((0..CONC).map(|w| {
        let s3 = s3.clone();
        async move {
            for i in (w..count).step_by(CONC) {
                let o = s3.get_object().bucket(BUCKET).key(format!("o{i}")).send().await.unwrap();
                let got = o.body.collect().await.unwrap().into_bytes();
                assert!(got == object(i), "o{i} reads back as written");
            }
        }
    }))
    .await;
    (count * SIZE) as f64 / MIB as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let count = if quick { 4 } else { 16 };
    let base = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let node = NodeCommand {
        program: env!("CARGO_BIN_EXE_predastore-gateway").into(),
        prefix: vec!["node".into()],
    };
    let mut o = DevClusterOptions::new(tmp.path().join("cluster"), 3, 2, 1, node);
    o.gateway = false;
    o.node_log = "warn".into();
    o.node_args = vec!["--min-free-bytes".into(), (64u64 << 20).to_string()];
    o.ready_timeout = Duration::from_secs(120);
    let mut c = DevCluster::start(o).await.unwrap_or_else(|e| panic!("{e}"));
    let gw = gateway(&c, tmp.path()).await;
    let s3 = client(&gw.endpoint);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    println!("healing bench: 3 nodes RS(2,1), {count} x 64 MiB objects, unthrottled scrub");

    let t = Instant::now();
    futures::future::join_all((0..CONC).map(|w| {
        let s3 = s3.clone();
        async move {
            for i in (w..count).step_by(CONC) {
                let body = aws_sdk_s3::primitives::ByteStream::from(object(i));
                s3.put_object()
                    .bucket(BUCKET)
                    .key(format!("o{i}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }))
    .await;
    let mib = (count * SIZE) as f64 / MIB as f64;
    println!("PUT                         {:>8.1} MiB/s", mib / t.elapsed().as_secs_f64());

    let t = Instant::now();
    let deep = scrub(&gw, true).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n(&deep, "left") + n(&deep, "corrupt") + n(&deep, "missing"), 0, "{deep}");
    println!(
        "deep scrub pass             {:>8.1} MiB/s of shards read ({} MiB in {secs:.1} s)",
        n(&deep, "bytes") as f64 / MIB as f64 / secs,
        n(&deep, "bytes") / MIB as u64
    );

    let alone = get_all(&s3, count).await;
    let gw_admin = gw.admin.clone();
    let during = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(format!("{gw_admin}/admin/v1/scrub?deep=true&wait=true"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        r.status()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let with_scrub = get_all(&s3, count).await;
    let status = during.await.unwrap();
    println!("GET alone                   {alone:>8.1} MiB/s");
    println!(
        "GET during a deep scrub     {with_scrub:>8.1} MiB/s ({:.0}% of alone; scrub answered {status})",
        100.0 * with_scrub / alone
    );

    let shards = c.layout().node_data(1).join("shards");
    let held = bytes_under(&shards);
    c.stop_node(1).await.unwrap();
    std::fs::remove_dir_all(c.layout().node_data(1)).unwrap();
    c.start_node(1).await.unwrap();
    let t = Instant::now();
    let (mut rebuilt, mut passes) = (0, 0);
    loop {
        let r = scrub(&gw, false).await;
        rebuilt += n(&r, "rebuilt");
        passes += 1;
        if n(&r, "left") == 0 && n(&r, "below_full") == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "node 1 not refilled: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let refilled = bytes_under(&shards);
    println!(
        "repair of a wiped node      {:>8.1} MiB/s rebuilt ({rebuilt} shards, {} MiB in {secs:.1} s, {passes} light passes)",
        refilled as f64 / MIB as f64 / secs,
        refilled / MIB as u64
    );
    assert_eq!(refilled, held, "node 1 holds what it held before the wipe");
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!(now["below_full"].as_u64(), Some(0), "{now}");
    let after = get_all(&s3, count).await;
    println!("GET after the repair        {after:>8.1} MiB/s (every byte checked)");
    drop(gw);
    c.shutdown().await;
}
