//! TLS for the load benchmark (issue 19): certificates made per run with rcgen (a CA, and a
//! server certificate for `localhost` and `127.0.0.1` signed by it, written into a temporary
//! folder for the proxy's `[tls]` settings), and the client side: the `Transport` every
//! connection to a proxy goes through (the load, `/readyz`, `/metrics`, the scrapers), plain
//! TCP or TLS trusting exactly the run's CA, so a proxy serving TLS is driven, probed and
//! scraped over TLS.
//!
//! Written here rather than imported from tests/api/tls.rs: a bench cannot use the tests'
//! modules, and the benchmark needs less (no client certificates, no second CA).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::{Context, Error};

/// The name the client asks for (SNI) and checks the certificate against, as a client given
/// `https://localhost:PORT` would.
const SERVER_NAME: &str = "localhost";

/// How the load generator reaches a server.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain HTTP/1.1 over TCP.
    #[default]
    Plain,
    /// HTTP/1.1 over TLS, trusting only the run's CA.
    Tls(Arc<ClientConfig>),
}

/// TLS over `stream` with `config`: the handshake (certificate checked against the run's CA).
pub async fn handshake(
    config: &Arc<ClientConfig>,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(SERVER_NAME).context("the server name")?;
    TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .context("TLS handshake")
}

/// What a TLS connection negotiated, for the report: "TLSv1_3 TLS13_AES_256_GCM_SHA384
/// X25519MLKEM768".
pub fn describe(stream: &TlsStream<TcpStream>) -> String {
    let connection = stream.get_ref().1;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "{} {} {}",
        or_dash(connection.protocol_version().map(|v| format!("{v:?}"))),
        or_dash(
            connection
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
        ),
        or_dash(
            connection
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
        ),
    )
}

/// One TLS connection to `127.0.0.1:port` to see what it negotiates (see `describe`).
pub async fn negotiated(config: &Arc<ClientConfig>, port: u16) -> Result<String, Error> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connect")?;
    Ok(describe(&handshake(config, stream).await?))
}

/// The run's certificates: a CA and a server certificate it signed, in a temporary folder
/// (removed when this is dropped).
pub struct RunCertificates {
    _dir: tempfile::TempDir,
    cert_file: PathBuf,
    key_file: PathBuf,
    roots: RootCertStore,
}

impl RunCertificates {
    /// A fresh CA and a certificate for `localhost` and `127.0.0.1` (ECDSA P-256, rcgen's
    /// default key type), written as PEM under `target/tmp`.
    pub fn create() -> Result<Self, Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "load benchmark CA");
        let ca_key = KeyPair::generate().context("CA key")?;
        let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;

        let mut server = CertificateParams::new(vec![SERVER_NAME.into(), "127.0.0.1".into()])
            .context("server certificate parameters")?;
        server
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let server_key = KeyPair::generate().context("server key")?;
        let issuer = Issuer::from_params(&ca, &ca_key);
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .context("server certificate")?;

        let dir = tempfile::Builder::new()
            .prefix("load-tls-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("creating a folder for the certificates under target/tmp")?;
        let cert_file = dir.path().join("server.crt");
        let key_file = dir.path().join("server.key");
        std::fs::write(&cert_file, server_cert.pem()).context("writing server.crt")?;
        std::fs::write(&key_file, server_key.serialize_pem()).context("writing server.key")?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca_cert.der().clone())
            .context("the CA as a root")?;
        Ok(Self {
            _dir: dir,
            cert_file,
            key_file,
            roots,
        })
    }

    /// The proxy's settings that make it serve these certificates.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KINESIS_PROXY__TLS__CERT_FILE".into(),
                self.cert_file.display().to_string(),
            ),
            (
                "KINESIS_PROXY__TLS__KEY_FILE".into(),
                self.key_file.display().to_string(),
            ),
        ]
    }

    /// A client trusting only this CA, with rustls' default versions and groups (what a rustls
    /// client negotiates). Session resumption is off: every new connection is a full handshake
    /// (certificate, signature, key exchange), the cost a client without a session cache, or
    /// with one gone cold, brings; with keep-alive it only matters at the start.
    pub fn transport(&self) -> Result<Transport, Error> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        Ok(Transport::Tls(Arc::new(config)))
    }
}
