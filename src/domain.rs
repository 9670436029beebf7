//! Domain types checked once at the edge: a value of one of these types is valid by construction
//! (private fields, `parse` as the only constructor), so nothing past the HTTP layer re-checks,
//! and nothing invalid can reach a batch and fail a whole `PutRecords` call.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Why a value was refused; the message is written for the person fixing the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A Kinesis stream name: 1..=128 characters of `[a-zA-Z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(Arc<str>);

impl StreamName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "stream name must be 1 to {} characters long (got {})",
                Self::MAX_LEN,
                raw.chars().count()
            )));
        }
        if let Some(bad) = raw.chars().find(|c| !is_stream_char(*c)) {
            return Err(Invalid(format!(
                "stream name may contain only letters, digits, '_', '.' and '-' (found {bad:?})"
            )));
        }
        if raw.chars().all(|c| c == '.') {
            return Err(Invalid("stream name cannot be only dots".into()));
        }
        Ok(Self(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_stream_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An allow-list entry: an exact stream name, `prefix*`, or `*` for every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl StreamPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw == "*" {
            return Ok(Self::Any);
        }
        let (body, is_prefix) = match raw.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (raw, false),
        };
        if body.is_empty() || body.len() > StreamName::MAX_LEN || !body.chars().all(is_stream_char)
        {
            return Err(format!(
                "{raw:?} is not a stream name or pattern (letters, digits, '_', '.', '-', optionally ending in '*')"
            ));
        }
        Ok(if is_prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }

    pub fn matches(&self, stream: &StreamName) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => stream.as_str().starts_with(prefix.as_str()),
            Self::Exact(name) => stream.as_str() == name,
        }
    }

    /// Whether some stream name matches both patterns.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, _) | (_, Self::Any) => true,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(name), Self::Prefix(prefix))
            | (Self::Prefix(prefix), Self::Exact(name)) => name.starts_with(prefix.as_str()),
            (Self::Prefix(a), Self::Prefix(b)) => {
                a.starts_with(b.as_str()) || b.starts_with(a.as_str())
            }
        }
    }
}

/// A parsed allow-list: checked on every request, so parsed once at startup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPatterns(Vec<StreamPattern>);

impl StreamPatterns {
    pub fn parse_all(raw: &[String]) -> Result<Self, String> {
        raw.iter()
            .map(|p| StreamPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn matches(&self, stream: &StreamName) -> bool {
        self.0.iter().any(|p| p.matches(stream))
    }
}

/// An AWS region name such as `us-west-2` or `us-gov-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(Arc<str>);

impl Region {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid(format!(
                "{:?} is not an AWS region name (expected something like \"us-west-2\")",
                truncate_for_message(raw)
            ))
        };
        if raw.len() < 4 || raw.len() > 32 {
            return Err(invalid());
        }
        let parts: Vec<&str> = raw.split('-').collect();
        let Some((number, words)) = parts.split_last() else {
            return Err(invalid());
        };
        let number_ok = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit());
        let words_ok = words.len() >= 2
            && words
                .iter()
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()));
        if !(number_ok && words_ok && words[0].len() == 2) {
            return Err(invalid());
        }
        Ok(Self(raw.into()))
    }

    pub fn us_west_2() -> Self {
        Self("us-west-2".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kinesis partition key: 1..=256 UTF-16 code units, counted as the Kinesis API counts them
/// (a character outside the Basic Multilingual Plane, such as an emoji, counts twice). A key the
/// API would refuse must never reach a batch: Kinesis refuses the whole `PutRecords` call for
/// it, with every other client's records in it. Too long is refused, never truncated: truncation
/// would silently change which shard, and so which ordering, the event gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey(String);

impl PartitionKey {
    /// The API's limit, in UTF-16 code units.
    pub const MAX_UTF16_UNITS: usize = 256;

    pub fn parse(raw: impl Into<String>) -> Result<Self, Invalid> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(Invalid("partition_key must not be empty".into()));
        }
        // Fast path: a UTF-8 string never has more UTF-16 code units than bytes.
        if raw.len() > Self::MAX_UTF16_UNITS {
            let units = raw.encode_utf16().take(Self::MAX_UTF16_UNITS + 1).count();
            if units > Self::MAX_UTF16_UNITS {
                return Err(Invalid(format!(
                    "partition_key must be at most {} UTF-16 code units, as Kinesis counts them (a character outside the Basic Multilingual Plane, such as an emoji, counts as 2); it is never truncated",
                    Self::MAX_UTF16_UNITS
                )));
            }
        }
        Ok(Self(raw))
    }

    /// Length in UTF-16 code units, as Kinesis counts it (for logs about refused records).
    pub fn utf16_len(&self) -> usize {
        self.0.encode_utf16().count()
    }

    /// A random key, for events that name none: MD5 of random keys spreads evenly over shards.
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes Kinesis counts against the record and request size limits.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }
}

/// `ExplicitHashKey`: a decimal number in 0..=2^128-1 that picks the shard instead of
/// MD5(partition key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExplicitHashKey(u128);

impl ExplicitHashKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        // `u128::from_str` would accept a leading '+'; Kinesis wants plain digits.
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid(format!(
                "explicit_hash_key must be a decimal number from 0 to 2^128-1 written with digits only (got {:?})",
                truncate_for_message(raw)
            )));
        }
        raw.parse::<u128>().map(Self).map_err(|_| {
            Invalid("explicit_hash_key must be at most 2^128-1 = 340282366920938463463374607431768211455".into())
        })
    }

    pub fn value(self) -> u128 {
        self.0
    }
}

impl fmt::Display for ExplicitHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Cuts a client-supplied value for an error message, so a huge input cannot make a huge
/// response or log line.
pub fn truncate_for_message(raw: &str) -> String {
    const MAX: usize = 64;
    if raw.chars().count() <= MAX {
        raw.to_owned()
    } else {
        let mut cut: String = raw.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

/// One event made ready for Kinesis: the record's data is the compact JSON of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub data: Bytes,
    pub partition_key: PartitionKey,
    pub explicit_hash_key: Option<ExplicitHashKey>,
}

impl Record {
    /// Size as Kinesis counts it for its record and request limits: data + partition key,
    /// before base64.
    pub fn kinesis_size(&self) -> usize {
        self.data.len() + self.partition_key.byte_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for ok in ["events", "a", "A-b_c.9", &"x".repeat(128)] {
            assert!(StreamName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            ".",
            "has space",
            &"x".repeat(129),
            "ünï",
            "a%2Fb",
        ] {
            assert!(StreamName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let s = StreamName::parse("clicks-eu").unwrap();
        assert!(StreamPattern::parse("*").unwrap().matches(&s));
        assert!(StreamPattern::parse("clicks-*").unwrap().matches(&s));
        assert!(!StreamPattern::parse("clicks").unwrap().matches(&s));
        assert!(StreamPattern::parse("a*b").is_err());
        let overlap = |a: &str, b: &str| {
            let (a, b) = (
                StreamPattern::parse(a).unwrap(),
                StreamPattern::parse(b).unwrap(),
            );
            assert_eq!(a.overlaps(&b), b.overlaps(&a));
            a.overlaps(&b)
        };
        assert!(overlap("*", "clicks"));
        assert!(overlap("clicks-*", "clicks-eu"));
        assert!(overlap("clicks-*", "click*"));
        assert!(overlap("clicks", "clicks"));
        assert!(!overlap("clicks-*", "clicks"));
        assert!(!overlap("clicks-*", "audit-*"));
        assert!(!overlap("clicks-eu", "clicks-us"));
        assert!(StreamPattern::parse("").is_err());
    }

    #[test]
    fn regions() {
        for ok in [
            "us-west-2",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-3",
            "cn-north-1",
        ] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Mars",
            "us-west",
            "us_west_2",
            "US-WEST-2",
            "u-west-2",
            "us-west-2a",
            "-us-west-2",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partition_keys_count_utf16_code_units_as_kinesis_does() {
        assert!(PartitionKey::parse("").is_err());
        assert!(PartitionKey::parse("k".repeat(256)).is_ok());
        assert!(PartitionKey::parse("k".repeat(257)).is_err());
        // 256 three-byte characters of the BMP: 768 bytes, 256 code units.
        assert!(PartitionKey::parse("€".repeat(256)).is_ok());
        assert!(PartitionKey::parse("€".repeat(257)).is_err());
        assert_eq!(PartitionKey::parse("€").unwrap().byte_len(), 3);
        // Emoji are two code units each: 128 fit, 129 are 258 units (the call-poisoning key).
        assert!(PartitionKey::parse("😀".repeat(128)).is_ok());
        assert!(PartitionKey::parse("😀".repeat(129)).is_err());
        assert!(PartitionKey::parse(format!("{}k", "😀".repeat(128))).is_err());
        assert_eq!(PartitionKey::parse("a😀").unwrap().utf16_len(), 3);
    }

    #[test]
    fn explicit_hash_keys() {
        assert_eq!(ExplicitHashKey::parse("0").unwrap().value(), 0);
        assert_eq!(
            ExplicitHashKey::parse("340282366920938463463374607431768211455")
                .unwrap()
                .value(),
            u128::MAX
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "abc",
            " 1",
            "340282366920938463463374607431768211456",
        ] {
            assert!(ExplicitHashKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_keys_are_valid_and_differ() {
        let a = PartitionKey::random();
        let b = PartitionKey::random();
        assert_ne!(a, b);
        assert!(PartitionKey::parse(a.as_str()).is_ok());
    }
}
