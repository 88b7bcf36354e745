//! Wire types of the Secrets Manager (S1-S9): secret metadata (full, and the slim listing entry
//! the operator keeps), versions, the browse answer, request bodies and the revealed value.
//!
//! I/O contract: serde shapes only, decoded leniently (see the module above). Metadata never
//! holds a value; a reveal's value is decoded from base64 while parsing straight into zeroizing
//! storage.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::super::value::{Base64Secret, SecretValue, SecretValueInput};
use super::{KmsKey, KmsKeyStatus, json_error_detail, null_as_default, string_or_number};

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
    pub(crate) annotations: BTreeMap<String, String>,
    /// Creation time.
    #[serde(default)]
    pub(crate) created_at: Option<Timestamp>,
    /// Last update time (bumped by new versions).
    #[serde(default)]
    pub(crate) updated_at: Option<Timestamp>,
    /// The KMS key the secret is bound to (immutable).
    #[serde(default)]
    pub kms_key: Option<KmsKey>,
    /// Latest active version; 1 after create.
    #[serde(default)]
    pub current_version: u64,
    /// Optimistic-concurrency counter.
    #[serde(default)]
    pub(crate) object_version: u64,
    /// Time of the last successful reveal.
    #[serde(default)]
    pub(crate) last_accessed_at: Option<Timestamp>,
    /// The region object.
    #[serde(default)]
    pub(crate) region: Option<Region>,
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
    pub(crate) path: String,
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
    pub(crate) identity: String,
    /// Lifecycle state.
    pub(crate) status: KmsKeyStatus,
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
    pub(crate) status: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub(crate) created_at: Option<Timestamp>,
    /// When the version was destroyed; `None` while it is readable.
    #[serde(default)]
    pub(crate) destroyed_at: Option<Timestamp>,
}

impl SecretVersion {
    /// Whether the version has been destroyed (by timestamp or status).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed_at.is_some() || self.status.as_deref() == Some("destroyed")
    }
}

/// Response of S1 (browse one directory level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowseSecretsResponse {
    /// The directory that was browsed.
    #[serde(default)]
    pub(crate) path: String,
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
    pub(crate) path: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
    /// Identity (or slug) of an active symmetric KMS key in the same region.
    pub(crate) kms_key_identity: String,
    /// The first value; sent as exactly one of `secretString`, `secretKeyValues`, `generateSecret`.
    #[serde(flatten)]
    pub(crate) value: SecretValueInput,
    /// Optional access policy (opaque).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) access_policy: Option<serde_json::Value>,
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
    pub(crate) path: String,
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

/// Body of S5, sent only by the test-only endpoint.
#[cfg(any(test, feature = "testing"))]
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
    pub(crate) path: String,
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

/// A Thalassa region as embedded in other objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// Region identity.
    #[serde(default)]
    pub(crate) identity: String,
    /// Display name.
    #[serde(default)]
    pub(crate) name: String,
    /// Slug such as `nl-01`.
    #[serde(default)]
    pub(crate) slug: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
}
