//! Real tools against the binary's default server (no config file, dev
//! credentials): the aws cli and boto3. `clients.rs` drives more tools
//! against both backends. A missing tool fails under CI and prints SKIP
//! elsewhere.

use std::process::Command;

use crate::common::*;

async fn default_server(dir: &std::path::Path) -> GatewayProcess {
    let (s3, admin) = (free_port(), free_port());
    let data = dir.join("predastore-data");
    GatewayProcess::spawn(
        &[
            "--listen",
            &format!("127.0.0.1:{s3}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        s3,
        admin,
        &dir.join("gateway.log"),
    )
    .await
}

fn aws(endpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["--endpoint-url", endpoint];
    all.extend_from_slice(args);
    run_tool(
        "aws",
        &all,
        &[
            ("AWS_ACCESS_KEY_ID", predastore_core::config::DEV_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", predastore_core::config::DEV_SECRET_ACCESS_KEY),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_works_unchanged() {
    if !tool_present("aws", &["--version"], "aws_cli_works_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = default_server(dir.path()).await;
    let ep = p.s3.clone();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("one.txt"), b"one").unwrap();
    std::fs::write(src.join("sub/two.bin"), bytes(9 << 20, 5)).unwrap();
    let ep2 = ep.clone();
    let src2 = src.clone();
    let dl = dir.path().join("dl");
    let dl2 = dl.clone();
    tokio::task::spawn_blocking(move || {
        let ep = ep2.as_str();
        aws(ep, &["s3", "mb", "s3://tools"]);
        aws(ep, &["s3", "cp", src2.join("one.txt").to_str().unwrap(), "s3://tools/one.txt"]);
        let ls = aws(ep, &["s3", "ls", "s3://tools/"]);
        assert!(ls.contains("one.txt"), "{ls}");
        aws(ep, &["s3", "sync", src2.to_str().unwrap(), "s3://tools/synced/"]);
        let ls = aws(ep, &["s3", "ls", "--recursive", "s3://tools/synced/"]);
        assert!(ls.contains("synced/sub/two.bin"), "{ls}");
        aws(ep, &["s3", "sync", "s3://tools/synced/", dl2.to_str().unwrap()]);
        let head = aws(ep, &["s3api", "head-object", "--bucket", "tools", "--key", "one.txt"]);
        assert!(head.contains("\"ContentLength\": 3"), "{head}");
        aws(
            ep,
            &[
                "s3api",
                "put-object-tagging",
                "--bucket",
                "tools",
                "--key",
                "one.txt",
                "--tagging",
                "TagSet=[{Key=a,Value=b}]",
            ],
        );
        let tags =
            aws(ep, &["s3api", "get-object-tagging", "--bucket", "tools", "--key", "one.txt"]);
        assert!(tags.contains("\"Key\": \"a\""), "{tags}");
        aws(ep, &["s3", "rm", "s3://tools/one.txt"]);
        aws(ep, &["s3", "rm", "--recursive", "s3://tools/synced/"]);
        aws(ep, &["s3", "rb", "s3://tools"]);
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read(dl.join("sub/two.bin")).unwrap(), bytes(9 << 20, 5));
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_works_unchanged() {
    if !tool_present("python3", &["-c", "import boto3"], "boto3_works_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = default_server(dir.path()).await;
    let script = r#"
import sys, boto3, botocore
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="predastore", aws_secret_access_key="predastore-secret")
s3.create_bucket(Bucket="boto")
s3.put_object(Bucket="boto", Key="a/b.txt", Body=b"hello boto", Metadata={"k": "v"})
assert s3.get_object(Bucket="boto", Key="a/b.txt")["Body"].read() == b"hello boto"
assert s3.head_object(Bucket="boto", Key="a/b.txt")["Metadata"] == {"k": "v"}
page = s3.list_objects_v2(Bucket="boto", Delimiter="/")
assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/"], page
s3.upload_fileobj(__import__("io").BytesIO(b"x" * (12 * 1024 * 1024)), "boto", "big.bin")
assert s3.head_object(Bucket="boto", Key="big.bin")["ContentLength"] == 12 * 1024 * 1024
url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "a/b.txt"}, ExpiresIn=60)
import urllib.request
assert urllib.request.urlopen(url).read() == b"hello boto"
try:
    s3.get_object(Bucket="boto", Key="missing")
    raise SystemExit("expected NoSuchKey")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "NoSuchKey", e.response
s3.delete_objects(Bucket="boto", Delete={"Objects": [{"Key": "a/b.txt"}, {"Key": "big.bin"}]})
s3.delete_bucket(Bucket="boto")
print("boto3 ok")
"#;
    let ep = p.s3.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").args(["-c", script, &ep]).output().expect("run python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(p);
}
