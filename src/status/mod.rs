//! Condition types and reasons (a closed set, documented in docs/reference.md), and the pure logic that
//! turns what a reconcile observed into conditions. `lastTransitionTime` changes only when a
//! condition's status flips, and an unchanged status is never rewritten.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::{
    crd::ThalassaSecretStatus,
    error::{Error, Reason},
};

mod kstatus;
mod vocabulary;

pub(crate) use kstatus::{Health, Outcome, kstatus_conditions};
pub use vocabulary::{ConditionStatus, ConditionType, NewCondition, Stamp};

/// The condition types a ThalassaSecret carries, in the order of Thalassa's dependency chain.
pub mod types {
    use super::ConditionType;

    /// The Secret holds exactly what the spec asks for, at `observedGeneration`.
    pub(crate) const READY: ConditionType = ConditionType::Ready;
    /// The organisation's `secrets` feature gate is on.
    pub(crate) const SECRETS_FEATURE_ENABLED: ConditionType = ConditionType::SecretsFeatureEnabled;
    /// The organisation's `kms` feature gate is on.
    pub(crate) const KMS_FEATURE_ENABLED: ConditionType = ConditionType::KmsFeatureEnabled;
    /// The region's KMS backend is available.
    pub(crate) const KMS_BACKEND_AVAILABLE: ConditionType = ConditionType::KmsBackendAvailable;
    /// The KMS key bound to every source secret is active (and is the required key).
    pub(crate) const KMS_KEY_ACTIVE: ConditionType = ConditionType::KmsKeyActive;
    /// The operator's credentials are valid and allowed to read the sources.
    pub const AUTHORIZED: ConditionType = ConditionType::Authorized;
    /// kstatus: a failure is being retried with backoff and is expected to pass (abnormal-true).
    pub const RECONCILING: ConditionType = ConditionType::Reconciling;
    /// kstatus: retrying cannot help; only a person can fix it (abnormal-true).
    pub const STALLED: ConditionType = ConditionType::Stalled;

    /// Every rollout restart target exists and the last restart worked (set only with
    /// `spec.rolloutRestartTargets`).
    pub(crate) const RESTART_TARGETS_READY: ConditionType = ConditionType::RestartTargetsReady;

    /// Every condition type the operator sets on every resource, in display order.
    pub const ALL: [ConditionType; 8] = [
        READY,
        RECONCILING,
        STALLED,
        SECRETS_FEATURE_ENABLED,
        KMS_FEATURE_ENABLED,
        KMS_BACKEND_AVAILABLE,
        KMS_KEY_ACTIVE,
        AUTHORIZED,
    ];
}

/// Reasons of the prerequisite conditions (Ready's False reasons are [`Error::reason`]).
pub mod reasons {
    /// Ready=True: the Secret holds the current data.
    pub const SYNCED: &str = "Synced";
    /// A feature gate is on.
    pub const ENABLED: &str = "Enabled";
    /// A feature gate is off.
    pub const FEATURE_DISABLED: &str = "FeatureDisabled";
    /// The regional KMS backend answers.
    pub const AVAILABLE: &str = "Available";
    /// The regional KMS backend is down (503 / `kmsAvailable: false`).
    pub const UNAVAILABLE: &str = "Unavailable";
    /// Every bound key is active.
    pub const ACTIVE: &str = "Active";
    /// A bound key is disabled, pending deletion or otherwise not active.
    pub const KEY_NOT_ACTIVE: &str = "KeyNotActive";
    /// A source is bound to a key other than `spec.kmsKeyIdentity`.
    pub const KEY_MISMATCH: &str = "KeyMismatch";
    /// The bound key cannot be found.
    pub const KEY_NOT_FOUND: &str = "KeyNotFound";
    /// Credentials are valid and reads are permitted.
    pub const AUTHORIZED: &str = "Authorized";
    /// The credentials were rejected (401).
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    /// A call was denied by IAM or an access policy (403).
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    /// Not checked yet, or cannot be checked while an earlier link of the chain is broken.
    pub const NOT_CHECKED: &str = "NotChecked";
    /// `RestartTargetsReady=True`: every rollout restart target exists.
    pub(crate) const FOUND: &str = "Found";
    /// `RestartTargetsReady=False`: a rollout restart target does not exist.
    pub(crate) const RESTART_TARGET_NOT_FOUND: &str = "RestartTargetNotFound";
    /// `RestartTargetsReady=False`: looking up or patching a target failed (retried).
    pub(crate) const RESTART_FAILED: &str = "RestartFailed";
    /// `RestartTargetsReady=False`: a target does not allow restarts by this resource (it lacks
    /// the opt-in annotation); not restarted.
    pub(crate) const RESTART_NOT_ALLOWED: &str = "RestartNotAllowed";
    /// `RestartTargetsReady=False`: a target had its `--restart-limit` of restarts in the
    /// window; restarted once the window allows.
    pub(crate) const RESTART_RATE_LIMITED: &str = "RestartRateLimited";
}

/// What one reconcile learned about each prerequisite: `Some(true)` proven working, `Some(false)`
/// proven broken (with a reason), `None` not learned this time (the previous condition stays).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Prerequisites {
    /// `secrets` gate.
    pub(crate) secrets_feature: Option<Observed>,
    /// `kms` gate.
    pub(crate) kms_feature: Option<Observed>,
    /// Regional KMS backend.
    pub(crate) kms_backend: Option<Observed>,
    /// Bound key(s).
    pub(crate) kms_key: Option<Observed>,
    /// Credentials and permissions.
    pub(crate) authorized: Option<Observed>,
    /// Whether a value was revealed: the strongest evidence. Weaker evidence (a listing, a key
    /// check) that agrees with a True condition a reveal wrote for this generation and region
    /// leaves it as it is, so a check after a sync does not rewrite the status only to word the
    /// same fact more weakly.
    pub(crate) revealed: bool,
    /// The region the sources were read in (reveal messages name it).
    pub(crate) region: String,
}

/// How far a sync got before it finished or failed; each milestone proves links of the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reached {
    /// Nothing about the sources is known (validation or the first call failed).
    #[default]
    Start,
    /// The metadata listing succeeded.
    Listed,
    /// Every source is bound to an active (and the required) key.
    KeysChecked,
    /// A value was revealed: the whole chain works.
    Revealed,
}

/// One observed prerequisite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    /// Whether it holds.
    pub(crate) ok: bool,
    /// Reason from [`reasons`].
    pub(crate) reason: &'static str,
    /// Human-readable message (no values).
    pub(crate) message: String,
}

impl Observed {
    /// A prerequisite proven to hold.
    pub(crate) fn ok(reason: &'static str, message: impl Into<String>) -> Option<Self> {
        Some(Observed {
            ok: true,
            reason,
            message: message.into(),
        })
    }

    /// A prerequisite proven broken.
    pub(crate) fn broken(reason: &'static str, message: impl Into<String>) -> Option<Self> {
        Some(Observed {
            ok: false,
            reason,
            message: message.into(),
        })
    }
}

impl Prerequisites {
    /// What a reconcile learned: the KMS backend as the summary showed it, the links proven by
    /// the milestone reached, and what the error (if any) proves broken.
    pub(crate) fn learned(
        kms_backend: Option<Observed>,
        reached: Reached,
        region: &str,
        error: Option<&Error>,
    ) -> Self {
        let mut learned = Prerequisites {
            kms_backend,
            region: region.to_string(),
            ..Default::default()
        };
        if reached >= Reached::Listed {
            learned.listing_succeeded();
        }
        if reached >= Reached::KeysChecked {
            learned.kms_key = Observed::ok(
                reasons::ACTIVE,
                "every source is bound to an active KMS key",
            );
        }
        if reached >= Reached::Revealed {
            learned.reveal_succeeded(region);
            learned.revealed = true;
        }
        if let Some(error) = error {
            learned.record_error(error);
        }
        learned
    }

    /// Everything a successful metadata listing proves: both gates on (Secrets calls fail with
    /// 403 when either is off) and the credentials valid.
    fn listing_succeeded(&mut self) {
        self.secrets_feature = Observed::ok(reasons::ENABLED, "Secrets Manager calls succeed");
        self.kms_feature = Observed::ok(
            reasons::ENABLED,
            "Secrets Manager calls succeed, so the kms feature is on",
        );
        if self.authorized.as_ref().is_none_or(|a| a.ok) {
            self.authorized = Observed::ok(reasons::AUTHORIZED, "credentials accepted");
        }
    }

    /// Everything a successful reveal proves: the whole chain works.
    fn reveal_succeeded(&mut self, region: &str) {
        self.listing_succeeded();
        self.kms_backend = Observed::ok(
            reasons::AVAILABLE,
            format!("KMS decrypted the values of the last sync in region {region}"),
        );
        if self.kms_key.as_ref().is_none_or(|k| k.ok) {
            self.kms_key = Observed::ok(
                reasons::ACTIVE,
                "the bound KMS key decrypted the values of the last sync",
            );
        }
        self.authorized = Observed::ok(
            reasons::AUTHORIZED,
            "credentials accepted; the last sync revealed every source it read",
        );
    }

    /// What a reveal in `region` proves, worded as a reveal words it.
    fn proven_by_reveal(region: &str) -> Self {
        let mut proven = Prerequisites::default();
        proven.reveal_succeeded(region);
        proven
    }

    /// Records what an error proves about the chain.
    fn record_error(&mut self, error: &Error) {
        let message = error.to_string();
        match error.reason() {
            Reason::Unauthorized | Reason::CredentialsUnavailable => {
                self.authorized = Observed::broken(reasons::INVALID_CREDENTIALS, message)
            }
            Reason::Forbidden => {
                self.secrets_feature =
                    Observed::ok(reasons::ENABLED, "the API answered with a permission error");
                self.authorized = Observed::broken(reasons::PERMISSION_DENIED, message);
            }
            Reason::SecretsFeatureDisabled => {
                self.secrets_feature = Observed::broken(reasons::FEATURE_DISABLED, message);
                self.authorized = None;
            }
            Reason::KmsFeatureDisabled => {
                self.kms_feature = Observed::broken(reasons::FEATURE_DISABLED, message);
                self.authorized = None;
            }
            Reason::KmsBackendUnavailable => {
                self.kms_backend = Observed::broken(reasons::UNAVAILABLE, message);
            }
            Reason::KmsKeyNotActive => {
                self.kms_backend = Observed::ok(reasons::AVAILABLE, "the KMS backend answered");
                self.kms_key = Observed::broken(reasons::KEY_NOT_ACTIVE, message);
            }
            Reason::KmsKeyMismatch => {
                self.kms_key = Observed::broken(reasons::KEY_MISMATCH, message)
            }
            Reason::KmsKeyNotFound => {
                self.kms_key = Observed::broken(reasons::KEY_NOT_FOUND, message)
            }
            _ => {}
        }
    }
}

/// Builds the next status conditions from the previous ones: the prerequisites learned now, and
/// Ready from `ready` (`Ok(())` means synced, `Err` carries the failure). Transition times are
/// kept for conditions whose status did not change.
pub(crate) fn next_conditions(
    previous: &[Condition],
    prerequisites: &Prerequisites,
    ready: Result<(), &Error>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    conditions_for(previous, prerequisites, sync_health(ready), generation, now)
}

/// [`next_conditions`] for any kind that writes through the same chain (a push): `health` is
/// how the reconcile ended, worded by the kind.
pub(crate) fn conditions_for(
    previous: &[Condition],
    prerequisites: &Prerequisites,
    health: Health,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let stamp = Stamp {
        previous,
        generation,
        now,
    };
    let mut next = Vec::with_capacity(types::ALL.len());
    next.extend(kstatus_conditions(health).map(|c| stamp.condition(c)));
    let by_reveal = Prerequisites::proven_by_reveal(&prerequisites.region);
    let links = [
        (
            types::SECRETS_FEATURE_ENABLED,
            &prerequisites.secrets_feature,
            &by_reveal.secrets_feature,
        ),
        (
            types::KMS_FEATURE_ENABLED,
            &prerequisites.kms_feature,
            &by_reveal.kms_feature,
        ),
        (
            types::KMS_BACKEND_AVAILABLE,
            &prerequisites.kms_backend,
            &by_reveal.kms_backend,
        ),
        (
            types::KMS_KEY_ACTIVE,
            &prerequisites.kms_key,
            &by_reveal.kms_key,
        ),
        (
            types::AUTHORIZED,
            &prerequisites.authorized,
            &by_reveal.authorized,
        ),
    ];
    for (type_, observed, revealed) in links {
        next.push(link_condition(
            &stamp,
            type_,
            observed.as_ref(),
            revealed.as_ref().filter(|_| !prerequisites.revealed),
        ));
    }
    next
}

/// The condition of one prerequisite. `reveal_wording` is how a reveal words it, when what was
/// learned now is weaker evidence than a reveal: a True condition a reveal of this generation
/// (in this region) wrote is then kept as it is.
fn link_condition(
    stamp: &Stamp<'_>,
    type_: ConditionType,
    observed: Option<&Observed>,
    reveal_wording: Option<&Observed>,
) -> Condition {
    let kept = |c: &&Condition| c.observed_generation == stamp.generation;
    let Some(observed) = observed else {
        // Not learned this time: the previous condition stays, at this generation.
        return match type_.find(stamp.previous) {
            Some(old) => Condition {
                observed_generation: stamp.generation,
                ..old.clone()
            },
            None => stamp.condition(NewCondition {
                type_,
                status: ConditionStatus::Unknown,
                reason: reasons::NOT_CHECKED,
                message: "not checked yet".to_string(),
            }),
        };
    };
    if observed.ok
        && let Some(revealed) = reveal_wording
        && let Some(proven) = type_.find(stamp.previous).filter(kept).filter(|c| {
            c.status == ConditionStatus::True
                && c.reason == observed.reason
                && c.message == revealed.message
        })
    {
        return proven.clone();
    }
    stamp.condition(NewCondition {
        type_,
        status: ConditionStatus::from_bool(observed.ok),
        reason: observed.reason,
        message: observed.message.clone(),
    })
}

/// A sync's outcome in kstatus's terms: a failure needs a person when retrying the same inputs
/// cannot help ([`Error::needs_person`]).
fn sync_health(ready: Result<(), &Error>) -> Health {
    let retry = "retrying";
    match ready {
        Ok(()) => Health {
            outcome: Outcome::Ready,
            reason: reasons::SYNCED,
            message: "the Secret holds the current version of every source".to_string(),
            retry,
        },
        Err(e) => Health::failed(e, retry),
    }
}

/// Status and reason of the Ready condition, if present.
pub(crate) fn ready_reason(status: Option<&ThalassaSecretStatus>) -> Option<(String, String)> {
    types::READY
        .find(&status?.conditions)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Whether the Ready condition is present and True.
pub(crate) fn is_ready(status: Option<&ThalassaSecretStatus>) -> bool {
    status
        .and_then(|s| types::READY.find(&s.conditions))
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// True when two statuses differ in anything but `lastCheckTime`, or the stored check time is
/// older than `check_time_refresh` (so `lastCheckTime` is refreshed at a bounded rate).
pub(crate) fn needs_write(
    old: Option<&ThalassaSecretStatus>,
    new: &ThalassaSecretStatus,
    check_time_refresh: std::time::Duration,
) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &ThalassaSecretStatus| ThalassaSecretStatus {
        last_check_time: None,
        ..s.clone()
    };
    if strip(old) != strip(new) {
        return true;
    }
    match (&old.last_check_time, &new.last_check_time) {
        (Some(o), Some(n)) => n.0.duration_since(o.0).unsigned_abs() >= check_time_refresh,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// `Time` for now.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let mut p = Prerequisites::default();
        p.listing_succeeded();
        let first = next_conditions(&[], &p, Ok(()), Some(1), &at(100));
        assert!(first.iter().all(|c| c.last_transition_time == at(100)));
        assert_eq!(first.len(), types::ALL.len());

        // Same outcome later: times kept, generation follows.
        let second = next_conditions(&first, &p, Ok(()), Some(2), &at(200));
        let ready = second.iter().find(|c| c.type_ == types::READY).unwrap();
        assert_eq!(ready.last_transition_time, at(100));
        assert_eq!(ready.observed_generation, Some(2));

        // A failure flips Ready and the failing link only.
        let err = Error::KmsBackendUnavailable {
            region: "nl-01".into(),
        };
        p.record_error(&err);
        let third = next_conditions(&second, &p, Err(&err), Some(2), &at(300));
        let get = |t: ConditionType| third.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get(types::READY).status, "False");
        assert_eq!(get(types::READY).reason, "KmsBackendUnavailable");
        assert_eq!(get(types::READY).last_transition_time, at(300));
        assert_eq!(get(types::KMS_BACKEND_AVAILABLE).status, "False");
        assert_eq!(
            get(types::KMS_BACKEND_AVAILABLE).reason,
            reasons::UNAVAILABLE
        );
        assert_eq!(get(types::SECRETS_FEATURE_ENABLED).status, "True");
        assert_eq!(
            get(types::SECRETS_FEATURE_ENABLED).last_transition_time,
            at(100)
        );
    }

    #[test]
    fn unlearned_prerequisites_keep_their_previous_condition() {
        let mut p = Prerequisites::default();
        p.reveal_succeeded("nl-01");
        let first = next_conditions(&[], &p, Ok(()), Some(1), &at(1));
        let later = next_conditions(&first, &Prerequisites::default(), Ok(()), Some(1), &at(2));
        assert_eq!(first, later);
    }

    #[test]
    fn weaker_evidence_of_the_same_fact_keeps_the_condition_of_this_generation() {
        // As a reconcile learns them: the KMS summary judges the backend of the region.
        let summary = |region: &str| {
            Observed::ok(
                reasons::AVAILABLE,
                format!("KMS is available in region {region}"),
            )
        };
        let revealed = Prerequisites::learned(summary("nl-01"), Reached::Revealed, "nl-01", None);
        let checked = Prerequisites::learned(summary("nl-01"), Reached::KeysChecked, "nl-01", None);
        let message = |conditions: &[Condition], t: ConditionType| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.message.clone())
                .unwrap()
        };
        let synced = next_conditions(&[], &revealed, Ok(()), Some(1), &at(1));
        // A check of the same generation proves less than the reveal did: nothing changes.
        let check = next_conditions(&synced, &checked, Ok(()), Some(1), &at(2));
        assert_eq!(synced, check);
        // A spec change (new generation) words each condition from what was proven for it.
        let edited = next_conditions(&synced, &checked, Ok(()), Some(2), &at(3));
        assert_eq!(
            message(&edited, types::AUTHORIZED),
            "credentials accepted",
            "not carried over from another generation"
        );
        // Another region (the operator's default changed): worded from what was proven now.
        let elsewhere =
            Prerequisites::learned(summary("nl-02"), Reached::KeysChecked, "nl-02", None);
        let moved = next_conditions(&synced, &elsewhere, Ok(()), Some(1), &at(3));
        assert_eq!(
            message(&moved, types::KMS_BACKEND_AVAILABLE),
            "KMS is available in region nl-02",
            "a condition naming another region is not kept"
        );
        // A reveal after a check words it from the reveal again.
        let again = next_conditions(&edited, &revealed, Ok(()), Some(2), &at(4));
        assert_eq!(
            message(&again, types::AUTHORIZED),
            message(&synced, types::AUTHORIZED)
        );
        // Broken evidence is never hidden behind an earlier True.
        let denied = Error::from(crate::thalassa::Error::Forbidden {
            path: Some("/a".into()),
            message: "denied".into(),
        });
        let mut broken = checked.clone();
        broken.record_error(&denied);
        let failed = next_conditions(&synced, &broken, Err(&denied), Some(1), &at(5));
        let authorized = failed
            .iter()
            .find(|c| c.type_ == types::AUTHORIZED)
            .unwrap();
        assert_eq!(authorized.status, "False");
    }

    #[test]
    fn unknown_until_checked() {
        let conditions = next_conditions(&[], &Prerequisites::default(), Ok(()), None, &at(1));
        let kms = conditions
            .iter()
            .find(|c| c.type_ == types::KMS_KEY_ACTIVE)
            .unwrap();
        assert_eq!(
            (kms.status.as_str(), kms.reason.as_str()),
            ("Unknown", reasons::NOT_CHECKED)
        );
    }

    #[test]
    fn status_write_skipped_when_only_check_time_moves_a_little() {
        let old = ThalassaSecretStatus {
            observed_generation: Some(1),
            last_check_time: Some(at(0)),
            ..Default::default()
        };
        let mut new = old.clone();
        new.last_check_time = Some(at(60));
        assert!(!needs_write(
            Some(&old),
            &new,
            std::time::Duration::from_secs(600)
        ));
        new.last_check_time = Some(at(601));
        assert!(needs_write(
            Some(&old),
            &new,
            std::time::Duration::from_secs(600)
        ));
        new.last_check_time = Some(at(60));
        new.observed_generation = Some(2);
        assert!(needs_write(
            Some(&old),
            &new,
            std::time::Duration::from_secs(600)
        ));
    }

    #[test]
    fn each_milestone_proves_its_links_and_an_error_overrides_them() {
        let listed = Prerequisites::learned(None, Reached::Listed, "nl-01", None);
        assert!(listed.secrets_feature.as_ref().is_some_and(|o| o.ok));
        assert!(listed.kms_feature.as_ref().is_some_and(|o| o.ok));
        assert_eq!(listed.kms_key, None, "keys not checked yet");
        assert_eq!(listed.kms_backend, None);

        let checked = Prerequisites::learned(None, Reached::KeysChecked, "nl-01", None);
        assert_eq!(
            checked.kms_key.as_ref().map(|o| o.reason),
            Some(reasons::ACTIVE)
        );

        let revealed = Prerequisites::learned(None, Reached::Revealed, "nl-01", None);
        assert_eq!(
            revealed.kms_backend.as_ref().map(|o| (o.ok, o.reason)),
            Some((true, reasons::AVAILABLE))
        );

        let denied = Error::from(crate::thalassa::Error::Forbidden {
            path: Some("/a".into()),
            message: String::new(),
        });
        let after_listing =
            Prerequisites::learned(None, Reached::KeysChecked, "nl-01", Some(&denied));
        assert_eq!(
            after_listing.authorized.as_ref().map(|o| (o.ok, o.reason)),
            Some((false, reasons::PERMISSION_DENIED))
        );
        assert!(
            after_listing.kms_feature.as_ref().is_some_and(|o| o.ok),
            "the listing proved it"
        );

        let backend = Observed::broken(reasons::UNAVAILABLE, "down");
        let from_summary = Prerequisites::learned(backend.clone(), Reached::Start, "nl-01", None);
        assert_eq!(from_summary.kms_backend, backend);
    }

    #[test]
    fn a_failure_is_either_reconciling_or_stalled_never_both() {
        for reason in Reason::all() {
            let [_, reconciling, stalled] =
                kstatus_conditions(sync_health(Err(&sample_error(reason))));
            assert_ne!(
                reconciling.status, stalled.status,
                "{reason}: exactly one is True"
            );
            assert_eq!(
                stalled.status == ConditionStatus::True,
                reason.needs_person(),
                "{reason}"
            );
            assert_eq!(
                (reconciling.reason, stalled.reason),
                (reason.as_str(), reason.as_str())
            );
        }
        let [_, reconciling, stalled] = kstatus_conditions(sync_health(Ok(())));
        assert_eq!(
            (reconciling.status, stalled.status),
            (ConditionStatus::False, ConditionStatus::False)
        );
    }

    /// An error with each reason (the reason is what the conditions depend on).
    fn sample_error(reason: Reason) -> Error {
        use crate::thalassa::Error as T;
        match reason {
            Reason::InvalidSpec => Error::InvalidSpec("x".into()),
            Reason::TargetConflict => Error::TargetConflict { name: "n".into() },
            Reason::TargetImmutable => Error::TargetImmutable { name: "n".into() },
            Reason::TargetKeyConflict => Error::TargetKeyConflict { key: "k".into() },
            Reason::KmsKeyMismatch => Error::KmsKeyMismatch {
                path: "/p".into(),
                expected: "a".into(),
                actual: "b".into(),
            },
            Reason::KmsKeyNotActive => Error::KmsKeyNotActive {
                path: "/p".into(),
                key: "k".into(),
                status: "disabled".into(),
            },
            Reason::KmsKeyNotFound => T::KeyNotFound {
                region: "r".into(),
                key: "k".into(),
                message: String::new(),
            }
            .into(),
            Reason::KmsFeatureDisabled => Error::KmsFeatureDisabled,
            Reason::TemplateError => Error::Template(crate::template::TemplateError {
                template: "t".into(),
                line: None,
                column: None,
                problem: "p".into(),
            }),
            Reason::KmsBackendUnavailable => Error::KmsBackendUnavailable { region: "r".into() },
            Reason::SourceFormatMismatch => Error::SourceFormatMismatch {
                path: "/p".into(),
                detail: "d".into(),
            },
            Reason::Unauthorized => T::Unauthorized {
                message: String::new(),
            }
            .into(),
            Reason::CredentialsUnavailable => T::CredentialFileUnreadable {
                path: "/t".into(),
                source: std::io::Error::other("gone"),
            }
            .into(),
            Reason::SecretsFeatureDisabled => T::SecretsFeatureDisabled {
                message: String::new(),
            }
            .into(),
            Reason::Forbidden => T::Forbidden {
                path: None,
                message: String::new(),
            }
            .into(),
            Reason::SecretNotFound => Error::SourceDeleted {
                paths: vec!["/p".into()],
            },
            Reason::VersionNotFound => T::VersionNotFound {
                path: "/p".into(),
                version: Some(2),
                message: String::new(),
            }
            .into(),
            Reason::SecretTooLarge => Error::SecretTooLarge { bytes: 2, limit: 1 },
            Reason::RegionNotFound => T::RegionNotFound {
                region: "r".into(),
                message: String::new(),
            }
            .into(),
            Reason::RateLimited => T::RateLimited { retry_after: None }.into(),
            Reason::ProviderRejected => T::InvalidArgument("x".into()).into(),
            Reason::ProviderError => T::DeadlineExceeded {
                operation: "getSecretValue",
                deadline: std::time::Duration::from_secs(1),
            }
            .into(),
            Reason::KubernetesError => {
                Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
                    code: 500,
                    ..Default::default()
                })))
            }
            Reason::Internal => Error::Internal("x".into()),
            Reason::StoreNotFound => Error::StoreNotFound {
                kind: crate::crd::StoreKind::ThalassaSecretStore,
                name: "s".into(),
                namespace: "n".into(),
            },
            Reason::StoreNotReady => Error::StoreNotReady {
                store: "s".into(),
                detail: "d".into(),
            },
            Reason::NamespaceNotAllowed => Error::NamespaceNotAllowed {
                store: "s".into(),
                namespace: "n".into(),
            },
            Reason::UrlNotAllowed => Error::UrlNotAllowed {
                store: "s".into(),
                why: "w".into(),
                allowed: "a".into(),
            },
            Reason::PushSourceInvalid => Error::PushSourceInvalid {
                secret: "s".into(),
                detail: "d".into(),
            },
            Reason::RemoteNotOwned => Error::RemoteNotOwned { path: "/p".into() },
            Reason::NameTaken => Error::NameTaken {
                namespace: "n".into(),
                name: "c".into(),
            },
            Reason::TooManyNamespaces => Error::TooManyNamespaces {
                selected: 2,
                limit: 1,
            },
        }
    }
}
