//! The client's configuration: [`ClientConfig`] (with its defaults), the [`RequestObserver`]
//! that sees every attempt, and the validation [`Client::new`](super::Client::new) runs.
//!
//! I/O contract: pure. [`ClientConfig::check`] refuses an unusable configuration with
//! [`Error::InvalidConfig`] (whose message never quotes a credential) and returns what the
//! client keeps of a usable one: the base URL, the organisation and the per-client headers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::super::auth::Credentials;
use super::super::error::Error;
use super::super::retry::RetryWait;
use super::{DEFAULT_BODY_BUDGET_BYTES, MAX_LISTING_RESPONSE_BYTES, SharedLimits};

const ORGANISATION_HEADER: HeaderName = HeaderName::from_static("x-organisation-identity");
const PROJECT_HEADER: HeaderName = HeaderName::from_static("x-project-identity");

/// Sees every HTTP attempt the client makes (including retries and token requests), e.g. to feed
/// Prometheus metrics.
pub trait RequestObserver: Send + Sync {
    /// One attempt finished. `operation` is the emulator's counter name (`getSecretValue`,
    /// `listSecrets`, `token`, …); `status` is `None` when no response arrived; `elapsed` covers
    /// sending and reading the body, not rate-limiter waits.
    fn observe(&self, operation: &'static str, status: Option<u16>, elapsed: Duration);

    /// The adaptive request rate of a client of `organisation` is now `per_second`.
    fn observe_rate(&self, organisation: &str, per_second: f64) {
        let _ = (organisation, per_second);
    }

    /// An attempt waited `waited` for the client-side rate limiter before being sent.
    fn observe_rate_limit_wait(&self, operation: &'static str, waited: Duration) {
        let _ = (operation, waited);
    }

    /// A failed attempt is being retried: the client is about to sleep `wait` before retry
    /// number `retry` (the first retry is 1). `source` says whether `wait` is the server's
    /// `Retry-After` or the client's jittered backoff. Not called when the client gives up
    /// instead: the failure is not retryable, the retry budget is spent, the `Retry-After` is
    /// over `retry_max_delay`, or the wait would end after the call deadline. (A 401 answered
    /// by refreshing the access token is no retry: it is repeated at once, outside the budget.)
    fn observe_retry(
        &self,
        operation: &'static str,
        retry: u32,
        wait: Duration,
        source: RetryWait,
    ) {
        let _ = (operation, retry, wait, source);
    }
}

/// Everything [`Client::new`](super::Client::new) needs. Build with [`ClientConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct ClientConfig {
    /// API base URL, e.g. `https://api.thalassa.cloud` (a path prefix is kept).
    pub base_url: String,
    /// Organisation identity or slug, sent as `X-Organisation-Identity` (and as `organisation_id`
    /// in token exchanges).
    pub organisation: String,
    /// Project identity, sent as `X-Project-Identity` when set.
    pub project: Option<String>,
    /// How to authenticate.
    pub(crate) credentials: Credentials,
    /// Retries after the first attempt for transport errors, 429 and 5xx. Default 3.
    pub max_retries: u32,
    /// Backoff ceiling of the first retry, doubled per retry (full jitter). Default 200 ms.
    pub retry_base_delay: Duration,
    /// Longest wait between attempts, and the longest `Retry-After` slept through. Default 10 s.
    pub retry_max_delay: Duration,
    /// Ceiling of the client-side request rate, requests per second, shared by every client
    /// built with the same [`SharedLimits`] (a user's hard quota). Default 1000.
    pub rate_limit_per_second: f64,
    /// Where this client's adaptive rate starts (AIMD: it grows while Thalassa answers and halves
    /// on 429 and 503, never above `rate_limit_per_second`). Default 50.
    pub rate_limit_start: f64,
    /// Client-side burst size. Default 40.
    pub rate_limit_burst: u32,
    /// Timeout of one attempt, from sending to the end of the body. Default 30 s.
    pub request_timeout: Duration,
    /// Longest time one logical call may take: every attempt, backoff sleep, rate-limiter wait
    /// and token request of it. When it passes, the call fails with
    /// [`Error::DeadlineExceeded`]; a retry whose backoff would end after it is not started.
    /// At least `request_timeout`. Default 45 s.
    pub call_deadline: Duration,
    /// Most `getSecretValue` calls in flight at once through this client (one store's
    /// connection; each may hold up to [`MAX_REVEAL_RESPONSE_BYTES`](super::MAX_REVEAL_RESPONSE_BYTES) of body). Others of the same
    /// client wait, within their call deadline; other clients have their own permits, so a store
    /// whose server never answers holds none another store needs. Default 8.
    pub max_concurrent_reveals: usize,
    /// Bytes of response bodies held at once by every client built with the same
    /// [`SharedLimits`] (the whole process): a body holds budget for the bytes read so far until
    /// it is decoded; a body that would pass it waits for others to finish. At least
    /// [`MAX_LISTING_RESPONSE_BYTES`]. Default [`DEFAULT_BODY_BUDGET_BYTES`].
    pub(crate) body_budget_bytes: usize,
    /// TCP/TLS connect timeout. Default 5 s.
    pub(crate) connect_timeout: Duration,
    /// Optional per-attempt observer for metrics.
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Limits shared with other clients ([`Client::shared_limits`](super::Client::shared_limits)); when set,
    /// `rate_limit_per_second`, `rate_limit_burst` and `body_budget_bytes` are not used.
    pub(crate) shared_limits: Option<SharedLimits>,
    /// An HTTP client shared with other clients (from [`Client::http_client`](super::Client::http_client)): its TLS roots
    /// and connection pool are held once, however many clients use it. When set,
    /// `request_timeout` and `connect_timeout` are the shared client's.
    pub(crate) shared_http: Option<reqwest::Client>,
}

impl ClientConfig {
    /// A configuration with the defaults listed on each field.
    pub fn new(
        base_url: impl Into<String>,
        organisation: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            organisation: organisation.into(),
            project: None,
            credentials,
            max_retries: 3,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            rate_limit_per_second: 1000.0,
            rate_limit_start: 50.0,
            rate_limit_burst: 40,
            request_timeout: Duration::from_secs(30),
            call_deadline: Duration::from_secs(45),
            max_concurrent_reveals: 8,
            body_budget_bytes: DEFAULT_BODY_BUDGET_BYTES,
            connect_timeout: Duration::from_secs(5),
            observer: None,
            shared_limits: None,
            shared_http: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("organisation", &self.organisation)
            .field("project", &self.project)
            .field("credentials", &self.credentials)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("request_timeout", &self.request_timeout)
            .field("call_deadline", &self.call_deadline)
            .field("max_concurrent_reveals", &self.max_concurrent_reveals)
            .field("body_budget_bytes", &self.body_budget_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .finish()
    }
}

/// What the client keeps of a configuration [`ClientConfig::check`] accepted.
pub(super) struct Checked {
    /// The base URL, parsed (a path prefix is kept).
    pub(super) base: Url,
    /// The organisation, trimmed.
    pub(super) organisation: String,
    /// Headers of this client's every request (organisation, project).
    pub(super) headers: HeaderMap,
}

impl ClientConfig {
    /// Validates the configuration, in the order the fields are documented.
    pub(super) fn check(&self) -> Result<Checked, Error> {
        let config = self;
        let invalid = |message: String| Error::InvalidConfig(message);
        let base = Url::parse(config.base_url.trim())
            .map_err(|e| invalid(format!("base_url {:?} is not a URL: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https")
            || base.cannot_be_a_base()
            || base.query().is_some()
            || base.fragment().is_some()
        {
            return Err(invalid(format!(
                "base_url {:?} must be an http(s) URL without query or fragment",
                config.base_url
            )));
        }
        let organisation = config.organisation.trim().to_owned();
        if organisation.is_empty() {
            return Err(invalid("organisation is empty".into()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            ORGANISATION_HEADER,
            HeaderValue::from_str(&organisation)
                .map_err(|_| invalid("organisation is not a valid header value".into()))?,
        );
        if let Some(project) = &config.project {
            let project = project.trim();
            if project.is_empty() {
                return Err(invalid("project is empty (use None for no project)".into()));
            }
            headers.insert(
                PROJECT_HEADER,
                HeaderValue::from_str(project)
                    .map_err(|_| invalid("project is not a valid header value".into()))?,
            );
        }
        config.credentials.validate().map_err(invalid)?;
        if !(config.rate_limit_per_second.is_finite() && config.rate_limit_per_second > 0.0) {
            return Err(invalid("rate_limit_per_second must be positive".into()));
        }
        if !(config.rate_limit_start.is_finite() && config.rate_limit_start > 0.0) {
            return Err(invalid("rate_limit_start must be positive".into()));
        }
        if config.rate_limit_burst == 0 {
            return Err(invalid("rate_limit_burst must be at least 1".into()));
        }
        if config.request_timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(invalid("timeouts must be positive".into()));
        }
        if config.call_deadline < config.request_timeout {
            return Err(invalid(format!(
                "call_deadline ({} s) must be at least request_timeout ({} s)",
                config.call_deadline.as_secs_f64(),
                config.request_timeout.as_secs_f64()
            )));
        }
        if config.max_concurrent_reveals == 0
            || config.max_concurrent_reveals > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(invalid("max_concurrent_reveals must be at least 1".into()));
        }
        if config.shared_limits.is_none() && config.body_budget_bytes < MAX_LISTING_RESPONSE_BYTES {
            return Err(invalid(format!(
                "body_budget_bytes must be at least {MAX_LISTING_RESPONSE_BYTES} (the largest body read)"
            )));
        }
        if config.retry_base_delay.is_zero() || config.retry_max_delay < config.retry_base_delay {
            return Err(invalid(
                "retry_base_delay must be positive and at most retry_max_delay".into(),
            ));
        }
        Ok(Checked {
            base,
            organisation,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Client;
    use super::*;

    #[test]
    fn config_validation() {
        let ok = ClientConfig::new(
            "https://api.thalassa.cloud",
            "org",
            Credentials::BearerToken("t".into()),
        );
        assert!(Client::new(ok.clone()).is_ok());
        let cases: Vec<(ClientConfig, &str)> = vec![
            (
                ClientConfig {
                    base_url: "ftp://x".into(),
                    ..ok.clone()
                },
                "http(s)",
            ),
            (
                ClientConfig {
                    base_url: "not a url".into(),
                    ..ok.clone()
                },
                "not a URL",
            ),
            (
                ClientConfig {
                    organisation: " ".into(),
                    ..ok.clone()
                },
                "organisation",
            ),
            (
                ClientConfig {
                    project: Some(String::new()),
                    ..ok.clone()
                },
                "project",
            ),
            (
                ClientConfig {
                    rate_limit_per_second: 0.0,
                    ..ok.clone()
                },
                "rate_limit_per_second",
            ),
            (
                ClientConfig {
                    rate_limit_per_second: f64::NAN,
                    ..ok.clone()
                },
                "rate_limit_per_second",
            ),
            (
                ClientConfig {
                    rate_limit_burst: 0,
                    ..ok.clone()
                },
                "rate_limit_burst",
            ),
            (
                ClientConfig {
                    request_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "timeouts",
            ),
            (
                ClientConfig {
                    call_deadline: Duration::from_secs(29),
                    ..ok.clone()
                },
                "call_deadline",
            ),
            (
                ClientConfig {
                    max_concurrent_reveals: 0,
                    ..ok.clone()
                },
                "max_concurrent_reveals",
            ),
            (
                ClientConfig {
                    credentials: Credentials::BearerToken("bad\u{7f}secret-tok".into()),
                    ..ok.clone()
                },
                "access token",
            ),
        ];
        for (config, needle) in cases {
            let err = Client::new(config).unwrap_err();
            assert_eq!(err.reason(), "InvalidConfig");
            let text = err.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("secret-tok"), "{text}");
        }
    }

    #[test]
    fn config_debug_is_redacted() {
        let config = ClientConfig::new(
            "https://api.thalassa.cloud",
            "org",
            Credentials::PersonalAccessToken("pat-value-xyz".into()),
        );
        assert!(!format!("{config:?}").contains("pat-value-xyz"));
    }
}
