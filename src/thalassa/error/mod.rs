//! The client's error type and the mapping from HTTP failures to it.
//!
//! Thalassa has no machine-readable error codes; the only error body field is `message`. The
//! mapping therefore keys on (status, route) first and looks at the message only to split classes
//! that share a status (403 gate vs permission, 404 secret vs version vs key, 400 key not active).
//! Unknown wording falls back to the status-based class.
//!
//! This file holds the [`Error`] type, its texts and its questions (`reason`, `is_transient`,
//! ...); `classify` maps an HTTP failure to it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::path::PathError;

mod classify;

pub(crate) use classify::{HttpFailure, KmsProbe, Route, Target, classify, needs_kms_probe};

/// Longest server message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// Everything a Thalassa API call can fail with.
///
/// Display and `Debug` texts are built from status codes, our own words and what the caller
/// already knows (secret paths, regions, key identities). They never contain the server's
/// `message` (it can quote request data), request or response bodies, tokens or secret values.
/// The sanitised `message` is kept in the variants that have one, for callers that need to
/// classify further (e.g. the `check` command); it is not printed.
#[derive(thiserror::Error)]
pub enum Error {
    /// 401: the token is missing, unknown, expired or revoked, or the token endpoint refused the
    /// credentials.
    #[error("Thalassa rejected the credentials{}", oauth_code(.message))]
    Unauthorized {
        /// Sanitised server message.
        message: String,
    },
    /// 403 because the organisation's `secrets` feature gate is off.
    #[error("the 'secrets' feature is not enabled for the organisation (403)")]
    SecretsFeatureDisabled {
        /// Sanitised server message.
        message: String,
    },
    /// 403 because the organisation's `kms` feature gate is off (Secrets Manager needs it too).
    #[error("the 'kms' feature is not enabled for the organisation (403)")]
    KmsFeatureDisabled {
        /// Sanitised server message.
        message: String,
    },
    /// 403 from IAM or an access policy: the caller may not do this.
    #[error("permission denied (403){}", on_path(.path))]
    Forbidden {
        /// Secret path the call was about, if any.
        path: Option<String>,
        /// Sanitised server message.
        message: String,
    },
    /// 404: the secret does not exist (or is not visible in this organisation/project scope).
    #[error("secret {path} not found (404)")]
    SecretNotFound {
        /// The secret path.
        path: String,
        /// Sanitised server message.
        message: String,
    },
    /// 404: the secret exists but the version does not, or it has been destroyed.
    #[error("{} of secret {path} not found or destroyed (404)", version_name(.version))]
    VersionNotFound {
        /// The secret path.
        path: String,
        /// The requested version; `None` when the current version was requested.
        version: Option<u64>,
        /// Sanitised server message.
        message: String,
    },
    /// 404 on a KMS key (KMS also answers 404 when IAM denies access, to hide existence).
    #[error("KMS key{} not found in region {region} (404)", named(.key))]
    KeyNotFound {
        /// Region of the key.
        region: String,
        /// Key identity or slug as requested.
        key: String,
        /// Sanitised server message.
        message: String,
    },
    /// 404 naming the region: the region does not exist (a configuration error, not a missing
    /// secret).
    #[error("region {region} not found (404)")]
    RegionNotFound {
        /// The region as requested.
        region: String,
        /// Sanitised server message.
        message: String,
    },
    /// 400: the KMS key bound to the secret is disabled or pending deletion.
    #[error(
        "the KMS key{}{} is not active: it is disabled or pending deletion (400)",
        named_opt(.key),
        protecting(.path)
    )]
    KeyNotActive {
        /// The secret path the call was about, if any.
        path: Option<String>,
        /// The key identity, when the request named it.
        key: Option<String>,
        /// Sanitised server message (names the key and its status).
        message: String,
    },
    /// 503: the region's KMS backend cannot perform crypto operations right now.
    #[error("KMS is not available in region {region} (503)")]
    KmsBackendUnavailable {
        /// The region whose backend is down.
        region: String,
        /// Sanitised server message.
        message: String,
    },
    /// 429 after the retry budget was used up (or the server asked for a longer wait than the
    /// client is willing to sleep).
    #[error("rate limited by Thalassa{}", retry_after_text(.retry_after))]
    RateLimited {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Any other 4xx (mostly 400 validation errors).
    #[error("Thalassa rejected the request as invalid (status {status})")]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// Sanitised server message.
        message: String,
    },
    /// 409: the object already exists (e.g. a secret at that path, a key with that slug).
    #[error("Thalassa reported a conflict (409): the object already exists")]
    Conflict {
        /// Sanitised server message.
        message: String,
    },
    /// 5xx other than a KMS outage.
    #[error("Thalassa server error (status {status})")]
    Server {
        /// HTTP status.
        status: u16,
        /// Sanitised server message.
        message: String,
    },
    /// Connect, TLS, timeout or body-read failure.
    #[error("request {operation} to Thalassa failed")]
    Transport {
        /// Operation name (see [`RequestObserver`](super::RequestObserver)).
        operation: &'static str,
        /// The underlying HTTP client error.
        #[source]
        source: reqwest::Error,
    },
    /// One logical call (all attempts, backoff sleeps and rate-limiter waits) took longer than
    /// [`ClientConfig::call_deadline`](super::ClientConfig::call_deadline).
    #[error(
        "Thalassa did not answer {operation} within the call deadline of {} s (timeout, including retries)",
        .deadline.as_secs_f64()
    )]
    DeadlineExceeded {
        /// Operation name.
        operation: &'static str,
        /// The configured deadline.
        deadline: Duration,
    },
    /// A revealed value is larger than a Kubernetes Secret can hold: the response body passed
    /// the reveal cap, or the decoded value is larger than 1 MiB. Reading
    /// stops as soon as the cap is passed.
    #[error(
        "secret {path} is too large: its value is over {limit} bytes (a Kubernetes Secret holds at most 1 MiB)"
    )]
    ValueTooLarge {
        /// The secret path.
        path: String,
        /// The limit that was passed, in bytes (response body or decoded value).
        limit: usize,
    },
    /// A 2xx response that does not decode (bad JSON, invalid base64, oversized body).
    #[error("invalid response to {operation}: {detail}")]
    InvalidResponse {
        /// Operation name.
        operation: &'static str,
        /// What was wrong; never contains response content.
        detail: String,
    },
    /// The secret path breaks Thalassa's path rules (checked before sending).
    #[error("invalid secret path {path:?}: {source}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// The rule it breaks.
        #[source]
        source: PathError,
    },
    /// A region, key identity or other argument cannot be sent (checked before sending).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The [`ClientConfig`](super::ClientConfig) is unusable.
    #[error("invalid Thalassa client configuration: {0}")]
    InvalidConfig(String),
    /// A credential file (token, client secret, subject token) could not be read or is empty.
    #[error("cannot read the credential file {}", .path.display())]
    CredentialFileUnreadable {
        /// The configured file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// Credentials kept elsewhere (a Kubernetes Secret, a ServiceAccount token) could not be
    /// obtained. Both fields name objects and keys, never secret material.
    #[error("credentials unavailable: {what}: {detail}")]
    CredentialUnavailable {
        /// Where they come from, e.g. `Secret team-a/thalassa key token`.
        what: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
}

/// Like a derived `Debug`, but without the server `message` (see [`Error`]): only its length.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct(self.reason());
        let message = match self {
            Self::Unauthorized { message }
            | Self::SecretsFeatureDisabled { message }
            | Self::KmsFeatureDisabled { message }
            | Self::Conflict { message } => Some(message),
            Self::Forbidden { path, message } => {
                out.field("path", path);
                Some(message)
            }
            Self::SecretNotFound { path, message } => {
                out.field("path", path);
                Some(message)
            }
            Self::VersionNotFound {
                path,
                version,
                message,
            } => {
                out.field("path", path).field("version", version);
                Some(message)
            }
            Self::KeyNotFound {
                region,
                key,
                message,
            } => {
                out.field("region", region).field("key", key);
                Some(message)
            }
            Self::RegionNotFound { region, message }
            | Self::KmsBackendUnavailable { region, message } => {
                out.field("region", region);
                Some(message)
            }
            Self::KeyNotActive { path, key, message } => {
                out.field("path", path).field("key", key);
                Some(message)
            }
            Self::RateLimited { retry_after } => {
                out.field("retry_after", retry_after);
                None
            }
            Self::InvalidRequest { status, message } | Self::Server { status, message } => {
                out.field("status", status);
                Some(message)
            }
            Self::Transport { operation, source } => {
                out.field("operation", operation).field("source", source);
                None
            }
            Self::DeadlineExceeded {
                operation,
                deadline,
            } => {
                out.field("operation", operation)
                    .field("deadline", deadline);
                None
            }
            Self::ValueTooLarge { path, limit } => {
                out.field("path", path).field("limit", limit);
                None
            }
            Self::InvalidResponse { operation, detail } => {
                out.field("operation", operation).field("detail", detail);
                None
            }
            Self::InvalidPath { path, source } => {
                out.field("path", path).field("source", source);
                None
            }
            Self::InvalidArgument(detail) | Self::InvalidConfig(detail) => {
                out.field("detail", detail);
                None
            }
            Self::CredentialFileUnreadable { path, source } => {
                out.field("path", path).field("source", source);
                None
            }
            Self::CredentialUnavailable { what, detail } => {
                out.field("what", what).field("detail", detail);
                None
            }
        };
        if let Some(message) = message {
            out.field("message_chars", &message.chars().count());
        }
        out.finish()
    }
}

impl Error {
    /// Stable PascalCase name of the error class, for metric labels, Event and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "Unauthorized",
            Self::SecretsFeatureDisabled { .. } => "SecretsFeatureDisabled",
            Self::KmsFeatureDisabled { .. } => "KmsFeatureDisabled",
            Self::Forbidden { .. } => "Forbidden",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::VersionNotFound { .. } => "VersionNotFound",
            Self::KeyNotFound { .. } => "KeyNotFound",
            Self::RegionNotFound { .. } => "RegionNotFound",
            Self::KeyNotActive { .. } => "KeyNotActive",
            Self::KmsBackendUnavailable { .. } => "KmsBackendUnavailable",
            Self::RateLimited { .. } => "RateLimited",
            Self::InvalidRequest { .. } => "InvalidRequest",
            Self::Conflict { .. } => "Conflict",
            Self::Server { .. } => "Server",
            Self::Transport { .. } => "Transport",
            Self::DeadlineExceeded { .. } => "DeadlineExceeded",
            Self::ValueTooLarge { .. } => "ValueTooLarge",
            Self::InvalidResponse { .. } => "InvalidResponse",
            Self::InvalidPath { .. } => "InvalidPath",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::InvalidConfig(_) => "InvalidConfig",
            Self::CredentialFileUnreadable { .. } => "CredentialFileUnreadable",
            Self::CredentialUnavailable { .. } => "CredentialUnavailable",
        }
    }

    /// True only when Thalassa said the secret itself does not exist; a missing version, key or
    /// permission is not a definite "secret gone".
    pub fn is_definite_not_found(&self) -> bool {
        matches!(self, Self::SecretNotFound { .. })
    }

    /// True for failures that may go away by themselves (worth a requeue with backoff).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Transport { .. }
                | Self::DeadlineExceeded { .. }
                | Self::KmsBackendUnavailable { .. }
        )
    }

    /// How long the server asked callers to wait, for a 429.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// OAuth 2.0 error codes (RFC 6749 section 5.2, RFC 8693): a closed vocabulary, so naming one
/// quotes nothing the server chose freely.
const OAUTH_ERROR_CODES: [&str; 7] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
];

/// ` (invalid_grant)` when the message starts with a known OAuth error code, else nothing.
fn oauth_code(message: &str) -> String {
    let first = message.split(':').next().unwrap_or_default().trim();
    OAUTH_ERROR_CODES
        .iter()
        .find(|code| **code == first)
        .map(|code| format!(" ({code})"))
        .unwrap_or_default()
}

fn named_opt(name: &Option<String>) -> String {
    named(name.as_deref().unwrap_or_default())
}

fn protecting(path: &Option<String>) -> String {
    path.as_deref()
        .map(|path| format!(" protecting secret {path}"))
        .unwrap_or_default()
}

fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    }
}

fn on_path(path: &Option<String>) -> String {
    path.as_deref()
        .map(|path| format!(" on {path}"))
        .unwrap_or_default()
}

fn version_name(version: &Option<u64>) -> String {
    match version {
        Some(version) => format!("version {version}"),
        None => "current version".to_owned(),
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|wait| format!(" (retry after {} s)", wait.as_secs_f64().ceil()))
        .unwrap_or_default()
}

/// Makes a server message safe and bounded for an error text: control characters become spaces
/// and it is cut to [`MAX_MESSAGE_CHARS`].
pub(crate) fn sanitize_message(raw: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::truncate(&cleaned, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, message: &str) -> HttpFailure {
        HttpFailure {
            status,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    fn secret_target(path: &str, version: Option<u64>) -> Target {
        Target {
            region: Some("nl-01".into()),
            path: Some(path.into()),
            key: None,
            version,
        }
    }

    #[test]
    fn mapping_table() {
        use KmsProbe::*;
        use Route::*;
        let secret = secret_target("/app/db", None);
        let versioned = secret_target("/app/db", Some(3));
        let key = Target {
            region: Some("nl-01".into()),
            key: Some("kms-abc".into()),
            ..Target::default()
        };
        let none = Target::default();
        #[rustfmt::skip]
        let cases: &[(u16, Route, &Target, &str, KmsProbe, &str)] = &[
            (401, Secrets, &secret, "invalid or missing credentials", Unknown, "Unauthorized"),
            (401, KmsKeys, &key, "", Unknown, "Unauthorized"),
            (401, Token, &none, "invalid_grant", Unknown, "Unauthorized"),
            (400, Token, &none, "invalid_request", Unknown, "Unauthorized"),
            (403, Secrets, &secret, "feature 'secrets' is not enabled for this organisation", FeatureEnabled, "SecretsFeatureDisabled"),
            (403, Secrets, &secret, "KMS must be enabled first: feature 'kms' is not enabled for this organisation", Unknown, "KmsFeatureDisabled"),
            (403, Secrets, &secret, "forbidden", FeatureDisabled, "KmsFeatureDisabled"),
            (403, Secrets, &secret, "feature 'secrets' is not enabled for this organisation", FeatureDisabled, "KmsFeatureDisabled"),
            (403, Secrets, &secret, "permission denied: getSecretValue on /app/db", FeatureEnabled, "Forbidden"),
            (403, Secrets, &secret, "", Unknown, "Forbidden"),
            (403, Secrets, &secret, "access policy denied", Unknown, "Forbidden"),
            (403, KmsKeys, &key, "feature 'kms' is not enabled for this organisation", Unknown, "KmsFeatureDisabled"),
            (403, KmsSummary, &none, "", Unknown, "KmsFeatureDisabled"),
            (404, Secrets, &secret, "secret not found: /app/db", Unknown, "SecretNotFound"),
            (404, Secrets, &secret, "", Unknown, "SecretNotFound"),
            (404, Secrets, &versioned, "version 3 not found for secret /app/db", Unknown, "VersionNotFound"),
            (404, Secrets, &versioned, "version 3 of secret /app/db is destroyed", Unknown, "VersionNotFound"),
            (404, Secrets, &secret, "kms key kms-x not found", Unknown, "KeyNotFound"),
            (404, KmsKeys, &key, "", Unknown, "KeyNotFound"),
            (404, KmsKeys, &key, "kms key not found: kms-abc", Unknown, "KeyNotFound"),
            (404, Secrets, &secret, "region not found: nl-01", Unknown, "RegionNotFound"),
            (404, KmsKeys, &key, "region not found: nl-01", Unknown, "RegionNotFound"),
            (400, Secrets, &secret, "kms key kms-abc is not active (status: disabled)", Unknown, "KeyNotActive"),
            (400, Secrets, &secret, "kms key kms-abc is not active (status: pending_deletion)", Unknown, "KeyNotActive"),
            (400, Secrets, &secret, "invalid path", Unknown, "InvalidRequest"),
            (400, KmsKeys, &key, "invalid key type", Unknown, "InvalidRequest"),
            (409, Secrets, &secret, "secret already exists", Unknown, "Conflict"),
            (409, KmsKeys, &key, "duplicate slug", Unknown, "Conflict"),
            (422, Secrets, &secret, "", Unknown, "InvalidRequest"),
            (429, Secrets, &secret, "", Unknown, "RateLimited"),
            (429, Token, &none, "", Unknown, "RateLimited"),
            (503, Secrets, &secret, "KMS is not available in region nl-01", Unknown, "KmsBackendUnavailable"),
            (503, KmsKeys, &key, "", Unknown, "KmsBackendUnavailable"),
            (503, KmsSummary, &none, "", Unknown, "Server"),
            (500, Secrets, &secret, "boom", Unknown, "Server"),
            (502, Token, &none, "", Unknown, "Server"),
        ];
        for (status, route, target, message, probe, reason) in cases {
            let err = classify(*route, target, failure(*status, message), *probe);
            assert_eq!(
                err.reason(),
                *reason,
                "{status} {route:?} {message:?} {probe:?}"
            );
        }
    }

    #[test]
    fn names_in_the_request_do_not_steer_classification() {
        let target = secret_target("/app/versions/kms-key", None);
        let err = classify(
            Route::Secrets,
            &target,
            failure(404, "secret not found: /app/versions/kms-key"),
            KmsProbe::Unknown,
        );
        assert_eq!(err.reason(), "SecretNotFound");
    }

    #[test]
    fn probe_is_needed_only_for_ambiguous_secrets_403() {
        assert!(needs_kms_probe(
            Route::Secrets,
            &failure(403, "permission denied")
        ));
        assert!(needs_kms_probe(
            Route::Secrets,
            &failure(403, "feature 'secrets' is not enabled")
        ));
        assert!(!needs_kms_probe(
            Route::Secrets,
            &failure(403, "KMS must be enabled first")
        ));
        assert!(!needs_kms_probe(Route::KmsKeys, &failure(403, "")));
        assert!(!needs_kms_probe(Route::Secrets, &failure(404, "")));
    }

    #[test]
    fn error_fields_carry_context() {
        let err = classify(
            Route::Secrets,
            &secret_target("/app/db", None),
            failure(503, "KMS is not available in region nl-01"),
            KmsProbe::Unknown,
        );
        assert!(
            matches!(&err, Error::KmsBackendUnavailable { region, .. } if region == "nl-01"),
            "{err:?}"
        );
        let err = classify(
            Route::Secrets,
            &secret_target("/app/db", None),
            HttpFailure {
                status: 429,
                message: String::new(),
                retry_after: Some(Duration::from_secs(2)),
            },
            KmsProbe::Unknown,
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert!(err.to_string().contains("retry after 2 s"), "{err}");
    }

    #[test]
    fn helpers() {
        let not_found = Error::SecretNotFound {
            path: "/x".into(),
            message: String::new(),
        };
        let version = Error::VersionNotFound {
            path: "/x".into(),
            version: Some(2),
            message: String::new(),
        };
        assert!(not_found.is_definite_not_found());
        assert!(!version.is_definite_not_found());
        assert!(!not_found.is_transient());
        assert!(Error::RateLimited { retry_after: None }.is_transient());
        assert!(
            Error::Server {
                status: 500,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            Error::KmsBackendUnavailable {
                region: "nl-01".into(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !Error::Unauthorized {
                message: String::new()
            }
            .is_transient()
        );
        assert_eq!(
            version.to_string(),
            "version 2 of secret /x not found or destroyed (404)"
        );
        assert!(
            Error::DeadlineExceeded {
                operation: "getSecretValue",
                deadline: Duration::from_secs(45)
            }
            .is_transient()
        );
        assert!(
            !Error::ValueTooLarge {
                path: "/x".into(),
                limit: 1024
            }
            .is_transient()
        );
    }

    #[test]
    fn texts_never_quote_the_server_message() {
        use Route::*;
        const CANARY: &str = "CANARY-8b1f value=hunter2";
        let secret = secret_target("/app/db", Some(2));
        let key = Target {
            region: Some("nl-01".into()),
            key: Some("kms-abc".into()),
            ..Target::default()
        };
        let none = Target::default();
        #[rustfmt::skip]
        let cases: &[(u16, Route, &Target, String)] = &[
            (400, Secrets, &secret, format!("invalid request: {CANARY}")),
            (400, Secrets, &secret, format!("kms key kms-abc is not active (status: disabled) {CANARY}")),
            (400, KmsKeys, &key, format!("invalid key type {CANARY}")),
            (401, Secrets, &secret, CANARY.to_owned()),
            (400, Token, &none, format!("invalid_grant: {CANARY}")),
            (403, Secrets, &secret, format!("permission denied {CANARY}")),
            (403, Secrets, &secret, format!("feature 'secrets' is not enabled {CANARY}")),
            (403, Secrets, &secret, format!("KMS must be enabled first {CANARY}")),
            (403, KmsKeys, &key, CANARY.to_owned()),
            (404, Secrets, &secret, CANARY.to_owned()),
            (404, Secrets, &secret, format!("version 2 not found {CANARY}")),
            (404, Secrets, &secret, format!("region not found {CANARY}")),
            (404, KmsKeys, &key, CANARY.to_owned()),
            (409, Secrets, &secret, format!("already exists: {CANARY}")),
            (422, Secrets, &secret, CANARY.to_owned()),
            (500, Secrets, &secret, CANARY.to_owned()),
            (502, Token, &none, CANARY.to_owned()),
            (503, Secrets, &secret, CANARY.to_owned()),
        ];
        for (status, route, target, message) in cases {
            let err = classify(
                *route,
                target,
                failure(*status, &sanitize_message(message)),
                KmsProbe::Unknown,
            );
            let text = format!("{err} {err:?}");
            assert!(!text.contains("CANARY"), "{status} {route:?}: {text}");
            assert!(!text.contains("hunter2"), "{status} {route:?}: {text}");
        }
        // What the texts do say: the status, and what the request was about.
        let err = classify(Secrets, &secret, failure(500, CANARY), KmsProbe::Unknown);
        assert_eq!(err.to_string(), "Thalassa server error (status 500)");
        let err = classify(Secrets, &secret, failure(400, CANARY), KmsProbe::Unknown);
        assert_eq!(
            err.to_string(),
            "Thalassa rejected the request as invalid (status 400)"
        );
        let err = classify(
            Secrets,
            &secret,
            failure(400, "kms key kms-abc is not active (status: disabled)"),
            KmsProbe::Unknown,
        );
        assert_eq!(
            err.to_string(),
            "the KMS key protecting secret /app/db is not active: it is disabled or pending deletion (400)"
        );
        let err = classify(
            Token,
            &none,
            failure(400, "invalid_grant: expired"),
            KmsProbe::Unknown,
        );
        assert_eq!(
            err.to_string(),
            "Thalassa rejected the credentials (invalid_grant)"
        );
        assert!(format!("{err:?}").starts_with("Unauthorized"), "{err:?}");
    }

    #[test]
    fn messages_are_sanitised_and_truncated() {
        assert_eq!(sanitize_message("  a\nb\u{7}c  "), "a b c");
        let long = "x".repeat(500);
        let cut = sanitize_message(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
    }
}
