//! API key entries as configured: `name:key`, from `auth.keys` and `auth.keys_file`. The name
//! is what logs and metrics show; the key itself is never printed, not even in errors.

/// Minimum key length: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// One configured API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyEntry {
    pub name: String,
    pub key: String,
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("ApiKeyEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Parses `name:key` entries; names are unique, keys at least `MIN_KEY_LEN` long.
pub fn parse_entries(entries: &[String]) -> Result<Vec<ApiKeyEntry>, String> {
    let mut keys: Vec<ApiKeyEntry> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Some((name, key)) = entry.split_once(':') else {
            return Err(format!(
                "entry {i} is not `name:key` (the key itself is not shown)"
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "entry {i}: the name must be non-empty letters, digits, '_', '-', '.'"
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
        keys.push(ApiKeyEntry {
            name: name.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_refused_without_echoing_keys() {
        for bad in [
            "nokey",
            ":0123456789abcdef",
            "a:short",
            "bad name:0123456789abcdef",
        ] {
            let err = parse_entries(&[bad.into()]).expect_err(bad);
            assert!(!err.contains("0123456789abcdef"), "{err}");
        }
        assert!(
            parse_entries(&["a:0123456789abcdef".into(), "a:0123456789abcdeX".into()]).is_err()
        );
    }

    #[test]
    fn debug_hides_keys() {
        let entries = parse_entries(&["web:0123456789abcdef".into()]).expect("valid");
        assert!(!format!("{entries:?}").contains("0123"));
    }
}
