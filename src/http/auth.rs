//! API keys: the `x-api-key` header checked against keys from the configuration, each with a
//! name that logs and metrics use in place of the key. Keys are compared in constant time, and
//! every configured key is compared, so timing reveals neither a key nor which one matched.

use super::error::ApiError;
use crate::config::ApiKeyEntry;

/// Header carrying the key, as API Gateway used it.
pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        let names: Vec<&str> = self.keys.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

impl ApiKeys {
    pub fn new(entries: Vec<ApiKeyEntry>) -> Self {
        Self {
            keys: entries
                .into_iter()
                .map(|e| (e.name, e.key.into_bytes()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured key names (for per-key state such as rate limiters).
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The name of the key presented in `header`, or why it was refused.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<&str, ApiError> {
        let presented = header.ok_or(ApiError::MissingApiKey)?;
        let mut matched: Option<&str> = None;
        for (name, key) in &self.keys {
            if constant_time_eq(presented, key) && matched.is_none() {
                matched = Some(name);
            }
        }
        matched.ok_or(ApiError::InvalidApiKey)
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
        let entry = |name: &str, key: &str| ApiKeyEntry {
            name: name.into(),
            key: key.into(),
        };
        ApiKeys::new(vec![
            entry("web", "0123456789abcdef"),
            entry("batch-jobs", "fedcba9876543210xyz"),
        ])
    }

    #[test]
    fn finds_the_matching_key_name() {
        let k = keys();
        assert_eq!(
            k.authenticate(Some(b"fedcba9876543210xyz")).ok(),
            Some("batch-jobs")
        );
        assert_eq!(k.authenticate(Some(b"0123456789abcdef")).ok(), Some("web"));
        assert_eq!(k.authenticate(None), Err(ApiError::MissingApiKey));
        assert_eq!(
            k.authenticate(Some(b"0123456789abcde")),
            Err(ApiError::InvalidApiKey)
        );
        assert_eq!(
            k.authenticate(Some(b"0123456789abcdefg")),
            Err(ApiError::InvalidApiKey)
        );
        assert_eq!(k.authenticate(Some(b"")), Err(ApiError::InvalidApiKey));
    }

    #[test]
    fn debug_hides_keys() {
        assert!(!format!("{:?}", keys()).contains("0123"));
    }
}
