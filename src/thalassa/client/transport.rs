//! Running a [`Call`]: the rate limiters, one HTTP attempt, reading the body under its cap and
//! the process-wide body budget, retries with backoff or `Retry-After`, the call deadline, and
//! turning a failure into an [`Error`] (probing the KMS gate when a 403 needs it).
//!
//! I/O contract: sends the call's request (and token requests, through `authorization`) until it
//! succeeds, fails for good, or the call deadline passes; returns the 2xx body as the sink made
//! it. Every attempt is reported to the [`RequestObserver`](super::RequestObserver). Bodies are
//! held in zeroizing buffers; error bodies are read only for their sanitised `message`.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::{self, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::super::body::{BodySink, BufferSink, ByteBudget, HeldBody, SinkError};
use super::super::error::{self, Error, HttpFailure, KmsProbe, Route};
use super::super::retry::{RetryWait, parse_retry_after};
use super::super::types::KmsSummary;
use super::Client;
use super::call::Call;

/// Largest error (non-2xx) body read; only its `message` is used, and only to classify.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The response of one attempt: the sink's output for a 2xx, the (capped) body otherwise.
struct Response<T> {
    status: u16,
    retry_after: Option<Duration>,
    success: Option<T>,
    body: Zeroizing<Vec<u8>>,
}

/// Why one attempt failed without a usable response.
enum AttemptError {
    /// Connect, TLS, timeout or body-read failure.
    Transport(reqwest::Error),
    /// The 2xx body passed the call's `max_body`; reading stopped there.
    TooLarge { limit: usize },
    /// The 2xx body is not what the call expects (a streamed listing); reading stopped there.
    Invalid(String),
}

impl From<SinkError> for AttemptError {
    fn from(error: SinkError) -> Self {
        match error {
            SinkError::TooLarge { limit } => AttemptError::TooLarge { limit },
            SinkError::Invalid(detail) => AttemptError::Invalid(detail),
        }
    }
}

/// A failed attempt, before it becomes an [`Error`].
enum Failure {
    Transport(reqwest::Error),
    Http(HttpFailure),
}

/// What the retry loop does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Sleep `wait`, then retry.
    Retry { wait: Duration, source: RetryWait },
    /// Report the failure: not retryable, retry budget spent, or `Retry-After` over the cap.
    GiveUp,
    /// A retry is allowed, but its wait would end at or after the call deadline.
    PastDeadline,
}

impl Client {
    pub(super) async fn fetch_json<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let operation = call.operation;
        let body = self.execute(call).await?;
        decode_json(operation, &body)
    }

    /// Runs an API call with authentication, rate limiting and retries, within the call
    /// deadline; returns the 2xx body.
    pub(super) async fn execute(&self, call: Call) -> Result<HeldBody, Error> {
        let deadline = Instant::now() + self.inner.call_deadline;
        self.execute_by(call, deadline).await
    }

    /// [`Client::execute`] with a deadline fixed by the caller: everything after `deadline` is
    /// cut off, and no retry is started whose backoff would end after it.
    pub(super) async fn execute_by(
        &self,
        call: Call,
        deadline: Instant,
    ) -> Result<HeldBody, Error> {
        self.execute_into(call, deadline, BufferSink::new).await
    }

    /// [`Client::execute_by`] with the 2xx body of each attempt read into a fresh sink made by
    /// `sink` (given the call's `max_body`).
    pub(super) async fn execute_into<S: BodySink>(
        &self,
        call: Call,
        deadline: Instant,
        sink: impl Fn(usize) -> S + Send + Sync,
    ) -> Result<S::Output, Error> {
        match tokio::time::timeout_at(deadline, self.attempts(&call, deadline, &sink)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(operation = call.operation, "Thalassa call deadline passed");
                Err(self.deadline_exceeded(call.operation))
            }
        }
    }

    pub(super) fn deadline_exceeded(&self, operation: &'static str) -> Error {
        Error::DeadlineExceeded {
            operation,
            deadline: self.inner.call_deadline,
        }
    }

    async fn attempts<S: BodySink>(
        &self,
        call: &Call,
        deadline: Instant,
        sink: &(impl Fn(usize) -> S + Send + Sync),
    ) -> Result<S::Output, Error> {
        let mut retry = 0;
        let mut reauthenticated = false;
        loop {
            // The token endpoint authenticates with the form it is sent, not a bearer token.
            let (authorization, generation) = if call.route == Route::Token {
                (None, 0)
            } else {
                let (value, generation) = self.authorization().await?;
                (Some(value), generation)
            };
            let failure = match self
                .send_once(call, authorization.as_ref(), sink(call.max_body))
                .await
            {
                Ok(Response {
                    success: Some(output),
                    ..
                }) => {
                    return Ok(output);
                }
                Ok(response)
                    if response.status == 401
                        && authorization.is_some()
                        && !reauthenticated
                        && self.inner.credentials.is_refreshable() =>
                {
                    // The token may have been revoked or rotated: get a fresh one and try once
                    // more, outside the retry budget.
                    tracing::debug!(
                        operation = call.operation,
                        "401, refreshing the access token"
                    );
                    self.inner.tokens.invalidate(generation).await;
                    reauthenticated = true;
                    continue;
                }
                Ok(response) => Failure::Http(http_failure(&response)),
                Err(AttemptError::Transport(source)) => Failure::Transport(source),
                Err(AttemptError::TooLarge { limit }) => return Err(call.too_large(limit)),
                Err(AttemptError::Invalid(detail)) => {
                    return Err(invalid_response(call.operation, detail));
                }
            };
            match self.next_step(call, retry, &failure, deadline) {
                Next::Retry { wait, source } => {
                    retry += 1;
                    tracing::debug!(
                        operation = call.operation,
                        retry,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        retry_after = source == RetryWait::RetryAfter,
                        "retrying Thalassa request"
                    );
                    if let Some(observer) = &self.inner.observer {
                        observer.observe_retry(call.operation, retry, wait, source);
                    }
                    tokio::time::sleep(wait).await;
                }
                // The retry could not finish in time: report the real cause of an HTTP failure
                // (a 429 keeps its Retry-After), and a timeout for a transport failure.
                Next::PastDeadline => {
                    return Err(match failure {
                        Failure::Transport(_) => self.deadline_exceeded(call.operation),
                        Failure::Http(failure) => self.classify(call, failure).await,
                    });
                }
                Next::GiveUp => {
                    return Err(match failure {
                        Failure::Transport(source) => Error::Transport {
                            operation: call.operation,
                            source,
                        },
                        Failure::Http(failure) => self.classify(call, failure).await,
                    });
                }
            }
        }
    }

    /// What to do after `failure`, the outcome of attempt `retry` (0: the first attempt), given
    /// the call's deadline.
    fn next_step(&self, call: &Call, retry: u32, failure: &Failure, deadline: Instant) -> Next {
        match self.retry_wait(call, retry, failure) {
            None => Next::GiveUp,
            Some((wait, _)) if Instant::now() + wait >= deadline => Next::PastDeadline,
            Some((wait, source)) => Next::Retry { wait, source },
        }
    }

    /// Whether to retry after `failure`, and after how long.
    fn retry_wait(
        &self,
        call: &Call,
        retry: u32,
        failure: &Failure,
    ) -> Option<(Duration, RetryWait)> {
        let policy = &self.inner.retry;
        if retry >= policy.max_retries {
            return None;
        }
        let retry_after = match failure {
            // A connect error means the request never left, so even non-idempotent calls are
            // safe to repeat.
            Failure::Transport(source) if call.idempotent || source.is_connect() => None,
            Failure::Transport(_) => return None,
            // 429 and 503 (KMS down) mean the request was not processed.
            Failure::Http(f) if f.status == 429 || f.status == 503 => f.retry_after,
            Failure::Http(f) if (500..600).contains(&f.status) && call.idempotent => f.retry_after,
            Failure::Http(_) => return None,
        };
        policy.delay(retry, retry_after)
    }

    async fn classify(&self, call: &Call, failure: HttpFailure) -> Error {
        let probe = if error::needs_kms_probe(call.route, &failure) {
            self.probe_kms_feature().await
        } else {
            KmsProbe::Unknown
        };
        error::classify(call.route, &call.target, failure, probe)
    }

    /// One attempt at `GET /v1/kms/summary`, to tell a KMS gate 403 from other Secrets 403s.
    async fn probe_kms_feature(&self) -> KmsProbe {
        let Ok(call) = self.kms_summary_call() else {
            return KmsProbe::Unknown;
        };
        let Ok((authorization, _)) = self.authorization().await else {
            return KmsProbe::Unknown;
        };
        let sink = BufferSink::new(call.max_body);
        match self.send_once(&call, Some(&authorization), sink).await {
            Ok(response) if response.status == 403 => KmsProbe::FeatureDisabled,
            Ok(Response {
                success: Some(body),
                ..
            }) => match decode_json::<KmsSummary>(call.operation, &body) {
                Ok(summary) if !summary.feature_enabled => KmsProbe::FeatureDisabled,
                Ok(_) => KmsProbe::FeatureEnabled,
                Err(_) => KmsProbe::Unknown,
            },
            _ => KmsProbe::Unknown,
        }
    }

    /// observer.
    async fn send_once<S: BodySink>(
        &self,
        call: &Call,
        authorization: Option<&HeaderValue>,
        sink: S,
    ) -> Result<Response<S::Output>, AttemptError> {
        let waited =
            self.inner.adaptive.acquire().await + self.inner.limits.limiter.acquire().await;
        if let Some(observer) = &self.inner.observer
            && !waited.is_zero()
        {
            observer.observe_rate_limit_wait(call.operation, waited);
        }
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .headers(self.inner.headers.clone());
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = &call.body {
            request = request
                .header(header::CONTENT_TYPE, body.content_type)
                .body(body.bytes.to_vec());
        }
        let started = Instant::now();
        let result = match request.send().await {
            Ok(response) => read_response(response, sink, &self.inner.limits.bytes).await,
            Err(source) => Err(AttemptError::Transport(source)),
        };
        let status = match &result {
            Ok(response) => Some(response.status),
            Err(_) => None,
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(response) if matches!(response.status, 429 | 503) => {
                self.inner.adaptive.throttled(response.retry_after);
            }
            Ok(_) => self.inner.adaptive.succeeded(),
            Err(_) => {}
        }
        tracing::debug!(
            operation = call.operation,
            status,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "Thalassa request"
        );
        if let Some(observer) = &self.inner.observer {
            observer.observe(call.operation, status, elapsed);
            observer.observe_rate(&self.inner.organisation, self.inner.adaptive.per_second());
        }
        result
    }
}

/// Reads the body chunk by chunk: a 2xx into `sink`, holding as much of `budget` as the sink
/// holds bytes (waiting for it before taking a chunk) and stopping as soon as the sink refuses it
/// (past its cap, or malformed); any other status into a buffer of at most
/// [`MAX_ERROR_BODY_BYTES`] (past it the body is dropped, and the error is classified by status
/// alone). A `Content-Length` over the cap fails before reading anything.
async fn read_response<S: BodySink>(
    mut response: reqwest::Response,
    mut sink: S,
    budget: &ByteBudget,
) -> Result<Response<S::Output>, AttemptError> {
    let status = response.status().as_u16();
    let success = (200..300).contains(&status);
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, Timestamp::now()));
    let announced = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok());
    if success {
        let limit = sink.limit();
        if announced.is_some_and(|len| len > limit) {
            return Err(AttemptError::TooLarge { limit });
        }
        let mut held = None;
        while let Some(chunk) = response.chunk().await.map_err(AttemptError::Transport)? {
            budget.hold(&mut held, sink.held_after(chunk.len())).await;
            sink.push(&chunk)?;
            budget.hold(&mut held, sink.held()).await;
        }
        return Ok(Response {
            status,
            retry_after,
            success: Some(sink.finish(held)?),
            body: Zeroizing::new(Vec::new()),
        });
    }
    let dropped = || Response {
        status,
        retry_after,
        success: None,
        body: Zeroizing::new(Vec::new()),
    };
    if announced.is_some_and(|len| len > MAX_ERROR_BODY_BYTES) {
        return Ok(dropped());
    }
    let mut body = Zeroizing::new(Vec::with_capacity(MAX_ERROR_BODY_BYTES.min(4096)));
    while let Some(chunk) = response.chunk().await.map_err(AttemptError::Transport)? {
        if body.len() + chunk.len() > MAX_ERROR_BODY_BYTES {
            return Ok(dropped());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        retry_after,
        success: None,
        body,
    })
}

fn http_failure<T>(response: &Response<T>) -> HttpFailure {
    HttpFailure {
        status: response.status,
        message: error_message(&response.body),
        retry_after: response.retry_after,
    }
}

/// The sanitised `message` of an error body, or OAuth's `error` / `error_description`. Other
/// bodies (HTML from a proxy, …) are not quoted at all.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return String::new();
    };
    let text = match (parsed.message, parsed.error, parsed.error_description) {
        (Some(message), _, _) if !message.trim().is_empty() => message,
        (_, Some(error), Some(description)) => format!("{error}: {description}"),
        (_, Some(error), None) => error,
        (_, None, Some(description)) => description,
        _ => String::new(),
    };
    error::sanitize_message(&text)
}

/// Decodes a JSON body; the error names only the kind and position of the problem, never content.
pub(super) fn decode_json<T: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| invalid_response(operation, super::super::types::json_error_detail(&e)))
}

pub(super) fn invalid_response(operation: &'static str, detail: String) -> Error {
    Error::InvalidResponse { operation, detail }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::super::types::GetSecretValueResponse;
    use super::super::{
        ClientConfig, Credentials, DEFAULT_BODY_BUDGET_BYTES, MAX_REVEAL_RESPONSE_BYTES,
        RequestObserver,
    };
    use super::*;
    use reqwest::Method;

    #[test]
    fn error_messages_from_bodies() {
        assert_eq!(
            error_message(br#"{"message":"secret not found: /a"}"#),
            "secret not found: /a"
        );
        assert_eq!(
            error_message(br#"{"error":"invalid_grant","error_description":"expired"}"#),
            "invalid_grant: expired"
        );
        assert_eq!(error_message(b"<html>oops</html>"), "");
        assert_eq!(error_message(b""), "");
    }

    #[test]
    fn decode_errors_do_not_quote_content() {
        let err = decode_json::<Vec<u64>>("listSecrets", br#"["s3cr3t"]"#).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = decode_json::<GetSecretValueResponse>(
            "getSecretValue",
            br#"{"version":1,"secretString":"s3cr3t!!"}"#,
        )
        .err()
        .expect("invalid base64 must fail");
        assert_eq!(err.reason(), "InvalidResponse");
        assert!(err.to_string().contains("not valid base64"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    // ---- Retry and deadline decisions, on paused time ----
    //
    // Tokio's clock stands still unless every task waits (or the test advances it), so these
    // numbers are exact and do not depend on how busy the machine is. The wiring over real HTTP
    // is tested in tests/offline/thalassa_client.rs.

    fn http_failure_of(status: u16, retry_after: Option<Duration>) -> Failure {
        Failure::Http(HttpFailure {
            status,
            message: String::new(),
            retry_after,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retry_decisions_follow_retry_after_the_budget_and_the_deadline() {
        let mut config = ClientConfig::new(
            "http://127.0.0.1:9",
            "org-1",
            Credentials::BearerToken("t".into()),
        );
        config.max_retries = 3;
        config.retry_base_delay = Duration::from_millis(200);
        config.retry_max_delay = Duration::from_secs(3);
        let client = Client::new(config).unwrap();
        let url = client.secret_url("nl-01", "/app/db", "").unwrap();
        let get = client.call("getSecret", Method::GET, url.clone(), Route::Secrets);
        let put = client
            .call("putSecretValue", Method::POST, url, Route::Secrets)
            .not_idempotent();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let secs = Duration::from_secs;
        let honoured = |wait| Next::Retry {
            wait,
            source: RetryWait::RetryAfter,
        };
        let next = |call: &Call, retry, status, retry_after| {
            client.next_step(call, retry, &http_failure_of(status, retry_after), deadline)
        };

        // A Retry-After under the cap is slept exactly as sent, for every retry of the budget,
        // on idempotent calls and (429 and 503 mean "not processed") on others too.
        for retry in 0..3 {
            assert_eq!(next(&get, retry, 429, Some(secs(1))), honoured(secs(1)));
        }
        assert_eq!(next(&put, 0, 429, Some(secs(1))), honoured(secs(1)));
        assert_eq!(next(&put, 0, 503, Some(secs(1))), honoured(secs(1)));
        assert_eq!(next(&get, 0, 500, Some(secs(1))), honoured(secs(1)));
        // The budget is spent after 3 retries.
        assert_eq!(next(&get, 3, 429, Some(secs(1))), Next::GiveUp);
        // Over the 3 s cap: reported, not slept.
        assert_eq!(next(&get, 0, 429, Some(secs(30))), Next::GiveUp);
        // Under the cap but past the deadline: not started.
        assert_eq!(next(&get, 0, 429, Some(secs(2))), Next::PastDeadline);
        // The deadline draws nearer: 1 s still fits 499 ms in, and no longer once it would end
        // exactly at the deadline.
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(next(&get, 0, 429, Some(secs(1))), honoured(secs(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(next(&get, 0, 429, Some(secs(1))), Next::PastDeadline);

        // Without Retry-After: jittered backoff under the doubling ceiling (200 ms, 400 ms, …).
        for retry in 0..3 {
            match next(&get, retry, 503, None) {
                Next::Retry {
                    wait,
                    source: RetryWait::Backoff,
                } => assert!(
                    wait <= Duration::from_millis(200 << retry),
                    "retry {retry}: {wait:?}"
                ),
                other => panic!("retry {retry}: {other:?}"),
            }
        }
        // A 500 may have been processed: repeated only for idempotent calls. Client errors never.
        assert!(matches!(next(&get, 0, 500, None), Next::Retry { .. }));
        assert_eq!(next(&put, 0, 500, None), Next::GiveUp);
        for status in [400, 403, 404, 409] {
            assert_eq!(next(&get, 0, status, None), Next::GiveUp, "{status}");
        }
    }

    /// Counts what the client reports.
    #[derive(Default)]
    struct Counted {
        attempts: std::sync::atomic::AtomicUsize,
        limiter_waits: std::sync::atomic::AtomicUsize,
        retries: std::sync::atomic::AtomicUsize,
    }

    impl RequestObserver for Counted {
        fn observe(&self, _: &'static str, _: Option<u16>, _: Duration) {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn observe_rate_limit_wait(&self, _: &'static str, _: Duration) {
            self.limiter_waits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn observe_retry(&self, _: &'static str, _: u32, _: Duration, _: RetryWait) {
            self.retries
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_waits_are_cut_off_at_the_call_deadline() {
        let counted = Arc::new(Counted::default());
        let mut config = ClientConfig::new(
            "http://127.0.0.1:9",
            "org-1",
            Credentials::BearerToken("t".into()),
        );
        config.rate_limit_per_second = 0.1;
        config.rate_limit_burst = 1;
        config.request_timeout = Duration::from_secs(1);
        config.call_deadline = Duration::from_secs(1);
        config.observer = Some(counted.clone());
        let client = Client::new(config).unwrap();
        // Take the only token: the next one is 10 s away.
        assert_eq!(client.inner.limits.limiter.reserve(), Duration::ZERO);
        let started = Instant::now();
        let err = client
            .get_secret("nl-01", "/app/db", false)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DeadlineExceeded", "{err}");
        // Cut off at the deadline, exactly, not after the 10 s wait.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // Nothing was sent, and the wait never completed.
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(counted.attempts.load(SeqCst), 0);
        assert_eq!(counted.limiter_waits.load(SeqCst), 0);
        assert_eq!(counted.retries.load(SeqCst), 0);
    }

    // ---- Body caps ----

    /// A body of `chunks` chunks of 64 KiB that counts how many were pulled.
    struct CountingBody {
        chunks: usize,
        pulled: Arc<std::sync::atomic::AtomicUsize>,
    }

    const CHUNK: usize = 64 * 1024;

    impl http_body::Body for CountingBody {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            let pulled = self
                .pulled
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::task::Poll::Ready((pulled < self.chunks).then(|| {
                Ok(http_body::Frame::data(axum::body::Bytes::from_static(
                    &[b' '; CHUNK],
                )))
            }))
        }
    }

    /// A streamed response (no `Content-Length`) of `chunks` chunks, and its pull counter.
    fn streamed(
        status: u16,
        chunks: usize,
    ) -> (reqwest::Response, Arc<std::sync::atomic::AtomicUsize>) {
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = reqwest::Body::wrap(CountingBody {
            chunks,
            pulled: pulled.clone(),
        });
        let response = http::Response::builder().status(status).body(body).unwrap();
        (response.into(), pulled)
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_chunk_past_the_cap() {
        use std::sync::atomic::Ordering::SeqCst;
        let budget = ByteBudget::new(DEFAULT_BODY_BUDGET_BYTES);
        let read = |response, cap| read_response(response, BufferSink::new(cap), &budget);
        // 64 MiB offered to a reveal: refused after the chunk that passes 1.5 MiB.
        let (response, pulled) = streamed(200, 1024);
        let result = read(response, MAX_REVEAL_RESPONSE_BYTES).await;
        assert!(
            matches!(result, Err(AttemptError::TooLarge { limit }) if limit == MAX_REVEAL_RESPONSE_BYTES)
        );
        assert_eq!(pulled.load(SeqCst), MAX_REVEAL_RESPONSE_BYTES / CHUNK + 1);
        assert_eq!(
            budget.available(),
            budget.total(),
            "a refused body holds nothing"
        );
        // An error body stops at 64 KiB as well, and is dropped: the status alone classifies.
        let (response, pulled) = streamed(503, 1024);
        let Ok(response) = read(response, MAX_REVEAL_RESPONSE_BYTES).await else {
            panic!("an oversized error body is still a response");
        };
        assert_eq!(response.status, 503);
        assert!(response.body.is_empty() && response.success.is_none());
        assert_eq!(pulled.load(SeqCst), MAX_ERROR_BODY_BYTES / CHUNK + 1);
        // Up to the cap, everything is read; the body holds its bytes of the budget until it is
        // dropped.
        let (response, pulled) = streamed(200, MAX_REVEAL_RESPONSE_BYTES / CHUNK);
        let Ok(Response {
            success: Some(body),
            ..
        }) = read(response, MAX_REVEAL_RESPONSE_BYTES).await
        else {
            panic!("a body of exactly the cap is read");
        };
        assert_eq!(body.len(), MAX_REVEAL_RESPONSE_BYTES);
        assert_eq!(
            budget.total() - budget.available(),
            MAX_REVEAL_RESPONSE_BYTES
        );
        drop(body);
        assert_eq!(budget.available(), budget.total());
        // Every chunk, and the end of the stream.
        assert_eq!(pulled.load(SeqCst), MAX_REVEAL_RESPONSE_BYTES / CHUNK + 1);
    }

    #[tokio::test]
    async fn a_body_waits_for_the_budget_other_bodies_hold() {
        // A budget of two chunks: a held body of two chunks makes the next read wait until it
        // is dropped.
        let budget = ByteBudget::new(2 * CHUNK);
        let (response, _) = streamed(200, 2);
        let Ok(Response {
            success: Some(first),
            ..
        }) = read_response(response, BufferSink::new(4 * CHUNK), &budget).await
        else {
            panic!("the first body fits the budget");
        };
        assert_eq!(budget.available(), 0);
        let (response, pulled) = streamed(200, 1);
        let second = tokio::spawn({
            let budget = budget.clone();
            async move {
                read_response(response, BufferSink::new(4 * CHUNK), &budget)
                    .await
                    .ok()
                    .and_then(|r| r.success)
                    .map(|body| body.len())
            }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished(), "waits while the budget is held");
        assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 1);
        drop(first);
        assert_eq!(second.await.unwrap(), Some(CHUNK));
    }
}
