//! Credentials, the access-token cache and the OAuth form bodies for `/oidc/token`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use serde::Deserialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::error::Error;
use super::value::SecretString;

/// Lifetime assumed when the token endpoint sends no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh this long before expiry (at most half the lifetime), so a token never expires in
/// flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How long a token read from a file is used before the file is read again (mounted Secrets are
/// updated in place when rotated).
const TOKEN_FILE_TTL: Duration = Duration::from_secs(60);
/// Lifetime of an inline token: it never changes, so it is read once.
const INLINE_TOKEN_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// How the client authenticates. Secrets are held in [`SecretString`] (redacted in `Debug`) or
/// read from files when needed, so rotation of mounted files is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A personal access token, sent as `Authorization: Token <pat>`.
    PersonalAccessToken(SecretString),
    /// A file holding a personal access token; re-read every minute and after a 401.
    PersonalAccessTokenFile(PathBuf),
    /// A pre-issued access token, sent as `Authorization: Bearer <token>`.
    BearerToken(SecretString),
    /// A file holding a pre-issued access token; re-read every minute and after a 401.
    BearerTokenFile(PathBuf),
    /// OAuth2 client credentials (service-account access credentials), exchanged at
    /// `{base}/oidc/token` for a cached bearer token.
    ClientCredentials {
        /// The client id (service-account access key).
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
        /// Requested scopes, e.g. `api:read`; none means the credential's default.
        scopes: Vec<String>,
    },
    /// Like [`Credentials::ClientCredentials`], with the secret read from a file at each exchange.
    ClientCredentialsFile {
        /// The client id (service-account access key).
        client_id: String,
        /// File holding the client secret.
        client_secret_file: PathBuf,
        /// Requested scopes; none means the credential's default.
        scopes: Vec<String>,
    },
    /// Workload identity federation: the JWT in `subject_token_file` (e.g. a projected Kubernetes
    /// service-account token) is exchanged for a bearer token acting as `service_account_id` in
    /// the client's organisation. The file is re-read at every exchange.
    TokenExchange {
        /// File holding the subject JWT.
        subject_token_file: PathBuf,
        /// Thalassa service account to act as.
        service_account_id: String,
        /// Requested access-token lifetime (sent in whole seconds); server default if `None`.
        access_token_lifetime: Option<Duration>,
    },
    /// Like [`Credentials::TokenExchange`], with the subject JWT in memory.
    TokenExchangeJwt {
        /// The subject JWT.
        subject_token: SecretString,
        /// Thalassa service account to act as.
        service_account_id: String,
        /// Requested access-token lifetime (sent in whole seconds); server default if `None`.
        access_token_lifetime: Option<Duration>,
    },
    /// Credentials kept elsewhere and read again whenever a token is needed (see
    /// [`CredentialSource`]).
    Dynamic(DynamicCredentials),
}

/// Credentials kept elsewhere (a Kubernetes Secret, a ServiceAccount's TokenRequest), read when a
/// token is needed: a static token is used for a minute before it is read again, the token
/// endpoint is asked again before its token expires, and a 401 reads them again at once.
pub trait CredentialSource: Send + Sync {
    /// The credentials as they are now: an in-memory bearer token, client credentials or subject
    /// JWT (never a personal access token, nor another dynamic source).
    fn read(&self) -> BoxFuture<'_, Result<Credentials, Error>>;
    /// Where they come from, for logs (no secret material).
    fn describe(&self) -> String;
}

/// A shared [`CredentialSource`]; equal only to itself.
#[derive(Clone)]
pub struct DynamicCredentials(pub Arc<dyn CredentialSource>);

impl fmt::Debug for DynamicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynamicCredentials")
            .field(&self.0.describe())
            .finish()
    }
}

impl PartialEq for DynamicCredentials {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DynamicCredentials {}

impl Credentials {
    /// The `Authorization` scheme: `Token` for personal access tokens, `Bearer` otherwise.
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            Self::PersonalAccessToken(_) | Self::PersonalAccessTokenFile(_) => "Token",
            _ => "Bearer",
        }
    }

    /// Whether a 401 may be cured by obtaining the token again (re-reading a file or exchanging).
    pub(crate) fn is_refreshable(&self) -> bool {
        !matches!(self, Self::PersonalAccessToken(_) | Self::BearerToken(_))
    }

    /// Whether the token comes from the token endpoint (for [`Credentials::Dynamic`]: decided by
    /// what it reads).
    pub(crate) fn uses_token_endpoint(&self) -> bool {
        matches!(
            self,
            Self::ClientCredentials { .. }
                | Self::ClientCredentialsFile { .. }
                | Self::TokenExchange { .. }
                | Self::TokenExchangeJwt { .. }
        )
    }

    /// The credentials to use now: these, or what a dynamic source reads. A source that returns
    /// another dynamic source or a personal access token is refused.
    pub(crate) async fn current(&self) -> Result<Cow<'_, Credentials>, Error> {
        let Self::Dynamic(source) = self else {
            return Ok(Cow::Borrowed(self));
        };
        let read = source.0.read().await?;
        match read {
            Self::Dynamic(_)
            | Self::PersonalAccessToken(_)
            | Self::PersonalAccessTokenFile(_)
            | Self::BearerTokenFile(_) => Err(Error::InvalidConfig(format!(
                "{} produced credentials of an unsupported kind",
                source.0.describe()
            ))),
            other => {
                other
                    .validate()
                    .map_err(|detail| Error::CredentialUnavailable {
                        what: source.0.describe(),
                        detail,
                    })?;
                Ok(Cow::Owned(other))
            }
        }
    }

    /// Checks what can be checked without I/O. Messages never contain secret material.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::PersonalAccessToken(token) | Self::BearerToken(token) => {
                if token.expose().trim().is_empty() {
                    return Err("the access token is empty".into());
                }
                if !is_header_safe(token.expose().trim()) {
                    return Err(
                        "the access token contains characters not allowed in an HTTP header".into(),
                    );
                }
            }
            Self::ClientCredentials {
                client_id,
                client_secret,
                ..
            } => {
                if client_id.trim().is_empty() {
                    return Err("client_id is empty".into());
                }
                if client_secret.is_empty() {
                    return Err("client_secret is empty".into());
                }
            }
            Self::ClientCredentialsFile { client_id, .. } => {
                if client_id.trim().is_empty() {
                    return Err("client_id is empty".into());
                }
            }
            Self::TokenExchange {
                service_account_id,
                access_token_lifetime,
                ..
            }
            | Self::TokenExchangeJwt {
                service_account_id,
                access_token_lifetime,
                ..
            } => {
                if service_account_id.trim().is_empty() {
                    return Err("service_account_id is empty".into());
                }
                if access_token_lifetime.is_some_and(|lifetime| lifetime < Duration::from_secs(1)) {
                    return Err("access_token_lifetime must be at least one second".into());
                }
            }
            Self::PersonalAccessTokenFile(_) | Self::BearerTokenFile(_) | Self::Dynamic(_) => {}
        }
        Ok(())
    }

    /// The form body for `/oidc/token`; reads secret files now, so rotation is picked up.
    pub(crate) async fn token_request_form(
        &self,
        organisation: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self {
            Self::ClientCredentials {
                client_id,
                client_secret,
                scopes,
            } => Ok(client_credentials_form(client_id, client_secret, scopes)),
            Self::ClientCredentialsFile {
                client_id,
                client_secret_file,
                scopes,
            } => {
                let client_secret = read_secret_file(client_secret_file).await?;
                Ok(client_credentials_form(client_id, &client_secret, scopes))
            }
            Self::TokenExchange {
                subject_token_file,
                service_account_id,
                access_token_lifetime,
            } => {
                let subject_token = read_secret_file(subject_token_file).await?;
                Ok(token_exchange_form(
                    &subject_token,
                    organisation,
                    service_account_id,
                    *access_token_lifetime,
                ))
            }
            Self::TokenExchangeJwt {
                subject_token,
                service_account_id,
                access_token_lifetime,
            } => Ok(token_exchange_form(
                subject_token,
                organisation,
                service_account_id,
                *access_token_lifetime,
            )),
            _ => Err(Error::InvalidConfig(
                "these credentials do not use the token endpoint".into(),
            )),
        }
    }

    /// The token for credentials that do not use the token endpoint, with how long to use it.
    /// How long to use a static token before reading it again: a dynamic source is read again
    /// after a minute, like a token file.
    pub(crate) fn static_token_lifetime(&self, lifetime: Duration) -> Duration {
        match self {
            Self::Dynamic(_) => lifetime.min(TOKEN_FILE_TTL),
            _ => lifetime,
        }
    }

    pub(crate) async fn read_static_token(&self) -> Result<(SecretString, Duration), Error> {
        match self {
            Self::PersonalAccessToken(token) | Self::BearerToken(token) => {
                Ok((SecretString::from(token.expose().trim()), INLINE_TOKEN_TTL))
            }
            Self::PersonalAccessTokenFile(path) | Self::BearerTokenFile(path) => {
                Ok((read_secret_file(path).await?, TOKEN_FILE_TTL))
            }
            _ => Err(Error::InvalidConfig(
                "these credentials need the token endpoint".into(),
            )),
        }
    }
}

fn token_exchange_form(
    subject_token: &SecretString,
    organisation: &str,
    service_account_id: &str,
    access_token_lifetime: Option<Duration>,
) -> Zeroizing<Vec<u8>> {
    let lifetime = access_token_lifetime.map(|l| l.as_secs().to_string());
    let mut pairs = vec![
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", subject_token.expose()),
        ("subject_token_type", TOKEN_TYPE_JWT),
        ("organisation_id", organisation),
        ("service_account_id", service_account_id),
    ];
    if let Some(lifetime) = &lifetime {
        pairs.push(("access_token_lifetime", lifetime));
    }
    form_encode(&pairs)
}

fn client_credentials_form(
    client_id: &str,
    client_secret: &SecretString,
    scopes: &[String],
) -> Zeroizing<Vec<u8>> {
    let scope = scopes.join(" ");
    let mut pairs = vec![
        ("grant_type", GRANT_CLIENT_CREDENTIALS),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ];
    if !scope.is_empty() {
        pairs.push(("scope", &scope));
    }
    form_encode(&pairs)
}

/// `application/x-www-form-urlencoded`, built in a zeroizing buffer because it holds secrets.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push(b'&');
        }
        encode_form_component(name, &mut out);
        out.push(b'=');
        encode_form_component(value, &mut out);
    }
    out
}

fn encode_form_component(text: &str, out: &mut Vec<u8>) {
    // Chunks are borrowed from `text` or static escapes: nothing secret is copied elsewhere.
    for chunk in form_urlencoded::byte_serialize(text.as_bytes()) {
        out.extend_from_slice(chunk.as_bytes());
    }
}

fn is_header_safe(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Reads a token or secret file, trimming surrounding whitespace (files often end in a newline).
pub(crate) async fn read_secret_file(path: &Path) -> Result<SecretString, Error> {
    let unreadable = |source| Error::CredentialFileUnreadable {
        path: path.to_owned(),
        source,
    };
    let mut raw = Zeroizing::new(tokio::fs::read(path).await.map_err(unreadable)?);
    let text = std::str::from_utf8(&raw).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file is not UTF-8",
        ))
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file is empty",
        )));
    }
    if !is_header_safe(trimmed) {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file contains characters not allowed in an HTTP header",
        )));
    }
    let secret = SecretString::from(trimmed);
    raw.clear();
    Ok(secret)
}

/// Successful `/oidc/token` response.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: SecretString,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// `expires_in` as a duration (number or numeric string), defaulting to one hour.
    pub(crate) fn lifetime(&self) -> Duration {
        let seconds = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        seconds
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
    }
}

/// The current access token, shared by all requests of one client. The mutex is held while a new
/// token is obtained, so concurrent callers wait for one exchange instead of starting their own.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    token: Option<CachedToken>,
    /// Bumped for every token obtained, so a stale 401 cannot evict a newer token.
    generation: u64,
}

#[derive(Debug)]
struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
    generation: u64,
}

impl TokenCache {
    /// The cached token if still fresh, else the result of `fetch` (token, lifetime), cached.
    /// Returns the token and its generation (for [`TokenCache::invalidate`]).
    pub(crate) async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<(SecretString, u64), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), Error>>,
    {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.token
            && Instant::now() < cached.refresh_at
        {
            return Ok((cached.token.clone(), cached.generation));
        }
        state.token = None;
        let (token, lifetime) = fetch().await?;
        state.generation += 1;
        let generation = state.generation;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        state.token = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            generation,
        });
        Ok((token, generation))
    }

    /// Drops the cached token, whatever its generation (for the test-only `invalidate_token`).
    #[cfg(feature = "testing")]
    pub(crate) async fn clear(&self) {
        self.state.lock().await.token = None;
    }

    /// Drops the cached token if it is still the one of `generation` (the one that got a 401).
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|cached| cached.generation == generation)
        {
            state.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn form_encoding() {
        let body = form_encode(&[
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("scope", "api:read api:write"),
        ]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&scope=api%3Aread+api%3Awrite"
        );
        let body = form_encode(&[("k", "a+b/c=d&é")]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "k=a%2Bb%2Fc%3Dd%26%C3%A9"
        );
    }

    #[test]
    fn debug_of_credentials_is_redacted() {
        let credentials = [
            Credentials::PersonalAccessToken("pat-secret-123".into()),
            Credentials::BearerToken("bearer-secret-123".into()),
            Credentials::ClientCredentials {
                client_id: "id".into(),
                client_secret: "client-secret-123".into(),
                scopes: vec![],
            },
        ];
        for credential in credentials {
            let debug = format!("{credential:?}");
            assert!(!debug.contains("secret-123"), "{debug}");
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(
            Credentials::PersonalAccessToken("x".into()).scheme(),
            "Token"
        );
        assert_eq!(
            Credentials::PersonalAccessTokenFile("/f".into()).scheme(),
            "Token"
        );
        assert_eq!(Credentials::BearerToken("x".into()).scheme(), "Bearer");
        assert_eq!(
            Credentials::TokenExchange {
                subject_token_file: "/f".into(),
                service_account_id: "sa".into(),
                access_token_lifetime: None
            }
            .scheme(),
            "Bearer"
        );
    }

    #[test]
    fn validation_never_echoes_tokens() {
        let err = Credentials::BearerToken("bad\ntoken-secret".into())
            .validate()
            .unwrap_err();
        assert!(!err.contains("token-secret"));
        assert!(Credentials::BearerToken(" ".into()).validate().is_err());
        assert!(
            Credentials::TokenExchange {
                subject_token_file: "/f".into(),
                service_account_id: String::new(),
                access_token_lifetime: None
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn token_lifetime_defaults_to_an_hour() {
        let parse = |json| {
            serde_json::from_value::<TokenResponse>(json)
                .unwrap()
                .lifetime()
        };
        assert_eq!(
            parse(serde_json::json!({"access_token": "a", "expires_in": 120})),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse(serde_json::json!({"access_token": "a", "expires_in": "60"})),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse(serde_json::json!({"access_token": "a"})),
            DEFAULT_TOKEN_LIFETIME
        );
    }

    #[tokio::test]
    async fn exchange_form_reads_the_subject_token_file_each_time() {
        let dir = std::env::temp_dir().join(format!("thalassa-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "jwt-one\n").unwrap();
        let credentials = Credentials::TokenExchange {
            subject_token_file: file.clone(),
            service_account_id: "sa-1".into(),
            access_token_lifetime: Some(Duration::from_secs(600)),
        };
        let form = credentials.token_request_form("org-1").await.unwrap();
        assert_eq!(
            std::str::from_utf8(&form).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=jwt-one\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&organisation_id=org-1\
             &service_account_id=sa-1&access_token_lifetime=600"
        );
        std::fs::write(&file, "jwt-two").unwrap();
        let form = credentials.token_request_form("org-1").await.unwrap();
        assert!(
            std::str::from_utf8(&form)
                .unwrap()
                .contains("subject_token=jwt-two&")
        );
        std::fs::write(&file, "  \n").unwrap();
        let err = credentials.token_request_form("org-1").await.unwrap_err();
        assert_eq!(err.reason(), "CredentialFileUnreadable");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn cache_shares_one_fetch_and_invalidates_by_generation() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let fetch = |fetches: Arc<AtomicU32>| async move {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok((
                SecretString::from(format!("token-{n}")),
                Duration::from_secs(3600),
            ))
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache.get_or_fetch(|| fetch(fetches)).await.unwrap()
            }));
        }
        for task in tasks {
            let (token, generation) = task.await.unwrap();
            assert_eq!(token.expose(), "token-1");
            assert_eq!(generation, 1);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // A stale generation does not evict the current token …
        cache.invalidate(0).await;
        let (token, _) = cache.get_or_fetch(|| fetch(fetches.clone())).await.unwrap();
        assert_eq!(token.expose(), "token-1");
        // … the current one does.
        cache.invalidate(1).await;
        let (token, generation) = cache.get_or_fetch(|| fetch(fetches.clone())).await.unwrap();
        assert_eq!((token.expose(), generation), ("token-2", 2));
    }

    #[tokio::test]
    async fn short_lived_tokens_are_refreshed_early() {
        let cache = TokenCache::default();
        let (first, _) = cache
            .get_or_fetch(|| async { Ok((SecretString::from("a"), Duration::from_millis(40))) })
            .await
            .unwrap();
        assert_eq!(first.expose(), "a");
        // Lifetime 40 ms, margin 20 ms: refreshed after 20 ms.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let (second, _) = cache
            .get_or_fetch(|| async { Ok((SecretString::from("b"), Duration::from_secs(60))) })
            .await
            .unwrap();
        assert_eq!(second.expose(), "b");
    }
}
