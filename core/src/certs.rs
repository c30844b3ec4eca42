//! Cluster PKI: one CA per cluster, certificates for nodes and gateways.
//!
//! Nodes accept only peers presenting a certificate issued by the cluster
//! CA, and clients accept only nodes presenting one — QUIC between
//! Predastore processes is mutual TLS with no public trust involved.
//!
//! Names (relied on by [`crate::transport`]): a node's certificate carries
//! the DNS name `node-<id>.predastore` and clients verify it against the id
//! the ring gave them, so one node cannot pose as another; a gateway's
//! carries `gateway-<name>.predastore`. Node certificates allow both server
//! and client auth (nodes call each other), gateway certificates client
//! auth. Keys are ECDSA P-256.
//!
//! Issuing rebuilds the CA's signing identity from its key and the cluster
//! id (rcgen signs with the issuer's name and key), then checks the new
//! certificate against the stored CA certificate, so a wrong cluster id or
//! a mismatched key is caught at issue time rather than at the first
//! handshake.
//!
//! On disk a pair is `<stem>.crt` + `<stem>.key` in one directory
//! ([`write_pair`], [`read_pair`]); `predastore-node certs` and
//! `predastore-gateway dev-cluster` both lay files out this way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, UnixTime};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
}

/// Who a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Storage node `id` (server and client auth).
    Node(u64),
    /// A gateway (client auth).
    Gateway(String),
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or key.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA files do not belong together or to this cluster.
    #[error("the CA key and certificate do not match cluster {cluster_id:?}: {reason}")]
    CaMismatch { cluster_id: String, reason: String },
    /// A name that cannot go into a certificate.
    #[error("invalid name {0:?}: use lowercase letters, digits and '-'")]
    BadName(String),
}

/// Why a certificate pair could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CertFileError {
    /// Writing would replace a private key, which could lock every holder
    /// of the old certificate out; remove it by hand if that is meant.
    #[error("{0} exists; refusing to overwrite a key")]
    KeyExists(PathBuf),
    /// A file or directory could not be created, written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: "creating", "writing", "reading".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Paths of the pair `stem` in `dir`: `<dir>/<stem>.crt`, `<dir>/<stem>.key`.
pub fn pair_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")))
}

/// Writes `pair` as `<stem>.crt` and `<stem>.key` (mode 0600) into `dir`,
/// creating `dir`; refuses to replace an existing key. Returns both paths.
pub fn write_pair(
    dir: &Path,
    stem: &str,
    pair: &CertPair,
) -> Result<(PathBuf, PathBuf), CertFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| CertFileError::Io { action, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let (cert, key) = pair_paths(dir, stem);
    if key.exists() {
        return Err(CertFileError::KeyExists(key));
    }
    std::fs::write(&cert, &pair.cert_pem).map_err(io("writing", &cert))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .map_err(io("writing", &key))?;
    f.write_all(pair.key_pem.as_bytes()).map_err(io("writing", &key))?;
    Ok((cert, key))
}

/// Reads the pair `stem` written by [`write_pair`] from `dir`.
pub fn read_pair(dir: &Path, stem: &str) -> Result<CertPair, CertFileError> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| CertFileError::Io {
            action: "reading",
            path,
            source,
        })
    };
    let (cert, key) = pair_paths(dir, stem);
    Ok(CertPair { cert_pem: read(cert)?, key_pem: read(key)? })
}

/// DNS name in node `id`'s certificate, and the server name clients expect.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.predastore")
}

/// DNS name in a gateway's certificate.
pub fn gateway_name(name: &str) -> String {
    format!("gateway-{name}.predastore")
}

fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Predastore cluster CA");
    dn.push(DnType::OrganizationName, cluster_id);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A new CA for `cluster_id`.
pub fn new_ca(cluster_id: &str) -> Result<CertPair, CertError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(cluster_id).self_signed(&key)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a certificate for `role`, signed by `ca` of `cluster_id`.
pub fn issue(ca: &CertPair, cluster_id: &str, role: &Role) -> Result<CertPair, CertError> {
    let (name, usages) = match role {
        Role::Node(id) => (
            node_name(*id),
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        ),
        Role::Gateway(n) => {
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(CertError::BadName(n.clone()));
            }
            (gateway_name(n), vec![ExtendedKeyUsagePurpose::ClientAuth])
        }
    };
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = ca_params(cluster_id).self_signed(&ca_key)?;
    let mut p = CertificateParams::new(vec![name.clone()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, cluster_id);
    p.distinguished_name = dn;
    p.extended_key_usages = usages;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer, &ca_key)?;
    check_chain(&ca.cert_pem, cert.der().clone())
        .map_err(|reason| CertError::CaMismatch { cluster_id: cluster_id.to_string(), reason })?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Verifies `leaf` against the CA certificate in `ca_pem` as a peer would.
fn check_chain(ca_pem: &str, leaf: CertificateDer<'static>) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    verifier.verify_client_cert(&leaf, &[], UnixTime::now()).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certs_chain_to_their_ca_only() {
        let ca = new_ca("demo").unwrap();
        let node = issue(&ca, "demo", &Role::Node(3)).unwrap();
        assert!(node.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        issue(&ca, "demo", &Role::Gateway("gw-1".into())).unwrap();
        // A different cluster id rebuilds a different issuer name.
        assert!(matches!(issue(&ca, "other", &Role::Node(1)), Err(CertError::CaMismatch { .. })));
        // Another CA's key does not sign for this CA.
        let foreign = new_ca("demo").unwrap();
        let mixed = CertPair { cert_pem: ca.cert_pem.clone(), key_pem: foreign.key_pem };
        assert!(matches!(issue(&mixed, "demo", &Role::Node(1)), Err(CertError::CaMismatch { .. })));
        assert!(matches!(
            issue(&ca, "demo", &Role::Gateway("Bad Name".into())),
            Err(CertError::BadName(_))
        ));
    }

    #[test]
    fn pairs_round_trip_on_disk_and_keys_are_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tls");
        let ca = new_ca("demo").unwrap();
        let (crt, key) = write_pair(&out, "ca", &ca).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(crt).unwrap(), ca.cert_pem);
        let back = read_pair(&out, "ca").unwrap();
        assert_eq!(back.key_pem, ca.key_pem);
        let err = write_pair(&out, "ca", &new_ca("demo").unwrap()).unwrap_err();
        assert!(matches!(err, CertFileError::KeyExists(_)), "{err}");
        assert_eq!(read_pair(&out, "ca").unwrap().key_pem, ca.key_pem);
        let err = read_pair(&out, "node-9").unwrap_err();
        assert!(err.to_string().contains("node-9.crt"), "{err}");
    }
}
