//! `Ready` and kstatus's `Reconciling`/`Stalled` pair, derived by one rule for every kind the
//! operator manages (ThalassaSecrets, both store kinds, and any kind added later).
//!
//! In: the [`Health`] a reconcile or check ended in. Out: the three [`NewCondition`]s, no I/O.
//! Ready is True exactly when the outcome is [`Outcome::Ready`]; then both abnormal-true
//! conditions are False. Otherwise exactly one of them is True: `Stalled` when only a person can
//! fix it, `Reconciling` while a failure is retried with backoff. A first sync or a spec change
//! in progress shows as a stale `observedGeneration`, which kstatus reads as InProgress without
//! a write.

use crate::error::Error;

use super::vocabulary::{
    ConditionStatus::{False, True},
    ConditionType, NewCondition,
};

/// What an outcome asks for, in kstatus's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything works.
    Ready,
    /// A failure expected to pass by itself: retried with backoff.
    Retrying,
    /// Only a person can fix it; says what (with its fix, when known).
    NeedsPerson(String),
}

/// How a reconcile (or a store's check) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    /// What it asks for.
    pub(crate) outcome: Outcome,
    /// The reason of all three conditions.
    pub(crate) reason: &'static str,
    /// Ready's message (a failure's, or what Ready=True means for the kind).
    pub(crate) message: String,
    /// How the kind words a retry: "retrying" (a sync), "checking again" (a store).
    pub(crate) retry: &'static str,
}

impl Health {
    /// A failure's health: it needs a person when retrying the same inputs cannot help
    /// ([`Error::needs_person`]); else it is retried.
    pub(crate) fn failed(error: &Error, retry: &'static str) -> Health {
        Health {
            outcome: if error.needs_person() {
                Outcome::NeedsPerson(error.to_string())
            } else {
                Outcome::Retrying
            },
            reason: error.reason().as_str(),
            message: error.to_string(),
            retry,
        }
    }
}

/// `Ready`, `Reconciling` and `Stalled` for `health`, in that order.
pub(crate) fn kstatus_conditions(health: Health) -> [NewCondition; 3] {
    let Health {
        outcome,
        reason,
        message,
        retry,
    } = health;
    let condition = |type_, status, message| NewCondition {
        type_,
        status,
        reason,
        message,
    };
    let (ready, reconciling, stalled) = match outcome {
        Outcome::Ready => (
            True,
            (False, "nothing left to do".to_string()),
            (False, "nothing left to do".to_string()),
        ),
        Outcome::Retrying => (
            False,
            (True, format!("{retry} with backoff: {message}")),
            (False, "the failure is expected to pass".to_string()),
        ),
        Outcome::NeedsPerson(why) => (
            False,
            (False, format!("{retry} cannot fix this; see Stalled")),
            (True, why),
        ),
    };
    [
        condition(ConditionType::Ready, ready, message),
        condition(ConditionType::Reconciling, reconciling.0, reconciling.1),
        condition(ConditionType::Stalled, stalled.0, stalled.1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(outcome: Outcome) -> Health {
        Health {
            outcome,
            reason: "Why",
            message: "it broke".into(),
            retry: "retrying",
        }
    }

    #[test]
    fn ready_false_has_exactly_one_of_reconciling_and_stalled() {
        let [ready, reconciling, stalled] = kstatus_conditions(health(Outcome::Ready));
        assert_eq!(
            (ready.status, reconciling.status, stalled.status),
            (True, False, False)
        );
        let [ready, reconciling, stalled] = kstatus_conditions(health(Outcome::Retrying));
        assert_eq!(
            (ready.status, reconciling.status, stalled.status),
            (False, True, False)
        );
        assert_eq!(reconciling.message, "retrying with backoff: it broke");
        let [ready, reconciling, stalled] =
            kstatus_conditions(health(Outcome::NeedsPerson("fix it".into())));
        assert_eq!(
            (ready.status, reconciling.status, stalled.status),
            (False, False, True)
        );
        assert_eq!(
            (ready.message.as_str(), stalled.message.as_str()),
            ("it broke", "fix it")
        );
        assert!(
            [ready, reconciling, stalled]
                .iter()
                .all(|c| c.reason == "Why")
        );
    }
}
