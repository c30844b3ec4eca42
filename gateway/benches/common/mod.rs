//! Pieces shared by the gateway benches (`s3`: fs mode against a raw
//! baseline; `cluster`: fs mode against dev clusters; `healing`: scrub and
//! repair on a dev cluster): running the
//! `predastore-gateway` binary, the S3 client, the concurrent job runner
//! with per-request latency, and readings from `/proc`.

// Each bench uses a different subset.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};

pub const AK: &str = "bench";
pub const SK: &str = "bench-secret";
pub const MIB: usize = 1 << 20;

/// A gateway process; killed when dropped.
pub struct Proc {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<s3 port>`.
    pub endpoint: String,
    /// `http://127.0.0.1:<admin port>`: `/readyz`, `/metrics`.
    pub admin: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the gateway binary with the config file `cfg` (which must listen on
/// `s3` and `admin`) and waits for its `/readyz`.
pub async fn spawn_gateway(cfg: &Path, s3: u16, admin: u16) -> Proc {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_predastore-gateway"))
        .args(["--config", cfg.to_str().unwrap(), "--log", "warn"])
        .spawn()
        .expect("start gateway");
    let mut p = Proc {
        child,
        endpoint: format!("http://127.0.0.1:{s3}"),
        admin: format!("http://127.0.0.1:{admin}"),
    };
    let ready = format!("{}/readyz", p.admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            return p;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("gateway exited while starting: {status}");
        }
        assert!(Instant::now() < deadline, "gateway not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway in fs mode with its data under `dir/data`.
pub async fn start_gateway(dir: &Path) -> Proc {
    let (s3, admin) = (free_port(), free_port());
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{s3}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[storage.fs]\nbase_path = \"{}\"\n[[auth]]\naccess_key_id = \"{AK}\"\nsecret_access_key = \"{SK}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    spawn_gateway(&cfg, s3, admin).await
}

pub fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(AK, SK, None, None, "bench"))
        .force_path_style(true)
        // Measure the server, not the client's optional CRC work.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

pub fn data(n: usize, seed: u64) -> Vec<u8> {
    predastore_core::sample::pseudo_random_bytes(n, seed)
}

/// Wall time of a batch of jobs and the latency of each job.
pub struct Timing {
    pub secs: f64,
    /// Seconds per job, sorted.
    pub lat: Vec<f64>,
}

impl Timing {
    /// The `q` quantile (0..=1) of the job latencies, nearest rank.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let rank = (q * self.lat.len() as f64).ceil() as usize;
        self.lat[rank.clamp(1, self.lat.len()) - 1]
    }
}

/// Runs `count` jobs over `conc` workers.
pub async fn run<F, Fut>(count: usize, conc: usize, job: F) -> Timing
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let job = Arc::clone(&job);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                job(i).await;
                lat.push(t.elapsed().as_secs_f64());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(count);
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Timing { secs, lat }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB; 0 if
/// the process is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn vm_hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// Resets the process's VmHWM to its current RSS (`clear_refs` 5), so a
/// later reading is the peak of what ran in between.
pub fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// User + system CPU seconds a process has used (all its threads, living
/// or exited). `/proc` counts in USER_HZ, 100 on Linux.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// CPU seconds all processes of the machine have spent busy (user,
/// system, interrupts, steal), from `/proc/stat`.
pub fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else { return 0.0 };
    let f: Vec<u64> = cpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is in user)
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / 100.0
}
