//! Resource bounds under load and abuse: the shared memory budget
//! (`max_in_flight_bytes`: wait, then 503 SlowDown), the connection limit,
//! clients that stop reading their response, and hundreds of slow clients
//! at once against a real gateway process.

use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A client that does not retry, to see the first answer.
fn no_retry(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = client(endpoint, AK, SK).config().to_builder().retry_config(RetryConfig::disabled());
    aws_sdk_s3::Client::from_conf(conf.build())
}

/// Starts a raw PUT of `declared` bytes and sends `sent` of them.
async fn partial_put(
    addr: std::net::SocketAddr,
    path: &str,
    declared: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    let url = format!("http://{addr}{path}");
    let h = signed_headers("PUT", &url, &[("content-length", &declared.to_string())]);
    let mut s = raw_request(addr, "PUT", path, &h).await;
    s.write_all(&vec![5u8; sent]).await.unwrap();
    s
}

#[tokio::test]
async fn a_full_memory_budget_waits_then_answers_slow_down() {
    let t = TestGateway::with(|c| {
        c.max_in_flight_bytes = 1 << 20;
        c.admission_wait_ms = 1000;
    })
    .await;
    let s3 = t.client();
    s3.create_bucket().bucket("budget").send().await.unwrap();
    s3.put_object().bucket("budget").key("old").body(b"old".to_vec().into()).send().await.unwrap();
    let addr = t.gw().s3_addr();
    // A 1 MiB upload half sent holds the whole budget.
    let mut holder = partial_put(addr, "/budget/held", 1 << 20, 512 << 10).await;
    let quick = no_retry(&t.endpoint());
    let e = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = quick.put_object().bucket("budget").key("k").body(vec![1; 4096].into()).send();
            match r.await {
                Err(e) => break e,
                Ok(_) => assert!(Instant::now() < deadline, "the holder never got admitted"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!((status(&e), code(&e).as_str()), (503, "SlowDown"), "{e:?}");
    // AWS's body, with a request id.
    let r = signed("GET", &format!("http://{addr}/budget/old"), &[], Vec::new()).await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
    assert!(body.contains("<Message>Please reduce your request rate.</Message>"), "{body}");
    assert!(body.contains("<RequestId>"), "{body}");
    // So do bodies s3s reads whole before any handler (XML here).
    let xml = b"<Delete><Object><Key>old</Key></Object></Delete>".to_vec();
    let md5 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(hex::decode(md5_hex(&xml)).unwrap())
    };
    let r = signed("POST", &format!("http://{addr}/budget?delete"), &[("content-md5", &md5)], xml)
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    // Cheap requests that hold no object data still pass.
    s3.list_objects_v2().bucket("budget").send().await.unwrap();
    s3.head_object().bucket("budget").key("old").send().await.unwrap();
    // A request waits for room rather than failing at once: the holder
    // finishes while it waits.
    let waiting = tokio::spawn({
        let quick = quick.clone();
        async move {
            quick.put_object().bucket("budget").key("k").body(vec![2; 4096].into()).send().await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.write_all(&vec![5u8; 512 << 10]).await.unwrap();
    let answer = read_response(&mut holder, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    waiting.await.unwrap().expect("admitted once the holder finished");
    let got = s3.get_object().bucket("budget").key("held").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), vec![5u8; 1 << 20]);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_its_memory_freed() {
    let t = TestGateway::with(|c| {
        c.idle_timeout_secs = 1;
        c.max_in_flight_bytes = 2 << 20;
        c.admission_wait_ms = 200;
    })
    .await;
    let s3 = t.client();
    s3.create_bucket().bucket("stall").send().await.unwrap();
    let size = 64 << 20;
    s3.put_object().bucket("stall").key("big").body(bytes(size, 3).into()).send().await.unwrap();
    let addr = t.gw().s3_addr();
    let h = signed_headers("GET", &format!("http://{addr}/stall/big"), &[]);
    let mut reader = raw_request(addr, "GET", "/stall/big", &h).await;
    // While the response waits on the reader, it holds the budget...
    let quick = no_retry(&t.endpoint());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = quick.get_object().bucket("stall").key("big").send().await.unwrap_err();
    assert_eq!(code(&e), "SlowDown", "{e:?}");
    // ...until the stall limit closes the connection and frees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match quick.head_object().bucket("stall").key("big").send().await {
            Ok(_) if quick.get_object().bucket("stall").key("big").send().await.is_ok() => break,
            _ => assert!(Instant::now() < deadline, "the stalled response was never cut off"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the stalled connection is still open"),
        }
    }
    assert!(got < size, "the connection was closed before the whole body ({got} bytes)");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_accept() {
    let t = TestGateway::with(|c| c.max_connections = 4).await;
    let addr = t.gw().s3_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "the fifth connection was served: {r:?}");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    no_retry(&t.endpoint()).list_buckets().send().await.expect("a freed slot serves again");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 500 hostile clients at once (slow headers, trickled bodies, stalled
/// readers, silent sockets) against a gateway process with its defaults:
/// a well-behaved client is served as usual and the process stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_slow_clients_neither_exhaust_memory_nor_starve_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (s3p, adp) = (free_port(), free_port());
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{s3p}\"\nadmin_listen = \"127.0.0.1:{adp}\"\n[storage.fs]\nbase_path = \"{}\"\n[[auth]]\naccess_key_id = \"{AK}\"\nsecret_access_key = \"{SK}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let proc = GatewayProcess::spawn(
        &["--config", cfg.to_str().unwrap()],
        s3p,
        adp,
        &dir.path().join("log"),
    )
    .await;
    let pid = proc.child.id();
    let s3 = client(&proc.s3, AK, SK);
    s3.create_bucket().bucket("busy").send().await.unwrap();
    let big = bytes(32 << 20, 9);
    s3.put_object().bucket("busy").key("big").body(big.clone().into()).send().await.unwrap();
    let before = vm_rss_kib(pid);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{s3p}").parse().unwrap();
    let mut hostile = Vec::new();
    for i in 0..500 {
        let s = match i % 4 {
            // Slowloris: a header line that never ends.
            0 => {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET /busy/big HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
                s
            }
            // A body trickled far below its declared 8 MiB.
            1 => partial_put(addr, &format!("/busy/slow-{i}"), 8 << 20, 1024).await,
            // A 32 MiB download nobody reads.
            2 => {
                let h = signed_headers("GET", &format!("http://{addr}/busy/big"), &[]);
                raw_request(addr, "GET", "/busy/big", &h).await
            }
            // A socket that says nothing.
            _ => tokio::net::TcpStream::connect(addr).await.unwrap(),
        };
        hostile.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (i, s) in hostile.iter_mut().enumerate() {
                let _ = match i % 4 {
                    0 => s.write_all(b"a").await,
                    1 => s.write_all(&[7u8; 64]).await,
                    _ => Ok(()),
                };
            }
        }
        hostile
    });
    // The kernel completes the connects at once; the gateway accepts them
    // as it gets to them (slower on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http_client().get(format!("{}/metrics", proc.admin)).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let open: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("predastore_gateway_connections "))
            .expect("connections gauge")
            .parse()
            .unwrap();
        if open >= 400.0 {
            break;
        }
        assert!(Instant::now() < deadline, "only {open} hostile connections got accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The well-behaved client, as usual.
    let started = Instant::now();
    let mine = bytes(16 << 20, 10);
    s3.put_object().bucket("busy").key("mine").body(mine.clone().into()).send().await.unwrap();
    let got = s3.get_object().bucket("busy").key("mine").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), mine);
    let got = s3.get_object().bucket("busy").key("big").send().await.unwrap();
    assert!(got.body.collect().await.unwrap().to_vec() == big);
    let listed = s3.list_objects_v2().bucket("busy").send().await.unwrap();
    assert!(listed.contents().iter().any(|o| o.key() == Some("mine")));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the good client waited {took:?}");
    let during = vm_rss_kib(pid);
    let hostile = trickle.await.unwrap();
    let after = vm_rss_kib(pid);
    drop(hostile);
    println!(
        "gateway RSS: {before} KiB before, {during} KiB under 500 slow clients, {after} KiB at the end; good client took {took:?}"
    );
    assert!(during.max(after) < 512 << 10, "gateway RSS grew to {} KiB", during.max(after));
}
