//! TLS for `kiln serve`: a rustls server config from PEM files, and a self-signed CA and server certificate
//! for a short-lived buildset registry ([`crate::serve`] does the handshakes).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written (fs-err names it).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("certificate {cert} with key {key}: {reason}")]
    Config {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// Why.
        reason: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// A server config from a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE block".to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| TlsError::Config {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The files of a self-signed setup.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate clients must trust (`ca.crt`: skopeo's and podman's `--cert-dir` take the folder).
    pub ca: PathBuf,
    /// The server certificate chain.
    pub cert: PathBuf,
    /// The server key (mode 0600).
    pub key: PathBuf,
    /// Whether they were generated now (false: reused from an earlier start).
    pub generated: bool,
}

/// Makes (or reuses, when all three files exist) a CA and a server certificate for `names` (DNS names or
/// IP addresses) in `dir`: `ca.crt`, `server-cert.pem`, `server-key.pem`. The CA's key is not kept: it
/// signs this one certificate and is gone, so nothing else can be signed with it.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    let files = SelfSigned {
        ca: dir.join("ca.crt"),
        cert: dir.join("server-cert.pem"),
        key: dir.join("server-key.pem"),
        generated: false,
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kiln registry CA (self-signed)");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(365);
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().map_or("kiln", String::as_str),
    );
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;

    fs_err::create_dir_all(dir)?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    fs_err::write(&files.cert, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    fs_err::write(&files.ca, ca_cert.pem())?;
    Ok(SelfSigned {
        generated: true,
        ..files
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use io::Write as _;
    let _ignored = fs_err::remove_file(path);
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_files_make_a_server_config_and_are_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = self_signed(dir.path(), &names).unwrap();
        assert!(first.generated);
        assert_eq!(
            std::fs::metadata(&first.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(&first.cert, &first.key).unwrap();
        let ca = std::fs::read(&first.ca).unwrap();
        let again = self_signed(dir.path(), &names).unwrap();
        assert!(!again.generated);
        assert_eq!(std::fs::read(&again.ca).unwrap(), ca);
        // A key file that is not PEM is named in the error.
        let e = server_config(&first.cert, &first.ca).unwrap_err().to_string();
        assert!(e.contains("ca.crt"), "{e}");
    }
}
