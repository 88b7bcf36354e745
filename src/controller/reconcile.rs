//! The reconcile driver: a short pipeline over the steps in [`validate`](super::validate) (no
//! API calls), [`resolve`](super::resolve) (reads Thalassa), [`plan`](super::plan) (no API calls)
//! and [`apply`](super::apply) (writes), plus `error_policy`.
//!
//! validate → KMS summary → versions from shared listings → key check → (current? or the same
//! failure as last time? stop) → prepare: read the Secret, classify it, look up vanished
//! sources, reveal what changed → write: render, write the Secret → plan the status from what
//! was learned (no I/O) → write it only if it changed → Event if Ready flipped. A failure
//! anywhere before the Secret write leaves the Secret exactly as it is; only the status says
//! what is wrong. Each step returns what it observed; how far the sync got ([`Reached`]) is all
//! the status needs to know about the prerequisites it proved.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::PartialObjectMeta,
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use rand::Rng;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    BACKOFF_BASE, Context, apply, connect, plan,
    plan::{SourceMetas, SyncOutcome, TargetState},
    resolve, restart,
    restart::RestartReport,
    validate::{Templates, ValidatedSpec, validate},
};
use crate::{
    crd::{CreationPolicy, DATA_HASH_ANNOTATION, RefreshPolicy, ThalassaSecret},
    error::{Error, Result},
    render,
    render::{RenderedData, SourceRecord, parse_sources},
    sources::SourceCache,
    status::{self, Observed, Prerequisites, Reached},
    template,
    thalassa::RevealedSecret,
};

/// How soon a reconcile that found its resource older than our last status write tries again.
const STALE_RETRY: Duration = Duration::from_millis(500);
/// How soon a reconcile that found its namespace's template turn taken tries again.
const TURN_RETRY: Duration = Duration::from_secs(1);

/// What a reconcile did: finished, or gave its slot back to wait for its namespace's turn to
/// check or render templates (nothing recorded, nothing counted as a failure).
enum Step {
    Done(Action),
    Queued,
}

/// A reconcile's claim on its namespace's turn to use the template sandbox
/// ([`template::TenantTurn`]): taken when a template must be compiled or rendered, kept until
/// the reconcile ends. Without it the reconcile does not wait: [`Error::TemplateTurnTaken`].
pub(super) struct RenderTurn {
    tenant: String,
    held: std::sync::Mutex<Option<template::TenantTurn>>,
}

impl RenderTurn {
    fn of(ts: &ThalassaSecret) -> RenderTurn {
        RenderTurn {
            tenant: ts.namespace().unwrap_or_default(),
            held: std::sync::Mutex::new(None),
        }
    }

    /// Takes the namespace's turn (at once, or not at all).
    fn take(&self) -> Result<()> {
        let mut held = self.held.lock().expect("turn lock");
        if held.is_none() {
            *held =
                Some(template::TenantTurn::try_take(&self.tenant).ok_or(Error::TemplateTurnTaken)?);
        }
        Ok(())
    }
}

/// The inputs a deterministic failure depended on. While they stay the same the failure is
/// reported again without revealing anything; any change (spec, a source version, the target
/// Secret) makes the next reconcile try again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    generation: Option<i64>,
    desired: BTreeMap<String, u64>,
    target_rv: Option<String>,
    /// Keyed hash of the resolved templates (a ConfigMap edit changes it, not the generation).
    templates: Option<String>,
    /// A force-sync value not handled yet (a new one tries again).
    force: Option<String>,
}

/// A deterministic failure and what it depended on.
pub(super) struct Rejection {
    attempt: Attempt,
    error: Arc<Error>,
}

/// When a resource turned away from its namespace's full lane is tried again if no released
/// slot woke it first (it normally is woken: see [`lanes`](super::lanes)).
const LANE_RETRY: Duration = Duration::from_secs(10);

/// Reconciles one `ThalassaSecret`.
pub async fn reconcile(ts: Arc<ThalassaSecret>, ctx: Arc<Context>) -> Result<Action> {
    // Without the managed-Secret cache every resource would look new and reveal everything.
    ctx.caches_synced().await;
    // A namespace over its share of the slots waits in its own queue, not in a slot.
    let Some(_slot) = ctx.lanes.enter(&ObjectRef::from_obj(&*ts)) else {
        ctx.metrics.reconcile_deferred();
        return Ok(Action::requeue(LANE_RETRY));
    };
    let span = info_span!(
        "reconcile",
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        generation = ts.metadata.generation.unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let result = reconcile_inner(ts, ctx).instrument(span).await;
    metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(|e| e.reason().as_str()),
    );
    result
}

async fn reconcile_inner(ts: Arc<ThalassaSecret>, ctx: Arc<Context>) -> Result<Action> {
    if ctx.is_stale(&ts) {
        // A status planned from an older copy than our own last status write would drop what
        // that write recorded (server-side apply removes omitted fields): wait for the watch.
        debug!("the cached resource predates our last status write; trying again shortly");
        return Ok(Action::requeue(STALE_RETRY));
    }
    let key = ObjectRef::from_obj(&*ts);
    let validated = validate(&ts, &ctx.config);
    // error_policy needs the interval (and whether the spec was valid) without parsing it again.
    let retry_cap = validated.as_ref().ok().map(|v| v.refresh_interval);
    match sync_and_report(&ts, &ctx, validated).await {
        Ok(Step::Done(action)) => {
            ctx.forget_failures(&key);
            Ok(action)
        }
        Ok(Step::Queued) => {
            debug!("the namespace's template turn is taken; trying again shortly");
            Ok(Action::requeue(jitter(TURN_RETRY)))
        }
        Err(e) => {
            ctx.note_retry_cap(&key, retry_cap);
            Err(e)
        }
    }
}

/// The resource's connection and its templates, read and compiled.
async fn connect_with_templates(
    ts: &ThalassaSecret,
    ctx: &Context,
    turn: &RenderTurn,
) -> Result<(Arc<connect::Connection>, Option<Templates>)> {
    let connection = connect::connect(ts, ctx)?;
    let templates = resolve::templates(ts, &ctx.template_config_maps, &ctx.hash_key).await?;
    if let Some(templates) = &templates {
        check_templates(ts, ctx, templates, turn).await?;
    }
    Ok((connection, templates))
}

/// Compiles the resource's templates in the sandbox, unless the same templates (by keyed hash)
/// were compiled before: a periodic check compiles nothing.
async fn check_templates(
    ts: &ThalassaSecret,
    ctx: &Context,
    templates: &Templates,
    turn: &RenderTurn,
) -> Result<()> {
    let key = ObjectRef::from_obj(ts);
    if let Some((hash, result)) = ctx.template_checks.lock().expect("checks lock").get(&key)
        && *hash == templates.hash
    {
        return result.clone().map_err(Error::Template);
    }
    turn.take()?;
    debug!("compiling the templates in the sandbox");
    let result = match template::check_in_sandbox(&templates.set).await {
        Ok(()) => Ok(()),
        Err(template::RenderFailure::Template(e)) => Err(e),
        Err(template::RenderFailure::Sandbox(problem)) => return Err(Error::Internal(problem)),
    };
    ctx.template_checks
        .lock()
        .expect("checks lock")
        .insert(key, (templates.hash.clone(), result.clone()));
    result.map_err(Error::Template)
}

/// What this reconcile does about the force-sync annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Force {
    /// No new value (none set, or handled already).
    Nothing,
    /// Force a sync for this value now.
    Now(String),
    /// A new value, but a forced sync of this resource was honoured less than
    /// `--force-sync-min-interval` ago: decide again after this long. Every value set meanwhile
    /// is coalesced into the one forced sync then (the annotation holds only the newest).
    Later(Duration),
}

/// The force-sync value this reconcile acts on: one not recorded as handled in status, nor by
/// this process (a reconcile right after a forced one may still see the old status), and at most
/// one per `--force-sync-min-interval` per resource.
fn force_to_handle(ts: &ThalassaSecret, ctx: &Context) -> Force {
    let Some(value) = plan::force_sync_requested(ts) else {
        return Force::Nothing;
    };
    let key = ObjectRef::from_obj(ts);
    let handled = ctx.force_handled.lock().expect("force lock");
    if handled.get(&key).map(String::as_str) == Some(value) {
        return Force::Nothing;
    }
    drop(handled);
    let mut times = ctx.force_times.lock().expect("force lock");
    let now = std::time::Instant::now();
    match force_wait(
        times.get(&key).copied(),
        now,
        ctx.config.bounds.force_sync_min_interval,
    ) {
        Some(wait) => Force::Later(wait),
        None => {
            times.insert(key, now);
            Force::Now(value.to_string())
        }
    }
}

/// How long a forced sync must still wait when the last one was honoured at `last` (no I/O).
fn force_wait(
    last: Option<std::time::Instant>,
    now: std::time::Instant,
    interval: Duration,
) -> Option<Duration> {
    let elapsed = now.saturating_duration_since(last?);
    (elapsed < interval).then(|| interval - elapsed)
}

/// Syncs (when the spec is valid), then writes the status and requeues.
async fn sync_and_report(
    ts: &ThalassaSecret,
    ctx: &Context,
    validated: Result<ValidatedSpec>,
) -> Result<Step> {
    let turn = RenderTurn::of(ts);
    // A force-sync asked for too soon after the last one: decide again after this long.
    let mut force_wait = None;
    let (validated, learned, result) = match validated {
        Ok(mut spec) => match connect_with_templates(ts, ctx, &turn).await {
            Ok((connection, templates)) => {
                if ts.spec.region.is_none() {
                    spec.region.clone_from(&connection.default_region);
                }
                spec.connection.clone_from(&connection.identity);
                spec.templates = templates;
                match force_to_handle(ts, ctx) {
                    Force::Now(value) => spec.force = Some(value),
                    Force::Later(wait) => force_wait = Some(wait),
                    Force::Nothing => {}
                }
                let (learned, result) = sync(ts, &spec, ctx, &connection.sources, &turn).await;
                (Some(spec), learned, result)
            }
            Err(e) => (Some(spec), Learned::default(), Err(e)),
        },
        Err(e) => (None, Learned::default(), Err(e)),
    };
    if matches!(result, Err(Error::TemplateTurnTaken)) {
        return Ok(Step::Queued);
    }
    if let Err(e) = &result
        && e.is_namespace_terminating()
    {
        // The namespace is being deleted: no re-create, no retry, no Warning Event.
        debug!("namespace is being deleted; nothing more to do");
        return Ok(Step::Done(Action::await_change()));
    }
    let now = status::now();
    let (result, restart) = match (&validated, result) {
        (Some(spec), Ok(outcome)) => {
            let last_write = if outcome.wrote {
                Some(&now)
            } else {
                ts.status.as_ref().and_then(|s| s.last_sync_time.as_ref())
            };
            let hash = outcome.data_hash.as_deref();
            // A restart problem is its own condition: the Secret stays synced.
            let report = restart::run(ctx, ts, spec, hash, last_write, &now).await;
            (Ok(outcome), report)
        }
        (_, result) => (result, RestartReport::default()),
    };
    let region = validated.as_ref().map(|v| v.region.as_str()).unwrap_or("");
    let prerequisites = Prerequisites::learned(
        learned.kms_backend,
        learned.reached,
        region,
        result.as_ref().err(),
    );
    let plan = plan::plan_status(
        ts,
        validated.as_ref().map(|v| v.target_name.as_str()),
        result.as_ref(),
        &prerequisites,
        &restart,
        force_wait.is_some(),
        &now,
    );
    ctx.metrics.set_conditions(
        &ts.namespace().unwrap_or_default(),
        &ts.name_any(),
        plan.status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())),
    );
    if plan.changed {
        let api: Api<ThalassaSecret> =
            Api::namespaced(ctx.client.clone(), &ts.namespace().unwrap_or_default());
        match apply::write_status(&api, &ts.name_any(), &plan.status).await {
            Err(e) if e.is_kube_not_found() || e.is_namespace_terminating() => {
                debug!("the resource or its namespace is gone; nothing more to do");
                return Ok(Step::Done(Action::await_change()));
            }
            Ok(Some(rv)) => ctx.note_status_written(ts, rv),
            other => {
                other?;
            }
        }
        if let Some((type_, reason, note)) = plan.event {
            apply::publish(ctx, ts, type_, &reason, note).await;
        }
    }
    if let Some(handled) = &plan.status.force_sync_handled
        && validated.as_ref().and_then(|v| v.force.as_ref()) == Some(handled)
    {
        ctx.force_handled
            .lock()
            .expect("force lock")
            .insert(ObjectRef::from_obj(ts), handled.clone());
    }
    result?;
    ctx.metrics
        .checked(&ts.namespace().unwrap_or_default(), &ts.name_any());
    let refresh = validated.map_or(ctx.config.default_refresh_interval, |v| v.refresh_interval);
    // The sooner of a restart waiting for its window and a force-sync waiting for its interval.
    let wait = [restart.wait, force_wait].into_iter().flatten().min();
    Ok(Step::Done(next_check(
        ts.spec.refresh_policy,
        refresh,
        wait,
    )))
}

/// When to reconcile again after a success: at half the interval (a shared listing may already
/// be up to half an interval old, so a stored version reaches the Secret within one interval),
/// only on a change under the other policies, and no later than a restart that is waiting for
/// its debounce window (or its workload's restart bound) or a force-sync waiting for its
/// interval.
fn next_check(policy: RefreshPolicy, refresh: Duration, wait: Option<Duration>) -> Action {
    let periodic = (policy == RefreshPolicy::Periodic).then(|| jitter(refresh / 2));
    match (periodic, wait) {
        (Some(p), Some(w)) => Action::requeue(p.min(w)),
        (Some(d), None) | (None, Some(d)) => Action::requeue(d),
        // Only a change (of the spec, the Secret or a force-sync annotation) brings it back.
        (None, None) => Action::await_change(),
    }
}

/// Decides what to do after a failed reconcile: wait for a spec change when the spec itself is
/// invalid, or retry with exponential backoff capped at the refresh interval (and never sooner
/// than a 429's `Retry-After`). Failures that depend on Thalassa's content are retried too, but
/// cost no reveal while nothing changed (see `Attempt`).
pub fn error_policy(ts: Arc<ThalassaSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        reason = error.reason().as_str(),
        error = %error,
        "sync failed"
    );
    let (failures, retry_cap) = ctx.count_failure(&ObjectRef::from_obj(&*ts));
    // No cap: the spec is invalid, and only a new spec can fix it.
    let Some(refresh) = retry_cap else {
        return Action::await_change();
    };
    Action::requeue(jitter(backoff(failures, refresh, error.retry_after())))
}

/// The delay before retry number `failures` (1-based): doubling from [`BACKOFF_BASE`], capped at
/// the refresh interval, and never sooner than the provider asked.
fn backoff(failures: u32, refresh: Duration, retry_after: Option<Duration>) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(refresh)
        .max(retry_after.unwrap_or_default())
}

/// Adds up to 10% random delay so resources created together spread their checks.
fn jitter(delay: Duration) -> Duration {
    let extra = rand::rng().random_range(0.0..0.1);
    delay + delay.mul_f64(extra)
}

/// What a sync learned on its way, whether or not it finished.
#[derive(Debug, Default)]
struct Learned {
    /// The KMS backend as the summary showed it.
    kms_backend: Option<Observed>,
    /// How far it got.
    reached: Reached,
}

/// Checks sources, then (unless the Secret is known to be current, or the same inputs failed the
/// same way last time) syncs the target. A deterministic failure is remembered with its inputs.
async fn sync(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    sources: &SourceCache,
    turn: &RenderTurn,
) -> (Learned, Result<SyncOutcome>) {
    // What the Secret (as last seen by the watch) says it reflects. A Secret written for another
    // resource (UID), another generation, or none at all makes this a new or edited resource.
    let written = ctx
        .secrets
        .get(&ObjectRef::new(&spec.target_name).within(&ts.namespace().unwrap_or_default()));
    let forced = spec.force.is_some();
    // An edited template counts as a spec change (see `written_for_resource`).
    let spec_changed = forced
        || written
            .as_ref()
            .is_none_or(|m| !plan::written_for_resource(&m.metadata, ts, spec));
    if !forced
        && plan::policy_skips_sync(
            ts,
            written.as_ref().map(|m| &m.metadata),
            spec_changed,
            verified_rv(ctx, ts, spec).as_deref(),
        )
    {
        debug!(policy = ?ts.spec.refresh_policy, "nothing to sync under the refresh policy");
        let versions = ts.status.as_ref().map(|s| s.synced_versions.clone());
        return (
            Learned::default(),
            Ok(unchanged(
                ts,
                versions.unwrap_or_default(),
                written.as_deref(),
            )),
        );
    }
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
    // A force-sync checks versions now, not from a listing up to half an interval old.
    let max_age = if forced {
        Duration::ZERO
    } else {
        spec.refresh_interval / 2
    };
    let kms_backend = match resolve::kms_summary(sources, max_age).await {
        Ok(Some(summary)) => plan::judge_kms_summary(&summary, &spec.region),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let kms_backend = match kms_backend {
        Ok(backend) => backend,
        Err(e) => return (Learned::default(), Err(e)),
    };
    let learned = |reached| Learned {
        kms_backend: kms_backend.clone(),
        reached,
    };
    let metas = match resolve::resolve_sources(spec, sources, max_age).await {
        Ok(metas) => metas,
        Err(e) => return (learned(Reached::Start), Err(e)),
    };
    if let Err(e) = plan::check_keys(ts, &metas) {
        return (learned(Reached::Listed), Err(e));
    }
    let (revealed, result) = sync_checked(
        ts,
        spec,
        (ctx, turn),
        sources,
        metas,
        written.as_deref(),
        spec_changed,
    )
    .await;
    let reached = if revealed {
        Reached::Revealed
    } else {
        Reached::KeysChecked
    };
    (learned(reached), result)
}

/// The part of [`sync`] after the listing: skips what is current or repeats a known failure,
/// else syncs the target. Says whether anything was revealed.
async fn sync_checked(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    (ctx, turn): (&Context, &RenderTurn),
    sources: &SourceCache,
    metas: SourceMetas,
    written: Option<&PartialObjectMeta<Secret>>,
    spec_changed: bool,
) -> (bool, Result<SyncOutcome>) {
    let desired = plan::desired_versions(&metas);
    let key = ObjectRef::from_obj(ts);
    let attempt = Attempt {
        generation: ts.metadata.generation,
        desired: desired.clone(),
        target_rv: written.and_then(|m| m.metadata.resource_version.clone()),
        templates: spec.templates.as_ref().map(|t| t.hash.clone()),
        force: spec.force.clone(),
    };
    if let Some(rejection) = ctx.rejected.lock().expect("rejected lock").get(&key)
        && rejection.attempt == attempt
    {
        debug!("same inputs as the last failed attempt; not read again");
        return (false, Err(Error::Repeated(rejection.error.clone())));
    }
    if !spec_changed && is_current(ctx, ts, spec, written, &attempt) {
        debug!("sources and Secret unchanged; nothing to read");
        return (false, Ok(unchanged(ts, desired, written)));
    }
    // A resource that owns its Secret, with no managed Secret of that name in the (complete)
    // cache, creates it without reading first; Adopt and Merge expect a Secret that is not ours
    // (so not cached), and a name found taken before is read first from then on (a create that
    // fails after revealing would otherwise reveal again at every retry).
    let read_first = written.is_some()
        || ts.spec.target.creation_policy != CreationPolicy::Owner
        || ctx.name_taken.lock().expect("name lock").contains(&key);
    match sync_target(ts, spec, (ctx, turn), sources, metas, read_first).await {
        (revealed, Err(e)) if e.is_deterministic() => {
            let error = Arc::new(e);
            ctx.rejected.lock().expect("rejected lock").insert(
                key,
                Rejection {
                    attempt,
                    error: error.clone(),
                },
            );
            (revealed, Err(Error::Repeated(error)))
        }
        other => other,
    }
}

/// True when the Secret as last written or verified by this process records exactly the desired
/// versions (the watch shows no change since).
fn is_current(
    ctx: &Context,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    written: Option<&PartialObjectMeta<Secret>>,
    attempt: &Attempt,
) -> bool {
    let written_versions: BTreeMap<String, u64> = written
        .map(|m| {
            parse_sources(&m.metadata)
                .into_iter()
                .map(|(p, r)| (p, r.version))
                .collect()
        })
        .unwrap_or_default();
    let verified_rv = verified_rv(ctx, ts, spec);
    attempt.desired == written_versions
        && attempt.target_rv.is_some()
        && attempt.target_rv == verified_rv
}

/// The outcome of a sync that wrote nothing: the Secret (as last seen) holds `versions`.
fn unchanged(
    ts: &ThalassaSecret,
    versions: BTreeMap<String, u64>,
    written: Option<&PartialObjectMeta<Secret>>,
) -> SyncOutcome {
    SyncOutcome {
        synced_versions: versions,
        kms_key: None,
        // From the Secret as seen, not only from status: a reconcile right after the first
        // write may still see the resource without its new status, and must not write a status
        // that drops the ownership record.
        secret_uid: written
            .and_then(|m| m.metadata.uid.clone())
            .or_else(|| ts.status.as_ref().and_then(|s| s.secret_uid.clone())),
        wrote: false,
        data_hash: written
            .and_then(|m| m.metadata.annotations.as_ref())
            .and_then(|a| a.get(DATA_HASH_ANNOTATION))
            .cloned(),
    }
}

/// The resourceVersion of the target Secret as this process last wrote or verified it.
fn verified_rv(ctx: &Context, ts: &ThalassaSecret, spec: &ValidatedSpec) -> Option<String> {
    ctx.verified
        .lock()
        .expect("verified lock")
        .get(&(ts.namespace().unwrap_or_default(), spec.target_name.clone()))
        .cloned()
}

/// Reads the target Secret (unless `read_first` is false: the cache of managed Secrets has
/// none of that name, so a first sync creates it with one request), reveals what changed,
/// renders and writes. A create that finds the name taken (a Secret the cache does not hold:
/// not ours, or not seen yet), or a write that loses a race (409), reads the Secret and plans
/// once more. Says whether anything was revealed.
async fn sync_target(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    (ctx, turn): (&Context, &RenderTurn),
    sources: &SourceCache,
    mut metas: SourceMetas,
    mut read_first: bool,
) -> (bool, Result<SyncOutcome>) {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &ts.namespace().unwrap_or_default());
    let mut revealed_any = false;
    let mut lost_race = false;
    loop {
        let prepared = match prepare(
            ts,
            spec,
            (ctx, turn),
            sources,
            &secrets,
            &mut metas,
            read_first,
        )
        .await
        {
            Ok(prepared) => prepared,
            Err(e) => return (revealed_any, Err(e)),
        };
        revealed_any |= !prepared.revealed.is_empty();
        match write(ts, spec, ctx, &secrets, &metas, prepared).await {
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !read_first => {
                debug!("a Secret of that name exists though none was cached; reading it");
                ctx.name_taken
                    .lock()
                    .expect("name lock")
                    .insert(ObjectRef::from_obj(ts));
                read_first = true;
            }
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !lost_race => {
                debug!("the Secret changed while it was being written; planning again");
                lost_race = true;
            }
            result => return (revealed_any, result),
        }
    }
}

/// The Secret as read, what it is to this resource, and the values revealed for it.
struct Prepared {
    existing: Option<Secret>,
    target: TargetState,
    recorded: BTreeMap<String, SourceRecord>,
    desired: BTreeMap<String, u64>,
    revealed: BTreeMap<String, Arc<RevealedSecret>>,
    /// With templates: the Secret is kept as it is (nothing changed, nothing revealed).
    reuse_whole: bool,
}

/// Reads the Secret, classifies it, looks up vanished sources and reveals what changed (needs
/// the clients).
async fn prepare(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    (ctx, turn): (&Context, &RenderTurn),
    sources: &SourceCache,
    secrets: &Api<Secret>,
    metas: &mut SourceMetas,
    read_first: bool,
) -> Result<Prepared> {
    let existing = if read_first {
        secrets.get_opt(&spec.target_name).await?
    } else {
        None
    };
    let target = plan::classify_target(ts, &spec.target_name, existing.as_ref(), &ctx.hash_key)?;
    let recorded = plan::recorded_sources(existing.as_ref(), target);
    resolve::recover_missing_sources(ts, spec, sources, &recorded, metas).await?;
    plan::check_keys(ts, metas)?;
    let desired = plan::desired_versions(metas);
    let reuse = plan::reuse_allowed(ts, spec, existing.as_ref(), target);
    // Templates need every input at once: the Secret is kept whole or every source is read.
    let reuse_whole = spec.templates.is_some() && plan::reuse_whole(&desired, &recorded, reuse);
    if spec.templates.is_some() && !reuse_whole {
        // A render follows: the namespace's turn is taken before anything is revealed for it.
        turn.take()?;
    }
    let to_reveal = match (&spec.templates, reuse_whole) {
        (None, _) => plan::plan_reveals(&desired, &recorded, reuse),
        (Some(_), true) => Vec::new(),
        (Some(_), false) => plan::plan_reveals(&desired, &recorded, false),
    };
    // The values revealed are checked against the Secret's limit as they arrive (template
    // inputs too), so no resource holds more than its Secret could take.
    let budget = resolve::RevealBudget {
        kept: plan::reused_bytes(existing.as_ref(), &desired, &recorded, &to_reveal),
        limit: render::MAX_SECRET_DATA_BYTES,
    };
    let prefix_mappings = plan::prefix_mappings(spec, metas);
    let measure = |path: &str, secret: &RevealedSecret| {
        let mappings: Vec<&render::KeyMapping> = match spec.paths.get(path) {
            Some(source) => source.mappings.iter().collect(),
            None => prefix_mappings.get(path).into_iter().collect(),
        };
        render::mapped_len(&mappings, &secret.value)
    };
    let revealed = resolve::reveal(ts, spec, sources, metas, &to_reveal, budget, measure).await?;
    Ok(Prepared {
        existing,
        target,
        recorded,
        desired,
        revealed,
        reuse_whole,
    })
}

/// Renders the Secret and writes it when it differs, then records its resourceVersion as
/// verified and announces the write.
async fn write(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    secrets: &Api<Secret>,
    metas: &SourceMetas,
    prepared: Prepared,
) -> Result<SyncOutcome> {
    let Prepared {
        existing,
        target,
        recorded,
        desired,
        revealed,
        reuse_whole,
    } = prepared;
    let existing = existing.as_ref();
    let rendered = match (&spec.templates, existing.filter(|_| reuse_whole)) {
        (Some(_), Some(existing)) => render::reuse_templated(existing)
            .ok_or_else(|| Error::Internal("templated keys vanished from the Secret".into()))?,
        (templates, _) => {
            let raw =
                plan::render_sources(ts, spec, metas, &desired, &revealed, existing, &recorded)?;
            match templates {
                Some(templates) => render_templates(ts, ctx, templates, raw).await?,
                None => raw,
            }
        }
    };
    let rendered = plan::desired_secret(ts, spec, &ctx.hash_key, rendered);
    let data_hash = rendered.hash.clone();
    let write = plan::plan_write(ts, existing, target, &rendered, &recorded)?;
    let written = apply::write_secret(secrets, existing, &write, rendered.secret).await?;
    if written.is_some() {
        announce_write(ctx, ts, spec, existing.is_some(), target, &desired).await;
    }
    let current = written.as_ref().or(existing);
    if let Some(rv) = current.and_then(|s| s.metadata.resource_version.clone()) {
        ctx.verified.lock().expect("verified lock").insert(
            (ts.namespace().unwrap_or_default(), spec.target_name.clone()),
            rv,
        );
    }
    Ok(SyncOutcome {
        kms_key: revealed
            .values()
            .last()
            .map(|s| (s.kms_key_identity.clone(), s.kms_key_version.clone())),
        secret_uid: current.and_then(|s| s.metadata.uid.clone()),
        synced_versions: desired,
        wrote: written.is_some(),
        data_hash: Some(data_hash),
    })
}

/// Runs the templates over the source keys in the sandbox and applies their output.
async fn render_templates(
    ts: &ThalassaSecret,
    ctx: &Context,
    templates: &Templates,
    raw: RenderedData,
) -> Result<RenderedData> {
    let mut inputs: BTreeMap<String, Vec<u8>> = raw
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let output = template::render_in_sandbox(&templates.set, &inputs).await;
    inputs.values_mut().for_each(zeroize::Zeroize::zeroize);
    let output = output.map_err(|failure| match failure {
        template::RenderFailure::Template(e) => Error::Template(e),
        // Not the template's fault: retried with backoff, never remembered as deterministic.
        template::RenderFailure::Sandbox(problem) => Error::Internal(problem),
    })?;
    render::apply_templates(
        raw,
        output,
        &templates.set,
        &templates.hash,
        plan::managed_type(ts),
        &ctx.hash_key,
    )
}

/// Logs and publishes the Event for a write.
async fn announce_write(
    ctx: &Context,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    existed: bool,
    target: TargetState,
    desired: &BTreeMap<String, u64>,
) {
    let was_synced = ts.status.as_ref().is_some_and(|s| {
        s.observed_generation == ts.metadata.generation
            && s.synced_versions == *desired
            && status::is_ready(Some(s))
    });
    let had_secret = ts.status.as_ref().is_some_and(|s| s.secret_uid.is_some());
    let event = plan::write_event(
        existed,
        target,
        (was_synced, had_secret),
        &spec.target_name,
        ts.spec.target.creation_policy,
    );
    info!(secret = %spec.target_name, reason = event.as_ref().map_or("SecretCreated", |e| e.0), "wrote Secret");
    if let Some((reason, note)) = event {
        apply::publish(ctx, ts, EventType::Normal, reason, note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_refresh_interval_but_honours_retry_after() {
        let refresh = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=7)
            .map(|n| backoff(n, refresh, None).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX, refresh, None), refresh, "no overflow");
        assert_eq!(
            backoff(1, refresh, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_force_sync_waits_for_the_rest_of_its_interval() {
        let interval = Duration::from_secs(60);
        let start = std::time::Instant::now();
        assert_eq!(
            force_wait(None, start, interval),
            None,
            "the first is at once"
        );
        assert_eq!(
            force_wait(Some(start), start + Duration::from_secs(20), interval),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            force_wait(Some(start), start + interval, interval),
            None,
            "at the end of the interval"
        );
        assert_eq!(
            force_wait(Some(start + interval), start, interval),
            Some(interval),
            "a clock that went backwards waits the whole interval"
        );
    }
}
