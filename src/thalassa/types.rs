//! Wire types of the Secrets Manager (S1–S9) and KMS key APIs, as JSON with camelCase names.
//!
//! Decoding is lenient on purpose: unknown fields are ignored, and optional arrays and maps may be
//! omitted or `null` (the Go server declares many of them `omitempty`).

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use super::value::{Base64Secret, SecretValue, SecretValueInput};

/// Decodes `null` (as well as an omitted field, via `#[serde(default)]`) as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Secret metadata (never contains a value). Returned by create, get, policy update, browse and
/// list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// The secret's path, which is its identity.
    pub path: String,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Last update time (bumped by new versions).
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// The KMS key the secret is bound to (immutable).
    #[serde(default)]
    pub kms_key: Option<KmsKey>,
    /// Latest active version; 1 after create.
    #[serde(default)]
    pub current_version: u64,
    /// Optimistic-concurrency counter.
    #[serde(default)]
    pub object_version: u64,
    /// Time of the last successful reveal.
    #[serde(default)]
    pub last_accessed_at: Option<Timestamp>,
    /// The region object.
    #[serde(default)]
    pub region: Option<Region>,
    /// Access policy, kept opaque because its schema is disputed between docs and clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<serde_json::Value>,
    /// Version history; filled only when requested with `includeVersions=true`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub versions: Vec<SecretVersion>,
}

/// One entry of a listing (S2) as the operator keeps it: the path, the current version and the
/// KMS key binding. Every other field of the wire object (labels, annotations, timestamps, the
/// region, the access policy, the key's own metadata, anything new) is skipped while parsing
/// without being allocated, so the decoded copy of a listing is a fraction of its body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSecret {
    /// The secret's path.
    pub path: String,
    /// Latest active version.
    #[serde(default)]
    pub current_version: u64,
    /// The bound KMS key's identity and status, when reported.
    #[serde(default)]
    pub kms_key: Option<ListedKmsKey>,
}

/// The KMS key binding of a [`ListedSecret`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedKmsKey {
    /// Key identity.
    pub identity: String,
    /// Lifecycle state.
    pub status: KmsKeyStatus,
}

impl From<Secret> for ListedSecret {
    fn from(secret: Secret) -> Self {
        ListedSecret {
            path: secret.path,
            current_version: secret.current_version,
            kms_key: secret.kms_key.map(|key| ListedKmsKey {
                identity: key.identity,
                status: key.status,
            }),
        }
    }
}

/// One version in a secret's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    /// Version number (1, 2, …).
    pub version: u64,
    /// Status as the server spells it (e.g. `current`, `active`, `destroyed`); an open set.
    #[serde(default)]
    pub status: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// When the version was destroyed; `None` while it is readable.
    #[serde(default)]
    pub destroyed_at: Option<Timestamp>,
}

impl SecretVersion {
    /// Whether the version has been destroyed (by timestamp or status).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed_at.is_some() || self.status.as_deref() == Some("destroyed")
    }
}

/// A Thalassa region as embedded in other objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// Region identity.
    #[serde(default)]
    pub identity: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Slug such as `nl-01`.
    #[serde(default)]
    pub slug: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Response of S1 (browse one directory level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowseSecretsResponse {
    /// The directory that was browsed.
    #[serde(default)]
    pub path: String,
    /// Child directories, as full paths ending in `/`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub prefixes: Vec<String>,
    /// Secrets directly in this directory.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<Secret>,
}

/// Body of S3 (create a secret with its first version).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSecretRequest {
    /// Path of the new secret.
    pub path: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Identity (or slug) of an active symmetric KMS key in the same region.
    pub kms_key_identity: String,
    /// The first value; sent as exactly one of `secretString`, `secretKeyValues`, `generateSecret`.
    #[serde(flatten)]
    pub value: SecretValueInput,
    /// Optional access policy (opaque).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<serde_json::Value>,
}

impl CreateSecretRequest {
    /// A request with only the required fields set.
    pub fn new(
        path: impl Into<String>,
        kms_key_identity: impl Into<String>,
        value: SecretValueInput,
    ) -> Self {
        Self {
            path: path.into(),
            description: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            kms_key_identity: kms_key_identity.into(),
            value,
            access_policy: None,
        }
    }
}

/// Body of S6 (`putSecretValue`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutSecretValueRequest<'a> {
    pub(crate) path: &'a str,
    #[serde(flatten)]
    pub(crate) value: &'a SecretValueInput,
}

/// Response of S6: the new version number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutSecretValueResponse {
    /// The secret's path.
    #[serde(default)]
    pub path: String,
    /// The version just created (now current).
    pub version: u64,
}

/// Body of S7 (`getSecretValue`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetSecretValueRequest<'a> {
    pub(crate) path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
}

/// Body of S5.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateAccessPolicyRequest<'a> {
    /// `null` clears the policy, so this is serialized even when `None`.
    pub(crate) access_policy: Option<&'a serde_json::Value>,
}

/// A revealed secret value (S7), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealedSecret {
    /// The secret's path.
    pub path: String,
    /// The version that was read.
    pub version: u64,
    /// The value, base64-decoded.
    pub value: SecretValue,
    /// Identity of the KMS key that decrypted it.
    pub kms_key_identity: String,
    /// KMS key version used (a string on the wire, e.g. `"1"`).
    pub kms_key_version: String,
}

/// Response of S7 as it comes off the wire; values are decoded while parsing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetSecretValueResponse {
    #[serde(default)]
    path: String,
    version: u64,
    #[serde(default)]
    secret_string: Option<Base64Secret>,
    #[serde(default)]
    secret_key_values: Option<BTreeMap<String, Base64Secret>>,
    #[serde(default)]
    kms_key_identity: String,
    #[serde(default, deserialize_with = "string_or_number")]
    kms_key_version: String,
}

/// What went wrong decoding a JSON body, in our own words: the kind and position of the problem.
/// serde's message is never used, because it can quote the body.
pub(crate) fn json_error_detail(error: &serde_json::Error) -> String {
    if error.to_string().contains("not valid base64") {
        "a secret value is not valid base64".to_owned()
    } else {
        format!(
            "{:?} error in the JSON body at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        )
    }
}

impl RevealedSecret {
    /// Decodes a `getSecretValue` (S7) response body as the client does: values are base64-decoded
    /// while parsing, and exactly one of `secretString` and `secretKeyValues` must be present. The
    /// error names only the kind and position of the problem (serde's own message can quote the
    /// body, so it is never used). Public so property tests and fuzz targets reach the decoder.
    pub fn from_response_json(body: &[u8]) -> Result<Self, String> {
        let response: GetSecretValueResponse =
            serde_json::from_slice(body).map_err(|e| json_error_detail(&e))?;
        response.into_revealed().map_err(str::to_owned)
    }
}

impl GetSecretValueResponse {
    /// Checks that exactly one value format is present.
    pub(crate) fn into_revealed(self) -> Result<RevealedSecret, &'static str> {
        let value = match (self.secret_string, self.secret_key_values) {
            (Some(Base64Secret(bytes)), None) => SecretValue::String(bytes),
            (None, Some(pairs)) => SecretValue::KeyValues(
                pairs
                    .into_iter()
                    .map(|(key, Base64Secret(bytes))| (key, bytes))
                    .collect(),
            ),
            (None, None) => return Err("neither secretString nor secretKeyValues is present"),
            (Some(_), Some(_)) => return Err("both secretString and secretKeyValues are present"),
        };
        Ok(RevealedSecret {
            path: self.path,
            version: self.version,
            value,
            kms_key_identity: self.kms_key_identity,
            kms_key_version: self.kms_key_version,
        })
    }
}

/// Accepts a JSON string or number, because `kmsKeyVersion` is a string in the Go client but a
/// number would be an easy server-side slip.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<StringOrNumber>::deserialize(d)? {
        Some(StringOrNumber::String(text)) => text,
        Some(StringOrNumber::Number(number)) => number.to_string(),
        None => String::new(),
    })
}

/// `GET /v1/kms/summary`: whether the KMS feature is on and where KMS is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsSummary {
    /// The organisation's `kms` feature gate.
    #[serde(default)]
    pub feature_enabled: bool,
    /// Per-region availability and key counts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub regions: Vec<KmsRegionSummary>,
}

impl KmsSummary {
    /// Whether KMS can be used in `region` (matched by slug or identity), as Thalassa's Terraform
    /// provider decides it.
    pub fn kms_available_in(&self, region: &str) -> bool {
        self.feature_enabled && self.region(region).is_some_and(|r| r.kms_available)
    }

    /// The entry of `region`, matched by slug or identity (the two names Thalassa's URLs accept):
    /// the one region lookup of the operator and the `check` command.
    pub fn region(&self, region: &str) -> Option<&KmsRegionSummary> {
        self.regions
            .iter()
            .find(|r| r.slug == region || r.identity == region)
    }
}

/// One region in [`KmsSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsRegionSummary {
    /// Region identity.
    #[serde(default)]
    pub identity: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Slug such as `nl-01`.
    #[serde(default)]
    pub slug: String,
    /// Whether the regional KMS backend is available.
    #[serde(default)]
    pub kms_available: bool,
    /// Number of keys.
    #[serde(default)]
    pub total_keys: i64,
    /// Number of active keys.
    #[serde(default)]
    pub active_keys: i64,
    /// Number of disabled keys.
    #[serde(default)]
    pub disabled_keys: i64,
    /// Number of keys pending deletion.
    #[serde(default)]
    pub pending_deletion_keys: i64,
}

/// Lifecycle state of a KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum KmsKeyStatus {
    /// `active`: crypto allowed.
    Active,
    /// `disabled`: no crypto until enabled again.
    Disabled,
    /// `pending_deletion`: scheduled for deletion, no crypto until cancelled.
    PendingDeletion,
    /// A status this client does not know, verbatim.
    Other(String),
}

impl KmsKeyStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::PendingDeletion => "pending_deletion",
            Self::Other(other) => other,
        }
    }
}

impl From<String> for KmsKeyStatus {
    fn from(text: String) -> Self {
        match text.as_str() {
            "active" => Self::Active,
            "disabled" => Self::Disabled,
            "pending_deletion" => Self::PendingDeletion,
            _ => Self::Other(text),
        }
    }
}

impl From<KmsKeyStatus> for String {
    fn from(status: KmsKeyStatus) -> Self {
        status.as_str().to_owned()
    }
}

impl fmt::Display for KmsKeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A KMS key (metadata only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsKey {
    /// Key identity.
    pub identity: String,
    /// Name (immutable).
    #[serde(default)]
    pub name: String,
    /// URL-safe slug, usable instead of the identity.
    #[serde(default)]
    pub slug: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Project the key belongs to, if project-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Key type, e.g. `aes256-gcm96` (open set).
    #[serde(default)]
    pub key_type: String,
    /// Lifecycle state.
    pub status: KmsKeyStatus,
    /// Whether key material may be exported.
    #[serde(default)]
    pub export_allowed: bool,
    /// Whether the material was imported (BYOK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<bool>,
    /// Whether automatic rotation is on.
    #[serde(default)]
    pub key_rotation_enabled: bool,
    /// Automatic rotation period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<u32>,
    /// Newest key version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<u64>,
    /// Oldest version still allowed to decrypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_decryption_version: Option<u64>,
    /// Key versions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub versions: Vec<KmsKeyVersion>,
    /// When a scheduled deletion takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_scheduled_at: Option<Timestamp>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Optimistic-concurrency counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<u64>,
    /// Owning organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<Organisation>,
}

impl KmsKey {
    /// Whether the key is `active`.
    pub fn is_active(&self) -> bool {
        self.status == KmsKeyStatus::Active
    }
}

/// One version of a KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsKeyVersion {
    /// Version number.
    pub version: u64,
    /// Status string, if the server sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

/// An organisation as embedded in other objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organisation {
    /// Organisation identity.
    #[serde(default)]
    pub identity: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Slug.
    #[serde(default)]
    pub slug: String,
}

/// Body of `POST /v1/kms/{region}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKmsKeyRequest {
    /// Key name (1–255 characters).
    pub name: String,
    /// Key type; Thalassa defaults to `aes256-gcm96`. Secrets need a symmetric AEAD type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Allow exporting key material (only settable at create).
    #[serde(skip_serializing_if = "is_false")]
    pub export_allowed: bool,
    /// Enable automatic rotation.
    #[serde(skip_serializing_if = "is_false")]
    pub key_rotation_enabled: bool,
    /// Rotation period, required when rotation is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<u32>,
}

impl CreateKmsKeyRequest {
    /// A request for a key named `name` of type `key_type`, everything else default.
    pub fn new(name: impl Into<String>, key_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key_type: Some(key_type.into()),
            description: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            export_allowed: false,
            key_rotation_enabled: false,
            rotation_period_in_days: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thalassa::value::SecretBytes;
    use serde_json::json;

    #[test]
    fn secret_tolerates_omitted_null_and_unknown_fields() {
        let minimal: Secret = serde_json::from_value(json!({"path": "/a"})).unwrap();
        assert!(minimal.versions.is_empty() && minimal.labels.is_empty());
        let full: Secret = serde_json::from_value(json!({
            "path": "/app/db",
            "labels": null,
            "versions": [
                {"version": 1, "status": "destroyed", "createdAt": "2026-01-01T00:00:00Z",
                 "destroyedAt": "2026-01-02T00:00:00Z"},
                {"version": 2, "status": "whatever-new", "createdAt": "2026-01-03T00:00:00.123456789Z"}
            ],
            "currentVersion": 2,
            "kmsKey": {"identity": "kms-1", "status": "active", "keyType": "aes256-gcm96"},
            "region": {"identity": "r1", "slug": "nl-01", "zones": []},
            "accessPolicy": {"conditions": [{"type": "ip"}]},
            "brandNewField": {"x": 1}
        }))
        .unwrap();
        assert_eq!(full.current_version, 2);
        assert!(full.versions[0].is_destroyed());
        assert!(!full.versions[1].is_destroyed());
        assert_eq!(full.versions[1].status.as_deref(), Some("whatever-new"));
        assert!(full.kms_key.unwrap().is_active());
    }

    #[test]
    fn listed_secret_keeps_only_what_the_operator_uses() {
        let listing: Vec<ListedSecret> = serde_json::from_value(json!([
            {
                "path": "/app/db",
                "description": "d",
                "labels": {"team": "a"},
                "annotations": null,
                "createdAt": "2026-01-01T00:00:00Z",
                "currentVersion": 7,
                "objectVersion": 9,
                "kmsKey": {"identity": "kms-1", "status": "disabled", "name": "n",
                           "versions": [{"version": 1}], "organisation": {"identity": "o"},
                           "futureField": [1, 2, 3]},
                "region": {"identity": "r1", "slug": "nl-01", "zones": []},
                "accessPolicy": {"conditions": [{"type": "ip"}]},
                "versions": [{"version": 7, "status": "current"}],
                "brandNewField": {"nested": {"deep": "x"}}
            },
            {"path": "/app/plain"},
            {"path": "/app/null-key", "kmsKey": null, "currentVersion": 1}
        ]))
        .unwrap();
        assert_eq!(
            listing,
            vec![
                ListedSecret {
                    path: "/app/db".into(),
                    current_version: 7,
                    kms_key: Some(ListedKmsKey {
                        identity: "kms-1".into(),
                        status: KmsKeyStatus::Disabled,
                    }),
                },
                ListedSecret {
                    path: "/app/plain".into(),
                    current_version: 0,
                    kms_key: None,
                },
                ListedSecret {
                    path: "/app/null-key".into(),
                    current_version: 1,
                    kms_key: None,
                },
            ]
        );
        // The same body decoded in full gives the same fields.
        let full: Secret = serde_json::from_value(json!({
            "path": "/app/db", "currentVersion": 7, "labels": {"x": "y"},
            "kmsKey": {"identity": "kms-1", "status": "disabled", "keyType": "aes256-gcm96"}
        }))
        .unwrap();
        assert_eq!(ListedSecret::from(full), listing[0]);
        // A path is still required.
        assert!(serde_json::from_value::<ListedSecret>(json!({"currentVersion": 1})).is_err());
    }

    #[test]
    fn browse_accepts_missing_arrays() {
        let browse: BrowseSecretsResponse = serde_json::from_value(json!({"path": "/"})).unwrap();
        assert!(browse.prefixes.is_empty() && browse.secrets.is_empty());
        let browse: BrowseSecretsResponse =
            serde_json::from_value(json!({"path": "/", "prefixes": null, "secrets": []})).unwrap();
        assert!(browse.prefixes.is_empty());
    }

    #[test]
    fn key_status_is_open() {
        let key: KmsKey = serde_json::from_value(json!({
            "identity": "k", "status": "pending_deletion", "versions": null
        }))
        .unwrap();
        assert_eq!(key.status, KmsKeyStatus::PendingDeletion);
        let key: KmsKey =
            serde_json::from_value(json!({"identity": "k", "status": "archived"})).unwrap();
        assert_eq!(key.status, KmsKeyStatus::Other("archived".into()));
        assert_eq!(
            serde_json::to_value(&key.status).unwrap(),
            json!("archived")
        );
    }

    #[test]
    fn summary_availability_by_slug_or_identity() {
        let summary: KmsSummary = serde_json::from_value(json!({
            "featureEnabled": true,
            "regions": [{"identity": "reg-1", "slug": "nl-01", "kmsAvailable": true},
                        {"identity": "reg-2", "slug": "nl-02", "kmsAvailable": false}]
        }))
        .unwrap();
        assert!(summary.kms_available_in("nl-01"));
        assert!(summary.kms_available_in("reg-1"));
        assert!(!summary.kms_available_in("nl-02"));
        let off: KmsSummary = serde_json::from_value(json!({"featureEnabled": false})).unwrap();
        assert!(!off.kms_available_in("nl-01"));
    }

    #[test]
    fn reveal_response_decodes_values() {
        let revealed = serde_json::from_value::<GetSecretValueResponse>(json!({
            "path": "/a", "version": 2, "secretString": "cHc=",
            "kmsKeyIdentity": "kms-1", "kmsKeyVersion": "1"
        }))
        .unwrap()
        .into_revealed()
        .unwrap();
        assert_eq!(revealed.value, SecretValue::String("pw".into()));
        assert_eq!(revealed.kms_key_version, "1");
        let revealed = serde_json::from_value::<GetSecretValueResponse>(json!({
            "path": "/a", "version": 1, "secretKeyValues": {"u": "eA=="}, "kmsKeyVersion": 3
        }))
        .unwrap()
        .into_revealed()
        .unwrap();
        assert_eq!(revealed.kms_key_version, "3");
        let SecretValue::KeyValues(pairs) = revealed.value else {
            panic!("expected key/values");
        };
        assert_eq!(pairs["u"].expose(), b"x");
        let neither = serde_json::from_value::<GetSecretValueResponse>(json!({"version": 1}))
            .unwrap()
            .into_revealed();
        assert!(neither.is_err());
        let bad = serde_json::from_value::<GetSecretValueResponse>(
            json!({"version": 1, "secretString": "c2VjcmV0!!"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn create_request_shape() {
        let mut request =
            CreateSecretRequest::new("/app/db", "kms-1", SecretValueInput::String("pw".into()));
        request.labels.insert("team".into(), "a".into());
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"path": "/app/db", "labels": {"team": "a"}, "kmsKeyIdentity": "kms-1",
                   "secretString": "cHc="})
        );
        let put = PutSecretValueRequest {
            path: "/app/db",
            value: &SecretValueInput::KeyValues(BTreeMap::from([(
                "u".to_owned(),
                SecretBytes::from("x"),
            )])),
        };
        assert_eq!(
            serde_json::to_value(&put).unwrap(),
            json!({"path": "/app/db", "secretKeyValues": {"u": "eA=="}})
        );
        let reveal = GetSecretValueRequest {
            path: "/a",
            version: None,
        };
        assert_eq!(
            serde_json::to_value(&reveal).unwrap(),
            json!({"path": "/a"})
        );
        let clear = UpdateAccessPolicyRequest {
            access_policy: None,
        };
        assert_eq!(
            serde_json::to_value(&clear).unwrap(),
            json!({"accessPolicy": null})
        );
        let key = CreateKmsKeyRequest::new("k", "aes256-gcm96");
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            json!({"name": "k", "keyType": "aes256-gcm96"})
        );
    }
}
