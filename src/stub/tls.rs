//! The stub's optional TLS listener, so that HTTPS endpoints and their CA bundles can be
//! tested: a certificate chain and its private key, both from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// An acceptor presenting the chain in `certificate_file` (leaf first) with `key_file`.
pub fn acceptor(certificate_file: &Path, key_file: &Path) -> std::io::Result<TlsAcceptor> {
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(certificate_file)
        .and_then(|blocks| blocks.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(certificate_file, &e))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| invalid(key_file, &e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| invalid(certificate_file, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
