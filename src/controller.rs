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
    api::{PartialObjectMeta, Patch, PatchParams},
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
        OWNER_ANNOTATION, SecretType, ThalassaSecret,
    },
    error::{Error, Result},
    metrics::Metrics,
    render::{
        self, HashKey, KeyMapping, RenderSource, SourceValue, TargetSettings, data_hash, is_intact,
        is_owned_by, parse_sources, prefix_key, render_data, render_secret, reuse_keys,
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
            periodic_lane: Semaphore::new(periodic_slots),
            metrics,
        }
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
                // The same rules as a browse path (characters, length, segments), plus the
                // trailing `/` the CRD requires of a prefix.
                thalassa::validate_browse_path(prefix)
                    .map_err(|e| Error::InvalidSpec(format!("dataFrom[{i}].pathPrefix: {e}")))?;
                if !prefix.ends_with('/') {
                    return Err(Error::InvalidSpec(format!(
                        "dataFrom[{i}].pathPrefix must end with '/'"
                    )));
                }
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
    Ok(ValidatedSpec {
        region: spec
            .region
            .clone()
            .unwrap_or_else(|| config.default_region.clone()),
        refresh_interval,
        target_name: spec.target.name.clone().unwrap_or_else(|| ts.name_any()),
        paths,
        prefixes,
    })
}

/// What a successful sync produced, for status.
#[derive(Debug, Default)]
struct SyncOutcome {
    synced_versions: BTreeMap<String, u64>,
    kms_key: Option<(String, String)>,
    wrote: bool,
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
    let mut prerequisites = Prerequisites::default();
    let validated = validate(&ts, &ctx.config);
    // What the Secret (as last seen by the watch) says it reflects. A Secret written for another
    // generation, or none at all, makes this a new or edited resource.
    let written = validated.as_ref().ok().and_then(|v| {
        let namespace = ts.namespace().unwrap_or_default();
        ctx.secrets
            .get(&ObjectRef::new(&v.target_name).within(&namespace))
    });
    let spec_changed = written
        .as_ref()
        .is_none_or(|m| render::written_generation(&m.metadata) != ts.metadata.generation);
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
            ctx.failures
                .lock()
                .expect("failures lock")
                .remove(&ObjectRef::from_obj(&*ts));
            // Half the interval, because a shared listing may already be up to half an interval
            // old: a stored version then reaches the Secret within one interval.
            Ok(Action::requeue(jitter(refresh / 2)))
        }
        Err(e) => Err(e),
    }
}

/// Decides what to do after a failed reconcile: wait for a spec change, or retry with exponential
/// backoff capped at the refresh interval (and never sooner than a 429's `Retry-After`).
pub fn error_policy(ts: Arc<ThalassaSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        reason = error.reason(),
        error = %error,
        "sync failed"
    );
    if error.needs_spec_change() {
        return Action::await_change();
    }
    let refresh = ts
        .spec
        .refresh_interval
        .as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(ctx.config.default_refresh_interval);
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

/// Checks sources, observes the Secret, reveals what changed, renders and applies.
async fn sync(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    written: Option<&PartialObjectMeta<Secret>>,
    spec_changed: bool,
    prerequisites: &mut Prerequisites,
) -> Result<SyncOutcome> {
    let namespace = ts.namespace().unwrap_or_default();
    let max_age = spec.refresh_interval / 2;

    // 1. The KMS summary: the kms gate and the region's backend (cached, shared). A summary the
    // credentials may not read does not block the sync; outages and throttling do.
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
                // A region the summary does not know: the listing below answers with a definite
                // RegionNotFound instead of a misleading "KMS unavailable".
                None => {}
            }
        }
    }

    // 2. Current versions from shared listings (one per directory or prefix).
    let metas = resolve_sources(spec, ctx, max_age).await?;
    prerequisites.listing_succeeded();
    check_keys(ts, &metas)?;
    prerequisites.kms_key = Observed::ok(
        reasons::ACTIVE,
        "every source is bound to an active KMS key",
    );
    let desired: BTreeMap<String, u64> = metas
        .iter()
        .map(|(path, (meta, pinned))| (path.clone(), pinned.unwrap_or(meta.current_version)))
        .collect();

    // 3. The target Secret: fetched in full only when something may have changed.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = (namespace.clone(), spec.target_name.clone());
    let written_versions: BTreeMap<String, u64> = written
        .map(|m| {
            parse_sources(&m.metadata)
                .into_iter()
                .map(|(p, r)| (p, r.version))
                .collect()
        })
        .unwrap_or_default();
    let cached_rv = written.and_then(|m| m.metadata.resource_version.clone());
    let verified_rv = ctx
        .verified
        .lock()
        .expect("verified lock")
        .get(&key)
        .cloned();
    let unchanged = !spec_changed
        && desired == written_versions
        && cached_rv.is_some()
        && cached_rv == verified_rv;
    if unchanged {
        debug!("sources and Secret unchanged; nothing to read");
        return Ok(SyncOutcome {
            synced_versions: desired,
            kms_key: None,
            wrote: false,
        });
    }
    let existing = secrets.get_opt(&spec.target_name).await?;
    let policy = ts.spec.target.creation_policy;
    let owned = existing
        .as_ref()
        .is_some_and(|s| is_owned_by(s, &ts.name_any()));
    if let Some(existing) = &existing
        && !owned
    {
        let managed_by_other_resource = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNER_ANNOTATION))
            .is_some();
        if policy == CreationPolicy::Owner || managed_by_other_resource {
            return Err(Error::TargetConflict {
                name: spec.target_name.clone(),
            });
        }
    }
    let manage_type = policy != CreationPolicy::Merge;
    let intact = owned
        && existing
            .as_ref()
            .is_some_and(|s| is_intact(s, &ctx.hash_key, manage_type));

    // 4. Reveal only sources whose version changed (or everything after a spec change or drift).
    let recorded = existing
        .as_ref()
        .map(|s| parse_sources(&s.metadata))
        .unwrap_or_default();
    let spec_changed = spec_changed
        || existing
            .as_ref()
            .is_some_and(|s| render::written_generation(&s.metadata) != ts.metadata.generation);
    let mut to_reveal = Vec::new();
    for (path, version) in &desired {
        let reusable =
            !spec_changed && intact && recorded.get(path).is_some_and(|r| r.version == *version);
        if !reusable {
            to_reveal.push((path.clone(), *version));
        }
    }
    let revealed = join_all(to_reveal.iter().map(|(path, version)| {
        let pinned = metas.get(path).and_then(|(_, pinned)| *pinned);
        // A followed path is read at the version the listing reported, so a put landing between
        // listing and reveal is picked up by the next check, not half-applied now.
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

    // 5. Render (pure).
    let prefix_mappings: BTreeMap<String, KeyMapping> = metas
        .iter()
        .filter(|(path, _)| !spec.paths.contains_key(*path))
        .filter_map(|(path, _)| {
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
        .collect();
    let mut render_sources = Vec::new();
    for (path, version) in &desired {
        let mappings: Vec<&KeyMapping> = match spec.paths.get(path) {
            Some(source) => source.mappings.iter().collect(),
            None => prefix_mappings.get(path).into_iter().collect(),
        };
        let value = match values.get(path) {
            Some(secret) => SourceValue::Revealed(&secret.value),
            None => {
                let keys = recorded
                    .get(path)
                    .map(|r| r.keys.clone())
                    .unwrap_or_default();
                let existing = existing.as_ref().expect("reuse implies an existing Secret");
                match reuse_keys(existing, &keys) {
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
    let secret_type = manage_type.then_some(ts.spec.target.r#type);
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
        owner_generation: ts.metadata.generation.unwrap_or_default(),
        owner_reference,
        secret_type,
        labels: &ts.spec.target.labels,
        annotations: &ts.spec.target.annotations,
        immutable: ts.spec.target.immutable,
        deletion_policy: ts.spec.target.deletion_policy,
        creation_policy: policy,
    };
    let desired_secret = render_secret(&target, &rendered, &hash);

    // 6. Apply, unless the Secret already is exactly this.
    let same_data = owned
        && existing.as_ref().is_some_and(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DATA_HASH_ANNOTATION))
                == Some(&hash)
                && intact
        });
    let same_metadata = existing
        .as_ref()
        .is_some_and(|s| metadata_matches(s, &desired_secret));
    let mut wrote = false;
    let applied_rv = if same_data && same_metadata {
        existing
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone())
    } else {
        if let Some(existing) = &existing
            && existing.immutable == Some(true)
            && !same_data
        {
            return Err(Error::TargetImmutable {
                name: spec.target_name.clone(),
            });
        }
        if let Some(existing) = &existing
            && policy == CreationPolicy::Adopt
            && !owned
        {
            remove_foreign_keys(&secrets, existing, &rendered.data).await?;
        }
        let applied = secrets
            .patch(
                &spec.target_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired_secret),
            )
            .await?;
        wrote = true;
        let was_synced = !spec_changed && desired == written_versions;
        let (reason, note) = match (&existing, owned, intact) {
            (None, _, _) if was_synced => (
                "SecretRepaired",
                format!("Secret {} was deleted; recreated it", spec.target_name),
            ),
            (None, _, _) => (
                "SecretCreated",
                format!("created Secret {}", spec.target_name),
            ),
            (Some(_), true, false) if was_synced => (
                "SecretRepaired",
                format!(
                    "Secret {} was edited or incomplete; restored it",
                    spec.target_name
                ),
            ),
            (Some(_), false, _) => (
                "SecretAdopted",
                format!("took over Secret {} ({:?})", spec.target_name, policy),
            ),
            _ => (
                "SecretUpdated",
                format!("updated Secret {}", spec.target_name),
            ),
        };
        info!(secret = %spec.target_name, reason, "wrote Secret");
        publish(ctx, ts, EventType::Normal, reason, note).await;
        applied.metadata.resource_version
    };
    if let Some(rv) = applied_rv {
        ctx.verified.lock().expect("verified lock").insert(key, rv);
    }
    Ok(SyncOutcome {
        synced_versions: desired,
        kms_key,
        wrote,
    })
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

/// Adoption makes the Secret's data exactly what the spec renders: keys written by someone else
/// are removed once, before the first apply.
async fn remove_foreign_keys(
    secrets: &Api<Secret>,
    existing: &Secret,
    ours: &BTreeMap<String, k8s_openapi::ByteString>,
) -> Result<()> {
    let foreign: serde_json::Map<String, serde_json::Value> = existing
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| !ours.contains_key(*k))
        .map(|(k, _)| (k.clone(), serde_json::Value::Null))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let name = existing.name_any();
    secrets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": foreign })),
        )
        .await?;
    Ok(())
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
    // Ready once both watches have listed everything (the caches are synced). Seen on the
    // streams themselves: `Store::wait_until_ready` wakes only one waiter, and the controller
    // already waits on the resource store.
    let synced = Arc::new(SyncedWatches {
        readiness,
        secrets: AtomicBool::new(false),
        resources: AtomicBool::new(false),
    });
    let (secret_store, secret_writer) = reflector::store();
    let secrets_synced = synced.clone();
    let secret_stream = reflector(
        secret_writer,
        watcher(
            secrets_api,
            watcher::Config::default().labels(MANAGED_SELECTOR),
        )
        .modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| secrets_synced.observe(event, |s| &s.secrets))
    .default_backoff()
    .touched_objects();

    let (resource_store, resource_writer) = reflector::store();
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

    // Metrics of deleted resources are dropped (deletions do not reach the reconciler).
    let prune_store = resource_store.clone();
    let prune_metrics = metrics.clone();
    let prune_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            prune_metrics.retain_resources(|ns, name| {
                prune_store.get(&ObjectRef::new(name).within(ns)).is_some()
            });
        }
    });

    let concurrency = config.concurrency;
    let ctx = Arc::new(Context::new(
        client,
        config,
        thalassa,
        hash_key,
        secret_store,
        reporter,
        metrics,
    ));
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

/// Reads the data-hash key from its Secret, creating the Secret with 32 random bytes when missing.
pub async fn load_or_create_hash_key(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<HashKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(name).await?
        && let Some(key) = existing.data.as_ref().and_then(|d| d.get("key"))
        && key.0.len() >= 32
    {
        return Ok(HashKey::new(key.0.clone()));
    }
    let mut bytes = vec![0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "key".to_string(),
            k8s_openapi::ByteString(bytes.clone()),
        )])),
        ..Default::default()
    };
    match api.create(&Default::default(), &secret).await {
        Ok(_) => Ok(HashKey::new(bytes)),
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(name).await?;
            let key = existing
                .data
                .and_then(|mut d| d.remove("key"))
                .ok_or_else(|| {
                    Error::InvalidSpec(format!("Secret {namespace}/{name} has no key"))
                })?;
            Ok(HashKey::new(key.0))
        }
        Err(e) => Err(e.into()),
    }
}
