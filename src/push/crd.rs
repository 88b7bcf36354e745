//! The `ThalassaPushSecret` custom resource (`secrets.thalassa.cloud/v1alpha1`): a Secret of its
//! own namespace, stored in Thalassa through a store's identity.
//!
//! Validation the apiserver can do (path pattern, unique remote paths, a KMS key for every
//! entry) is here, so an invalid spec is rejected at admission with a readable message.

// `KubeSchema` derives a private copy of each struct (for its schema) with the same spans, and
// `unreachable_pub` would flag the copies.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{NO_DOT_SEGMENTS, StoreRef};

/// At most this many entries per resource (each may cost one write per change).
pub const MAX_PUSH_ENTRIES: usize = 64;

/// Label on every Thalassa secret a `ThalassaPushSecret` created: the resource's UID, so a
/// resource deleted and created again under the same name is a new owner.
pub const PUSHED_BY_UID_LABEL: &str = "secrets.thalassa.cloud/pushed-by-uid";
/// Label naming the operator as the writer of a pushed secret.
pub const PUSHED_MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation on a pushed secret: `<namespace>/<name>` of the `ThalassaPushSecret` that created it.
pub const PUSHED_BY_ANNOTATION: &str = "secrets.thalassa.cloud/pushed-by";
/// Finalizer held while `deletionPolicy: Delete` may have to delete what the resource created.
pub const PUSH_FINALIZER: &str = "secrets.thalassa.cloud/push-cleanup";

/// A `ThalassaPushSecret` stores a Kubernetes Secret of its namespace in Thalassa Cloud Secrets
/// Manager: a new version when the Secret's data changes, nothing when it does not.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secrets.thalassa.cloud",
    version = "v1alpha1",
    kind = "ThalassaPushSecret",
    plural = "thalassapushsecrets",
    singular = "thalassapushsecret",
    shortname = "tpush",
    category = "thalassa",
    namespaced,
    status = "ThalassaPushSecretStatus",
    doc = "ThalassaPushSecret stores a Kubernetes Secret of its namespace in Thalassa Cloud Secrets Manager.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretRef.name"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.kmsKeyIdentity) || self.data.all(e, has(e.kmsKeyIdentity))").message("every data entry needs a kmsKeyIdentity (the KMS key a created secret is bound to), or set spec.kmsKeyIdentity for all of them")
)]
#[serde(rename_all = "camelCase")]
pub struct ThalassaPushSecretSpec {
    /// The Secret to push, in this namespace (a Secret of another namespace cannot be named).
    pub secret_ref: PushSecretRef,

    /// The Thalassa connection to write through: a `ThalassaSecretStore` in this namespace, or a
    /// `ClusterThalassaSecretStore` that allows this namespace. Without it, the operator's default
    /// connection, which serves only the namespaces the operator allows (deny by default).
    /// Thalassa IAM of that identity decides which paths may be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<StoreRef>,

    /// Thalassa region of the secrets, for example `nl-01`. Defaults to the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub region: Option<String>,

    /// How often the Secret is compared with what was pushed, as a duration (`30s`, `1m`, `1h`).
    /// A check reads the Secret from Kubernetes and costs no Thalassa call when its data is
    /// unchanged. Minimum 10s. Defaults to the operator's `--default-refresh-interval` (1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("refreshInterval must be at least 10s"))]
    pub refresh_interval: Option<String>,

    /// What to do with a path that exists in Thalassa but was not created by this resource:
    /// `IfNotExists` (default) refuses to write it (reason RemoteNotOwned); `Replace` stores a
    /// new version there.
    #[serde(default)]
    pub update_policy: PushUpdatePolicy,

    /// What happens to the Thalassa secrets this resource created when it is deleted: `Retain`
    /// (default) keeps them; `Delete` deletes them (and only them). A change of store, path or
    /// spec never deletes anything.
    #[serde(default)]
    pub deletion_policy: PushDeletionPolicy,

    /// KMS key a created secret is bound to, for entries without their own. The binding of an
    /// existing secret is immutable and is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub kms_key_identity: Option<String>,

    /// What to push: each entry stores one key of the Secret (a string secret) or, without
    /// `secretKey`, the whole Secret (a key/value secret) at `remotePath`. Remote paths must be
    /// unique.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["remotePath".into()]))]
    pub data: Vec<PushEntry>,
}

/// The Secret a push reads.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretRef {
    /// Name of the Secret, in the resource's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// One Thalassa secret written from the Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PushEntry {
    /// Key of the Secret's `data` to store as a string secret. Without it, every key of the
    /// Secret is stored as one key/value secret (at most 256 keys, names of 1-128 characters
    /// `[A-Za-z0-9_.-]`). Each value must be 1 to 4096 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub secret_key: Option<String>,
    /// Thalassa secret path, for example `/app/production/db/password`: a leading `/`, segments
    /// of letters, digits and `_ . + -`, no `//` and no trailing `/`, at most 512 characters.
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^(/[A-Za-z0-9_.+-]+)+$"))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS).message("must not contain '.' or '..' segments"))]
    pub remote_path: String,
    /// KMS key a created secret is bound to; defaults to `spec.kmsKeyIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub kms_key_identity: Option<String>,
}

/// Whether a path this resource did not create may be written.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PushUpdatePolicy {
    /// Create paths that do not exist; refuse paths someone else created (default).
    #[default]
    IfNotExists,
    /// Store a new version at an existing path even if this resource did not create it.
    Replace,
}

/// What happens to the created Thalassa secrets when the resource is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PushDeletionPolicy {
    /// Keep them (default).
    #[default]
    Retain,
    /// Delete the secrets this resource created (never one it did not create).
    Delete,
}

/// Observed state, following Kubernetes API conventions (kstatus compatible).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThalassaPushSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, and one condition per prerequisite:
    /// `SecretsFeatureEnabled`, `KmsFeatureEnabled`, `KmsBackendAvailable`, `KmsKeyActive`,
    /// `Authorized`. Reasons are listed in docs/reference.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// What was stored, per entry of the spec (no values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<PushedEntry>,
    /// When the Secret was last compared with what was pushed. Written on status changes and at
    /// most every 10 minutes otherwise; the metric
    /// `thalassa_operator_push_last_successful_check_timestamp_seconds` is always current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
}

/// One Thalassa secret as last stored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PushedEntry {
    /// The Thalassa path.
    pub remote_path: String,
    /// The connection written through (`default`, or `<store kind>/<name>`) and the region: a
    /// different store or region is a different target.
    pub target: String,
    /// The version stored last.
    #[schemars(with = "i64")]
    pub version: u64,
    /// Keyed hash (HMAC-SHA256) of the data stored, to see a change without reading Thalassa.
    pub data_hash: String,
    /// Whether this resource created the secret (only those are ever deleted).
    pub created: bool,
}
