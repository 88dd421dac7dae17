//! A PEM file of certificate authorities to trust for one destination's HTTPS endpoint, such
//! as a private endpoint behind a company's own CA. The file is read and every certificate in
//! it parsed here, so that `check` and start-up name the file and the block that is wrong,
//! instead of the first request failing its TLS handshake.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The checked contents of a CA bundle file.
#[derive(Clone, Debug)]
pub struct CaBundle {
    certificates: Vec<CertificateDer<'static>>,
}

impl CaBundle {
    /// The certificates, in the file's order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CA bundle {}: {message}", path.display())]
pub struct CaBundleError {
    pub path: PathBuf,
    pub message: String,
}

/// Reads the file at `path` and checks that it holds at least one certificate and nothing
/// that fails to parse as one.
pub fn read_ca_bundle(path: &Path) -> Result<CaBundle, CaBundleError> {
    let error = |message: String| CaBundleError {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;

    let mut roots = RootCertStore::empty();
    let mut certificates = Vec::new();
    for (index, block) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let certificate =
            block.map_err(|e| error(format!("certificate {} is not valid PEM: {e}", index + 1)))?;
        roots.add(certificate.clone()).map_err(|e| {
            error(format!(
                "certificate {} cannot be used as a trust anchor: {e}",
                index + 1
            ))
        })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(error(
            "holds no certificate; expected PEM blocks starting with \
             -----BEGIN CERTIFICATE-----"
                .to_owned(),
        ));
    }
    Ok(CaBundle { certificates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ca-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_missing_file_is_named() {
        let path = Path::new("/nonexistent/ca.pem");
        let e = read_ca_bundle(path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("CA bundle /nonexistent/ca.pem: cannot be read")
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = write("empty.pem", "just some text\n");
        let e = read_ca_bundle(&path).unwrap_err();
        assert!(e.message.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn a_block_that_is_not_a_certificate_is_refused() {
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n\
                       -----END CERTIFICATE-----\n";
        let path = write("garbage.pem", garbage);
        let e = read_ca_bundle(&path).unwrap_err();
        assert!(e.message.contains("certificate 1 cannot be used"), "{e}");
    }

    #[test]
    fn broken_base64_is_refused() {
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let path = write("broken.pem", broken);
        let e = read_ca_bundle(&path).unwrap_err();
        assert!(e.message.contains("certificate 1 is not valid PEM"), "{e}");
    }
}
