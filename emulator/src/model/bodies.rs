//! The JSON bodies of the API: the requests the emulator accepts (create and put a secret,
//! reveal, create a key and change its rotation, key filters) and the views it answers with
//! (secrets, versions, keys, organisation, region). Built by the domain modules.
//!
//! I/O contract: serde shapes only, in Thalassa's camelCase. Views hold no key material; only
//! [`RevealView`] holds a value, and only while the response is written.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::values::ValueFields;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrganisationView {
    pub(super) identity: String,
    pub(super) name: String,
    pub(super) slug: String,
    pub(super) created_at: Timestamp,
    pub(super) object_version: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegionView {
    pub(super) identity: String,
    pub(super) name: String,
    pub(super) slug: String,
    pub(super) description: String,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    pub(super) object_version: u64,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) zones: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSecretRequest {
    pub path: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub kms_key_identity: Option<String>,
    #[serde(flatten)]
    pub value: ValueFields,
    pub access_policy: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutSecretValueRequest {
    pub path: Option<String>,
    #[serde(flatten)]
    pub value: ValueFields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetSecretValueRequest {
    pub path: Option<String>,
    pub version: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretVersionView {
    pub(super) version: u64,
    pub(super) status: &'static str,
    pub(super) created_at: Timestamp,
    pub(super) destroyed_at: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretView {
    pub(super) path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) kms_key: Option<KeyView>,
    pub(super) current_version: u64,
    pub(super) object_version: u64,
    pub(super) last_accessed_at: Option<Timestamp>,
    pub(super) region: RegionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) access_policy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) versions: Option<Vec<SecretVersionView>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BrowseView {
    pub(super) path: String,
    pub(super) prefixes: Vec<String>,
    pub(super) secrets: Vec<SecretView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutSecretValueView {
    pub path: String,
    pub version: u64,
}

/// The reveal response. Built right before it is written out and dropped after.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RevealView {
    pub(super) path: String,
    pub(super) version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) secret_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) secret_key_values: Option<BTreeMap<String, String>>,
    pub(super) kms_key_identity: String,
    pub(super) kms_key_version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateKeyRequest {
    pub name: Option<String>,
    pub key_type: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub export_allowed: bool,
    #[serde(default)]
    pub key_rotation_enabled: bool,
    pub rotation_period_in_days: Option<i64>,
    pub import_key_material: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateRotationRequest {
    pub key_rotation_enabled: Option<bool>,
    pub rotation_period_in_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyFilters {
    pub identity: Option<String>,
    pub name: Option<String>,
    pub slug: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyVersionView {
    pub(super) version: u32,
    pub(super) status: &'static str,
    pub(super) created_at: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyView {
    pub(super) identity: String,
    pub(super) name: String,
    pub(super) slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) project_id: Option<String>,
    pub(super) key_type: &'static str,
    pub(super) status: &'static str,
    pub(super) export_allowed: bool,
    pub(super) imported: bool,
    pub(super) key_rotation_enabled: bool,
    pub(super) rotation_period_in_days: Option<i64>,
    pub(super) latest_version: u32,
    pub(super) min_decryption_version: u32,
    pub(super) versions: Vec<KeyVersionView>,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    pub(super) object_version: u64,
    pub(super) organisation: OrganisationView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deletion_scheduled_at: Option<Timestamp>,
}
