//! API key entries as configured: `name:key`, or `name:key:PATTERNS` to limit the key to some
//! streams, from `auth.keys` and `auth.keys_file`, and the publishable keys of
//! `auth.public_keys` (`name:key:PATTERNS`, the scope required: a key embedded in web pages is
//! read by anyone, so what it may write must be spelt out). The name is what logs and metrics
//! show; the key itself is never printed, not even in errors.
//!
//! PATTERNS are stream patterns as in `streams.allow`, separated by commas
//! (`web:KEY:events,clicks-*`). Since the environment form of a list setting is itself
//! comma-separated (`KINESIS_PROXY__AUTH__KEYS="web:KEY:events,clicks-*,batch:KEY2"`), an
//! entry without a colon continues the stream list of the entry before it, and the same line
//! means the same thing in the file, in a keys file and in the environment.
//!
//! Such a continuation could also be a key written without its name (`...,b:K:events,KEY`):
//! read as a pattern, the key would silently not be a key (with `allow = ["*"]`), or an error
//! would print it. So a continuation is taken as a pattern only where it cannot be a key: it is
//! shorter than a key may be, or a pattern of `streams.allow` other than `*` names or prefixes
//! it. Anything else is refused, naming the entry by its position, never by its text: no error
//! of this module contains key material.

use crate::domain::{StreamPattern, StreamPatterns};

/// Minimum key length: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// One configured API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyEntry {
    pub name: String,
    pub key: String,
    /// Stream patterns this key may write (within `streams.allow`); empty: every allowed stream.
    pub streams: Vec<String>,
    /// A publishable key (`auth.public_keys`): also taken from the `api_key` query parameter,
    /// and only from the pages of `cors.allowed_origins`.
    pub public: bool,
}

/// Which list entries come from: secret keys may leave out their scope, public keys may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("ApiKeyEntry")
            .field("name", &self.name)
            .field("streams", &self.streams)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ApiKeyEntry {
    /// The key's stream scope, or `None` when it may write every allowed stream.
    pub fn scope(&self) -> Option<StreamPatterns> {
        if self.streams.is_empty() {
            return None;
        }
        // Checked by parse_entries; an unparsable scope would allow nothing rather than all.
        Some(StreamPatterns::parse_all(&self.streams).unwrap_or_default())
    }
}

/// Parses `name:key[:patterns]` entries; names are unique, keys at least `MIN_KEY_LEN` long,
/// and each scope pattern can match some stream of `allow` (else the key could write nothing
/// it names, which is a typo, not a policy). Each entry comes with where it was written
/// ("auth.keys entry 3"), which is how errors name it. Entries of `KeyKind::Public` must have a
/// scope.
pub fn parse_entries(
    entries: &[(String, String)],
    allow: &[String],
    kind: KeyKind,
) -> Result<Vec<ApiKeyEntry>, String> {
    let allow: Vec<StreamPattern> = allow
        .iter()
        .filter_map(|p| StreamPattern::parse(p).ok())
        .collect();
    let mut keys: Vec<ApiKeyEntry> = Vec::with_capacity(entries.len());
    for (at, entry) in entries {
        if !entry.contains(':') {
            let entry = entry.trim();
            // A continuation of the previous entry's stream list (see the module doc).
            match keys.last_mut() {
                Some(last) if !last.streams.is_empty() && !entry.is_empty() => {
                    last.streams
                        .push(continued_pattern(at, entry, &last.name, &allow)?);
                    continue;
                }
                _ => {
                    return Err(format!(
                        "{at} is not `name:key` or `name:key:streams` (the entry is not shown: it may be a key)"
                    ))
                }
            }
        }
        let mut parts = entry.split(':');
        let (Some(name), Some(key), streams, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{at} has more than two ':'; write `name:key` or `name:key:streams` (keys may not contain ':'; the key itself is not shown)"
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "{at}: the name must be non-empty letters, digits, '_', '-', '.' (the entry is not shown: it may hold a key)"
            ));
        }
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "key {name:?} is shorter than {MIN_KEY_LEN} characters"
            ));
        }
        if keys.iter().any(|k| k.name == name) {
            return Err(format!("key name {name:?} appears twice"));
        }
        // One key under two names would be counted, limited and logged under whichever comes
        // first, with the other's scope silently ignored.
        if let Some(other) = keys.iter().find(|k| k.key == key) {
            return Err(format!(
                "keys {:?} and {name:?} are the same key; give each its own value (the key is not shown)",
                other.name
            ));
        }
        let streams = match streams {
            None if kind == KeyKind::Public => {
                return Err(format!(
                    "{at}: a public key needs a stream scope, `name:key:streams` (anyone can read a key embedded in a page, so it may write only the streams it names); the entry is not shown"
                ))
            }
            None => Vec::new(),
            Some(list) => {
                let patterns: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect();
                if patterns.is_empty() {
                    return Err(format!(
                        "key {name:?}: the stream list after the second ':' is empty; list stream patterns, or drop the ':' to allow every stream of streams.allow"
                    ));
                }
                patterns
                    .into_iter()
                    .map(|p| check_pattern(p, name, &allow))
                    .collect::<Result<_, _>>()?
            }
        };
        keys.push(ApiKeyEntry {
            name: name.to_owned(),
            key: key.to_owned(),
            streams,
            public: kind == KeyKind::Public,
        });
    }
    Ok(keys)
}

/// Secret and public keys together: a name names one key, and a key string is either secret or
/// public, never both (a key in a page's source is no longer secret, whatever the list says).
pub fn combine(
    mut secret: Vec<ApiKeyEntry>,
    public: Vec<ApiKeyEntry>,
) -> Result<Vec<ApiKeyEntry>, String> {
    for p in &public {
        if let Some(s) = secret.iter().find(|s| s.name == p.name) {
            return Err(format!(
                "key name {:?} is used by auth.keys (or auth.keys_file) and auth.public_keys; names must be unique",
                s.name
            ));
        }
        if let Some(s) = secret.iter().find(|s| s.key == p.key) {
            return Err(format!(
                "public key {:?} and secret key {:?} are the same key; a key embedded in pages cannot also be secret: give the secret key a new value (the key is not shown)",
                p.name, s.name
            ));
        }
    }
    secret.extend(public);
    Ok(secret)
}

/// A part without ':' after a scoped entry, as one more pattern of that entry's scope, if it
/// cannot be a key (see the module doc). Errors name it by position only: it may be a key.
fn continued_pattern(
    at: &str,
    raw: &str,
    name: &str,
    allow: &[StreamPattern],
) -> Result<String, String> {
    let ambiguous = || {
        format!(
            "{at} has no ':' and follows key {name:?}, whose stream list it would continue, but it could as well be a key written without its name (the entry is not shown). A key needs `name:key`; a stream pattern continued this way must be shorter than {MIN_KEY_LEN} characters or be named or prefixed by a pattern of streams.allow other than \"*\". Otherwise write the key's whole scope in one entry of auth.keys in the config file or of auth.keys_file (`{name}:KEY:a,b`)"
        )
    };
    let Ok(pattern) = StreamPattern::parse(raw) else {
        return Err(ambiguous());
    };
    let named_by_allow = allow
        .iter()
        .any(|a| *a != StreamPattern::Any && overlaps(a, &pattern));
    if raw.len() >= MIN_KEY_LEN && !named_by_allow {
        return Err(ambiguous());
    }
    if !allow.iter().any(|a| overlaps(a, &pattern)) {
        return Err(format!(
            "{at}: a stream pattern continuing key {name:?}'s list matches no stream of streams.allow, so the key could never write it (the entry is not shown: it may be a key)"
        ));
    }
    Ok(raw.to_owned())
}

fn check_pattern(raw: &str, name: &str, allow: &[StreamPattern]) -> Result<String, String> {
    let pattern = StreamPattern::parse(raw).map_err(|e| format!("key {name:?}: {e}"))?;
    if !allow.iter().any(|a| overlaps(a, &pattern)) {
        return Err(format!(
            "key {name:?}: stream pattern {raw:?} matches no stream of streams.allow, so the key could never write it"
        ));
    }
    Ok(raw.to_owned())
}

/// Whether some stream name matches both patterns.
fn overlaps(a: &StreamPattern, b: &StreamPattern) -> bool {
    use StreamPattern::{Any, Exact, Prefix};
    match (a, b) {
        (Any, _) | (_, Any) => true,
        (Exact(x), Exact(y)) => x == y,
        (Exact(name), Prefix(prefix)) | (Prefix(prefix), Exact(name)) => {
            name.starts_with(prefix.as_str())
        }
        (Prefix(x), Prefix(y)) => x.starts_with(y.as_str()) || y.starts_with(x.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[&str], allow: &[&str]) -> Result<Vec<ApiKeyEntry>, String> {
        let entries: Vec<(String, String)> = entries
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("entry {}", i + 1), s.to_string()))
            .collect();
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        parse_entries(&entries, &allow, KeyKind::Secret)
    }

    fn parse_public(entries: &[&str], allow: &[&str]) -> Result<Vec<ApiKeyEntry>, String> {
        let entries: Vec<(String, String)> = entries
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("auth.public_keys entry {}", i + 1), s.to_string()))
            .collect();
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        parse_entries(&entries, &allow, KeyKind::Public)
    }

    #[test]
    fn a_public_key_needs_a_scope_and_is_named_by_position() {
        let err = parse_public(
            &["web:pub0123456789abcd:events", "site:pubSECRETISH0123"],
            &["events"],
        )
        .expect_err("no scope");
        assert!(err.contains("auth.public_keys entry 2"), "{err}");
        assert!(!err.contains("pubSECRETISH0123"), "{err}");
        // The environment form, split at commas, reads the same.
        let keys =
            parse_public(&["web:pub0123456789abcd:events", "clicks-*"], &["*"]).expect("valid");
        assert_eq!(keys[0].streams, vec!["events", "clicks-*"]);
        assert!(keys[0].public);
    }

    #[test]
    fn one_key_under_two_names_is_refused_without_showing_it() {
        let err = parse(
            &["a:0123456789abcdef", "b:0123456789abcdef:events"],
            &["events"],
        )
        .expect_err("same key twice");
        assert!(err.contains("\"a\"") && err.contains("\"b\""), "{err}");
        assert!(!err.contains("0123456789abcdef"), "{err}");
    }

    #[test]
    fn secret_and_public_keys_share_no_name_and_no_key() {
        let secret = parse(&["a:0123456789abcdef"], &["events"]).expect("valid");
        let same_name = parse_public(&["a:pub0123456789abcd:events"], &["events"]).expect("ok");
        let err = combine(secret.clone(), same_name).expect_err("same name");
        assert!(err.contains("\"a\""), "{err}");
        let same_key = parse_public(&["p:0123456789abcdef:events"], &["events"]).expect("ok");
        let err = combine(secret.clone(), same_key).expect_err("same key");
        assert!(!err.contains("0123456789abcdef"), "{err}");
        let other = parse_public(&["p:pub0123456789abcd:events"], &["events"]).expect("ok");
        let all = combine(secret, other).expect("distinct");
        assert_eq!(
            all.iter()
                .map(|k| (k.name.as_str(), k.public))
                .collect::<Vec<_>>(),
            [("a", false), ("p", true)]
        );
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_keys() {
        for bad in [
            "nokey",
            ":0123456789abcdef",
            "a:short",
            "bad name:0123456789abcdef",
            "a:0123456789abcdef:",
            "a:0123456789abcdef:bad/stream",
            "a:0123456789abcdef:events:more",
            "a:0123456789abcdef:other",
        ] {
            let err = parse(&[bad], &["events", "clicks-*"]).expect_err(bad);
            assert!(!err.contains("0123456789abcdef"), "{err}");
        }
        assert!(parse(&["a:0123456789abcdef", "a:0123456789abcdeX"], &["*"]).is_err());
        // A bare pattern with no scoped entry before it is not a continuation.
        assert!(parse(&["a:0123456789abcdef", "events"], &["*"]).is_err());
    }

    #[test]
    fn a_nameless_key_after_a_scoped_one_is_refused_by_position_never_echoed() {
        let key = "MySecretKeyWithNoName123";
        for allow in [
            &["*"][..],
            &["events"],
            &["events", "*"],
            &["events", "My*"],
        ] {
            let entries = ["a:0123456789abcdef", "b:fedcba9876543210:events", key];
            let Err(err) = parse(&entries, allow) else {
                // Only a pattern of the allow-list that names it makes it a pattern.
                assert_eq!(allow, &["events", "My*"]);
                continue;
            };
            assert!(err.contains("entry 3"), "{err}");
            assert!(!err.contains(key), "{err}");
        }
        // Not a stream pattern at all (a key with a character no stream name has).
        let err = parse(&["b:fedcba9876543210:events", "My/Secret+Key=0123"], &["*"])
            .expect_err("not a pattern");
        assert!(err.contains("entry 2") && !err.contains("Secret"), "{err}");
        // Short parts cannot be keys, so they continue the list even under "*".
        let keys = parse(&["b:fedcba9876543210:events", "clicks-*"], &["*"]).expect("valid");
        assert_eq!(keys[0].streams, vec!["events", "clicks-*"]);
        // Long stream names continue it when the allow-list names them.
        let keys = parse(
            &["b:fedcba9876543210:events", "clickstream-events-eu"],
            &["events", "clickstream-*"],
        )
        .expect("valid");
        assert_eq!(keys[0].streams, vec!["events", "clickstream-events-eu"]);
    }

    #[test]
    fn the_plain_form_has_no_scope_and_scopes_read_the_same_in_every_form() {
        let plain = parse(&["web:0123456789abcdef"], &["events"]).expect("valid");
        assert_eq!(plain[0].key, "0123456789abcdef");
        assert!(plain[0].scope().is_none());
        let inline = parse(
            &[
                "web:0123456789abcdef:events,clicks-*",
                "batch:fedcba9876543210",
            ],
            &["events", "clicks-*"],
        )
        .expect("valid");
        // What KINESIS_PROXY__AUTH__KEYS="web:K:events,clicks-*,batch:K2" becomes once split.
        let from_env = parse(
            &[
                "web:0123456789abcdef:events",
                "clicks-*",
                "batch:fedcba9876543210",
            ],
            &["events", "clicks-*"],
        )
        .expect("valid");
        assert_eq!(inline, from_env);
        assert_eq!(inline[0].streams, vec!["events", "clicks-*"]);
        assert_eq!(inline[0].key, "0123456789abcdef");
        assert!(inline[1].streams.is_empty());
    }

    #[test]
    fn a_scope_must_overlap_the_allow_list() {
        assert!(parse(&["a:0123456789abcdef:clicks-eu"], &["clicks-*"]).is_ok());
        assert!(parse(&["a:0123456789abcdef:clicks-*"], &["clicks-eu"]).is_ok());
        assert!(parse(&["a:0123456789abcdef:click*"], &["clicks-*"]).is_ok());
        assert!(parse(&["a:0123456789abcdef:*"], &["events"]).is_ok());
        assert!(parse(&["a:0123456789abcdef:events"], &["*"]).is_ok());
        assert!(parse(&["a:0123456789abcdef:views-*"], &["clicks-*", "events"]).is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let entries = parse(&["web:0123456789abcdef:events"], &["events"]).expect("valid");
        assert!(!format!("{entries:?}").contains("0123"));
    }
}
