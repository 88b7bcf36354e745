//! The HTTP client: configuration, authentication, headers, rate limiting, retries and the typed
//! endpoint methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::auth::{Credentials, TokenCache, TokenResponse};
use super::body::{BodySink, BufferSink, ByteBudget, HeldBody, Listed, ListingSink, SinkError};
use super::error::{self, Error, HttpFailure, KmsProbe, Route, Target};
use super::path::{is_plain_segment, validate_browse_path, validate_path};
use super::ratelimit::TokenBucket;
use super::retry::{RetryPolicy, RetryWait, parse_retry_after};
use super::types::{
    BrowseSecretsResponse, CreateKmsKeyRequest, CreateSecretRequest, GetSecretValueRequest,
    GetSecretValueResponse, KmsKey, KmsSummary, PutSecretValueRequest, PutSecretValueResponse,
    RevealedSecret, Secret, UpdateAccessPolicyRequest,
};
use super::value::{SecretString, SecretValueInput};

/// `User-Agent` sent on every request.
pub const USER_AGENT: &str = concat!("thalassa-secrets-operator/", env!("CARGO_PKG_VERSION"));

/// Largest response body read for one object (metadata, a key, the KMS summary, a token), so a
/// misbehaving server cannot exhaust memory.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Largest response body read for a listing (`listSecrets`, `browseSecrets`, `listKeys`, a
/// version history). The operator's listings are parsed as they arrive and keep only the entries
/// under the prefix (see [`ListingSink`]), so this bounds the time spent, not the memory.
pub const MAX_LISTING_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Default of [`ClientConfig::body_budget_bytes`]: 64 MiB.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Largest decoded value a reveal may return: what a Kubernetes Secret can hold (1 MiB). A larger
/// value can never be synced, so it is refused as [`Error::ValueTooLarge`].
pub const MAX_SECRET_VALUE_BYTES: usize = 1024 * 1024;

/// Largest `getSecretValue` response body read: the base64 of [`MAX_SECRET_VALUE_BYTES`]
/// (1,398,104 bytes) plus room for JSON (256 keys of 128 characters and their quoting, the
/// path, the key identity). Reading stops as soon as a body passes it.
pub const MAX_REVEAL_RESPONSE_BYTES: usize = 1536 * 1024;

/// Largest error (non-2xx) body read; only its `message` is used, and only to classify.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

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

/// Everything [`Client::new`] needs. Build with [`ClientConfig::new`] and adjust fields.
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
    pub credentials: Credentials,
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
    /// connection; each may hold up to [`MAX_REVEAL_RESPONSE_BYTES`] of body). Others of the same
    /// client wait, within their call deadline; other clients have their own permits, so a store
    /// whose server never answers holds none another store needs. Default 8.
    pub max_concurrent_reveals: usize,
    /// Bytes of response bodies held at once by every client built with the same
    /// [`SharedLimits`] (the whole process): a body holds budget for the bytes read so far until
    /// it is decoded; a body that would pass it waits for others to finish. At least
    /// [`MAX_LISTING_RESPONSE_BYTES`]. Default [`DEFAULT_BODY_BUDGET_BYTES`].
    pub body_budget_bytes: usize,
    /// TCP/TLS connect timeout. Default 5 s.
    pub connect_timeout: Duration,
    /// Optional per-attempt observer for metrics.
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Limits shared with other clients ([`Client::shared_limits`]); when set,
    /// `rate_limit_per_second`, `rate_limit_burst` and `body_budget_bytes` are not used.
    pub shared_limits: Option<SharedLimits>,
    /// An HTTP client shared with other clients (from [`Client::http_client`]): its TLS roots
    /// and connection pool are held once, however many clients use it. When set,
    /// `request_timeout` and `connect_timeout` are the shared client's.
    pub shared_http: Option<reqwest::Client>,
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

/// Installs rustls' `ring` crypto provider as the process default, unless some provider is
/// already installed. Safe to call any number of times, from any thread.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Thalassa Secrets Manager and KMS client. Cheap to clone; clones share the connection pool,
/// token cache and rate limiter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Headers of this client's every request (organisation, project): the HTTP client may be
    /// shared by clients of other organisations.
    headers: HeaderMap,
    /// Base URL without a trailing `/`.
    base_url: String,
    organisation: String,
    credentials: Credentials,
    tokens: TokenCache,
    retry: RetryPolicy,
    limits: SharedLimits,
    /// This client's own reveal permits: a store's slow reveals wait only for each other.
    reveals: tokio::sync::Semaphore,
    /// This client's own adaptive rate (below the shared ceiling).
    adaptive: TokenBucket,
    observer: Option<Arc<dyn RequestObserver>>,
    call_deadline: Duration,
}

/// The client-side rate-limit ceiling and the budget of response bytes held at once. Clients
/// built with the same limits (one per store) share them, so many stores cannot multiply the
/// request rate or the memory of one process. (Concurrent reveals are limited per client
/// instead: permits that a slow server holds would otherwise stall every store.)
#[derive(Clone)]
pub struct SharedLimits {
    limiter: Arc<TokenBucket>,
    bytes: ByteBudget,
}

impl SharedLimits {
    /// The limits `config` asks for (its rate limit, burst and body budget).
    pub fn of(config: &ClientConfig) -> Self {
        SharedLimits {
            limiter: Arc::new(TokenBucket::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            bytes: ByteBudget::new(config.body_budget_bytes),
        }
    }

    /// The body budget's size and the bytes of it not held right now.
    pub fn body_budget(&self) -> (usize, usize) {
        (self.bytes.total(), self.bytes.available())
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("organisation", &self.inner.organisation)
            .finish_non_exhaustive()
    }
}

/// A request body, kept in a zeroizing buffer because it may hold secret values or credentials.
struct Body {
    bytes: Zeroizing<Vec<u8>>,
    content_type: &'static str,
}

/// One logical API call (all attempts share it).
struct Call {
    operation: &'static str,
    method: Method,
    url: Url,
    body: Option<Body>,
    /// Safe to repeat when the outcome of an attempt is unknown.
    idempotent: bool,
    route: Route,
    target: Target,
    /// Largest 2xx body read.
    max_body: usize,
}

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
    /// Validates `config` and builds the client. Installs the `ring` crypto provider if no rustls
    /// provider is installed yet (see [`install_crypto_provider`]).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
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

        install_crypto_provider();
        let limits = config
            .shared_limits
            .clone()
            .unwrap_or_else(|| SharedLimits::of(&config));
        let http = match config.shared_http.clone() {
            Some(http) => http,
            None => Self::http_client(&config)?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                headers,
                base_url: base.as_str().trim_end_matches('/').to_owned(),
                organisation,
                credentials: config.credentials,
                tokens: TokenCache::default(),
                retry: RetryPolicy {
                    max_retries: config.max_retries,
                    base_delay: config.retry_base_delay,
                    max_delay: config.retry_max_delay,
                },
                adaptive: TokenBucket::adaptive(
                    config.rate_limit_start,
                    config.rate_limit_per_second,
                    config.rate_limit_burst,
                ),
                limits,
                reveals: tokio::sync::Semaphore::new(config.max_concurrent_reveals),
                observer: config.observer,
                call_deadline: config.call_deadline,
            }),
        })
    }

    /// The HTTP client [`Client::new`] builds for `config` (timeouts, no redirects, user agent),
    /// to share between clients through [`ClientConfig::shared_http`].
    pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client, Error> {
        install_crypto_provider();
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // An API never needs redirects; following one could resend bodies elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidConfig(format!("cannot build the HTTP client: {e}")))
    }

    /// This client's rate-limit ceiling and body budget, to share with clients built for other
    /// stores.
    pub fn shared_limits(&self) -> SharedLimits {
        self.inner.limits.clone()
    }

    /// Drops the cached access token, so the next request reads the token file or exchanges
    /// again (e.g. after credentials were rotated out of band).
    pub async fn invalidate_token(&self) {
        self.inner.tokens.clear().await;
    }

    // ---- Secrets Manager (S1–S9) ----

    /// S1: one directory level under `path` (a directory such as `/app/prod/`, or `/`).
    pub async fn browse_secrets(
        &self,
        region: &str,
        path: &str,
    ) -> Result<BrowseSecretsResponse, Error> {
        check_browse_path(path)?;
        let mut url = self.secrets_url(region, "/secrets")?;
        url.query_pairs_mut().append_pair("path", path);
        let mut call = self
            .call("browseSecrets", Method::GET, url, Route::Secrets)
            .about(region, Some(path));
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        self.fetch_json(call).await
    }

    /// S2: every secret under `path_prefix`, recursively (filtered by the caller's `read`
    /// permission).
    pub async fn list_secrets(
        &self,
        region: &str,
        path_prefix: &str,
    ) -> Result<Vec<Secret>, Error> {
        self.fetch_json(self.list_call(region, path_prefix)?).await
    }

    /// S2 as the operator reads it: every secret under `path_prefix`, decoded into
    /// [`ListedSecret`]s (path, current version, key binding) with every other field skipped.
    ///
    /// The body is parsed as it arrives, element by element ([`ListingSink`]): only entries
    /// whose path starts with `path_prefix` are kept (a server may answer with more), at most
    /// [`MAX_LISTED_SECRETS`] of them ([`Listed::TooMany`] past that), and the body is refused
    /// past [`MAX_LISTING_RESPONSE_BYTES`]. Neither the raw body nor entries outside the prefix
    /// are ever held, so memory follows the entries kept, not the listing's size.
    pub async fn list_secret_metadata(
        &self,
        region: &str,
        path_prefix: &str,
    ) -> Result<Listed, Error> {
        let call = self.list_call(region, path_prefix)?;
        let deadline = Instant::now() + self.inner.call_deadline;
        self.execute_into(call, deadline, |limit| ListingSink::new(path_prefix, limit))
            .await
    }

    /// The S2 call for `path_prefix`.
    fn list_call(&self, region: &str, path_prefix: &str) -> Result<Call, Error> {
        check_browse_path(path_prefix)?;
        let mut url = self.secrets_url(region, "/secrets")?;
        url.query_pairs_mut().append_pair("pathPrefix", path_prefix);
        let mut call = self
            .call("listSecrets", Method::GET, url, Route::Secrets)
            .about(region, Some(path_prefix));
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        Ok(call)
    }

    /// S3: creates a secret and its version 1 (201). Not retried once the request may have been
    /// processed.
    pub async fn create_secret(
        &self,
        region: &str,
        request: &CreateSecretRequest,
    ) -> Result<Secret, Error> {
        check_path(&request.path)?;
        let url = self.secrets_url(region, "/secrets")?;
        let mut call = self
            .call("createSecret", Method::POST, url, Route::Secrets)
            .about(region, Some(&request.path))
            .not_idempotent()
            .json(request)?;
        call.target.key = Some(request.kms_key_identity.clone());
        self.fetch_json(call).await
    }

    /// S4: a secret's metadata; with `include_versions`, its version history too.
    pub async fn get_secret(
        &self,
        region: &str,
        path: &str,
        include_versions: bool,
    ) -> Result<Secret, Error> {
        check_path(path)?;
        let mut url = self.secret_url(region, path, "")?;
        if include_versions {
            url.query_pairs_mut().append_pair("includeVersions", "true");
        }
        let mut call = self
            .call("getSecret", Method::GET, url, Route::Secrets)
            .about(region, Some(path));
        if include_versions {
            call.max_body = MAX_LISTING_RESPONSE_BYTES;
        }
        self.fetch_json(call).await
    }

    /// S5: sets (`Some`) or clears (`None`) the secret's access policy, kept opaque because its
    /// schema is disputed.
    pub async fn update_access_policy(
        &self,
        region: &str,
        path: &str,
        access_policy: Option<&serde_json::Value>,
    ) -> Result<Secret, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/policy")?;
        let call = self
            .call("updateAccessPolicy", Method::PUT, url, Route::Secrets)
            .about(region, Some(path))
            .json(&UpdateAccessPolicyRequest { access_policy })?;
        self.fetch_json(call).await
    }

    /// S6: stores a new version, which becomes current. Not retried once the request may have
    /// been processed (a retry could add a second version).
    pub async fn put_secret_value(
        &self,
        region: &str,
        path: &str,
        value: &SecretValueInput,
    ) -> Result<PutSecretValueResponse, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/versions")?;
        let call = self
            .call("putSecretValue", Method::POST, url, Route::Secrets)
            .about(region, Some(path))
            .not_idempotent()
            .json(&PutSecretValueRequest { path, value })?;
        self.fetch_json(call).await
    }

    /// S7: reveals the current version (`None`) or a specific one, base64-decoded.
    pub async fn get_secret_value(
        &self,
        region: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<RevealedSecret, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/value")?;
        let mut call = self
            .call("getSecretValue", Method::POST, url, Route::Secrets)
            .about(region, Some(path))
            .json(&GetSecretValueRequest { path, version })?;
        call.target.version = version;
        call.max_body = MAX_REVEAL_RESPONSE_BYTES;
        let operation = call.operation;
        let deadline = Instant::now() + self.inner.call_deadline;
        // This store's permit, held until the value is decoded (the body holds its bytes of the
        // process-wide budget meanwhile).
        let _permit = tokio::time::timeout_at(deadline, self.inner.reveals.acquire())
            .await
            .map_err(|_| self.deadline_exceeded(operation))?;
        let body = self.execute_by(call, deadline).await?;
        let response: GetSecretValueResponse = decode_json(operation, &body)?;
        drop(body);
        let revealed = response
            .into_revealed()
            .map_err(|detail| invalid_response(operation, detail.to_owned()))?;
        if revealed.value.total_len() > MAX_SECRET_VALUE_BYTES {
            return Err(Error::ValueTooLarge {
                path: path.to_owned(),
                limit: MAX_SECRET_VALUE_BYTES,
            });
        }
        Ok(revealed)
    }

    /// S8: destroys one version (it stays in the history, unreadable).
    pub async fn destroy_secret_version(
        &self,
        region: &str,
        path: &str,
        version: u64,
    ) -> Result<(), Error> {
        check_path(path)?;
        let mut url = self.secret_url(region, path, "/versions")?;
        url.query_pairs_mut()
            .append_pair("version", &version.to_string());
        let mut call = self
            .call("destroySecretVersion", Method::DELETE, url, Route::Secrets)
            .about(region, Some(path));
        call.target.version = Some(version);
        self.execute(call).await.map(drop)
    }

    /// S9: deletes the secret and all its versions, permanently.
    pub async fn delete_secret(&self, region: &str, path: &str) -> Result<(), Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "")?;
        let call = self
            .call("deleteSecret", Method::DELETE, url, Route::Secrets)
            .about(region, Some(path));
        self.execute(call).await.map(drop)
    }

    // ---- KMS ----

    /// `GET /v1/kms/summary`: feature gate and per-region availability.
    pub async fn kms_summary(&self) -> Result<KmsSummary, Error> {
        let call = self.kms_summary_call()?;
        self.fetch_json(call).await
    }

    /// Lists the region's KMS keys.
    pub async fn list_keys(&self, region: &str) -> Result<Vec<KmsKey>, Error> {
        let url = self.kms_url(region, None, "")?;
        let mut call = self
            .call("listKeys", Method::GET, url, Route::KmsKeys)
            .about(region, None);
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        self.fetch_json(call).await
    }

    /// One KMS key by identity or slug.
    pub async fn get_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("getKey", Method::GET, region, key, "")?;
        self.fetch_json(call).await
    }

    /// Creates a KMS key (201). Not retried once the request may have been processed.
    pub async fn create_key(
        &self,
        region: &str,
        request: &CreateKmsKeyRequest,
    ) -> Result<KmsKey, Error> {
        let url = self.kms_url(region, None, "")?;
        let call = self
            .call("createKey", Method::POST, url, Route::KmsKeys)
            .about(region, None)
            .not_idempotent()
            .json(request)?;
        self.fetch_json(call).await
    }

    /// Enables a disabled key.
    pub async fn enable_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("enableKey", Method::POST, region, key, "/enable")?;
        self.fetch_json(call).await
    }

    /// Disables a key (no crypto, so secrets bound to it cannot be read or written).
    pub async fn disable_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("disableKey", Method::POST, region, key, "/disable")?;
        self.fetch_json(call).await
    }

    /// Schedules the key for deletion (30 days, `pending_deletion`).
    pub async fn delete_key(&self, region: &str, key: &str) -> Result<(), Error> {
        let call = self.key_call("deleteKey", Method::DELETE, region, key, "")?;
        self.execute(call).await.map(drop)
    }

    /// Cancels a scheduled deletion (the key becomes `active`).
    pub async fn cancel_key_deletion(&self, region: &str, key: &str) -> Result<(), Error> {
        let call = self.key_call(
            "cancelKeyDeletion",
            Method::DELETE,
            region,
            key,
            "/cancel-deletion",
        )?;
        self.execute(call).await.map(drop)
    }

    /// Rotates the key (new key version). Not retried once the request may have been processed.
    pub async fn rotate_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self
            .key_call("rotateKey", Method::POST, region, key, "/rotate")?
            .not_idempotent();
        self.fetch_json(call).await
    }

    // ---- URLs and calls ----

    /// `{base}{path}`, where `path` is already percent-encoded. Refuses a URL whose path is not
    /// exactly `path` at the end (URL parsing resolves `.` and `..` segments, for example), so a
    /// request never reaches another path than the one that was validated.
    fn url(&self, path: &str) -> Result<Url, Error> {
        let text = format!("{}{path}", self.inner.base_url);
        let url = Url::parse(&text)
            .map_err(|e| Error::InvalidArgument(format!("cannot build a URL: {e}")))?;
        if !url.path().ends_with(path) || url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidArgument(format!(
                "the request URL would not keep the path {path:?} as written; not sent"
            )));
        }
        Ok(url)
    }

    fn secrets_url(&self, region: &str, suffix: &str) -> Result<Url, Error> {
        check_segment("region", region)?;
        self.url(&format!("/v1/secrets/{region}{suffix}"))
    }

    /// `/v1/secrets/{region}/secret{path}{suffix}`: the path's segments go in percent-encoded
    /// (a validated path needs no escaping; `+` stays raw, as Thalassa expects).
    fn secret_url(&self, region: &str, path: &str, suffix: &str) -> Result<Url, Error> {
        check_segment("region", region)?;
        self.url(&format!(
            "/v1/secrets/{region}/secret{}{suffix}",
            encode_path(path)
        ))
    }

    fn kms_url(&self, region: &str, key: Option<&str>, suffix: &str) -> Result<Url, Error> {
        check_segment("region", region)?;
        match key {
            Some(key) => {
                check_segment("KMS key identity", key)?;
                self.url(&format!("/v1/kms/{region}/keys/{key}{suffix}"))
            }
            None => self.url(&format!("/v1/kms/{region}/keys{suffix}")),
        }
    }

    fn key_call(
        &self,
        operation: &'static str,
        method: Method,
        region: &str,
        key: &str,
        suffix: &str,
    ) -> Result<Call, Error> {
        let url = self.kms_url(region, Some(key), suffix)?;
        let mut call = self
            .call(operation, method, url, Route::KmsKeys)
            .about(region, None);
        call.target.key = Some(key.to_owned());
        Ok(call)
    }

    fn kms_summary_call(&self) -> Result<Call, Error> {
        let url = self.url("/v1/kms/summary")?;
        Ok(self.call("kmsSummary", Method::GET, url, Route::KmsSummary))
    }

    fn call(&self, operation: &'static str, method: Method, url: Url, route: Route) -> Call {
        Call {
            operation,
            method,
            url,
            body: None,
            idempotent: true,
            route,
            target: Target::default(),
            max_body: MAX_RESPONSE_BYTES,
        }
    }

    // ---- Execution ----

    async fn fetch_json<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let operation = call.operation;
        let body = self.execute(call).await?;
        decode_json(operation, &body)
    }

    /// Runs an API call with authentication, rate limiting and retries, within the call
    /// deadline; returns the 2xx body.
    async fn execute(&self, call: Call) -> Result<HeldBody, Error> {
        let deadline = Instant::now() + self.inner.call_deadline;
        self.execute_by(call, deadline).await
    }

    /// [`Client::execute`] with a deadline fixed by the caller: everything after `deadline` is
    /// cut off, and no retry is started whose backoff would end after it.
    async fn execute_by(&self, call: Call, deadline: Instant) -> Result<HeldBody, Error> {
        self.execute_into(call, deadline, BufferSink::new).await
    }

    /// [`Client::execute_by`] with the 2xx body of each attempt read into a fresh sink made by
    /// `sink` (given the call's `max_body`).
    async fn execute_into<S: BodySink>(
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

    fn deadline_exceeded(&self, operation: &'static str) -> Error {
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

    /// The `Authorization` header value and the token generation it came from.
    async fn authorization(&self) -> Result<(HeaderValue, u64), Error> {
        let credentials = &self.inner.credentials;
        let (token, generation) = self
            .inner
            .tokens
            .get_or_fetch(|| async {
                let current = credentials.current().await?;
                if current.uses_token_endpoint() {
                    self.request_token(&current).await
                } else {
                    let (token, lifetime) = current.read_static_token().await?;
                    Ok((token, credentials.static_token_lifetime(lifetime)))
                }
            })
            .await?;
        let text = Zeroizing::new(format!("{} {}", credentials.scheme(), token.expose()));
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            Error::InvalidConfig("the access token is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        Ok((value, generation))
    }

    /// Obtains an access token from `{base}/oidc/token`, with the same retry rules as API calls.
    async fn request_token(
        &self,
        credentials: &Credentials,
    ) -> Result<(SecretString, Duration), Error> {
        let form = credentials
            .token_request_form(&self.inner.organisation)
            .await?;
        let call = Call {
            operation: "token",
            method: Method::POST,
            url: self.url("/oidc/token")?,
            body: Some(Body {
                bytes: form,
                content_type: "application/x-www-form-urlencoded",
            }),
            idempotent: true,
            route: Route::Token,
            target: Target::default(),
            max_body: MAX_RESPONSE_BYTES,
        };
        // Boxed: API calls fetch tokens through this, and it runs through the same retry loop.
        let body = Box::pin(self.execute(call)).await?;
        let token: TokenResponse = decode_json("token", &body)?;
        if token.access_token.is_empty() {
            return Err(invalid_response("token", "access_token is empty".into()));
        }
        let lifetime = token.lifetime();
        Ok((token.access_token, lifetime))
    }

    /// One HTTP attempt: waits for the rate limiter, sends, reads the body, reports to the
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

impl Call {
    fn about(mut self, region: &str, path: Option<&str>) -> Self {
        self.target.region = Some(region.to_owned());
        self.target.path = path.map(str::to_owned);
        self
    }

    /// The error for a 2xx body over `limit`: a too-large value for a reveal, else an invalid
    /// response.
    fn too_large(&self, limit: usize) -> Error {
        match (self.operation, &self.target.path) {
            ("getSecretValue", Some(path)) => Error::ValueTooLarge {
                path: path.clone(),
                limit,
            },
            _ => invalid_response(self.operation, format!("body larger than {limit} bytes")),
        }
    }

    fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    fn json<T: Serialize>(mut self, body: &T) -> Result<Self, Error> {
        let mut bytes = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *bytes, body).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot encode the {} request body ({:?})",
                self.operation,
                e.classify()
            ))
        })?;
        self.body = Some(Body {
            bytes,
            content_type: "application/json",
        });
        Ok(self)
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
fn decode_json<T: DeserializeOwned>(operation: &'static str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| invalid_response(operation, super::types::json_error_detail(&e)))
}

fn invalid_response(operation: &'static str, detail: String) -> Error {
    Error::InvalidResponse { operation, detail }
}

fn check_path(path: &str) -> Result<(), Error> {
    validate_path(path).map_err(|source| Error::InvalidPath {
        path: path.to_owned(),
        source,
    })
}

fn check_browse_path(path: &str) -> Result<(), Error> {
    validate_browse_path(path).map_err(|source| Error::InvalidPath {
        path: path.to_owned(),
        source,
    })
}

/// Percent-encodes a secret path for the URL, segment by segment: `/` separates segments;
/// `A-Z a-z 0-9 _ - . ~` and `+` (which Thalassa expects raw) stay; every other byte becomes
/// `%XX`. A validated path comes out unchanged.
fn encode_path(path: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'_' | b'-' | b'.' | b'~' | b'+') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn check_segment(what: &str, value: &str) -> Result<(), Error> {
    if is_plain_segment(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {value:?} must be 1-255 characters of A-Z a-z 0-9 _ - ."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str) -> Client {
        Client::new(ClientConfig::new(
            base_url,
            "org-1",
            Credentials::BearerToken("t".into()),
        ))
        .unwrap()
    }

    #[test]
    fn urls_embed_paths_raw() {
        let client = client("http://127.0.0.1:9/api/");
        assert_eq!(
            client
                .secret_url("nl-01", "/app/a+b", "/policy")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/secrets/nl-01/secret/app/a+b/policy"
        );
        assert_eq!(
            client
                .secret_url("nl-01", "/app/prod/db/password", "/value")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/secrets/nl-01/secret/app/prod/db/password/value"
        );
        assert_eq!(
            client
                .kms_url("nl-01", Some("kms-1"), "/cancel-deletion")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/kms/nl-01/keys/kms-1/cancel-deletion"
        );
        assert!(client.secrets_url("nl/01", "").is_err());
        assert!(client.kms_url("nl-01", Some("../x"), "").is_err());
    }

    #[test]
    fn urls_keep_the_path_exactly_or_are_refused() {
        let client = client("http://127.0.0.1:9/api/");
        // URL parsing would resolve these to another path: refused, never normalised.
        for path in ["/team-a/../team-b/db", "/a/./b", "/a/..", "/..", "/a/."] {
            let err = client.secret_url("nl-01", path, "/value").unwrap_err();
            assert_eq!(err.reason(), "InvalidArgument", "{path}: {err}");
            assert!(err.to_string().contains("not sent"), "{err}");
        }
        // Anything outside the path alphabet is percent-encoded, never interpreted.
        assert_eq!(
            client.secret_url("nl-01", "/a b/c?d#e", "").unwrap().path(),
            "/api/v1/secrets/nl-01/secret/a%20b/c%3Fd%23e"
        );
        assert_eq!(
            client
                .secret_url("nl-01", "/a/%2e%2e/b", "")
                .unwrap()
                .path(),
            "/api/v1/secrets/nl-01/secret/a/%252e%252e/b"
        );
        assert_eq!(encode_path("/app/a+b/c_d-e.f~g"), "/app/a+b/c_d-e.f~g");
        // A validated path is sent as written.
        assert_eq!(
            client
                .secret_url("nl-01", "/app/.hidden/..x", "/value")
                .unwrap()
                .path(),
            "/api/v1/secrets/nl-01/secret/app/.hidden/..x/value"
        );
    }

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

    #[test]
    fn install_crypto_provider_is_idempotent_and_installs_ring() {
        use rustls::crypto::CryptoProvider;
        install_crypto_provider();
        let first = CryptoProvider::get_default().expect("a provider is installed");
        install_crypto_provider();
        let second = CryptoProvider::get_default().expect("still installed");
        assert!(
            Arc::ptr_eq(first, second),
            "a second call keeps the installed provider"
        );
        let suites = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            suites(first),
            suites(&rustls::crypto::ring::default_provider()),
            "the provider is ring's, the one kube uses"
        );
    }

    // ---- Retry and deadline decisions, on paused time ----
    //
    // Tokio's clock stands still unless every task waits (or the test advances it), so these
    // numbers are exact and do not depend on how busy the machine is. The wiring over real HTTP
    // is tested in tests/thalassa_client.rs.

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
