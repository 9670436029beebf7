//! Rate limits per API key and per stream, in events/s and bytes/s (what Kinesis counts: data +
//! partition key), with `governor`'s GCRA limiters. State is bounded: one limiter per configured
//! key (keys come from the configuration, never from requests), and one per (region, stream)
//! pipeline, of which there are at most `limits.max_pipelines`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use super::error::ApiError;
use crate::config::{RateLimitSettings, Settings};
use crate::domain::{Region, StreamName};

/// A rate and its burst; `None` when the limit is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `per_second` 0 turns the limit off; `burst` 0 picks `max(per_second, largest_request)`,
    /// so every request the proxy accepts can pass the limiter once it is idle.
    pub fn from_settings(per_second: u32, burst: u32, largest_request: usize) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let largest = u32::try_from(largest_request).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(if burst == 0 {
            per_second.get().max(largest)
        } else {
            burst
        })?;
        Some(Self { per_second, burst })
    }

    fn limiter(self) -> DefaultDirectRateLimiter {
        DefaultDirectRateLimiter::direct(Quota::per_second(self.per_second).allow_burst(self.burst))
    }
}

/// The events and bytes limiters of one key or stream.
#[derive(Debug)]
struct Limiter {
    events: Option<DefaultDirectRateLimiter>,
    bytes: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    fn new(events: Option<Rate>, bytes: Option<Rate>) -> Option<Self> {
        if events.is_none() && bytes.is_none() {
            return None;
        }
        Some(Self {
            events: events.map(Rate::limiter),
            bytes: bytes.map(Rate::limiter),
        })
    }

    /// Takes `events` and `bytes` from the buckets, or says how long to wait.
    fn check(&self, events: usize, bytes: usize) -> Result<(), Duration> {
        for (limiter, amount) in [(&self.events, events), (&self.bytes, bytes)] {
            let (Some(limiter), Some(amount)) = (
                limiter,
                NonZeroU32::new(u32::try_from(amount).unwrap_or(u32::MAX)),
            ) else {
                continue;
            };
            match limiter.check_n(amount) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(not_until.wait_time_from(DefaultClock::default().now()))
                }
                // Larger than the burst: only possible with a burst set below the largest
                // request; waiting a second is the honest answer the client can act on.
                Err(_) => return Err(Duration::from_secs(1)),
            }
        }
        Ok(())
    }
}

pub struct RateLimits {
    key_rates: (Option<Rate>, Option<Rate>),
    stream_rates: (Option<Rate>, Option<Rate>),
    /// One per configured key name; built at startup.
    per_key: HashMap<String, Limiter>,
    /// Used when authentication is off: all anonymous clients share it.
    anonymous: Option<Limiter>,
    per_stream: RwLock<HashMap<(Region, StreamName), Arc<Limiter>>>,
}

impl RateLimits {
    pub fn new(settings: &Settings, key_names: &[&str]) -> Self {
        let r: &RateLimitSettings = &settings.rate_limits;
        let max_events = settings.limits.max_records_per_request;
        let max_bytes = settings.limits.max_body_bytes;
        let key_rates = (
            Rate::from_settings(r.key_events_per_second, r.key_events_burst, max_events),
            Rate::from_settings(r.key_bytes_per_second, r.key_bytes_burst, max_bytes),
        );
        let stream_rates = (
            Rate::from_settings(
                r.stream_events_per_second,
                r.stream_events_burst,
                max_events,
            ),
            Rate::from_settings(r.stream_bytes_per_second, r.stream_bytes_burst, max_bytes),
        );
        let per_key = key_names
            .iter()
            .filter_map(|name| {
                Limiter::new(key_rates.0, key_rates.1).map(|l| ((*name).to_owned(), l))
            })
            .collect();
        Self {
            key_rates,
            stream_rates,
            per_key,
            anonymous: Limiter::new(key_rates.0, key_rates.1),
            per_stream: RwLock::new(HashMap::new()),
        }
    }

    /// Checks the caller's key (`None` when authentication is off) and then the stream.
    pub fn check(
        &self,
        key: Option<&str>,
        region: &Region,
        stream: &StreamName,
        events: usize,
        bytes: usize,
    ) -> Result<(), ApiError> {
        if self.key_rates.0.is_some() || self.key_rates.1.is_some() {
            let limiter = match key {
                Some(name) => self.per_key.get(name),
                None => self.anonymous.as_ref(),
            };
            if let Some(limiter) = limiter {
                limiter.check(events, bytes).map_err(|wait| {
                    rate_limited(
                        wait,
                        "this API key's rate limit (rate_limits.key_*)".to_owned(),
                    )
                })?;
            }
        }
        if let Some(limiter) = self.stream_limiter(region, stream) {
            limiter.check(events, bytes).map_err(|wait| {
                rate_limited(
                    wait,
                    format!("stream {stream}'s rate limit (rate_limits.stream_*)"),
                )
            })?;
        }
        Ok(())
    }

    fn stream_limiter(&self, region: &Region, stream: &StreamName) -> Option<Arc<Limiter>> {
        if self.stream_rates.0.is_none() && self.stream_rates.1.is_none() {
            return None;
        }
        let key = (region.clone(), stream.clone());
        if let Some(limiter) = self
            .per_stream
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Some(limiter.clone());
        }
        let mut map = self.per_stream.write().unwrap_or_else(|p| p.into_inner());
        let limiter = map
            .entry(key)
            .or_insert_with(|| {
                Arc::new(
                    Limiter::new(self.stream_rates.0, self.stream_rates.1).unwrap_or(Limiter {
                        events: None,
                        bytes: None,
                    }),
                )
            })
            .clone();
        Some(limiter)
    }
}

fn rate_limited(wait: Duration, which: String) -> ApiError {
    ApiError::RateLimited {
        message: format!(
            "request exceeds {which}; retry after {} ms",
            wait.as_millis().max(1)
        ),
        retry_after: wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(events: u32, burst: u32) -> Settings {
        let mut s = Settings::default();
        s.rate_limits.key_events_per_second = events;
        s.rate_limits.key_events_burst = burst;
        s.rate_limits.stream_bytes_per_second = 1_000;
        s.rate_limits.stream_bytes_burst = 1_000;
        s
    }

    fn ids() -> (Region, StreamName) {
        (Region::us_west_2(), StreamName::parse("s").expect("name"))
    }

    #[test]
    fn burst_then_limited_with_a_wait() {
        let limits = RateLimits::new(&settings(10, 5), &["a", "b"]);
        let (region, stream) = ids();
        for _ in 0..5 {
            limits
                .check(Some("a"), &region, &stream, 1, 1)
                .expect("within burst");
        }
        let err = limits
            .check(Some("a"), &region, &stream, 1, 1)
            .expect_err("over");
        assert_eq!(err.code(), "rate_limited");
        let wait = err.retry_after().expect("retry after");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        limits
            .check(Some("b"), &region, &stream, 1, 1)
            .expect("own bucket");
    }

    #[test]
    fn stream_bytes_limit_applies_across_keys() {
        let limits = RateLimits::new(&settings(0, 0), &["a", "b"]);
        let (region, stream) = ids();
        limits
            .check(Some("a"), &region, &stream, 1, 600)
            .expect("first");
        let err = limits
            .check(Some("b"), &region, &stream, 1, 600)
            .expect_err("stream bucket shared");
        assert!(err.to_string().contains("stream s"), "{err}");
    }

    #[test]
    fn automatic_burst_fits_the_largest_request() {
        let rate = Rate::from_settings(100, 0, 10_000).expect("on");
        assert_eq!(rate.burst.get(), 10_000);
        assert!(Rate::from_settings(0, 50, 10).is_none(), "0 turns it off");
    }
}
