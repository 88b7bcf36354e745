//! Wire types of the KMS API: the feature summary and per-region availability, keys with their
//! status and versions, and the body that creates a key.
//!
//! I/O contract: serde shapes only, decoded leniently (see the module above). Key status is an
//! open set: a state this client does not know is kept as it was sent.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{is_false, null_as_default};

/// `GET /v1/kms/summary`: whether the KMS feature is on and where KMS is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsSummary {
    /// The organisation's `kms` feature gate.
    #[serde(default)]
    pub feature_enabled: bool,
    /// Per-region availability and key counts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) regions: Vec<KmsRegionSummary>,
}

impl KmsSummary {
    /// Whether KMS can be used in `region` (matched by slug or identity), as Thalassa's Terraform
    /// provider decides it.
    pub fn kms_available_in(&self, region: &str) -> bool {
        self.feature_enabled && self.region(region).is_some_and(|r| r.kms_available)
    }

    /// The entry of `region`, matched by slug or identity (the two names Thalassa's URLs accept):
    /// the one region lookup of the operator and the `check` command.
    pub(crate) fn region(&self, region: &str) -> Option<&KmsRegionSummary> {
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
    pub(crate) identity: String,
    /// Display name.
    #[serde(default)]
    pub(crate) name: String,
    /// Slug such as `nl-01`.
    #[serde(default)]
    pub(crate) slug: String,
    /// Whether the regional KMS backend is available.
    #[serde(default)]
    pub(crate) kms_available: bool,
    /// Number of keys.
    #[serde(default)]
    pub(crate) total_keys: i64,
    /// Number of active keys.
    #[serde(default)]
    pub(crate) active_keys: i64,
    /// Number of disabled keys.
    #[serde(default)]
    pub(crate) disabled_keys: i64,
    /// Number of keys pending deletion.
    #[serde(default)]
    pub(crate) pending_deletion_keys: i64,
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
    pub(crate) fn as_str(&self) -> &str {
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
    pub(crate) description: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) annotations: BTreeMap<String, String>,
    /// Project the key belongs to, if project-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) project_id: Option<String>,
    /// Key type, e.g. `aes256-gcm96` (open set).
    #[serde(default)]
    pub key_type: String,
    /// Lifecycle state.
    pub status: KmsKeyStatus,
    /// Whether key material may be exported.
    #[serde(default)]
    pub(crate) export_allowed: bool,
    /// Whether the material was imported (BYOK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) imported: Option<bool>,
    /// Whether automatic rotation is on.
    #[serde(default)]
    pub(crate) key_rotation_enabled: bool,
    /// Automatic rotation period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotation_period_in_days: Option<u32>,
    /// Newest key version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<u64>,
    /// Oldest version still allowed to decrypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) min_decryption_version: Option<u64>,
    /// Key versions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) versions: Vec<KmsKeyVersion>,
    /// When a scheduled deletion takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deletion_scheduled_at: Option<Timestamp>,
    /// Creation time.
    #[serde(default)]
    pub(crate) created_at: Option<Timestamp>,
    /// Last update time.
    #[serde(default)]
    pub(crate) updated_at: Option<Timestamp>,
    /// Optimistic-concurrency counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) object_version: Option<u64>,
    /// Owning organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) organisation: Option<Organisation>,
}

impl KmsKey {
    /// Whether the key is `active`.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.status == KmsKeyStatus::Active
    }
}

/// One version of a KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsKeyVersion {
    /// Version number.
    pub(crate) version: u64,
    /// Status string, if the server sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub(crate) created_at: Option<Timestamp>,
}

/// Body of `POST /v1/kms/{region}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKmsKeyRequest {
    /// Key name (1–255 characters).
    pub(crate) name: String,
    /// Key type; Thalassa defaults to `aes256-gcm96`. Secrets need a symmetric AEAD type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key_type: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
    /// Allow exporting key material (only settable at create).
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) export_allowed: bool,
    /// Enable automatic rotation.
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) key_rotation_enabled: bool,
    /// Rotation period, required when rotation is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rotation_period_in_days: Option<u32>,
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

/// An organisation as embedded in other objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organisation {
    /// Organisation identity.
    #[serde(default)]
    pub(crate) identity: String,
    /// Display name.
    #[serde(default)]
    pub(crate) name: String,
    /// Slug.
    #[serde(default)]
    pub(crate) slug: String,
}
