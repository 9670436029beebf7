//! The validation pass over the merged settings: every value a user can get wrong is checked
//! once, at startup, and refused with a message naming the setting (exit code 78), instead of
//! misbehaving under load later.

use super::{
    invalid, ConfigError, Settings, StreamLimit, KINESIS_MAX_BATCH_BYTES,
    KINESIS_MAX_BATCH_RECORDS, KINESIS_MAX_RECORD_BYTES,
};
use crate::domain::{Region, StreamPattern};

impl Settings {
    /// Checks every value a user can get wrong, naming the setting in the message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        Region::parse(&self.kinesis.default_region)
            .map_err(|e| invalid("kinesis.default_region", e.to_string()))?;
        for region in &self.kinesis.allowed_regions {
            if region != "*" {
                Region::parse(region)
                    .map_err(|e| invalid("kinesis.allowed_regions", e.to_string()))?;
            }
        }
        let endpoint = &self.kinesis.endpoint_url;
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "kinesis.endpoint_url",
                format!("must start with http:// or https:// (got {endpoint:?})"),
            ));
        }
        in_range(
            "server.listen_backlog",
            self.server.listen_backlog as usize,
            1,
            65_535,
        )?;
        positive("kinesis.call_timeout_ms", self.kinesis.call_timeout_ms)?;
        positive(
            "kinesis.connect_timeout_ms",
            self.kinesis.connect_timeout_ms,
        )?;
        positive(
            "kinesis.readiness_probe_interval_ms",
            self.kinesis.readiness_probe_interval_ms,
        )?;
        in_range(
            "kinesis.default_max_record_bytes",
            self.kinesis.default_max_record_bytes,
            1,
            KINESIS_MAX_RECORD_BYTES,
        )?;
        for pattern in self
            .streams
            .allow
            .iter()
            .chain(&self.streams.ack_on_enqueue)
            .chain(&self.streams.ack_on_disk)
            .chain(&self.streams.ordered)
            .chain(&self.streams.aggregate)
            .chain(&self.streams.envelope)
        {
            StreamPattern::parse(pattern).map_err(|message| {
                invalid(
                    "streams.allow / streams.ack_on_enqueue / streams.ack_on_disk / streams.ordered / streams.aggregate / streams.envelope",
                    message,
                )
            })?;
        }
        self.validate_stream_lists()?;
        self.server
            .trusted_proxy_networks()
            .map_err(|message| invalid("server.trusted_proxies", message))?;
        let b = &self.batching;
        in_range(
            "batching.max_batch_records",
            b.max_batch_records,
            1,
            KINESIS_MAX_BATCH_RECORDS,
        )?;
        in_range(
            "batching.max_batch_bytes",
            b.max_batch_bytes,
            1024,
            KINESIS_MAX_BATCH_BYTES,
        )?;
        in_range(
            "batching.max_in_flight_calls",
            b.max_in_flight_calls,
            1,
            1024,
        )?;
        in_range(
            "batching.queue_max_records",
            b.queue_max_records,
            1,
            10_000_000,
        )?;
        in_range(
            "batching.aggregate_max_bytes",
            b.aggregate_max_bytes,
            1_024,
            KINESIS_MAX_RECORD_BYTES,
        )?;
        if b.queue_max_bytes < self.kinesis.default_max_record_bytes {
            return Err(invalid(
                "batching.queue_max_bytes",
                format!(
                    "must be at least kinesis.default_max_record_bytes ({}), or no record of the largest allowed size could ever be queued",
                    self.kinesis.default_max_record_bytes
                ),
            ));
        }
        if self.limits.max_records_per_request > b.queue_max_records {
            return Err(invalid(
                "limits.max_records_per_request",
                format!(
                    "must not exceed batching.queue_max_records ({}), or a full request could never be admitted",
                    b.queue_max_records
                ),
            ));
        }
        let sh = &self.shards;
        at_least("shards.map_refresh_ms", sh.map_refresh_ms, 1_000)?;
        positive(
            "shards.records_per_second",
            u64::from(sh.records_per_second),
        )?;
        at_least(
            "shards.bytes_per_second",
            u64::from(sh.bytes_per_second),
            1_024,
        )?;
        share("shards.decrease_factor", sh.decrease_factor, false)?;
        share("shards.min_share", sh.min_share, true)?;
        share("shards.increase_step", sh.increase_step, true)?;
        share("shards.max_backlog_share", sh.max_backlog_share, true)?;
        for entry in &sh.stream_limits {
            StreamLimit::parse(entry)
                .map_err(|message| invalid("shards.stream_limits", message))?;
        }
        in_range("shards.gather_ms", sh.gather_ms as usize, 0, 1_000)?;
        positive("shards.decrease_interval_ms", sh.decrease_interval_ms)?;
        positive("shards.increase_interval_ms", sh.increase_interval_ms)?;
        positive("retry.record_deadline_ms", self.retry.record_deadline_ms)?;
        positive("retry.backoff_base_ms", self.retry.backoff_base_ms)?;
        if self.retry.backoff_max_ms < self.retry.backoff_base_ms {
            return Err(invalid(
                "retry.backoff_max_ms",
                "must be at least retry.backoff_base_ms",
            ));
        }
        in_range(
            "limits.max_body_bytes",
            self.limits.max_body_bytes,
            64,
            256 * 1024 * 1024,
        )?;
        in_range(
            "limits.max_decoded_body_bytes",
            self.limits.max_decoded_body_bytes,
            self.limits.max_body_bytes,
            1024 * 1024 * 1024,
        )
        .map_err(|_| {
            invalid(
                "limits.max_decoded_body_bytes",
                format!(
                    "must be between limits.max_body_bytes ({}, an uncompressed body is its own decoded size) and 1073741824 (got {})",
                    self.limits.max_body_bytes, self.limits.max_decoded_body_bytes
                ),
            )
        })?;
        let limits = &self.limits;
        in_range_u64(
            "limits.body_timeout_ms",
            limits.body_timeout_ms,
            100,
            3_600_000,
        )?;
        // The largest body allowed must fit in the budget, or it could never be served.
        let (budget, largest) = (
            limits.max_buffered_body_bytes,
            limits.max_decoded_body_bytes,
        );
        if budget < largest {
            let why = format!(
                "must be at least limits.max_decoded_body_bytes ({largest}) (got {budget})"
            );
            return Err(invalid("limits.max_buffered_body_bytes", why));
        }
        in_range(
            "limits.max_records_per_request",
            self.limits.max_records_per_request,
            1,
            1_000_000,
        )?;
        in_range("limits.max_pipelines", self.limits.max_pipelines, 1, 10_000)?;
        at_least(
            "limits.pipeline_idle_timeout_ms",
            self.limits.pipeline_idle_timeout_ms,
            100,
        )?;
        // DescribeStreamSummary is limited to 20 calls/s per account: a missing stream must
        // not be asked about on every request.
        at_least(
            "limits.missing_stream_ttl_ms",
            self.limits.missing_stream_ttl_ms,
            1_000,
        )?;
        self.validate_ack_levels()?;
        self.validate_spool()?;
        self.tls
            .validate()
            .map_err(|(setting, message)| invalid(setting, message))?;
        let keys = self.auth.api_keys(&self.streams.allow)?;
        if self.auth.required && keys.is_empty() {
            return Err(invalid(
                "auth.keys",
                "auth.required is true but no keys are configured: add `name:key` entries to auth.keys or auth.keys_file (or KINESIS_PROXY__AUTH__KEYS=\"name:key,...\"), or set auth.required = false deliberately",
            ));
        }
        let origins = self
            .cors
            .origins()
            .map_err(|message| invalid("cors.allowed_origins", message))?;
        if keys.iter().any(|k| k.public) {
            // A public key is only as good as the origin check: with no list there is no page
            // it could be used from, and "*" would accept it from any page.
            if !matches!(origins, super::CorsOrigins::Exact(_)) {
                return Err(invalid(
                    "auth.public_keys",
                    "public keys are accepted only from the pages of cors.allowed_origins, so it must list their origins (\"*\" is refused: any site could then use the keys)",
                ));
            }
            if !self.auth.required {
                return Err(invalid(
                    "auth.public_keys",
                    "auth.required = false checks no key at all, so the public keys' stream scopes and origin rule would not apply; set auth.required = true or remove them",
                ));
            }
        }
        in_range(
            "cors.max_age_secs",
            usize::try_from(self.cors.max_age_secs).unwrap_or(usize::MAX),
            0,
            super::cors::MAX_PREFLIGHT_AGE_SECS as usize,
        )?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("must be \"text\" or \"json\" (got {:?})", self.log.format),
            ));
        }
        if !matches!(self.log.access.as_str(), "all" | "errors" | "off") {
            return Err(invalid(
                "log.access",
                format!(
                    "must be \"all\", \"errors\" or \"off\" (got {:?})",
                    self.log.access
                ),
            ));
        }
        Ok(())
    }

    /// The `[spool]` bounds: sizes that keep a segment and the spool's bound consistent, and
    /// group-commit bounds that cannot hold a client for long.
    fn validate_spool(&self) -> Result<(), ConfigError> {
        let sp = &self.spool;
        if sp.dir.trim().is_empty() {
            return Err(invalid("spool.dir", "must name a directory"));
        }
        let mib = 1024 * 1024;
        in_range_u64("spool.segment_bytes", sp.segment_bytes, mib, 1024 * mib)?;
        if sp.max_bytes < 2 * sp.segment_bytes {
            return Err(invalid(
                "spool.max_bytes",
                format!(
                    "must be at least twice spool.segment_bytes ({}), or the segment being written and one waiting for deletion could fill it (got {})",
                    sp.segment_bytes, sp.max_bytes
                ),
            ));
        }
        in_range_u64(
            "spool.commit_interval_us",
            sp.commit_interval_us,
            0,
            100_000,
        )?;
        in_range_u64(
            "spool.commit_max_bytes",
            sp.commit_max_bytes,
            4_096,
            256 * mib,
        )?;
        in_range_u64("spool.read_delay_ms", sp.read_delay_ms, 0, 1_000)?;
        in_range_u64("spool.failed_max_bytes", sp.failed_max_bytes, 0, 1 << 40)?;
        in_range_u64(
            "spool.done_sync_interval_ms",
            sp.done_sync_interval_ms,
            1,
            60_000,
        )?;
        Ok(())
    }
}

fn positive(setting: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(setting, "must be greater than 0"));
    }
    Ok(())
}

/// A fraction in (0, 1), or (0, 1] when `one_allowed`.
fn share(setting: &str, value: f64, one_allowed: bool) -> Result<(), ConfigError> {
    let fits = value > 0.0 && (value < 1.0 || (one_allowed && value == 1.0));
    if !fits {
        let range = if one_allowed { "(0, 1]" } else { "(0, 1)" };
        return Err(invalid(
            setting,
            format!("must be a fraction in {range} (got {value})"),
        ));
    }
    Ok(())
}

fn at_least(setting: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(
            setting,
            format!("must be at least {min} (got {value})"),
        ));
    }
    Ok(())
}

fn in_range_u64(setting: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} (got {value})"),
        ));
    }
    Ok(())
}

fn in_range(setting: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} (got {value})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
