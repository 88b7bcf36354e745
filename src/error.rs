//! The operator's one error type. Every variant has a stable PascalCase `reason()`, used as the
//! `Ready=False` condition reason, the Warning Event reason and the `reason` metric label.
//! Messages name paths, keys and Secret names, never values.

use std::sync::Arc;

use crate::thalassa;

/// Result with the operator's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

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

    /// The target is the operator's own data-hash key Secret, which is never a target.
    #[error(
        "Secret {name} holds the operator's data-hash key and can never be a target; choose another target.name"
    )]
    TargetReserved {
        /// Name of the Secret.
        name: String,
    },

    /// The existing Secret has a type the operator does not manage (service-account tokens,
    /// bootstrap tokens, Helm releases, ...); writing into it could break its owner.
    #[error(
        "Secret {name} has type {secret_type}, which the operator never writes; choose another target.name"
    )]
    TargetTypeRefused {
        /// Name of the Secret.
        name: String,
        /// Its `type`.
        secret_type: String,
    },

    /// The existing Secret's type differs from `target.type`, and a Secret's type is immutable.
    #[error(
        "Secret {name} has type {existing} but target.type is {wanted}; a Secret's type cannot change: delete the Secret or set target.type {existing}"
    )]
    TargetTypeConflict {
        /// Name of the Secret.
        name: String,
        /// The existing type.
        existing: String,
        /// The type the spec asks for.
        wanted: String,
    },

    /// The rendered data is larger than a Kubernetes Secret can hold.
    #[error(
        "the sources add up to {bytes} bytes, more than the {limit} bytes a Kubernetes Secret holds"
    )]
    SecretTooLarge {
        /// Size of the rendered data.
        bytes: usize,
        /// The limit.
        limit: usize,
    },

    /// Sources that were synced are gone from Thalassa (a definite "not found" for each path);
    /// their keys are kept.
    #[error(
        "{} synced before no longer exist{} in Thalassa: {}; their keys are kept (set target.onSourceDeleted: Delete to remove them)",
        if .paths.len() == 1 { "a secret" } else { "secrets" },
        if .paths.len() == 1 { "s" } else { "" },
        .paths.join(", ")
    )]
    SourceDeleted {
        /// The paths (sorted).
        paths: Vec<String>,
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

    /// A template of `target.template` does not compile or render, or a ConfigMap it names is
    /// missing. The message is built from the error's kind and position, never from a value.
    #[error("template {0}")]
    Template(crate::template::TemplateError),

    /// The Thalassa API refused or failed a call.
    #[error("Thalassa API: {source}")]
    Thalassa {
        /// The client's error (shared: coalesced calls hand one error to many resources).
        #[source]
        source: Arc<thalassa::Error>,
    },

    /// A broken invariant of the operator itself (a bug, or state changed under it); retried with
    /// backoff.
    #[error("internal error: {0}")]
    Internal(String),

    /// Another reconcile of the same namespace holds its turn to check or render templates: the
    /// reconcile gives its slot back and tries again shortly. Never a status.
    #[error("waiting for this namespace's turn to render templates")]
    TemplateTurnTaken,

    /// `spec.storeRef` names a store that does not exist.
    #[error(
        "{kind} {name} does not exist{}; create it or fix spec.storeRef",
        if *.kind == crate::crd::StoreKind::ThalassaSecretStore { format!(" in namespace {namespace}") } else { String::new() }
    )]
    StoreNotFound {
        /// Kind of the store.
        kind: crate::crd::StoreKind,
        /// Its name.
        name: String,
        /// The resource's namespace.
        namespace: String,
    },

    /// No `spec.storeRef`, and the operator has no connection of its own.
    #[error(
        "spec.storeRef is not set and the operator has no default connection; name a ThalassaSecretStore (or a ClusterThalassaSecretStore that allows this namespace) in spec.storeRef"
    )]
    NoDefaultConnection,

    /// The store exists but cannot be used now.
    #[error("{store} cannot be used: {detail}")]
    StoreNotReady {
        /// Kind and name of the store.
        store: String,
        /// Why, and what to fix.
        detail: String,
    },

    /// The connection does not serve this namespace (deny by default).
    #[error(
        "{store} does not allow namespace {namespace}; a platform admin must list it in the store's namespaces or match it with its namespaceSelector (the default connection: --default-connection-namespaces)"
    )]
    NamespaceNotAllowed {
        /// Kind and name of the store, or "the operator's default connection".
        store: String,
        /// The resource's namespace.
        namespace: String,
    },

    /// The store's `url` is not in the operator's allow-list: nothing was sent to it.
    #[error(
        "{store} cannot be used: its url is not allowed ({why}); nothing was sent to it. The cluster admin chooses the Thalassa API URLs stores may use (--allowed-api-urls); allowed: {allowed}"
    )]
    UrlNotAllowed {
        /// Kind and name of the store.
        store: String,
        /// Why the URL does not match.
        why: String,
        /// The allow-list.
        allowed: String,
    },

    /// A `ClusterThalassaSecret` would create a copy where a ThalassaSecret of that name exists
    /// that it did not create: never adopted, left alone.
    #[error(
        "a ThalassaSecret {namespace}/{name} exists that this ClusterThalassaSecret did not create; it is left alone (rename spec.copyName, or delete that ThalassaSecret)"
    )]
    NameTaken {
        /// The namespace.
        namespace: String,
        /// The copy's name.
        name: String,
    },

    /// A `ClusterThalassaSecret` selects more namespaces than one may serve.
    #[error(
        "{selected} namespaces are selected, more than the {limit} one ClusterThalassaSecret may serve; nothing was created, changed or deleted (narrow namespaceSelector, or split it)"
    )]
    TooManyNamespaces {
        /// How many are selected.
        selected: usize,
        /// The limit.
        limit: usize,
    },

    /// The Kubernetes API refused or failed a call. The text is built from the status code,
    /// Creating a secret with a generated value, or storing a new generated version, failed
    /// (nothing was generated: Thalassa creates the value only when the call succeeds).
    #[error("{step} {path} with a value Thalassa generates: {source}")]
    Generate {
        /// Create or rotate.
        step: GenerateStep,
        /// Thalassa path.
        path: String,
        /// The client's error.
        #[source]
        source: Arc<thalassa::Error>,
    },

    /// reason and field names only: apiserver messages can quote the data that was refused.
    #[error("Kubernetes API: {}", kube_summary(.0))]
    Kube(#[from] kube::Error),

    /// A ThalassaPushSecret's Secret is missing, or an entry's data cannot be stored in Thalassa
    /// (a missing key, a value or key name out of Thalassa's limits). Names keys and sizes, never
    /// a value.
    #[error("Secret {secret}: {detail}; nothing was written")]
    PushSourceInvalid {
        /// The Secret's name.
        secret: String,
        /// What is wrong.
        detail: String,
    },

    /// A ThalassaPushSecret would overwrite a Thalassa secret it did not create.
    #[error(
        "Thalassa secret {path} exists and was not created by this ThalassaPushSecret; nothing was written (set spec.updatePolicy: Replace to store a new version there)"
    )]
    RemoteNotOwned {
        /// The Thalassa path.
        path: String,
    },
}

/// What the operator was doing with a generated value when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
pub enum GenerateStep {
    /// `createSecret` with `generateSecret`, for a path found missing.
    #[strum(to_string = "cannot create")]
    Create,
    /// `putSecretValue` with `generateSecret`, for the rotate-generated annotation.
    #[strum(to_string = "cannot store a new version of")]
    Rotate,
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

/// Why a resource is not Ready: the closed set of `Ready=False` reasons, each documented in the
/// docs/reference.md (checked by `tests/offline/docs.rs` over [`Reason::all`]). Also the Warning Event reason and the
/// `reason` metric label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::IntoStaticStr, strum::Display,
)]
pub enum Reason {
    /// The spec passed admission but cannot be served.
    InvalidSpec,
    /// The target Secret may not be written by this resource.
    TargetConflict,
    /// The target Secret is immutable and its data would change.
    TargetImmutable,
    /// Two sources render the same Secret key.
    TargetKeyConflict,
    /// A source is bound to another key than `spec.kmsKeyIdentity`.
    KmsKeyMismatch,
    /// A bound key is disabled or pending deletion.
    KmsKeyNotActive,
    /// A bound key cannot be found.
    KmsKeyNotFound,
    /// The `kms` feature gate is off.
    KmsFeatureDisabled,
    /// The region's KMS backend is down.
    KmsBackendUnavailable,
    /// A value does not have the shape the spec expects.
    SourceFormatMismatch,
    /// Thalassa rejected the credentials (401).
    Unauthorized,
    /// The credential file cannot be read.
    CredentialsUnavailable,
    /// The `secrets` feature gate is off.
    SecretsFeatureDisabled,
    /// IAM or an access policy denied a call (403).
    Forbidden,
    /// A source does not exist (definite 404), or a synced source was deleted.
    SecretNotFound,
    /// A pinned version does not exist or was destroyed.
    VersionNotFound,
    /// A value, or the rendered data, is larger than a Secret holds.
    SecretTooLarge,
    /// The region is unknown.
    RegionNotFound,
    /// Thalassa answered 429.
    RateLimited,
    /// Thalassa rejected a request as invalid.
    ProviderRejected,
    /// 5xx, timeout, connection failure or malformed response.
    ProviderError,
    /// A Kubernetes API call failed.
    KubernetesError,
    /// A broken invariant of the operator itself; retried with backoff.
    Internal,
    /// `spec.storeRef` names a store that does not exist.
    StoreNotFound,
    /// The store exists but cannot be used (being deleted, or invalid connection settings).
    StoreNotReady,
    /// The store (or the default connection) does not allow the resource's namespace.
    NamespaceNotAllowed,
    /// The store's `url` is not in the operator's allow-list of Thalassa API URLs.
    UrlNotAllowed,
    /// A template does not compile or render, or its ConfigMap is missing.
    TemplateError,
    /// ThalassaPushSecret: the Secret is missing, or its data is out of Thalassa's limits.
    PushSourceInvalid,
    /// ThalassaPushSecret: the path exists and was not created by this resource
    /// (`updatePolicy: IfNotExists`).
    RemoteNotOwned,
    /// A `ClusterThalassaSecret`: a ThalassaSecret of the copy's name exists in the namespace and
    /// this resource did not create it (it is never adopted).
    NameTaken,
    /// A `ClusterThalassaSecret` selects more namespaces than one may serve.
    TooManyNamespaces,
}

impl Reason {
    /// The reason as written in conditions, Events and metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every reason, in declaration order.
    pub fn all() -> impl Iterator<Item = Reason> {
        <Reason as strum::IntoEnumIterator>::iter()
    }

    /// True when retrying cannot help and only a person can (a spec, a grant, a feature gate, a
    /// key, a value): the resource is `Stalled`. False for failures retried with backoff, during
    /// which it is `Reconciling`. (The operator retries both; a stalled one costs no reveal while
    /// nothing changes.)
    pub fn needs_person(self) -> bool {
        match self {
            Reason::InvalidSpec
            | Reason::TargetConflict
            | Reason::TargetImmutable
            | Reason::TargetKeyConflict
            | Reason::KmsKeyMismatch
            | Reason::KmsKeyNotActive
            | Reason::KmsKeyNotFound
            | Reason::KmsFeatureDisabled
            | Reason::SourceFormatMismatch
            | Reason::Unauthorized
            | Reason::CredentialsUnavailable
            | Reason::SecretsFeatureDisabled
            | Reason::Forbidden
            | Reason::SecretNotFound
            | Reason::VersionNotFound
            | Reason::SecretTooLarge
            | Reason::RegionNotFound
            | Reason::ProviderRejected
            | Reason::StoreNotFound
            | Reason::StoreNotReady
            | Reason::NamespaceNotAllowed
            | Reason::UrlNotAllowed
            | Reason::TemplateError
            | Reason::PushSourceInvalid
            | Reason::RemoteNotOwned
            | Reason::NameTaken
            | Reason::TooManyNamespaces => true,
            Reason::KmsBackendUnavailable
            | Reason::RateLimited
            | Reason::ProviderError
            | Reason::KubernetesError
            | Reason::Internal => false,
        }
    }
}

impl Error {
    /// The reason (closed set, documented in docs/reference.md).
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::TargetConflict { .. }
            | Error::TargetReserved { .. }
            | Error::TargetTypeRefused { .. }
            | Error::TargetTypeConflict { .. } => Reason::TargetConflict,
            Error::SecretTooLarge { .. } => Reason::SecretTooLarge,
            Error::SourceDeleted { .. } => Reason::SecretNotFound,
            Error::TargetImmutable { .. } => Reason::TargetImmutable,
            Error::TargetKeyConflict { .. } => Reason::TargetKeyConflict,
            Error::KmsKeyMismatch { .. } => Reason::KmsKeyMismatch,
            Error::KmsKeyNotActive { .. } => Reason::KmsKeyNotActive,
            Error::KmsFeatureDisabled => Reason::KmsFeatureDisabled,
            Error::KmsBackendUnavailable { .. } => Reason::KmsBackendUnavailable,
            Error::SourceFormatMismatch { .. } => Reason::SourceFormatMismatch,
            Error::Template(_) => Reason::TemplateError,
            Error::Thalassa { source } | Error::Generate { source, .. } => thalassa_reason(source),
            Error::StoreNotFound { .. } | Error::NoDefaultConnection => Reason::StoreNotFound,
            Error::StoreNotReady { .. } => Reason::StoreNotReady,
            Error::NamespaceNotAllowed { .. } => Reason::NamespaceNotAllowed,
            Error::UrlNotAllowed { .. } => Reason::UrlNotAllowed,
            Error::Kube(_) => Reason::KubernetesError,
            Error::Internal(_) | Error::TemplateTurnTaken => Reason::Internal,
            Error::PushSourceInvalid { .. } => Reason::PushSourceInvalid,
            Error::RemoteNotOwned { .. } => Reason::RemoteNotOwned,
            Error::NameTaken { .. } => Reason::NameTaken,
            Error::TooManyNamespaces { .. } => Reason::TooManyNamespaces,
        }
    }

    /// True when the same inputs (generation, source versions, target Secret) give the same
    /// failure again: the next attempt is skipped, without a reveal, until one of them changes.
    /// Anything that depends on Thalassa's content is still re-checked at every interval.
    pub(crate) fn is_deterministic(&self) -> bool {
        match self {
            Error::InvalidSpec(_)
            | Error::TargetKeyConflict { .. }
            | Error::TargetImmutable { .. }
            | Error::TargetTypeConflict { .. }
            | Error::SecretTooLarge { .. }
            | Error::SourceFormatMismatch { .. }
            | Error::Template(_)
            | Error::KmsKeyMismatch { .. } => true,
            // The apiserver refused the Secret itself (validation), not the request.
            Error::Kube(kube::Error::Api(status)) => matches!(status.code, 400 | 422),
            _ => false,
        }
    }

    /// True when only a person can fix this failure (see [`Reason::needs_person`]); a Kubernetes
    /// error stalls only when the apiserver refused the Secret itself.
    pub(crate) fn needs_person(&self) -> bool {
        match self {
            Error::Kube(_) => self.is_deterministic(),
            _ => self.reason().needs_person(),
        }
    }

    /// True when the resource's namespace is being deleted: the apiserver refuses new content
    /// there, and nothing the operator does can help.
    pub(crate) fn is_namespace_terminating(&self) -> bool {
        match self {
            Error::Kube(error) => namespace_terminating(error),
            _ => false,
        }
    }

    /// True when the Kubernetes API answered 404 (for the resource's own status: it is gone).
    pub(crate) fn is_kube_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == 404)
    }

    /// A delay the provider asked for (429 `Retry-After`), if any.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Thalassa { source } | Error::Generate { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

/// The reason of a Thalassa client error, by variant: a new client error must be placed here.
pub(crate) fn thalassa_reason(error: &thalassa::Error) -> Reason {
    use thalassa::Error as T;
    match error {
        T::Unauthorized { .. } => Reason::Unauthorized,
        T::CredentialFileUnreadable { .. } | T::CredentialUnavailable { .. } => {
            Reason::CredentialsUnavailable
        }
        T::SecretsFeatureDisabled { .. } => Reason::SecretsFeatureDisabled,
        T::KmsFeatureDisabled { .. } => Reason::KmsFeatureDisabled,
        T::Forbidden { .. } => Reason::Forbidden,
        T::SecretNotFound { .. } => Reason::SecretNotFound,
        T::VersionNotFound { .. } => Reason::VersionNotFound,
        T::ValueTooLarge { .. } => Reason::SecretTooLarge,
        T::KeyNotFound { .. } => Reason::KmsKeyNotFound,
        T::KeyNotActive { .. } => Reason::KmsKeyNotActive,
        T::RegionNotFound { .. } => Reason::RegionNotFound,
        T::KmsBackendUnavailable { .. } => Reason::KmsBackendUnavailable,
        T::RateLimited { .. } => Reason::RateLimited,
        T::InvalidRequest { .. }
        | T::Conflict { .. }
        | T::InvalidPath { .. }
        | T::InvalidArgument(_)
        | T::InvalidConfig(_) => Reason::ProviderRejected,
        T::Server { .. }
        | T::Transport { .. }
        | T::DeadlineExceeded { .. }
        | T::InvalidResponse { .. } => Reason::ProviderError,
    }
}

/// True for the apiserver's refusal to create anything in a namespace that is being deleted
/// (403 with the `NamespaceTerminating` cause).
pub(crate) fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 403
            && status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

/// Our own words for a Kubernetes API failure: code, reason and field names, never the
/// apiserver's message (a validation message can quote the refused value).
pub(crate) fn kube_summary(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let mut text = format!("{} {}", status.code, status.reason);
            let fields: Vec<&str> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| c.field.as_str())
                .filter(|f| !f.is_empty())
                .collect();
            if !fields.is_empty() {
                text.push_str(&format!(" (fields: {})", fields.join(", ")));
            }
            text
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => "request failed (transport)".into(),
        other => format!("client error ({})", kube_error_kind(other)),
    }
}

fn kube_error_kind(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::SerdeError(_) => "response did not decode",
        kube::Error::Auth(_) => "authentication",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            reason: "Invalid".into(),
            details: Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: message.into(),
                    field: "data[.dockerconfigjson]".into(),
                }],
                name: "s".into(),
                group: String::new(),
                kind: "secrets".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..Default::default()
        }))
    }

    #[test]
    fn apiserver_messages_are_never_quoted() {
        let error = Error::Kube(api_error(422, "invalid character 'Q' looking for QCANARY"));
        let text = error.to_string();
        assert!(!text.contains("CANARY") && !text.contains("'Q'"), "{text}");
        assert!(
            text.contains("422 Invalid") && text.contains("data[.dockerconfigjson]"),
            "{text}"
        );
    }

    #[test]
    fn only_failures_the_same_inputs_repeat_are_deterministic() {
        assert!(Error::Kube(api_error(422, "")).is_deterministic());
        assert!(!Error::Kube(api_error(409, "")).is_deterministic());
        assert!(!Error::Kube(api_error(500, "")).is_deterministic());
        assert!(Error::TargetKeyConflict { key: "k".into() }.is_deterministic());
        assert!(!Error::TargetConflict { name: "n".into() }.is_deterministic());
        assert!(
            !Error::SourceDeleted {
                paths: vec!["/p".into()]
            }
            .is_deterministic()
        );
        let too_large = Error::SecretTooLarge { bytes: 2, limit: 1 };
        assert!(too_large.is_deterministic());
        assert_eq!(too_large.reason(), Reason::SecretTooLarge);
    }

    #[test]
    fn reasons_are_unique_pascal_case_names() {
        let names: Vec<&str> = Reason::all().map(Reason::as_str).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
        for name in &names {
            assert!(
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name}"
            );
        }
        assert_eq!(Reason::SecretTooLarge.to_string(), "SecretTooLarge");
    }

    #[test]
    fn thalassa_errors_map_by_variant() {
        let deadline = Error::from(thalassa::Error::DeadlineExceeded {
            operation: "getSecretValue",
            deadline: std::time::Duration::from_secs(45),
        });
        assert_eq!(deadline.reason(), Reason::ProviderError);
        assert!(!deadline.is_deterministic(), "a slow Thalassa is retried");
        assert!(deadline.to_string().contains("45 s"), "{deadline}");
        let too_large = Error::from(thalassa::Error::ValueTooLarge {
            path: "/p".into(),
            limit: 1 << 20,
        });
        assert_eq!(too_large.reason(), Reason::SecretTooLarge);
        let forbidden = Error::from(thalassa::Error::Forbidden {
            path: Some("/p".into()),
            message: "server words".into(),
        });
        assert_eq!(forbidden.reason(), Reason::Forbidden);
        assert!(!forbidden.to_string().contains("server words"));
    }

    #[test]
    fn new_errors_map_to_their_documented_reasons() {
        let errors = [
            Error::TargetReserved { name: "n".into() },
            Error::TargetTypeRefused {
                name: "n".into(),
                secret_type: "t".into(),
            },
            Error::TargetTypeConflict {
                name: "n".into(),
                existing: "a".into(),
                wanted: "b".into(),
            },
            Error::SecretTooLarge { bytes: 2, limit: 1 },
            Error::SourceDeleted {
                paths: vec!["/a".into(), "/b".into()],
            },
            Error::Internal("x".into()),
        ];
        let reasons: Vec<Reason> = errors.iter().map(Error::reason).collect();
        assert_eq!(
            reasons,
            [
                Reason::TargetConflict,
                Reason::TargetConflict,
                Reason::TargetConflict,
                Reason::SecretTooLarge,
                Reason::SecretNotFound,
                Reason::Internal,
            ]
        );
    }

    #[test]
    fn a_failure_that_repeats_with_the_same_inputs_needs_a_person() {
        let errors = [
            Error::InvalidSpec("x".into()),
            Error::TargetKeyConflict { key: "k".into() },
            Error::SecretTooLarge { bytes: 2, limit: 1 },
            Error::Kube(api_error(422, "")),
            Error::TargetImmutable { name: "n".into() },
            Error::Template(crate::template::TemplateError {
                template: "target.template.data[k]".into(),
                line: Some(1),
                column: Some(4),
                problem: "undefined value".into(),
            }),
        ];
        for error in &errors {
            assert!(error.is_deterministic() && error.needs_person(), "{error}");
        }
        let retried = [
            Error::Kube(api_error(500, "")),
            Error::Kube(api_error(409, "")),
            Error::KmsBackendUnavailable { region: "r".into() },
            Error::Internal("x".into()),
            Error::from(thalassa::Error::DeadlineExceeded {
                operation: "getSecretValue",
                deadline: std::time::Duration::from_secs(45),
            }),
        ];
        for error in &retried {
            assert!(!error.needs_person(), "{error}");
        }
        // Stalled but retried (a person may grant access or turn a gate on at any time).
        let forbidden = Error::from(thalassa::Error::Forbidden {
            path: None,
            message: String::new(),
        });
        assert!(forbidden.needs_person() && !forbidden.is_deterministic());
    }
}
