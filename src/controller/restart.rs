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
    crd::{FIELD_MANAGER, RESTARTED_FOR_ANNOTATION, RestartTarget, ThalassaSecret, WorkloadKind},
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
            report.missing = Some(find_missing(ctx, ts).await?);
        }
        Decision::Restart(_) => {}
    }
    match decision {
        Decision::Nothing => {}
        Decision::Wait(wait) => report.wait = Some(wait),
        Decision::Record(hash) => report.restarted_for = Some((hash, key_id)),
        Decision::Restart(hash) => {
            let mut missing = Vec::new();
            for target in targets {
                match restart_one(ctx, ts, target, &hash).await? {
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
                }
            }
            report.missing = Some(missing);
            report.restarted_for = Some((hash, key_id));
        }
    }
    if report.missing.as_ref().is_some_and(|m| !m.is_empty()) {
        report.wait = Some(report.wait.map_or(RECHECK, |w| w.min(RECHECK)));
    }
    Ok(report)
}

fn spec_changed(ts: &ThalassaSecret) -> bool {
    ts.status.as_ref().and_then(|s| s.observed_generation) != ts.metadata.generation
}

fn target_missing(ts: &ThalassaSecret) -> bool {
    ts.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == crate::status::types::RESTART_TARGETS_READY && c.status != "True")
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

async fn find_missing(ctx: &Context, ts: &ThalassaSecret) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for target in &ts.spec.rollout_restart_targets {
        let api = workloads(ctx, ts, target.kind);
        if api.get_metadata_opt(&target.name).await?.is_none() {
            missing.push(describe(target));
        }
    }
    Ok(missing)
}

enum Restarted {
    Yes,
    AlreadyForThisData,
    NotFound,
}

/// Sets the pod template annotation unless it already holds `hash`.
async fn restart_one(
    ctx: &Context,
    ts: &ThalassaSecret,
    target: &RestartTarget,
    hash: &str,
) -> Result<Restarted> {
    let api = workloads(ctx, ts, target.kind);
    let Some(workload) = api.get_opt(&target.name).await? else {
        return Ok(Restarted::NotFound);
    };
    let current = workload.data["spec"]["template"]["metadata"]["annotations"]
        [RESTARTED_FOR_ANNOTATION]
        .as_str();
    if current == Some(hash) {
        return Ok(Restarted::AlreadyForThisData);
    }
    let patch = serde_json::json!({
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
        Ok(_) => Ok(Restarted::Yes),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Restarted::NotFound),
        Err(e) => Err(e.into()),
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
}
