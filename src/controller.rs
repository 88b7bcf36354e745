//! The `ThalassaSecret` controller.
//!
//! Reconcile is a pipeline: validate (pure) → check sources (shared metadata calls) → observe the
//! target Secret → reveal what changed (coalesced) → render (pure) → apply (server-side apply) →
//! status. A failure anywhere before apply leaves the Secret exactly as it is; only the status
//! says what is wrong.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt, future::join_all};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams, PostParams},
    runtime::{
        Controller, Predicate, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        predicates, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    config::{Config, parse_duration},
    crd::{
        CreationPolicy, DATA_HASH_ANNOTATION, DeletionPolicy, FIELD_MANAGER, MANAGED_SELECTOR,
        OWNER_ANNOTATION, SecretType, SourceDeletionPolicy, ThalassaSecret,
    },
    error::{Error, Result},
    metrics::Metrics,
    render::{
        self, HashKey, KeyMapping, RenderSource, SourceValue, TargetSettings, data_hash, is_intact,
        is_label_value, is_qualified_name, is_valid_secret_key, parse_sources, prefix_key,
        render_data, render_secret, reuse_keys,
    },
    server::Readiness,
    sources::{SourceCache, SourceMeta, parent_prefix},
    status::{self, Observed, Prerequisites, reasons},
    thalassa::{self, KmsKeyStatus},
};

/// `lastCheckTime` is rewritten at most this often when nothing else in status changes.
const CHECK_TIME_REFRESH: Duration = Duration::from_secs(600);
/// First delay after a failure; doubles per consecutive failure, capped at the refresh interval.
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Operator configuration.
    pub config: Config,
    /// Shared, coalesced Thalassa access.
    pub sources: SourceCache,
    /// One recorder for all Events, so repeated events are merged into series.
    pub recorder: Recorder,
    /// Key for data hashes.
    pub hash_key: HashKey,
    /// Metadata of managed Secrets (label-selected; no values).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// resourceVersion of each managed Secret as last written or verified by this process.
    verified: Mutex<HashMap<(String, String), String>>,
    /// Consecutive failures per resource, for backoff.
    failures: Mutex<HashMap<ObjectRef<ThalassaSecret>, u32>>,
    /// The last deterministic failure per resource, with the inputs it depended on.
    rejected: Mutex<HashMap<ObjectRef<ThalassaSecret>, Rejection>>,
    /// True once the managed-Secret watch has listed everything.
    secrets_synced: tokio::sync::watch::Sender<bool>,
    /// Caps how many periodic checks run at once, so new and edited resources always find a
    /// free reconcile slot.
    periodic_lane: Semaphore,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: Config,
        thalassa: thalassa::Client,
        hash_key: HashKey,
        secrets: Store<PartialObjectMeta<Secret>>,
        reporter: Reporter,
        metrics: Arc<Metrics>,
    ) -> Self {
        let periodic_slots = usize::from(config.concurrency / 2).max(1);
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            sources: SourceCache::new(thalassa),
            hash_key,
            secrets,
            verified: Mutex::default(),
            failures: Mutex::default(),
            rejected: Mutex::default(),
            secrets_synced: tokio::sync::watch::Sender::new(false),
            periodic_lane: Semaphore::new(periodic_slots),
            metrics,
        }
    }
}

impl Context {
    /// Waits until the managed-Secret cache has synced (at once afterwards).
    async fn secret_cache_synced(&self) {
        let mut synced = self.secrets_synced.subscribe();
        // The sender lives in the context, so the channel never closes while we wait.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Drops per-resource state of resources that no longer exist.
    fn retain_resources(&self, exists: impl Fn(&ObjectRef<ThalassaSecret>) -> bool) {
        self.failures
            .lock()
            .expect("failures lock")
            .retain(|k, _| exists(k));
        self.rejected
            .lock()
            .expect("rejected lock")
            .retain(|k, _| exists(k));
    }
}

/// A spec checked and resolved against the operator's defaults.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    /// Region of every source.
    pub region: String,
    /// How often versions are checked.
    pub refresh_interval: Duration,
    /// Target Secret name.
    pub target_name: String,
    /// Explicit sources: path → (pinned version, mappings).
    pub paths: BTreeMap<String, PathSource>,
    /// Prefixes whose every secret is a source.
    pub prefixes: Vec<String>,
}

/// One explicitly named path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSource {
    /// Pinned version, if any.
    pub version: Option<u64>,
    /// How its value maps to keys.
    pub mappings: Vec<KeyMapping>,
}

/// Pure validation of what admission cannot check, and resolution of defaults.
pub fn validate(ts: &ThalassaSecret, config: &Config) -> Result<ValidatedSpec> {
    let spec = &ts.spec;
    let refresh_interval = match &spec.refresh_interval {
        Some(text) => {
            parse_duration(text).map_err(|e| Error::InvalidSpec(format!("refreshInterval: {e}")))?
        }
        None => config.default_refresh_interval,
    };
    if refresh_interval < Duration::from_secs(10) {
        return Err(Error::InvalidSpec(
            "refreshInterval must be at least 10s".into(),
        ));
    }
    let mut paths: BTreeMap<String, PathSource> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for entry in &spec.data {
        thalassa::validate_path(&entry.remote_ref.path).map_err(|e| {
            Error::InvalidSpec(format!("data[{}].remoteRef.path: {e}", entry.secret_key))
        })?;
        if !is_valid_secret_key(&entry.secret_key) {
            return Err(Error::InvalidSpec(format!(
                "data[].secretKey {:?} is not a valid Secret key ([-._a-zA-Z0-9]+, not '.' or '..')",
                entry.secret_key
            )));
        }
        if !keys.insert(entry.secret_key.clone()) {
            return Err(Error::TargetKeyConflict {
                key: entry.secret_key.clone(),
            });
        }
        let mapping = match &entry.remote_ref.property {
            Some(property) => KeyMapping::Property {
                secret_key: entry.secret_key.clone(),
                property: property.clone(),
            },
            None => KeyMapping::Whole {
                secret_key: entry.secret_key.clone(),
            },
        };
        let source = paths
            .entry(entry.remote_ref.path.clone())
            .or_insert(PathSource {
                version: entry.remote_ref.version,
                mappings: Vec::new(),
            });
        if source.version != entry.remote_ref.version {
            return Err(Error::InvalidSpec(format!(
                "path {} is read at two different versions; read one version per path",
                entry.remote_ref.path
            )));
        }
        source.mappings.push(mapping);
    }
    let mut prefixes = Vec::new();
    for (i, from) in spec.data_from.iter().enumerate() {
        match (&from.path, &from.path_prefix) {
            (Some(path), None) => {
                thalassa::validate_path(path)
                    .map_err(|e| Error::InvalidSpec(format!("dataFrom[{i}].path: {e}")))?;
                let source = paths.entry(path.clone()).or_insert(PathSource {
                    version: None,
                    mappings: Vec::new(),
                });
                if source.version.is_some() {
                    return Err(Error::InvalidSpec(format!(
                        "path {path} is pinned in data[] and followed in dataFrom[]; read one version per path"
                    )));
                }
                source.mappings.push(KeyMapping::AllProperties);
            }
            (None, Some(prefix)) => {
                if !prefix.ends_with('/') {
                    return Err(Error::InvalidSpec(format!(
                        "dataFrom[{i}].pathPrefix must end with '/'"
                    )));
                }
                thalassa::validate_browse_path(prefix)
                    .map_err(|e| Error::InvalidSpec(format!("dataFrom[{i}].pathPrefix: {e}")))?;
                prefixes.push(prefix.clone());
            }
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "dataFrom[{i}]: exactly one of path or pathPrefix must be set"
                )));
            }
        }
    }
    if paths.is_empty() && prefixes.is_empty() {
        return Err(Error::InvalidSpec(
            "at least one entry in data or dataFrom is required".into(),
        ));
    }
    if spec.target.creation_policy == CreationPolicy::Merge
        && spec.target.deletion_policy == DeletionPolicy::Delete
    {
        return Err(Error::InvalidSpec(
            "target.deletionPolicy Delete cannot be combined with creationPolicy Merge".into(),
        ));
    }
    validate_target_metadata(&spec.target.labels, &spec.target.annotations)?;
    let target_name = spec.target.name.clone().unwrap_or_else(|| ts.name_any());
    if ts.namespace().as_deref() == Some(config.operator_namespace.as_str())
        && target_name == config.hash_key_secret
    {
        return Err(Error::TargetReserved { name: target_name });
    }
    Ok(ValidatedSpec {
        region: spec
            .region
            .clone()
            .unwrap_or_else(|| config.default_region.clone()),
        refresh_interval,
        target_name,
        paths,
        prefixes,
    })
}

/// The same label and annotation rules as the CRD's CEL rules, checked again so nothing the
/// apiserver would refuse reaches a write.
fn validate_target_metadata(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    for (key, value) in labels {
        if !is_qualified_name(key) {
            return Err(Error::InvalidSpec(format!(
                "target.labels: {key:?} is not a qualified name"
            )));
        }
        if !is_label_value(value) {
            return Err(Error::InvalidSpec(format!(
                "target.labels: the value of {key:?} is not a valid label value"
            )));
        }
        if key.starts_with("secrets.thalassa.cloud/") || key == crate::crd::MANAGED_BY_LABEL {
            return Err(Error::InvalidSpec(format!(
                "target.labels: {key:?} is the operator's own"
            )));
        }
    }
    for key in annotations.keys() {
        if !is_qualified_name(key) {
            return Err(Error::InvalidSpec(format!(
                "target.annotations: {key:?} is not a qualified name"
            )));
        }
        if key.starts_with("secrets.thalassa.cloud/") {
            return Err(Error::InvalidSpec(format!(
                "target.annotations: {key:?} is the operator's own"
            )));
        }
    }
    Ok(())
}

/// What a successful sync produced, for status.
#[derive(Debug, Default)]
struct SyncOutcome {
    synced_versions: BTreeMap<String, u64>,
    kms_key: Option<(String, String)>,
    /// UID of the Secret now holding the data (the ownership record kept in status).
    secret_uid: Option<String>,
    wrote: bool,
}

/// The inputs a deterministic failure depended on. While they stay the same the failure is
/// reported again without revealing anything; any change (spec, a source version, the target
/// Secret) makes the next reconcile try again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    generation: Option<i64>,
    desired: BTreeMap<String, u64>,
    target_rv: Option<String>,
}

/// A deterministic failure and what it depended on.
struct Rejection {
    attempt: Attempt,
    error: Arc<Error>,
}

/// Reconciles one `ThalassaSecret`.
pub async fn reconcile(ts: Arc<ThalassaSecret>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        generation = ts.metadata.generation.unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let result = reconcile_inner(ts, ctx).instrument(span).await;
    metrics.reconciled(started.elapsed(), result.as_ref().err().map(Error::reason));
    result
}

async fn reconcile_inner(ts: Arc<ThalassaSecret>, ctx: Arc<Context>) -> Result<Action> {
    // Without the managed-Secret cache every resource would look new and reveal everything.
    ctx.secret_cache_synced().await;
    let mut prerequisites = Prerequisites::default();
    let validated = validate(&ts, &ctx.config);
    // What the Secret (as last seen by the watch) says it reflects. A Secret written for another
    // resource (UID), another generation, or none at all makes this a new or edited resource.
    let written = validated.as_ref().ok().and_then(|v| {
        let namespace = ts.namespace().unwrap_or_default();
        ctx.secrets
            .get(&ObjectRef::new(&v.target_name).within(&namespace))
    });
    let spec_changed = written
        .as_ref()
        .is_none_or(|m| !written_for_resource(&m.metadata, &ts));
    // Periodic checks of already-synced resources queue in their own lane; new and edited ones go
    // straight through.
    let _periodic_permit = if spec_changed {
        None
    } else {
        Some(
            ctx.periodic_lane
                .acquire()
                .await
                .expect("semaphore never closed"),
        )
    };
    let (validated, result) = match validated {
        Ok(v) => {
            let result = sync(
                &ts,
                &v,
                &ctx,
                written.as_deref(),
                spec_changed,
                &mut prerequisites,
            )
            .await;
            (Some(v), result)
        }
        Err(e) => (None, Err(e)),
    };
    let refresh = validated
        .as_ref()
        .map(|v| v.refresh_interval)
        .unwrap_or(ctx.config.default_refresh_interval);
    if let Err(e) = &result {
        prerequisites.record_error(e);
    }
    write_status(&ts, &ctx, validated.as_ref(), &result, &prerequisites).await?;
    match result {
        Ok(_) => {
            ctx.metrics
                .checked(&ts.namespace().unwrap_or_default(), &ts.name_any());
            let key = ObjectRef::from_obj(&*ts);
            ctx.failures.lock().expect("failures lock").remove(&key);
            ctx.rejected.lock().expect("rejected lock").remove(&key);
            // Half the interval, because a shared listing may already be up to half an interval
            // old: a stored version then reaches the Secret within one interval.
            Ok(Action::requeue(jitter(refresh / 2)))
        }
        Err(e) => Err(e),
    }
}

/// True when the Secret's annotations say it was written for this very resource (UID) at its
/// current generation.
fn written_for_resource(metadata: &kube::api::ObjectMeta, ts: &ThalassaSecret) -> bool {
    render::written_for(
        metadata,
        &ts.name_any(),
        ts.metadata.uid.as_deref().unwrap_or_default(),
        ts.metadata.generation,
    )
}

/// Decides what to do after a failed reconcile: wait for a spec change when the spec itself is
/// invalid, or retry with exponential backoff capped at the refresh interval (and never sooner
/// than a 429's `Retry-After`). Failures that depend on Thalassa's content are retried too, but
/// cost no reveal while nothing changed (see [`Attempt`]).
pub fn error_policy(ts: Arc<ThalassaSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        reason = error.reason(),
        error = %error,
        "sync failed"
    );
    let refresh = match validate(&ts, &ctx.config) {
        Ok(v) => v.refresh_interval,
        // Only a new spec can fix it.
        Err(_) => return Action::await_change(),
    };
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let count = map.entry(ObjectRef::from_obj(&*ts)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let backoff = BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(refresh);
    let delay = backoff.max(error.retry_after().unwrap_or_default());
    Action::requeue(jitter(delay))
}

/// Adds up to 10% random delay so resources created together spread their checks.
fn jitter(delay: Duration) -> Duration {
    let extra = rand::rng().random_range(0.0..0.1);
    delay + delay.mul_f64(extra)
}

/// Checks the KMS summary: the kms gate and the region's backend (cached, shared). A summary the
/// credentials may not read does not block the sync; outages and throttling do.
async fn check_kms_summary(
    spec: &ValidatedSpec,
    ctx: &Context,
    max_age: Duration,
    prerequisites: &mut Prerequisites,
) -> Result<()> {
    match ctx.sources.summary(max_age).await {
        Err(e) if matches!(e.reason(), "Forbidden" | "KeyNotFound" | "InvalidRequest") => {
            debug!(error = %e, "KMS summary not readable; backend availability not checked");
        }
        Err(e) => return Err(e.into()),
        Ok(summary) => {
            if !summary.feature_enabled {
                return Err(Error::KmsFeatureDisabled);
            }
            let region = summary.regions.iter().find(|r| {
                r.slug == spec.region || r.identity == spec.region || r.name == spec.region
            });
            match region {
                Some(r) if r.kms_available => {
                    prerequisites.kms_backend = Observed::ok(
                        reasons::AVAILABLE,
                        format!("KMS is available in region {}", spec.region),
                    );
                }
                Some(_) => {
                    return Err(Error::KmsBackendUnavailable {
                        region: spec.region.clone(),
                    });
                }
                // A region the summary does not know: the listing answers with a definite
                // RegionNotFound instead of a misleading "KMS unavailable".
                None => {}
            }
        }
    }
    Ok(())
}

type SourceMetas = BTreeMap<String, (SourceMeta, Option<u64>)>;

/// The version to write per path: the pin, or the current version.
fn desired_versions(metas: &SourceMetas) -> BTreeMap<String, u64> {
    metas
        .iter()
        .map(|(path, (meta, pinned))| (path.clone(), pinned.unwrap_or(meta.current_version)))
        .collect()
}

/// Checks sources, then (unless the Secret is known to be current) syncs the target. A
/// deterministic failure is remembered with its inputs so that it is not retried, and costs no
/// reveal, until one of them changes.
async fn sync(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    written: Option<&PartialObjectMeta<Secret>>,
    spec_changed: bool,
    prerequisites: &mut Prerequisites,
) -> Result<SyncOutcome> {
    let max_age = spec.refresh_interval / 2;
    check_kms_summary(spec, ctx, max_age, prerequisites).await?;

    // Current versions from shared listings (one per directory or prefix).
    let metas = resolve_sources(spec, ctx, max_age).await?;
    prerequisites.listing_succeeded();
    check_keys(ts, &metas)?;
    prerequisites.kms_key = Observed::ok(
        reasons::ACTIVE,
        "every source is bound to an active KMS key",
    );
    let desired = desired_versions(&metas);

    let key = ObjectRef::from_obj(ts);
    let attempt = Attempt {
        generation: ts.metadata.generation,
        desired: desired.clone(),
        target_rv: written.and_then(|m| m.metadata.resource_version.clone()),
    };
    if let Some(rejection) = ctx.rejected.lock().expect("rejected lock").get(&key)
        && rejection.attempt == attempt
    {
        debug!("same inputs as the last failed attempt; not read again");
        return Err(Error::Repeated(rejection.error.clone()));
    }

    // The Secret as last written or verified by this process, for this resource and generation,
    // with these versions: nothing to read.
    let written_versions: BTreeMap<String, u64> = written
        .map(|m| {
            parse_sources(&m.metadata)
                .into_iter()
                .map(|(p, r)| (p, r.version))
                .collect()
        })
        .unwrap_or_default();
    let verified_rv = ctx
        .verified
        .lock()
        .expect("verified lock")
        .get(&(ts.namespace().unwrap_or_default(), spec.target_name.clone()))
        .cloned();
    if !spec_changed
        && desired == written_versions
        && attempt.target_rv.is_some()
        && attempt.target_rv == verified_rv
    {
        debug!("sources and Secret unchanged; nothing to read");
        return Ok(SyncOutcome {
            synced_versions: desired,
            kms_key: None,
            secret_uid: ts.status.as_ref().and_then(|s| s.secret_uid.clone()),
            wrote: false,
        });
    }

    match sync_target(ts, spec, ctx, metas, prerequisites).await {
        Err(e) if e.is_deterministic() => {
            let error = Arc::new(e);
            ctx.rejected.lock().expect("rejected lock").insert(
                key,
                Rejection {
                    attempt,
                    error: error.clone(),
                },
            );
            Err(Error::Repeated(error))
        }
        other => other,
    }
}

/// Reads the target Secret, reveals what changed, renders and writes. A write that loses a race
/// (409) reads the Secret again and plans once more.
async fn sync_target(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    mut metas: SourceMetas,
    prerequisites: &mut Prerequisites,
) -> Result<SyncOutcome> {
    let namespace = ts.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut lost_race = false;
    loop {
        let existing = secrets.get_opt(&spec.target_name).await?;
        let target = classify_target(ts, &spec.target_name, existing.as_ref(), &ctx.hash_key)?;
        let recorded = match (&existing, target) {
            (Some(s), TargetState::Owned { .. }) => parse_sources(&s.metadata),
            _ => BTreeMap::new(),
        };
        recover_missing_sources(ts, spec, ctx, &recorded, &mut metas).await?;
        check_keys(ts, &metas)?;
        let desired = desired_versions(&metas);
        let plan = WritePlan {
            ts,
            spec,
            metas: &metas,
            desired: &desired,
            existing: existing.as_ref(),
            target,
            recorded: &recorded,
        };
        match plan.execute(ctx, &secrets, prerequisites).await {
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !lost_race => {
                debug!("the Secret changed while it was being written; planning again");
                lost_race = true;
            }
            other => return other,
        }
    }
}

/// How the existing Secret relates to this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    /// No Secret with the target name.
    Absent,
    /// Ours: its owner annotation names this resource, or its UID is the one recorded in status.
    /// `intact` when its data still matches its keyed hash (and, for Owner and Adopt, has no
    /// other keys).
    Owned {
        /// No edit since our last write.
        intact: bool,
    },
    /// Someone else's Secret that the spec allows us to take over (Adopt) or write into (Merge).
    Foreign,
}

/// Classifies the existing Secret, refusing what may never be written: a type the operator does
/// not manage, another resource's Secret, a foreign Secret without Adopt or Merge, and a type
/// change (a Secret's type is immutable).
fn classify_target(
    ts: &ThalassaSecret,
    name: &str,
    existing: Option<&Secret>,
    hash_key: &HashKey,
) -> Result<TargetState> {
    let Some(existing) = existing else {
        return Ok(TargetState::Absent);
    };
    let existing_type = existing.type_.as_deref().unwrap_or("Opaque");
    if SecretType::from_type_str(existing_type).is_none() {
        return Err(Error::TargetTypeRefused {
            name: name.to_string(),
            secret_type: existing_type.to_string(),
        });
    }
    let our_name = ts.name_any();
    let named_owner = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION));
    if named_owner.is_some_and(|owner| *owner != our_name) {
        return Err(Error::TargetConflict {
            name: name.to_string(),
        });
    }
    let recorded_uid = ts.status.as_ref().and_then(|s| s.secret_uid.as_ref());
    let owned = named_owner.is_some()
        || (recorded_uid.is_some() && recorded_uid == existing.metadata.uid.as_ref());
    let policy = ts.spec.target.creation_policy;
    if !owned && policy == CreationPolicy::Owner {
        return Err(Error::TargetConflict {
            name: name.to_string(),
        });
    }
    let owns_all_data = policy != CreationPolicy::Merge;
    let wanted = ts.spec.target.r#type.as_str();
    if owns_all_data && existing_type != wanted {
        return Err(Error::TargetTypeConflict {
            name: name.to_string(),
            existing: existing_type.to_string(),
            wanted: wanted.to_string(),
        });
    }
    Ok(if owned {
        TargetState::Owned {
            intact: is_intact(existing, hash_key, owns_all_data),
        }
    } else {
        TargetState::Foreign
    })
}

/// Paths this resource synced from a prefix that the listings no longer show. A listing is no
/// proof of absence (Thalassa leaves out what the caller may not read), so each is looked up
/// directly: found, it stays a source; a definite "not found" removes its keys only with
/// `onSourceDeleted: Delete`; anything else (a 403, an outage) stops the sync with the keys kept.
async fn recover_missing_sources(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    recorded: &BTreeMap<String, render::SourceRecord>,
    metas: &mut SourceMetas,
) -> Result<()> {
    let missing: Vec<&String> = recorded
        .keys()
        .filter(|path| {
            !metas.contains_key(*path)
                && !spec.paths.contains_key(*path)
                && spec.prefixes.iter().any(|p| path.starts_with(p.as_str()))
        })
        .collect();
    let mut deleted = Vec::new();
    for path in missing {
        match ctx.sources.metadata(&spec.region, path).await {
            Ok(meta) => {
                debug!(path = %path, "listed no more, but still readable");
                metas.insert(path.clone(), (meta, None));
            }
            Err(e) if e.is_definite_not_found() => {
                if ts.spec.target.on_source_deleted == SourceDeletionPolicy::Retain {
                    deleted.push(path.clone());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if deleted.is_empty() {
        Ok(())
    } else {
        Err(Error::SourceDeleted { paths: deleted })
    }
}

/// Which sources must be revealed: all of them after a spec change or an edit of the Secret,
/// otherwise only those whose version differs from the one the Secret records.
fn plan_reveals(
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, render::SourceRecord>,
    reuse_allowed: bool,
) -> Vec<(String, u64)> {
    desired
        .iter()
        .filter(|(path, version)| {
            !(reuse_allowed && recorded.get(*path).is_some_and(|r| r.version == **version))
        })
        .map(|(path, version)| (path.clone(), *version))
        .collect()
}

/// Keys to delete from the existing Secret: with Owner and Adopt every key the render does not
/// produce; with Merge only keys this resource wrote before.
fn keys_to_remove(
    existing: &Secret,
    rendered: &BTreeMap<String, k8s_openapi::ByteString>,
    policy: CreationPolicy,
    recorded: &BTreeMap<String, render::SourceRecord>,
) -> Vec<String> {
    let present = existing.data.iter().flatten().map(|(k, _)| k);
    let candidates: Vec<&String> = if policy == CreationPolicy::Merge {
        let ours: BTreeSet<&String> = recorded.values().flat_map(|r| r.keys.iter()).collect();
        present.filter(|k| ours.contains(k)).collect()
    } else {
        present.collect()
    };
    candidates
        .into_iter()
        .filter(|k| !rendered.contains_key(*k))
        .cloned()
        .collect()
}

/// The write that brings the Secret to the rendered state, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// Already exactly this.
    None,
    /// No Secret yet: create it (a concurrent creator makes this fail instead of overwriting).
    Create,
    /// Server-side apply, on the resourceVersion just read.
    Apply,
    /// Keys must go: one merge patch with the whole new state and the removals, on the
    /// resourceVersion just read, so nothing is removed unless everything is written.
    ReplaceKeys(Vec<String>),
}

/// Picks the write (pure).
fn plan_write(existing: Option<&Secret>, up_to_date: bool, remove: Vec<String>) -> Write {
    match existing {
        None => Write::Create,
        Some(_) if !remove.is_empty() => Write::ReplaceKeys(remove),
        Some(_) if up_to_date => Write::None,
        Some(_) => Write::Apply,
    }
}

/// The Event for a write (pure): creation, repair of our own Secret, adoption, or update.
fn write_event(
    existing: bool,
    target: TargetState,
    was_synced: bool,
    name: &str,
    policy: CreationPolicy,
) -> (&'static str, String) {
    match (existing, target) {
        (false, _) if was_synced => (
            "SecretRepaired",
            format!("Secret {name} was deleted; recreated it"),
        ),
        (false, _) => ("SecretCreated", format!("created Secret {name}")),
        (true, TargetState::Owned { intact: false }) if was_synced => (
            "SecretRepaired",
            format!("Secret {name} was edited or incomplete; restored it"),
        ),
        (true, TargetState::Foreign) => (
            "SecretAdopted",
            format!("took over Secret {name} ({policy:?})"),
        ),
        _ => ("SecretUpdated", format!("updated Secret {name}")),
    }
}

/// Everything one planning round knows.
struct WritePlan<'a> {
    ts: &'a ThalassaSecret,
    spec: &'a ValidatedSpec,
    metas: &'a SourceMetas,
    desired: &'a BTreeMap<String, u64>,
    existing: Option<&'a Secret>,
    target: TargetState,
    recorded: &'a BTreeMap<String, render::SourceRecord>,
}

impl WritePlan<'_> {
    /// Reveals what changed, renders, and writes when the Secret differs.
    async fn execute(
        &self,
        ctx: &Context,
        secrets: &Api<Secret>,
        prerequisites: &mut Prerequisites,
    ) -> Result<SyncOutcome> {
        let ts = self.ts;
        let spec = self.spec;
        let namespace = ts.namespace().unwrap_or_default();
        let policy = ts.spec.target.creation_policy;
        let intact = matches!(self.target, TargetState::Owned { intact: true });
        let reuse_allowed = intact
            && self
                .existing
                .is_some_and(|s| written_for_resource(&s.metadata, ts));

        // Reveal only sources whose version changed.
        let to_reveal = plan_reveals(self.desired, self.recorded, reuse_allowed);
        let revealed = join_all(to_reveal.iter().map(|(path, version)| {
            let pinned = self.metas.get(path).and_then(|(_, pinned)| *pinned);
            // A followed path is read at the version the listing reported, so a put landing
            // between listing and reveal is picked up by the next check, not half-applied now.
            let version = pinned.or(Some(*version));
            async move {
                (
                    path.clone(),
                    ctx.sources.reveal(&spec.region, path, version).await,
                )
            }
        }))
        .await;
        let mut values = BTreeMap::new();
        let mut kms_key = None;
        for (path, result) in revealed {
            let secret = result?;
            if let Some(required) = &ts.spec.kms_key_identity
                && &secret.kms_key_identity != required
            {
                return Err(Error::KmsKeyMismatch {
                    path,
                    expected: required.clone(),
                    actual: secret.kms_key_identity.clone(),
                });
            }
            kms_key = Some((
                secret.kms_key_identity.clone(),
                secret.kms_key_version.clone(),
            ));
            values.insert(path, secret);
        }
        if !values.is_empty() {
            prerequisites.reveal_succeeded(&spec.region);
        }

        // Render (pure).
        let mut render_sources = Vec::new();
        let prefix_mappings = prefix_mappings(spec, self.metas);
        for (path, version) in self.desired {
            let mappings: Vec<&KeyMapping> = match spec.paths.get(path) {
                Some(source) => source.mappings.iter().collect(),
                None => prefix_mappings.get(path).into_iter().collect(),
            };
            let value = match values.get(path) {
                Some(secret) => SourceValue::Revealed(&secret.value),
                None => {
                    let keys = self
                        .recorded
                        .get(path)
                        .map(|r| r.keys.clone())
                        .unwrap_or_default();
                    match self.existing.and_then(|s| reuse_keys(s, &keys)) {
                        Some(reused) => SourceValue::Reused(reused),
                        None => {
                            return Err(Error::InvalidSpec(format!(
                                "internal: keys of {path} vanished from the Secret"
                            )));
                        }
                    }
                }
            };
            render_sources.push(RenderSource {
                path,
                version: *version,
                mappings,
                value,
            });
        }
        let owns_all_data = policy != CreationPolicy::Merge;
        let secret_type = owns_all_data.then_some(ts.spec.target.r#type);
        let rendered = render_data(&render_sources, secret_type)?;
        let hash = data_hash(
            &ctx.hash_key,
            secret_type.map(SecretType::as_str),
            rendered.data.iter(),
        );
        let owner_reference = (ts.spec.target.deletion_policy == DeletionPolicy::Delete)
            .then(|| ts.controller_owner_ref(&()))
            .flatten()
            .map(|r| OwnerReference {
                block_owner_deletion: None,
                ..r
            });
        let target = TargetSettings {
            name: &spec.target_name,
            namespace: &namespace,
            owner_name: &ts.name_any(),
            owner_uid: ts.metadata.uid.as_deref().unwrap_or_default(),
            owner_generation: ts.metadata.generation.unwrap_or_default(),
            owner_reference,
            secret_type,
            labels: &ts.spec.target.labels,
            annotations: &ts.spec.target.annotations,
            immutable: ts.spec.target.immutable,
            deletion_policy: ts.spec.target.deletion_policy,
            creation_policy: policy,
        };
        let mut desired_secret = render_secret(&target, &rendered, &hash);

        // Write, unless the Secret already is exactly this.
        let same_data = intact
            && self.existing.is_some_and(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DATA_HASH_ANNOTATION))
                    == Some(&hash)
            });
        let same_metadata = self
            .existing
            .is_some_and(|s| metadata_matches(s, &desired_secret));
        let remove = self
            .existing
            .map(|s| keys_to_remove(s, &rendered.data, policy, self.recorded))
            .unwrap_or_default();
        let write = plan_write(self.existing, same_data && same_metadata, remove);
        if write != Write::None
            && let Some(existing) = self.existing
            && existing.immutable == Some(true)
            && !same_data
        {
            return Err(Error::TargetImmutable {
                name: spec.target_name.clone(),
            });
        }
        let existing_rv = self
            .existing
            .and_then(|s| s.metadata.resource_version.clone());
        let written = match &write {
            Write::None => None,
            Write::Create => {
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                Some(secrets.create(&params, &desired_secret).await?)
            }
            Write::Apply => {
                desired_secret.metadata.resource_version = existing_rv.clone();
                Some(
                    secrets
                        .patch(
                            &spec.target_name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&desired_secret),
                        )
                        .await?,
                )
            }
            Write::ReplaceKeys(remove) => {
                let patch = replace_keys_patch(
                    &desired_secret,
                    self.existing.expect("planned on an existing Secret"),
                    remove,
                );
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                Some(
                    secrets
                        .patch(&spec.target_name, &params, &Patch::Merge(&patch))
                        .await?,
                )
            }
        };
        let (resource_version, secret_uid) = match &written {
            Some(s) => (s.metadata.resource_version.clone(), s.metadata.uid.clone()),
            None => (
                existing_rv,
                self.existing.and_then(|s| s.metadata.uid.clone()),
            ),
        };
        if written.is_some() {
            let was_synced = ts.status.as_ref().is_some_and(|s| {
                s.observed_generation == ts.metadata.generation
                    && s.synced_versions == *self.desired
                    && status::ready_reason(Some(s)).is_some_and(|(ready, _)| ready == "True")
            });
            let (reason, note) = write_event(
                self.existing.is_some(),
                self.target,
                was_synced,
                &spec.target_name,
                policy,
            );
            info!(secret = %spec.target_name, reason, "wrote Secret");
            publish(ctx, ts, EventType::Normal, reason, note).await;
        }
        if let Some(rv) = resource_version {
            ctx.verified
                .lock()
                .expect("verified lock")
                .insert((namespace, spec.target_name.clone()), rv);
        }
        Ok(SyncOutcome {
            synced_versions: self.desired.clone(),
            kms_key,
            secret_uid,
            wrote: written.is_some(),
        })
    }
}

/// How each path found under a prefix maps to keys.
fn prefix_mappings(spec: &ValidatedSpec, metas: &SourceMetas) -> BTreeMap<String, KeyMapping> {
    metas
        .keys()
        .filter(|path| !spec.paths.contains_key(*path))
        .filter_map(|path| {
            spec.prefixes
                .iter()
                .find(|p| path.starts_with(p.as_str()))
                .map(|prefix| {
                    (
                        path.clone(),
                        KeyMapping::UnderPrefix {
                            relative_key: prefix_key(prefix, path),
                        },
                    )
                })
        })
        .collect()
}

/// A JSON merge patch carrying the whole desired state plus the removal of `remove`, guarded by
/// the resourceVersion just read. Owner references of others are kept.
fn replace_keys_patch(desired: &Secret, existing: &Secret, remove: &[String]) -> serde_json::Value {
    let mut patch = serde_json::to_value(desired).expect("a Secret serializes");
    patch["metadata"]["resourceVersion"] = json!(existing.metadata.resource_version);
    match &desired.metadata.owner_references {
        Some(ours) => {
            let mut references: Vec<OwnerReference> = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| ours.iter().all(|o| o.uid != r.uid))
                .cloned()
                .collect();
            references.extend(ours.iter().cloned());
            patch["metadata"]["ownerReferences"] = json!(references);
        }
        None => {
            if let Some(metadata) = patch["metadata"].as_object_mut() {
                metadata.remove("ownerReferences");
            }
        }
    }
    if !patch["data"].is_object() {
        patch["data"] = json!({});
    }
    for key in remove {
        patch["data"][key] = serde_json::Value::Null;
    }
    patch
}

/// Resolves every source path to its metadata (and pin) from shared listings; paths a listing
/// does not show are looked up directly to tell "not found" from "not permitted".
async fn resolve_sources(
    spec: &ValidatedSpec,
    ctx: &Context,
    max_age: Duration,
) -> Result<BTreeMap<String, (SourceMeta, Option<u64>)>> {
    let mut groups: BTreeSet<String> = spec
        .paths
        .keys()
        .map(|p| parent_prefix(p).to_string())
        .collect();
    groups.extend(spec.prefixes.iter().cloned());
    let listings = join_all(groups.iter().map(|prefix| async move {
        (
            prefix.clone(),
            ctx.sources.listing(&spec.region, prefix, max_age).await,
        )
    }))
    .await;
    let mut by_prefix = BTreeMap::new();
    for (prefix, listing) in listings {
        by_prefix.insert(prefix, listing?);
    }
    let mut metas = BTreeMap::new();
    for (path, source) in &spec.paths {
        let listed = by_prefix
            .get(parent_prefix(path))
            .and_then(|l| l.secrets.get(path).cloned());
        let meta = match listed {
            Some(meta) => meta,
            None => ctx.sources.metadata(&spec.region, path).await?,
        };
        metas.insert(path.clone(), (meta, source.version));
    }
    for prefix in &spec.prefixes {
        if let Some(listing) = by_prefix.get(prefix) {
            for (path, meta) in &listing.secrets {
                if path.starts_with(prefix.as_str()) && !metas.contains_key(path) {
                    metas.insert(path.clone(), (meta.clone(), None));
                }
            }
        }
    }
    Ok(metas)
}

/// Refuses sources bound to another key than the spec requires, or to a key that is not active.
fn check_keys(
    ts: &ThalassaSecret,
    metas: &BTreeMap<String, (SourceMeta, Option<u64>)>,
) -> Result<()> {
    for (path, (meta, _)) in metas {
        if let (Some(required), Some(actual)) = (&ts.spec.kms_key_identity, &meta.kms_key_identity)
            && required != actual
        {
            return Err(Error::KmsKeyMismatch {
                path: path.clone(),
                expected: required.clone(),
                actual: actual.clone(),
            });
        }
        if let Some(status) = &meta.kms_key_status
            && *status != KmsKeyStatus::Active
        {
            return Err(Error::KmsKeyNotActive {
                path: path.clone(),
                key: meta.kms_key_identity.clone().unwrap_or_default(),
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

/// True when the existing Secret already carries every label, annotation and owner reference the
/// desired one has.
fn metadata_matches(existing: &Secret, desired: &Secret) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owner_ok = match &desired.metadata.owner_references {
        Some(want) => want.iter().all(|w| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|h| h.uid == w.uid)
        }),
        None => true,
    };
    contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
        && owner_ok
        && (desired.type_.is_none() || existing.type_ == desired.type_)
        && (desired.immutable.is_none() || existing.immutable == desired.immutable)
}

/// Computes the next status and writes it when it differs; publishes an Event when Ready flips.
async fn write_status(
    ts: &ThalassaSecret,
    ctx: &Context,
    validated: Option<&ValidatedSpec>,
    result: &Result<SyncOutcome>,
    prerequisites: &Prerequisites,
) -> Result<()> {
    let old = ts.status.as_ref();
    let now = status::now();
    let previous_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let ready = match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    let conditions = status::next_conditions(
        previous_conditions,
        prerequisites,
        ready,
        ts.metadata.generation,
        &now,
    );
    ctx.metrics.set_conditions(
        &ts.namespace().unwrap_or_default(),
        &ts.name_any(),
        conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())),
    );
    let mut next = old.cloned().unwrap_or_default();
    next.conditions = conditions;
    next.observed_generation = ts.metadata.generation;
    if let Some(v) = validated {
        next.secret_name = Some(v.target_name.clone());
    }
    if let Ok(outcome) = result {
        let versions_changed = next.synced_versions != outcome.synced_versions;
        if outcome.wrote || versions_changed || next.last_sync_time.is_none() {
            next.last_sync_time = Some(now.clone());
        }
        next.synced_versions = outcome.synced_versions.clone();
        if outcome.secret_uid.is_some() {
            next.secret_uid = outcome.secret_uid.clone();
        }
        if let Some((identity, version)) = &outcome.kms_key {
            next.kms_key_identity = Some(identity.clone());
            next.kms_key_version = Some(version.clone());
        }
        next.last_check_time = Some(now.clone());
    }
    if !status::needs_write(old, &next, CHECK_TIME_REFRESH) {
        return Ok(());
    }
    let api: Api<ThalassaSecret> =
        Api::namespaced(ctx.client.clone(), &ts.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": ThalassaSecret::api_version(&()),
        "kind": ThalassaSecret::kind(&()),
        "status": next,
    });
    api.patch_status(
        &ts.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let before = status::ready_reason(old);
    let after = status::ready_reason(Some(&next));
    if before != after
        && let Some((_, reason)) = after
    {
        let (event_type, note) = match result {
            Ok(_) => (
                EventType::Normal,
                "the Secret holds the current version of every source".to_string(),
            ),
            Err(e) => (EventType::Warning, e.to_string()),
        };
        publish(ctx, ts, event_type, &reason, note).await;
    }
    Ok(())
}

async fn publish(ctx: &Context, ts: &ThalassaSecret, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ts.object_ref(&())).await {
        warn!(error = %e, "failed to publish event");
    }
}

/// Maps a managed Secret to the `ThalassaSecret` named in its owner annotation.
fn owner_of(secret: PartialObjectMeta<Secret>) -> Option<ObjectRef<ThalassaSecret>> {
    let namespace = secret.metadata.namespace.as_deref()?;
    let owner = secret
        .metadata
        .annotations
        .as_ref()?
        .get(OWNER_ANNOTATION)?;
    Some(ObjectRef::new(owner).within(namespace))
}

/// Drops what the operator never reads from cached objects (managedFields and kubectl's
/// last-applied copy), which would otherwise dominate memory at scale.
fn strip_cached_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Tracks the first complete listing of each watch, to report readiness.
struct SyncedWatches {
    readiness: Readiness,
    secrets: AtomicBool,
    resources: AtomicBool,
}

impl SyncedWatches {
    fn observe<K>(&self, event: &watcher::Event<K>, flag: impl Fn(&Self) -> &AtomicBool) {
        if matches!(event, watcher::Event::InitDone) {
            flag(self).store(true, Ordering::SeqCst);
            if self.secrets.load(Ordering::SeqCst)
                && self.resources.load(Ordering::SeqCst)
                && !self.readiness.get()
            {
                self.readiness.set(true);
                info!("caches synced; ready");
            }
        }
    }
}

/// Everything `run` needs besides the clients.
pub struct RunSettings {
    /// Data-hash key.
    pub hash_key: HashKey,
    /// Event reporter identity.
    pub reporter: Reporter,
    /// Metrics shared with the HTTP server and the Thalassa client.
    pub metrics: Arc<Metrics>,
    /// Set once the watches have listed everything.
    pub readiness: Readiness,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    thalassa: thalassa::Client,
    settings: RunSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let RunSettings {
        hash_key,
        reporter,
        metrics,
        readiness,
    } = settings;
    let (resources, secrets_api): (Api<ThalassaSecret>, Api<PartialObjectMeta<Secret>>) =
        match &config.watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let (secret_store, secret_writer) = reflector::store();
    let (resource_store, resource_writer) = reflector::store();
    let concurrency = config.concurrency;
    let ctx = Arc::new(Context::new(
        client,
        config,
        thalassa,
        hash_key,
        secret_store,
        reporter,
        metrics.clone(),
    ));
    // Ready once both watches have listed everything (the caches are synced). Seen on the
    // streams themselves: `Store::wait_until_ready` wakes only one waiter, and the controller
    // already waits on the resource store.
    let synced = Arc::new(SyncedWatches {
        readiness,
        secrets: AtomicBool::new(false),
        resources: AtomicBool::new(false),
    });
    let secrets_synced = synced.clone();
    let secrets_ctx = ctx.clone();
    let secret_stream = reflector(
        secret_writer,
        watcher(
            secrets_api,
            watcher::Config::default().labels(MANAGED_SELECTOR),
        )
        .modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| {
        secrets_synced.observe(event, |s| &s.secrets);
        if matches!(event, watcher::Event::InitDone) {
            // Reconciles wait for this: a resource whose Secret is not in the cache yet would
            // look new and reveal every source.
            secrets_ctx.secrets_synced.send_replace(true);
        }
    })
    .default_backoff()
    .touched_objects();

    let resources_synced = synced.clone();
    // Status writes bump resourceVersion but not generation: filtering on generation (and
    // annotations) keeps our own status patches from re-triggering reconciles.
    let resource_stream = reflector(
        resource_writer,
        watcher(resources, watcher::Config::default().any_semantic()).modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| resources_synced.observe(event, |s| &s.resources))
    .default_backoff()
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::annotations),
        Default::default(),
    );

    // State of deleted resources is dropped (deletions do not reach the reconciler).
    let prune_store = resource_store.clone();
    let prune_ctx = ctx.clone();
    let prune_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            prune_ctx.metrics.retain_resources(|ns, name| {
                prune_store.get(&ObjectRef::new(name).within(ns)).is_some()
            });
            prune_ctx.retain_resources(|key| prune_store.get(key).is_some());
        }
    });

    Controller::for_stream(resource_stream, resource_store)
        .watches_stream(secret_stream, owner_of)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile loop error");
            }
        })
        .await;
    prune_task.abort();
}

/// The key in a data-hash key Secret, when it is usable (at least 32 bytes).
fn usable_hash_key(secret: &Secret) -> Option<Vec<u8>> {
    let key = secret.data.as_ref()?.get("key")?;
    (key.0.len() >= 32).then(|| key.0.clone())
}

/// Reads the data-hash key from its Secret, creating the Secret with 32 random bytes when missing.
/// A malformed key Secret (no `key`, or fewer than 32 bytes) is replaced with a new key: every
/// managed Secret then fails its hash check once and is read again, which is safe, where
/// refusing to start would be a crash loop.
pub async fn load_or_create_hash_key(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<HashKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let field_manager = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    // Each round either returns or lost a race with another replica (409) and reads again.
    for _ in 0..5 {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill(&mut bytes[..]);
        let data = BTreeMap::from([("key".to_string(), k8s_openapi::ByteString(bytes.clone()))]);
        let written = match api.get_opt(name).await? {
            Some(existing) => {
                if let Some(key) = usable_hash_key(&existing) {
                    return Ok(HashKey::new(key));
                }
                warn!(
                    secret = %format!("{namespace}/{name}"),
                    "the data-hash key Secret has no usable data.key (32 bytes or more); replacing it with a new key"
                );
                let replacement = Secret {
                    data: Some(data),
                    string_data: None,
                    ..existing
                };
                api.replace(name, &field_manager, &replacement).await
            }
            None => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&field_manager, &secret).await
            }
        };
        match written {
            Ok(_) => return Ok(HashKey::new(bytes)),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::InvalidSpec(format!(
        "the data-hash key Secret {namespace}/{name} kept changing while it was being read; delete it and restart the operator"
    )))
}
