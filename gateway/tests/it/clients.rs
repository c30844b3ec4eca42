//! The command-line clients people use, against the suite's gateway (fs
//! or distributed): the aws cli (sync up and down, 20 syncs in a row, rm,
//! presign), rclone (copy, sync, check) and s3cmd (put, sync, get, del).
//! Each runs on a tree with a multipart-sized file, an empty file and
//! nested keys: the empty file's PUT is what broke the aws cli's next
//! multipart upload (see `http1.rs`). Under CI every tool must be there.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Size of the tree's large file (over 30 MB, as the issue asks): multipart
/// for all three tools.
const BIG: usize = 31_000_000;

/// Writes the test tree under `dir` and returns its root.
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("big.bin"), bytes(BIG, 16)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("sub/small.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("sub/deeper/nested.txt"), b"nested").unwrap();
    std::fs::write(root.join("with space.txt"), b"spaced").unwrap();
    root
}

/// Every file under `root`, as relative paths with their contents.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn assert_same_tree(want: &Path, got: &Path) {
    let (want, got) = (files(want), files(got));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want));
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        assert!(a == b, "{name} differs after the round trip");
    }
}

/// botocore's own steps of the `aws s3 sync` failure, on one pooled
/// connection: an empty-body PUT (answered without `100 Continue`), then a
/// part upload. botocore before 1.43.77 misparsed the part's response
/// (urllib3 logs it) and silently sent the part again after a timeout.
const BOTO3_EMPTY_THEN_PART: &str = r#"
import io, logging, sys, boto3
from botocore.config import Config
# urllib3 logs a response it could not parse, then botocore retries it
# unseen: the failure to catch.
broken = []
class Catch(logging.Handler):
    def emit(self, record):
        if "Failed to parse headers" in record.getMessage():
            broken.append(record.getMessage())
logging.getLogger("urllib3.connection").addHandler(Catch())
# Checksums off: botocore would otherwise send the empty body aws-chunked,
# which is not empty on the wire (the aws cli's sync sends it plain).
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  config=Config(max_pool_connections=1, read_timeout=5,
                                request_checksum_calculation="when_required"))
s3.create_bucket(Bucket="expect")
up = s3.create_multipart_upload(Bucket="expect", Key="big")["UploadId"]
for n in range(1, 4):
    s3.put_object(Bucket="expect", Key=f"empty-{n}", Body=io.BytesIO(b""))
    r = s3.upload_part(Bucket="expect", Key="big", UploadId=up, PartNumber=n,
                       Body=io.BytesIO(bytes([n]) * (5 << 20)))
    assert r.get("ETag"), f"part {n}: no ETag in {r}"
assert not broken, f"responses the client could not parse: {broken}"
print("boto3 expect ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_empty_upload_leaves_the_connection_usable() {
    let test = "boto3_empty_upload_leaves_the_connection_usable";
    if !tool_present("python3", &["-c", "import boto3"], test) {
        return;
    }
    let t = TestGateway::start().await;
    let ep = t.endpoint();
    tokio::task::block_in_place(|| {
        run_tool("python3", &["-c", BOTO3_EMPTY_THEN_PART, &ep, AK, SK], &[]);
    });
}

fn aws(t: &TestGateway, args: &[&str]) -> String {
    let ep = t.endpoint();
    let mut all = vec!["--endpoint-url", ep.as_str()];
    all.extend_from_slice(args);
    run_tool(
        "aws",
        &all,
        &[
            ("AWS_ACCESS_KEY_ID", AK),
            ("AWS_SECRET_ACCESS_KEY", SK),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_syncs_a_tree_twenty_times_without_a_failure() {
    if !tool_present("aws", &["--version"], "aws_cli_syncs_a_tree_twenty_times_without_a_failure") {
        return;
    }
    let t = TestGateway::start().await;
    let src = tree(t.dir.path());
    let down = t.dir.path().join("down");
    let presigned = tokio::task::block_in_place(|| {
        let s = src.to_str().unwrap();
        aws(&t, &["s3", "mb", "s3://cli"]);
        let quiet = "--only-show-errors";
        aws(&t, &["s3", "cp", quiet, &format!("{s}/big.bin"), "s3://cli/cp/big.bin"]);
        for i in 0..20 {
            aws(&t, &["s3", "sync", quiet, s, &format!("s3://cli/sync-{i}/")]);
        }
        let ls = aws(&t, &["s3", "ls", "--recursive", "s3://cli/sync-19/"]);
        for key in ["big.bin", "empty", "sub/small.txt", "sub/deeper/nested.txt", "with space.txt"]
        {
            assert!(ls.contains(&format!("sync-19/{key}")), "{key} missing from:\n{ls}");
        }
        // A second sync of an unchanged tree uploads nothing.
        let again = aws(&t, &["s3", "sync", s, "s3://cli/sync-19/"]);
        assert!(!again.contains("upload:"), "{again}");
        aws(&t, &["s3", "sync", quiet, "s3://cli/sync-19/", down.to_str().unwrap()]);
        let url =
            aws(&t, &["s3", "presign", "s3://cli/sync-0/sub/small.txt", "--expires-in", "300"]);
        aws(&t, &["s3", "rm", quiet, "--recursive", "s3://cli/"]);
        let left = aws(&t, &["s3", "ls", "--recursive", "s3://cli/"]);
        assert!(left.trim().is_empty(), "left after rm --recursive:\n{left}");
        aws(&t, &["s3", "rb", "s3://cli"]);
        url.trim().to_string()
    });
    assert_same_tree(&src, &down);
    // The presigned URL outlives the object it named: now NoSuchKey.
    let r = http_client().get(&presigned).send().await.unwrap();
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_presigned_url_reads_the_object() {
    if !tool_present("aws", &["--version"], "aws_cli_presigned_url_reads_the_object") {
        return;
    }
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("pre").send().await.unwrap();
    s3.put_object()
        .bucket("pre")
        .key("a b/c.txt")
        .body(b"signed".to_vec().into())
        .send()
        .await
        .unwrap();
    let url = tokio::task::block_in_place(|| {
        aws(&t, &["s3", "presign", "s3://pre/a b/c.txt", "--expires-in", "60"]).trim().to_string()
    });
    let r = http_client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copies_syncs_and_checks() {
    if !tool_present("rclone", &["version"], "rclone_copies_syncs_and_checks") {
        return;
    }
    let t = TestGateway::start().await;
    let src = tree(t.dir.path());
    let conf = t.dir.path().join("rclone.conf");
    std::fs::write(&conf, b"").unwrap();
    let ep = t.endpoint();
    let env = [
        ("RCLONE_CONFIG", conf.to_str().unwrap()),
        ("RCLONE_CONFIG_PD_TYPE", "s3"),
        ("RCLONE_CONFIG_PD_PROVIDER", "Other"),
        ("RCLONE_CONFIG_PD_ACCESS_KEY_ID", AK),
        ("RCLONE_CONFIG_PD_SECRET_ACCESS_KEY", SK),
        ("RCLONE_CONFIG_PD_ENDPOINT", ep.as_str()),
        ("RCLONE_CONFIG_PD_REGION", "us-east-1"),
        ("RCLONE_CONFIG_PD_FORCE_PATH_STYLE", "true"),
        // rclone's AWS SDK refuses a custom CA bundle on its transport
        // (set on some machines for other tools); plain HTTP needs none.
        ("AWS_CA_BUNDLE", ""),
    ];
    // Multipart from 5 MiB on, so the big file goes in parts.
    let rclone = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]);
        run_tool("rclone", &all, &env)
    };
    let s = src.to_str().unwrap();
    let down = t.dir.path().join("down");
    tokio::task::block_in_place(|| {
        rclone(&["mkdir", "pd:rclone"]);
        rclone(&["copy", s, "pd:rclone/copy"]);
        rclone(&["check", s, "pd:rclone/copy"]);
        rclone(&["sync", s, "pd:rclone/sync"]);
        rclone(&["check", s, "pd:rclone/sync"]);
        // Change the tree: sync must delete and add remotely.
        std::fs::remove_file(src.join("sub/small.txt")).unwrap();
        std::fs::write(src.join("new.txt"), b"new").unwrap();
        rclone(&["sync", s, "pd:rclone/sync"]);
        rclone(&["check", s, "pd:rclone/sync"]);
        let listed = rclone(&["lsf", "-R", "pd:rclone/sync"]);
        assert!(!listed.contains("small.txt") && listed.contains("new.txt"), "{listed}");
        rclone(&["copy", "pd:rclone/sync", down.to_str().unwrap()]);
        rclone(&["purge", "pd:rclone"]);
    });
    assert_same_tree(&src, &down);
    let buckets = t.client().list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "purge left {:?}", buckets.buckets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3cmd_puts_syncs_gets_and_deletes() {
    if !tool_present("s3cmd", &["--version"], "s3cmd_puts_syncs_gets_and_deletes") {
        return;
    }
    let t = TestGateway::start().await;
    let src = tree(t.dir.path());
    let host = t.gw().s3_addr().to_string();
    let cfg = t.dir.path().join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {AK}\nsecret_key = {SK}\nhost_base = {host}\n\
             host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n\
             bucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let s3cmd = |args: &[&str]| {
        let mut all = vec!["-c", c];
        all.extend_from_slice(args);
        run_tool("s3cmd", &all, &[])
    };
    let s = format!("{}/", src.to_str().unwrap());
    let got = t.dir.path().join("big.out");
    let down = t.dir.path().join("down");
    tokio::task::block_in_place(|| {
        s3cmd(&["mb", "s3://s3cmd"]);
        s3cmd(&["put", &format!("{s}big.bin"), "s3://s3cmd/big.bin"]);
        s3cmd(&["sync", &s, "s3://s3cmd/tree/"]);
        let ls = s3cmd(&["ls", "-r", "s3://s3cmd"]);
        assert!(ls.contains("s3://s3cmd/tree/sub/deeper/nested.txt"), "{ls}");
        assert!(ls.contains("s3://s3cmd/tree/empty"), "{ls}");
        s3cmd(&["get", "s3://s3cmd/big.bin", got.to_str().unwrap()]);
        s3cmd(&["sync", "s3://s3cmd/tree/", &format!("{}/", down.to_str().unwrap())]);
        s3cmd(&["del", "-r", "--force", "s3://s3cmd"]);
        s3cmd(&["rb", "s3://s3cmd"]);
    });
    assert!(std::fs::read(&got).unwrap() == bytes(BIG, 16), "big.bin differs after s3cmd get");
    assert_same_tree(&src, &down);
}
