//! The emulator's state and every Secrets Manager / KMS operation on it. HTTP handlers and the
//! in-process `Control` handle both call into here, so both follow the same rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Access, SeedValue, TokenScheme, TokenSpec};
use crate::crypto::{self, KeyType, NONCE_LEN};
use crate::error::ApiError;
use crate::faults::{Counters, Faults};

pub(crate) const MAX_PATH_LEN: usize = 512;
pub(crate) const MAX_VALUE_BYTES: usize = 4096;
pub(crate) const MAX_KEYS: usize = 256;
pub(crate) const MAX_KEY_NAME_LEN: usize = 128;
pub(crate) const MIN_GENERATE: i64 = 16;
pub(crate) const KEY_DELETION_DAYS: i64 = 30;

pub(crate) const MSG_SECRETS_GATE: &str = "feature 'secrets' is not enabled for this organisation";
pub(crate) const MSG_KMS_GATE_SECRETS: &str =
    "KMS must be enabled first: feature 'kms' is not enabled for this organisation";
pub(crate) const MSG_KMS_GATE: &str = "feature 'kms' is not enabled for this organisation";

// ---------------------------------------------------------------------------------------------
// Credentials

/// An [`Access`] with its path globs compiled.
#[derive(Debug)]
pub(crate) struct CompiledAccess {
    pub spec: Access,
    globs: Option<GlobSet>,
}

impl CompiledAccess {
    pub fn new(spec: Access) -> Result<Self, ApiError> {
        let globs = match &spec.path_globs {
            None => None,
            Some(patterns) => Some(compile_globs(patterns)?),
        };
        Ok(Self { spec, globs })
    }

    pub fn full() -> Self {
        Self {
            spec: Access::default(),
            globs: None,
        }
    }

    pub fn covers(&self, path: &str) -> bool {
        self.globs.as_ref().is_none_or(|g| g.is_match(path))
    }
}

pub(crate) fn compile_globs(patterns: &[String]) -> Result<GlobSet, ApiError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // `*` crosses `/` so `/app/production/*` grants the whole subtree, as in Thalassa's IAM examples.
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| ApiError::bad_request(format!("invalid glob {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| ApiError::bad_request(format!("invalid globs: {e}")))
}

#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub scheme: TokenScheme,
    pub access: Arc<CompiledAccess>,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    /// Where it came from, for the state summary (never the token itself).
    pub origin: String,
}

/// Who is calling and in which project scope.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub access: Arc<CompiledAccess>,
    pub project: Option<String>,
    /// Control-handle calls skip feature gates, IAM and regional availability.
    pub control: bool,
}

impl Caller {
    pub fn control(project: Option<String>) -> Self {
        Self {
            access: Arc::new(CompiledAccess::full()),
            project,
            control: true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stored state

#[derive(Debug)]
pub(crate) struct RegionState {
    pub slug: String,
    pub identity: String,
    pub kms_available: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScopeKey {
    pub project: Option<String>,
    pub region: String,
}

#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// By identity.
    pub keys: BTreeMap<String, Key>,
    /// By path.
    pub secrets: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Disabled,
    PendingDeletion,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::PendingDeletion => "pending_deletion",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            "pending_deletion" => Some(Self::PendingDeletion),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Key {
    pub identity: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub project: Option<String>,
    pub key_type: KeyType,
    pub status: KeyStatus,
    pub export_allowed: bool,
    pub key_rotation_enabled: bool,
    pub rotation_period_in_days: Option<i64>,
    pub versions: Vec<KeyVersion>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub object_version: u64,
    pub deletion_scheduled_at: Option<Timestamp>,
}

pub(crate) struct KeyVersion {
    pub version: u32,
    pub created_at: Timestamp,
    material: Vec<u8>,
}

// Key material must never reach a log line.
impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl Key {
    fn latest_version(&self) -> &KeyVersion {
        self.versions.last().expect("a key always has version 1")
    }

    fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|kv| kv.version == v)
    }

    fn ensure_active(&self) -> Result<(), ApiError> {
        if self.status == KeyStatus::Active {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "kms key {} is not active (status: {})",
                self.identity,
                self.status.as_str()
            )))
        }
    }

    fn touch(&mut self) {
        self.updated_at = Timestamp::now();
        self.object_version += 1;
    }

    fn rotate(&mut self) {
        let version = self.latest_version().version + 1;
        self.versions.push(KeyVersion {
            version,
            created_at: Timestamp::now(),
            material: self.key_type.generate_material(),
        });
        self.touch();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    String,
    KeyValues,
}

/// One encrypted version payload. The plaintext is never stored.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub format: ValueFormat,
    pub key_version: u32,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct SecretVersion {
    pub version: u64,
    pub created_at: Timestamp,
    pub destroyed_at: Option<Timestamp>,
    /// Dropped on destroy, so a destroyed version is really gone.
    pub sealed: Option<Sealed>,
}

#[derive(Debug)]
pub(crate) struct Secret {
    pub path: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub key_identity: String,
    pub current_version: u64,
    pub object_version: u64,
    pub last_accessed_at: Option<Timestamp>,
    pub access_policy: Option<Value>,
    pub versions: Vec<SecretVersion>,
}

impl Secret {
    fn next_version(&self) -> u64 {
        self.versions.last().map_or(1, |v| v.version + 1)
    }
    fn touch(&mut self) {
        self.updated_at = Timestamp::now();
        self.object_version += 1;
    }
}

/// The plaintext of one version, alive only while a request is being served.
pub(crate) enum Plain {
    String(Vec<u8>),
    KeyValues(BTreeMap<String, Vec<u8>>),
}

impl Plain {
    fn format(&self) -> ValueFormat {
        match self {
            Self::String(_) => ValueFormat::String,
            Self::KeyValues(_) => ValueFormat::KeyValues,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::String(b) => b.clone(),
            Self::KeyValues(kv) => {
                let encoded: BTreeMap<&String, String> =
                    kv.iter().map(|(k, v)| (k, B64.encode(v))).collect();
                serde_json::to_vec(&encoded).expect("a string map always serialises")
            }
        }
    }

    fn from_bytes(format: ValueFormat, bytes: Vec<u8>) -> Result<Self, ApiError> {
        match format {
            ValueFormat::String => Ok(Self::String(bytes)),
            ValueFormat::KeyValues => {
                let encoded: BTreeMap<String, String> = serde_json::from_slice(&bytes)
                    .map_err(|_| ApiError::new(500, "stored value is corrupt"))?;
                let mut kv = BTreeMap::new();
                for (k, v) in encoded {
                    let bytes = B64
                        .decode(v)
                        .map_err(|_| ApiError::new(500, "stored value is corrupt"))?;
                    kv.insert(k, bytes);
                }
                Ok(Self::KeyValues(kv))
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Store {
    pub organisation: String,
    pub organisation_created_at: Timestamp,
    pub secrets_gate: bool,
    pub kms_gate: bool,
    pub regions: Vec<RegionState>,
    pub scopes: HashMap<ScopeKey, Scope>,
    pub tokens: HashMap<String, TokenEntry>,
    pub faults: Faults,
    pub counters: Counters,
}

// ---------------------------------------------------------------------------------------------
// Request bodies

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateSecret {
    pub byte_length: Option<i64>,
}

/// The three mutually exclusive value fields of create and put.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValueFields {
    pub secret_string: Option<String>,
    pub secret_key_values: Option<BTreeMap<String, String>>,
    pub generate_secret: Option<GenerateSecret>,
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

// ---------------------------------------------------------------------------------------------
// Response bodies

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrganisationView {
    identity: String,
    name: String,
    slug: String,
    created_at: Timestamp,
    object_version: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegionView {
    identity: String,
    name: String,
    slug: String,
    description: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    object_version: u64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    zones: Vec<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyVersionView {
    version: u32,
    status: &'static str,
    created_at: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyView {
    identity: String,
    name: String,
    slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<String>,
    key_type: &'static str,
    status: &'static str,
    export_allowed: bool,
    imported: bool,
    key_rotation_enabled: bool,
    rotation_period_in_days: Option<i64>,
    latest_version: u32,
    min_decryption_version: u32,
    versions: Vec<KeyVersionView>,
    created_at: Timestamp,
    updated_at: Timestamp,
    object_version: u64,
    organisation: OrganisationView,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_scheduled_at: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretVersionView {
    version: u64,
    status: &'static str,
    created_at: Timestamp,
    destroyed_at: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretView {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key: Option<KeyView>,
    current_version: u64,
    object_version: u64,
    last_accessed_at: Option<Timestamp>,
    region: RegionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_policy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Vec<SecretVersionView>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BrowseView {
    path: String,
    prefixes: Vec<String>,
    secrets: Vec<SecretView>,
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
    path: String,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key_values: Option<BTreeMap<String, String>>,
    kms_key_identity: String,
    kms_key_version: String,
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

/// Path rules from the Secrets Manager docs: leading `/`, 1–512 characters of
/// `A-Z a-z 0-9 / _ - . +`, no trailing `/`, no `//`.
pub(crate) fn validate_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "invalid path {path:?}: {why}"
        )))
    };
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return bad("must be 1 to 512 characters");
    }
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if let Some(c) = path.chars().find(|c| !is_path_char(*c)) {
        return bad(&format!(
            "character {c:?} is not allowed (allowed: A-Z a-z 0-9 / _ - . +)"
        ));
    }
    if path == "/" || path.ends_with('/') {
        return bad("must not end with '/'");
    }
    if path.contains("//") {
        return bad("must not contain '//'");
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '+')
}

/// A browse directory: like a path, but `/` alone and a trailing `/` are allowed.
/// Returns the directory with a trailing `/`.
fn normalise_dir(dir: &str) -> Result<String, ApiError> {
    if dir == "/" {
        return Ok(dir.to_owned());
    }
    let trimmed = dir.strip_suffix('/').unwrap_or(dir);
    validate_path(trimmed)?;
    Ok(format!("{trimmed}/"))
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(value)
        .map_err(|_| ApiError::bad_request(format!("{field} must be valid base64")))
}

fn check_size(field: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.is_empty() || bytes.len() > MAX_VALUE_BYTES {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {MAX_VALUE_BYTES} bytes after base64 decoding (got {})",
            bytes.len()
        )));
    }
    Ok(())
}

fn check_key_values(kv: &BTreeMap<String, Vec<u8>>) -> Result<(), ApiError> {
    if kv.is_empty() || kv.len() > MAX_KEYS {
        return Err(ApiError::bad_request(format!(
            "secretKeyValues must have 1 to {MAX_KEYS} keys (got {})",
            kv.len()
        )));
    }
    for (name, value) in kv {
        if !valid_key_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid key name {name:?} in secretKeyValues: must be 1 to {MAX_KEY_NAME_LEN} characters of A-Z a-z 0-9 _ . -"
            )));
        }
        check_size(&format!("secretKeyValues[{name}]"), value)?;
    }
    Ok(())
}

/// Decodes and checks the exactly-one-of value fields of create and put.
pub(crate) fn plain_from_fields(fields: &ValueFields) -> Result<Plain, ApiError> {
    let set = [
        fields.secret_string.is_some(),
        fields.secret_key_values.is_some(),
        fields.generate_secret.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set != 1 {
        return Err(ApiError::bad_request(
            "exactly one of secretString, secretKeyValues or generateSecret must be set",
        ));
    }
    if let Some(s) = &fields.secret_string {
        let bytes = decode_b64("secretString", s)?;
        check_size("secretString", &bytes)?;
        return Ok(Plain::String(bytes));
    }
    if let Some(kv) = &fields.secret_key_values {
        let mut decoded = BTreeMap::new();
        for (name, value) in kv {
            decoded.insert(
                name.clone(),
                decode_b64(&format!("secretKeyValues[{name}]"), value)?,
            );
        }
        check_key_values(&decoded)?;
        return Ok(Plain::KeyValues(decoded));
    }
    let length = fields
        .generate_secret
        .as_ref()
        .and_then(|g| g.byte_length)
        .unwrap_or(0);
    generated(length)
}

fn generated(length: i64) -> Result<Plain, ApiError> {
    if !(MIN_GENERATE..=MAX_VALUE_BYTES as i64).contains(&length) {
        return Err(ApiError::bad_request(format!(
            "generateSecret.byteLength must be between {MIN_GENERATE} and {MAX_VALUE_BYTES}"
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    rand::rng().fill_bytes(&mut bytes);
    Ok(Plain::String(bytes))
}

/// Converts a control/seed value into a plaintext, applying the API's value rules.
pub(crate) fn plain_from_seed(value: &SeedValue) -> Result<Plain, ApiError> {
    let plain = match value {
        SeedValue::String(s) => Plain::String(s.as_bytes().to_vec()),
        SeedValue::Bytes(b) => Plain::String(b.clone()),
        SeedValue::KeyValues(kv) => Plain::KeyValues(
            kv.iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
        ),
        SeedValue::Generate(n) => return generated(i64::from(*n)),
    };
    match &plain {
        Plain::String(b) => check_size("secretString", b)?,
        Plain::KeyValues(kv) => check_key_values(kv)?,
    }
    Ok(plain)
}

pub(crate) fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(24))
}

// ---------------------------------------------------------------------------------------------
// Operations

impl Store {
    pub fn new(organisation: String, regions: &[String]) -> Self {
        let now = Timestamp::now();
        Self {
            organisation,
            organisation_created_at: now,
            secrets_gate: true,
            kms_gate: true,
            regions: regions
                .iter()
                .map(|slug| RegionState {
                    slug: slug.clone(),
                    identity: format!("region-{slug}"),
                    kms_available: true,
                    created_at: now,
                })
                .collect(),
            scopes: HashMap::new(),
            tokens: HashMap::new(),
            faults: Faults::default(),
            counters: Counters::default(),
        }
    }

    // --- credentials -------------------------------------------------------------------------

    pub fn add_token(&mut self, spec: TokenSpec, origin: &str) -> Result<(), ApiError> {
        if spec.token.trim().is_empty() {
            return Err(ApiError::bad_request("token must not be empty"));
        }
        let access = Arc::new(CompiledAccess::new(spec.access)?);
        self.tokens.insert(
            spec.token,
            TokenEntry {
                scheme: spec.scheme,
                access,
                revoked: false,
                expires_at: None,
                origin: origin.to_owned(),
            },
        );
        Ok(())
    }

    pub fn issue_token(
        &mut self,
        access: Arc<CompiledAccess>,
        lifetime_secs: i64,
        origin: String,
    ) -> String {
        let now = Timestamp::now();
        // Expired issued tokens are useless; drop them so long runs do not grow the table.
        self.tokens
            .retain(|_, t| t.expires_at.is_none_or(|exp| exp > now));
        let token = random_token("thl_");
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                scheme: TokenScheme::Bearer,
                access,
                revoked: false,
                expires_at: Some(now + SignedDuration::from_secs(lifetime_secs)),
                origin,
            },
        );
        token
    }

    /// Revokes `token`; returns whether it was known.
    pub fn revoke_token(&mut self, token: &str) -> bool {
        match self.tokens.get_mut(token) {
            Some(entry) => {
                entry.revoked = true;
                true
            }
            None => false,
        }
    }

    pub fn authenticate(&self, scheme: &str, token: &str) -> Result<Arc<CompiledAccess>, ApiError> {
        let entry = self.tokens.get(token).ok_or_else(ApiError::unauthorized)?;
        let scheme_ok = if scheme.eq_ignore_ascii_case("bearer") {
            true
        } else if scheme.eq_ignore_ascii_case("token") {
            entry.scheme == TokenScheme::Token
        } else {
            false
        };
        let expired = entry.expires_at.is_some_and(|exp| exp <= Timestamp::now());
        if !scheme_ok || entry.revoked || expired {
            return Err(ApiError::unauthorized());
        }
        Ok(entry.access.clone())
    }

    // --- shared lookups ----------------------------------------------------------------------

    fn region(&self, region: &str) -> Result<&RegionState, ApiError> {
        self.regions
            .iter()
            .find(|r| r.slug == region || r.identity == region)
            .ok_or_else(|| ApiError::not_found(format!("region not found: {region}")))
    }

    pub fn region_mut(&mut self, region: &str) -> Result<&mut RegionState, ApiError> {
        self.regions
            .iter_mut()
            .find(|r| r.slug == region || r.identity == region)
            .ok_or_else(|| ApiError::not_found(format!("region not found: {region}")))
    }

    fn scope_key(&self, caller: &Caller, region: &str) -> Result<ScopeKey, ApiError> {
        Ok(ScopeKey {
            project: caller.project.clone(),
            region: self.region(region)?.slug.clone(),
        })
    }

    fn require_kms_available(&self, caller: &Caller, region: &str) -> Result<(), ApiError> {
        let r = self.region(region)?;
        if caller.control || r.kms_available {
            Ok(())
        } else {
            Err(ApiError::kms_unavailable(&r.slug))
        }
    }

    fn secrets_gates(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.control {
            return Ok(());
        }
        if !self.secrets_gate {
            return Err(ApiError::forbidden(MSG_SECRETS_GATE));
        }
        if !self.kms_gate {
            return Err(ApiError::forbidden(MSG_KMS_GATE_SECRETS));
        }
        Ok(())
    }

    fn kms_gate(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.control || self.kms_gate {
            Ok(())
        } else {
            Err(ApiError::forbidden(MSG_KMS_GATE))
        }
    }

    fn organisation_view(&self) -> OrganisationView {
        OrganisationView {
            identity: self.organisation.clone(),
            name: self.organisation.clone(),
            slug: self.organisation.clone(),
            created_at: self.organisation_created_at,
            object_version: 1,
        }
    }

    fn region_view(&self, slug: &str) -> RegionView {
        let r = self
            .regions
            .iter()
            .find(|r| r.slug == slug)
            .expect("scopes only exist for configured regions");
        RegionView {
            identity: r.identity.clone(),
            name: r.slug.clone(),
            slug: r.slug.clone(),
            description: String::new(),
            created_at: r.created_at,
            updated_at: r.created_at,
            object_version: 1,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            zones: Vec::new(),
        }
    }

    fn key_view(&self, key: &Key) -> KeyView {
        KeyView {
            identity: key.identity.clone(),
            name: key.name.clone(),
            slug: key.slug.clone(),
            description: key.description.clone(),
            labels: key.labels.clone(),
            annotations: key.annotations.clone(),
            project_id: key.project.clone(),
            key_type: key.key_type.as_str(),
            status: key.status.as_str(),
            export_allowed: key.export_allowed,
            imported: false,
            key_rotation_enabled: key.key_rotation_enabled,
            rotation_period_in_days: key.rotation_period_in_days,
            latest_version: key.latest_version().version,
            min_decryption_version: 1,
            versions: key
                .versions
                .iter()
                .map(|v| KeyVersionView {
                    version: v.version,
                    status: "active",
                    created_at: v.created_at,
                })
                .collect(),
            created_at: key.created_at,
            updated_at: key.updated_at,
            object_version: key.object_version,
            organisation: self.organisation_view(),
            deletion_scheduled_at: key.deletion_scheduled_at,
        }
    }

    fn secret_view(&self, scope: &ScopeKey, secret: &Secret, include_versions: bool) -> SecretView {
        let key = self
            .scopes
            .get(scope)
            .and_then(|s| s.keys.get(&secret.key_identity));
        SecretView {
            path: secret.path.clone(),
            description: secret.description.clone().filter(|d| !d.is_empty()),
            labels: secret.labels.clone(),
            annotations: secret.annotations.clone(),
            created_at: secret.created_at,
            updated_at: secret.updated_at,
            kms_key: key.map(|k| self.key_view(k)),
            current_version: secret.current_version,
            object_version: secret.object_version,
            last_accessed_at: secret.last_accessed_at,
            region: self.region_view(&scope.region),
            access_policy: secret.access_policy.clone(),
            versions: include_versions.then(|| {
                secret
                    .versions
                    .iter()
                    .map(|v| SecretVersionView {
                        version: v.version,
                        status: if v.destroyed_at.is_some() {
                            "destroyed"
                        } else if v.version == secret.current_version {
                            "current"
                        } else {
                            "active"
                        },
                        created_at: v.created_at,
                        destroyed_at: v.destroyed_at,
                    })
                    .collect()
            }),
        }
    }

    // --- Secrets Manager: IAM ------------------------------------------------------------------

    fn may_read(caller: &Caller, path: &str) -> Result<(), ApiError> {
        if caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: read on secret {path}"
            )))
        }
    }

    fn may_write(caller: &Caller, path: &str, action: &str) -> Result<(), ApiError> {
        if !caller.access.spec.read_only && caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: {action} on secret {path}"
            )))
        }
    }

    fn may_reveal(caller: &Caller, path: &str) -> Result<(), ApiError> {
        if caller.access.spec.reveal && caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: getSecretValue on secret {path}"
            )))
        }
    }

    fn secret<'a>(&'a self, scope: &ScopeKey, path: &str) -> Result<&'a Secret, ApiError> {
        self.scopes
            .get(scope)
            .and_then(|s| s.secrets.get(path))
            .ok_or_else(|| ApiError::secret_not_found(path))
    }

    // --- Secrets Manager: operations -----------------------------------------------------------

    pub fn browse_secrets(
        &self,
        caller: &Caller,
        region: &str,
        dir: &str,
    ) -> Result<BrowseView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        let dir = normalise_dir(dir)?;
        let mut prefixes = BTreeSet::new();
        let mut secrets = Vec::new();
        if let Some(s) = self.scopes.get(&scope) {
            for (path, secret) in s.secrets.range(dir.clone()..) {
                let Some(rest) = path.strip_prefix(&dir) else {
                    break;
                };
                if !caller.access.covers(path) {
                    continue;
                }
                match rest.split_once('/') {
                    Some((child, _)) => {
                        prefixes.insert(format!("{dir}{child}/"));
                    }
                    None => secrets.push(self.secret_view(&scope, secret, false)),
                }
            }
        }
        Ok(BrowseView {
            path: dir,
            prefixes: prefixes.into_iter().collect(),
            secrets,
        })
    }

    pub fn list_secrets(
        &self,
        caller: &Caller,
        region: &str,
        prefix: &str,
    ) -> Result<Vec<SecretView>, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid pathPrefix {prefix:?}: must start with '/'"
            )));
        }
        Ok(self
            .scopes
            .get(&scope)
            .map(|s| {
                s.secrets
                    .range(prefix.to_owned()..)
                    .take_while(|(path, _)| path.starts_with(prefix))
                    .filter(|(path, _)| caller.access.covers(path))
                    .map(|(_, secret)| self.secret_view(&scope, secret, false))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn create_secret(
        &mut self,
        caller: &Caller,
        region: &str,
        request: CreateSecretRequest,
    ) -> Result<SecretView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        let path = request
            .path
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("path is required"))?
            .trim()
            .to_owned();
        validate_path(&path)?;
        Self::may_write(caller, &path, "create")?;
        let plain = plain_from_fields(&request.value)?;
        self.create_secret_plain(caller, &scope, path, request, plain)
    }

    /// The part of create shared with seeding: everything after the request body is decoded.
    pub fn create_secret_plain(
        &mut self,
        caller: &Caller,
        scope: &ScopeKey,
        path: String,
        request: CreateSecretRequest,
        plain: Plain,
    ) -> Result<SecretView, ApiError> {
        if let Some(d) = &request.description
            && d.len() > 1024
        {
            return Err(ApiError::bad_request(
                "description must be at most 1024 characters",
            ));
        }
        let key_ref = request
            .kms_key_identity
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::bad_request("kmsKeyIdentity is required"))?;
        if self
            .scopes
            .get(scope)
            .is_some_and(|s| s.secrets.contains_key(&path))
        {
            return Err(ApiError::conflict(format!("secret already exists: {path}")));
        }
        if !caller.access.spec.kms {
            return Err(ApiError::key_not_found(key_ref));
        }
        let key = self
            .scopes
            .get(scope)
            .and_then(|s| find_key(s, key_ref, caller.control))
            .ok_or_else(|| ApiError::key_not_found(key_ref))?;
        key.ensure_active()?;
        if !key.key_type.is_symmetric_aead() {
            return Err(ApiError::bad_request(format!(
                "kms key {} has type {}; secrets need a symmetric key (aes128-gcm96, aes256-gcm96 or chacha20-poly1305)",
                key.identity,
                key.key_type.as_str()
            )));
        }
        let key_identity = key.identity.clone();
        self.require_kms_available(caller, &scope.region)?;
        let sealed = self.seal(scope, &key_identity, &path, 1, &plain)?;
        let now = Timestamp::now();
        let secret = Secret {
            path: path.clone(),
            description: request.description,
            labels: request.labels,
            annotations: request.annotations,
            created_at: now,
            updated_at: now,
            key_identity,
            current_version: 1,
            object_version: 1,
            last_accessed_at: None,
            access_policy: request.access_policy.filter(|p| !p.is_null()),
            versions: vec![SecretVersion {
                version: 1,
                created_at: now,
                destroyed_at: None,
                sealed: Some(sealed),
            }],
        };
        self.scopes
            .entry(scope.clone())
            .or_default()
            .secrets
            .insert(path.clone(), secret);
        let secret = self.secret(scope, &path)?;
        Ok(self.secret_view(scope, secret, false))
    }

    fn aad(&self, scope: &ScopeKey, path: &str, version: u64) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{}\0{}",
            self.organisation,
            scope.project.as_deref().unwrap_or(""),
            scope.region,
            path,
            version
        )
        .into_bytes()
    }

    fn seal(
        &self,
        scope: &ScopeKey,
        key_identity: &str,
        path: &str,
        version: u64,
        plain: &Plain,
    ) -> Result<Sealed, ApiError> {
        let key = self
            .scopes
            .get(scope)
            .and_then(|s| s.keys.get(key_identity))
            .ok_or_else(|| ApiError::key_not_found(key_identity))?;
        let kv = key.latest_version();
        let (nonce, ciphertext) = crypto::seal(
            key.key_type,
            &kv.material,
            &self.aad(scope, path, version),
            &plain.to_bytes(),
        )
        .map_err(|e| ApiError::new(500, e.to_string()))?;
        Ok(Sealed {
            format: plain.format(),
            key_version: kv.version,
            nonce,
            ciphertext,
        })
    }

    pub fn get_secret(
        &self,
        caller: &Caller,
        region: &str,
        path: &str,
        include_versions: bool,
    ) -> Result<SecretView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_read(caller, path)?;
        let secret = self.secret(&scope, path)?;
        Ok(self.secret_view(&scope, secret, include_versions))
    }

    pub fn update_access_policy(
        &mut self,
        caller: &Caller,
        region: &str,
        path: &str,
        policy: Option<Value>,
    ) -> Result<SecretView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_write(caller, path, "update")?;
        let secret = self
            .scopes
            .get_mut(&scope)
            .and_then(|s| s.secrets.get_mut(path))
            .ok_or_else(|| ApiError::secret_not_found(path))?;
        secret.access_policy = policy.filter(|p| !p.is_null());
        secret.touch();
        let secret = self.secret(&scope, path)?;
        Ok(self.secret_view(&scope, secret, false))
    }

    pub fn put_secret_value(
        &mut self,
        caller: &Caller,
        region: &str,
        path: &str,
        plain: Result<Plain, ApiError>,
    ) -> Result<PutSecretValueView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_write(caller, path, "putSecretValue")?;
        let plain = plain?;
        let secret = self.secret(&scope, path)?;
        let key = self
            .scopes
            .get(&scope)
            .and_then(|s| s.keys.get(&secret.key_identity))
            .ok_or_else(|| ApiError::key_not_found(&secret.key_identity))?;
        key.ensure_active()?;
        let key_identity = key.identity.clone();
        self.require_kms_available(caller, &scope.region)?;
        let version = secret.next_version();
        let sealed = self.seal(&scope, &key_identity, path, version, &plain)?;
        let secret = self
            .scopes
            .get_mut(&scope)
            .and_then(|s| s.secrets.get_mut(path))
            .ok_or_else(|| ApiError::secret_not_found(path))?;
        secret.versions.push(SecretVersion {
            version,
            created_at: Timestamp::now(),
            destroyed_at: None,
            sealed: Some(sealed),
        });
        secret.current_version = version;
        secret.touch();
        Ok(PutSecretValueView {
            path: path.to_owned(),
            version,
        })
    }

    pub fn get_secret_value(
        &mut self,
        caller: &Caller,
        region: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<RevealView, ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_reveal(caller, path)?;
        let secret = self.secret(&scope, path)?;
        let wanted = version.unwrap_or(secret.current_version);
        let stored = secret
            .versions
            .iter()
            .find(|v| v.version == wanted)
            .ok_or_else(|| {
                ApiError::not_found(format!("version {wanted} not found for secret {path}"))
            })?;
        let sealed = stored.sealed.as_ref().ok_or_else(|| {
            ApiError::not_found(format!("version {wanted} of secret {path} is destroyed"))
        })?;
        let key = self
            .scopes
            .get(&scope)
            .and_then(|s| s.keys.get(&secret.key_identity))
            .ok_or_else(|| ApiError::key_not_found(&secret.key_identity))?;
        key.ensure_active()?;
        self.require_kms_available(caller, &scope.region)?;
        let key_version = key.version(sealed.key_version).ok_or_else(|| {
            ApiError::new(500, format!("key version {} is gone", sealed.key_version))
        })?;
        let bytes = crypto::open(
            key.key_type,
            &key_version.material,
            &sealed.nonce,
            &self.aad(&scope, path, wanted),
            &sealed.ciphertext,
        )
        .map_err(|e| ApiError::new(500, format!("decryption failed: {e}")))?;
        let plain = Plain::from_bytes(sealed.format, bytes)?;
        let (secret_string, secret_key_values) = match plain {
            Plain::String(b) => (Some(B64.encode(b)), None),
            Plain::KeyValues(kv) => (
                None,
                Some(kv.into_iter().map(|(k, v)| (k, B64.encode(v))).collect()),
            ),
        };
        let view = RevealView {
            path: path.to_owned(),
            version: wanted,
            secret_string,
            secret_key_values,
            kms_key_identity: key.identity.clone(),
            kms_key_version: sealed.key_version.to_string(),
        };
        if let Some(secret) = self
            .scopes
            .get_mut(&scope)
            .and_then(|s| s.secrets.get_mut(path))
        {
            secret.last_accessed_at = Some(Timestamp::now());
        }
        Ok(view)
    }

    pub fn destroy_secret_version(
        &mut self,
        caller: &Caller,
        region: &str,
        path: &str,
        version: u64,
    ) -> Result<(), ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_write(caller, path, "delete")?;
        let secret = self
            .scopes
            .get_mut(&scope)
            .and_then(|s| s.secrets.get_mut(path))
            .ok_or_else(|| ApiError::secret_not_found(path))?;
        let stored = secret
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                ApiError::not_found(format!("version {version} not found for secret {path}"))
            })?;
        // Destroying twice is a no-op, so retries after a lost response are safe.
        if stored.destroyed_at.is_none() {
            stored.destroyed_at = Some(Timestamp::now());
            stored.sealed = None;
            secret.touch();
        }
        Ok(())
    }

    pub fn delete_secret(
        &mut self,
        caller: &Caller,
        region: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        self.secrets_gates(caller)?;
        let scope = self.scope_key(caller, region)?;
        validate_path(path)?;
        Self::may_write(caller, path, "delete")?;
        self.scopes
            .get_mut(&scope)
            .and_then(|s| s.secrets.remove(path))
            .map(|_| ())
            .ok_or_else(|| ApiError::secret_not_found(path))
    }

    /// Test-only view of a version's stored ciphertext.
    pub fn stored_ciphertext(
        &self,
        project: Option<String>,
        region: &str,
        path: &str,
        version: u64,
    ) -> Option<Vec<u8>> {
        let scope = ScopeKey {
            project,
            region: self.region(region).ok()?.slug.clone(),
        };
        self.scopes
            .get(&scope)?
            .secrets
            .get(path)?
            .versions
            .iter()
            .find(|v| v.version == version)?
            .sealed
            .as_ref()
            .map(|s| s.ciphertext.clone())
    }

    // --- KMS ---------------------------------------------------------------------------------

    pub fn kms_summary(&self, caller: &Caller) -> Value {
        let regions: Vec<Value> = self
            .regions
            .iter()
            .map(|r| {
                let scope = ScopeKey {
                    project: caller.project.clone(),
                    region: r.slug.clone(),
                };
                let keys: Vec<&Key> = self
                    .scopes
                    .get(&scope)
                    .map(|s| s.keys.values().collect())
                    .unwrap_or_default();
                let count = |status| keys.iter().filter(|k| k.status == status).count();
                serde_json::json!({
                    "identity": r.identity,
                    "name": r.slug,
                    "slug": r.slug,
                    "kmsAvailable": r.kms_available,
                    "totalKeys": keys.len(),
                    "activeKeys": count(KeyStatus::Active),
                    "disabledKeys": count(KeyStatus::Disabled),
                    "pendingDeletionKeys": count(KeyStatus::PendingDeletion),
                })
            })
            .collect();
        serde_json::json!({ "featureEnabled": self.kms_gate, "regions": regions })
    }

    /// Gate, region and IAM checks shared by all key routes. IAM denial is a 404 in KMS.
    fn kms_scope(&self, caller: &Caller, region: &str, admin: bool) -> Result<ScopeKey, ApiError> {
        self.kms_gate(caller)?;
        let scope = self.scope_key(caller, region)?;
        if !caller.control && (!caller.access.spec.kms || (admin && caller.access.spec.read_only)) {
            return Err(ApiError::not_found("not found"));
        }
        Ok(scope)
    }

    pub fn list_keys(
        &self,
        caller: &Caller,
        region: &str,
        filters: &KeyFilters,
    ) -> Result<Vec<KeyView>, ApiError> {
        let scope = self.kms_scope(caller, region, false)?;
        let matches = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        Ok(self
            .scopes
            .get(&scope)
            .map(|s| {
                let mut keys: Vec<&Key> = s
                    .keys
                    .values()
                    .filter(|k| {
                        matches(&filters.identity, &k.identity)
                            && matches(&filters.name, &k.name)
                            && matches(&filters.slug, &k.slug)
                    })
                    .collect();
                keys.sort_by_key(|k| k.created_at);
                keys.into_iter().map(|k| self.key_view(k)).collect()
            })
            .unwrap_or_default())
    }

    pub fn create_key(
        &mut self,
        caller: &Caller,
        region: &str,
        request: CreateKeyRequest,
    ) -> Result<KeyView, ApiError> {
        let scope = self.kms_scope(caller, region, true)?;
        let name = request
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("name is required"))?
            .to_owned();
        if name.len() > 255 {
            return Err(ApiError::bad_request("name must be at most 255 characters"));
        }
        let key_type_name = request.key_type.as_deref().unwrap_or("aes256-gcm96");
        let key_type = KeyType::parse(key_type_name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown keyType {key_type_name:?}")))?;
        if request.import_key_material.is_some() {
            return Err(ApiError::bad_request(
                "importKeyMaterial (BYOK) is not supported by this emulator",
            ));
        }
        if let Some(days) = request.rotation_period_in_days
            && !(1..=3650).contains(&days)
        {
            return Err(ApiError::bad_request(
                "rotationPeriodInDays must be between 1 and 3650",
            ));
        }
        if request.key_rotation_enabled && request.rotation_period_in_days.is_none() {
            return Err(ApiError::bad_request(
                "rotationPeriodInDays is required when keyRotationEnabled is true",
            ));
        }
        let slug = slugify(&name);
        if slug.is_empty() {
            return Err(ApiError::bad_request(
                "name must contain at least one letter or digit",
            ));
        }
        if self
            .scopes
            .get(&scope)
            .is_some_and(|s| s.keys.values().any(|k| k.slug == slug))
        {
            return Err(ApiError::conflict(format!(
                "a kms key with slug {slug} already exists"
            )));
        }
        self.require_kms_available(caller, &scope.region)?;
        let now = Timestamp::now();
        let key = Key {
            identity: format!("kms-{}", random_hex(8)),
            name,
            slug,
            description: request.description.filter(|d| !d.is_empty()),
            labels: request.labels,
            annotations: request.annotations,
            project: scope.project.clone(),
            key_type,
            status: KeyStatus::Active,
            export_allowed: request.export_allowed,
            key_rotation_enabled: request.key_rotation_enabled,
            rotation_period_in_days: request.rotation_period_in_days,
            versions: vec![KeyVersion {
                version: 1,
                created_at: now,
                material: key_type.generate_material(),
            }],
            created_at: now,
            updated_at: now,
            object_version: 1,
            deletion_scheduled_at: None,
        };
        let view = self.key_view(&key);
        self.scopes
            .entry(scope)
            .or_default()
            .keys
            .insert(key.identity.clone(), key);
        Ok(view)
    }

    pub fn get_key(&self, caller: &Caller, region: &str, id: &str) -> Result<KeyView, ApiError> {
        let scope = self.kms_scope(caller, region, false)?;
        let key = self
            .scopes
            .get(&scope)
            .and_then(|s| find_key(s, id, caller.control))
            .ok_or_else(|| ApiError::key_not_found(id))?;
        Ok(self.key_view(key))
    }

    /// Runs `change` on a key after the admin checks and returns the updated key.
    fn with_key(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
        change: impl FnOnce(&mut Key) -> Result<(), ApiError>,
    ) -> Result<KeyView, ApiError> {
        let scope = self.kms_scope(caller, region, true)?;
        let key = self
            .scopes
            .get_mut(&scope)
            .and_then(|s| find_key_mut(s, id, caller.control))
            .ok_or_else(|| ApiError::key_not_found(id))?;
        change(key)?;
        let identity = key.identity.clone();
        let key = self
            .scopes
            .get(&scope)
            .and_then(|s| s.keys.get(&identity))
            .ok_or_else(|| ApiError::key_not_found(id))?;
        Ok(self.key_view(key))
    }

    pub fn delete_key(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
    ) -> Result<KeyView, ApiError> {
        self.with_key(caller, region, id, |key| {
            if key.status == KeyStatus::PendingDeletion {
                return Err(ApiError::bad_request(format!(
                    "kms key {} is already pending deletion",
                    key.identity
                )));
            }
            key.status = KeyStatus::PendingDeletion;
            key.deletion_scheduled_at =
                Some(Timestamp::now() + SignedDuration::from_hours(24 * KEY_DELETION_DAYS));
            key.touch();
            Ok(())
        })
    }

    pub fn cancel_key_deletion(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
    ) -> Result<KeyView, ApiError> {
        self.with_key(caller, region, id, |key| {
            if key.status != KeyStatus::PendingDeletion {
                return Err(ApiError::bad_request(format!(
                    "kms key {} is not pending deletion (status: {})",
                    key.identity,
                    key.status.as_str()
                )));
            }
            key.status = KeyStatus::Active;
            key.deletion_scheduled_at = None;
            key.touch();
            Ok(())
        })
    }

    pub fn disable_key(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
    ) -> Result<KeyView, ApiError> {
        self.set_key_enabled(caller, region, id, KeyStatus::Disabled)
    }

    pub fn enable_key(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
    ) -> Result<KeyView, ApiError> {
        self.set_key_enabled(caller, region, id, KeyStatus::Active)
    }

    /// enable/disable: a key pending deletion must have its deletion cancelled first.
    fn set_key_enabled(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
        target: KeyStatus,
    ) -> Result<KeyView, ApiError> {
        self.with_key(caller, region, id, |key| {
            if key.status == KeyStatus::PendingDeletion {
                return Err(ApiError::bad_request(format!(
                    "kms key {} is pending deletion; cancel the deletion first",
                    key.identity
                )));
            }
            if key.status != target {
                key.status = target;
                key.touch();
            }
            Ok(())
        })
    }

    pub fn rotate_key(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
    ) -> Result<KeyView, ApiError> {
        self.kms_scope(caller, region, true)?;
        self.require_kms_available(caller, region)?;
        self.with_key(caller, region, id, |key| {
            key.ensure_active()?;
            key.rotate();
            Ok(())
        })
    }

    pub fn update_rotation(
        &mut self,
        caller: &Caller,
        region: &str,
        id: &str,
        request: UpdateRotationRequest,
    ) -> Result<KeyView, ApiError> {
        if let Some(days) = request.rotation_period_in_days
            && !(1..=3650).contains(&days)
        {
            return Err(ApiError::bad_request(
                "rotationPeriodInDays must be between 1 and 3650",
            ));
        }
        self.with_key(caller, region, id, |key| {
            if let Some(enabled) = request.key_rotation_enabled {
                key.key_rotation_enabled = enabled;
            }
            if let Some(days) = request.rotation_period_in_days {
                key.rotation_period_in_days = Some(days);
            }
            if key.key_rotation_enabled && key.rotation_period_in_days.is_none() {
                return Err(ApiError::bad_request(
                    "rotationPeriodInDays is required when keyRotationEnabled is true",
                ));
            }
            key.touch();
            Ok(())
        })
    }

    /// Control: force a key's status (no transition rules, so tests can reach any state).
    pub fn set_key_status(
        &mut self,
        project: Option<String>,
        region: &str,
        id: &str,
        status: KeyStatus,
    ) -> Result<KeyView, ApiError> {
        let caller = Caller::control(project);
        self.with_key(&caller, region, id, |key| {
            key.status = status;
            key.deletion_scheduled_at = (status == KeyStatus::PendingDeletion)
                .then(|| Timestamp::now() + SignedDuration::from_hours(24 * KEY_DELETION_DAYS));
            key.touch();
            Ok(())
        })
    }

    /// Control: key identity for a name, slug or identity.
    pub fn resolve_key(&self, scope: &ScopeKey, id: &str) -> Option<String> {
        self.scopes
            .get(scope)
            .and_then(|s| find_key(s, id, true))
            .map(|k| k.identity.clone())
    }

    pub fn control_scope(
        &self,
        project: Option<String>,
        region: &str,
    ) -> Result<ScopeKey, ApiError> {
        self.scope_key(&Caller::control(project), region)
    }

    /// The summary served by `GET /_emulator/state`: configuration and shapes, never values or tokens.
    pub fn summary(&self) -> Value {
        let mut scopes: Vec<Value> = self
            .scopes
            .iter()
            .map(|(scope, s)| {
                serde_json::json!({
                    "project": scope.project,
                    "region": scope.region,
                    "keys": s.keys.values().map(|k| serde_json::json!({
                        "identity": k.identity,
                        "slug": k.slug,
                        "keyType": k.key_type.as_str(),
                        "status": k.status.as_str(),
                        "latestVersion": k.latest_version().version,
                    })).collect::<Vec<_>>(),
                    "secrets": s.secrets.values().map(|sec| serde_json::json!({
                        "path": sec.path,
                        "kmsKeyIdentity": sec.key_identity,
                        "currentVersion": sec.current_version,
                        "versions": sec.versions.len(),
                        "destroyedVersions": sec.versions.iter().filter(|v| v.destroyed_at.is_some()).count(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        scopes.sort_by_key(|v| v.to_string());
        let now = Timestamp::now();
        let tokens: Vec<Value> = self
            .tokens
            .values()
            .map(|t| {
                serde_json::json!({
                    "origin": t.origin,
                    "scheme": format!("{:?}", t.scheme),
                    "readOnly": t.access.spec.read_only,
                    "pathGlobs": t.access.spec.path_globs,
                    "reveal": t.access.spec.reveal,
                    "kms": t.access.spec.kms,
                    "revoked": t.revoked,
                    "expired": t.expires_at.is_some_and(|e| e <= now),
                })
            })
            .collect();
        serde_json::json!({
            "organisation": self.organisation,
            "featureGates": { "secrets": self.secrets_gate, "kms": self.kms_gate },
            "regions": self.regions.iter().map(|r| serde_json::json!({
                "slug": r.slug, "identity": r.identity, "kmsAvailable": r.kms_available,
            })).collect::<Vec<_>>(),
            "scopes": scopes,
            "tokens": tokens,
            "faults": self.faults,
            "requests": self.counters.total,
        })
    }
}

/// Keys are addressed by identity or slug; the control handle also accepts the name.
fn find_key<'a>(scope: &'a Scope, id: &str, by_name: bool) -> Option<&'a Key> {
    scope.keys.get(id).or_else(|| {
        scope
            .keys
            .values()
            .find(|k| k.slug == id || (by_name && k.name == id))
    })
}

fn find_key_mut<'a>(scope: &'a mut Scope, id: &str, by_name: bool) -> Option<&'a mut Key> {
    let identity = find_key(scope, id, by_name)?.identity.clone();
    scope.keys.get_mut(&identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        for ok in [
            "/a",
            "/app/prod/db-password",
            "/a+b/c.d_e",
            &format!("/{}", "a".repeat(511)),
        ] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "a/b",
            "/a/",
            "/a//b",
            "/a b",
            "/a%b",
            "/ä",
            &format!("/{}", "a".repeat(512)),
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("My App Key!"), "my-app-key");
        assert_eq!(slugify("--x--y--"), "x-y");
    }

    #[test]
    fn globs_cross_slashes() {
        let access = CompiledAccess::new(Access {
            path_globs: Some(vec!["/app/production/*".into()]),
            ..Access::default()
        })
        .unwrap();
        assert!(access.covers("/app/production/db/password"));
        assert!(!access.covers("/app/staging/db"));
    }
}
