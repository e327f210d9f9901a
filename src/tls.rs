//! HTTPS on the ingress listener (`server.tls`): rustls with a PEM certificate chain and key.
//!
//! A sender's hook URL is on the public internet and carries a token, so the relay can terminate
//! TLS itself (TLS 1.2 and 1.3 only, the `ring` provider). The certificate lives behind a
//! [`Certificates`] resolver that every worker shares: a reload that reads new files swaps it in
//! place, so a renewed certificate reaches new connections while open ones go on undisturbed.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::secret::Secret;
use crate::settings::TlsSettings;

/// Why a certificate and key cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: {reason}")]
    Unreadable { key: &'static str, reason: String },
    #[error("cert: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("cert: not a PEM certificate chain: {}", describe_pem(.0))]
    BadCertificate(rustls::pki_types::pem::Error),
    #[error("key: no PEM private key found (PKCS#8, PKCS#1 or SEC1): {}", describe_pem(.0))]
    BadKey(rustls::pki_types::pem::Error),
    #[error("key: the private key is encrypted; give it unencrypted (openssl pkey -in KEY -out KEY.pem) and keep the file readable by the relay only")]
    EncryptedKey,
    #[error("the private key does not belong to the certificate (or is of a kind rustls cannot sign with): {0}")]
    Mismatch(rustls::Error),
}

/// Reads and checks `server.tls`: the chain parses, the key parses, and the key is the
/// certificate's. What `check-config`, the start and every reload run.
pub fn load(settings: &TlsSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |key: &'static str, reference: &str| {
        Secret::resolve(reference).map_err(|reason| TlsError::Unreadable { key, reason })
    };
    let cert = read("cert", &settings.cert)?;
    let key = read("key", &settings.key)?;
    let chain = CertificateDer::pem_slice_iter(cert.expose())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::BadCertificate)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    if key.expose().windows(9).any(|window| window == b"ENCRYPTED") {
        return Err(TlsError::EncryptedKey);
    }
    // The first key in the file is the one (a file should hold one).
    let key = PrivateKeyDer::from_pem_slice(key.expose()).map_err(TlsError::BadKey)?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(TlsError::Mismatch)
}

/// When the leaf certificate stops being valid (Unix seconds); `None` when it cannot be read.
pub fn expires_at(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

/// Sets the expiry gauge for `key` and logs a renewal reminder when it is due.
pub fn watch_expiry(key: &CertifiedKey, gauge: &prometheus::IntGauge) {
    match expires_at(key) {
        Some(expiry) => {
            gauge.set(expiry);
            if let Some(warning) = expiry_warning(expiry, std::time::SystemTime::now()) {
                tracing::warn!("server.tls: {warning}");
            }
        }
        None => tracing::warn!("server.tls: cannot read the certificate's expiry date"),
    }
}

/// A renewal reminder for a certificate that expires within 14 days, or has expired.
pub fn expiry_warning(expires_at: i64, now: std::time::SystemTime) -> Option<String> {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    let left = expires_at - now;
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires_at.max(0) as u64),
    );
    if left <= 0 {
        Some(format!(
            "the certificate expired at {date}: senders refuse to connect; renew it and reload"
        ))
    } else if left < 14 * 86_400 {
        Some(format!(
            "the certificate expires at {date}, in {} days: renew it and reload",
            left / 86_400
        ))
    } else {
        None
    }
}

/// A PEM parse error in words (its own text shows section markers as byte arrays).
fn describe_pem(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no end marker ({})",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "a malformed section start ({})",
            String::from_utf8_lossy(line)
        ),
        Error::NoItemsFound => "no PEM section in the file".to_owned(),
        other => other.to_string(),
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate the ingress serves, replaceable while it serves.
#[derive(Debug)]
pub struct Certificates(ArcSwap<CertifiedKey>);

impl Certificates {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self(ArcSwap::new(key)))
    }

    /// New connections get `key` from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.0.store(key);
    }

    /// The rustls configuration of the ingress: TLS 1.2 and 1.3, no client certificates, the
    /// certificate from `self` (actix-http adds the `http/1.1` ALPN protocol).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        Ok(
            rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        _dir: tempfile::TempDir,
        settings: TlsSettings,
    }

    fn write(cert: &str, key: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        Files {
            settings: TlsSettings {
                cert: format!("file:{}", cert_path.display()),
                key: format!("file:{}", key_path.display()),
            },
            _dir: dir,
        }
    }

    fn generated() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
    }

    #[test]
    fn a_generated_certificate_and_its_key_load() {
        let pair = generated();
        let files = write(&pair.cert.pem(), &pair.signing_key.serialize_pem());
        let key = load(&files.settings).unwrap();
        assert_eq!(key.cert.len(), 1);
        assert_eq!(key.cert[0].as_ref(), pair.cert.der().as_ref());
    }

    #[test]
    fn the_expiry_is_read_from_the_leaf_and_warned_about_two_weeks_ahead() {
        let pair = generated();
        let files = write(&pair.cert.pem(), &pair.signing_key.serialize_pem());
        let key = load(&files.settings).unwrap();
        // rcgen's default validity ends on 4096-01-01.
        assert_eq!(expires_at(&key), Some(67_090_118_400));
        let day = std::time::Duration::from_secs(86_400);
        let expiry = 1_800_000_000;
        let at = |seconds: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        assert_eq!(expiry_warning(expiry, at(expiry as u64) - day * 15), None);
        let soon = expiry_warning(expiry, at(expiry as u64) - day * 3).unwrap();
        assert!(soon.contains("2027-01-15T08:00:00Z, in 3 days"), "{soon}");
        let past = expiry_warning(expiry, at(expiry as u64) + day).unwrap();
        assert!(
            past.starts_with("the certificate expired at 2027-01-15T08:00:00Z"),
            "{past}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (one, other) = (generated(), generated());
        let files = write(&one.cert.pem(), &other.signing_key.serialize_pem());
        let error = load(&files.settings).unwrap_err();
        assert!(matches!(error, TlsError::Mismatch(_)), "{error}");
    }

    #[test]
    fn files_without_pem_blocks_are_refused_by_name() {
        let pair = generated();
        let files = write("not a certificate", &pair.signing_key.serialize_pem());
        assert!(matches!(
            load(&files.settings).unwrap_err(),
            TlsError::NoCertificate
        ));
        let files = write(&pair.cert.pem(), "not a key");
        let error = load(&files.settings).unwrap_err().to_string();
        assert!(error.starts_with("key: no PEM private key"), "{error}");
    }

    #[test]
    fn an_encrypted_key_is_named_as_such() {
        let pair = generated();
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let files = write(&pair.cert.pem(), encrypted);
        assert!(matches!(
            load(&files.settings).unwrap_err(),
            TlsError::EncryptedKey
        ));
    }

    #[test]
    fn a_cut_certificate_is_described_in_words() {
        let pair = generated();
        let pem = pair.cert.pem();
        let files = write(&pem[..pem.len() / 2], &pair.signing_key.serialize_pem());
        let error = load(&files.settings).unwrap_err().to_string();
        assert_eq!(
            error,
            "cert: not a PEM certificate chain: a section has no end marker (CERTIFICATE)"
        );
    }

    #[test]
    fn an_unreadable_file_names_the_key_and_the_path() {
        let settings = TlsSettings {
            cert: "file:/nonexistent/cert.pem".to_owned(),
            key: "file:/nonexistent/key.pem".to_owned(),
        };
        let error = load(&settings).unwrap_err().to_string();
        assert!(
            error.starts_with("cert: cannot read secret file /nonexistent/cert.pem"),
            "{error}"
        );
    }
}
