//! TLS for inputs (the server side) and forward outputs (the client side),
//! with rustls and its `ring` provider.
//!
//! The option types live here, not in config: config resolves
//! `listener.json` into them and calls [`ServerTls::load`] /
//! [`ClientTls::load`] to check the files, so a missing, unreadable or
//! invalid file is a config error naming the file and the field at `check`,
//! start-up and reload alike.
//!
//! An input's certificate and key may be replaced on disk while it runs
//! (certbot, a secrets agent): [`LiveServerConfig`] looks at the files'
//! identity (inode, size, modification time) at each new connection and
//! loads them again when they changed. Open connections keep the session
//! they made; a replacement that does not load is logged and the previous
//! certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// `"tls"` of a tcp input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// `cert`: the certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// `key`: the certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `client_ca`: when given, every client must present a certificate
    /// signed by one of these CAs (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// `"tls"` of a forward output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// `ca`: the CA certificates the receiver's certificate must chain to.
    pub ca: PathBuf,
    /// `cert`: this sender's certificate chain, for a receiver with
    /// `client_ca` (give `key` too).
    pub cert: Option<PathBuf>,
    /// `key`: the private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name the receiver's certificate must carry (default: the host
    /// of the output's address).
    pub server_name: String,
}

/// A TLS file that could not be used: which field, which file, why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsError {
    /// The key under `"tls"` that names the file (`cert`, `key`, ...), or
    /// `""` when the files do not fit together.
    pub field: &'static str,
    /// What is wrong, naming the file.
    pub reason: String,
}

impl TlsError {
    fn new(field: &'static str, reason: impl Into<String>) -> TlsError {
        TlsError {
            field,
            reason: reason.into(),
        }
    }
}

/// The *ring* provider: pure Rust and assembly, no C build (aws-lc-rs,
/// rustls's default, needs one and doubles the build time on two cores).
/// rustls 0.23.48 deprecated it for lacking post-quantum key exchange
/// (X25519MLKEM768); the classical suites it offers are TLS 1.2/1.3's
/// standard ones. Switching is one line here.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|e| TlsError::new(field, format!("cannot read {}: {e}", path.display())))
}

/// Every certificate in a PEM file; at least one.
fn certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(field, format!("{}: not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            field,
            format!(
                "{} holds no certificate (a PEM block `-----BEGIN CERTIFICATE-----`)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn key(field: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError::new(
            field,
            format!(
                "{} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
                path.display()
            ),
        )
    })
}

fn roots(field: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(field, path)? {
        store.add(cert).map_err(|e| {
            TlsError::new(
                field,
                format!("{}: not a usable CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(Arc::new(store))
}

impl ServerTls {
    /// Load the files into a rustls server config.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = certs("cert", &self.cert)?;
        let key = key("key", &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("", e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    roots("client_ca", ca)?,
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::new("client_ca", format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError::new(
                "key",
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    self.key.display(),
                    self.cert.display()
                ),
            )
        })?;
        // No TLS 1.3 session tickets. A SocketHandler never reads its
        // socket, so tickets sent after the handshake would sit unread in
        // its receive buffer, and closing a socket with unread data sends
        // a reset, which makes this host's kernel discard the records
        // still queued for logrelay: the last records of every connection
        // would be lost. Log senders reconnect rarely; resumption buys
        // nothing.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

impl ClientTls {
    /// Load the files into a rustls client config.
    pub fn load(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let roots = roots("ca", &self.ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("", e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key_path)) => {
                let chain = certs("cert", cert)?;
                let key = key("key", key_path)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TlsError::new(
                        "key",
                        format!(
                            "{} does not fit the certificate in {}: {e}",
                            key_path.display(),
                            cert.display()
                        ),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(TlsError::new("key", "`cert` needs `key`")),
            (None, Some(_)) => return Err(TlsError::new("cert", "`key` needs `cert`")),
        };
        Ok(Arc::new(config))
    }

    /// The name to verify the receiver's certificate against.
    pub fn server_name(&self) -> Result<ServerName<'static>, TlsError> {
        ServerName::try_from(self.server_name.clone()).map_err(|e| {
            TlsError::new(
                "server_name",
                format!(
                    "{:?} is not a DNS name or IP address: {e}",
                    self.server_name
                ),
            )
        })
    }
}

/// What identifies a file's content without reading it.
type Stamp = Vec<Option<(u64, u64, std::time::SystemTime)>>;

fn stamp<'a>(files: impl Iterator<Item = &'a Path>) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    files
        .map(|f| {
            std::fs::metadata(f).ok().map(|m| {
                (
                    m.ino(),
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                )
            })
        })
        .collect()
}

/// An input's server config, loaded again when its files change on disk.
pub struct LiveServerConfig {
    files: ServerTls,
    state: Mutex<(Stamp, Arc<ServerConfig>)>,
}

impl LiveServerConfig {
    /// Load the files now.
    pub fn new(files: ServerTls) -> Result<LiveServerConfig, TlsError> {
        let stamp = stamp(files.files());
        let config = files.load()?;
        Ok(LiveServerConfig {
            files,
            state: Mutex::new((stamp, config)),
        })
    }

    /// The config for a new connection: the files as they are now, or the
    /// last ones that loaded if they changed into something unusable.
    pub fn current(&self, input: &str) -> Arc<ServerConfig> {
        let now = stamp(self.files.files());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.0 {
            state.0 = now;
            match self.files.load() {
                Ok(config) => {
                    tracing::info!(
                        input,
                        "TLS certificate files changed: loaded them for new connections."
                    );
                    state.1 = config;
                }
                Err(e) => tracing::error!(
                    input,
                    error = %e,
                    "TLS certificate files changed but do not load; new connections keep the previous certificate."
                ),
            }
        }
        state.1.clone()
    }
}

/// Whether `host` (of a `host:port`) is a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "[::1]", "127.1.2.3"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["0.0.0.0", "[::]", "10.0.0.1", "logs.internal"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn missing_and_invalid_files_name_the_field_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let t = ServerTls {
            cert: dir.path().join("nope.pem"),
            key: junk.clone(),
            client_ca: None,
        };
        let e = t.load().unwrap_err();
        assert_eq!(e.field, "cert");
        assert!(
            e.reason.contains("nope.pem") && e.reason.contains("cannot read"),
            "{e}"
        );
        let t = ServerTls {
            cert: junk.clone(),
            key: junk.clone(),
            client_ca: None,
        };
        let e = t.load().unwrap_err();
        assert_eq!(e.field, "cert");
        assert!(e.reason.contains("holds no certificate"), "{e}");
        let c = ClientTls {
            ca: junk,
            cert: None,
            key: None,
            server_name: "x".into(),
        };
        assert_eq!(c.load().unwrap_err().field, "ca");
    }
}
