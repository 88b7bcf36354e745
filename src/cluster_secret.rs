//! The `ClusterThalassaSecret` custom resource: one `ThalassaSecret` spec copied into every
//! namespace a selector or list chooses, read through a `ClusterThalassaSecretStore` that must
//! itself allow each namespace (deny by default).
//!
//! The copies are ordinary ThalassaSecrets owned by the cluster resource (ownerReference, so
//! Kubernetes garbage collection removes them with it) and labelled [`CLUSTER_SECRET_LABEL`];
//! nothing here adds a finalizer anywhere. The controller is `controller::fanout`.

// `KubeSchema` derives a private copy of each struct (for its schema) with the same spans, and
// `unreachable_pub` would flag the copies.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::ThalassaSecretSpec;

/// Label on every copy: the name of the `ClusterThalassaSecret` that created it (the copy's
/// ownerReference, with the owner's UID, is what proves it; the label finds it).
pub const CLUSTER_SECRET_LABEL: &str = "secrets.thalassa.cloud/cluster-secret";

/// At most this many namespaces get a copy of one `ClusterThalassaSecret`; beyond it nothing is
/// created or changed and the status says `TooManyNamespaces`.
pub const MAX_SELECTED_NAMESPACES: usize = 1000;

/// At most this many failing namespaces are listed in status (the count is complete).
pub const MAX_FAILED_NAMESPACES_LISTED: usize = 10;

/// Kubernetes qualified name (label and annotation keys), as in `crd.rs`.
macro_rules! qualified_name_regex {
    () => {
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
    };
}

/// A `ClusterThalassaSecret` keeps one `ThalassaSecret` (its `template`) in every selected
/// namespace that its cluster store allows.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secrets.thalassa.cloud",
    version = "v1alpha1",
    kind = "ClusterThalassaSecret",
    plural = "clusterthalassasecrets",
    singular = "clusterthalassasecret",
    shortname = "ctsec",
    category = "thalassa",
    status = "ClusterThalassaSecretStatus",
    doc = "ClusterThalassaSecret keeps a copy of one ThalassaSecret in every selected namespace that its ClusterThalassaSecretStore allows.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Selected",
        type_ = "integer",
        json_path = ".status.selectedNamespaces"
    ),
    printcolumn(name = "Copies", type_ = "integer", json_path = ".status.copies"),
    printcolumn(
        name = "Ready Copies",
        type_ = "integer",
        json_path = ".status.readyCopies"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)").message("at least one of namespaceSelector or namespaces is required"),
    validation = Rule::new("has(self.template.spec.storeRef) && has(self.template.spec.storeRef.kind) && self.template.spec.storeRef.kind == 'ClusterThalassaSecretStore'").message("template.spec.storeRef must name a ClusterThalassaSecretStore (kind: ClusterThalassaSecretStore): copies read through a cluster store that allows each namespace"),
    validation = Rule::new("(has(self.copyName) ? self.copyName : '') == (has(oldSelf.copyName) ? oldSelf.copyName : '')").message("copyName is immutable; create a new ClusterThalassaSecret instead")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterThalassaSecretSpec {
    /// Namespaces that get a copy, by label. An empty selector (`{}`) selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces that get a copy, by name (besides those the selector chooses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<NamespaceName>,
    /// Name of each copy (a ThalassaSecret in each namespace). Defaults to this resource's name.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub copy_name: Option<String>,
    /// What each copy is.
    pub template: CopyTemplate,
}

/// A namespace name (DNS label).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct NamespaceName(
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub String,
);

/// The copy: extra metadata and a `ThalassaSecret` spec.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CopyTemplate {
    /// Labels and annotations of each copy (the ThalassaSecret, not its Secret).
    #[serde(default, skip_serializing_if = "CopyMetadata::is_empty")]
    pub metadata: CopyMetadata,
    /// The spec of each copy. `storeRef` must name a `ClusterThalassaSecretStore`.
    pub spec: ThalassaSecretSpec,
}

/// Extra labels and annotations of the copies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CopyMetadata {
    /// Labels of each copy: Kubernetes label syntax, at most 64, none under
    /// `secrets.thalassa.cloud/`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("template.metadata.labels: every key must be a qualified name ([prefix/]name)"),
        validation = Rule::new("self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$'))").message("template.metadata.labels: every value must be empty or at most 63 characters [A-Za-z0-9_.-], beginning and ending alphanumeric"),
        validation = Rule::new("self.all(k, !k.startsWith('secrets.thalassa.cloud/'))").message("template.metadata.labels: keys under secrets.thalassa.cloud/ are the operator's own")
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations of each copy: qualified-name keys, at most 64, values of at most 4096
    /// characters. `secrets.thalassa.cloud/force-sync` is allowed (it force-syncs every copy).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(concat!("self.all(k, k.matches('", qualified_name_regex!(), "') && k.indexOf('/') <= 253)")).message("template.metadata.annotations: every key must be a qualified name ([prefix/]name)")
    )]
    pub annotations: BTreeMap<String, String>,
}

impl CopyMetadata {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Observed state of a `ClusterThalassaSecret`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterThalassaSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every selected namespace has a Ready copy), and kstatus's `Reconciling` (copies
    /// still syncing) and `Stalled` (a namespace needs a person: not allowed by the store, name
    /// taken, a copy stalled, too many namespaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// How many Active namespaces the selector and list choose.
    #[serde(default)]
    pub selected_namespaces: i64,
    /// How many copies exist (created by this resource).
    #[serde(default)]
    pub copies: i64,
    /// How many copies are Ready at their current generation.
    #[serde(default)]
    pub ready_copies: i64,
    /// How many selected namespaces fail (the first ones are listed in `failedNamespaces`).
    #[serde(default)]
    pub failed_count: i64,
    /// The first failing namespaces (at most 10, sorted by name) with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub failed_namespaces: Vec<FailedNamespace>,
}

/// A selected namespace without a Ready copy, and why.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailedNamespace {
    /// The namespace.
    pub namespace: String,
    /// A reason of docs/reference.md (`NamespaceNotAllowed`, `NameTaken`, `StoreNotFound`, or the
    /// copy's own Ready reason).
    pub reason: String,
    /// What happened; never a secret value.
    pub message: String,
}
