//! Pure decisions of a reconcile: no API calls here, so every rule is a table test.
//!
//! Judge the KMS summary, pick the version to write per path, check the bound keys, classify the
//! target Secret (absent / owned / foreign, or refused), plan reveals, render the desired Secret,
//! decide the write, and name the Event.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
};
use kube::{Resource, ResourceExt, api::ObjectMeta, runtime::events::EventType};

use super::{CHECK_TIME_REFRESH, restart::RestartReport, validate::ValidatedSpec};
use crate::{
    crd::{
        CreationPolicy, DATA_HASH_ANNOTATION, DeletionPolicy, FORCE_SYNC_ANNOTATION,
        OWNER_UID_ANNOTATION, RefreshPolicy, SecretType, TEMPLATE_ANNOTATION, ThalassaSecret,
        ThalassaSecretStatus,
    },
    error::{Error, Result},
    render::{
        self, HashKey, KeyMapping, RenderSource, RenderedData, SourceRecord, SourceValue,
        TargetSettings, data_hash, is_intact, parse_sources, prefix_key, render_data,
        render_secret, reuse_keys,
    },
    sources::SourceMeta,
    status::{
        self, ConditionStatus, NewCondition, Observed, Prerequisites, Stamp, reasons,
        types::RESTART_TARGETS_READY,
    },
    thalassa::{KmsKeyStatus, KmsSummary, RevealedSecret},
};

/// Metadata (and pin) of every source path.
pub(super) type SourceMetas = BTreeMap<String, (SourceMeta, Option<u64>)>;

/// Judges the KMS summary for the spec's region: the kms gate must be on and the backend
/// available. A region the summary does not know is left to the listing, which answers with a
/// definite RegionNotFound instead of a misleading "KMS unavailable".
pub(super) fn judge_kms_summary(summary: &KmsSummary, region: &str) -> Result<Option<Observed>> {
    if !summary.feature_enabled {
        return Err(Error::KmsFeatureDisabled);
    }
    match summary.region(region) {
        Some(r) if r.kms_available => Ok(Observed::ok(
            reasons::AVAILABLE,
            format!("KMS is available in region {region}"),
        )),
        Some(_) => Err(Error::KmsBackendUnavailable {
            region: region.to_string(),
        }),
        None => Ok(None),
    }
}

/// The version to write per path: the pin, or the current version.
pub(super) fn desired_versions(metas: &SourceMetas) -> BTreeMap<String, u64> {
    metas
        .iter()
        .map(|(path, (meta, pinned))| (path.clone(), pinned.unwrap_or(meta.current_version)))
        .collect()
}

/// True when the Secret's annotations say it was written for this very resource (UID) at its
/// current generation, with values read through the same connection identity and rendered by
/// the same templates (a ConfigMap edit changes no generation).
pub(super) fn written_for_resource(
    metadata: &ObjectMeta,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
) -> bool {
    render::written_for(
        metadata,
        &ts.name_any(),
        ts.metadata.uid.as_deref().unwrap_or_default(),
        ts.metadata.generation,
    ) && render::written_with(metadata, &spec.connection)
        && render::parse_template(metadata).map(|r| r.hash)
            == spec.templates.as_ref().map(|t| t.hash.clone())
}

/// The value of the force-sync annotation when it asks for a sync not handled yet.
pub(super) fn force_sync_requested(ts: &ThalassaSecret) -> Option<&str> {
    let value = ts
        .metadata
        .annotations
        .as_ref()?
        .get(FORCE_SYNC_ANNOTATION)?;
    let handled = ts
        .status
        .as_ref()
        .and_then(|s| s.force_sync_handled.as_ref());
    (handled != Some(value)).then_some(value.as_str())
}

/// True when the refresh policy says this reconcile needs no Thalassa call at all: `OnChange`
/// while the Secret is exactly as this process last wrote or verified it and the spec did not
/// change; `CreatedOnce` once the Secret exists and is this resource's. (A force-sync is
/// handled before this is asked.)
pub(super) fn policy_skips_sync(
    ts: &ThalassaSecret,
    written: Option<&ObjectMeta>,
    spec_changed: bool,
    verified_rv: Option<&str>,
) -> bool {
    let Some(written) = written else {
        return false;
    };
    match ts.spec.refresh_policy {
        RefreshPolicy::Periodic => false,
        RefreshPolicy::OnChange => {
            !spec_changed
                && written.resource_version.is_some()
                && written.resource_version.as_deref() == verified_rv
        }
        RefreshPolicy::CreatedOnce => {
            render::named_owner(written) == Some(ts.name_any().as_str())
                && written
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OWNER_UID_ANNOTATION))
                    == ts.metadata.uid.as_ref()
        }
    }
}

/// How the existing Secret relates to this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetState {
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
pub(super) fn classify_target(
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
    let named_owner = render::named_owner(&existing.metadata);
    if named_owner.is_some_and(|owner| owner != our_name) {
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

/// What the existing Secret records about each source, when it is ours.
pub(super) fn recorded_sources(
    existing: Option<&Secret>,
    target: TargetState,
) -> BTreeMap<String, SourceRecord> {
    match (existing, target) {
        (Some(s), TargetState::Owned { .. }) => parse_sources(&s.metadata),
        _ => BTreeMap::new(),
    }
}

/// Unchanged sources may be copied from the Secret only when it is ours, intact, and was written
/// for this resource's current generation (same mapping) with the same connection identity (a
/// value read with one store's credentials is never served on another's say-so) and the same
/// templates (a ConfigMap edit does not change the generation), and no force-sync asks for
/// every value to be read again.
pub(super) fn reuse_allowed(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    existing: Option<&Secret>,
    target: TargetState,
) -> bool {
    target == (TargetState::Owned { intact: true })
        && spec.force.is_none()
        && existing.is_some_and(|s| written_for_resource(&s.metadata, ts, spec))
}

/// Which sources must be revealed: all of them after a spec change or an edit of the Secret,
/// otherwise only those whose version differs from the one the Secret records.
pub(super) fn plan_reveals(
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
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

/// Bytes of the existing Secret's data that the next write keeps as they are: the keys of the
/// paths wanted at a version already written that are not revealed again.
pub(super) fn reused_bytes(
    existing: Option<&Secret>,
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
    to_reveal: &[(String, u64)],
) -> usize {
    let Some(data) = existing.and_then(|s| s.data.as_ref()) else {
        return 0;
    };
    desired
        .keys()
        .filter(|path| !to_reveal.iter().any(|(p, _)| p == *path))
        .filter_map(|path| recorded.get(path))
        .flat_map(|record| &record.keys)
        .filter_map(|key| data.get(key))
        .map(|value| value.0.len())
        .sum()
}

/// Keys to delete from the existing Secret: with Owner and Adopt every key the render does not
/// produce; with Merge only keys this resource wrote before (from sources or templates).
pub(super) fn keys_to_remove(
    existing: &Secret,
    rendered: &BTreeMap<String, ByteString>,
    policy: CreationPolicy,
    recorded: &BTreeMap<String, SourceRecord>,
    templated: &[String],
) -> Vec<String> {
    let present = existing.data.iter().flatten().map(|(k, _)| k);
    let candidates: Vec<&String> = if policy == CreationPolicy::Merge {
        let ours: BTreeSet<&String> = recorded
            .values()
            .flat_map(|r| r.keys.iter())
            .chain(templated)
            .collect();
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
pub(super) enum Write {
    /// Already exactly this.
    None,
    /// No Secret yet: create it (a concurrent creator makes this fail instead of overwriting).
    Create,
    /// Server-side apply, on the resourceVersion just read.
    Apply,
    /// Keys must go: one merge patch with the whole new state and the removals, on the
    /// resourceVersion just read, so nothing is removed unless everything is written.
    ReplaceKeys(Removals),
}

/// What a merge patch removes: data keys, and labels and annotations templates wrote before but
/// no longer produce (a merge patch, unlike an apply, removes only what it names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Removals {
    /// Data keys.
    pub(super) keys: Vec<String>,
    /// Label keys.
    pub(super) labels: Vec<String>,
    /// Annotation keys.
    pub(super) annotations: Vec<String>,
}

impl Removals {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// The labels and annotations the existing Secret's template record says templates wrote, and
/// the record itself, that the desired Secret no longer has.
fn stale_template_metadata(existing: &Secret, desired: &Secret) -> (Vec<String>, Vec<String>) {
    let Some(record) = render::parse_template(&existing.metadata) else {
        return (Vec::new(), Vec::new());
    };
    let lacks = |map: &Option<BTreeMap<String, String>>, key: &String| {
        !map.as_ref().is_some_and(|m| m.contains_key(key))
    };
    let labels = record
        .labels
        .iter()
        .filter(|k| lacks(&desired.metadata.labels, k))
        .cloned()
        .collect();
    let mut annotations: Vec<String> = record
        .annotations
        .iter()
        .filter(|k| lacks(&desired.metadata.annotations, k))
        .cloned()
        .collect();
    if lacks(
        &desired.metadata.annotations,
        &TEMPLATE_ANNOTATION.to_string(),
    ) {
        annotations.push(TEMPLATE_ANNOTATION.to_string());
    }
    (labels, annotations)
}

/// The Event for a write (pure): repair of our own Secret, adoption, update, or creation of a
/// Secret this resource had before. None for the first sync of a new resource: its status says
/// it, and 10,000 first syncs should not cost 10,000 Events.
pub(super) fn write_event(
    existing: bool,
    target: TargetState,
    (was_synced, had_secret): (bool, bool),
    name: &str,
    policy: CreationPolicy,
) -> Option<(&'static str, String)> {
    Some(match (existing, target) {
        (false, _) if was_synced => (
            "SecretRepaired",
            format!("Secret {name} was deleted; recreated it"),
        ),
        (false, _) if !had_secret => return None,
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
    })
}
/// How each path found under a prefix maps to keys.
pub(super) fn prefix_mappings(
    spec: &ValidatedSpec,
    metas: &SourceMetas,
) -> BTreeMap<String, KeyMapping> {
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

/// The desired Secret and the facts the write decision needs. Holds values: never formatted.
pub(super) struct Desired {
    /// The Secret to write.
    pub(super) secret: Secret,
    /// Its keyed data hash.
    pub(super) hash: String,
    /// Rendered data (zeroized on drop).
    pub(super) rendered: RenderedData,
}

/// Maps the sources to keys: revealed values and, for unchanged sources, the keys copied from
/// the existing Secret. With templates these are the templates' inputs, so the Secret type's
/// rules are checked on the templates' output instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_sources(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    metas: &SourceMetas,
    desired: &BTreeMap<String, u64>,
    revealed: &BTreeMap<String, std::sync::Arc<RevealedSecret>>,
    existing: Option<&Secret>,
    recorded: &BTreeMap<String, SourceRecord>,
) -> Result<RenderedData> {
    let prefix_mappings = prefix_mappings(spec, metas);
    let mut sources = Vec::new();
    for (path, version) in desired {
        let mappings: Vec<&KeyMapping> = match spec.paths.get(path) {
            Some(source) => source.mappings.iter().collect(),
            None => prefix_mappings.get(path).into_iter().collect(),
        };
        let value = match revealed.get(path) {
            Some(secret) => SourceValue::Revealed(&secret.value),
            None => {
                let keys = recorded
                    .get(path)
                    .map(|r| r.keys.clone())
                    .unwrap_or_default();
                match existing.and_then(|s| reuse_keys(s, &keys)) {
                    Some(reused) => SourceValue::Reused(reused),
                    None => {
                        return Err(Error::Internal(format!(
                            "keys of {path} vanished from the Secret"
                        )));
                    }
                }
            }
        };
        sources.push(RenderSource {
            path,
            version: *version,
            mappings,
            value,
        });
    }
    if spec.templates.is_some() {
        // Template inputs: the Secret's rules apply to the templates' output.
        return render::map_sources(&sources);
    }
    render_data(&sources, managed_type(ts))
}

/// The Secret type the resource manages: none when it merges into a foreign Secret.
pub(super) fn managed_type(ts: &ThalassaSecret) -> Option<SecretType> {
    (ts.spec.target.creation_policy != CreationPolicy::Merge).then_some(ts.spec.target.r#type)
}

/// The desired Secret for rendered data: its keyed hash, ownership metadata and settings.
pub(super) fn desired_secret(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    hash_key: &HashKey,
    rendered: RenderedData,
) -> Desired {
    let secret_type = managed_type(ts);
    let hash = data_hash(
        hash_key,
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
    let namespace = ts.namespace().unwrap_or_default();
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
        creation_policy: ts.spec.target.creation_policy,
        connection: &spec.connection,
    };
    let secret = render_secret(&target, &rendered, &hash);
    Desired {
        secret,
        hash,
        rendered,
    }
}

/// With templates, the Secret is either kept whole (nothing revealed) or rendered from every
/// source: true when it may be kept, because reuse is allowed and it records exactly the desired
/// versions of exactly the desired paths.
pub(super) fn reuse_whole(
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
    reuse_allowed: bool,
) -> bool {
    reuse_allowed
        && desired.len() == recorded.len()
        && desired
            .iter()
            .all(|(path, version)| recorded.get(path).is_some_and(|r| r.version == *version))
}

/// Decides the write that brings the existing Secret to `desired`: none when it already is
/// exactly that, a create when there is none, one merge patch when keys must go, otherwise a
/// server-side apply. An immutable Secret whose data would change is refused.
pub(super) fn plan_write(
    ts: &ThalassaSecret,
    existing: Option<&Secret>,
    target: TargetState,
    desired: &Desired,
    recorded: &BTreeMap<String, SourceRecord>,
) -> Result<Write> {
    let Some(existing) = existing else {
        return Ok(Write::Create);
    };
    let same_data = target == (TargetState::Owned { intact: true })
        && existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DATA_HASH_ANNOTATION))
            == Some(&desired.hash);
    // What templates wrote before, when the Secret is ours (a foreign one's annotation is not
    // trusted to name keys or metadata to delete).
    let owned = matches!(target, TargetState::Owned { .. });
    let templated = owned
        .then(|| render::parse_template(&existing.metadata).map(|t| t.keys))
        .flatten()
        .unwrap_or_default();
    let (labels, annotations) = if owned {
        stale_template_metadata(existing, &desired.secret)
    } else {
        (Vec::new(), Vec::new())
    };
    let remove = Removals {
        keys: keys_to_remove(
            existing,
            &desired.rendered.data,
            ts.spec.target.creation_policy,
            recorded,
            &templated,
        ),
        labels,
        annotations,
    };
    let write = if !remove.is_empty() {
        Write::ReplaceKeys(remove)
    } else if same_data && metadata_matches(existing, &desired.secret) {
        Write::None
    } else {
        Write::Apply
    };
    if write != Write::None && existing.immutable == Some(true) && !same_data {
        return Err(Error::TargetImmutable {
            name: existing.name_any(),
        });
    }
    Ok(write)
}

/// Refuses sources bound to another key than the spec requires, or to a key that is not active.
pub(super) fn check_keys(
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
pub(super) fn metadata_matches(existing: &Secret, desired: &Secret) -> bool {
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

/// What a successful sync produced, for status.
#[derive(Debug, Default)]
pub(super) struct SyncOutcome {
    pub(super) synced_versions: BTreeMap<String, u64>,
    pub(super) kms_key: Option<(String, String)>,
    /// UID of the Secret now holding the data (the ownership record kept in status).
    pub(super) secret_uid: Option<String>,
    pub(super) wrote: bool,
    /// Keyed hash of the data the Secret now holds.
    pub(super) data_hash: Option<String>,
}

/// The next status and what to say about it.
#[derive(Debug)]
pub(super) struct StatusPlan {
    /// The next status; written only when [`Self::changed`].
    pub(super) status: ThalassaSecretStatus,
    /// Whether it differs from the stored one in more than a recent `lastCheckTime`.
    pub(super) changed: bool,
    /// The Event to publish when Ready flips: (type, reason, note).
    pub(super) event: Option<(EventType, String, String)>,
}

/// Records what the restart step did: the hash restarted for, and the `RestartTargetsReady`
/// condition (kept as it was when the targets were not looked up).
fn record_restart(
    next: &mut ThalassaSecretStatus,
    ts: &ThalassaSecret,
    restart: &RestartReport,
    stamp: &Stamp<'_>,
) {
    if ts.spec.rollout_restart_targets.is_empty() {
        next.restarted_for = None;
        next.restart_key_id = None;
        return;
    }
    if let Some((hash, key_id)) = &restart.restarted_for {
        next.restarted_for = Some(hash.clone());
        next.restart_key_id = Some(key_id.clone());
    }
    let condition = match restart_condition(ts, restart) {
        Some(judged) => Some(stamp.condition(judged)),
        None => RESTART_TARGETS_READY.find(stamp.previous).cloned(),
    };
    next.conditions.extend(condition);
}

/// The `RestartTargetsReady` condition the restart step's report asks for; `None` when the
/// targets were not looked up.
fn restart_condition(ts: &ThalassaSecret, restart: &RestartReport) -> Option<NewCondition> {
    let not_ready = |reason, message| {
        Some(NewCondition {
            type_: RESTART_TARGETS_READY,
            status: ConditionStatus::False,
            reason,
            message,
        })
    };
    match (&restart.failure, &restart.missing) {
        (Some(failure), _) => not_ready(
            reasons::RESTART_FAILED,
            format!("rollout restart not done, tried again in a minute: {failure}"),
        ),
        (None, Some(missing)) if !missing.is_empty() => not_ready(
            reasons::RESTART_TARGET_NOT_FOUND,
            format!(
                "{} not found in this namespace; restarted once it exists and the data changes",
                missing.join(", ")
            ),
        ),
        (None, _) if !restart.refused.is_empty() => not_ready(
            reasons::RESTART_NOT_ALLOWED,
            format!(
                "{} not restarted: a workload is restarted only when its annotation {} names this ThalassaSecret ({}) or is \"*\"; someone who may patch it can add that",
                restart.refused.join(", "),
                crate::crd::ALLOW_RESTART_ANNOTATION,
                ts.name_any()
            ),
        ),
        (None, _) if restart.deferred.is_some() => {
            let (targets, until) = restart.deferred.as_ref().expect("checked");
            not_ready(
                reasons::RESTART_RATE_LIMITED,
                format!(
                    "{} already restarted as often as the operator allows in its window (--restart-limit, --restart-window); restarted for the new data at {}",
                    targets.join(", "),
                    until.0
                ),
            )
        }
        (None, Some(_)) => Some(NewCondition {
            type_: RESTART_TARGETS_READY,
            status: ConditionStatus::True,
            reason: reasons::FOUND,
            message: "every rollout restart target exists".into(),
        }),
        (None, None) => None,
    }
}

/// Computes the next status from the stored one and this reconcile's outcome (no API calls).
pub(super) fn plan_status(
    ts: &ThalassaSecret,
    target_name: Option<&str>,
    result: Result<&SyncOutcome, &Error>,
    prerequisites: &Prerequisites,
    restart: &RestartReport,
    force_deferred: bool,
    now: &Time,
) -> StatusPlan {
    let old = ts.status.as_ref();
    let previous_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut next = old.cloned().unwrap_or_default();
    next.conditions = status::next_conditions(
        previous_conditions,
        prerequisites,
        result.map(|_| ()),
        ts.metadata.generation,
        now,
    );
    let stamp = Stamp {
        previous: previous_conditions,
        generation: ts.metadata.generation,
        now,
    };
    record_restart(&mut next, ts, restart, &stamp);
    next.observed_generation = ts.metadata.generation;
    // Handled once it synced, or failed in a way the same inputs repeat (retrying would not
    // help); a transient failure leaves it pending, so the retry is forced too. A value waiting
    // for `--force-sync-min-interval` stays pending.
    if let Some(value) = force_sync_requested(ts)
        && !force_deferred
        && result.map_or_else(Error::is_deterministic, |_| true)
    {
        next.force_sync_handled = Some(value.to_string());
    }
    if let Some(name) = target_name {
        next.secret_name = Some(name.to_string());
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
    let changed = status::needs_write(old, &next, CHECK_TIME_REFRESH);
    let before = status::ready_reason(old);
    let after = status::ready_reason(Some(&next));
    let flipped = before != after;
    let event = match after {
        // The first Ready of a new resource is said by its status, not by an Event.
        Some(_) if before.is_none() && result.is_ok() => None,
        Some((_, reason)) if changed && flipped => Some(match result {
            Ok(_) => (
                EventType::Normal,
                reason,
                "the Secret holds the current version of every source".to_string(),
            ),
            Err(e) => (EventType::Warning, reason, e.to_string()),
        }),
        _ => None,
    };
    StatusPlan {
        status: next,
        changed,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{base, key, secret};
    use crate::error::Reason;

    #[test]
    fn classify_target_covers_every_case() {
        let owner = base("Owner", "Opaque");
        let adopt = base("Adopt", "Opaque");
        let merge = base("Merge", "kubernetes.io/tls");
        let class = |ts: &ThalassaSecret, s: Option<&Secret>| {
            classify_target(ts, "app", s, &key()).map_err(|e| e.to_string())
        };
        assert_eq!(class(&owner, None), Ok(TargetState::Absent));
        // Ours by annotation (not intact: no hash).
        assert_eq!(
            class(
                &owner,
                Some(&secret("Opaque", Some("app"), "s1", &["password"]))
            ),
            Ok(TargetState::Owned { intact: false })
        );
        // Another resource's Secret, whatever the policy.
        for ts in [&owner, &adopt, &merge] {
            let err = class(ts, Some(&secret("Opaque", Some("other"), "s1", &[]))).unwrap_err();
            assert!(err.contains("not managed by this ThalassaSecret"), "{err}");
        }
        // Foreign: refused for Owner, adoptable for Adopt and Merge.
        let foreign = secret("Opaque", None, "s1", &["x"]);
        assert!(class(&owner, Some(&foreign)).is_err());
        assert_eq!(class(&adopt, Some(&foreign)), Ok(TargetState::Foreign));
        assert_eq!(class(&merge, Some(&foreign)), Ok(TargetState::Foreign));
        // A type the operator never writes.
        let token = secret(
            "kubernetes.io/service-account-token",
            None,
            "s1",
            &["token"],
        );
        for ts in [&owner, &adopt, &merge] {
            let err = class(ts, Some(&token)).unwrap_err();
            assert!(err.contains("never writes"), "{err}");
        }
        // A type change is refused for Adopt (types are immutable), ignored for Merge.
        let tls_wanted = base("Adopt", "kubernetes.io/tls");
        let err = class(&tls_wanted, Some(&foreign)).unwrap_err();
        assert!(err.contains("cannot change"), "{err}");
        // Ours by the UID recorded in status, with label and annotation stripped.
        let mut recorded = base("Owner", "Opaque");
        recorded.status = Some(crate::crd::ThalassaSecretStatus {
            secret_uid: Some("s1".into()),
            ..Default::default()
        });
        assert_eq!(
            class(&recorded, Some(&foreign)),
            Ok(TargetState::Owned { intact: false })
        );
        let other_uid = secret("Opaque", None, "s2", &["x"]);
        assert!(class(&recorded, Some(&other_uid)).is_err());
    }

    #[test]
    fn reveals_are_planned_from_recorded_versions() {
        let desired = BTreeMap::from([("/a".to_string(), 2), ("/b".to_string(), 5)]);
        let recorded = BTreeMap::from([
            (
                "/a".to_string(),
                SourceRecord {
                    version: 2,
                    keys: vec!["a".into()],
                },
            ),
            (
                "/b".to_string(),
                SourceRecord {
                    version: 4,
                    keys: vec!["b".into()],
                },
            ),
        ]);
        assert_eq!(
            plan_reveals(&desired, &recorded, true),
            vec![("/b".to_string(), 5)]
        );
        assert_eq!(plan_reveals(&desired, &recorded, false).len(), 2);
        assert_eq!(plan_reveals(&desired, &BTreeMap::new(), true).len(), 2);
    }

    #[test]
    fn keys_to_remove_depend_on_the_policy() {
        let existing = secret("Opaque", Some("app"), "s1", &["ours", "old", "theirs"]);
        let rendered = BTreeMap::from([("ours".to_string(), ByteString(b"v".to_vec()))]);
        let recorded = BTreeMap::from([(
            "/p".to_string(),
            SourceRecord {
                version: 1,
                keys: vec!["ours".into(), "old".into()],
            },
        )]);
        assert_eq!(
            keys_to_remove(&existing, &rendered, CreationPolicy::Owner, &recorded, &[]),
            vec!["old".to_string(), "theirs".to_string()]
        );
        assert_eq!(
            keys_to_remove(
                &existing,
                &rendered,
                CreationPolicy::Adopt,
                &BTreeMap::new(),
                &[]
            ),
            vec!["old".to_string(), "theirs".to_string()]
        );
        assert_eq!(
            keys_to_remove(&existing, &rendered, CreationPolicy::Merge, &recorded, &[]),
            vec!["old".to_string()],
            "Merge removes only keys it wrote"
        );
        assert_eq!(
            keys_to_remove(
                &existing,
                &rendered,
                CreationPolicy::Merge,
                &recorded,
                &["theirs".to_string()]
            ),
            vec!["old".to_string(), "theirs".to_string()],
            "Merge removes the keys its templates wrote too"
        );
    }

    /// Renders `base(policy)` reading `/a/b` as `value`, as if revealed.
    fn desired(ts: &ThalassaSecret, value: &str) -> (Desired, BTreeMap<String, u64>) {
        let spec = crate::controller::validate(ts, &crate::controller::fixtures::config()).unwrap();
        let meta = SourceMeta {
            current_version: 3,
            kms_key_identity: None,
            kms_key_status: None,
        };
        let metas: SourceMetas = BTreeMap::from([("/a/b".to_string(), (meta, None))]);
        let versions = desired_versions(&metas);
        let revealed = BTreeMap::from([(
            "/a/b".to_string(),
            std::sync::Arc::new(RevealedSecret {
                path: "/a/b".into(),
                version: 3,
                value: crate::thalassa::SecretValue::String(crate::thalassa::SecretBytes::new(
                    value.as_bytes().to_vec(),
                )),
                kms_key_identity: "k".into(),
                kms_key_version: "1".into(),
            }),
        )]);
        let rendered = render_sources(
            ts,
            &spec,
            &metas,
            &versions,
            &revealed,
            None,
            &BTreeMap::new(),
        )
        .unwrap();
        (desired_secret(ts, &spec, &key(), rendered), versions)
    }

    #[test]
    fn the_write_is_planned_without_io() {
        let ts = base("Owner", "Opaque");
        let (wanted, _) = desired(&ts, "v1");
        let none = BTreeMap::new();
        // No Secret: create.
        assert_eq!(
            plan_write(&ts, None, TargetState::Absent, &wanted, &none).unwrap(),
            Write::Create
        );
        // Exactly the rendered Secret, ours and intact: nothing to write.
        let mut current = wanted.secret.clone();
        current.metadata.uid = Some("s1".into());
        let recorded = parse_sources(&current.metadata);
        let intact = TargetState::Owned { intact: true };
        assert_eq!(
            plan_write(&ts, Some(&current), intact, &wanted, &recorded).unwrap(),
            Write::None
        );
        // New data: apply.
        let (newer, _) = desired(&ts, "v2");
        assert_eq!(
            plan_write(&ts, Some(&current), intact, &newer, &recorded).unwrap(),
            Write::Apply
        );
        // Edited (not intact): apply even with the same hash.
        let edited = TargetState::Owned { intact: false };
        assert_eq!(
            plan_write(&ts, Some(&current), edited, &wanted, &recorded).unwrap(),
            Write::Apply
        );
        // A label the spec wants is missing: apply.
        let mut unlabelled = current.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(
            plan_write(&ts, Some(&unlabelled), intact, &wanted, &recorded).unwrap(),
            Write::Apply
        );
        // An extra key: one merge patch that removes it.
        let mut injected = current.clone();
        injected
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), ByteString(b"x".to_vec()));
        assert_eq!(
            plan_write(&ts, Some(&injected), edited, &wanted, &recorded).unwrap(),
            Write::ReplaceKeys(Removals {
                keys: vec!["extra".into()],
                ..Removals::default()
            })
        );
        // Immutable and the data would change: refused, nothing written.
        let mut frozen = current.clone();
        frozen.immutable = Some(true);
        let err = plan_write(&ts, Some(&frozen), intact, &newer, &recorded).unwrap_err();
        assert_eq!(err.reason(), Reason::TargetImmutable);
        assert_eq!(
            plan_write(&ts, Some(&frozen), intact, &wanted, &recorded).unwrap(),
            Write::None
        );
    }

    #[test]
    fn the_kms_summary_is_judged_per_region() {
        let summary: KmsSummary = serde_json::from_value(serde_json::json!({
            "featureEnabled": true,
            "regions": [
                {"identity": "r1", "name": "NL 01", "slug": "nl-01", "kmsAvailable": true},
                {"identity": "r2", "name": "DE 01", "slug": "de-01", "kmsAvailable": false}
            ]
        }))
        .unwrap();
        assert!(judge_kms_summary(&summary, "nl-01").unwrap().unwrap().ok);
        assert_eq!(
            judge_kms_summary(&summary, "de-01").unwrap_err().reason(),
            Reason::KmsBackendUnavailable
        );
        assert!(judge_kms_summary(&summary, "xx-01").unwrap().is_none());
        let off = KmsSummary {
            feature_enabled: false,
            ..summary
        };
        assert_eq!(
            judge_kms_summary(&off, "nl-01").unwrap_err().reason(),
            Reason::KmsFeatureDisabled
        );
    }

    #[test]
    fn events_name_what_happened() {
        let owner = CreationPolicy::Owner;
        let reason = |existing, target, synced| {
            write_event(existing, target, (synced, true), "s", owner)
                .unwrap()
                .0
        };
        assert_eq!(
            write_event(false, TargetState::Absent, (false, false), "s", owner),
            None,
            "a first sync is said by the status alone"
        );
        assert_eq!(reason(false, TargetState::Absent, false), "SecretCreated");
        assert_eq!(reason(false, TargetState::Absent, true), "SecretRepaired");
        assert_eq!(
            reason(true, TargetState::Owned { intact: false }, true),
            "SecretRepaired"
        );
        assert_eq!(
            reason(true, TargetState::Owned { intact: true }, true),
            "SecretUpdated"
        );
        assert_eq!(reason(true, TargetState::Foreign, false), "SecretAdopted");
    }

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn condition(status: &ThalassaSecretStatus, type_: status::ConditionType) -> (&str, &str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.as_str(), c.reason.as_str())
    }

    /// `plan_status` for the resource's default target, with no restart targets.
    fn plan_for(
        ts: &ThalassaSecret,
        result: Result<&SyncOutcome, &Error>,
        learned: &Prerequisites,
        now: &Time,
    ) -> StatusPlan {
        plan_status(
            ts,
            Some("app"),
            result,
            learned,
            &RestartReport::default(),
            false,
            now,
        )
    }

    fn synced() -> SyncOutcome {
        SyncOutcome {
            synced_versions: BTreeMap::from([("/a/b".to_string(), 3)]),
            kms_key: Some(("kms-1".into(), "1".into())),
            secret_uid: Some("s1".into()),
            wrote: true,
            data_hash: Some("h1".into()),
        }
    }

    #[test]
    fn a_first_sync_writes_the_whole_status_and_says_so() {
        let ts = base("Owner", "Opaque");
        let learned = Prerequisites::learned(None, status::Reached::Revealed, "nl-01", None);
        let plan = plan_for(&ts, Ok(&synced()), &learned, &at(10));
        assert!(plan.changed);
        let s = &plan.status;
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.secret_name.as_deref(), Some("app"));
        assert_eq!(s.secret_uid.as_deref(), Some("s1"));
        assert_eq!(s.synced_versions, synced().synced_versions);
        assert_eq!(s.kms_key_identity.as_deref(), Some("kms-1"));
        assert_eq!(
            (s.last_sync_time.clone(), s.last_check_time.clone()),
            (Some(at(10)), Some(at(10)))
        );
        assert_eq!(condition(s, status::types::READY), ("True", "Synced"));
        assert_eq!(
            condition(s, status::types::RECONCILING),
            ("False", "Synced")
        );
        assert_eq!(condition(s, status::types::STALLED), ("False", "Synced"));
        assert_eq!(
            condition(s, status::types::KMS_KEY_ACTIVE),
            ("True", "Active")
        );
        assert!(plan.event.is_none(), "a first sync costs no Event");
    }

    #[test]
    fn an_unchanged_outcome_writes_nothing_and_emits_nothing() {
        let mut ts = base("Owner", "Opaque");
        // The first sync revealed; the checks after it only list and check keys (weaker
        // evidence of the same facts), which must not cost a second status write.
        let revealed = Prerequisites::learned(None, status::Reached::Revealed, "nl-01", None);
        let first = plan_for(&ts, Ok(&synced()), &revealed, &at(10));
        ts.status = Some(first.status);
        let learned = Prerequisites::learned(None, status::Reached::KeysChecked, "nl-01", None);
        let unchanged = SyncOutcome {
            wrote: false,
            kms_key: None,
            ..synced()
        };
        let again = plan_for(&ts, Ok(&unchanged), &learned, &at(70));
        assert!(
            !again.changed,
            "only lastCheckTime moved, by less than the refresh"
        );
        assert!(again.event.is_none());
        assert_eq!(again.status.last_sync_time, Some(at(10)));
        let later = plan_for(&ts, Ok(&unchanged), &learned, &at(10 + 600));
        assert!(
            later.changed && later.event.is_none(),
            "lastCheckTime refreshed quietly"
        );
    }

    #[test]
    fn a_failure_keeps_what_was_synced_and_says_who_can_fix_it() {
        let mut ts = base("Owner", "Opaque");
        let learned = Prerequisites::learned(None, status::Reached::Revealed, "nl-01", None);
        ts.status = Some(plan_for(&ts, Ok(&synced()), &learned, &at(10)).status);

        let outage = Error::KmsBackendUnavailable {
            region: "nl-01".into(),
        };
        let learned = Prerequisites::learned(None, status::Reached::Listed, "nl-01", Some(&outage));
        let plan = plan_for(&ts, Err(&outage), &learned, &at(20));
        let s = &plan.status;
        assert_eq!(s.synced_versions, synced().synced_versions, "kept");
        assert_eq!(s.last_sync_time, Some(at(10)));
        assert_eq!(
            s.last_check_time,
            Some(at(10)),
            "a failed check is no check"
        );
        assert_eq!(
            condition(s, status::types::READY),
            ("False", "KmsBackendUnavailable")
        );
        assert_eq!(
            condition(s, status::types::RECONCILING),
            ("True", "KmsBackendUnavailable")
        );
        assert_eq!(
            condition(s, status::types::STALLED),
            ("False", "KmsBackendUnavailable")
        );
        assert_eq!(
            condition(s, status::types::KMS_BACKEND_AVAILABLE),
            ("False", "Unavailable")
        );
        let (type_, reason, _) = plan.event.expect("Ready flipped");
        assert_eq!(
            (type_, reason.as_str()),
            (EventType::Warning, "KmsBackendUnavailable")
        );

        let gate = Error::KmsFeatureDisabled;
        let learned = Prerequisites::learned(None, status::Reached::Start, "nl-01", Some(&gate));
        let plan = plan_for(&ts, Err(&gate), &learned, &at(30));
        let s = &plan.status;
        assert_eq!(
            condition(s, status::types::STALLED),
            ("True", "KmsFeatureDisabled")
        );
        assert_eq!(
            condition(s, status::types::RECONCILING),
            ("False", "KmsFeatureDisabled")
        );
        assert_eq!(
            condition(s, status::types::KMS_FEATURE_ENABLED),
            ("False", "FeatureDisabled")
        );
        assert_eq!(
            condition(s, status::types::KMS_KEY_ACTIVE),
            ("True", "Active"),
            "kept"
        );
    }

    #[test]
    fn an_invalid_spec_stalls_and_names_no_secret() {
        let ts = base("Owner", "Opaque");
        let invalid = Error::InvalidSpec("refreshInterval: bad".into());
        let learned = Prerequisites::learned(None, status::Reached::Start, "", Some(&invalid));
        let plan = plan_status(
            &ts,
            None,
            Err(&invalid),
            &learned,
            &RestartReport::default(),
            false,
            &at(1),
        );
        let s = &plan.status;
        assert_eq!(s.secret_name, None);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            condition(s, status::types::STALLED),
            ("True", "InvalidSpec")
        );
        assert_eq!(
            condition(s, status::types::AUTHORIZED),
            ("Unknown", "NotChecked")
        );
    }

    #[test]
    fn values_read_with_one_identity_are_never_reused_under_another() {
        let ts = base("Owner", "Opaque");
        let (wanted, _) = desired(&ts, "v1");
        let mut written = wanted.secret.clone();
        written.metadata.uid = Some("s1".into());
        let intact = TargetState::Owned { intact: true };
        let mut spec =
            crate::controller::validate(&ts, &crate::controller::fixtures::config()).unwrap();
        assert!(
            reuse_allowed(&ts, &spec, Some(&written), intact),
            "same (default) connection"
        );
        spec.connection = "ThalassaSecretStore/uid-s/1".into();
        assert!(
            !reuse_allowed(&ts, &spec, Some(&written), intact),
            "the resource moved to a store: everything is read again with the store's identity"
        );
        assert!(!written_for_resource(&written.metadata, &ts, &spec));
    }

    #[test]
    fn a_force_sync_value_is_acted_on_once() {
        let mut ts = base("Owner", "Opaque");
        assert_eq!(force_sync_requested(&ts), None);
        ts.metadata.annotations = Some(BTreeMap::from([(
            FORCE_SYNC_ANNOTATION.to_string(),
            "1".to_string(),
        )]));
        assert_eq!(force_sync_requested(&ts), Some("1"));
        let plan = plan_status(
            &ts,
            Some("app"),
            Ok(&synced()),
            &Prerequisites::default(),
            &RestartReport::default(),
            false,
            &at(0),
        );
        assert_eq!(plan.status.force_sync_handled.as_deref(), Some("1"));
        ts.status = Some(plan.status);
        assert_eq!(force_sync_requested(&ts), None, "handled");
        ts.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(FORCE_SYNC_ANNOTATION.into(), "2".into());
        assert_eq!(force_sync_requested(&ts), Some("2"), "a new value");
        let deferred = plan_status(
            &ts,
            Some("app"),
            Ok(&synced()),
            &Prerequisites::default(),
            &RestartReport::default(),
            true,
            &at(1),
        );
        assert_eq!(
            deferred.status.force_sync_handled.as_deref(),
            Some("1"),
            "a value waiting for its interval stays pending"
        );
    }

    #[test]
    fn refresh_policies_decide_when_thalassa_is_not_called() {
        let written = |owner: &str, uid: &str, rv: &str| ObjectMeta {
            resource_version: Some(rv.into()),
            annotations: Some(BTreeMap::from([
                (crate::crd::OWNER_ANNOTATION.to_string(), owner.to_string()),
                (OWNER_UID_ANNOTATION.to_string(), uid.to_string()),
            ])),
            ..Default::default()
        };
        let mut ts = base("Owner", "Opaque");
        let ours = written("app", "uid-1", "5");
        let skips = |ts: &ThalassaSecret, w: Option<&ObjectMeta>, changed, rv| {
            policy_skips_sync(ts, w, changed, rv)
        };
        assert!(
            !skips(&ts, Some(&ours), false, Some("5")),
            "Periodic always checks"
        );
        ts.spec.refresh_policy = RefreshPolicy::OnChange;
        assert!(skips(&ts, Some(&ours), false, Some("5")), "nothing changed");
        assert!(
            !skips(&ts, Some(&ours), true, Some("5")),
            "the spec changed"
        );
        assert!(
            !skips(&ts, Some(&ours), false, Some("4")),
            "the Secret changed"
        );
        assert!(
            !skips(&ts, Some(&ours), false, None),
            "not verified since start"
        );
        assert!(!skips(&ts, None, false, None), "no Secret");
        ts.spec.refresh_policy = RefreshPolicy::CreatedOnce;
        assert!(skips(&ts, Some(&ours), true, None), "exists: never updated");
        assert!(!skips(&ts, None, false, None), "deleted: created again");
        let other = written("app", "uid-0", "5");
        assert!(
            !skips(&ts, Some(&other), false, None),
            "written for an earlier resource of the same name"
        );
    }

    #[test]
    fn restart_targets_get_their_condition_and_the_hash_restarted_for() {
        use crate::crd::{RestartTarget, WorkloadKind};
        use status::types::RESTART_TARGETS_READY as RESTART_TARGETS_FOUND;
        let mut ts = base("Owner", "Opaque");
        ts.spec.rollout_restart_targets = vec![RestartTarget {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        }];
        let learned = Prerequisites::default();
        let report = RestartReport {
            restarted_for: Some(("h1".into(), "k1".into())),
            missing: Some(vec!["Deployment web".into()]),
            ..RestartReport::default()
        };
        let plan = plan_status(
            &ts,
            Some("app"),
            Ok(&synced()),
            &learned,
            &report,
            false,
            &at(10),
        );
        assert_eq!(plan.status.restarted_for.as_deref(), Some("h1"));
        assert_eq!(
            condition(&plan.status, RESTART_TARGETS_FOUND),
            ("False", "RestartTargetNotFound")
        );
        ts.status = Some(plan.status);
        let kept = plan_for(&ts, Ok(&synced()), &learned, &at(20));
        assert_eq!(
            condition(&kept.status, RESTART_TARGETS_FOUND),
            ("False", "RestartTargetNotFound"),
            "not looked up: kept"
        );
        assert_eq!(kept.status.restarted_for.as_deref(), Some("h1"));
        ts.spec.rollout_restart_targets.clear();
        let none = plan_for(&ts, Ok(&synced()), &learned, &at(30));
        assert_eq!(none.status.restarted_for, None);
        assert!(
            !none
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == RESTART_TARGETS_FOUND)
        );
    }
}
