//! From an HTTP failure to an [`Error`]: the route a request took, what it was about, the
//! failure reduced to status, sanitised message and `Retry-After`, and the mapping that keys on
//! (status, route) and reads the message only to split classes that share a status.
//!
//! I/O contract: pure. The request's own names (path, key) are removed from the message before
//! it is read, so names the caller chose cannot steer the classification; the message is kept
//! in the error for callers, never printed.

use std::time::Duration;

use super::Error;

/// Which API family a request belongs to; the same status means different things per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v1/secrets/{region}/…`
    Secrets,
    /// `/v1/kms/{region}/keys…`
    KmsKeys,
    /// `/v1/kms/summary`
    KmsSummary,
    /// `/oidc/token`
    Token,
}

/// What a request was about, for building errors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub(crate) region: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) version: Option<u64>,
}

/// A non-2xx response, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpFailure {
    pub(crate) status: u16,
    /// Sanitised `message` (or OAuth `error`/`error_description`) from the body; may be empty.
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

/// Outcome of probing `GET /v1/kms/summary` after an ambiguous 403 from a Secrets route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KmsProbe {
    /// Not probed, or the probe itself failed.
    Unknown,
    /// The summary answered 403 or `featureEnabled: false`.
    FeatureDisabled,
    /// The summary answered `featureEnabled: true`.
    FeatureEnabled,
}

/// Whether a failure is an ambiguous Secrets 403 that needs the KMS summary probe to classify.
pub(crate) fn needs_kms_probe(route: Route, failure: &HttpFailure) -> bool {
    route == Route::Secrets
        && failure.status == 403
        && !names_kms_feature(&failure.message.to_lowercase())
}

/// Maps a non-2xx response to an [`Error`].
pub(crate) fn classify(
    route: Route,
    target: &Target,
    failure: HttpFailure,
    probe: KmsProbe,
) -> Error {
    let HttpFailure {
        status,
        message,
        retry_after,
    } = failure;
    let words = keywords(&message, target);
    let path = target.path.clone().unwrap_or_default();
    let region = target.region.clone().unwrap_or_default();
    match (status, route) {
        (429, _) => Error::RateLimited { retry_after },
        (400..=499, Route::Token) => Error::Unauthorized { message },
        (401, _) => Error::Unauthorized { message },
        (403, Route::Secrets) => {
            if names_kms_feature(&words) || probe == KmsProbe::FeatureDisabled {
                Error::KmsFeatureDisabled { message }
            } else if says_secrets_feature_disabled(&words) {
                Error::SecretsFeatureDisabled { message }
            } else {
                Error::Forbidden {
                    path: target.path.clone(),
                    message,
                }
            }
        }
        (403, Route::KmsKeys) if words.contains("permission") => Error::Forbidden {
            path: None,
            message,
        },
        // KMS hides IAM denials behind 404, so a KMS 403 is the feature gate.
        (403, Route::KmsKeys | Route::KmsSummary) => Error::KmsFeatureDisabled { message },
        (404, Route::Secrets | Route::KmsKeys) if words.contains("region") => {
            Error::RegionNotFound { region, message }
        }
        (404, Route::KmsKeys) => Error::KeyNotFound {
            region,
            key: target.key.clone().unwrap_or_default(),
            message,
        },
        (404, Route::Secrets) => {
            if words.contains("kms") && words.contains("key") && !words.contains("version") {
                Error::KeyNotFound {
                    region,
                    key: target.key.clone().unwrap_or_default(),
                    message,
                }
            } else if words.contains("version") {
                Error::VersionNotFound {
                    path,
                    version: target.version,
                    message,
                }
            } else {
                Error::SecretNotFound { path, message }
            }
        }
        (400, Route::Secrets | Route::KmsKeys) if says_key_not_active(&words) => {
            Error::KeyNotActive {
                path: target.path.clone(),
                key: target.key.clone(),
                message,
            }
        }
        (409, _) => Error::Conflict { message },
        (503, Route::Secrets | Route::KmsKeys) => Error::KmsBackendUnavailable { region, message },
        (500..=599, _) => Error::Server { status, message },
        _ => Error::InvalidRequest { status, message },
    }
}

/// Lower-cased message with the request's own path and key removed, so names the caller chose
/// (a secret called `/app/versions/x`, a key called `kms-key`) cannot steer the classification.
fn keywords(message: &str, target: &Target) -> String {
    let mut words = message.to_owned();
    for name in [&target.path, &target.key].into_iter().flatten() {
        if !name.is_empty() {
            words = words.replace(name.as_str(), " ");
        }
    }
    words.to_lowercase()
}

fn names_kms_feature(words: &str) -> bool {
    words.contains("kms") && (words.contains("feature") || words.contains("enable"))
}

fn says_secrets_feature_disabled(words: &str) -> bool {
    words.contains("secret") && (words.contains("feature") || words.contains("not enabled"))
}

fn says_key_not_active(words: &str) -> bool {
    words.contains("not active")
        || (words.contains("key")
            && (words.contains("disabled")
                || words.contains("pending deletion")
                || words.contains("pending_deletion")))
}
