//! SIGHUP: re-reads what can change while the proxy runs (the API keys of `auth.keys`,
//! `auth.keys_file` and `auth.public_keys` with their scopes, the JSON Schemas of `streams.schemas`, and the TLS
//! certificate, key and client CA) and swaps
//! it in whole: requests in flight finish with the old set, new ones use the new. Anything
//! that fails to load or validate changes nothing and is logged as one ERROR naming the file
//! and the problem. Other settings need a restart; changing them and sending SIGHUP logs
//! which ones were left as they are. A SIGHUP never ends the process.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::web;
use metrics::{Counter, Gauge};

use crate::config::{ConfigError, Settings};
use crate::http::auth::ApiKeys;
use crate::http::schemas::Schemas;
use crate::http::tls::Tls;
use crate::http::{ApiKeyMetrics, AppState};
use crate::telemetry::{CONFIG_LAST_RELOAD, CONFIG_RELOADS, TLS_CERTIFICATE_EXPIRY};

/// Where a reload reads the settings from: the same file and environment as at startup.
pub type SettingsSource = Arc<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Applies reloads to a running application.
pub struct Reloader {
    source: SettingsSource,
    /// The settings the process runs with: what a reload compares against to say which
    /// changes wait for a restart.
    running: Arc<Settings>,
    state: web::Data<AppState>,
    tls: Option<Arc<Tls>>,
    succeeded: Counter,
    failed: Counter,
    last_success: Gauge,
}

impl Reloader {
    pub fn new(source: SettingsSource, state: web::Data<AppState>, tls: Option<Arc<Tls>>) -> Self {
        let reloader = Self {
            source,
            running: state.settings.clone(),
            state,
            tls,
            succeeded: metrics::counter!(CONFIG_RELOADS, "result" => "ok"),
            failed: metrics::counter!(CONFIG_RELOADS, "result" => "error"),
            last_success: metrics::gauge!(CONFIG_LAST_RELOAD),
        };
        // The configuration loaded at startup is the first successful load.
        reloader.succeeded.increment(0);
        reloader.failed.increment(0);
        reloader.last_success.set(unix_now());
        reloader.publish_certificate_expiry();
        reloader
    }

    /// Reloads, logs and counts the outcome. Reads files: call it off the async workers.
    pub fn reload(&self) {
        match self.try_reload() {
            Ok((keys, ignored)) => {
                self.succeeded.increment(1);
                self.last_success.set(unix_now());
                self.publish_certificate_expiry();
                if ignored.is_empty() {
                    tracing::info!(keys, tls = self.tls.is_some(), "configuration reloaded");
                } else {
                    tracing::warn!(
                        keys,
                        tls = self.tls.is_some(),
                        ignored = %ignored.join(", "),
                        "configuration reloaded; these changed settings take effect only after a restart"
                    );
                }
            }
            Err(error) => {
                self.failed.increment(1);
                tracing::error!(%error, "configuration reload failed; the running configuration stays in use");
            }
        }
    }

    /// All or nothing: every file is read and checked before anything is swapped. Returns the
    /// number of keys and the changed settings that need a restart.
    fn try_reload(&self) -> Result<(usize, Vec<String>), String> {
        let settings = (self.source)().map_err(|e| e.to_string())?;
        let entries = settings
            .auth
            .api_keys(&settings.streams.allow)
            .map_err(|e| e.to_string())?;
        let keys = ApiKeys::new(entries);
        // Compiled before anything is swapped: a schema that does not compile keeps them all.
        let schemas = Schemas::load(&settings)?;
        if let Some(tls) = &self.tls {
            tls.reload().map_err(|e| e.to_string())?;
        }
        let names = keys.names();
        let count = names.len();
        self.state.rate_limits.set_keys(&names);
        self.state
            .key_metrics
            .store(Arc::new(ApiKeyMetrics::new(&names)));
        self.state.api_keys.store(Arc::new(keys));
        self.state.schemas.store(Arc::new(schemas));
        Ok((count, changed_settings(&self.running, &settings)))
    }

    fn publish_certificate_expiry(&self) {
        if let Some(tls) = &self.tls {
            metrics::gauge!(TLS_CERTIFICATE_EXPIRY).set(tls.certificate_not_after_unix());
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The settings (as `section.key`) that differ between `running` and `loaded`, leaving out
/// those a reload applies: `auth.keys`, `auth.keys_file` and `auth.public_keys`. (TLS files are re-read from the
/// paths in use; new paths are a restart's.)
pub fn changed_settings(running: &Settings, loaded: &Settings) -> Vec<String> {
    let table = |s: &Settings| toml::Table::try_from(s).unwrap_or_default();
    let (before, after) = (table(running), table(loaded));
    let mut changed = Vec::new();
    for (section, value) in &after {
        let (Some(old), Some(new)) = (
            before.get(section).and_then(toml::Value::as_table),
            value.as_table(),
        ) else {
            if before.get(section) != Some(value) {
                changed.push(section.clone());
            }
            continue;
        };
        for (key, value) in new {
            let reloadable = (section == "auth"
                && (key == "keys" || key == "keys_file" || key == "public_keys"))
                || (section == "streams" && key == "schemas");
            if !reloadable && old.get(key) != Some(value) {
                changed.push(format!("{section}.{key}"));
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_a_reload_cannot_apply_are_reported() {
        let running = Settings::default();
        let mut loaded = Settings::default();
        loaded.auth.keys = vec!["a:0123456789abcdef".into()];
        loaded.auth.keys_file = "/etc/keys".into();
        loaded.auth.public_keys = vec!["p:pub0123456789abcd:events".into()];
        assert!(changed_settings(&running, &loaded).is_empty());
        loaded.server.listen = "127.0.0.1:9".into();
        loaded.batching.linger_ms = 1;
        loaded.tls.cert_file = "new.pem".into();
        let mut changed = changed_settings(&running, &loaded);
        changed.sort();
        assert_eq!(
            changed,
            ["batching.linger_ms", "server.listen", "tls.cert_file"]
        );
    }
}
