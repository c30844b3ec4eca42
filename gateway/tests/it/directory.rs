//! `[[buckets]] pathname`: serving an existing directory read/write.

use predastore_core::config::BucketConfig;

use crate::common::*;

#[tokio::test]
async fn serves_an_existing_directory_read_write() {
    let served = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(served.path().join("docs/deep")).unwrap();
    std::fs::write(served.path().join("readme.txt"), b"hello from disk").unwrap();
    std::fs::write(served.path().join("docs/a.md"), b"# a").unwrap();
    std::fs::write(served.path().join("docs/deep/b.json"), b"{}").unwrap();
    let root = served.path().to_path_buf();
    let t = TestGateway::with(move |c| {
        c.buckets.push(BucketConfig { name: "files".into(), public: false, pathname: Some(root) });
    })
    .await;
    let s3 = t.client();
    let l = s3.list_objects_v2().bucket("files").send().await.unwrap();
    let keys: Vec<_> = l.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["docs/a.md", "docs/deep/b.json", "readme.txt"]);
    let l = s3.list_objects_v2().bucket("files").delimiter("/").send().await.unwrap();
    assert_eq!(l.common_prefixes()[0].prefix(), Some("docs/"));
    assert_eq!(l.contents()[0].key(), Some("readme.txt"));
    let got = s3.get_object().bucket("files").key("readme.txt").send().await.unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"hello from disk");
    // Writes land as plain files.
    s3.put_object()
        .bucket("files")
        .key("new/dir/c.txt")
        .metadata("k", "v")
        .body(b"written".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(std::fs::read(served.path().join("new/dir/c.txt")).unwrap(), b"written");
    let h = s3.head_object().bucket("files").key("new/dir/c.txt").send().await.unwrap();
    assert_eq!(h.metadata().unwrap()["k"], "v");
    // Keys that cannot be files are refused clearly, nothing escapes.
    for bad in ["../escape", "a//b", "trailing/", ".predastore/x", "readme.txt/child"] {
        let e = s3
            .put_object()
            .bucket("files")
            .key(bad)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 400, "{bad}");
    }
    assert!(!served.path().parent().unwrap().join("escape").exists());
    s3.delete_object().bucket("files").key("new/dir/c.txt").send().await.unwrap();
    assert!(!served.path().join("new").exists(), "empty folders are removed");
    // A file changed behind our back is seen as it is now.
    std::fs::write(served.path().join("readme.txt"), b"changed on disk").unwrap();
    let got = s3.get_object().bucket("files").key("readme.txt").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"changed on disk");
}
