//! API keys: the `x-api-key` header checked against keys from the configuration, each with a
//! name that logs and metrics use in place of the key, and optionally a scope: the streams the
//! key may write. Keys are compared in constant time, and every configured key is compared, so
//! timing reveals neither a key nor which one matched.
//!
//! Publishable keys (`auth.public_keys`) are meant to be read by anyone in a web page's source.
//! `navigator.sendBeacon` cannot set headers, so they are also taken from the `api_key` query
//! parameter, and they are accepted only on requests whose `Origin` is one of
//! `cors.allowed_origins`. A secret key in the query is refused (400 `api_key_in_url`) even
//! though it matches: URLs end up in proxies' and load balancers' logs, and a client that is
//! refused notices and moves the key to the header, where a silent success would leave it there.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;

use super::error::ApiError;
use crate::config::ApiKeyEntry;
use crate::domain::{StreamName, StreamPatterns};

/// Header carrying the key, as API Gateway used it.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Query parameter a publishable key may come in (for `navigator.sendBeacon`).
pub const API_KEY_PARAM: &str = "api_key";

/// Most `api_key` parameters one query may repeat.
const MAX_QUERY_KEYS: usize = 4;

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
    /// From `auth.public_keys`: taken from the query too, and only from allowed origins.
    public: bool,
}

/// The key a request presented: its name, and what it may write.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    pub name: &'a Arc<str>,
    scope: Option<&'a StreamPatterns>,
    /// A publishable key: the request's origin must be an allowed one.
    pub public: bool,
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
                    public: e.public,
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
                public: key.public,
            })
            .ok_or(ApiError::InvalidApiKey)
    }

    /// The key `req` presents, in the `api_key` query parameter or the `x-api-key` header (the
    /// query wins when both are there: a page's key is then the one checked, with its origin
    /// rule), or why it is refused. A public key is accepted only from an `Origin` in
    /// `page_origins` (`cors.allowed_origins`).
    pub fn authenticate_request(
        &self,
        req: &HttpRequest,
        page_origins: &[String],
    ) -> Result<Authenticated<'_>, ApiError> {
        let query = req.query_string();
        // Only requests that may carry a key in the query pay for parsing it.
        let in_query = if query.contains(API_KEY_PARAM) {
            query_keys(query)
        } else {
            Vec::new()
        };
        let key = if in_query.is_empty() {
            let header = req.headers().get(API_KEY_HEADER).map(|v| v.as_bytes());
            self.authenticate(header)?
        } else {
            self.authenticate_query(&in_query)?
        };
        if key.public {
            check_origin(req, &key, page_origins)?;
        }
        Ok(key)
    }

    /// Every `api_key` value of the query must be the same public key. A secret key among them
    /// is refused first, so a URL holding one is always noticed.
    fn authenticate_query(&self, values: &[String]) -> Result<Authenticated<'_>, ApiError> {
        // Each value costs a comparison with every key: a URL of thousands of `api_key`s
        // must not buy that much work. One is what clients send.
        if values.len() > MAX_QUERY_KEYS {
            return Err(ApiError::InvalidApiKey);
        }
        let found: Vec<Result<Authenticated<'_>, ApiError>> = values
            .iter()
            .map(|v| self.authenticate(Some(v.as_bytes())))
            .collect();
        if let Some(secret) = found.iter().flatten().find(|k| !k.public) {
            return Err(ApiError::ApiKeyInUrl(format!(
                "API key {:?} is a secret key and may not be sent in the URL, where logs keep it: send it in the x-api-key header, and replace it if the URL was logged or shared (only publishable keys, auth.public_keys, go in the api_key query parameter)",
                &**secret.name
            )));
        }
        let mut keys = found.into_iter();
        let first = keys.next().ok_or(ApiError::MissingApiKey)??;
        for other in keys {
            if !Arc::ptr_eq(other?.name, first.name) {
                return Err(ApiError::InvalidApiKey);
            }
        }
        Ok(first)
    }
}

/// The values of the `api_key` parameters of a query string, decoded.
fn query_keys(query: &str) -> Vec<String> {
    // A query that is not form-encoded at all carries no key we could read.
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map(|q| {
            q.into_inner()
                .into_iter()
                .filter(|(name, _)| name == API_KEY_PARAM)
                .map(|(_, value)| value)
                .collect()
        })
        .unwrap_or_default()
}

/// A public key is only good from the pages it was issued to: the request's `Origin` must be
/// one of them. Browsers always send `Origin` on the POSTs of `fetch` and `sendBeacon`; a
/// request without one is not a page's (curl, a server), and is refused.
fn check_origin(
    req: &HttpRequest,
    key: &Authenticated<'_>,
    page_origins: &[String],
) -> Result<(), ApiError> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) if page_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) => Ok(()),
        Some(_) => Err(ApiError::OriginNotAllowed(format!(
            "public key {:?} is accepted only from the pages of cors.allowed_origins, and this request's Origin is not one of them",
            &**key.name
        ))),
        None => Err(ApiError::OriginNotAllowed(format!(
            "public key {:?} is accepted only from web pages of cors.allowed_origins, and this request has no Origin header; servers and scripts use a secret key in the x-api-key header",
            &**key.name
        ))),
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
            public: false,
        };
        ApiKeys::new(vec![
            entry("web", "0123456789abcdef", &["events", "clicks-*"]),
            entry("batch-jobs", "fedcba9876543210xyz", &[]),
            ApiKeyEntry {
                public: true,
                ..entry("site", "pub-0123456789abcdef", &["events"])
            },
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

    #[test]
    fn the_query_takes_public_keys_only_from_allowed_origins() {
        use actix_web::test::TestRequest;
        let k = keys();
        let origins = vec!["https://shop.example".to_string()];
        let check = |req: TestRequest| {
            k.authenticate_request(&req.to_http_request(), &origins)
                .map(|a| a.name.to_string())
                .map_err(|e| e.code())
        };
        let from = |uri: &str| TestRequest::post().uri(uri);
        let page = |uri: &str| from(uri).insert_header(("origin", "https://shop.example"));
        assert_eq!(
            check(page("/e?api_key=pub-0123456789abcdef")),
            Ok("site".into())
        );
        // Percent-encoded, and beside other parameters.
        assert_eq!(
            check(page("/e?x=1&api_key=pub%2D0123456789abcdef")),
            Ok("site".into())
        );
        // In the header too, with the same origin rule.
        assert_eq!(
            check(page("/e").insert_header((API_KEY_HEADER, "pub-0123456789abcdef"))),
            Ok("site".into())
        );
        assert_eq!(
            check(from("/e?api_key=pub-0123456789abcdef")),
            Err("origin_not_allowed")
        );
        assert_eq!(
            check(
                from("/e?api_key=pub-0123456789abcdef")
                    .insert_header(("origin", "https://evil.example"))
            ),
            Err("origin_not_allowed")
        );
        assert_eq!(
            check(page("/e?api_key=0123456789abcdef")),
            Err("api_key_in_url")
        );
        // A secret key among several values is still noticed.
        assert_eq!(
            check(page(
                "/e?api_key=nope-nope-nope-nope&api_key=0123456789abcdef"
            )),
            Err("api_key_in_url")
        );
        assert_eq!(
            check(page("/e?api_key=nope-nope-nope-nope")),
            Err("invalid_api_key")
        );
        // Secret keys keep working in the header, with or without an Origin.
        assert_eq!(
            check(from("/e").insert_header((API_KEY_HEADER, "0123456789abcdef"))),
            Ok("web".into())
        );
        // Repeating the parameter beyond a few times buys no comparisons.
        let many = format!("/e?{}", ["api_key=pub-0123456789abcdef"; 5].join("&"));
        assert_eq!(check(page(&many)), Err("invalid_api_key"));
        // An `api_key`-like name is not the parameter.
        assert_eq!(
            check(from("/e?my_api_key=x").insert_header((API_KEY_HEADER, "0123456789abcdef"))),
            Ok("web".into())
        );
    }
}
