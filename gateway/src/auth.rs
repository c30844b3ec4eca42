//! Who may do what: the credentials of `[[auth]]`, their per-bucket
//! policies, and public buckets (anonymous GET/HEAD only).
//!
//! s3s verifies every signature (header SigV4, presigned URLs, aws-chunked,
//! POST policies) against the secret [`Keyring`] hands it; [`AccessControl`]
//! then decides whether that identity may run the resolved operation.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use predastore_core::config::{AuthConfig, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY, PolicyConfig};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};

use crate::backend::Backend;

/// Credentials and their policies.
#[derive(Debug, Default)]
pub struct Keyring {
    users: HashMap<String, User>,
}

#[derive(Debug)]
struct User {
    secret: String,
    /// Empty: full access.
    policies: Vec<PolicyConfig>,
}

/// Where the effective credentials came from, for the startup banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Config,
    Environment,
    DevDefault,
}

impl Keyring {
    /// The config's `[[auth]]`, else the `PREDASTORE_ACCESS_KEY_ID` /
    /// `PREDASTORE_SECRET_ACCESS_KEY` pair, else the dev pair.
    pub fn resolve(
        auth: &[AuthConfig],
        env: impl Fn(&str) -> Option<String>,
    ) -> (Vec<AuthConfig>, CredentialSource) {
        if !auth.is_empty() {
            return (auth.to_vec(), CredentialSource::Config);
        }
        let from_env = env("PREDASTORE_ACCESS_KEY_ID").zip(env("PREDASTORE_SECRET_ACCESS_KEY"));
        match from_env.filter(|(a, s)| !a.is_empty() && !s.is_empty()) {
            Some((a, s)) => (
                vec![AuthConfig { access_key_id: a, secret_access_key: s, policy: Vec::new() }],
                CredentialSource::Environment,
            ),
            None => (
                vec![AuthConfig {
                    access_key_id: DEV_ACCESS_KEY_ID.into(),
                    secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
                    policy: Vec::new(),
                }],
                CredentialSource::DevDefault,
            ),
        }
    }

    pub fn new(auth: &[AuthConfig]) -> Self {
        let users = auth
            .iter()
            .map(|a| {
                (
                    a.access_key_id.clone(),
                    User { secret: a.secret_access_key.clone(), policies: a.policy.clone() },
                )
            })
            .collect();
        Self { users }
    }

    /// Whether `access_key` may perform `action` (e.g. `s3:GetObject`) on
    /// `bucket` (`None` for account-level operations like ListBuckets).
    pub fn allows(&self, access_key: &str, action: &str, bucket: Option<&str>) -> bool {
        let Some(user) = self.users.get(access_key) else { return false };
        if user.policies.is_empty() {
            return true;
        }
        user.policies.iter().any(|p| {
            let bucket_ok = p.bucket == "*" || Some(p.bucket.as_str()) == bucket;
            bucket_ok && p.actions.iter().any(|a| a == "s3:*" || a == action)
        })
    }

    /// Whether ListBuckets should show `bucket` to `access_key`.
    pub fn may_see_bucket(&self, access_key: &str, bucket: &str) -> bool {
        let Some(user) = self.users.get(access_key) else { return false };
        user.policies.is_empty()
            || user.policies.iter().any(|p| p.bucket == "*" || p.bucket == bucket)
    }
}

/// Hands s3s the secret for an access key.
pub struct KeyringAuth(pub Arc<Keyring>);

#[async_trait::async_trait]
impl S3Auth for KeyringAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.users.get(access_key) {
            Some(u) => Ok(SecretKey::from(u.secret.clone())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// The resolved S3 operation of a request, filled in by [`AccessControl`]
/// so the HTTP layer can label metrics and logs with it.
#[derive(Debug, Clone, Default)]
pub struct OpName(pub Arc<OnceLock<String>>);

impl OpName {
    pub fn get(&self) -> &str {
        self.0.get().map_or("Unknown", String::as_str)
    }
}

/// IAM-style action an operation needs.
pub fn action(op: &str) -> String {
    let a = match op {
        "HeadObject" | "GetObjectAttributes" => "s3:GetObject",
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "UploadPartCopy"
        | "CopyObject"
        | "PostObject" => "s3:PutObject",
        "ListParts" => "s3:ListMultipartUploadParts",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "DeleteObjects" => "s3:DeleteObject",
        "GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration",
        "GetBucketCors" => "s3:GetBucketCORS",
        "GetBucketAcl" => "s3:GetBucketAcl",
        "PutBucketAcl" => "s3:PutBucketAcl",
        other => return format!("s3:{other}"),
    };
    a.to_string()
}

/// Every operation s3s routes (its `S3Operation::name`s); with [`action`]
/// they give every policy action a request can ask for.
const OPERATIONS: &[&str] = &[
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateBucket",
    "CreateBucketMetadataTableConfiguration",
    "CreateMultipartUpload",
    "CreateSession",
    "DeleteBucket",
    "DeleteBucketAnalyticsConfiguration",
    "DeleteBucketCors",
    "DeleteBucketEncryption",
    "DeleteBucketIntelligentTieringConfiguration",
    "DeleteBucketInventoryConfiguration",
    "DeleteBucketLifecycle",
    "DeleteBucketMetadataTableConfiguration",
    "DeleteBucketMetricsConfiguration",
    "DeleteBucketOwnershipControls",
    "DeleteBucketPolicy",
    "DeleteBucketReplication",
    "DeleteBucketTagging",
    "DeleteBucketWebsite",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjects",
    "DeletePublicAccessBlock",
    "GetBucketAccelerateConfiguration",
    "GetBucketAcl",
    "GetBucketAnalyticsConfiguration",
    "GetBucketCors",
    "GetBucketEncryption",
    "GetBucketIntelligentTieringConfiguration",
    "GetBucketInventoryConfiguration",
    "GetBucketLifecycleConfiguration",
    "GetBucketLocation",
    "GetBucketLogging",
    "GetBucketMetadataTableConfiguration",
    "GetBucketMetricsConfiguration",
    "GetBucketNotificationConfiguration",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketReplication",
    "GetBucketRequestPayment",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectLegalHold",
    "GetObjectLockConfiguration",
    "GetObjectRetention",
    "GetObjectTagging",
    "GetObjectTorrent",
    "GetPublicAccessBlock",
    "HeadBucket",
    "HeadObject",
    "ListBucketAnalyticsConfigurations",
    "ListBucketIntelligentTieringConfigurations",
    "ListBucketInventoryConfigurations",
    "ListBucketMetricsConfigurations",
    "ListBuckets",
    "ListDirectoryBuckets",
    "ListMultipartUploads",
    "ListObjectVersions",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "PostObject",
    "PutBucketAccelerateConfiguration",
    "PutBucketAcl",
    "PutBucketAnalyticsConfiguration",
    "PutBucketCors",
    "PutBucketEncryption",
    "PutBucketIntelligentTieringConfiguration",
    "PutBucketInventoryConfiguration",
    "PutBucketLifecycleConfiguration",
    "PutBucketLogging",
    "PutBucketMetricsConfiguration",
    "PutBucketNotificationConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketReplication",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutObject",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectLockConfiguration",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutPublicAccessBlock",
    "RestoreObject",
    "SelectObjectContent",
    "UploadPart",
    "UploadPartCopy",
    "WriteGetObjectResponse",
];

/// Policy actions that match some request, besides `s3:*`.
pub fn known_actions() -> std::collections::BTreeSet<String> {
    OPERATIONS.iter().map(|op| action(op)).collect()
}

/// Policy actions in `auth` that no request can ever match — a typo such
/// as `s3:GetObjekt` would otherwise silently grant nothing. Each entry
/// names the config key, like the config validator does.
pub fn unknown_actions(auth: &[AuthConfig]) -> Vec<String> {
    let known = known_actions();
    let mut out = Vec::new();
    for (i, a) in auth.iter().enumerate() {
        for (j, p) in a.policy.iter().enumerate() {
            for (k, act) in p.actions.iter().enumerate() {
                if act != "s3:*" && !known.contains(act) {
                    out.push(format!(
                        "auth[{i}].policy[{j}].actions[{k}]: `{act}` matches no S3 request; \
                         use an IAM action such as s3:GetObject, s3:PutObject, s3:ListBucket or s3:*"
                    ));
                }
            }
        }
    }
    out
}

/// Decides every request after its signature checked out.
pub struct AccessControl {
    pub keyring: Arc<Keyring>,
    pub backend: Arc<dyn Backend>,
}

#[async_trait::async_trait]
impl S3Access for AccessControl {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        if let Some(slot) = cx.extensions_mut().get::<OpName>() {
            let _ = slot.0.set(op.clone());
        }
        let bucket = cx.s3_path().get_bucket_name().map(str::to_string);
        let denied = || s3_error!(AccessDenied, "Access Denied");
        match cx.credentials() {
            None => {
                let read = matches!(op.as_str(), "GetObject" | "HeadObject");
                let public = match &bucket {
                    Some(b) => self.backend.bucket(b).await.is_ok_and(|b| b.public),
                    None => false,
                };
                if read && public { Ok(()) } else { Err(denied()) }
            }
            Some(c) => {
                if self.keyring.allows(&c.access_key, &action(&op), bucket.as_deref()) {
                    Ok(())
                } else {
                    Err(denied())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn misspelled_policy_actions_are_reported_and_real_ones_pass() {
        let auth = vec![AuthConfig {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            policy: vec![PolicyConfig {
                bucket: "x".into(),
                actions: vec![
                    "s3:GetObject".into(),
                    "s3:GetObjekt".into(),
                    "s3:*".into(),
                    "s3:ListBucket".into(),
                    "s3:GetBucketTagging".into(),
                ],
            }],
        }];
        let unknown = unknown_actions(&auth);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert!(unknown[0].starts_with("auth[0].policy[0].actions[1]: `s3:GetObjekt`"));
        for a in
            ["s3:ListAllMyBuckets", "s3:ListMultipartUploadParts", "s3:GetLifecycleConfiguration"]
        {
            assert!(known_actions().contains(a), "{a}");
        }
    }

    use super::*;

    fn ring() -> Keyring {
        Keyring::new(&[
            AuthConfig {
                access_key_id: "admin".into(),
                secret_access_key: "s".into(),
                policy: vec![],
            },
            AuthConfig {
                access_key_id: "reader".into(),
                secret_access_key: "s".into(),
                policy: vec![PolicyConfig {
                    bucket: "a".into(),
                    actions: vec!["s3:GetObject".into()],
                }],
            },
        ])
    }

    #[test]
    fn policies_limit_actions_and_buckets() {
        let k = ring();
        assert!(k.allows("admin", "s3:PutObject", Some("z")));
        assert!(k.allows("reader", "s3:GetObject", Some("a")));
        assert!(!k.allows("reader", "s3:PutObject", Some("a")));
        assert!(!k.allows("reader", "s3:GetObject", Some("b")));
        assert!(!k.allows("nobody", "s3:GetObject", Some("a")));
        assert!(k.may_see_bucket("reader", "a") && !k.may_see_bucket("reader", "b"));
    }

    #[test]
    fn credentials_resolve_config_then_env_then_dev() {
        let env = |k: &str| match k {
            "PREDASTORE_ACCESS_KEY_ID" => Some("envkey".to_string()),
            "PREDASTORE_SECRET_ACCESS_KEY" => Some("envsecret".to_string()),
            _ => None,
        };
        let (a, src) = Keyring::resolve(&[], env);
        assert_eq!((a[0].access_key_id.as_str(), src), ("envkey", CredentialSource::Environment));
        let (a, src) = Keyring::resolve(&[], |_| None);
        assert_eq!(
            (a[0].access_key_id.as_str(), src),
            (DEV_ACCESS_KEY_ID, CredentialSource::DevDefault)
        );
        assert_eq!(action("HeadObject"), "s3:GetObject");
        assert_eq!(action("PutObjectTagging"), "s3:PutObjectTagging");
    }
}
