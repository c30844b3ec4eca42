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

/// Links in a served directory are not objects and never lead outside it:
/// `out -> <a directory outside>` cannot be read, listed, written or
/// deleted through, `loop -> .` cannot make a listing recurse, and a link
/// to a file inside is not served either.
#[tokio::test]
async fn symlinks_are_never_followed() {
    use std::os::unix::fs::symlink;
    let served = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"outside the bucket").unwrap();
    std::fs::create_dir(outside.path().join("sub")).unwrap();
    std::fs::write(served.path().join("real.txt"), b"inside").unwrap();
    std::fs::create_dir(served.path().join("dir")).unwrap();
    symlink(outside.path(), served.path().join("out")).unwrap();
    symlink(outside.path(), served.path().join("dir/deeper")).unwrap();
    symlink(".", served.path().join("loop")).unwrap();
    symlink("real.txt", served.path().join("alias.txt")).unwrap();
    symlink(outside.path().join("secret"), served.path().join("secret-link")).unwrap();
    let root = served.path().to_path_buf();
    let t = TestGateway::with(move |c| {
        c.buckets.push(BucketConfig { name: "links".into(), public: false, pathname: Some(root) });
    })
    .await;
    let s3 = t.client();

    // LIST ends and shows only the real file.
    let l = s3.list_objects_v2().bucket("links").send().await.unwrap();
    let keys: Vec<_> = l.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["real.txt"]);

    // Reads through or of a link: NoSuchKey, never the bytes.
    for key in ["out/secret", "dir/deeper/secret", "loop/real.txt", "alias.txt", "secret-link"] {
        let e = s3.get_object().bucket("links").key(key).send().await.unwrap_err();
        assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchKey", 404), "GET {key}");
        let e = s3.head_object().bucket("links").key(key).send().await.unwrap_err();
        assert_eq!(status(&e), 404, "HEAD {key}");
        let e = s3
            .copy_object()
            .bucket("links")
            .key("copied")
            .copy_source(format!("links/{key}"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 404, "COPY from {key}");
    }

    // Writes through a link are refused; nothing lands outside.
    for key in ["out/new", "out/sub/new", "dir/deeper/new", "loop/new", "secret-link"] {
        let e = s3
            .put_object()
            .bucket("links")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 400, "PUT {key}");
        assert!(
            format!("{e:?}").contains("symbolic link"),
            "PUT {key}: the error names the link: {e:?}"
        );
    }
    let outside_files: Vec<_> =
        std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside_files.len(), 2, "{outside_files:?}");
    assert!(!served.path().join("new").exists());

    // Deletes through a link touch nothing outside, and leave links alone.
    for key in ["out/secret", "dir/deeper/secret", "secret-link", "alias.txt", "out/sub/x"] {
        s3.delete_object().bucket("links").key(key).send().await.unwrap();
    }
    let del = aws_sdk_s3::types::Delete::builder()
        .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key("out/secret").build().unwrap())
        .build()
        .unwrap();
    s3.delete_objects().bucket("links").delete(del).send().await.unwrap();
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"outside the bucket");
    assert!(outside.path().join("sub").is_dir(), "empty folders outside are not pruned");
    for link in ["out", "dir/deeper", "loop", "alias.txt", "secret-link"] {
        assert!(served.path().join(link).symlink_metadata().is_ok(), "{link} kept");
    }
    // The real file still works.
    let got = s3.get_object().bucket("links").key("real.txt").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"inside");
}
