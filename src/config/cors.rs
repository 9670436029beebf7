//! The `[cors]` settings: which browser origins may call the API, and how long a browser may
//! cache a preflight answer. Apart from the other sections because origins have a syntax of their
//! own, checked here so a typo stops the proxy at startup instead of silently refusing a site.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest preflight cache age accepted (Firefox's own cap; Chromium caps at 2 hours).
pub const MAX_PREFLIGHT_AGE_SECS: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Browser origins (`scheme://host[:port]`) allowed to call the API, or `["*"]` for any;
    /// empty: CORS is off (no preflight answers, no CORS headers).
    pub allowed_origins: Vec<String>,
    /// How long a browser may reuse a preflight answer (`Access-Control-Max-Age`).
    pub max_age_secs: u64,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_secs: 7_200,
        }
    }
}

/// Which origins, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Off,
    Any,
    /// Serialized origins, lower-cased as browsers send them.
    Exact(Vec<String>),
}

impl CorsSettings {
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_secs)
    }

    /// The configured origins, checked: `*` alone, or origins as a browser serializes them
    /// in its `Origin` header (no path, no trailing slash), since they are compared byte for byte.
    pub fn origins(&self) -> Result<CorsOrigins, String> {
        if self.allowed_origins.is_empty() {
            return Ok(CorsOrigins::Off);
        }
        if self.allowed_origins.iter().any(|o| o.trim() == "*") {
            if self.allowed_origins.len() > 1 {
                return Err(
                    "\"*\" allows every origin: list it alone, or list origins without it".into(),
                );
            }
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::with_capacity(self.allowed_origins.len());
        for raw in &self.allowed_origins {
            let origin = parse_origin(raw.trim())?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(CorsOrigins::Exact(origins))
    }
}

/// `scheme://host[:port]`, lower-cased; anything a browser would never send as `Origin` (a
/// path, a trailing slash, user info, a query, `null`) is refused with what to write instead.
fn parse_origin(raw: &str) -> Result<String, String> {
    let shape = |why: &str| {
        format!("{raw:?} is not an origin ({why}); write scheme://host[:port], e.g. \"https://www.example.com\"")
    };
    let lower = raw.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(shape("no scheme://"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(shape("the scheme must be http or https"));
    }
    if rest.ends_with('/') {
        return Err(shape("browsers send no trailing slash"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(shape("an origin has no path, query or user"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal without a port: the colon is inside the brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty()
                && ip
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        })
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !host_ok {
        return Err(shape("the host is not a name or an IP address"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(shape("the port is not 1-65535"));
        }
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Result<CorsOrigins, String> {
        CorsSettings {
            allowed_origins: list.iter().map(|s| s.to_string()).collect(),
            ..CorsSettings::default()
        }
        .origins()
    }

    #[test]
    fn origins_are_checked_and_lower_cased() {
        assert_eq!(origins(&[]), Ok(CorsOrigins::Off));
        assert_eq!(origins(&["*"]), Ok(CorsOrigins::Any));
        assert_eq!(
            origins(&[
                "https://App.Example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]),
            Ok(CorsOrigins::Exact(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
                "http://[::1]:8080".into(),
            ]))
        );
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "ftp://example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://user@example.com",
            "null",
            "https://exa mple.com",
        ] {
            let err = origins(&[bad]).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
        assert!(origins(&["*", "https://example.com"]).is_err());
    }
}
