//! TLS for the HTTP listener, with rustls (no OpenSSL): TLS 1.2 and 1.3 only, the certificate
//! chain, its key and the client CA read from PEM files. Everything read from a file can be
//! read again while the proxy runs (`Tls::reload`, on SIGHUP): a renewed certificate
//! (cert-manager, Let's Encrypt) is served to the next handshake without a restart, and a file
//! that fails to load changes nothing. Handshakes read the current certificate through a lock
//! held only to clone an `Arc`, never across an await.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::TlsSettings;

/// Where the listener's TLS material is (`[tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

impl TlsFiles {
    /// The files `[tls]` names.
    pub fn of(settings: &TlsSettings) -> Self {
        Self {
            cert_file: settings.cert_path(),
            key_file: settings.key_path(),
            client_ca_file: settings.client_ca_path(),
        }
    }
}

/// Why TLS material could not be loaded; names the setting and the file.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {path:?}: {message}")]
pub struct TlsError {
    pub setting: &'static str,
    pub path: PathBuf,
    pub message: String,
}

impl TlsError {
    fn new(setting: &'static str, path: &Path, message: impl Into<String>) -> Self {
        Self {
            setting,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// The listener's TLS: a rustls configuration whose certificate and client CA can be swapped.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    certificate: Arc<CurrentCertificate>,
    clients: Option<Arc<CurrentClientVerifier>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// A loaded certificate chain with its key, and when the certificate expires.
struct Identity {
    certified: Arc<CertifiedKey>,
    not_after: SystemTime,
}

impl Tls {
    /// Loads every file; any problem is an error naming the setting and the file.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let identity = load_identity(&files, &provider)?;
        let clients = match &files.client_ca_file {
            Some(path) => Some(Arc::new(CurrentClientVerifier(RwLock::new(
                load_client_verifier(path, &provider)?,
            )))),
            None => None,
        };
        Ok(Self {
            certificate: Arc::new(CurrentCertificate(RwLock::new(identity))),
            files,
            provider,
            clients,
        })
    }

    /// The rustls configuration for the listener: TLS 1.2 and 1.3, HTTP/1.1 over ALPN (the
    /// server adds it), the current certificate at each handshake.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::new("tls.cert_file", &self.files.cert_file, e.to_string()))?;
        let builder = match &self.clients {
            Some(clients) => builder.with_client_cert_verifier(clients.clone()),
            None => builder.with_no_client_auth(),
        };
        Ok(builder.with_cert_resolver(self.certificate.clone()))
    }

    /// Reads the files again and swaps in what they hold, all or nothing: when one fails, the
    /// error names it and the listener keeps serving what it had. Blocking file I/O: call it
    /// off the async workers.
    pub fn reload(&self) -> Result<(), TlsError> {
        let identity = load_identity(&self.files, &self.provider)?;
        let verifier = match (&self.files.client_ca_file, &self.clients) {
            (Some(path), Some(_)) => Some(load_client_verifier(path, &self.provider)?),
            _ => None,
        };
        *write(&self.certificate.0) = identity;
        if let (Some(verifier), Some(clients)) = (verifier, &self.clients) {
            *write(&clients.0) = verifier;
        }
        Ok(())
    }

    /// Time left before the served certificate expires (zero once it has).
    pub fn certificate_expires_in(&self) -> Duration {
        let not_after = read(&self.certificate.0).not_after;
        not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }

    /// When the served certificate expires, as seconds since the Unix epoch.
    pub fn certificate_not_after_unix(&self) -> f64 {
        let not_after = read(&self.certificate.0).not_after;
        not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn requires_client_certificates(&self) -> bool {
        self.clients.is_some()
    }
}

/// The subject of the certificate a client presented over mutual TLS, kept with its
/// connection for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSubject(pub String);

/// `HttpServer::on_connect`: on a TLS connection with a client certificate, remembers its
/// subject for every request of the connection.
pub fn tls_client_subject(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    type Connection = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = connection.downcast_ref::<Connection>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    if let Some(subject) = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(certificate_subject)
    {
        data.insert(ClientSubject(subject));
    }
}

/// The subject of a client certificate (for the access log), e.g. `CN=billing, O=Example`.
pub fn certificate_subject(der: &CertificateDer<'_>) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(certificate.subject().to_string())
}

// A poisoned lock only means a thread panicked while swapping a value that is always whole:
// keep serving it rather than fail every handshake.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(setting, path, format!("cannot read it: {e}")))
}

fn load_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(setting, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(setting, path, format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(TlsError::new(
            setting,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

fn load_identity(files: &TlsFiles, provider: &CryptoProvider) -> Result<Identity, TlsError> {
    let chain = load_certificates("tls.cert_file", &files.cert_file)?;
    let key_pem = read_file("tls.key_file", &files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError::new(
            "tls.key_file",
            &files.key_file,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}"),
        )
    })?;
    let not_after = not_after(&chain[0])
        .ok_or_else(|| TlsError::new("tls.cert_file", &files.cert_file, "unreadable X.509"))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::new(
            "tls.key_file",
            &files.key_file,
            format!("does not go with the certificate of tls.cert_file, or is not usable: {e}"),
        )
    })?;
    Ok(Identity {
        certified: Arc::new(certified),
        not_after,
    })
}

fn not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let seconds = u64::try_from(certificate.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

fn load_client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates("tls.client_ca_file", path)? {
        roots
            .add(certificate)
            .map_err(|e| TlsError::new("tls.client_ca_file", path, e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::new("tls.client_ca_file", path, e.to_string()))
}

/// The certificate every handshake gets: the one loaded last.
struct CurrentCertificate(RwLock<Identity>);

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCertificate")
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.0).certified.clone())
    }
}

/// The client CA's verifier, swappable. It names no acceptable CAs in the handshake (the
/// hint is optional; a borrowed list cannot outlive a swap), so a client offers whatever
/// certificate it has and the verifier decides.
struct CurrentClientVerifier(RwLock<Arc<dyn ClientCertVerifier>>);

impl CurrentClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        read(&self.0).clone()
    }
}

impl fmt::Debug for CurrentClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentClientVerifier")
    }
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost`, its key, and a client CA, written to `dir`.
    fn write_files(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        let certificate = params.self_signed(&key).expect("certificate");
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, certificate.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        TlsFiles {
            cert_file,
            key_file,
            client_ca_file: None,
        }
    }

    #[test]
    fn loads_a_pem_certificate_and_key_and_reports_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = Tls::load(write_files(dir.path(), "a")).expect("loads");
        assert!(tls.server_config().is_ok());
        // rcgen's default validity runs to 4096: far away.
        assert!(tls.certificate_expires_in() > Duration::from_secs(365 * 86_400));
    }

    #[test]
    fn problems_name_the_setting_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_files(dir.path(), "a");
        let missing = TlsFiles {
            cert_file: dir.path().join("nope.crt"),
            ..files.clone()
        };
        let error = Tls::load(missing).expect_err("missing cert");
        assert_eq!(error.setting, "tls.cert_file");
        assert!(error.to_string().contains("nope.crt"), "{error}");

        let other = write_files(dir.path(), "b");
        let mismatched = TlsFiles {
            key_file: other.key_file,
            ..files.clone()
        };
        let error = Tls::load(mismatched).expect_err("key of another certificate");
        assert_eq!(error.setting, "tls.key_file");

        std::fs::write(&files.key_file, "not a key").expect("write");
        let error = Tls::load(files).expect_err("garbage key");
        assert_eq!(error.setting, "tls.key_file");
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_a_good_one_swaps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_files(dir.path(), "a");
        let tls = Tls::load(files.clone()).expect("loads");
        let served = || read(&tls.certificate.0).certified.cert[0].clone();
        let before = served();
        std::fs::write(&files.cert_file, "garbage").expect("write");
        assert!(tls.reload().is_err());
        assert_eq!(served(), before, "the old certificate is kept");
        write_files(dir.path(), "a");
        tls.reload().expect("reloads");
        assert_ne!(served(), before, "the new certificate is served");
    }

    #[test]
    fn subjects_are_readable() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing-service");
        let certificate = params.self_signed(&key).expect("certificate");
        let subject = certificate_subject(certificate.der()).expect("subject");
        assert!(subject.contains("CN=billing-service"), "{subject}");
    }
}
