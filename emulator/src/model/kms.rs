//! KMS keys: the key model (status, versions and their material, rotation, scheduled deletion)
//! and every key operation (summary, list, create, get, enable, disable, rotate, rotation
//! settings, schedule and cancel deletion), plus the control handle's key lookups.
//!
//! I/O contract: in-memory only. Operations return the API's views (never key material) or an
//! [`ApiError`] with Thalassa's status and message.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::bodies::{CreateKeyRequest, KeyFilters, KeyVersionView, KeyView, UpdateRotationRequest};
use super::iam::random_hex;
use super::{Caller, Scope, ScopeKey, Store};
use crate::crypto::KeyType;
use crate::error::ApiError;

pub(crate) const KEY_DELETION_DAYS: i64 = 30;

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
    pub(super) material: Vec<u8>,
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
    pub(super) fn latest_version(&self) -> &KeyVersion {
        self.versions.last().expect("a key always has version 1")
    }

    pub(super) fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|kv| kv.version == v)
    }

    pub(super) fn ensure_active(&self) -> Result<(), ApiError> {
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

/// Keys are addressed by identity or slug; the control handle also accepts the name.
pub(super) fn find_key<'a>(scope: &'a Scope, id: &str, by_name: bool) -> Option<&'a Key> {
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

impl Store {
    pub(super) fn key_view(&self, key: &Key) -> KeyView {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My App Key!"), "my-app-key");
        assert_eq!(slugify("--x--y--"), "x-y");
    }
}
