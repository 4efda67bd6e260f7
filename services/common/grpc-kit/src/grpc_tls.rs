//! TLS on the gRPC port, optional because a service mesh usually terminates it: the server's
//! certificate chain and key (`DW_GRPC_TLS_CERT_FILE`, `DW_GRPC_TLS_KEY_FILE`, PEM) and, with
//! `DW_GRPC_TLS_CLIENT_CA_FILE`, client certificates signed by that CA, required at the handshake
//! (mTLS): a client without one is refused before any RPC.
//!
//! Why not tonic's `Server::tls_config`: it builds its acceptor once, so a certificate that
//! cert-manager renews in the mounted Secret would be served only after a restart. Here the
//! handshake is done in the server's incoming stream, over the connection-age wrapper (so the age
//! limit still closes the socket, and the peer address still reaches [`crate::connection_age`]
//! through tonic's `TlsConnectInfo`), with a configuration that [`ServerTls::keep_fresh`] reads
//! again when the files change: new connections get the new certificate (and client CA), open
//! ones keep theirs until they reconnect (at the latest after the connection's max age).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, info, warn};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; further connections wait in the listen backlog.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// How often the files are read again for a renewed certificate.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The PEM files of the gRPC port's TLS (paths only: the key is read when loaded, never kept in
/// the configuration, so logging the configuration is safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcTlsError {
    #[error("{name} {path}: {reason}")]
    File { name: &'static str, path: PathBuf, reason: String },
    #[error("grpc tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("grpc tls client ca: {0}")]
    ClientCa(String),
}

fn file_error(name: &'static str, path: &Path, reason: impl ToString) -> GrpcTlsError {
    GrpcTlsError::File { name, path: path.to_owned(), reason: reason.to_string() }
}

/// The server side of the gRPC port's TLS: the current configuration, swapped when the files change.
pub struct ServerTls {
    files: GrpcTlsFiles,
    current: RwLock<Loaded>,
    handshake_failures: Family<FailureLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FailureLabels {
    /// `refused` (a TLS error: no or an untrusted client certificate, a plaintext client, …) or `timeout`.
    reason: &'static str,
}

#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// SHA-256 over the three files' bytes: whether they changed (the key's bytes are hashed,
    /// never logged).
    files_digest: [u8; 32],
    /// SHA-256 of the leaf certificate (public), logged so an operator sees which one is served.
    cert_fingerprint: String,
}

/// The files' bytes, read together so that a digest names one consistent state.
struct FileBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl FileBytes {
    fn read(files: &GrpcTlsFiles) -> Result<Self, GrpcTlsError> {
        let read = |name: &'static str, path: &Path| std::fs::read(path).map_err(|e| file_error(name, path, e));
        Ok(Self {
            cert: read("DW_GRPC_TLS_CERT_FILE", &files.cert_file)?,
            key: read("DW_GRPC_TLS_KEY_FILE", &files.key_file)?,
            client_ca: files
                .client_ca_file
                .as_deref()
                .map(|path| read("DW_GRPC_TLS_CLIENT_CA_FILE", path))
                .transpose()?,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()].into_iter().flatten() {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load(files: &GrpcTlsFiles, bytes: &FileBytes) -> Result<Loaded, GrpcTlsError> {
    let certs = CertificateDer::pem_slice_iter(&bytes.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("DW_GRPC_TLS_CERT_FILE", &files.cert_file, format!("not PEM certificates: {e}")))?;
    let Some(leaf) = certs.first() else {
        return Err(file_error("DW_GRPC_TLS_CERT_FILE", &files.cert_file, "holds no certificate"));
    };
    let cert_fingerprint = hex(&Sha256::digest(leaf.as_ref()));
    // The parser's error names the PEM section, never the key's bytes.
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|e| {
        file_error("DW_GRPC_TLS_KEY_FILE", &files.key_file, format!("no PKCS#8, PKCS#1 or SEC1 private key: {e}"))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match (&files.client_ca_file, &bytes.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    file_error("DW_GRPC_TLS_CLIENT_CA_FILE", path, format!("not PEM certificates: {e}"))
                })?;
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(file_error("DW_GRPC_TLS_CLIENT_CA_FILE", path, "holds no certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| GrpcTlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    // HTTP/1.1 too: gRPC-Web clients (browsers, crate::grpc_web) may not speak HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded { config: Arc::new(config), files_digest: bytes.digest(), cert_fingerprint })
}

impl ServerTls {
    /// Reads and checks the files now, so that a broken certificate stops the start.
    pub fn load(files: GrpcTlsFiles) -> Result<Self, GrpcTlsError> {
        let loaded = load(&files, &FileBytes::read(&files)?)?;
        info!(
            cert_file = %files.cert_file.display(),
            client_ca_file = ?files.client_ca_file,
            mtls = files.client_ca_file.is_some(),
            cert_sha256 = %loaded.cert_fingerprint,
            "grpc tls on"
        );
        Ok(Self { files, current: RwLock::new(loaded), handshake_failures: Family::default() })
    }

    /// Counts refused handshakes in `dw_grpc_tls_handshake_failures_total{reason}`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "dw_grpc_tls_handshake_failures",
            "TLS handshakes on the gRPC port that failed (refused: TLS error such as a missing or untrusted \
             client certificate; timeout)",
            self.handshake_failures.clone(),
        );
    }

    /// Whether clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    fn current(&self) -> Loaded {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the files again; swaps the configuration when they changed and are valid. Returns
    /// whether it swapped. A half-written or broken state keeps the served configuration.
    pub fn reload(&self) -> Result<bool, GrpcTlsError> {
        let bytes = FileBytes::read(&self.files)?;
        if bytes.digest() == self.current().files_digest {
            return Ok(false);
        }
        let loaded = load(&self.files, &bytes)?;
        info!(cert_sha256 = %loaded.cert_fingerprint, "grpc tls certificate reloaded");
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(true)
    }

    /// Re-reads the files every `interval` until `cancel` (cert-manager renews the Secret, the
    /// kubelet updates the mounted files within about a minute).
    pub async fn keep_fresh(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let tls = self.clone();
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => warn!(%error, "grpc tls files not reloaded, serving the loaded certificate"),
                Err(error) => warn!(%error, "grpc tls reload task failed"),
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().config)
    }
}

/// The TLS connections of `incoming`: each accepted connection's handshake runs concurrently with
/// the others (at most [`MAX_CONCURRENT_HANDSHAKES`], each within [`HANDSHAKE_TIMEOUT`]); one that
/// fails (a plaintext client, no or an untrusted client certificate) is closed, counted and logged
/// at debug level, and never ends the server's accept loop.
pub fn accept<S, IO>(incoming: S, tls: Arc<ServerTls>) -> impl Stream<Item = io::Result<TlsStream<IO>>>
where
    S: Stream<Item = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin + Connected<ConnectInfo = TcpConnectInfo>,
{
    incoming
        .map(move |accepted| handshake(accepted, tls.clone()))
        .buffer_unordered(MAX_CONCURRENT_HANDSHAKES)
        .filter_map(std::future::ready)
}

async fn handshake<IO>(accepted: io::Result<IO>, tls: Arc<ServerTls>) -> Option<io::Result<TlsStream<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Connected<ConnectInfo = TcpConnectInfo>,
{
    let io = match accepted {
        Ok(io) => io,
        Err(error) => return Some(Err(error)),
    };
    let peer = io.connect_info().remote_addr;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(io)).await {
        Ok(Ok(stream)) => Some(Ok(stream)),
        Ok(Err(error)) => {
            tls.handshake_failures.get_or_create(&FailureLabels { reason: "refused" }).inc();
            debug!(?peer, %error, "grpc tls handshake refused");
            None
        }
        Err(_) => {
            tls.handshake_failures.get_or_create(&FailureLabels { reason: "timeout" }).inc();
            debug!(?peer, "grpc tls handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    #[test]
    fn a_renewed_certificate_is_swapped_in_and_a_broken_one_keeps_the_served_one() {
        let dir = Dir(std::env::temp_dir().join(format!("dw-grpc-tls-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let (cert_file, key_file) = self_signed(&dir.0, "server");
        let files = GrpcTlsFiles { cert_file: cert_file.clone(), key_file: key_file.clone(), client_ca_file: None };
        let tls = ServerTls::load(files.clone()).unwrap();
        let first = tls.current().cert_fingerprint;
        assert!(!tls.reload().unwrap(), "unchanged files are not loaded again");

        // cert-manager renews: a new key pair in the same files.
        let (renewed_cert, renewed_key) = self_signed(&dir.0, "renewed");
        std::fs::copy(&renewed_cert, &cert_file).unwrap();
        std::fs::copy(&renewed_key, &key_file).unwrap();
        assert!(tls.reload().unwrap());
        let second = tls.current().cert_fingerprint;
        assert_ne!(first, second);

        // A half-written key: refused, the renewed certificate is still served.
        std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("DW_GRPC_TLS_KEY_FILE"), "{error}");
        assert_eq!(tls.current().cert_fingerprint, second);

        // A key file that is not a key stops the start, and says which variable.
        assert!(ServerTls::load(files).is_err());
        let no_cert = GrpcTlsFiles { cert_file: dir.0.join("missing.crt"), key_file, client_ca_file: None };
        let missing = ServerTls::load(no_cert).err().expect("a missing file is an error").to_string();
        assert!(missing.contains("DW_GRPC_TLS_CERT_FILE"), "{missing}");
    }
}
