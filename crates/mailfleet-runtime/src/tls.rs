//! TLS for the protocol listeners (SMTP STARTTLS/465, IMAP 993/STARTTLS,
//! POP3 995/STLS): a rustls server configuration read from PEM files and
//! reloaded when the files change, so a rotated Kubernetes secret takes
//! effect without a restart. New handshakes use the newest good
//! configuration; a broken file is logged and the previous one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("invalid TLS certificate or key: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Installs the process-wide rustls crypto provider (ring). Dependencies
/// enable both ring and aws-lc-rs, so rustls cannot pick one by itself and
/// would panic at the first handshake. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The current TLS configuration of a service, shared by its listeners.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// The served certificate's notAfter (Unix seconds), kept current across
    /// reloads; services export it as `…_tls_cert_expiry_timestamp_seconds`.
    expiry: Gauge,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Tls {
    /// Reads the configured files; `Ok(None)` when TLS is not configured.
    pub fn from_config(config: &crate::Config) -> Result<Option<Self>, TlsError> {
        if config.tls_cert.is_empty() && config.tls_key.is_empty() {
            return Ok(None);
        }
        let (cert, key) = (Path::new(&config.tls_cert), Path::new(&config.tls_key));
        if config.tls_self_signed && !(cert.exists() && key.exists()) {
            // A laptop stack's first start: no key ships with the code.
            let mut names = vec![config.hostname.as_str(), "localhost", "127.0.0.1"];
            names.dedup();
            write_self_signed(cert, key, &names)?;
            tracing::warn!(cert = %cert.display(), "Wrote a self-signed TLS certificate (MAILFLEET_TLS_SELF_SIGNED).");
        }
        Self::load(cert, key).map(Some)
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        install_crypto_provider();
        let (config, not_after) = read_config(cert, key)?;
        let expiry = Gauge::default();
        expiry.set(not_after);
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(config))),
            expiry,
        })
    }

    /// The gauge holding the served certificate's expiry time (Unix
    /// seconds); a service registers it under its own metric prefix.
    pub fn expiry_gauge(&self) -> Gauge {
        self.expiry.clone()
    }

    /// An acceptor with the newest configuration, for one handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Re-reads the files now; on error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (config, not_after) = read_config(&self.cert, &self.key)?;
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
        self.expiry.set(not_after);
        Ok(())
    }

    /// Watches the files' modification times and reloads when they change,
    /// until `shutdown`.
    pub fn spawn_reloader(&self, every: Duration, shutdown: CancellationToken) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut seen = tls.stamp();
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = tls.stamp();
                if now != seen {
                    match tls.reload() {
                        Ok(()) => {
                            tracing::info!(cert = %tls.cert.display(), "Reloaded the TLS certificate.");
                            seen = now;
                        }
                        Err(error) => {
                            // A half-written secret is retried at the next tick.
                            tracing::warn!(%error, "Failed to reload the TLS certificate; keeping the previous one.");
                        }
                    }
                }
            }
        });
    }

    fn stamp(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (m(&self.cert), m(&self.key))
    }
}

/// The configuration and the leaf certificate's notAfter in Unix seconds.
fn read_config(cert: &Path, key: &Path) -> Result<(ServerConfig, i64), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    // The first certificate of the file is the one served (the leaf).
    let not_after = chain
        .first()
        .ok_or_else(|| TlsError::Cert {
            path: cert.to_owned(),
            reason: "no certificate in the file".into(),
        })
        .and_then(|leaf| {
            not_after(leaf).map_err(|reason| TlsError::Cert {
                path: cert.to_owned(),
                reason,
            })
        })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    // TLS 1.2 and 1.3 only (the rustls defaults).
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok((config, not_after))
}

/// The notAfter time of a DER certificate, in Unix seconds.
fn not_after(der: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Writes a self-signed certificate and key for `names` into `dir` (for
/// `mailfleet dev`, `mailfleet tls self-signed` and tests), returning (cert
/// path, key path). Existing files are reused. The key is readable by its
/// owner only, and each file appears whole (written aside, then renamed), so
/// a service starting meanwhile never reads half a key.
pub fn ensure_self_signed(dir: &Path, names: &[&str]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !(cert_path.exists() && key_path.exists()) {
        write_self_signed(&cert_path, &key_path, names)?;
    }
    Ok((cert_path, key_path))
}

/// Writes a new self-signed certificate for `names` and its key.
fn write_self_signed(cert_path: &Path, key_path: &Path, names: &[&str]) -> Result<(), TlsError> {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, data: String, private: bool| {
        let tmp = path.with_extension("pem.tmp");
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                if private {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                #[cfg(not(unix))]
                let _ = private;
                let mut file = options.open(&tmp)?;
                std::io::Write::write_all(&mut file, data.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&tmp, path)
            });
        written.map_err(|e| TlsError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    };
    write(key_path, certified.signing_key.serialize_pem(), true)?;
    write(cert_path, certified.cert.pem(), false)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration that encrypts without authenticating the server
/// (opportunistic STARTTLS to remote MX hosts, RFC 7435; load tools against
/// self-signed test stacks). The certificate chain is not checked, but the
/// handshake signatures are, so the session is still bound to whoever holds
/// the presented key.
pub fn unauthenticated_client_config() -> Arc<ClientConfig> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider supports the default versions; fall back to an
        // empty root store (verification then fails and we retry later)
        // rather than panic.
        Err(_) => Arc::new(
            ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 12: no key ships with the code; with
    /// `tls_self_signed` a service writes its pair at first start (the key
    /// readable by its owner only) and keeps it afterwards; without it,
    /// missing files are an error as before.
    #[test]
    fn missing_files_are_written_only_when_self_signing_is_asked_for() {
        let dir = std::env::temp_dir().join(format!("mf-tls-gen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        let mut config = crate::Config::load(Vec::new()).unwrap();
        config.tls_cert = cert.display().to_string();
        config.tls_key = key.display().to_string();
        assert!(
            Tls::from_config(&config).is_err(),
            "missing files, no self-signing"
        );
        assert!(!cert.exists() && !key.exists());
        config.tls_self_signed = true;
        assert!(Tls::from_config(&config).unwrap().is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
        }
        let first = std::fs::read(&cert).unwrap();
        assert!(Tls::from_config(&config).unwrap().is_some());
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            first,
            "kept, not written again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn self_signed_material_loads_and_reloads() {
        let dir = std::env::temp_dir().join(format!("mf-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = ensure_self_signed(&dir, &["localhost", "127.0.0.1"]).unwrap();
        let tls = Tls::load(&cert, &key).unwrap();
        let _ = tls.acceptor();
        // rcgen's default validity ends in 4096; the gauge holds the leaf's
        // notAfter in Unix seconds.
        let expiry = tls.expiry_gauge().get();
        assert_eq!(expiry, 67_090_118_400, "notAfter 4096-01-01T00:00:00Z");
        // A reload with a certificate that expires sooner moves the gauge.
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 6, 1);
        let signing_key = rcgen::KeyPair::generate().unwrap();
        let short = params.self_signed(&signing_key).unwrap();
        std::fs::write(&cert, short.pem()).unwrap();
        std::fs::write(&key, signing_key.serialize_pem()).unwrap();
        tls.reload().unwrap();
        assert_eq!(
            tls.expiry_gauge().get(),
            1_906_502_400,
            "notAfter 2030-06-01T00:00:00Z"
        );
        // A broken file is refused and the old configuration stays.
        std::fs::write(&cert, "garbage").unwrap();
        assert!(tls.reload().is_err());
        let _ = tls.acceptor();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            Tls::load(&cert, &key).is_err(),
            "missing files are an error"
        );
    }
}
