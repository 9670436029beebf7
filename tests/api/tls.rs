//! TLS on the listener through the real binary, with certificates made here (rcgen) and a real
//! TLS client (rustls, as most Rust clients; `curl` too where installed): events over HTTPS
//! reach Kinesis; a client that trusts another CA fails the handshake; plaintext sent to the
//! TLS port gets a closed connection, never a hang; mutual TLS refuses a client without a
//! certificate and takes one its CA signed; a certificate replaced on disk is served to the next
//! connection after SIGHUP; a missing or unusable file stops the start with exit 78.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, signal, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

/// A CA that signs certificates.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            params,
            key,
        }
    }

    /// A certificate for `name` (DNS name and common name) signed by this CA: (PEM, DER, key).
    fn issue(&self, name: &str) -> (String, CertificateDer<'static>, KeyPair) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer).expect("certificate");
        (certificate.pem(), certificate.der().clone(), key)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        roots
    }
}

/// Writes the server's certificate (for `localhost`, signed by `ca`) and key into `dir`.
fn write_server_files(dir: &Path, ca: &Authority) -> (PathBuf, PathBuf) {
    let (pem, _, key) = ca.issue("localhost");
    let cert_file = dir.join("server.crt");
    let key_file = dir.join("server.key");
    std::fs::write(&cert_file, pem).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    (cert_file, key_file)
}

fn client_config(
    roots: RootCertStore,
    identity: Option<(CertificateDer<'static>, &KeyPair)>,
) -> ClientConfig {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    match identity {
        Some((certificate, key)) => builder
            .with_client_auth_cert(
                vec![certificate],
                PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    }
}

/// One HTTP/1.1 request over a new TLS connection; the status and body, or why it failed.
/// Also returns the DER of the certificate the server presented.
async fn https(
    port: u16,
    config: ClientConfig,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        String::from_utf8_lossy(&body).into_owned(),
        presented,
    ))
}

fn tls_proxy(emulator: &str, cert: &Path, key: &Path, client_ca: Option<&Path>) -> RunningProxy {
    let mut command = proxy_command(emulator);
    command
        .env("KINESIS_PROXY__TLS__CERT_FILE", cert)
        .env("KINESIS_PROXY__TLS__KEY_FILE", key);
    if let Some(ca) = client_ca {
        command.env("KINESIS_PROXY__TLS__CLIENT_CA_FILE", ca);
    }
    RunningProxy::spawn(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_tls_reach_kinesis_and_strangers_and_plaintext_are_turned_away() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-tls-");
    create_stream(&emulator, &stream, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::new("test CA");
    let (cert, key) = write_server_files(dir.path(), &ca);
    let mut proxy = tls_proxy(&emulator, &cert, &key, None);
    let path = format!("/kinesis/stream/{stream}");

    let (status, body, first_cert) = https(
        proxy.port,
        client_config(ca.roots(), None),
        "POST",
        &path,
        r#"{"event": {"id": "over-tls"}}"#,
    )
    .await
    .expect("HTTPS works");
    assert_eq!(status, 200, "{body}");
    let stored = read_all(&emulator, &stream).await;
    assert!(stored
        .iter()
        .any(|r| String::from_utf8_lossy(&r.data).contains("over-tls")));

    // A client that trusts another CA refuses the proxy's certificate.
    let stranger = Authority::new("another CA");
    let refused = https(
        proxy.port,
        client_config(stranger.roots(), None),
        "GET",
        "/healthz",
        "",
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");

    // Plaintext HTTP to the TLS port: the connection is closed, not left hanging.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let read = plain.read_to_end(&mut answer);
    assert!(read.is_ok(), "closed by the proxy, not timed out: {read:?}");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // curl, where installed, as a user would.
    if Command::new("curl").arg("--version").output().is_ok() {
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).expect("write CA");
        let output = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca_file)
            .arg(format!("https://localhost:{}/healthz", proxy.port))
            .output()
            .expect("curl runs");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("ok"),
            "curl: {output:?}"
        );
    }

    // A renewed certificate on disk and SIGHUP: the next connection gets it.
    write_server_files(dir.path(), &ca);
    signal(&proxy.child, "HUP");
    let mut renewed = false;
    for _ in 0..100 {
        let (_, _, presented) = https(
            proxy.port,
            client_config(ca.roots(), None),
            "GET",
            "/healthz",
            "",
        )
        .await
        .expect("HTTPS works after the reload");
        if presented != first_cert.as_slice() {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the renewed certificate is served after SIGHUP");
    let _ = proxy.child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_takes_only_clients_with_a_certificate_of_its_ca() {
    let emulator = kinesalite().await.endpoint.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let (cert, key) = write_server_files(dir.path(), &ca);
    let client_ca = dir.path().join("clients.pem");
    std::fs::write(&client_ca, &clients.pem).expect("write client CA");
    let proxy = tls_proxy(&emulator, &cert, &key, Some(&client_ca));

    let anonymous = https(
        proxy.port,
        client_config(ca.roots(), None),
        "GET",
        "/healthz",
        "",
    )
    .await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let outsider = Authority::new("someone else");
    let (_, outsider_cert, outsider_key) = outsider.issue("intruder");
    let refused = https(
        proxy.port,
        client_config(ca.roots(), Some((outsider_cert, &outsider_key))),
        "GET",
        "/healthz",
        "",
    )
    .await;
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");

    let (_, member_cert, member_key) = clients.issue("billing-service");
    let (status, body, _) = https(
        proxy.port,
        client_config(ca.roots(), Some((member_cert, &member_key))),
        "GET",
        "/healthz",
        "",
    )
    .await
    .expect("a client of the CA is served");
    assert_eq!(status, 200, "{body}");
    // The access log names the client by its certificate's subject.
    let mut logged = false;
    for _ in 0..50 {
        logged = proxy
            .json_lines()
            .iter()
            .any(|l| l.to_string().contains("CN=billing-service"));
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "the access log names the client certificate");
}

#[test]
fn unusable_tls_files_stop_the_start_with_exit_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::new("CA");
    let (cert, key) = write_server_files(dir.path(), &ca);
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").expect("write");
    let missing = dir.path().join("missing.crt");
    for (cert, key, named) in [
        (missing.as_path(), key.as_path(), "missing.crt"),
        (cert.as_path(), garbage.as_path(), "tls.key_file"),
    ] {
        let mut command = proxy_command("http://127.0.0.1:1");
        command
            .env("KINESIS_PROXY__TLS__CERT_FILE", cert)
            .env("KINESIS_PROXY__TLS__KEY_FILE", key);
        let output = command.output().expect("runs");
        assert_eq!(output.status.code(), Some(78), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{stderr}");
        // --check says the same without starting anything.
        let mut command = proxy_command("http://127.0.0.1:1");
        command
            .env("KINESIS_PROXY__TLS__CERT_FILE", cert)
            .env("KINESIS_PROXY__TLS__KEY_FILE", key)
            .arg("--check");
        assert_eq!(command.output().expect("runs").status.code(), Some(78));
    }
}
