//! The operator's one error type. Every variant has a stable PascalCase `reason()`, used as the
//! `Ready=False` condition reason, the Warning Event reason and the `reason` metric label.
//! Messages name paths, keys and Secret names, never values.

use std::sync::Arc;

use crate::thalassa;

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a `ThalassaSecret` from syncing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec passed admission but cannot be served (for example a required key of the Secret
    /// type is never produced).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The target Secret exists and was not created by this resource.
    #[error(
        "Secret {name} exists and is not managed by this ThalassaSecret; set target.creationPolicy to Adopt or Merge to take it over"
    )]
    TargetConflict {
        /// Name of the Secret.
        name: String,
    },

    /// The target Secret is immutable and the data to write differs.
    #[error(
        "Secret {name} is immutable and its data would change; delete it or use a new target.name"
    )]
    TargetImmutable {
        /// Name of the Secret.
        name: String,
    },

    /// Two sources render to the same key of the Secret.
    #[error("two sources write the Secret key {key}")]
    TargetKeyConflict {
        /// The Secret key.
        key: String,
    },

    /// A source secret is bound to a different KMS key than `spec.kmsKeyIdentity`.
    #[error(
        "secret {path} is bound to KMS key {actual}, but spec.kmsKeyIdentity requires {expected}"
    )]
    KmsKeyMismatch {
        /// Thalassa path.
        path: String,
        /// The key the spec requires.
        expected: String,
        /// The key the secret is bound to.
        actual: String,
    },

    /// The KMS key a source secret is bound to is disabled or pending deletion.
    #[error("KMS key {key} protecting {path} is not active (status {status})")]
    KmsKeyNotActive {
        /// Thalassa path.
        path: String,
        /// Identity of the key.
        key: String,
        /// The key's status as Thalassa reports it.
        status: String,
    },

    /// `GET /v1/kms/summary` says the `kms` feature gate is off.
    #[error("the kms feature is not enabled for the organisation")]
    KmsFeatureDisabled,

    /// `GET /v1/kms/summary` says the region's KMS backend is unavailable.
    #[error("the KMS backend is not available in region {region}")]
    KmsBackendUnavailable {
        /// The region.
        region: String,
    },

    /// The value does not have the shape the spec expects (a property of a string secret, a
    /// missing property, or a key/value secret without `property`).
    #[error("secret {path}: {detail}")]
    SourceFormatMismatch {
        /// Thalassa path.
        path: String,
        /// What does not match (names properties, never values).
        detail: String,
    },

    /// The Thalassa API refused or failed a call.
    #[error("Thalassa API: {source}")]
    Thalassa {
        /// The client's error (shared: coalesced calls hand one error to many resources).
        #[source]
        source: Arc<thalassa::Error>,
    },

    /// The Kubernetes API refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl From<thalassa::Error> for Error {
    fn from(source: thalassa::Error) -> Self {
        Error::Thalassa {
            source: Arc::new(source),
        }
    }
}

impl From<Arc<thalassa::Error>> for Error {
    fn from(source: Arc<thalassa::Error>) -> Self {
        Error::Thalassa { source }
    }
}

/// Every reason [`Error::reason`] can return: the closed set of `Ready=False` reasons.
pub const READY_FALSE_REASONS: [&str; 22] = [
    "InvalidSpec",
    "TargetConflict",
    "TargetImmutable",
    "TargetKeyConflict",
    "KmsKeyMismatch",
    "KmsKeyNotActive",
    "KmsKeyNotFound",
    "KmsFeatureDisabled",
    "KmsBackendUnavailable",
    "SourceFormatMismatch",
    "Unauthorized",
    "CredentialsUnavailable",
    "SecretsFeatureDisabled",
    "Forbidden",
    "SecretNotFound",
    "VersionNotFound",
    "SecretTooLarge",
    "RegionNotFound",
    "RateLimited",
    "ProviderRejected",
    "ProviderError",
    "KubernetesError",
];

impl Error {
    /// Stable reason name (closed set, documented in the README).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::TargetConflict { .. } => "TargetConflict",
            Error::TargetImmutable { .. } => "TargetImmutable",
            Error::TargetKeyConflict { .. } => "TargetKeyConflict",
            Error::KmsKeyMismatch { .. } => "KmsKeyMismatch",
            Error::KmsKeyNotActive { .. } => "KmsKeyNotActive",
            Error::KmsFeatureDisabled => "KmsFeatureDisabled",
            Error::KmsBackendUnavailable { .. } => "KmsBackendUnavailable",
            Error::SourceFormatMismatch { .. } => "SourceFormatMismatch",
            Error::Thalassa { source } => match source.reason() {
                "Unauthorized" => "Unauthorized",
                "CredentialFileUnreadable" => "CredentialsUnavailable",
                "SecretsFeatureDisabled" => "SecretsFeatureDisabled",
                "KmsFeatureDisabled" => "KmsFeatureDisabled",
                "Forbidden" => "Forbidden",
                "SecretNotFound" => "SecretNotFound",
                "VersionNotFound" => "VersionNotFound",
                "ValueTooLarge" => "SecretTooLarge",
                "KeyNotFound" => "KmsKeyNotFound",
                "KeyNotActive" => "KmsKeyNotActive",
                "RegionNotFound" => "RegionNotFound",
                "KmsBackendUnavailable" => "KmsBackendUnavailable",
                "RateLimited" => "RateLimited",
                "InvalidRequest" | "Conflict" | "InvalidPath" | "InvalidArgument"
                | "InvalidConfig" => "ProviderRejected",
                _ => "ProviderError",
            },
            Error::Kube(_) => "KubernetesError",
        }
    }

    /// True when only a change of the spec (or of a foreign object) can fix it, so retrying on a
    /// timer is pointless.
    pub fn needs_spec_change(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_) | Error::TargetKeyConflict { .. } | Error::TargetImmutable { .. }
        )
    }

    /// A delay the provider asked for (429 `Retry-After`), if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Thalassa { source } => source.retry_after(),
            _ => None,
        }
    }
}
