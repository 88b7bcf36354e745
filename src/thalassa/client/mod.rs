//! The Thalassa HTTP client: [`Client`], built from a [`ClientConfig`], and its endpoints.
//!
//! Files by responsibility:
//! - `config`: [`ClientConfig`], [`RequestObserver`] and the validation of a configuration;
//! - `call`: one API call as a value (operation, method, a URL built from validated segments,
//!   body, error target, body cap);
//! - `transport`: running a call (rate limiting, sending, body caps, retries, the call
//!   deadline, classifying failures into [`Error`]);
//! - `authorization`: the `Authorization` header, from the token cache or a token exchange;
//! - `secrets`, `kms`: the Secrets Manager and KMS endpoints the operator uses;
//! - `testing` (feature `testing`, on for this crate's tests): the endpoints only tests use
//!   (writes, deletions, the KMS key lifecycle), kept out of the operator's build.
//!
//! I/O contract: a [`Client`] makes HTTPS requests to one base URL for one organisation and
//! returns typed wire values or one [`Error`]; request and response bodies that may hold secret
//! values live in zeroizing buffers and are never logged.

mod authorization;
mod call;
mod config;
mod kms;
mod secrets;
#[cfg(feature = "testing")]
mod testing;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};

use super::auth::{Credentials, TokenCache};
use super::body::ByteBudget;
use super::error::Error;
use super::ratelimit::TokenBucket;
use super::retry::RetryPolicy;

pub use config::{ClientConfig, RequestObserver};

/// `User-Agent` sent on every request.
pub const USER_AGENT: &str = concat!("thalassa-secrets-operator/", env!("CARGO_PKG_VERSION"));

/// Largest response body read for one object (metadata, a key, the KMS summary, a token), so a
/// misbehaving server cannot exhaust memory.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Largest response body read for a listing (`listSecrets`, `browseSecrets`, `listKeys`, a
/// version history). The operator's listings are parsed as they arrive and keep only the entries
/// under the prefix (see `body::ListingSink`), so this bounds the time spent, not the memory.
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
    pub(crate) fn of(config: &ClientConfig) -> Self {
        SharedLimits {
            limiter: Arc::new(TokenBucket::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            bytes: ByteBudget::new(config.body_budget_bytes),
        }
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

impl Client {
    /// Validates `config` and builds the client. Installs the `ring` crypto provider if no rustls
    /// provider is installed yet (see [`install_crypto_provider`]).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let checked = config.check()?;
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
                headers: checked.headers,
                base_url: checked.base.as_str().trim_end_matches('/').to_owned(),
                organisation: checked.organisation,
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
    pub(crate) fn http_client(config: &ClientConfig) -> Result<reqwest::Client, Error> {
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
    pub(crate) fn shared_limits(&self) -> SharedLimits {
        self.inner.limits.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
