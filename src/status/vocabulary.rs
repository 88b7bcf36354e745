//! The typed words of every status the operator writes: condition types, condition statuses,
//! and one condition before it is stamped with its generation and transition time.
//!
//! In: nothing but values. Out: Kubernetes [`Condition`]s, whose `type`/`status` strings are
//! produced here and nowhere else ([`ConditionType::as_str`], [`ConditionStatus::as_str`]), so
//! the written status JSON is what it always was. Comparisons with a stored condition's strings
//! go through `PartialEq<str>` (`condition.status == ConditionStatus::True`).

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition's status, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known (not checked yet, or not checkable).
    Unknown,
}

impl ConditionStatus {
    /// The status string of a Kubernetes condition.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// `True` when `holds`, else `False`.
    pub(crate) const fn from_bool(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// Every condition type any kind the operator manages carries (which kind sets which:
/// [`crate::status::types`] for ThalassaSecrets, `controller::stores` for stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The resource does what its spec asks (ThalassaSecret: the Secret holds exactly what the
    /// spec asks for, at `observedGeneration`; store: every link of the chain works).
    Ready,
    /// kstatus: a failure is being retried with backoff and is expected to pass (abnormal-true).
    Reconciling,
    /// kstatus: retrying cannot help; only a person can fix it (abnormal-true).
    Stalled,
    /// The organisation's `secrets` feature gate is on.
    SecretsFeatureEnabled,
    /// The organisation's `kms` feature gate is on.
    KmsFeatureEnabled,
    /// The region's KMS backend is available.
    KmsBackendAvailable,
    /// The KMS key bound to every source secret is active (and is the required key).
    KmsKeyActive,
    /// The operator's credentials are valid and allowed to read the sources.
    Authorized,
    /// Every rollout restart target exists and the last restart worked (set only with
    /// `spec.rolloutRestartTargets`).
    RestartTargetsReady,
    /// A store: Thalassa accepts the store's credentials.
    CredentialsValid,
}

impl ConditionType {
    /// The type string of a Kubernetes condition.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
            Self::SecretsFeatureEnabled => "SecretsFeatureEnabled",
            Self::KmsFeatureEnabled => "KmsFeatureEnabled",
            Self::KmsBackendAvailable => "KmsBackendAvailable",
            Self::KmsKeyActive => "KmsKeyActive",
            Self::Authorized => "Authorized",
            Self::RestartTargetsReady => "RestartTargetsReady",
            Self::CredentialsValid => "CredentialsValid",
        }
    }

    /// The condition of this type in `conditions`, if any.
    pub(crate) fn find(self, conditions: &[Condition]) -> Option<&Condition> {
        conditions.iter().find(|c| c.type_ == self)
    }
}

/// Both vocabularies print, compare with and serialize as their Kubernetes strings.
macro_rules! kubernetes_string {
    ($type:ty) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<$type> for str {
            fn eq(&self, other: &$type) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$type> for String {
            fn eq(&self, other: &$type) -> bool {
                self == other.as_str()
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

kubernetes_string!(ConditionStatus);
kubernetes_string!(ConditionType);

/// One condition as a step judged it, before [`Stamp::condition`] gives it its generation and
/// transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCondition {
    /// Which condition.
    pub(crate) type_: ConditionType,
    /// Whether it holds.
    pub(crate) status: ConditionStatus,
    /// A documented reason (CamelCase).
    pub(crate) reason: &'static str,
    /// Human-readable; never a secret value. Truncated to 1,024 bytes when stamped.
    pub(crate) message: String,
}

/// What every condition of one status write shares: the conditions stored before (whose
/// `lastTransitionTime` is kept while a status does not flip), the generation observed, and now.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// The stored conditions.
    pub(crate) previous: &'a [Condition],
    /// `metadata.generation` of the object written for.
    pub(crate) generation: Option<i64>,
    /// The time a flipped condition transitions at.
    pub(crate) now: &'a Time,
}

impl Stamp<'_> {
    /// The Kubernetes condition for `new`, keeping its `lastTransitionTime` when a stored
    /// condition of its type had the same status.
    pub(crate) fn condition(&self, new: NewCondition) -> Condition {
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == new.type_ && c.status == new.status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        Condition {
            type_: new.type_.as_str().to_string(),
            status: new.status.as_str().to_string(),
            reason: new.reason.to_string(),
            message: crate::text::truncate(&new.message, 1024),
            observed_generation: self.generation,
            last_transition_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strings_are_the_kubernetes_ones() {
        assert_eq!(ConditionStatus::from_bool(true).as_str(), "True");
        assert_eq!(ConditionStatus::from_bool(false).to_string(), "False");
        assert!(*"Unknown" == ConditionStatus::Unknown);
        let stored = String::from("KmsKeyActive");
        assert!(stored == ConditionType::KmsKeyActive && stored != ConditionType::Ready);
        assert_eq!(
            serde_json::to_value(ConditionType::RestartTargetsReady).unwrap(),
            "RestartTargetsReady"
        );
    }
}
