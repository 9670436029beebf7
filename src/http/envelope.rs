//! Enrichment (`streams.envelope`): on such a stream the Kinesis record is
//! `{"event": <the event as sent>, "meta": {...}}`, stamped with what only the server knows
//! (when it arrived, the request id, the API key's name, the client's address and user agent).
//! The event's bytes are copied in unchanged; `meta` is serialized once per request and shared
//! by its records. Absent facts are left out, and the key itself never appears.
//!
//! `client_ip` is the TCP peer, unless the peer is one of `server.trusted_proxies`: then it is
//! the right-most address of `X-Forwarded-For` that is not a trusted proxy. Entries left of it
//! were written by the client (or by proxies nobody vouches for) and could be anything.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use serde::Serialize;

use crate::domain::Record;

const PREFIX: &[u8] = b"{\"event\":";

/// The facts of one request, as they go into `meta`.
#[derive(Serialize)]
pub struct Meta<'a> {
    /// RFC 3339 UTC with milliseconds, e.g. `2026-12-03T08:28:32.123Z`.
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// The API key's name (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
}

impl Meta<'_> {
    /// `,"meta":{...}}`: what follows the event in every record of the request.
    pub fn suffix(&self) -> Bytes {
        let mut out = b",\"meta\":".to_vec();
        // Serializing strings and an Option-only struct cannot fail.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Wraps the record's event in the envelope; the partition key and hash key stay.
pub fn wrap(record: &mut Record, suffix: &[u8]) {
    let mut data = BytesMut::with_capacity(PREFIX.len() + record.data.len() + suffix.len());
    data.put_slice(PREFIX);
    data.put_slice(&record.data);
    data.put_slice(suffix);
    record.data = data.freeze();
}

/// The client's address: the peer, or from a trusted peer the right-most untrusted address of
/// `X-Forwarded-For` (all its header lines, in order). When every listed address is trusted,
/// the left-most one is the client; an entry that is not an address ends the walk at the last
/// address seen (the hop that wrote it cannot be believed beyond that).
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&[u8]],
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for line in forwarded_for.iter().rev() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Some(client);
        };
        for entry in line.rsplit(',') {
            let Some(ip) = parse_forwarded_entry(entry.trim()) else {
                return Some(client);
            };
            client = ip;
            if !is_trusted(&ip) {
                return Some(ip);
            }
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, an IPv4 address with a port, or a bracketed IPv6
/// address with or without a port.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    entry
        .rsplit_once(':')
        .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339_millis() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_millis(since_epoch.as_millis())
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the civil-from-days
/// algorithm of H. Hinnant, exact over the proleptic Gregorian calendar).
fn rfc3339_millis(millis: u128) -> String {
    let secs = (millis / 1000) as i64;
    let ms = (millis % 1000) as u32;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_796_286_512_007),
            "2026-12-03T08:28:32.007Z"
        );
    }

    #[test]
    fn client_ip_believes_only_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let walk = |peer: &str, xff: &[&str]| {
            let lines: Vec<&[u8]> = xff.iter().map(|s| s.as_bytes()).collect();
            client_ip(Some(ip(peer)), &lines, &trusted)
        };
        // An untrusted peer's header is ignored, whatever it claims.
        assert_eq!(walk("203.0.113.9", &["1.2.3.4"]), Some(ip("203.0.113.9")));
        // Right-most untrusted: the spoofed left part is skipped.
        assert_eq!(
            walk("10.0.0.1", &["6.6.6.6, 198.51.100.7", "10.0.0.2"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(walk("10.0.0.1", &["10.1.1.1"]), Some(ip("10.1.1.1")));
        assert_eq!(walk("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(walk("10.0.0.1", &["junk, 10.0.0.3"]), Some(ip("10.0.0.3")));
        assert_eq!(
            walk("10.0.0.1", &["[2001:db8::1]:443", "192.0.2.1:80"]),
            Some(ip("192.0.2.1"))
        );
    }
}
