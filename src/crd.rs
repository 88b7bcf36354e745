//! The `ThalassaSecret` custom resource (`secrets.thalassa.cloud/v1alpha1`).
//!
//! Field docs become the CRD's descriptions; validation that the apiserver can do (schema patterns,
//! CEL rules, list-map uniqueness) lives here so invalid specs are rejected at admission with a
//! readable message instead of surfacing later in status.

// `KubeSchema` derives a private copy of each struct (for its schema) with the same spans, and
// `unreachable_pub` would flag the copies.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind this operator serves.
pub const GROUP: &str = "secrets.thalassa.cloud";
/// API version of `ThalassaSecret`.
pub const VERSION: &str = "v1alpha1";
/// The single server-side-apply field manager for Secrets and status.
pub const FIELD_MANAGER: &str = "thalassa-secrets-operator";
/// Value of `app.kubernetes.io/managed-by` on every Secret the operator writes.
pub const MANAGED_BY: &str = "thalassa-secrets-operator";
/// The label that marks a Secret as written by this operator.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label selector that matches exactly the Secrets this operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=thalassa-secrets-operator";
/// Annotation naming the `ThalassaSecret` (`<name>`) that writes a Secret.
pub const OWNER_ANNOTATION: &str = "secrets.thalassa.cloud/owner";
/// Annotation with the UID of that `ThalassaSecret`: a resource deleted and created again under
/// the same name is a new resource, and nothing written for the old one is trusted.
pub const OWNER_UID_ANNOTATION: &str = "secrets.thalassa.cloud/owner-uid";
/// Annotation: JSON map of source path to the version and keys it produced (no values).
pub const SOURCES_ANNOTATION: &str = "secrets.thalassa.cloud/sources";
/// Annotation with a keyed hash (HMAC-SHA256) of the Secret's type and data, to detect drift.
pub const DATA_HASH_ANNOTATION: &str = "secrets.thalassa.cloud/data-hash";
/// Annotation with the `metadata.generation` of the resource whose spec the Secret reflects; a
/// different generation means the mapping may have changed, so nothing is reused from the Secret.
pub const GENERATION_ANNOTATION: &str = "secrets.thalassa.cloud/generation";

/// Annotation on a ThalassaSecret: a new value makes the operator check versions and read every
/// source again at once.
pub const FORCE_SYNC_ANNOTATION: &str = "secrets.thalassa.cloud/force-sync";
/// Annotation on a ThalassaSecret: a new value makes the operator ask Thalassa for a new generated
/// version (`putSecretValue` with `generateSecret`) of every `data[]` entry with `generate`, once
/// per value, then sync it.
pub const ROTATE_GENERATED_ANNOTATION: &str = "secrets.thalassa.cloud/rotate-generated";
/// Label on the Thalassa secrets the operator creates with a generated value.
pub const GENERATED_BY_LABEL: &str = "managed-by";
/// Annotation on the Thalassa secrets the operator creates: `<namespace>/<name>` of the
/// `ThalassaSecret` that asked for the generated value.
pub const GENERATED_FOR_ANNOTATION: &str = "secrets.thalassa.cloud/generated-for";
/// Annotation on the Thalassa secrets the operator creates: the UID of that `ThalassaSecret`.
pub const GENERATED_FOR_UID_ANNOTATION: &str = "secrets.thalassa.cloud/generated-for-uid";
/// `generate.byteLength` when the spec leaves it out (Thalassa's own default).
pub const DEFAULT_GENERATE_BYTES: u32 = 32;

/// Annotation: JSON record of a templated Secret (keyed hash of the templates, and the data
/// keys, labels and annotations they produced; no values).
pub const TEMPLATE_ANNOTATION: &str = "secrets.thalassa.cloud/template";
/// Label a ConfigMap needs before `templateFrom` may read it: only labelled ConfigMaps are
/// watched, so the operator never caches every ConfigMap of the cluster.
pub const TEMPLATE_CONFIGMAP_LABEL: &str = "secrets.thalassa.cloud/template";
/// Label selector for template ConfigMaps.
pub const TEMPLATE_CONFIGMAP_SELECTOR: &str = "secrets.thalassa.cloud/template=true";

/// Annotation naming the store identity (kind, UID and generation) whose credentials read the
/// Secret's values; absent for the operator's default connection. Values read with one identity
/// are never reused under another.
pub const CONNECTION_ANNOTATION: &str = "secrets.thalassa.cloud/connection";
/// The identity of the operator's default connection.
pub const DEFAULT_CONNECTION: &str = "default";

/// Default refresh interval when neither the spec nor the operator flags give one.
pub const DEFAULT_REFRESH_INTERVAL: &str = "1m";

/// CEL rule: a path or prefix has no `.` or `..` segment (HTTP clients resolve those, so the
/// request would reach another path than the one written in the spec).
pub const NO_DOT_SEGMENTS: &str = "!self.matches('(^|/)[.][.]?(/|$)')";
const NO_DOT_SEGMENTS_MESSAGE: &str = "must not contain '.' or '..' segments";

/// Kubernetes qualified name (label and annotation keys): an optional DNS-subdomain prefix and
/// `/`, then a name of 1-63 characters `[A-Za-z0-9_.-]`, beginning and ending alphanumeric.
/// Mirrored by [`crate::render::is_qualified_name`].
macro_rules! qualified_name_regex {
    () => {
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
    };
}

/// A `ThalassaSecret` keeps one Kubernetes Secret in sync with secrets stored in Thalassa Cloud
/// Secrets Manager.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secrets.thalassa.cloud",
    version = "v1alpha1",
    kind = "ThalassaSecret",
    plural = "thalassasecrets",
    singular = "thalassasecret",
    shortname = "tsec",
    category = "thalassa",
    namespaced,
    status = "ThalassaSecretStatus",
    doc = "ThalassaSecret keeps a Kubernetes Secret in sync with secrets stored in Thalassa Cloud Secrets Manager.",
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
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("size(self.data) + size(self.dataFrom) > 0").message("at least one entry in data or dataFrom is required"),
    validation = Rule::new("!(self.target.creationPolicy == 'Merge' && self.target.deletionPolicy == 'Delete')").message("target.deletionPolicy Delete cannot be combined with creationPolicy Merge: the Secret is not the operator's to delete"),
    validation = Rule::new("!(self.target.creationPolicy == 'Merge' && has(self.target.immutable) && self.target.immutable)").message("target.immutable cannot be combined with creationPolicy Merge"),
    validation = Rule::new("(has(self.target) && has(self.target.name)) == (has(oldSelf.target) && has(oldSelf.target.name))").message("target.name is immutable: it cannot be added or removed after creation; create a new ThalassaSecret instead"),
    validation = Rule::new("!has(self.data) || !self.data.exists(e, has(e.generate)) || has(self.kmsKeyIdentity)").message("kmsKeyIdentity is required when a data entry has generate: Thalassa creates the secret bound to that key")
)]
#[serde(rename_all = "camelCase")]
pub struct ThalassaSecretSpec {
    /// Thalassa region of the secrets, for example `nl-01`. Defaults to the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub region: Option<String>,

    /// Identity of the KMS key every source secret must be bound to. When set, a secret bound to
    /// any other key is refused (condition KmsKeyActive=False, reason KeyMismatch) and nothing is
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub kms_key_identity: Option<String>,

    /// How often the source versions are checked, as a duration (`30s`, `1m`, `1h`). Checks use
    /// cheap metadata calls shared by all resources; a value is only read again when its version
    /// changed. Minimum 10s. Defaults to the operator's `--default-refresh-interval` (1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("refreshInterval must be at least 10s"))]
    pub refresh_interval: Option<String>,

    /// When the Secret is synced: `Periodic` (default) checks versions every `refreshInterval`;
    /// `OnChange` syncs only when this spec changes, the Secret is edited or deleted, or a
    /// force-sync is asked for; `CreatedOnce` creates the Secret once and never updates it (it is
    /// created again if deleted). The `secrets.thalassa.cloud/force-sync` annotation works with
    /// every policy.
    #[serde(default)]
    pub refresh_policy: RefreshPolicy,

    /// Explicit entries: each maps one Thalassa secret (or one property of a key/value secret)
    /// to one key of the Kubernetes Secret. Target keys must be unique.
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["secretKey".into()]))]
    pub data: Vec<DataEntry>,

    /// Bulk entries: all properties of a key/value secret (`path`), or every secret under a path
    /// prefix (`pathPrefix`).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub data_from: Vec<DataFromSource>,

    /// The Kubernetes Secret to write.
    #[serde(default)]
    pub target: SecretTarget,

    /// The Thalassa connection to read through: a `ThalassaSecretStore` in this namespace, or a
    /// `ClusterThalassaSecretStore` that allows this namespace. Without it, the operator's default
    /// connection, which serves only the namespaces the operator allows (deny by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<StoreRef>,

    /// Workloads of this namespace to restart (pod template annotation
    /// `secrets.thalassa.cloud/restartedFor`, set to the keyed hash of the new data) when the
    /// Secret's data changes: not on the first sync (unless `restartOnFirstSync`), not on an
    /// operator restart, not on a repair that restores the same data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub rollout_restart_targets: Vec<RestartTarget>,

    /// How long after a change of the data the targets are restarted; a further change within
    /// the window moves the restart, so changes close together cause one restart. Default 10s,
    /// at most 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("restartDebounce must be at most 1h"))]
    pub restart_debounce: Option<String>,

    /// Restart the targets after the first sync of the Secret too (default false: the first sync
    /// only records the data the workloads started with).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_first_sync: bool,
}

/// A workload restarted when the Secret's data changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestartTarget {
    /// `Deployment`, `StatefulSet` or `DaemonSet` (apps/v1).
    pub kind: WorkloadKind,
    /// Its name, in the resource's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// The workload kinds a rollout restart can target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// Pod template annotation a rollout restart sets: the keyed hash of the data restarted for.
pub const RESTARTED_FOR_ANNOTATION: &str = "secrets.thalassa.cloud/restartedFor";

/// Workload annotation by which someone who may patch the workload lets ThalassaSecrets of its
/// namespace restart it: their names, comma-separated, or `*` for any (with
/// `--restart-requires-opt-in`, the default, nothing else is restarted).
pub const ALLOW_RESTART_ANNOTATION: &str = "secrets.thalassa.cloud/allow-rollout-restart-by";

/// Workload annotation where the operator keeps the times (Unix seconds, comma-separated) of its
/// rollout restarts of that workload inside `--restart-window`, for `--restart-limit`.
pub const RESTART_TIMES_ANNOTATION: &str = "secrets.thalassa.cloud/rollout-restarts";

/// A reference to a store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// `ThalassaSecretStore` (default, in this namespace) or `ClusterThalassaSecretStore`.
    #[serde(default)]
    pub kind: StoreKind,
    /// Name of the store.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
}

/// The two store kinds.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::Display,
)]
pub enum StoreKind {
    /// A namespaced store, usable only from its own namespace.
    #[default]
    ThalassaSecretStore,
    /// A cluster store, usable from the namespaces it allows.
    ClusterThalassaSecretStore,
}

/// One key of the Kubernetes Secret, read from one Thalassa secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!has(self.generate) || !has(self.remoteRef.property)").message("remoteRef.property cannot be combined with generate: a generated value is a string secret"),
    validation = Rule::new("!has(self.generate) || !has(self.remoteRef.version)").message("remoteRef.version cannot be combined with generate: a generated value follows its current version")
)]
#[serde(rename_all = "camelCase")]
pub struct DataEntry {
    /// Key in the Kubernetes Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("secretKey must not be '.' or start with '..'"))]
    pub secret_key: String,
    /// Where the value comes from.
    pub remote_ref: RemoteRef,
    /// Have Thalassa generate the value when `remoteRef.path` does not exist: the operator
    /// creates the secret there (`generateSecret`, bound to `spec.kmsKeyIdentity`) once a direct
    /// lookup answers "not found", then syncs it as usual. It never generates over an existing
    /// secret, and a path that cannot be read (403, outage) is an error, not a reason to generate.
    /// The annotation `secrets.thalassa.cloud/rotate-generated` asks for a new generated version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSpec>,
}

/// A value Thalassa generates: random bytes, read back as a string secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateSpec {
    /// Number of random bytes, 16 to 4096 (Thalassa's bounds). Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // int64 in the schema: the apiserver warns about the unknown format "uint32".
    #[schemars(with = "Option<i64>", range(min = 16, max = 4096))]
    pub byte_length: Option<u32>,
}

impl GenerateSpec {
    /// The number of bytes to generate.
    pub fn bytes(&self) -> u32 {
        self.byte_length.unwrap_or(DEFAULT_GENERATE_BYTES)
    }
}

/// A reference to a Thalassa secret value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    /// Thalassa secret path, for example `/app/production/db/password`: a leading `/`, segments of
    /// letters, digits and `_ . + -`, no `//` and no trailing `/`, at most 512 characters.
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^(/[A-Za-z0-9_.+-]+)+$"))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS).message(NO_DOT_SEGMENTS_MESSAGE))]
    pub path: String,
    /// For a key/value secret: the property to read. Required for key/value secrets, must be
    /// absent for string secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub property: Option<String>,
    /// Pin a version. Without it the current version is used and followed as new versions are
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // int64 in the schema: the apiserver warns about the unknown format "uint64".
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub version: Option<u64>,
}

/// A bulk source: exactly one of `path` or `pathPrefix`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.path) != has(self.pathPrefix)").message("exactly one of path or pathPrefix must be set"))]
#[serde(rename_all = "camelCase")]
pub struct DataFromSource {
    /// A key/value secret: every property becomes a key of the Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^(/[A-Za-z0-9_.+-]+)+$"))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS).message(NO_DOT_SEGMENTS_MESSAGE))]
    pub path: Option<String>,
    /// Every secret under this prefix (recursively), for example `/app/production/`. A string
    /// secret becomes one key named after its path relative to the prefix with `/` replaced by
    /// `_` (`db/password` → `db_password`); each property of a key/value secret becomes
    /// `<relative path>.<property>`. `+` in a path becomes `-`. Two sources that map to the same
    /// key are an error (reason TargetKeyConflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^/([A-Za-z0-9_.+-]+/)*$")
    )]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS).message(NO_DOT_SEGMENTS_MESSAGE))]
    pub path_prefix: Option<String>,
}

/// The Kubernetes Secret written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    /// Name of the Secret, in the resource's namespace. Defaults to the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("target.name is immutable; create a new ThalassaSecret instead"))]
    pub name: Option<String>,
    /// Secret type. The keys the type requires (for example `tls.crt` and `tls.key` for
    /// `kubernetes.io/tls`) must be produced by `data` or `dataFrom`.
    #[serde(default)]
    pub r#type: SecretType,
    /// Extra labels for the Secret: Kubernetes label syntax (`[prefix/]name`, values of at most
    /// 63 characters), at most 64 entries, none under `secrets.thalassa.cloud/` or the
    /// operator's `app.kubernetes.io/managed-by`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("target.labels: every key must be a qualified name ([prefix/]name: name of at most 63 characters [A-Za-z0-9_.-], beginning and ending alphanumeric; prefix a DNS subdomain of at most 253 characters)"),
        validation = Rule::new("self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$'))").message("target.labels: every value must be empty or at most 63 characters [A-Za-z0-9_.-], beginning and ending alphanumeric"),
        validation = Rule::new("self.all(k, !k.startsWith('secrets.thalassa.cloud/') && k != 'app.kubernetes.io/managed-by')").message("target.labels: keys under secrets.thalassa.cloud/ and app.kubernetes.io/managed-by are the operator's own")
    )]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations for the Secret: keys in Kubernetes qualified-name syntax, at most 64
    /// entries, none under `secrets.thalassa.cloud/`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("target.annotations: every key must be a qualified name ([prefix/]name: name of at most 63 characters [A-Za-z0-9_.-], beginning and ending alphanumeric; prefix a DNS subdomain of at most 253 characters)"),
        validation = Rule::new("self.all(k, !k.startsWith('secrets.thalassa.cloud/'))").message("target.annotations: keys under secrets.thalassa.cloud/ are the operator's own")
    )]
    pub annotations: BTreeMap<String, String>,
    /// Write the Secret as immutable. A new version then needs a new Secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// What happens to the Secret when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// What to do when a Secret with the target name exists and this operator did not create it.
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    /// What happens to the keys of a source that was synced and is gone from Thalassa (a secret
    /// deleted under a `pathPrefix`, or an explicit path deleted). A listing that no longer shows
    /// a path is never proof: the path is looked up directly, and only a definite "not found"
    /// counts.
    #[serde(default)]
    pub on_source_deleted: SourceDeletionPolicy,
    /// Builds the Secret's data (and extra labels and annotations) from templates instead of
    /// writing the source keys as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Templates (minijinja syntax) for the Secret's data, labels and annotations, rendered by
/// [`crate::template`] in a sandboxed child process. Their inputs are the keys `data` and
/// `dataFrom` produce: each is a variable of its own when its name is an
/// identifier, and all of them are in the map `data` (`{{ data["tls.crt"] }}`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.data) && size(self.data) > 0) || (has(self.templateFrom) && size(self.templateFrom) > 0)").message("target.template needs at least one entry in data or templateFrom"))]
pub struct SecretTemplate {
    /// Secret key to template: the rendered text is the key's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 65536}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]{1,253}$') && k != '.' && !k.startsWith('..'))").message("target.template.data: every key must be a valid Secret key ([-._a-zA-Z0-9], not '.', not starting with '..')"))]
    pub data: BTreeMap<String, String>,
    /// Label key to template; the rendered text must be a valid label value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("target.template.labels: every key must be a qualified name ([prefix/]name)"),
        validation = Rule::new("self.all(k, !k.startsWith('secrets.thalassa.cloud/') && k != 'app.kubernetes.io/managed-by')").message("target.template.labels: keys under secrets.thalassa.cloud/ and app.kubernetes.io/managed-by are the operator's own")
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotation key to template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("target.template.annotations: every key must be a qualified name ([prefix/]name)"),
        validation = Rule::new("self.all(k, !k.startsWith('secrets.thalassa.cloud/'))").message("target.template.annotations: keys under secrets.thalassa.cloud/ are the operator's own")
    )]
    pub annotations: BTreeMap<String, String>,
    /// `Replace` (default): the Secret holds only the templated keys. `Merge`: the keys `data`
    /// and `dataFrom` produce, plus the templated keys (a templated key replaces a source key of
    /// the same name).
    #[serde(default)]
    pub merge_policy: TemplateMergePolicy,
    /// Data templates kept in ConfigMaps of this namespace, re-rendered when the ConfigMap
    /// changes. The ConfigMap must carry the label `secrets.thalassa.cloud/template: "true"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub template_from: Vec<TemplateFrom>,
}

/// Whether the Secret holds only the templated keys or the source keys too.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TemplateMergePolicy {
    /// Only the templated keys.
    #[default]
    Replace,
    /// The source keys plus the templated keys.
    Merge,
}

/// A source of data templates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    /// A ConfigMap in this namespace whose keys are templates.
    pub config_map: ConfigMapTemplates,
}

/// Templates from one ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapTemplates {
    /// Name of the ConfigMap.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// The ConfigMap keys to render; each becomes the Secret key of the same name unless
    /// `secretKey` says otherwise.
    #[schemars(length(min = 1, max = 64))]
    pub items: Vec<ConfigMapTemplateItem>,
}

/// One template of a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapTemplateItem {
    /// Key in the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// Key in the Secret; defaults to `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("secretKey must not be '.' or start with '..'"))]
    pub secret_key: Option<String>,
}

/// When a resource is synced (as External Secrets users know it).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// Check versions every `refreshInterval`; a new version reaches the Secret within one.
    #[default]
    Periodic,
    /// Sync when the spec changes, the Secret is edited or deleted, or a force-sync is asked
    /// for; no periodic checks.
    OnChange,
    /// Create the Secret once and never update it; create it again if it is deleted.
    CreatedOnce,
}

/// What happens to a synced source's keys when Thalassa says the secret no longer exists.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SourceDeletionPolicy {
    /// Keep its keys with their last value (default); `Ready=False` reason `SecretNotFound`
    /// names the path until it is restored or removed from the spec.
    #[default]
    Retain,
    /// Remove its keys from the Secret once Thalassa answers "not found" for that very path.
    Delete,
}

/// Type of the written Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecretType {
    /// `Opaque`: arbitrary keys.
    #[default]
    Opaque,
    /// `kubernetes.io/tls`: needs `tls.crt` and `tls.key`.
    #[serde(rename = "kubernetes.io/tls")]
    Tls,
    /// `kubernetes.io/dockerconfigjson`: needs `.dockerconfigjson`.
    #[serde(rename = "kubernetes.io/dockerconfigjson")]
    DockerConfigJson,
    /// `kubernetes.io/basic-auth`: needs `username` or `password`.
    #[serde(rename = "kubernetes.io/basic-auth")]
    BasicAuth,
    /// `kubernetes.io/ssh-auth`: needs `ssh-privatekey`.
    #[serde(rename = "kubernetes.io/ssh-auth")]
    SshAuth,
}

impl SecretType {
    /// The Kubernetes `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::Tls => "kubernetes.io/tls",
            SecretType::DockerConfigJson => "kubernetes.io/dockerconfigjson",
            SecretType::BasicAuth => "kubernetes.io/basic-auth",
            SecretType::SshAuth => "kubernetes.io/ssh-auth",
        }
    }

    /// The variant for a Kubernetes `type` string; `None` for types the operator never writes
    /// (service-account and bootstrap tokens, Helm releases, anything else).
    pub fn from_type_str(type_: &str) -> Option<SecretType> {
        [
            SecretType::Opaque,
            SecretType::Tls,
            SecretType::DockerConfigJson,
            SecretType::BasicAuth,
            SecretType::SshAuth,
        ]
        .into_iter()
        .find(|t| t.as_str() == type_)
    }

    /// Keys the apiserver requires for this type; `any_of` means at least one of them.
    pub fn required_keys(self) -> (&'static [&'static str], bool) {
        match self {
            SecretType::Opaque => (&[], false),
            SecretType::Tls => (&["tls.crt", "tls.key"], false),
            SecretType::DockerConfigJson => (&[".dockerconfigjson"], false),
            SecretType::BasicAuth => (&["username", "password"], true),
            SecretType::SshAuth => (&["ssh-privatekey"], false),
        }
    }
}

/// What happens to the Secret when its `ThalassaSecret` is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the Secret (default). Nothing is lost if the resource, its CRD or the operator goes.
    #[default]
    Retain,
    /// Delete the Secret with the resource, through an ownerReference and Kubernetes garbage
    /// collection (works even when the operator is not running).
    Delete,
}

/// How to treat an existing Secret with the target name that this operator did not create.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CreationPolicy {
    /// Create and own the Secret; refuse (reason TargetConflict) if a Secret the operator did not
    /// create already has the name (default).
    #[default]
    Owner,
    /// Take over an existing Secret: it becomes managed and its data becomes exactly what this
    /// resource renders (keys not in the spec are removed in the same write that takes it over,
    /// so a refused write loses nothing). Its type must already be `target.type`.
    Adopt,
    /// Write only this resource's keys into an existing Secret, leaving every other key and field
    /// alone. The Secret is created if missing. Cannot be combined with `deletionPolicy: Delete`.
    Merge,
}

/// The CRD as shipped: the derived one plus what the derive cannot express.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = ThalassaSecret::crd();
    // Uninstalling the Helm chart must never delete the CRD, which would delete every
    // ThalassaSecret (their Secrets stay, but users lose their specs).
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("helm.sh/resource-policy".into(), "keep".into());
    default_status_not_observed(&mut crd);
    crd
}

/// The apiserver drops `status` on create; defaulting on every read puts `{observedGeneration:
/// 0}` back, so an object the operator has not seen yet reads as not observed (kstatus:
/// InProgress, not Current) instead of showing no status at all.
fn default_status_not_observed(
    crd: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;
    for version in &mut crd.spec.versions {
        if let Some(status) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"))
        {
            status.default = Some(JSON(serde_json::json!({ "observedGeneration": 0 })));
        }
    }
}

/// The CRD as YAML, exactly as committed in `crds/` (generated by `cargo run --bin crdgen`).
pub fn crd_yaml() -> String {
    generated_yaml(&crd())
}

fn generated_yaml(crd: &impl Serialize) -> String {
    let yaml = serde_yaml::to_string(crd).expect("CRD serializes to YAML");
    format!("# Generated by `cargo run --bin crdgen`; do not edit.\n{yaml}")
}

/// Every CRD the operator serves, as shipped.
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let keep = |mut crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        // Like the ThalassaSecret CRD: uninstalling the chart never deletes stores, and a store
        // the operator has not checked yet reads as not observed.
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
        default_status_not_observed(&mut crd);
        crd
    };
    vec![
        crd(),
        keep(crate::store::ThalassaSecretStore::crd()),
        keep(crate::store::ClusterThalassaSecretStore::crd()),
        keep(crate::push::crd::ThalassaPushSecret::crd()),
        keep(crate::cluster_secret::ClusterThalassaSecret::crd()),
    ]
}

/// Every CRD the operator serves, as (file name in `crds/`, YAML), sorted by file name.
pub fn crd_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = all_crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().expect("CRDs have names");
            (format!("{name}.yaml"), generated_yaml(crd))
        })
        .collect();
    files.sort();
    files
}

/// Observed state, following Kubernetes API conventions (kstatus compatible).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThalassaSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`; kstatus's `Reconciling` (a failure being retried) and `Stalled` (only a person can
    /// fix it); and one condition per prerequisite: `SecretsFeatureEnabled`, `KmsFeatureEnabled`,
    /// `KmsBackendAvailable`, `KmsKeyActive`, `Authorized`. Reasons are listed in docs/reference.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Name of the Secret written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// UID of the Secret this resource created or took over: the ownership record that survives
    /// someone removing the Secret's managed-by label or owner annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_uid: Option<String>,
    /// Version written to the Secret, per source path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, i64>")]
    pub synced_versions: BTreeMap<String, u64>,
    /// Identity of the KMS key that protected the values last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_identity: Option<String>,
    /// Version of that KMS key used for the values last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_version: Option<String>,
    /// When the Secret's data was last written (or confirmed after a change of spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// When the source versions were last checked successfully. Written on status changes and at
    /// most every 10 minutes otherwise, to keep status writes cheap at scale; the metric
    /// `thalassa_operator_last_successful_check_timestamp_seconds` is always current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
    /// The last value of the `secrets.thalassa.cloud/force-sync` annotation the operator acted on
    /// (so one value forces one sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_sync_handled: Option<String>,
    /// The last value of the `secrets.thalassa.cloud/rotate-generated` annotation the operator
    /// acted on (so one value stores one new generated version per generated entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_generated_handled: Option<String>,
    /// The keyed data hash the rollout restart targets were last restarted for (or that the
    /// first sync recorded); a Secret whose data hash differs is restarted for once the debounce
    /// window has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_for: Option<String>,
    /// Fingerprint of the data-hash key `restartedFor` was computed with (a replaced key
    /// changes every hash without any data change, and restarts nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_key_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_group_version_and_cel_rules() {
        let crd = serde_json::to_string(&ThalassaSecret::crd()).unwrap();
        assert!(crd.contains(r#""group":"secrets.thalassa.cloud""#));
        assert!(crd.contains("exactly one of path or pathPrefix must be set"));
        assert!(crd.contains(r#""x-kubernetes-list-map-keys":["secretKey"]"#));
        assert!(crd.contains("refreshInterval must be at least 10s"));
    }
}
