//! The reconcile driver: a short pipeline over the steps in [`validate`](super::validate),
//! [`resolve`](super::resolve) (reads Thalassa), [`plan`](super::plan) (no API calls),
//! [`apply`](super::apply) (writes) — and `error_policy`.
//!
//! validate → KMS summary → versions from shared listings → (current? or same failure as last
//! time? stop) → read the Secret → classify it → look up vanished sources → reveal what changed →
//! render → write → status. A failure anywhere before the write leaves the Secret exactly as it
//! is; only the status says what is wrong.

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
    BACKOFF_BASE, Context, apply, plan,
    plan::{SourceMetas, TargetState},
    resolve,
    validate::{ValidatedSpec, validate},
};
use crate::{
    crd::ThalassaSecret,
    error::{Error, Result},
    render::parse_sources,
    status::{self, Observed, Prerequisites, reasons},
};

/// What a successful sync produced, for status.
#[derive(Debug, Default)]
pub(super) struct SyncOutcome {
    pub(super) synced_versions: BTreeMap<String, u64>,
    pub(super) kms_key: Option<(String, String)>,
    /// UID of the Secret now holding the data (the ownership record kept in status).
    pub(super) secret_uid: Option<String>,
    pub(super) wrote: bool,
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
pub(super) struct Rejection {
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
    metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(|e| e.reason().as_str()),
    );
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
        .is_none_or(|m| !plan::written_for_resource(&m.metadata, &ts));
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
        if e.is_namespace_terminating() {
            // The namespace is being deleted: no re-create, no retry, no Warning Event.
            debug!("namespace is being deleted; nothing more to do");
            return Ok(Action::await_change());
        }
        prerequisites.record_error(e);
    }
    match apply::write_status(&ts, &ctx, validated.as_ref(), &result, &prerequisites).await {
        Err(e) if e.is_kube_not_found() || e.is_namespace_terminating() => {
            debug!("the resource or its namespace is gone; nothing more to do");
            return Ok(Action::await_change());
        }
        other => other?,
    }
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

/// Decides what to do after a failed reconcile: wait for a spec change when the spec itself is
/// invalid, or retry with exponential backoff capped at the refresh interval (and never sooner
/// than a 429's `Retry-After`). Failures that depend on Thalassa's content are retried too, but
/// cost no reveal while nothing changed (see [`Attempt`]).
pub fn error_policy(ts: Arc<ThalassaSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        reason = error.reason().as_str(),
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

/// Checks sources, then (unless the Secret is known to be current, or the same inputs failed the
/// same way last time) syncs the target. A deterministic failure is remembered with its inputs.
async fn sync(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    ctx: &Context,
    written: Option<&PartialObjectMeta<Secret>>,
    spec_changed: bool,
    prerequisites: &mut Prerequisites,
) -> Result<SyncOutcome> {
    let max_age = spec.refresh_interval / 2;
    if let Some(summary) = resolve::kms_summary(ctx, max_age).await?
        && let Some(backend) = plan::judge_kms_summary(&summary, &spec.region)?
    {
        prerequisites.kms_backend = Some(backend);
    }
    let metas = resolve::resolve_sources(spec, ctx, max_age).await?;
    prerequisites.listing_succeeded();
    plan::check_keys(ts, &metas)?;
    prerequisites.kms_key = Observed::ok(
        reasons::ACTIVE,
        "every source is bound to an active KMS key",
    );
    let desired = plan::desired_versions(&metas);

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
    if !spec_changed && is_current(ctx, ts, spec, written, &attempt) {
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
    let verified_rv = ctx
        .verified
        .lock()
        .expect("verified lock")
        .get(&(ts.namespace().unwrap_or_default(), spec.target_name.clone()))
        .cloned();
    attempt.desired == written_versions
        && attempt.target_rv.is_some()
        && attempt.target_rv == verified_rv
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
        let existing = existing.as_ref();
        let target = plan::classify_target(ts, &spec.target_name, existing, &ctx.hash_key)?;
        let recorded = plan::recorded_sources(existing, target);
        resolve::recover_missing_sources(ts, spec, ctx, &recorded, &mut metas).await?;
        plan::check_keys(ts, &metas)?;
        let desired = plan::desired_versions(&metas);
        let reuse = plan::reuse_allowed(ts, existing, target);
        let to_reveal = plan::plan_reveals(&desired, &recorded, reuse);
        let revealed = resolve::reveal(ts, spec, ctx, &metas, &to_reveal).await?;
        if !revealed.is_empty() {
            prerequisites.reveal_succeeded(&spec.region);
        }
        let rendered = plan::render_target(
            ts,
            spec,
            &ctx.hash_key,
            &metas,
            &desired,
            &revealed,
            existing,
            &recorded,
        )?;
        let write = plan::plan_write(ts, existing, target, &rendered, &recorded)?;
        let written =
            match apply::write_secret(&secrets, existing, &write, rendered.secret.clone()).await {
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !lost_race => {
                    debug!("the Secret changed while it was being written; planning again");
                    lost_race = true;
                    continue;
                }
                other => other?,
            };
        if written.is_some() {
            announce_write(ctx, ts, spec, existing.is_some(), target, &desired).await;
        }
        let current = written.as_ref().or(existing);
        if let Some(rv) = current.and_then(|s| s.metadata.resource_version.clone()) {
            ctx.verified
                .lock()
                .expect("verified lock")
                .insert((namespace, spec.target_name.clone()), rv);
        }
        return Ok(SyncOutcome {
            kms_key: revealed
                .values()
                .last()
                .map(|s| (s.kms_key_identity.clone(), s.kms_key_version.clone())),
            secret_uid: current.and_then(|s| s.metadata.uid.clone()),
            synced_versions: desired,
            wrote: written.is_some(),
        });
    }
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
            && status::ready_reason(Some(s)).is_some_and(|(ready, _)| ready == "True")
    });
    let (reason, note) = plan::write_event(
        existed,
        target,
        was_synced,
        &spec.target_name,
        ts.spec.target.creation_policy,
    );
    info!(secret = %spec.target_name, reason, "wrote Secret");
    apply::publish(ctx, ts, EventType::Normal, reason, note).await;
}
