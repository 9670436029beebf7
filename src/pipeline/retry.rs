//! Retry policy: which Kinesis failures are worth another attempt, kept apart from when the next
//! attempt happens (the backoff schedule), as in Vector's sink. Both are pure, so they are tested
//! without Kinesis; the random source of the jitter is injected for deterministic tests.

use std::time::Duration;

use crate::kinesis::CallFailure;

/// Whether a failure can go away by trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryability {
    Retryable,
    Fatal,
}

/// Per-entry `ErrorCode`s inside a 200 `PutRecords` response.
pub fn classify_entry_error(code: &str) -> Retryability {
    match code {
        "ProvisionedThroughputExceededException"
        | "InternalFailure"
        | "InternalFailureException"
        | "KMSThrottlingException"
        | "ServiceUnavailable"
        | "ThrottlingException" => Retryability::Retryable,
        _ => Retryability::Fatal,
    }
}

/// Whole-call errors: throttling, internal failures, KMS throttling, 5xx, timeouts and
/// connection failures are retryable; validation, missing stream, access and other KMS errors
/// are not, because the same request will fail the same way.
pub fn classify_call_failure(failure: &CallFailure) -> Retryability {
    match failure.code.as_str() {
        CallFailure::TIMEOUT | CallFailure::CONNECTION => return Retryability::Retryable,
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "KMSThrottlingException"
        | "InternalFailure"
        | "InternalFailureException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => return Retryability::Retryable,
        "ValidationException"
        | "InvalidArgumentException"
        | "ResourceNotFoundException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "request_too_large" => return Retryability::Fatal,
        code if code.starts_with("KMS") => return Retryability::Fatal,
        _ => {}
    }
    match failure.status {
        Some(status) if status >= 500 => Retryability::Retryable,
        Some(429) => Retryability::Retryable,
        Some(_) => Retryability::Fatal,
        // No response and not a recognised transport failure: assume transient.
        None => Retryability::Retryable,
    }
}

/// Exponential backoff with "equal jitter": attempt n waits between half and all of
/// `min(max, base * 2^n)`, so retries of many records spread out but never fire back-to-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry). `unit_random` returns a
    /// value in [0, 1).
    pub fn delay(&self, attempt: u32, unit_random: impl FnOnce() -> f64) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        let jitter = unit_random().clamp(0.0, 1.0);
        half + half.mul_f64(jitter)
    }

    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, status: Option<u16>) -> CallFailure {
        CallFailure {
            code: code.into(),
            status,
            message: String::new(),
        }
    }

    #[test]
    fn entry_errors() {
        assert_eq!(
            classify_entry_error("ProvisionedThroughputExceededException"),
            Retryability::Retryable
        );
        assert_eq!(
            classify_entry_error("InternalFailure"),
            Retryability::Retryable
        );
        assert_eq!(
            classify_entry_error("KMSAccessDeniedException"),
            Retryability::Fatal
        );
        assert_eq!(classify_entry_error("Whatever"), Retryability::Fatal);
    }

    #[test]
    fn call_errors() {
        for code in [
            "timeout",
            "connection",
            "ProvisionedThroughputExceededException",
            "KMSThrottlingException",
            "InternalFailure",
            "LimitExceededException",
        ] {
            assert_eq!(
                classify_call_failure(&failure(code, Some(400))),
                Retryability::Retryable,
                "{code}"
            );
        }
        for code in [
            "ValidationException",
            "InvalidArgumentException",
            "ResourceNotFoundException",
            "AccessDeniedException",
            "KMSDisabledException",
            "KMSNotFoundException",
        ] {
            assert_eq!(
                classify_call_failure(&failure(code, Some(400))),
                Retryability::Fatal,
                "{code}"
            );
        }
        assert_eq!(
            classify_call_failure(&failure("Odd", Some(503))),
            Retryability::Retryable
        );
        assert_eq!(
            classify_call_failure(&failure("Odd", Some(403))),
            Retryability::Fatal
        );
        assert_eq!(
            classify_call_failure(&failure("Odd", None)),
            Retryability::Retryable
        );
        assert!(failure("timeout", None).is_unreachable());
        assert!(!failure("InternalFailure", Some(500)).is_unreachable());
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(2_000),
        };
        assert_eq!(b.delay(0, || 0.0), Duration::from_millis(25));
        assert_eq!(b.delay(0, || 0.999_999).as_millis(), 49);
        assert_eq!(b.delay(1, || 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(3, || 0.5), Duration::from_millis(300));
        assert_eq!(b.delay(10, || 0.0), Duration::from_millis(1_000));
        assert_eq!(b.delay(u32::MAX, || 1.0), Duration::from_millis(2_000));
        for attempt in 0..40 {
            let d = b.delay_random(attempt);
            assert!(d <= b.max, "{d:?}");
        }
    }
}
