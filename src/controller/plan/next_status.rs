//! The next status of a ThalassaSecret, planned without I/O: conditions from what the reconcile
//! learned, the restart step's condition, the synced versions and times, the force-sync handled,
//! and whether the write and an Event are needed.
//!
//! In: the stored resource and this reconcile's outcome. Out: a [`StatusPlan`] the driver
//! writes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{ResourceExt, runtime::events::EventType};

use super::force_sync_requested;
use crate::controller::{CHECK_TIME_REFRESH, restart::RestartReport};
use crate::{
    crd::{ThalassaSecret, ThalassaSecretStatus},
    error::{Error, Result},
    status::{
        self, ConditionStatus, NewCondition, Prerequisites, Stamp, reasons,
        types::RESTART_TARGETS_READY,
    },
};

/// What a successful sync produced, for status.
#[derive(Debug, Default)]
pub(crate) struct SyncOutcome {
    pub(crate) synced_versions: BTreeMap<String, u64>,
    pub(crate) kms_key: Option<(String, String)>,
    /// UID of the Secret now holding the data (the ownership record kept in status).
    pub(crate) secret_uid: Option<String>,
    pub(crate) wrote: bool,
    /// Keyed hash of the data the Secret now holds.
    pub(crate) data_hash: Option<String>,
}

/// The next status and what to say about it.
#[derive(Debug)]
pub(crate) struct StatusPlan {
    /// The next status; written only when [`Self::changed`].
    pub(crate) status: ThalassaSecretStatus,
    /// Whether it differs from the stored one in more than a recent `lastCheckTime`.
    pub(crate) changed: bool,
    /// The Event to publish when Ready flips: (type, reason, note).
    pub(crate) event: Option<(EventType, String, String)>,
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

/// What [`plan_status`] needs from this reconcile besides the resource and its outcome.
#[derive(Clone, Copy)]
pub(crate) struct StatusInputs<'a> {
    /// The target Secret's name, once the spec validated.
    pub(crate) target_name: Option<&'a str>,
    /// What the reconcile learned about each prerequisite.
    pub(crate) prerequisites: &'a Prerequisites,
    /// The rollout restarts done or found missing.
    pub(crate) restart: &'a RestartReport,
    /// A force-sync value waits for `--force-sync-min-interval`: it stays pending.
    pub(crate) force_deferred: bool,
    /// The rotate-generated value whose new versions this reconcile stored.
    pub(crate) rotated: Option<&'a str>,
}

/// Computes the next status from the stored one and this reconcile's outcome (no API calls).
pub(crate) fn plan_status(
    ts: &ThalassaSecret,
    result: Result<&SyncOutcome, &Error>,
    inputs: StatusInputs<'_>,
    now: &Time,
) -> StatusPlan {
    let StatusInputs {
        target_name,
        prerequisites,
        restart,
        force_deferred,
        rotated,
    } = inputs;
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
    if let Some(value) = rotated {
        next.rotate_generated_handled = Some(value.to_string());
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
    use crate::controller::fixtures::base;
    use crate::controller::plan::*;
    use crate::crd::FORCE_SYNC_ANNOTATION;

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
            result,
            StatusInputs {
                target_name: Some("app"),
                prerequisites: learned,
                restart: &RestartReport::default(),
                force_deferred: false,
                rotated: None,
            },
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
            Err(&invalid),
            StatusInputs {
                target_name: None,
                prerequisites: &learned,
                restart: &RestartReport::default(),
                force_deferred: false,
                rotated: None,
            },
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
            Ok(&synced()),
            StatusInputs {
                target_name: Some("app"),
                prerequisites: &Prerequisites::default(),
                restart: &RestartReport::default(),
                force_deferred: false,
                rotated: None,
            },
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
            Ok(&synced()),
            StatusInputs {
                target_name: Some("app"),
                prerequisites: &Prerequisites::default(),
                restart: &RestartReport::default(),
                force_deferred: true,
                rotated: None,
            },
            &at(1),
        );
        assert_eq!(
            deferred.status.force_sync_handled.as_deref(),
            Some("1"),
            "a value waiting for its interval stays pending"
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
            Ok(&synced()),
            StatusInputs {
                target_name: Some("app"),
                prerequisites: &learned,
                restart: &report,
                force_deferred: false,
                rotated: None,
            },
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
