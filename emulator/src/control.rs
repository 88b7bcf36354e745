//! In-process switches acting on the same state as the `/_emulator/*` routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Seed, SeedValue, TokenSpec};
use crate::error::ApiError;
use crate::faults::{Counters, Faults};
use crate::http::Shared;
use crate::model::{Caller, CreateKeyRequest, CreateSecretRequest, KeyStatus, plain_from_seed};

/// A cheap-to-clone handle on a running emulator. Calls skip authentication, feature gates,
/// IAM and regional availability, but apply the API's validation rules. It acts on the
/// organisation scope without a project unless [`Control::with_project`] says otherwise.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
    pub(crate) project: Option<String>,
}

impl Control {
    /// The same handle acting in `project` scope (what `X-Project-Identity` selects).
    pub fn with_project(&self, project: Option<&str>) -> Control {
        Control {
            shared: self.shared.clone(),
            project: project.map(str::to_owned),
        }
    }

    fn caller(&self) -> Caller {
        Caller::control(self.project.clone())
    }

    pub fn set_feature_gates(&self, secrets: bool, kms: bool) {
        let mut store = self.shared.store();
        store.secrets_gate = secrets;
        store.kms_gate = kms;
    }

    /// Marks a region's KMS backend up or down (down: 503 on crypto operations).
    pub fn set_kms_available(&self, region: &str, available: bool) -> Result<(), ApiError> {
        self.shared.store().region_mut(region)?.kms_available = available;
        Ok(())
    }

    pub fn add_token(&self, spec: TokenSpec) -> Result<(), ApiError> {
        self.shared.store().add_token(spec, "control")
    }

    /// Revokes a token (configured or issued); returns whether it was known.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.shared.store().revoke_token(token)
    }

    /// Revokes every access token the token endpoint issued whose origin starts with
    /// `origin_prefix` (e.g. `token-exchange:` for every exchanged token), as when Thalassa
    /// invalidates sessions; returns how many it revoked. Clients holding one get 401 and must
    /// obtain a new token with their credential.
    pub fn revoke_issued_tokens(&self, origin_prefix: &str) -> usize {
        self.shared.store().revoke_issued_tokens(origin_prefix)
    }

    /// Forces a key's status: `active`, `disabled` or `pending_deletion`.
    pub fn set_key_status(
        &self,
        region: &str,
        key_identity_or_slug: &str,
        status: &str,
    ) -> Result<(), ApiError> {
        let status = KeyStatus::parse(status).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be active, disabled or pending_deletion, got {status:?}"
            ))
        })?;
        self.shared
            .store()
            .set_key_status(self.project.clone(), region, key_identity_or_slug, status)
            .map(|_| ())
    }

    /// Creates a key and returns its identity.
    pub fn create_key(&self, region: &str, name: &str, key_type: &str) -> Result<String, ApiError> {
        let request = CreateKeyRequest {
            name: Some(name.to_owned()),
            key_type: Some(key_type.to_owned()),
            ..CreateKeyRequest::default()
        };
        let view = self
            .shared
            .store()
            .create_key(&self.caller(), region, request)?;
        Ok(
            serde_json::to_value(view).expect("view serialises")["identity"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Rotates a key and returns its new latest version.
    pub fn rotate_key(&self, region: &str, key: &str) -> Result<u64, ApiError> {
        let view = self
            .shared
            .store()
            .rotate_key(&self.caller(), region, key)?;
        Ok(
            serde_json::to_value(view).expect("view serialises")["latestVersion"]
                .as_u64()
                .unwrap_or_default(),
        )
    }

    /// Creates a secret (version 1) bound to `key` (identity, slug or name); returns 1.
    pub fn create_secret(
        &self,
        region: &str,
        path: &str,
        key: &str,
        value: SeedValue,
    ) -> Result<u64, ApiError> {
        self.create_secret_with(region, path, key, value, SecretMetadata::default())
    }

    pub(crate) fn create_secret_with(
        &self,
        region: &str,
        path: &str,
        key: &str,
        value: SeedValue,
        metadata: SecretMetadata,
    ) -> Result<u64, ApiError> {
        crate::model::validate_path(path)?;
        let plain = plain_from_seed(&value)?;
        let mut store = self.shared.store();
        let scope = store.control_scope(self.project.clone(), region)?;
        let key_identity = store
            .resolve_key(&scope, key)
            .ok_or_else(|| ApiError::key_not_found(key))?;
        let request = CreateSecretRequest {
            path: Some(path.to_owned()),
            description: metadata.description,
            labels: metadata.labels,
            annotations: metadata.annotations,
            kms_key_identity: Some(key_identity),
            ..CreateSecretRequest::default()
        };
        store.create_secret_plain(&self.caller(), &scope, path.to_owned(), request, plain)?;
        Ok(1)
    }

    /// Stores a new version; returns its number.
    pub fn put_secret_value(
        &self,
        region: &str,
        path: &str,
        value: SeedValue,
    ) -> Result<u64, ApiError> {
        let plain = plain_from_seed(&value);
        self.shared
            .store()
            .put_secret_value(&self.caller(), region, path, plain)
            .map(|v| v.version)
    }

    pub fn destroy_version(&self, region: &str, path: &str, version: u64) -> Result<(), ApiError> {
        self.shared
            .store()
            .destroy_secret_version(&self.caller(), region, path, version)
    }

    pub fn delete_secret(&self, region: &str, path: &str) -> Result<(), ApiError> {
        self.shared
            .store()
            .delete_secret(&self.caller(), region, path)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.store().faults = faults;
    }

    /// Current faults, with the burst counters as far as they have been consumed.
    pub fn faults(&self) -> Faults {
        self.shared.store().faults.clone()
    }

    pub fn counters(&self) -> Counters {
        self.shared.store().counters.clone()
    }

    pub fn reset_counters(&self) {
        self.shared.store().counters = Counters::default();
    }

    /// The state summary served by `GET /_emulator/state` (no values, no tokens).
    pub fn state(&self) -> Value {
        self.shared.store().summary()
    }

    /// For tests: the stored ciphertext of a version (`None` if unknown or destroyed), to show
    /// that no plaintext is kept.
    pub fn stored_ciphertext(&self, region: &str, path: &str, version: u64) -> Option<Vec<u8>> {
        self.shared
            .store()
            .stored_ciphertext(self.project.clone(), region, path, version)
    }

    /// Creates the keys and secrets of a seed document. Entries without a region use
    /// `default_region`.
    pub fn apply_seed(&self, seed: &Seed, default_region: &str) -> Result<(), ApiError> {
        for key in &seed.keys {
            let control = self.with_project(key.project.as_deref());
            let region = key.region.as_deref().unwrap_or(default_region);
            let identity = control.create_key(
                region,
                &key.name,
                key.key_type.as_deref().unwrap_or("aes256-gcm96"),
            )?;
            for _ in 0..key.rotations {
                control.rotate_key(region, &identity)?;
            }
        }
        for secret in &seed.secrets {
            let control = self.with_project(secret.project.as_deref());
            let region = secret.region.as_deref().unwrap_or(default_region);
            let seed_error = |e: String| ApiError::bad_request(format!("{}: {e}", secret.path));
            let mut values = Vec::new();
            if !secret.value.is_empty() {
                values.push(secret.value.to_value().map_err(seed_error)?);
            }
            for v in &secret.versions {
                values.push(v.to_value().map_err(seed_error)?);
            }
            let mut values = values.into_iter();
            let first = values.next().ok_or_else(|| {
                seed_error("a value (string, base64, keyValues, generate) or versions".to_owned())
            })?;
            control.create_secret_with(
                region,
                &secret.path,
                &secret.key,
                first,
                SecretMetadata {
                    description: secret.description.clone(),
                    labels: secret.labels.clone(),
                    annotations: secret.annotations.clone(),
                },
            )?;
            for value in values {
                control.put_secret_value(region, &secret.path, value)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct SecretMetadata {
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}
