//! End-to-end S3 benchmark of the gateway in fs mode, beside a raw baseline
//! measured in the same run on the same disk: the same bytes written with
//! fsync and MD5-hashed by a plain loop (PUT), read back and hashed (GET).
//!
//! `cargo bench -p predastore-gateway --bench s3` (set `BENCH_DIR` to pick
//! the disk, `BENCH_QUICK=1` for a short run, `BENCH_RSS_GIB` for the size
//! of the peak-RSS object, default 2).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use common::{MIB, client, data, run, start_gateway, vm_hwm_kib};
use s3s::crypto::Checksum as _;

fn raw_put(dir: &Path, name: &str, body: &[u8]) {
    let mut md5 = s3s::crypto::Md5::new();
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    for chunk in body.chunks(MIB) {
        md5.update(chunk);
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    std::hint::black_box(md5.finalize());
}

fn raw_get(dir: &Path, name: &str) -> usize {
    use std::io::Read;
    let mut md5 = s3s::crypto::Md5::new();
    let mut f = std::fs::File::open(dir.join(name)).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0;
    loop {
        let r = f.read(&mut buf).unwrap();
        if r == 0 {
            break;
        }
        md5.update(&buf[..r]);
        n += r;
    }
    std::hint::black_box(md5.finalize());
    n
}

async fn throughput(s3: &Client, raw_dir: &Path, size: usize, count: usize, conc: usize) {
    let body = Arc::new(data(size, size as u64));
    let total = (size * count) as f64 / MIB as f64;
    let dir = raw_dir.to_path_buf();
    let b = Arc::clone(&body);
    let raw_put_s = run(count, conc, move |i| {
        let (dir, b) = (dir.clone(), Arc::clone(&b));
        async move {
            tokio::task::spawn_blocking(move || raw_put(&dir, &format!("o{i}"), &b)).await.unwrap();
        }
    })
    .await
    .secs;
    let c = s3.clone();
    let b = Arc::clone(&body);
    let put_s = run(count, conc, move |i| {
        let (c, b) = (c.clone(), Arc::clone(&b));
        async move {
            c.put_object()
                .bucket("bench")
                .key(format!("o{size}-{i}"))
                .body(ByteStream::from(b.to_vec()))
                .send()
                .await
                .unwrap();
        }
    })
    .await
    .secs;
    let dir = raw_dir.to_path_buf();
    let raw_get_s = run(count, conc, move |i| {
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || raw_get(&dir, &format!("o{i}"))).await.unwrap();
        }
    })
    .await
    .secs;
    let c = s3.clone();
    let get_s = run(count, conc, move |i| {
        let c = c.clone();
        async move {
            let mut o =
                c.get_object().bucket("bench").key(format!("o{size}-{i}")).send().await.unwrap();
            let mut n = 0;
            while let Some(chunk) = o.body.try_next().await.unwrap() {
                n += chunk.len();
            }
            assert_eq!(n, size);
        }
    })
    .await
    .secs;
    let label =
        if size >= MIB { format!("{} MiB", size / MIB) } else { format!("{} KiB", size >> 10) };
    println!(
        "| {label} x{count}, conc {conc} | PUT {:.1} MiB/s | raw write+fsync+md5 {:.1} MiB/s | {:.0}% | GET {:.1} MiB/s | raw read+md5 {:.1} MiB/s | {:.0}% |",
        total / put_s,
        total / raw_put_s,
        100.0 * raw_put_s / put_s,
        total / get_s,
        total / raw_get_s,
        100.0 * raw_get_s / get_s,
    );
    for i in 0..count {
        let _ = std::fs::remove_file(raw_dir.join(format!("o{i}")));
    }
}

async fn small_ops(s3: &Client, raw_dir: &Path, count: usize, conc: usize) {
    let body = Arc::new(data(4096, 4));
    let dir = raw_dir.to_path_buf();
    let b = Arc::clone(&body);
    let raw_s = run(count, conc, move |i| {
        let (dir, b) = (dir.clone(), Arc::clone(&b));
        async move {
            tokio::task::spawn_blocking(move || raw_put(&dir, &format!("s{i}"), &b)).await.unwrap();
        }
    })
    .await
    .secs;
    let c = s3.clone();
    let b = Arc::clone(&body);
    let put_s = run(count, conc, move |i| {
        let (c, b) = (c.clone(), Arc::clone(&b));
        async move {
            c.put_object()
                .bucket("bench")
                .key(format!("small-{i}"))
                .body(ByteStream::from(b.to_vec()))
                .send()
                .await
                .unwrap();
        }
    })
    .await
    .secs;
    let c = s3.clone();
    let get_s = run(count, conc, move |i| {
        let c = c.clone();
        async move {
            let o = c.get_object().bucket("bench").key(format!("small-{i}")).send().await.unwrap();
            o.body.collect().await.unwrap();
        }
    })
    .await
    .secs;
    println!(
        "| 4 KiB x{count}, conc {conc} | PUT {:.0} ops/s | raw write+fsync+md5 {:.0} ops/s | {:.0}% | GET {:.0} ops/s | | |",
        count as f64 / put_s,
        count as f64 / raw_s,
        100.0 * raw_s / put_s,
        count as f64 / get_s,
    );
}

async fn peak_rss(base: &Path, gib: u64) {
    let dir = base.join("rss");
    std::fs::create_dir_all(&dir).unwrap();
    let src: PathBuf = dir.join("big.src");
    {
        let mut f = std::fs::File::create(&src).unwrap();
        let chunk = data(8 * MIB, 8);
        for _ in 0..(gib * 1024 / 8) {
            f.write_all(&chunk).unwrap();
        }
    }
    let gw = start_gateway(&dir).await;
    let s3 = client(&gw.endpoint);
    s3.create_bucket().bucket("rss").send().await.unwrap();
    let start = Instant::now();
    s3.put_object()
        .bucket("rss")
        .key("big")
        .body(ByteStream::from_path(&src).await.unwrap())
        .send()
        .await
        .unwrap();
    let put_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut o = s3.get_object().bucket("rss").key("big").send().await.unwrap();
    let mut n = 0u64;
    while let Some(chunk) = o.body.try_next().await.unwrap() {
        n += chunk.len() as u64;
    }
    let get_s = start.elapsed().as_secs_f64();
    assert_eq!(n, gib << 30);
    let hwm = vm_hwm_kib(gw.child.id());
    let mib = (gib << 30) as f64 / MIB as f64;
    println!(
        "\nGateway peak RSS (VmHWM) after PUT + GET of one {gib} GiB object: {:.1} MiB (target < 150 MiB); PUT {:.1} MiB/s, GET {:.1} MiB/s",
        hwm as f64 / 1024.0,
        mib / put_s,
        mib / get_s
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let base = std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let work = tempfile::Builder::new().prefix("predastore-bench-").tempdir_in(&base).unwrap();
        let quick = std::env::var_os("BENCH_QUICK").is_some();
        let raw = work.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let gw = start_gateway(work.path()).await;
        let s3 = client(&gw.endpoint);
        s3.create_bucket().bucket("bench").send().await.unwrap();
        println!("predastore-gateway fs mode vs raw baseline, same disk ({})", base.display());
        println!("| objects | gateway PUT | raw PUT baseline | PUT % of raw | gateway GET | raw GET baseline | GET % of raw |");
        println!("|---|---|---|---|---|---|---|");
        let (n1, n64, nsmall) = if quick { (16, 4, 500) } else { (64, 16, 2000) };
        throughput(&s3, &raw, MIB, n1, 4).await;
        throughput(&s3, &raw, 64 * MIB, n64, 4).await;
        small_ops(&s3, &raw, nsmall, 4).await;
        small_ops(&s3, &raw, nsmall, 32).await;
        drop(gw);
        let gib = std::env::var("BENCH_RSS_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 1 } else { 2 });
        peak_rss(work.path(), gib).await;
    });
}
