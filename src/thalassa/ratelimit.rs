//! Client-side token bucket, so one operator cannot flood the Thalassa API (e.g. after a mass
//! requeue).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` tokens, refilled at `per_second`. Callers that find it empty reserve a
/// future token (the balance goes negative) and sleep until it is theirs, so waiters are served in
/// arrival order and never spin.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket. `per_second` must be positive and finite, `burst` at least 1 (checked by
    /// the client config).
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Takes one token, reserving a future one if none is left, and returns how long the caller
    /// must wait before using it.
    pub(crate) fn reserve(&self) -> Duration {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(state.refilled_at)
            .as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.burst);
        state.refilled_at = now;
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.per_second)
        }
    }

    /// Waits for a token; returns the time spent waiting.
    pub(crate) async fn acquire(&self) -> Duration {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused tokio time: the clock moves only when every task waits, so the numbers are exact and
    // the tests never depend on how busy the machine is.

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_rate_applies() {
        let bucket = TokenBucket::new(10.0, 5);
        for _ in 0..5 {
            assert_eq!(bucket.reserve(), Duration::ZERO);
        }
        // The 6th and 7th callers wait 100 ms and 200 ms: reservations stack up.
        assert_eq!(bucket.reserve(), Duration::from_millis(100));
        assert_eq!(bucket.reserve(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn refills_over_time_up_to_burst() {
        let bucket = TokenBucket::new(1000.0, 2);
        bucket.reserve();
        bucket.reserve();
        // Far longer than a refill of the whole burst: still only `burst` tokens.
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(bucket.reserve(), Duration::ZERO);
        assert_eq!(bucket.reserve(), Duration::ZERO);
        assert_eq!(bucket.reserve(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_bounds_the_rate() {
        let bucket = TokenBucket::new(20.0, 4);
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        for _ in 0..14 {
            waited += bucket.acquire().await;
        }
        // 4 free, then 10 more at 20/s: exactly half a second.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // Each of the 10 waited its own 50 ms, one after the other.
        assert_eq!(waited, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_spaced_at_the_rate_in_arrival_order() {
        // The shape of tests/thalassa_client.rs's rate_limiter_bounds_the_request_rate: 12 calls
        // at once, burst 2, 10/s.
        let bucket = TokenBucket::new(10.0, 2);
        let start = Instant::now();
        let calls = (0..12).map(|_| async {
            let waited = bucket.acquire().await;
            (waited, start.elapsed())
        });
        let done = futures::future::join_all(calls).await;
        // Two free, then one every 100 ms: the k-th caller beyond the burst waits k × 100 ms and
        // gets its token then, so the twelfth starts 1 s in.
        for (i, (waited, at)) in done.into_iter().enumerate() {
            let expected = Duration::from_millis(100 * (i as u64).saturating_sub(1));
            assert_eq!((waited, at), (expected, expected), "caller {i}");
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
