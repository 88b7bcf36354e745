//! The Secrets Manager (S1-S9): secrets and their versions, each version sealed with the
//! secret's KMS key, the path rules, and every operation (browse, list, create, get, policy,
//! put, reveal, destroy a version, delete) with its IAM checks and gates.
//!
//! I/O contract: in-memory only. Operations return the API's views (never a value outside a
//! reveal) or an [`ApiError`] with Thalassa's status and message; a reveal decrypts one version
//! and updates the secret's last access.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde_json::Value;

use super::bodies::{
    BrowseView, CreateSecretRequest, PutSecretValueView, RevealView, SecretVersionView, SecretView,
};
use super::kms::find_key;
use super::values::{Plain, Sealed, plain_from_fields};
use super::{Caller, ScopeKey, Store};
use crate::crypto;
use crate::error::ApiError;

pub(crate) const MAX_PATH_LEN: usize = 512;

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

impl Store {
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

    fn secret<'a>(&'a self, scope: &ScopeKey, path: &str) -> Result<&'a Secret, ApiError> {
        self.scopes
            .get(scope)
            .and_then(|s| s.secrets.get(path))
            .ok_or_else(|| ApiError::secret_not_found(path))
    }

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
}
