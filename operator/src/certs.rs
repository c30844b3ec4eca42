//! Cluster TLS material: a CA per cluster and a certificate per node and
//! for the gateways, all for mutual TLS on QUIC (DESIGN §5).
//!
//! The only impure part of building a cluster (fresh keys are random), so
//! it is kept apart: [`ensure`] takes what the `<name>-tls` Secret already
//! holds, keeps every certificate that is there and issues only the
//! missing ones, so scaling 3 → 5 adds `node-3` and `node-4` signed by the
//! same CA and leaves the rest alone. The builders take the result as an
//! input and stay pure. Certificates carry rcgen's default validity;
//! rotation is not implemented yet.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::names::Names;

/// Secret key of the CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// Secret key of the CA private key (never mounted into pods).
pub const CA_KEY: &str = "ca.key";
/// Secret key of the gateway certificate.
pub const GATEWAY_CERT: &str = "gateway.crt";
/// Secret key of the gateway private key.
pub const GATEWAY_KEY: &str = "gateway.key";

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
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (bad key in the Secret, or a generation failure).
    #[error("certificate {what}: {source}")]
    Rcgen {
        /// Which certificate or key.
        what: String,
        /// The rcgen error.
        source: rcgen::Error,
    },
}

fn err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Rcgen { what, source }
}

fn ca_params(names: &Names) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err("CA parameters"))?;
    p.distinguished_name
        .push(DnType::CommonName, format!("predastore {}/{} CA", names.namespace, names.cluster));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

/// The TLS material for `members` nodes: everything in `existing` that is
/// still wanted, plus freshly issued certificates for what is missing.
pub fn ensure(existing: &TlsMaterial, names: &Names, members: usize) -> Result<TlsMaterial, CertError> {
    let mut out = TlsMaterial::new();
    let (ca_key, ca_cert_pem) = match (existing.get(CA_KEY), existing.get(CA_CERT)) {
        (Some(k), Some(c)) => (KeyPair::from_pem(k).map_err(err("CA key in the Secret"))?, c.clone()),
        _ => {
            let key = KeyPair::generate().map_err(err("CA key"))?;
            let cert = ca_params(names)?.self_signed(&key).map_err(err("CA"))?;
            (key, cert.pem())
        }
    };
    // Same subject, key usages and key as the stored CA: signatures made by
    // this issuer verify against the stored CA certificate.
    let issuer = ca_params(names)?.self_signed(&ca_key).map_err(err("CA issuer"))?;
    out.insert(CA_KEY.into(), ca_key.serialize_pem());
    out.insert(CA_CERT.into(), ca_cert_pem);

    let mut leaf = |cert_key: String, key_key: String, cn: String, sans: Vec<String>| {
        if let (Some(c), Some(k)) = (existing.get(&cert_key), existing.get(&key_key)) {
            out.insert(cert_key, c.clone());
            out.insert(key_key, k.clone());
            return Ok(());
        }
        let mut p = CertificateParams::new(sans).map_err(err(cn.clone()))?;
        p.distinguished_name.push(DnType::CommonName, cn.clone());
        p.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(err(cn.clone()))?;
        let cert = p.signed_by(&key, &issuer, &ca_key).map_err(err(cn))?;
        out.insert(cert_key, cert.pem());
        out.insert(key_key, key.serialize_pem());
        Ok::<(), CertError>(())
    };

    for id in 0..members as u64 {
        let pod = format!("{}-{id}", names.nodes());
        let host = names.node_host(id);
        leaf(
            node_cert(id),
            node_key(id),
            format!("predastore node {id}"),
            vec![
                host.clone(),
                format!("{host}.cluster.local"),
                format!("{pod}.{}", names.nodes_service()),
                pod,
            ],
        )?;
    }
    leaf(
        GATEWAY_CERT.into(),
        GATEWAY_KEY.into(),
        "predastore gateway".into(),
        vec![names.gateway(), format!("{}.{}.svc", names.s3_service(), names.namespace)],
    )?;
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
        let name = ServerName::try_from(names().node_host(4)).unwrap();
        verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).unwrap();
    }
}
