//! The layering of settings: the built-in defaults, then `config.toml` (or `--config PATH`),
//! then `KINESIS_PROXY__<SECTION>__<KEY>` environment variables, then one validation pass.
//!
//! Hand-written rather than on `figment` or `config`: both were evaluated. The defaults are
//! turned into a TOML tree first, so every setting exists with its type; an environment value is
//! then parsed as exactly that type, an unknown name is an error naming the variable, and a list
//! setting takes the documented comma form (`KINESIS_PROXY__STREAMS__ALLOW="events,clicks-*"`),
//! which neither crate parses without a custom provider. That is about 100 lines with no
//! dependency; the README says the same.

use std::collections::BTreeMap;
use std::path::Path;

use super::{invalid, ConfigError, Settings, ENV_PREFIX};

impl Settings {
    /// Loads `path` (or only the built-in defaults when `None`), applies the process
    /// environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            None => None,
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
        };
        let file_ref = file.as_ref().map(|(p, text)| (p.as_str(), text.as_str()));
        Self::from_sources(file_ref, std::env::vars())
    }

    /// The layering itself, free of process state so tests can feed it anything.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Start from the defaults as a TOML tree, so every setting exists with its type: an
        // environment value is then parsed as that type and an unknown name is an error.
        let mut tree =
            toml::Table::try_from(Settings::default()).map_err(|e| invalid("*", e.to_string()))?;
        if let Some((path, text)) = file {
            let parsed: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            merge(&mut tree, parsed);
            // A value of the wrong type or range is the file's fault only if it is there
            // before the environment is applied; checked here so it is not blamed on a variable.
            check_types(&tree).map_err(|message| ConfigError::Parse {
                path: path.to_owned(),
                message,
            })?;
        }
        let mut overrides: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in env {
            if let Some(rest) = key.strip_prefix(ENV_PREFIX) {
                overrides.insert(rest.to_owned(), value);
            }
        }
        for (rest, value) in overrides {
            apply_env(&mut tree, &rest, &value)?;
            // A value of the right TOML type can still not fit the setting (`-1` for a
            // `u64`): name the variable, not the config file.
            check_types(&tree).map_err(|message| ConfigError::Env {
                var: format!("{ENV_PREFIX}{rest}"),
                message: if message.contains(value.trim()) {
                    message
                } else {
                    format!("{message} (got {value:?})")
                },
            })?;
        }
        let source = file.map_or("defaults", |(p, _)| p).to_owned();
        let settings: Settings =
            toml::Value::Table(tree)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: e.to_string(),
                })?;
        settings.validate()?;
        Ok(settings)
    }
}

/// Whether `tree` reads as `Settings` (types and integer ranges); the reader's message if not.
/// Settings are a few dozen values, so trying once per source layer costs nothing noticeable.
fn check_types(tree: &toml::Table) -> Result<(), String> {
    toml::Value::Table(tree.clone())
        .try_into::<Settings>()
        .map(drop)
        .map_err(|e: toml::de::Error| {
            // serde names Rust types; say what they mean.
            let mut message = e.message().trim().to_owned();
            for (rust, words) in [
                (
                    "expected u64",
                    "expected a whole number from 0 to 18446744073709551615",
                ),
                (
                    "expected usize",
                    "expected a whole number from 0 to 18446744073709551615",
                ),
                (
                    "expected u32",
                    "expected a whole number from 0 to 4294967295",
                ),
            ] {
                message = message.replace(rust, words);
            }
            message
        })
}

/// Overlays `top` onto `base`, table by table, so a file may set only part of a section.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(top_table)) => {
                merge(base_table, top_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `SECTION__KEY` in `tree`, parsing `raw` as the type the setting already has.
fn apply_env(tree: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let var = format!("{ENV_PREFIX}{path}");
    let env_error = |message: String| ConfigError::Env {
        var: var.clone(),
        message,
    };
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let Some((leaf, sections)) = parts.split_last() else {
        return Err(env_error("names no setting".into()));
    };
    let mut table = tree;
    for section in sections {
        table = match table.get_mut(section) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(env_error(format!("unknown section {section:?}"))),
        };
    }
    let current = table
        .get(leaf)
        .ok_or_else(|| env_error(format!("unknown setting {leaf:?}")))?;
    let value = match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| env_error(format!("expected a whole number, got {raw:?}")))?,
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| env_error(format!("expected a number, got {raw:?}")))?,
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(env_error(format!("expected true or false, got {raw:?}"))),
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        toml::Value::Table(_) => return Err(env_error("names a section, not a setting".into())),
        toml::Value::Datetime(_) => return Err(env_error("unsupported setting type".into())),
    };
    table.insert(leaf.clone(), value);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::config) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(in crate::config) fn base() -> Vec<(String, String)> {
        env(&[("KINESIS_PROXY__AUTH__KEYS", "ci:secret-key-0123456789")])
    }

    #[test]
    fn env_overrides_scalars_and_lists_with_their_types() {
        let mut vars = base();
        vars.extend(env(&[
            ("KINESIS_PROXY__SERVER__LISTEN", "127.0.0.1:9000"),
            ("KINESIS_PROXY__BATCHING__LINGER_MS", "7"),
            ("KINESIS_PROXY__STREAMS__ALLOW", "events, clicks-*"),
            ("KINESIS_PROXY__AUTH__REQUIRED", "false"),
        ]));
        let s = Settings::from_sources(None, vars).expect("valid");
        assert_eq!(s.server.listen, "127.0.0.1:9000");
        assert_eq!(s.batching.linger_ms, 7);
        assert_eq!(s.streams.allow, vec!["events", "clicks-*"]);
        assert!(!s.auth.required);
    }

    #[test]
    fn file_sets_part_of_a_section_and_env_wins_over_file() {
        let file = "[batching]\nlinger_ms = 9\n[auth]\nkeys = [\"a:0123456789abcdef\"]\n";
        let s = Settings::from_sources(
            Some(("x.toml", file)),
            env(&[("KINESIS_PROXY__BATCHING__LINGER_MS", "3")]),
        )
        .expect("valid");
        assert_eq!(s.batching.linger_ms, 3);
        assert_eq!(s.batching.max_batch_records, 500);
    }

    #[test]
    fn a_value_out_of_the_settings_range_names_the_variable() {
        for (var, value) in [
            ("KINESIS_PROXY__BATCHING__LINGER_MS", "-1"),
            ("KINESIS_PROXY__SERVER__LISTEN_BACKLOG", "99999999999"),
        ] {
            let mut vars = base();
            vars.extend(env(&[(var, value)]));
            let err = Settings::from_sources(Some(("c.toml", "")), vars)
                .expect_err(var)
                .to_string();
            assert!(err.contains(var) && err.contains(value), "{err}");
            assert!(!err.contains("c.toml"), "{err}");
        }
        let err = Settings::from_sources(Some(("c.toml", "[batching]\nlinger_ms = -1\n")), base())
            .expect_err("negative in the file")
            .to_string();
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn auth_required_without_keys_is_refused() {
        let err = Settings::from_sources(None, Vec::new())
            .expect_err("no keys")
            .to_string();
        assert!(err.contains("auth.keys"), "{err}");
        Settings::from_sources(None, env(&[("KINESIS_PROXY__AUTH__REQUIRED", "false")]))
            .expect("explicit opt-out");
    }
}
