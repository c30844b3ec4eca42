//! Node benchmarks, printed as a table (see docs/nodes-benchmarks.md):
//!
//! - Reed–Solomon encode and reconstruct throughput on one core for
//!   RS(2,1), RS(3,2), RS(4,2) at 1 MiB and 8 MiB chunks;
//! - shard put/get over QUIC on loopback (1 MiB and 8 MiB shards,
//!   concurrency 4) against a node in this process, beside a raw fsync'd
//!   file write/read of the same bytes on the same disk in the same run.
//!
//! `cargo bench -p predastore-node --bench nodes` (env `BENCH_DIR` picks
//! the disk, default the system temp dir; `BENCH_MIB` the bytes per case).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use predastore_core::certs::{self, Role};
use predastore_core::client::{ClientOptions, NodeAddr, ShardClient};
use predastore_core::erasure::Codec;
use predastore_core::shard::ShardId;
use predastore_core::transport::TlsMaterial;
use predastore_node::server::{Node, NodeOptions};

const MIB: f64 = (1 << 20) as f64;
const CONCURRENCY: usize = 4;

fn data(len: usize) -> Vec<u8> {
    predastore_core::sample::pseudo_random_bytes(len, 0x1234_5678)
}

/// Runs `f` repeatedly for about `budget`; returns MiB/s of `bytes` per run.
fn rate(bytes: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget || runs < 3 {
        f();
        runs += 1;
    }
    bytes as f64 * f64::from(runs) / MIB / start.elapsed().as_secs_f64()
}

fn codec_benches() {
    println!("## Reed–Solomon, one core\n");
    println!("| code | chunk | encode MiB/s | reconstruct MiB/s (m data shards lost) |");
    println!("|---|---|---|---|");
    for (k, m) in [(2, 1), (3, 2), (4, 2)] {
        for size in [1usize << 20, 8 << 20] {
            let codec = Codec::new(k, m).unwrap();
            let chunk = data(size);
            let enc = rate(size, Duration::from_millis(800), || {
                std::hint::black_box(codec.encode(&chunk));
            });
            let shards = codec.encode(&chunk);
            let rec = rate(size, Duration::from_millis(800), || {
                let mut slots: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
                for s in slots.iter_mut().take(m) {
                    *s = None;
                }
                std::hint::black_box(codec.reconstruct(slots, size).unwrap());
            });
            println!("| RS({k},{m}) | {} MiB | {enc:.0} | {rec:.0} |", size >> 20);
        }
    }
    println!();
}

/// Writes `count` files of `body` with `CONCURRENCY` threads, each file
/// written then fsync'd (and its directory fsync'd, as the store does).
fn raw_write(dir: &std::path::Path, body: &Arc<Vec<u8>>, count: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..CONCURRENCY {
            let body = Arc::clone(body);
            s.spawn(move || {
                for i in (t..count).step_by(CONCURRENCY) {
                    let p = dir.join(format!("raw-{i}"));
                    let mut f = std::fs::File::create(&p).unwrap();
                    f.write_all(&body).unwrap();
                    f.sync_data().unwrap();
                    std::fs::File::open(dir).unwrap().sync_all().unwrap();
                }
            });
        }
    });
    (body.len() * count) as f64 / MIB / start.elapsed().as_secs_f64()
}

fn raw_read(dir: &std::path::Path, len: usize, count: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..CONCURRENCY {
            s.spawn(move || {
                for i in (t..count).step_by(CONCURRENCY) {
                    let b = std::fs::read(dir.join(format!("raw-{i}"))).unwrap();
                    assert_eq!(b.len(), len);
                }
            });
        }
    });
    (len * count) as f64 / MIB / start.elapsed().as_secs_f64()
}

async fn quic_benches() {
    let total_mib: usize =
        std::env::var("BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let ca = certs::new_ca("bench").unwrap();
    let node_cert = certs::issue(&ca, "bench", &Role::Node(0)).unwrap();
    let gw = certs::issue(&ca, "bench", &Role::Gateway("bench".into())).unwrap();
    let node_tls = TlsMaterial::from_pem(
        ca.cert_pem.as_bytes(),
        node_cert.cert_pem.as_bytes(),
        node_cert.key_pem.as_bytes(),
    )
    .unwrap();
    let gw_tls = TlsMaterial::from_pem(
        ca.cert_pem.as_bytes(),
        gw.cert_pem.as_bytes(),
        gw.key_pem.as_bytes(),
    )
    .unwrap();
    let store_dir = tempfile::tempdir_in(&base).unwrap();
    let raw_dir = tempfile::tempdir_in(&base).unwrap();
    let mut opts = NodeOptions::new(
        0,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        store_dir.path().to_path_buf(),
        node_tls,
    );
    opts.min_free = Some(0);
    let node = Node::start(opts).await.unwrap();
    let client = Arc::new(
        ShardClient::new(&gw_tls, "127.0.0.1:0".parse().unwrap(), ClientOptions::default())
            .unwrap(),
    );
    let at = NodeAddr { id: 0, addr: node.quic_addr().to_string() };
    println!(
        "## Shards over QUIC (loopback, concurrency {CONCURRENCY}) vs raw files, {total_mib} MiB per case\n"
    );
    println!("dir: {}\n", base.display());
    println!(
        "| shard | QUIC put MiB/s | raw fsync'd write MiB/s | put/raw | QUIC get MiB/s | raw read MiB/s | get/raw |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, size) in [(1usize, 1usize << 20), (2, 8 << 20)] {
        let count = (total_mib << 20) / size;
        let body = Bytes::from(data(size));
        // Warm the connection.
        client
            .put_bytes(&at, ShardId { object: 0, chunk: 0, index: 0 }, body.clone())
            .await
            .unwrap();
        let id = move |i: usize| ShardId { object: n as u128, chunk: i as u32, index: 0 };
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..CONCURRENCY {
            let (client, at, body) = (Arc::clone(&client), at.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                for i in (t..count).step_by(CONCURRENCY) {
                    client.put_bytes(&at, id(i), body.clone()).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let put = (size * count) as f64 / MIB / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..CONCURRENCY {
            let (client, at) = (Arc::clone(&client), at.clone());
            tasks.push(tokio::spawn(async move {
                for i in (t..count).step_by(CONCURRENCY) {
                    let b = client.get(&at, id(i), 0, None).await.unwrap();
                    assert_eq!(b.len(), size);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let get = (size * count) as f64 / MIB / start.elapsed().as_secs_f64();
        let raw_body = Arc::new(body.to_vec());
        let dir = raw_dir.path().to_path_buf();
        let (w, r) = tokio::task::spawn_blocking(move || {
            let w = raw_write(&dir, &raw_body, count);
            let r = raw_read(&dir, size, count);
            for i in 0..count {
                let _ = std::fs::remove_file(dir.join(format!("raw-{i}")));
            }
            (w, r)
        })
        .await
        .unwrap();
        println!(
            "| {} MiB | {put:.0} | {w:.0} | {:.0}% | {get:.0} | {r:.0} | {:.0}% |",
            size >> 20,
            100.0 * put / w,
            100.0 * get / r
        );
        for i in 0..count {
            client.delete(&at, id(i)).await.unwrap();
        }
    }
    println!();
    client.close().await;
    node.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not run us.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    codec_benches();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(quic_benches());
}
