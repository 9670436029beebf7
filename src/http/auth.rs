//! API keys: the `x-api-key` header checked against keys from the configuration, each with a
//! name that logs and metrics use in place of the key, and optionally a scope: the streams the
//! key may write. Keys are compared in constant time, and every configured key is compared, so
//! timing reveals neither a key nor which one matched.

use std::sync::Arc;

use super::error::ApiError;
use crate::config::ApiKeyEntry;
use crate::domain::{StreamName, StreamPatterns};

/// Header carrying the key, as API Gateway used it.
pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

#[derive(Clone)]
struct ApiKey {
    name: Arc<str>,
    key: Vec<u8>,
    /// The streams this key may write; `None`: every stream of `streams.allow`.
    scope: Option<StreamPatterns>,
}

/// The key a request presented: its name, and what it may write.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    pub name: &'a Arc<str>,
    scope: Option<&'a StreamPatterns>,
}

impl Authenticated<'_> {
    /// Whether the key's scope covers `stream` (the allow-list is checked on its own).
    pub fn may_write(&self, stream: &StreamName) -> bool {
        self.scope.is_none_or(|scope| scope.matches(stream))
    }

    /// The refusal for a stream outside the key's scope. It names neither the key's streams nor
    /// whether `stream` exists or is allowed at all, so a key cannot be used to map streams.
    pub fn out_of_scope(&self, stream: &StreamName) -> ApiError {
        ApiError::StreamNotInKeyScope(format!(
            "API key {:?} may not write to stream {:?}: the key is limited to some streams (auth.keys); use a key meant for this stream",
            &**self.name,
            stream.as_str()
        ))
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        let names: Vec<&str> = self.names();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

impl ApiKeys {
    pub fn new(entries: Vec<ApiKeyEntry>) -> Self {
        Self {
            keys: entries
                .into_iter()
                .map(|e| ApiKey {
                    scope: e.scope(),
                    name: e.name.into(),
                    key: e.key.into_bytes(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured key names (for per-key state such as rate limiters).
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| &*k.name).collect()
    }

    /// The key presented in `header`, or why it was refused.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Authenticated<'_>, ApiError> {
        let presented = header.ok_or(ApiError::MissingApiKey)?;
        let mut matched: Option<&ApiKey> = None;
        for key in &self.keys {
            if constant_time_eq(presented, &key.key) && matched.is_none() {
                matched = Some(key);
            }
        }
        matched
            .map(|key| Authenticated {
                name: &key.name,
                scope: key.scope.as_ref(),
            })
            .ok_or(ApiError::InvalidApiKey)
    }
}

/// Compares without an early exit on the first differing byte; the length difference is folded
/// in rather than returned early.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let entry = |name: &str, key: &str, streams: &[&str]| ApiKeyEntry {
            name: name.into(),
            key: key.into(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
        };
        ApiKeys::new(vec![
            entry("web", "0123456789abcdef", &["events", "clicks-*"]),
            entry("batch-jobs", "fedcba9876543210xyz", &[]),
        ])
    }

    fn name(k: &ApiKeys, presented: Option<&[u8]>) -> Result<String, ApiError> {
        k.authenticate(presented).map(|a| a.name.to_string())
    }

    #[test]
    fn finds_the_matching_key_name() {
        let k = keys();
        assert_eq!(
            name(&k, Some(b"fedcba9876543210xyz")).ok().as_deref(),
            Some("batch-jobs")
        );
        assert_eq!(
            name(&k, Some(b"0123456789abcdef")).ok().as_deref(),
            Some("web")
        );
        assert_eq!(name(&k, None), Err(ApiError::MissingApiKey));
        assert_eq!(
            name(&k, Some(b"0123456789abcde")),
            Err(ApiError::InvalidApiKey)
        );
        assert_eq!(
            name(&k, Some(b"0123456789abcdefg")),
            Err(ApiError::InvalidApiKey)
        );
        assert_eq!(name(&k, Some(b"")), Err(ApiError::InvalidApiKey));
    }

    #[test]
    fn a_scoped_key_may_write_only_its_streams() {
        let k = keys();
        let stream = |s: &str| StreamName::parse(s).expect("name");
        let web = k.authenticate(Some(b"0123456789abcdef")).expect("web");
        assert!(web.may_write(&stream("events")));
        assert!(web.may_write(&stream("clicks-eu")));
        assert!(!web.may_write(&stream("orders")));
        assert!(!web.may_write(&stream("events-2")));
        let refusal = web.out_of_scope(&stream("orders"));
        assert_eq!(refusal.code(), "stream_not_in_key_scope");
        assert!(!refusal.to_string().contains("clicks"), "{refusal}");
        let batch = k.authenticate(Some(b"fedcba9876543210xyz")).expect("batch");
        assert!(batch.may_write(&stream("orders")));
    }

    #[test]
    fn debug_hides_keys() {
        assert!(!format!("{:?}", keys()).contains("0123"));
    }
}
