//! The store kinds: `ThalassaSecretStore` (a Thalassa connection for the ThalassaSecrets of its
//! own namespace) and `ClusterThalassaSecretStore` (the same, for the namespaces it allows).
//!
//! A store holds no credential itself: it names a ServiceAccount whose short-lived token is
//! exchanged for a Thalassa token (workload identity), or a Secret holding a token or client
//! credentials. A namespaced store can only name objects in its own namespace (there is no
//! namespace field to write); a cluster store names the one namespace its platform team chose.

// `KubeSchema` derives a private copy of each struct (for its schema) with the same spans, and
// `unreachable_pub` would flag the copies.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Kind name of the namespaced store, as written in `storeRef.kind`.
pub const STORE_KIND: &str = "ThalassaSecretStore";
/// Kind name of the cluster store, as written in `storeRef.kind`.
pub const CLUSTER_STORE_KIND: &str = "ClusterThalassaSecretStore";
/// Default audience of workload-identity tokens.
pub const DEFAULT_AUDIENCE: &str = "https://api.thalassa.cloud";

/// A Thalassa connection usable only by ThalassaSecrets in its own namespace.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secrets.thalassa.cloud",
    version = "v1alpha1",
    kind = "ThalassaSecretStore",
    plural = "thalassasecretstores",
    singular = "thalassasecretstore",
    shortname = "tsstore",
    category = "thalassa",
    namespaced,
    status = "StoreStatus",
    doc = "ThalassaSecretStore is a Thalassa Cloud connection for the ThalassaSecrets of its own namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Organisation",
        type_ = "string",
        json_path = ".spec.organisation"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ThalassaSecretStoreSpec {
    /// Where and as whom to connect.
    #[serde(flatten)]
    pub connection: Connection,
}

/// A Thalassa connection for the namespaces it allows (none unless listed or selected).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secrets.thalassa.cloud",
    version = "v1alpha1",
    kind = "ClusterThalassaSecretStore",
    plural = "clusterthalassasecretstores",
    singular = "clusterthalassasecretstore",
    shortname = "ctsstore",
    category = "thalassa",
    status = "StoreStatus",
    doc = "ClusterThalassaSecretStore is a Thalassa Cloud connection for the namespaces it allows; it allows none unless namespaces or namespaceSelector says so.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Organisation",
        type_ = "string",
        json_path = ".spec.organisation"
    ),
    printcolumn(
        name = "Credentials Namespace",
        type_ = "string",
        json_path = ".spec.credentialsNamespace"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterThalassaSecretStoreSpec {
    /// Where and as whom to connect.
    #[serde(flatten)]
    pub connection: Connection,
    /// The namespace holding the ServiceAccount or Secret named in `auth`.
    #[schemars(length(min = 1, max = 63))]
    pub credentials_namespace: String,
    /// Namespaces whose ThalassaSecrets may use this store, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,
    /// Namespaces whose ThalassaSecrets may use this store, by label. With neither this nor
    /// `namespaces`, nobody may use the store. An empty selector (`{}`) selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Where and as whom a store connects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Thalassa API base URL. Defaults to the operator's `--thalassa-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 512))]
    pub url: Option<String>,
    /// Organisation identity or slug.
    #[schemars(length(min = 1, max = 128))]
    pub organisation: String,
    /// Optional project scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub project: Option<String>,
    /// Region for ThalassaSecrets without `spec.region`. Defaults to the operator's `--region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub region: Option<String>,
    /// How to authenticate: exactly one method.
    pub auth: StoreAuth,
}

/// Exactly one way to authenticate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.workloadIdentity) ? 1 : 0) + (has(self.tokenSecretRef) ? 1 : 0) + (has(self.clientCredentialsSecretRef) ? 1 : 0) == 1").message("auth needs exactly one of workloadIdentity, tokenSecretRef, clientCredentialsSecretRef")
)]
#[serde(rename_all = "camelCase")]
pub struct StoreAuth {
    /// Exchange a short-lived token of a Kubernetes ServiceAccount (requested by the operator
    /// through the TokenRequest API, never stored) for a Thalassa token acting as a Thalassa
    /// service account; Thalassa IAM decides what that account may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
    /// A Secret holding a Thalassa access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<TokenSecretRef>,
    /// A Secret holding OIDC client credentials of a Thalassa service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_credentials_secret_ref: Option<ClientCredentialsSecretRef>,
}

/// Workload identity: a ServiceAccount's token exchanged for a Thalassa token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// The ServiceAccount (in the store's namespace, or `credentialsNamespace`). The operator may
    /// only request tokens for the ServiceAccount name its RBAC allows (chart value
    /// `stores.serviceAccountName`, default `thalassa-secrets`).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub service_account_name: String,
    /// The Thalassa service account to act as; its federated identity must trust the cluster's
    /// service-account issuer and `system:serviceaccount:<namespace>:<serviceAccountName>`.
    #[schemars(length(min = 1, max = 128))]
    pub thalassa_service_account_id: String,
    /// Audience of the requested token. Default `https://api.thalassa.cloud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub audience: Option<String>,
}

/// A Secret key holding an access token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// Name of the Secret (in the store's namespace, or `credentialsNamespace`).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the token. Default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Secret keys holding OIDC client credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientCredentialsSecretRef {
    /// Name of the Secret (in the store's namespace, or `credentialsNamespace`).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the client id. Default `client-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: Option<String>,
    /// Key holding the client secret. Default `client-secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: Option<String>,
}

/// Observed state of a store: whether its connection works, link by link (what `check` walks).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every link works); kstatus's `Reconciling` (a failure that passes by itself is
    /// checked again soon) and `Stalled` (only a person can fix it), both False when Ready and
    /// exactly one True when not; and one condition per link: `CredentialsValid`,
    /// `KmsFeatureEnabled`, `SecretsFeatureEnabled`, `KmsBackendAvailable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
