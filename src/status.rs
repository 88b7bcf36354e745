//! Condition types and reasons (a closed set, documented in the README), and the pure logic that
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

/// Condition types, in the order of Thalassa's dependency chain.
pub mod types {
    /// The Secret holds exactly what the spec asks for, at `observedGeneration`.
    pub const READY: &str = "Ready";
    /// The organisation's `secrets` feature gate is on.
    pub const SECRETS_FEATURE_ENABLED: &str = "SecretsFeatureEnabled";
    /// The organisation's `kms` feature gate is on.
    pub const KMS_FEATURE_ENABLED: &str = "KmsFeatureEnabled";
    /// The region's KMS backend is available.
    pub const KMS_BACKEND_AVAILABLE: &str = "KmsBackendAvailable";
    /// The KMS key bound to every source secret is active (and is the required key).
    pub const KMS_KEY_ACTIVE: &str = "KmsKeyActive";
    /// The operator's credentials are valid and allowed to read the sources.
    pub const AUTHORIZED: &str = "Authorized";

    /// Every condition type the operator sets, in display order.
    pub const ALL: [&str; 6] = [
        READY,
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
}

/// What one reconcile learned about each prerequisite: `Some(true)` proven working, `Some(false)`
/// proven broken (with a reason), `None` not learned this time (the previous condition stays).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prerequisites {
    /// `secrets` gate.
    pub secrets_feature: Option<Observed>,
    /// `kms` gate.
    pub kms_feature: Option<Observed>,
    /// Regional KMS backend.
    pub kms_backend: Option<Observed>,
    /// Bound key(s).
    pub kms_key: Option<Observed>,
    /// Credentials and permissions.
    pub authorized: Option<Observed>,
}

/// One observed prerequisite.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Whether it holds.
    pub ok: bool,
    /// Reason from [`reasons`].
    pub reason: &'static str,
    /// Human-readable message (no values).
    pub message: String,
}

impl Observed {
    /// A prerequisite proven to hold.
    pub fn ok(reason: &'static str, message: impl Into<String>) -> Option<Self> {
        Some(Observed {
            ok: true,
            reason,
            message: message.into(),
        })
    }

    /// A prerequisite proven broken.
    pub fn broken(reason: &'static str, message: impl Into<String>) -> Option<Self> {
        Some(Observed {
            ok: false,
            reason,
            message: message.into(),
        })
    }
}

impl Prerequisites {
    /// Everything a successful metadata listing proves: both gates on (Secrets calls fail with
    /// 403 when either is off) and the credentials valid.
    pub fn listing_succeeded(&mut self) {
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
    pub fn reveal_succeeded(&mut self, region: &str) {
        self.listing_succeeded();
        self.kms_backend = Observed::ok(
            reasons::AVAILABLE,
            format!("KMS decrypted a value in region {region}"),
        );
        if self.kms_key.as_ref().is_none_or(|k| k.ok) {
            self.kms_key = Observed::ok(reasons::ACTIVE, "the bound KMS key decrypted the value");
        }
        self.authorized = Observed::ok(reasons::AUTHORIZED, "credentials may reveal every source");
    }

    /// Records what an error proves about the chain.
    pub fn record_error(&mut self, error: &Error) {
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
pub fn next_conditions(
    previous: &[Condition],
    prerequisites: &Prerequisites,
    ready: Result<(), &Error>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut next = Vec::with_capacity(types::ALL.len());
    let (ready_status, ready_reason, ready_message) = match ready {
        Ok(()) => (
            "True",
            reasons::SYNCED,
            "the Secret holds the current version of every source".to_string(),
        ),
        Err(e) => ("False", e.reason().as_str(), e.to_string()),
    };
    next.push(condition(
        previous,
        types::READY,
        ready_status,
        ready_reason,
        ready_message,
        generation,
        now,
    ));
    let links = [
        (
            types::SECRETS_FEATURE_ENABLED,
            &prerequisites.secrets_feature,
        ),
        (types::KMS_FEATURE_ENABLED, &prerequisites.kms_feature),
        (types::KMS_BACKEND_AVAILABLE, &prerequisites.kms_backend),
        (types::KMS_KEY_ACTIVE, &prerequisites.kms_key),
        (types::AUTHORIZED, &prerequisites.authorized),
    ];
    for (type_, observed) in links {
        let (status, reason, message) = match observed {
            Some(o) => (
                if o.ok { "True" } else { "False" },
                o.reason,
                o.message.clone(),
            ),
            None => match previous.iter().find(|c| c.type_ == type_) {
                Some(old) => {
                    next.push(Condition {
                        observed_generation: generation,
                        ..old.clone()
                    });
                    continue;
                }
                None => (
                    "Unknown",
                    reasons::NOT_CHECKED,
                    "not checked yet".to_string(),
                ),
            },
        };
        next.push(condition(
            previous, type_, status, reason, message, generation, now,
        ));
    }
    next
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: crate::text::truncate(&message, 1024),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Status of the Ready condition, if present.
pub fn ready_reason(status: Option<&ThalassaSecretStatus>) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// True when two statuses differ in anything but `lastCheckTime`, or the stored check time is
/// older than `check_time_refresh` (so `lastCheckTime` is refreshed at a bounded rate).
pub fn needs_write(
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
pub fn now() -> Time {
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
        let get = |t: &str| third.iter().find(|c| c.type_ == t).unwrap().clone();
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
}
