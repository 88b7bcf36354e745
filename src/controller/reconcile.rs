//! The reconcile driver: validate → connect → observe → sync → plan status → report, one call
//! each, plus `error_policy`.
//!
//! In: a `ThalassaSecret` from the watch. Out: when to reconcile it again (or the error
//! `error_policy` turns into a backoff). [`validate`] makes no API calls; the [`Sync`] reads
//! Thalassa and the target Secret and writes only the Secret; the status is planned from the
//! [`SyncReport`] without I/O ([`plan::plan_status`]) and written only when it changed, with an
//! Event if Ready flipped. A failure anywhere before the Secret write leaves the Secret exactly
//! as it is; only the status says what is wrong. What outlives one reconcile (failures, the last
//! status write, ...) is in the context's [`Memory`](super::memory::Memory).

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use rand::Rng;
use tracing::{Instrument, debug, info_span, warn};

use super::{
    BACKOFF_BASE, Context, apply, plan,
    restart::{self, RestartReport},
    sync::{Sync, SyncReport},
    validate::validate,
};
use crate::{
    crd::{RefreshPolicy, ThalassaSecret},
    error::Error,
    status::{self, Prerequisites},
};

/// How soon a reconcile that found its resource older than our last status write tries again.
const STALE_RETRY: Duration = Duration::from_millis(500);
/// How soon a reconcile that found its namespace's template turn taken tries again.
const TURN_RETRY: Duration = Duration::from_secs(1);
/// When a resource turned away from its namespace's full lane is tried again if no released
/// slot woke it first (it normally is woken: see [`lanes`](super::lanes)).
const LANE_RETRY: Duration = Duration::from_secs(10);

/// What a reconcile did: finished, or gave its slot back to wait for its namespace's turn to
/// check or render templates (nothing recorded, nothing counted as a failure).
enum Step {
    Done(Action),
    Queued,
}

/// Reconciles one `ThalassaSecret`. A failure is shared (`Arc`): one remembered as
/// deterministic is reported again as it is, without trying.
pub(crate) async fn reconcile(
    ts: Arc<ThalassaSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Arc<Error>> {
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
    let result = reconcile_resource(&ts, &ctx).instrument(span).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(|e| e.reason().as_str()),
    );
    result
}

/// validate → connect → observe → sync → plan status → report.
async fn reconcile_resource(ts: &ThalassaSecret, ctx: &Context) -> Result<Action, Arc<Error>> {
    if ctx.memory.is_stale(ts) {
        // A status planned from an older copy than our own last status write would drop what
        // that write recorded (server-side apply removes omitted fields): wait for the watch.
        debug!("the cached resource predates our last status write; trying again shortly");
        return Ok(Action::requeue(STALE_RETRY));
    }
    let (sync, report) = match validate(ts, &ctx.config) {
        Ok(spec) => {
            let mut sync = Sync::new(ts, ctx, spec);
            let report = sync.run().await;
            (Some(sync), report)
        }
        Err(e) => (None, SyncReport::failed(e)),
    };
    // error_policy needs the interval (and whether the spec was valid) without parsing it again.
    let retry_cap = sync.as_ref().map(|s| s.spec.refresh_interval);
    let key = ObjectRef::from_obj(ts);
    match report_status(ts, ctx, sync.as_ref(), report).await {
        Ok(Step::Done(action)) => {
            ctx.memory.forget_failures(&key);
            Ok(action)
        }
        Ok(Step::Queued) => {
            debug!("the namespace's template turn is taken; trying again shortly");
            Ok(Action::requeue(jitter(TURN_RETRY)))
        }
        Err(e) => {
            ctx.memory.note_retry_cap(&key, retry_cap);
            Err(e)
        }
    }
}

/// plan status → report: runs the restarts a synced change asks for, plans the status from the
/// report (no I/O), writes it when it changed (with an Event if Ready flipped), and says when to
/// come back.
async fn report_status(
    ts: &ThalassaSecret,
    ctx: &Context,
    sync: Option<&Sync<'_>>,
    report: SyncReport,
) -> Result<Step, Arc<Error>> {
    if matches!(report.error(), Some(Error::TemplateTurnTaken)) {
        return Ok(Step::Queued);
    }
    if report.error().is_some_and(Error::is_namespace_terminating) {
        // The namespace is being deleted: no re-create, no retry, no Warning Event.
        debug!("namespace is being deleted; nothing more to do");
        return Ok(Step::Done(Action::await_change()));
    }
    let now = status::now();
    let restart = match (sync, &report.outcome) {
        (Some(sync), Ok(outcome)) => {
            let last_write = if outcome.wrote {
                Some(&now)
            } else {
                ts.status.as_ref().and_then(|s| s.last_sync_time.as_ref())
            };
            let hash = outcome.data_hash.as_deref();
            // A restart problem is its own condition: the Secret stays synced.
            restart::run(ctx, ts, &sync.spec, hash, last_write, &now).await
        }
        _ => RestartReport::default(),
    };
    let spec = sync.map(|s| &s.spec);
    let force_wait = sync.and_then(|s| s.force_wait);
    let region = spec.map(|v| v.region.as_str()).unwrap_or("");
    let SyncReport {
        kms_backend,
        reached,
        outcome,
    } = report;
    let error = outcome.as_ref().err().map(|e| &**e);
    let prerequisites = Prerequisites::learned(kms_backend, reached, region, error);
    let inputs = plan::StatusInputs {
        target_name: spec.map(|v| v.target_name.as_str()),
        prerequisites: &prerequisites,
        restart: &restart,
        force_deferred: force_wait.is_some(),
        rotated: spec.and_then(|v| v.rotated.as_deref()),
    };
    let plan = plan::plan_status(ts, outcome.as_ref().map_err(|e| &**e), inputs, &now);
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
            Ok(Some(rv)) => ctx.memory.note_status_written(ts, rv),
            other => {
                other?;
            }
        }
        if let Some((type_, reason, note)) = plan.event {
            apply::publish(ctx, ts, type_, &reason, note).await;
        }
    }
    if let Some(handled) = &plan.status.force_sync_handled
        && spec.and_then(|v| v.force.as_ref()) == Some(handled)
    {
        ctx.memory
            .note_force_handled(&ObjectRef::from_obj(ts), handled);
    }
    outcome?;
    ctx.metrics
        .checked(&ts.namespace().unwrap_or_default(), &ts.name_any());
    let refresh = spec.map_or(ctx.config.default_refresh_interval, |v| v.refresh_interval);
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
pub(crate) fn error_policy(
    ts: Arc<ThalassaSecret>,
    error: &Arc<Error>,
    ctx: Arc<Context>,
) -> Action {
    warn!(
        namespace = ts.namespace().unwrap_or_default(),
        name = ts.name_any(),
        reason = error.reason().as_str(),
        error = %error,
        "sync failed"
    );
    let (failures, retry_cap) = ctx.memory.count_failure(
        &ObjectRef::from_obj(&*ts),
        ctx.config.default_refresh_interval,
    );
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
}
