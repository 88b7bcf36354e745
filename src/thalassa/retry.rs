//! Retry policy: exponential backoff with full jitter, and `Retry-After` parsing.

use std::time::Duration;

use jiff::Timestamp;
use rand::Rng as _;

/// Where the wait before a retry came from (reported to
/// [`RequestObserver::observe_retry`](super::RequestObserver::observe_retry)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryWait {
    /// The server's `Retry-After`, honoured as sent.
    RetryAfter,
    /// The client's own jittered exponential backoff (no `Retry-After` came).
    Backoff,
}

/// When and how long to back off between attempts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) max_retries: u32,
    /// Backoff ceiling for the first retry; doubles per retry.
    pub(crate) base_delay: Duration,
    /// Longest single wait, also the longest `Retry-After` the client sleeps through itself.
    pub(crate) max_delay: Duration,
}

impl RetryPolicy {
    /// Upper bound of the jittered backoff before retry number `retry` (0-based):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub(crate) fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// "Full jitter" backoff: uniform in `[0, backoff_ceiling(retry)]`, which spreads retries of
    /// many clients better than equal or decorrelated jitter.
    pub(crate) fn jittered_backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// How long to wait before retry number `retry`, given the server's `Retry-After`, and
    /// where that wait came from.
    ///
    /// A `Retry-After` is honoured (never shortened) when it fits under `max_delay`; a longer one
    /// yields `None`: the caller gives up and reports it, so the controller requeues instead of
    /// a worker sleeping for minutes.
    pub(crate) fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
    ) -> Option<(Duration, RetryWait)> {
        match retry_after {
            Some(wait) if wait > self.max_delay => None,
            Some(wait) => Some((wait, RetryWait::RetryAfter)),
            None => Some((self.jittered_backoff(retry), RetryWait::Backoff)),
        }
    }
}

/// Parses a `Retry-After` header value: delay-seconds or an HTTP-date (RFC 9110 IMF-fixdate,
/// interpreted against `now`). Dates in the past mean "now".
pub(crate) fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd values saturate; they will exceed max_delay anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = now.duration_until(date);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_ceiling_doubles_and_caps() {
        let policy = policy();
        let ceilings: Vec<u128> = (0..8)
            .map(|retry| policy.backoff_ceiling(retry).as_millis())
            .collect();
        assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jittered_backoff_stays_within_bounds() {
        let policy = policy();
        for retry in 0..10 {
            for _ in 0..200 {
                assert!(policy.jittered_backoff(retry) <= policy.backoff_ceiling(retry));
            }
        }
        // Full jitter actually varies.
        let samples: std::collections::HashSet<_> =
            (0..50).map(|_| policy.jittered_backoff(5)).collect();
        assert!(samples.len() > 1);
    }

    #[test]
    fn retry_after_is_honoured_or_gives_up() {
        let policy = policy();
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Some((Duration::from_secs(3), RetryWait::RetryAfter))
        );
        // Exactly the cap is still slept; just over it is reported instead.
        assert_eq!(
            policy.delay(5, Some(Duration::from_secs(10))),
            Some((Duration::from_secs(10), RetryWait::RetryAfter))
        );
        assert_eq!(policy.delay(0, Some(Duration::from_secs(11))), None);
        // A zero Retry-After ("now") is honoured too, not replaced by backoff.
        assert_eq!(
            policy.delay(0, Some(Duration::ZERO)),
            Some((Duration::ZERO, RetryWait::RetryAfter))
        );
        let (wait, source) = policy.delay(2, None).unwrap();
        assert_eq!(source, RetryWait::Backoff);
        assert!(wait <= Duration::from_millis(800));
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 01 Jul 2026 12:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 Jul 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }
}
