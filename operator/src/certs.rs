//! Cluster TLS material in the `<name>-tls` Secret: the cluster CA and a
//! certificate per node and for the gateways, for mutual TLS on QUIC
//! (DESIGN §5). Certificates are made by `predastore_core::certs`, the same
//! code behind `predastore-node certs`, so their names are the ones the
//! nodes and the shard client verify (`node-<id>.predastore`).
//!
//! The only impure part of building a cluster (fresh keys are random), so
//! it is kept apart: [`ensure`] takes what the Secret already holds, keeps
//! every certificate that is there and issues only the missing ones, so
//! scaling 3 → 5 adds `node-3` and `node-4` signed by the same CA and
//! leaves the rest alone. The builders take the result as an input and
//! stay pure. Certificates carry rcgen's default validity; rotation is not
//! built yet (noted in the README's open items).

use std::collections::BTreeMap;

use predastore_core::certs::{self as pki, CertPair, Role};

use crate::names::Names;

/// Secret key of the CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// Secret key of the CA private key (never mounted into pods).
pub const CA_KEY: &str = "ca.key";
/// Secret key of the gateway certificate.
pub const GATEWAY_CERT: &str = "gateway.crt";
/// Secret key of the gateway private key.
pub const GATEWAY_KEY: &str = "gateway.key";
/// Name in the gateways' certificate (`gateway-gateway.predastore`); every
/// gateway replica shares it.
pub const GATEWAY_NAME: &str = "gateway";

/// Secret key of node `id`'s certificate.
pub fn node_cert(id: u64) -> String {
    format!("node-{id}.crt")
}

/// Secret key of node `id`'s private key.
pub fn node_key(id: u64) -> String {
    format!("node-{id}.key")
}

/// PEM texts of the `<name>-tls` Secret, by Secret key.
pub type TlsMaterial = BTreeMap<String, String>;

/// Why TLS material could not be produced.
pub type CertError = pki::CertError;

/// The TLS material for `members` nodes: everything in `existing` that is
/// still wanted, plus freshly issued certificates for what is missing.
pub fn ensure(
    existing: &TlsMaterial,
    names: &Names,
    members: usize,
) -> Result<TlsMaterial, CertError> {
    let cluster_id = names.cluster_id();
    let ca = match (existing.get(CA_CERT), existing.get(CA_KEY)) {
        (Some(cert), Some(key)) => CertPair { cert_pem: cert.clone(), key_pem: key.clone() },
        _ => pki::new_ca(&cluster_id)?,
    };
    let mut out = TlsMaterial::new();
    out.insert(CA_CERT.into(), ca.cert_pem.clone());
    out.insert(CA_KEY.into(), ca.key_pem.clone());
    let mut leaf = |cert_key: String, key_key: String, role: Role| {
        let pair = match (existing.get(&cert_key), existing.get(&key_key)) {
            (Some(c), Some(k)) => CertPair { cert_pem: c.clone(), key_pem: k.clone() },
            _ => pki::issue(&ca, &cluster_id, &role)?,
        };
        out.insert(cert_key, pair.cert_pem);
        out.insert(key_key, pair.key_pem);
        Ok::<(), CertError>(())
    };
    for id in 0..members as u64 {
        leaf(node_cert(id), node_key(id), Role::Node(id))?;
    }
    leaf(GATEWAY_CERT.into(), GATEWAY_KEY.into(), Role::Gateway(GATEWAY_NAME.into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { cluster: "demo".into(), namespace: "ns".into() }
    }

    #[test]
    fn issues_missing_and_keeps_existing() {
        let three = ensure(&TlsMaterial::new(), &names(), 3).unwrap();
        assert!(three.contains_key("node-2.crt") && !three.contains_key("node-3.crt"));
        let five = ensure(&three, &names(), 5).unwrap();
        for k in [CA_CERT, CA_KEY, "node-0.crt", "node-2.key", GATEWAY_CERT] {
            assert_eq!(three[k], five[k], "{k} must be kept");
        }
        assert!(five["node-4.crt"].starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(ensure(&five, &names(), 5).unwrap(), five, "nothing new when complete");
    }

    #[test]
    fn new_node_cert_is_signed_by_the_stored_ca() {
        let three = ensure(&TlsMaterial::new(), &names(), 3).unwrap();
        let five = ensure(&three, &names(), 5).unwrap();
        // Verify with rustls/webpki: node-4 chains to the CA made first.
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let ca = CertificateDer::from_pem_slice(three[CA_CERT].as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(five["node-4.crt"].as_bytes()).unwrap();
        let name = ServerName::try_from(predastore_core::certs::node_name(4)).unwrap();
        verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).unwrap();
    }
}
