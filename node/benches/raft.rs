//! Metadata-plane benchmark, printed as Markdown (see
//! docs/raft-benchmarks.md):
//!
//! - commits/s and latency percentiles of object-record writes through a
//!   3-node Raft group (three in-process nodes on loopback QUIC, mutual
//!   TLS) with 1, 16 and 64 concurrent clients (the leader batches
//!   concurrent proposals into one log entry);
//! - baseline in the same run: one sled insert + `flush_async` per write
//!   on the same disk, single writer (what a commit costs at minimum on one
//!   node);
//! - list-page latency (linearizable, 1000 keys per page, with and without
//!   a delimiter) over a bucket of `BENCH_OBJECTS` objects (default
//!   100,000).
//!
//! `cargo bench -p predastore-node --bench raft` (env `BENCH_DIR` picks the
//! disk, `BENCH_SECS` the seconds per write case, default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use predastore_core::certs::{self, Role};
use predastore_core::client::NodeAddr;
use predastore_core::meta::{BucketRecord, ListRequest, ObjectRecord, Precondition};
use predastore_core::meta_client::{MetaClient, MetaClientOptions};
use predastore_core::transport::TlsMaterial;
use predastore_node::server::{Node, NodeOptions};

fn record(v: u128) -> ObjectRecord {
    ObjectRecord {
        version_id: v,
        size: 1 << 20,
        etag: format!("{v:032x}"),
        content_type: Some("application/octet-stream".into()),
        user_metadata: Default::default(),
        checksums: Default::default(),
        storage_class: "STANDARD".into(),
        modified_ms: 1,
        chunks: Vec::new(),
        inline: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `conc` clients write distinct keys for `secs`; returns (commits/s, sorted latencies).
async fn writes(
    client: &Arc<MetaClient>,
    prefix: &str,
    conc: usize,
    budget: Duration,
    stop_after: Option<usize>,
) -> (f64, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, next, prefix) = (Arc::clone(client), Arc::clone(&next), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < budget {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if stop_after.is_some_and(|n| i >= n) {
                    break;
                }
                let t = Instant::now();
                client
                    .put_object(
                        "bench",
                        &format!("{prefix}/{i:08}"),
                        record(i as u128),
                        Precondition::None,
                    )
                    .await
                    .expect("write");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, all)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let objects: usize =
        std::env::var("BENCH_OBJECTS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let ca = certs::new_ca("bench").unwrap();
    let tls = |role: Role| {
        let p = certs::issue(&ca, "bench", &role).unwrap();
        TlsMaterial::from_pem(ca.cert_pem.as_bytes(), p.cert_pem.as_bytes(), p.key_pem.as_bytes())
            .unwrap()
    };
    let dir = tempfile::tempdir_in(&base).unwrap();
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .collect();
    let mut file =
        String::from("cluster_id = \"bench\"\n[erasure]\ndata_shards = 2\nparity_shards = 1\n");
    for (id, p) in ports.iter().enumerate() {
        file += &format!("[[nodes]]\nid = {id}\naddr = \"127.0.0.1:{p}\"\n");
    }
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(&cluster, file).unwrap();
    let mut nodes = Vec::new();
    for (id, p) in ports.iter().enumerate() {
        let mut o = NodeOptions::new(
            id as u64,
            format!("127.0.0.1:{p}").parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("n{id}")),
            tls(Role::Node(id as u64)),
        );
        o.min_free = Some(0);
        o.cluster_file = Some(cluster.clone());
        nodes.push(Node::start(o).await.unwrap());
    }
    let addrs = ports
        .iter()
        .enumerate()
        .map(|(id, p)| NodeAddr { id: id as u64, addr: format!("127.0.0.1:{p}") })
        .collect();
    let client = Arc::new(
        MetaClient::new(
            &tls(Role::Gateway("bench".into())),
            "127.0.0.1:0".parse().unwrap(),
            addrs,
            MetaClientOptions { deadline: Duration::from_secs(30), ..Default::default() },
        )
        .unwrap(),
    );
    client
        .create_bucket(BucketRecord {
            name: "bench".into(),
            owner: "bench".into(),
            created_ms: 1,
            storage_class: "STANDARD".into(),
            public: false,
            policy: None,
        })
        .await
        .unwrap();

    // Baseline: one fsync'd sled write per operation, same disk.
    let raw = sled::open(dir.path().join("raw")).unwrap();
    let start = Instant::now();
    let mut lat = Vec::new();
    while start.elapsed() < Duration::from_secs(secs.min(3)) {
        let t = Instant::now();
        raw.insert(format!("k{}", lat.len()), vec![0u8; 200]).unwrap();
        raw.flush_async().await.unwrap();
        lat.push(t.elapsed());
    }
    let raw_rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();

    println!("## Metadata commits, 3-node group on loopback ({secs} s per case)\n");
    println!("dir: {}\n", base.display());
    println!("| clients | commits/s | p50 ms | p99 ms | vs 1 fsync'd sled write/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: sled insert + flush, 1 writer | {raw_rate:.0} | {} | {} | 1.00 |",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    for conc in [1usize, 16, 64] {
        let (rate, lat) =
            writes(&client, &format!("w{conc}"), conc, Duration::from_secs(secs), None).await;
        println!(
            "| {conc} | {rate:.0} | {} | {} | {:.2} |",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            rate / raw_rate
        );
    }

    // Listing over a large bucket.
    let t = Instant::now();
    let (_, _) = writes(&client, "list", 64, Duration::from_secs(3600), Some(objects)).await;
    println!("\nloaded {objects} objects in {:.1} s\n", t.elapsed().as_secs_f64());
    println!("## List pages (linearizable, max 1000 keys) over {objects} objects\n");
    println!("| listing | pages | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (label, delim) in [("flat, 1000 keys/page", None), ("delimiter '/' at the root", Some("/"))]
    {
        let mut lat = Vec::new();
        let mut cont = None;
        for _ in 0..100 {
            let t = Instant::now();
            let page = client
                .list(ListRequest {
                    bucket: "bench".into(),
                    prefix: if delim.is_some() { String::new() } else { "list/".into() },
                    delimiter: delim.map(str::to_string),
                    continuation: cont.take(),
                    max_keys: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            lat.push(t.elapsed());
            cont = page.next_continuation;
            if cont.is_none() && delim.is_none() {
                cont = None;
            }
        }
        lat.sort();
        println!("| {label} | {} | {} | {} |", lat.len(), ms(pct(&lat, 0.5)), ms(pct(&lat, 0.99)));
    }
    client.close().await;
    for n in nodes {
        n.shutdown().await;
    }
}
