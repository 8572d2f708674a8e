//! The TLS configuration of the HTTP clients. It verifies certificates against the system's roots plus
//! the CA certificates of a cert dir, but reads the system's roots (about 300 files under
//! `/etc/ssl/certs`) only on the first handshake that needs them: building reqwest's own verifier reads
//! them up front, which cost a `kiln promote` against a plain-HTTP loopback registry more than all of its
//! requests together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::ClientError;

/// What a cert dir holds: CA certificates (`*.crt`) and a client certificate (`*.cert` + `*.key`).
#[derive(Default)]
pub(crate) struct CertDir {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl CertDir {
    /// Adds what `dir` holds; a missing folder adds nothing.
    pub(crate) fn add(&mut self, dir: &Path) -> Result<(), ClientError> {
        let entries = match fs_err::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ClientError::Config {
                    path: dir.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let bad = |path: &Path, reason: String| ClientError::Config {
            path: path.to_owned(),
            reason,
        };
        for path in &files {
            match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "crt" => {
                    let pem = fs_err::read(path)?;
                    let certs = certificates(&pem).map_err(|e| bad(path, e))?;
                    self.roots.extend(certs);
                }
                "cert" => {
                    let key_path = path.with_extension("key");
                    let chain = certificates(&fs_err::read(path)?).map_err(|e| bad(path, e))?;
                    let key_pem = fs_err::read(&key_path).map_err(|e| {
                        bad(
                            path,
                            format!("client certificate without its key {}: {e}", key_path.display()),
                        )
                    })?;
                    let key = PrivateKeyDer::from_pem_slice(&key_pem)
                        .map_err(|e| bad(&key_path, format!("not a PEM private key: {e}")))?;
                    self.identity = Some((chain, key));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The rustls configuration: `verify` false accepts any certificate (`--insecure`).
    pub(crate) fn client_config(self, verify: bool) -> Result<rustls::ClientConfig, ClientError> {
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(LazyVerifier {
            provider: provider.clone(),
            roots: self.roots,
            verify,
            system: OnceLock::new(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(&e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn config_error(e: &rustls::Error) -> ClientError {
    ClientError::Config {
        path: PathBuf::from("TLS"),
        reason: e.to_string(),
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".to_owned());
    }
    Ok(certs)
}

/// Verifies against the system's roots and `roots`, built on first use; or accepts everything.
#[derive(Debug)]
struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    roots: Vec<CertificateDer<'static>>,
    verify: bool,
    system: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error>>,
}

impl LazyVerifier {
    fn inner(&self) -> Result<&Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
        self.system
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new_with_extra_roots(
                    self.roots.iter().cloned(),
                    self.provider.clone(),
                )
                .map(Arc::new)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl LazyVerifier {
    /// A handshake signature, checked with the provider's algorithms (needs no roots).
    fn signature(
        &self,
        check: impl FnOnce(
            &rustls::crypto::WebPkiSupportedAlgorithms,
        ) -> Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verify {
            check(&self.provider.signature_verification_algorithms)
        } else {
            Ok(HandshakeSignatureValid::assertion())
        }
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.verify {
            return Ok(ServerCertVerified::assertion());
        }
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(|algorithms| rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(|algorithms| rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
