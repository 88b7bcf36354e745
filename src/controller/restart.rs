//! Rollout restarts of `spec.rolloutRestartTargets`: when the Secret's data changes, each target's
//! pod template annotation `secrets.thalassa.cloud/restartedFor` is set to the keyed hash of the
//! new data, once the debounce window after the last write has passed.
//!
//! The decision ([`decide`]) is pure and keyed on `status.restartedFor`, not on process memory:
//! an operator restart, a second replica or a repeated reconcile sees the same hash and restarts
//! nothing, and a change written just before a crash is still restarted for. The annotation value
//! is a keyed hash of the data bound to this resource (namespace and UID), so patching it again
//! for the same data never starts a second rollout, and equal data in two namespaces never shows
//! as equal values to people who may read workloads but not Secrets. A replaced data-hash key
//! changes every hash without any data change: the key's fingerprint is kept next to the hash,
//! and a new key only records.
//!
//! Whoever writes a ThalassaSecret is not necessarily allowed to restart the workloads it names
//! (the operator patches them with its own permissions). Two rules hold whatever the author did:
//! with `--restart-requires-opt-in` (the default) a workload is restarted only when its own
//! annotation `secrets.thalassa.cloud/allow-rollout-restart-by` names the resource (or is `*`),
//! which only someone who may patch the workload can set; and no workload is restarted more
//! than `--restart-limit` times per `--restart-window`, counted on the workload itself
//! (annotation `secrets.thalassa.cloud/rollout-restarts`), so every resource, replica and
//! operator restart shares the count. A restart past the bound waits for the window
//! ([`budget`]); a restart a workload does not allow is dropped for that data.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::apps::v1::{DaemonSet, Deployment, StatefulSet},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::EventType,
};
use tracing::info;

use super::{Context, apply, validate::ValidatedSpec};
use crate::{
    crd::{
        ALLOW_RESTART_ANNOTATION, FIELD_MANAGER, RESTART_TIMES_ANNOTATION,
        RESTARTED_FOR_ANNOTATION, RestartTarget, ThalassaSecret, WorkloadKind,
    },
    error::Result,
    render::{self, HashKey},
};

/// What to do about the targets after a successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// No targets, or the data is the one last restarted for.
    Nothing,
    /// The first data seen: recorded, nothing restarted (the workloads started with it).
    Record(String),
    /// The data changed less than the debounce window ago: decide again after this long.
    Wait(Duration),
    /// Restart every target for this data hash.
    Restart(String),
}

/// Decides from the restart hash of the Secret's current data, the data-hash key's fingerprint,
/// the time of the last write and what status says was last restarted for (no I/O).
pub(super) fn decide(
    ts: &ThalassaSecret,
    (restart_hash, key_id): (Option<&str>, &str),
    last_write: Option<&Time>,
    debounce: Duration,
    now: &Time,
) -> Decision {
    let Some(hash) = restart_hash.filter(|_| !ts.spec.rollout_restart_targets.is_empty()) else {
        return Decision::Nothing;
    };
    let status = ts.status.as_ref();
    let same_key = status.and_then(|s| s.restart_key_id.as_deref()) == Some(key_id);
    match status.and_then(|s| s.restarted_for.as_deref()) {
        Some(done) if done == hash => Decision::Nothing,
        // Another data-hash key: every hash changed, not the data.
        Some(_) if !same_key => Decision::Record(hash.to_string()),
        None if !ts.spec.restart_on_first_sync => Decision::Record(hash.to_string()),
        _ => {
            let since_write = last_write
                .map(|t| now.0.duration_since(t.0))
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(debounce);
            if since_write >= debounce {
                Decision::Restart(hash.to_string())
            } else {
                Decision::Wait(debounce - since_write)
            }
        }
    }
}

/// What the restart step did, for status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RestartReport {
    /// The hash now restarted for (or recorded) and the key fingerprint, when they changed.
    pub(super) restarted_for: Option<(String, String)>,
    /// Targets that do not exist, when they were looked up (`Some(empty)`: all found).
    pub(super) missing: Option<Vec<String>>,
    /// Targets that exist but do not allow restarts by this resource (when looked up).
    pub(super) refused: Vec<String>,
    /// Targets whose restart waits for their restart bound, and when the first may go.
    pub(super) deferred: Option<(Vec<String>, Time)>,
    /// A lookup or patch that failed (the sync itself stands; tried again).
    pub(super) failure: Option<String>,
    /// Decide again after this long (a restart waiting for its window, a missing target, a
    /// failure).
    pub(super) wait: Option<Duration>,
}

/// How soon a missing or failing target is tried again, whatever the refresh policy.
const RECHECK: Duration = Duration::from_secs(60);

/// The value a restart writes for `data_hash`: keyed, and bound to this resource.
pub(super) fn restart_hash(key: &HashKey, ts: &ThalassaSecret, data_hash: &str) -> String {
    let entries = BTreeMap::from([
        (
            "namespace".to_string(),
            ByteString(ts.namespace().unwrap_or_default().into_bytes()),
        ),
        (
            "uid".to_string(),
            ByteString(ts.metadata.uid.clone().unwrap_or_default().into_bytes()),
        ),
        (
            "data".to_string(),
            ByteString(data_hash.as_bytes().to_vec()),
        ),
    ]);
    render::data_hash(key, Some("rollout-restart"), &entries)
}

/// Runs the decision: records, waits, or patches every target (targets that do not exist are
/// reported, not retried in a loop). Targets are also looked up while the last report said one
/// was missing, or after a spec change, so the condition recovers when the workload appears.
pub(super) async fn run(
    ctx: &Context,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    data_hash: Option<&str>,
    last_write: Option<&Time>,
    now: &Time,
) -> RestartReport {
    match try_run(ctx, ts, spec, data_hash, last_write, now).await {
        Ok(report) => report,
        Err(e) => RestartReport {
            failure: Some(e.to_string()),
            wait: Some(RECHECK),
            ..RestartReport::default()
        },
    }
}

async fn try_run(
    ctx: &Context,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    data_hash: Option<&str>,
    last_write: Option<&Time>,
    now: &Time,
) -> Result<RestartReport> {
    let targets = &ts.spec.rollout_restart_targets;
    let key_id = render::key_fingerprint(&ctx.hash_key);
    let restart_hash = data_hash.map(|h| restart_hash(&ctx.hash_key, ts, h));
    let decision = decide(
        ts,
        (restart_hash.as_deref(), &key_id),
        last_write,
        spec.restart_debounce,
        now,
    );
    let recheck = !targets.is_empty() && (spec_changed(ts) || target_missing(ts));
    let mut report = RestartReport::default();
    match decision {
        Decision::Nothing | Decision::Wait(_) if !recheck => {}
        Decision::Nothing | Decision::Wait(_) | Decision::Record(_) => {
            let (missing, refused) = check_targets(ctx, ts).await?;
            report.missing = Some(missing);
            report.refused = refused;
        }
        Decision::Restart(_) => {}
    }
    match decision {
        Decision::Nothing => {}
        Decision::Wait(wait) => report.wait = Some(wait),
        Decision::Record(hash) => report.restarted_for = Some((hash, key_id)),
        Decision::Restart(hash) => {
            let mut missing = Vec::new();
            let mut deferred: Vec<(String, i64)> = Vec::new();
            for target in targets {
                match restart_one(ctx, ts, target, &hash, now).await? {
                    Restarted::Yes => {
                        ctx.metrics.rollout_restarted(
                            &ts.namespace().unwrap_or_default(),
                            &ts.name_any(),
                            kind_name(target.kind),
                        );
                        let note = format!(
                            "restarted {} {} for new data of Secret {}",
                            kind_name(target.kind),
                            target.name,
                            spec.target_name
                        );
                        info!(kind = kind_name(target.kind), target = %target.name, "rollout restart");
                        apply::publish(ctx, ts, EventType::Normal, "RolloutRestarted", note).await;
                    }
                    Restarted::AlreadyForThisData => {}
                    Restarted::NotFound => missing.push(describe(target)),
                    Restarted::NotAllowed => {
                        let note = format!(
                            "did not restart {}: it does not allow rollout restarts by this ThalassaSecret (annotation {ALLOW_RESTART_ANNOTATION})",
                            describe(target)
                        );
                        info!(kind = kind_name(target.kind), target = %target.name, "rollout restart not allowed by the workload");
                        apply::publish(ctx, ts, EventType::Warning, "RolloutRestartRefused", note)
                            .await;
                        report.refused.push(describe(target));
                    }
                    Restarted::Deferred(until) => deferred.push((describe(target), until)),
                }
            }
            report.missing = Some(missing);
            if let Some(first) = deferred.iter().map(|(_, until)| *until).min() {
                // Not recorded: the next decision restarts (the ones done are skipped, their
                // annotation already holds this hash) once the window allows.
                let wait = u64::try_from(first - now.0.as_second()).unwrap_or(0).max(1);
                report.wait = Some(Duration::from_secs(wait));
                let last = deferred
                    .iter()
                    .map(|(_, until)| *until)
                    .max()
                    .unwrap_or(first);
                let until = jiff::Timestamp::from_second(last).map_or_else(|_| now.clone(), Time);
                report.deferred = Some((deferred.into_iter().map(|(t, _)| t).collect(), until));
            } else {
                report.restarted_for = Some((hash, key_id));
            }
        }
    }
    let unsettled =
        report.missing.as_ref().is_some_and(|m| !m.is_empty()) || !report.refused.is_empty();
    if unsettled {
        report.wait = Some(report.wait.map_or(RECHECK, |w| w.min(RECHECK)));
    }
    Ok(report)
}

fn spec_changed(ts: &ThalassaSecret) -> bool {
    ts.status.as_ref().and_then(|s| s.observed_generation) != ts.metadata.generation
}

fn target_missing(ts: &ThalassaSecret) -> bool {
    ts.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == crate::status::types::RESTART_TARGETS_READY
                && c.status != crate::status::ConditionStatus::True
        })
    })
}

/// `Deployment web`.
pub(super) fn describe(target: &RestartTarget) -> String {
    format!("{} {}", kind_name(target.kind), target.name)
}

fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

fn workloads(ctx: &Context, ts: &ThalassaSecret, kind: WorkloadKind) -> Api<DynamicObject> {
    let resource = match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
    };
    Api::namespaced_with(
        ctx.client.clone(),
        &ts.namespace().unwrap_or_default(),
        &resource,
    )
}

/// Looks every target up: the ones that do not exist, and the ones that do not allow restarts
/// by this resource.
async fn check_targets(ctx: &Context, ts: &ThalassaSecret) -> Result<(Vec<String>, Vec<String>)> {
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    for target in &ts.spec.rollout_restart_targets {
        let api = workloads(ctx, ts, target.kind);
        match api.get_metadata_opt(&target.name).await? {
            None => missing.push(describe(target)),
            Some(workload) if !allows(ctx, ts, workload.metadata.annotations.as_ref()) => {
                refused.push(describe(target));
            }
            Some(_) => {}
        }
    }
    Ok((missing, refused))
}

/// Whether a workload with these annotations may be restarted by `ts`: always without
/// `--restart-requires-opt-in`, else when its opt-in annotation names `ts` or is `*`.
fn allows(
    ctx: &Context,
    ts: &ThalassaSecret,
    annotations: Option<&BTreeMap<String, String>>,
) -> bool {
    !ctx.config.bounds.restart_requires_opt_in || opted_in(annotations, &ts.name_any())
}

/// Whether the opt-in annotation names `name` (or is `*`).
fn opted_in(annotations: Option<&BTreeMap<String, String>>, name: &str) -> bool {
    annotations
        .and_then(|a| a.get(ALLOW_RESTART_ANNOTATION))
        .is_some_and(|v| v.split(',').map(str::trim).any(|n| n == "*" || n == name))
}

/// The restart bound of one workload: with the times of its earlier restarts (Unix seconds, as
/// the workload's annotation records them) and `now`, either the times to record with a restart
/// now (those inside the window, plus `now`), or the second from which the next is allowed.
fn budget(
    recorded: Option<&str>,
    now: i64,
    window: Duration,
    limit: u32,
) -> std::result::Result<Vec<i64>, i64> {
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let mut times: Vec<i64> = recorded
        .unwrap_or_default()
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        // Inside the window; a time in the future (a skewed clock) counts as now.
        .filter(|&t: &i64| now.saturating_sub(t) < window)
        .map(|t: i64| t.min(now))
        .collect();
    times.sort_unstable();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
    if times.len() >= limit {
        // Allowed once all but limit - 1 of them have left the window.
        return Err(times[times.len() - limit].saturating_add(window));
    }
    times.push(now);
    Ok(times)
}

enum Restarted {
    Yes,
    AlreadyForThisData,
    NotFound,
    /// The workload does not allow restarts by this resource.
    NotAllowed,
    /// The workload's restart bound is used up until this second.
    Deferred(i64),
}

/// How often a restart is tried again when the workload changed between read and patch.
const CONFLICT_TRIES: usize = 3;

/// Sets the pod template annotation unless it already holds `hash`, if the workload allows
/// restarts by this resource and its restart bound allows one now; records the restart's time
/// on the workload in the same patch (conditional on its resourceVersion, so two resources
/// restarting one workload at once cannot both pass the bound).
async fn restart_one(
    ctx: &Context,
    ts: &ThalassaSecret,
    target: &RestartTarget,
    hash: &str,
    now: &Time,
) -> Result<Restarted> {
    let api = workloads(ctx, ts, target.kind);
    let bounds = ctx.config.bounds;
    let mut tries = 0;
    loop {
        tries += 1;
        let Some(workload) = api.get_opt(&target.name).await? else {
            return Ok(Restarted::NotFound);
        };
        let current = workload.data["spec"]["template"]["metadata"]["annotations"]
            [RESTARTED_FOR_ANNOTATION]
            .as_str();
        if current == Some(hash) {
            return Ok(Restarted::AlreadyForThisData);
        }
        let annotations = workload.metadata.annotations.as_ref();
        if !allows(ctx, ts, annotations) {
            return Ok(Restarted::NotAllowed);
        }
        let times = match budget(
            annotations
                .and_then(|a| a.get(RESTART_TIMES_ANNOTATION))
                .map(String::as_str),
            now.0.as_second(),
            bounds.restart_window,
            bounds.restart_limit,
        ) {
            Ok(times) => times,
            Err(until) => return Ok(Restarted::Deferred(until)),
        };
        let times: Vec<String> = times.iter().map(i64::to_string).collect();
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": workload.metadata.resource_version,
                "annotations": {RESTART_TIMES_ANNOTATION: times.join(",")},
            },
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: hash}}}}
        });
        match api
            .patch(
                &target.name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(Restarted::Yes),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(Restarted::NotFound);
            }
            Err(kube::Error::Api(status)) if status.code == 409 && tries < CONFLICT_TRIES => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::base;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    fn with_targets(restarted_for: Option<&str>, on_first_sync: bool) -> ThalassaSecret {
        with_key(restarted_for, on_first_sync, "k1")
    }

    fn with_key(restarted_for: Option<&str>, on_first_sync: bool, key: &str) -> ThalassaSecret {
        let mut ts = base("Owner", "Opaque");
        ts.spec.rollout_restart_targets = vec![RestartTarget {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        }];
        ts.spec.restart_on_first_sync = on_first_sync;
        ts.status = Some(crate::crd::ThalassaSecretStatus {
            restarted_for: restarted_for.map(str::to_string),
            restart_key_id: restarted_for.map(|_| key.to_string()),
            ..Default::default()
        });
        ts
    }

    #[test]
    fn restarts_only_for_changed_data_after_the_window() {
        let window = Duration::from_secs(10);
        let decide_at = |ts: &ThalassaSecret, hash, now| {
            decide(ts, (hash, "k1"), Some(&at(100)), window, &at(now))
        };
        let plain = base("Owner", "Opaque");
        assert_eq!(
            decide_at(&plain, Some("h2"), 200),
            Decision::Nothing,
            "no targets"
        );
        let first = with_targets(None, false);
        assert_eq!(
            decide_at(&first, Some("h1"), 100),
            Decision::Record("h1".into()),
            "first sync"
        );
        let asked = with_targets(None, true);
        assert_eq!(
            decide_at(&asked, Some("h1"), 100),
            Decision::Wait(window),
            "asked for"
        );
        let synced = with_targets(Some("h1"), false);
        assert_eq!(
            decide_at(&synced, Some("h1"), 500),
            Decision::Nothing,
            "same data"
        );
        assert_eq!(
            decide_at(&synced, Some("h2"), 102),
            Decision::Wait(Duration::from_secs(8)),
            "inside the window"
        );
        assert_eq!(
            decide_at(&synced, Some("h2"), 110),
            Decision::Restart("h2".into())
        );
        assert_eq!(
            decide_at(&synced, None, 110),
            Decision::Nothing,
            "no Secret data"
        );
        assert_eq!(
            decide(&synced, (Some("h2"), "k1"), None, window, &at(0)),
            Decision::Restart("h2".into()),
            "no recorded write time: not held back"
        );
        let rekeyed = with_key(Some("h1"), false, "k0");
        assert_eq!(
            decide_at(&rekeyed, Some("h2"), 500),
            Decision::Record("h2".into()),
            "a replaced data-hash key changed the hash, not the data"
        );
    }

    #[test]
    fn a_workload_is_restarted_at_most_limit_times_per_window() {
        let window = Duration::from_secs(600);
        assert_eq!(budget(None, 1000, window, 2), Ok(vec![1000]), "none yet");
        assert_eq!(
            budget(Some("900"), 1000, window, 2),
            Ok(vec![900, 1000]),
            "one in the window"
        );
        assert_eq!(
            budget(Some("900,950"), 1000, window, 2),
            Err(1500),
            "two in the window: the next once the first has left it"
        );
        assert_eq!(
            budget(Some("100,900"), 1000, window, 2),
            Ok(vec![900, 1000]),
            "one has left the window and is forgotten"
        );
        assert_eq!(
            budget(Some("950,junk,,900"), 1000, window, 2),
            Err(1500),
            "unsorted and unreadable entries"
        );
        assert_eq!(
            budget(Some("5000"), 1000, window, 1),
            Err(1600),
            "a time in the future counts as now"
        );
        assert_eq!(
            budget(Some("400,500,600,700"), 1000, window, 2),
            Err(1200),
            "more than the limit (a lowered flag): once enough have left"
        );
    }

    #[test]
    fn only_workloads_that_opt_in_name_the_resource() {
        let with =
            |v: &str| BTreeMap::from([(ALLOW_RESTART_ANNOTATION.to_string(), v.to_string())]);
        assert!(!opted_in(None, "app"));
        assert!(!opted_in(Some(&BTreeMap::new()), "app"));
        assert!(opted_in(Some(&with("app")), "app"));
        assert!(opted_in(Some(&with("db, app")), "app"));
        assert!(opted_in(Some(&with("*")), "app"));
        assert!(!opted_in(Some(&with("application")), "app"));
        assert!(!opted_in(Some(&with("")), "app"));
    }
}
