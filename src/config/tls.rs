//! The `[tls]` settings: the listener's certificate chain, its key, and the CA whose client
//! certificates are required (mutual TLS). Only the paths live here; the files are read and
//! checked by `http::tls` (at startup, by `--check` and on SIGHUP).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS on the HTTP listener; all empty (the default): plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate, followed by its intermediates (the chain clients need).
    pub cert_file: String,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA certificates: set, every client must present a certificate signed by one.
    pub client_ca_file: String,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    pub fn cert_path(&self) -> PathBuf {
        PathBuf::from(&self.cert_file)
    }

    pub fn key_path(&self) -> PathBuf {
        PathBuf::from(&self.key_file)
    }

    /// `None` unless client certificates are required.
    pub fn client_ca_path(&self) -> Option<PathBuf> {
        (!self.client_ca_file.is_empty()).then(|| PathBuf::from(&self.client_ca_file))
    }

    /// The settings fit together: a certificate and its key both, or neither; a client CA only
    /// with them. (The files' contents are checked where they are loaded.)
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, true) => return Err((
                "tls.key_file",
                "is empty but tls.cert_file is set: TLS needs the certificate's private key too"
                    .into(),
            )),
            (true, false) => {
                return Err((
                    "tls.cert_file",
                    "is empty but tls.key_file is set: TLS needs the certificate too".into(),
                ))
            }
            _ => {}
        }
        if !self.client_ca_file.is_empty() && !self.enabled() {
            return Err((
                "tls.client_ca_file",
                "needs TLS: set tls.cert_file and tls.key_file (client certificates are only asked for over TLS)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_key_go_together() {
        let tls = |cert: &str, key: &str, ca: &str| TlsSettings {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: ca.into(),
        };
        assert!(tls("", "", "").validate().is_ok());
        assert!(tls("c.pem", "k.pem", "").validate().is_ok());
        assert!(tls("c.pem", "k.pem", "ca.pem").validate().is_ok());
        assert_eq!(
            tls("c.pem", "", "").validate().unwrap_err().0,
            "tls.key_file"
        );
        assert_eq!(
            tls("", "k.pem", "").validate().unwrap_err().0,
            "tls.cert_file"
        );
        assert_eq!(
            tls("", "", "ca.pem").validate().unwrap_err().0,
            "tls.client_ca_file"
        );
    }
}
