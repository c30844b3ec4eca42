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
}
