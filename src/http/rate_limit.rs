//! Rate limits per API key and per stream, in events/s and bytes/s (what Kinesis counts: data +
//! partition key), with `governor`'s GCRA limiters. State is bounded: one limiter per configured
//! key (keys come from the configuration, never from requests), and one per (region, stream)
//! pipeline, of which there are at most `limits.max_pipelines`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
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
    /// `per_second` 0 turns the limit off; `burst` 0 means one second's worth.
    pub fn from_settings(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Some(Self { per_second, burst })
    }

    fn limiter(self) -> DefaultDirectRateLimiter {
        DefaultDirectRateLimiter::direct(Quota::per_second(self.per_second).allow_burst(self.burst))
    }
}

/// Why a limiter refused.
enum Refused {
    /// Over the rate now: retry after this long.
    Wait(Duration),
    /// Larger than the burst: it can never pass.
    TooLarge {
        amount: u32,
        burst: u32,
        unit: &'static str,
    },
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

    /// Takes `events` and `bytes` from the buckets, or says why not.
    fn check(&self, events: usize, bytes: usize) -> Result<(), Refused> {
        for (limiter, amount, unit) in [
            (&self.events, events, "events"),
            (&self.bytes, bytes, "bytes"),
        ] {
            let (Some(limiter), Some(amount)) = (
                limiter,
                NonZeroU32::new(u32::try_from(amount).unwrap_or(u32::MAX)),
            ) else {
                continue;
            };
            match limiter.check_n(amount) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(Refused::Wait(
                        not_until.wait_time_from(DefaultClock::default().now()),
                    ))
                }
                // More than the bucket holds: waiting never helps.
                Err(capacity) => {
                    return Err(Refused::TooLarge {
                        amount: amount.get(),
                        burst: capacity.0,
                        unit,
                    })
                }
            }
        }
        Ok(())
    }
}

pub struct RateLimits {
    key_rates: (Option<Rate>, Option<Rate>),
    stream_rates: (Option<Rate>, Option<Rate>),
    /// One per configured key name; built at startup, rebuilt when the keys are reloaded
    /// (`set_keys`), keeping the limiter, and so the budget, of every name that stays.
    per_key: ArcSwap<HashMap<String, Arc<Limiter>>>,
    /// Used when authentication is off: all anonymous clients share it.
    anonymous: Option<Limiter>,
    per_stream: RwLock<HashMap<(Region, StreamName), Arc<Limiter>>>,
    /// Past this many stream limiters, those of streams without a pipeline are dropped, so the
    /// map stays bounded as pipelines come and go.
    max_streams: usize,
}

impl RateLimits {
    pub fn new(settings: &Settings, key_names: &[&str]) -> Self {
        let r: &RateLimitSettings = &settings.rate_limits;
        let key_rates = (
            Rate::from_settings(r.key_events_per_second, r.key_events_burst),
            Rate::from_settings(r.key_bytes_per_second, r.key_bytes_burst),
        );
        let stream_rates = (
            Rate::from_settings(r.stream_events_per_second, r.stream_events_burst),
            Rate::from_settings(r.stream_bytes_per_second, r.stream_bytes_burst),
        );
        let limits = Self {
            key_rates,
            stream_rates,
            per_key: ArcSwap::default(),
            anonymous: Limiter::new(key_rates.0, key_rates.1),
            per_stream: RwLock::new(HashMap::new()),
            max_streams: settings.limits.max_pipelines,
        };
        limits.set_keys(key_names);
        limits
    }

    /// The keys are now `key_names`: new names get a full budget, names that stay keep theirs.
    pub fn set_keys(&self, key_names: &[&str]) {
        let current = self.per_key.load();
        let per_key = key_names
            .iter()
            .filter_map(|&name| {
                let limiter = match current.get(name) {
                    Some(kept) => Some(kept.clone()),
                    None => Limiter::new(self.key_rates.0, self.key_rates.1).map(Arc::new),
                };
                limiter.map(|l| (name.to_owned(), l))
            })
            .collect();
        self.per_key.store(Arc::new(per_key));
    }

    /// Checks the caller's key (`None` when authentication is off) and then the stream.
    /// `is_running` tells which streams still have a pipeline (their limiters are kept).
    pub fn check(
        &self,
        key: Option<&str>,
        region: &Region,
        stream: &StreamName,
        events: usize,
        bytes: usize,
        is_running: impl Fn(&Region, &StreamName) -> bool,
    ) -> Result<(), ApiError> {
        if self.key_rates.0.is_some() || self.key_rates.1.is_some() {
            let per_key = self.per_key.load();
            let limiter = match key {
                Some(name) => per_key.get(name).map(Arc::as_ref),
                None => self.anonymous.as_ref(),
            };
            if let Some(limiter) = limiter {
                limiter.check(events, bytes).map_err(|refused| {
                    refusal(refused, "this API key's rate limit", "rate_limits.key_")
                })?;
            }
        }
        if let Some(limiter) = self.stream_limiter(region, stream, is_running) {
            limiter.check(events, bytes).map_err(|refused| {
                refusal(
                    refused,
                    &format!("stream {stream}'s rate limit"),
                    "rate_limits.stream_",
                )
            })?;
        }
        Ok(())
    }

    fn stream_limiter(
        &self,
        region: &Region,
        stream: &StreamName,
        is_running: impl Fn(&Region, &StreamName) -> bool,
    ) -> Option<Arc<Limiter>> {
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
        if map.len() >= self.max_streams {
            map.retain(|(r, s), _| is_running(r, s));
        }
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

/// The client's answer: 429 with the wait when over the rate, 413 when the request can never
/// fit the burst (a retry would be refused the same way forever).
fn refusal(refused: Refused, which: &str, setting_prefix: &str) -> ApiError {
    match refused {
        Refused::Wait(wait) => ApiError::RateLimited {
            message: format!(
                "request exceeds {which}; retry after {} ms",
                wait.as_millis().max(1)
            ),
            retry_after: wait,
        },
        Refused::TooLarge {
            amount,
            burst,
            unit,
        } => ApiError::RequestExceedsBurst(format!(
            "the request carries {amount} {unit} but {which} lets at most {burst} {unit} through at once ({setting_prefix}{unit}_burst); split it into smaller requests"
        )),
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
                .check(Some("a"), &region, &stream, 1, 1, running)
                .expect("within burst");
        }
        let err = limits
            .check(Some("a"), &region, &stream, 1, 1, running)
            .expect_err("over");
        assert_eq!(err.code(), "rate_limited");
        let wait = err.retry_after().expect("retry after");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        limits
            .check(Some("b"), &region, &stream, 1, 1, running)
            .expect("own bucket");
    }

    #[test]
    fn stream_bytes_limit_applies_across_keys() {
        let limits = RateLimits::new(&settings(0, 0), &["a", "b"]);
        let (region, stream) = ids();
        limits
            .check(Some("a"), &region, &stream, 1, 600, running)
            .expect("first");
        let err = limits
            .check(Some("b"), &region, &stream, 1, 600, running)
            .expect_err("stream bucket shared");
        assert!(err.to_string().contains("stream s"), "{err}");
    }

    fn running(_: &Region, _: &StreamName) -> bool {
        true
    }

    #[test]
    fn automatic_burst_is_one_seconds_worth() {
        let rate = Rate::from_settings(100, 0).expect("on");
        assert_eq!(rate.burst.get(), 100);
        assert_eq!(Rate::from_settings(100, 7).expect("on").burst.get(), 7);
        assert!(Rate::from_settings(0, 50).is_none(), "0 turns it off");
    }

    #[test]
    fn a_request_larger_than_the_burst_is_refused_for_good() {
        let limits = RateLimits::new(&settings(2, 2), &["a"]);
        let (region, stream) = ids();
        for _ in 0..3 {
            let err = limits
                .check(Some("a"), &region, &stream, 3, 1, running)
                .expect_err("never fits");
            assert_eq!(err.code(), "request_exceeds_burst");
            assert!(err.retry_after().is_none(), "a retry cannot help");
            assert!(
                err.to_string().contains("rate_limits.key_events_burst"),
                "{err}"
            );
        }
        limits
            .check(Some("a"), &region, &stream, 2, 1, running)
            .expect("a request of the burst's size passes");
    }

    #[test]
    fn stream_limiters_of_streams_without_a_pipeline_are_dropped() {
        let mut s = settings(0, 0);
        s.limits.max_pipelines = 2;
        let limits = RateLimits::new(&s, &["a"]);
        for name in ["s1", "s2", "s3", "s4"] {
            let stream = StreamName::parse(name).expect("name");
            limits
                .check(Some("a"), &Region::us_west_2(), &stream, 1, 1, |_, _| false)
                .expect("fits");
        }
        let kept = limits.per_stream.read().expect("lock").len();
        assert!(kept <= 2, "{kept} limiters kept");
    }
}
