//! Client-side token bucket, so one operator cannot flood the Thalassa API (e.g. after a mass
//! requeue).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` tokens, refilled at `per_second`. Callers that find it empty reserve a
/// future token (the balance goes negative) and sleep until it is theirs, so waiters are served in
/// arrival order and never spin.
///
/// The rate can adapt (AIMD, [`TokenBucket::adaptive`]): it starts at a chosen rate and grows
/// while Thalassa answers — doubling per second of traffic until the first throttle (slow
/// start), then by [`ADDITIVE_INCREASE`] requests/s per second — up to the ceiling; each 429 or
/// 503 halves it (at most once per [`CUT_INTERVAL`], so one burst of rejections is one cut), and
/// a `Retry-After` holds every caller until it has passed.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    ceiling: f64,
    burst: f64,
    adaptive: bool,
    state: Mutex<BucketState>,
}

/// Requests/s the adaptive rate gains per second of unthrottled traffic after the first throttle.
pub(crate) const ADDITIVE_INCREASE: f64 = 10.0;
/// The adaptive rate never falls below this.
pub(crate) const MIN_RATE: f64 = 1.0;
/// At most one multiplicative cut per this interval.
pub(crate) const CUT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled_at: Instant,
    per_second: f64,
    /// When the rate was last cut; `None` until the first throttle (slow start until then).
    cut_at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket with a fixed rate. `per_second` must be positive and finite, `burst` at
    /// least 1 (checked by the client config).
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        Self::with(per_second, per_second, burst, false)
    }

    /// A full bucket whose rate starts at `start` (at most `ceiling`) and adapts to Thalassa's
    /// answers ([`Self::succeeded`], [`Self::throttled`]).
    pub(crate) fn adaptive(start: f64, ceiling: f64, burst: u32) -> Self {
        Self::with(start.min(ceiling), ceiling, burst, true)
    }

    fn with(per_second: f64, ceiling: f64, burst: u32, adaptive: bool) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            ceiling,
            burst,
            adaptive,
            state: Mutex::new(BucketState {
                tokens: burst,
                refilled_at: Instant::now(),
                per_second,
                cut_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one token, reserving a future one if none is left, and returns how long the caller
    /// must wait before using it.
    pub(crate) fn reserve(&self) -> Duration {
        let mut state = self.lock();
        self.refill(&mut state);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / state.per_second)
        }
    }

    fn refill(&self, state: &mut BucketState) {
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(state.refilled_at)
            .as_secs_f64();
        state.tokens = (state.tokens + elapsed * state.per_second).min(self.burst);
        state.refilled_at = now;
    }

    /// Waits for a token; returns the time spent waiting.
    pub(crate) async fn acquire(&self) -> Duration {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Thalassa answered without throttling: the adaptive rate grows.
    pub(crate) fn succeeded(&self) {
        if !self.adaptive {
            return;
        }
        let mut state = self.lock();
        self.refill(&mut state);
        let gain = match state.cut_at {
            // Slow start: +1 per answer doubles the rate every second of traffic.
            None => 1.0,
            Some(_) => ADDITIVE_INCREASE / state.per_second,
        };
        state.per_second = (state.per_second + gain).min(self.ceiling);
    }

    /// Thalassa answered 429 or 503: the adaptive rate halves (once per [`CUT_INTERVAL`]) and
    /// nobody sends before `retry_after` has passed.
    pub(crate) fn throttled(&self, retry_after: Option<Duration>) {
        if !self.adaptive {
            return;
        }
        let mut state = self.lock();
        self.refill(&mut state);
        let now = Instant::now();
        if state
            .cut_at
            .is_none_or(|at| now.saturating_duration_since(at) >= CUT_INTERVAL)
        {
            state.per_second = (state.per_second / 2.0).max(MIN_RATE);
            state.cut_at = Some(now);
        }
        if let Some(hold) = retry_after {
            // The next token is free only once the hold has passed.
            let held = -hold.as_secs_f64() * state.per_second;
            state.tokens = state.tokens.min(held);
        }
    }

    /// The current rate, requests per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.lock().per_second
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
        // The shape of tests/offline/thalassa_client.rs's rate_limiter_bounds_the_request_rate: 12 calls
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

    #[tokio::test(start_paused = true)]
    async fn the_adaptive_rate_grows_halves_on_throttling_and_holds_for_retry_after() {
        let bucket = TokenBucket::adaptive(50.0, 200.0, 10);
        for _ in 0..100 {
            bucket.succeeded();
        }
        assert_eq!(bucket.per_second(), 150.0, "slow start: +1 per answer");
        for _ in 0..100 {
            bucket.succeeded();
        }
        assert_eq!(bucket.per_second(), 200.0, "never above the ceiling");
        bucket.throttled(None);
        bucket.throttled(None);
        assert_eq!(bucket.per_second(), 100.0, "one burst of 429s is one cut");
        tokio::time::advance(CUT_INTERVAL).await;
        bucket.throttled(None);
        assert_eq!(bucket.per_second(), 50.0);
        // After the first throttle: additive, +10/s per second of traffic at 50/s.
        for _ in 0..50 {
            bucket.succeeded();
        }
        // 50 answers at about 50/s: about +10/s.
        let rate = bucket.per_second();
        assert!((59.0..=60.0).contains(&rate), "{rate}");
        // Retry-After: nobody gets a token before it has passed.
        tokio::time::advance(Duration::from_secs(5)).await;
        bucket.throttled(Some(Duration::from_secs(2)));
        let wait = bucket.reserve();
        assert!(wait >= Duration::from_secs(2), "{wait:?}");
        for _ in 0..20 {
            tokio::time::advance(CUT_INTERVAL).await;
            bucket.throttled(None);
        }
        assert_eq!(bucket.per_second(), MIN_RATE, "never below the floor");
        let fixed = TokenBucket::new(20.0, 4);
        fixed.succeeded();
        fixed.throttled(Some(Duration::from_secs(9)));
        assert_eq!(fixed.per_second(), 20.0, "a fixed bucket does not adapt");
        assert_eq!(fixed.reserve(), Duration::ZERO);
    }
}
