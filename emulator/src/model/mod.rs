//! The emulator's state and every Secrets Manager / KMS operation on it. HTTP handlers and the
//! in-process `Control` handle both call into here, so both follow the same rules.
//!
//! This file holds the [`Store`] (organisation, regions, scopes of keys and secrets, tokens,
//! faults, counters), the lookups every domain shares and the state summary. The domains:
//! - `iam`: tokens, callers and the IAM checks of a path;
//! - `gates`: the `secrets` and `kms` feature gates and regional KMS availability;
//! - `values`: value fields, limits, plaintext and sealed versions;
//! - `secrets`: the Secrets Manager operations (S1-S9);
//! - `kms`: KMS keys and their operations.
//!
//! I/O contract: in-memory only; callers hold the store's lock for one operation. Nothing here
//! logs or returns a secret value or key material outside a reveal.

mod bodies;
mod gates;
mod iam;
mod kms;
mod secrets;
mod values;

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::Value;

use crate::error::ApiError;
use crate::faults::{Counters, Faults};

pub(crate) use bodies::{
    CreateKeyRequest, CreateSecretRequest, GetSecretValueRequest, KeyFilters, KeyView,
    PutSecretValueRequest, UpdateRotationRequest,
};
use bodies::{OrganisationView, RegionView};
pub(crate) use iam::{Caller, CompiledAccess, TokenEntry, random_token};
pub(crate) use kms::{Key, KeyStatus};
pub(crate) use secrets::{Secret, validate_path};
pub(crate) use values::{plain_from_fields, plain_from_seed};

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
