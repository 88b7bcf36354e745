//! Status of the store kinds: whether each store's connection works, link by link — the chain the
//! `check` command walks (credentials, both feature gates, the regional KMS backend) — checked
//! through the very connection (and cached token) its ThalassaSecrets use, on every change of the
//! store and every [`STORE_CHECK_INTERVAL`].

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::{debug, warn};

use super::{Context, apply, connect};
use crate::{
    check::{self, CheckResult, CheckStatus},
    error::{Error, Result},
    status,
    store::{
        ClusterThalassaSecretStore, Connection as StoreConnection, StoreStatus, ThalassaSecretStore,
    },
};

/// How often a store's connection is checked when nothing changes: two cheap calls per store
/// (the KMS summary and one browse), so 100 stores cost 1,200 calls an hour.
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(600);

/// How soon a store is checked again after a failure expected to pass by itself (Thalassa 5xx or
/// 429, a timeout, the KMS backend unavailable): the store is `Reconciling` meanwhile.
pub const STORE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// Condition types of a store, in the order of the chain.
pub mod types {
    /// Every link works.
    pub const READY: &str = "Ready";
    /// Thalassa accepts the store's credentials.
    pub const CREDENTIALS_VALID: &str = "CredentialsValid";
    /// The organisation's `kms` feature gate is on.
    pub const KMS_FEATURE_ENABLED: &str = "KmsFeatureEnabled";
    /// The organisation's `secrets` feature gate is on.
    pub const SECRETS_FEATURE_ENABLED: &str = "SecretsFeatureEnabled";
    /// The KMS backend of the store's region is available.
    pub const KMS_BACKEND_AVAILABLE: &str = "KmsBackendAvailable";
    /// kstatus: True while a failure expected to pass by itself is checked again soon.
    pub const RECONCILING: &str = crate::status::types::RECONCILING;
    /// kstatus: True when only a person can fix the store (credentials, a feature gate, its
    /// settings); it is still checked again when it changes and every 10 minutes.
    pub const STALLED: &str = crate::status::types::STALLED;
}

/// Reasons of store conditions.
pub mod reasons {
    /// The link was checked and works (Ready: every link does).
    pub const VERIFIED: &str = "Verified";
    /// The link was checked and is broken; the message says how to fix it.
    pub const CHECK_FAILED: &str = "CheckFailed";
    /// The link could not be checked because an earlier one is broken.
    pub const NOT_CHECKED: &str = "NotChecked";
}

/// The link each condition reports, by the `check` command's name for it.
const LINKS: [(&str, &str); 4] = [
    (types::CREDENTIALS_VALID, check::CREDENTIALS),
    (types::KMS_FEATURE_ENABLED, check::KMS_GATE),
    (types::SECRETS_FEATURE_ENABLED, check::SECRETS_GATE),
    (types::KMS_BACKEND_AVAILABLE, check::KMS_BACKEND),
];

/// Checks a namespaced store and writes its status.
pub async fn reconcile_store(store: Arc<ThalassaSecretStore>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches_synced().await;
    let connection = connect::namespaced_store_connection(&ctx, &store);
    let api = Api::namespaced(ctx.client.clone(), &store.namespace().unwrap_or_default());
    check_and_report(&ctx, &api, &*store, &store.spec.connection, connection).await
}

/// Checks a cluster store and writes its status.
pub async fn reconcile_cluster_store(
    store: Arc<ClusterThalassaSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.caches_synced().await;
    let connection = connect::cluster_store_connection(&ctx, &store);
    let api = Api::all(ctx.client.clone());
    check_and_report(&ctx, &api, &*store, &store.spec.connection, connection).await
}

/// Walks the chain through the store's connection (if it could be built) and writes the status.
async fn check_and_report<K>(
    ctx: &Context,
    api: &Api<K>,
    store: &K,
    spec: &StoreConnection,
    connection: Result<Arc<connect::Connection>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + HasStoreStatus,
{
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| ctx.config.default_region.clone());
    let results = match connection {
        Ok(connection) => {
            Ok(check::run_checks(connection.sources.client(), &region, None, None).await)
        }
        Err(e) => Err(e),
    };
    let next = next_status(store, store.store_status(), &results);
    ctx.metrics.set_store_conditions(
        K::kind(&()).as_ref(),
        store.meta().namespace.as_deref().unwrap_or_default(),
        &store.name_any(),
        next.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())),
    );
    write(api, store, store.store_status(), &next).await?;
    let retrying = next
        .conditions
        .iter()
        .any(|c| c.type_ == types::RECONCILING && c.status == "True");
    Ok(Action::requeue(if retrying {
        STORE_RETRY_INTERVAL
    } else {
        STORE_CHECK_INTERVAL
    }))
}

/// Both store kinds carry a [`StoreStatus`].
trait HasStoreStatus {
    fn store_status(&self) -> Option<&StoreStatus>;
}

impl HasStoreStatus for ThalassaSecretStore {
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
}

impl HasStoreStatus for ClusterThalassaSecretStore {
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
}

/// Drops the condition metrics of stores that no longer exist or left this shard (deletions do
/// not reach the reconciler).
pub(super) fn retain_store_metrics(ctx: &Context) {
    // A store that left this shard (relabelled) is reported by its new shard, not here.
    let Some((stores, cluster_stores)) = ctx.shard_stores.get() else {
        return;
    };
    ctx.metrics.retain_stores(|kind, namespace, name| {
        if kind == ClusterThalassaSecretStore::kind(&()) {
            cluster_stores
                .as_ref()
                .is_some_and(|s| s.get(&ObjectRef::new(name)).is_some())
        } else {
            stores
                .get(&ObjectRef::new(name).within(namespace))
                .is_some()
        }
    });
}

/// Retries a failed status write after a minute.
pub fn store_error_policy<K>(store: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: Resource,
{
    warn!(store = %store.meta().name.clone().unwrap_or_default(), error = %error, "store check failed");
    Action::requeue(Duration::from_secs(60))
}

/// The status one check of `store` gives (no I/O).
fn next_status<K: Resource>(
    store: &K,
    old: Option<&StoreStatus>,
    results: &Result<Vec<CheckResult>>,
) -> StoreStatus {
    let generation = store.meta().generation;
    StoreStatus {
        observed_generation: generation,
        conditions: store_conditions(
            old.map(|s| s.conditions.as_slice()).unwrap_or_default(),
            results,
            generation,
            &status::now(),
        ),
    }
}

/// Writes `next` when it differs from the stored status.
async fn write<K>(
    api: &Api<K>,
    store: &K,
    old: Option<&StoreStatus>,
    next: &StoreStatus,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if old == Some(next) {
        debug!("store status unchanged");
        return Ok(());
    }
    match apply::write_status(api, &store.name_any(), next).await {
        // The store was deleted meanwhile: nothing to report on.
        Err(e) if e.is_kube_not_found() => Ok(()),
        other => other.map(drop),
    }
}

/// What a check's outcome asks for, in kstatus's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Every link works.
    Ready,
    /// A failure expected to pass by itself: checked again after [`STORE_RETRY_INTERVAL`].
    Retrying,
    /// Only a person can fix it: the first such failure, with its fix.
    NeedsPerson(String),
}

/// The conditions for one check of a store (no I/O): `Ready`, kstatus's `Reconciling` and
/// `Stalled` (both False when Ready; exactly one True when not), and one per link; transition
/// times kept for conditions whose status did not change.
pub fn store_conditions(
    previous: &[Condition],
    results: &Result<Vec<CheckResult>>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let condition = |type_: &str, state: &str, reason: &str, message: String| {
        status::condition(previous, type_, state, reason, message, generation, now)
    };
    let (outcome, reason, message, links) = match results {
        // The connection could not even be built (store being deleted, invalid settings).
        Err(e) => {
            let outcome = if e.needs_person() {
                Outcome::NeedsPerson(e.to_string())
            } else {
                Outcome::Retrying
            };
            (outcome, e.reason().as_str(), e.to_string(), Vec::new())
        }
        Ok(results) => {
            let mut links = Vec::with_capacity(LINKS.len());
            let mut first_failure = None;
            let (mut all_pass, mut lasting) = (true, None);
            for (type_, link) in LINKS {
                let result = results.iter().find(|r| r.name == link);
                let (state, reason, message) = match result {
                    Some(r) if r.status == CheckStatus::Pass => {
                        ("True", reasons::VERIFIED, r.detail.clone())
                    }
                    Some(r) if r.status == CheckStatus::Fail => {
                        let message = match &r.fix {
                            Some(fix) => format!("{}; {fix}", r.detail),
                            None => r.detail.clone(),
                        };
                        first_failure.get_or_insert_with(|| format!("{type_}: {message}"));
                        if !r.transient {
                            lasting.get_or_insert_with(|| format!("{type_}: {message}"));
                        }
                        ("False", reasons::CHECK_FAILED, message)
                    }
                    Some(r) => ("Unknown", reasons::NOT_CHECKED, r.detail.clone()),
                    None => ("Unknown", reasons::NOT_CHECKED, "not checked".to_string()),
                };
                all_pass &= state == "True";
                links.push(condition(type_, state, reason, message));
            }
            if all_pass {
                let message =
                    "the connection works: credentials, both feature gates and the KMS backend";
                (
                    Outcome::Ready,
                    reasons::VERIFIED,
                    message.to_string(),
                    links,
                )
            } else {
                let outcome = lasting.map_or(Outcome::Retrying, Outcome::NeedsPerson);
                let message = first_failure.unwrap_or_else(|| "a link could not be checked".into());
                (outcome, reasons::CHECK_FAILED, message, links)
            }
        }
    };
    let ready = match outcome {
        Outcome::Ready => condition(types::READY, "True", reason, message.clone()),
        _ => condition(types::READY, "False", reason, message.clone()),
    };
    let (reconciling, stalled) = match outcome {
        Outcome::Ready => (
            condition(
                types::RECONCILING,
                "False",
                reason,
                "nothing left to do".into(),
            ),
            condition(types::STALLED, "False", reason, "nothing left to do".into()),
        ),
        Outcome::Retrying => (
            condition(
                types::RECONCILING,
                "True",
                reason,
                format!(
                    "checking again in {}s: {message}",
                    STORE_RETRY_INTERVAL.as_secs()
                ),
            ),
            condition(
                types::STALLED,
                "False",
                reason,
                "the failure is expected to pass".into(),
            ),
        ),
        Outcome::NeedsPerson(why) => (
            condition(
                types::RECONCILING,
                "False",
                reason,
                "checking again cannot fix this; see Stalled".into(),
            ),
            condition(types::STALLED, "True", reason, why),
        ),
    };
    [ready, reconciling, stalled]
        .into_iter()
        .chain(links)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn result(name: &'static str, status: CheckStatus) -> CheckResult {
        CheckResult {
            name,
            status,
            detail: format!("{name} detail"),
            fix: (status == CheckStatus::Fail).then(|| "fix it".to_string()),
            transient: false,
        }
    }

    fn transient(name: &'static str) -> CheckResult {
        CheckResult {
            transient: true,
            ..result(name, CheckStatus::Fail)
        }
    }

    fn passing() -> Vec<CheckResult> {
        LINKS
            .iter()
            .map(|(_, link)| result(link, CheckStatus::Pass))
            .collect()
    }

    /// `(Ready, Reconciling, Stalled)` statuses.
    fn kstatus(conditions: &[Condition]) -> (&str, &str, &str) {
        (
            get(conditions, types::READY).0,
            get(conditions, types::RECONCILING).0,
            get(conditions, types::STALLED).0,
        )
    }

    fn get<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_store_is_ready_only_when_every_link_works() {
        let all = Ok(LINKS
            .iter()
            .map(|(_, link)| result(link, CheckStatus::Pass))
            .collect::<Vec<_>>());
        let first = store_conditions(&[], &all, Some(1), &at(1));
        assert_eq!(get(&first, types::READY), ("True", reasons::VERIFIED));
        assert_eq!(kstatus(&first), ("True", "False", "False"));
        assert_eq!(first.len(), 7);
        assert!(first.iter().all(|c| c.observed_generation == Some(1)));

        let broken = Ok(vec![
            result(check::CREDENTIALS, CheckStatus::Fail),
            result(check::KMS_GATE, CheckStatus::Skipped),
        ]);
        let next = store_conditions(&first, &broken, Some(1), &at(2));
        assert_eq!(get(&next, types::READY), ("False", reasons::CHECK_FAILED));
        assert_eq!(
            get(&next, types::CREDENTIALS_VALID),
            ("False", reasons::CHECK_FAILED)
        );
        assert_eq!(
            get(&next, types::KMS_FEATURE_ENABLED),
            ("Unknown", reasons::NOT_CHECKED)
        );
        let ready = next.iter().find(|c| c.type_ == types::READY).unwrap();
        assert!(
            ready.message.starts_with("CredentialsValid: ") && ready.message.ends_with("fix it")
        );
        assert_eq!(ready.last_transition_time, at(2));

        // Same outcome later: transition times kept.
        let again = store_conditions(&next, &broken, Some(1), &at(3));
        assert_eq!(again, next);
    }

    #[test]
    fn a_store_that_cannot_connect_says_why() {
        let error = Err(Error::StoreNotReady {
            store: "ThalassaSecretStore a/b".into(),
            detail: "it is being deleted".into(),
        });
        let conditions = store_conditions(&[], &error, Some(2), &at(1));
        assert_eq!(get(&conditions, types::READY), ("False", "StoreNotReady"));
        assert_eq!(kstatus(&conditions), ("False", "False", "True"));
        assert_eq!(get(&conditions, types::STALLED), ("True", "StoreNotReady"));
    }

    #[test]
    fn missing_credentials_stall_the_store_until_fixed() {
        let missing = Ok(vec![
            result(check::CREDENTIALS, CheckStatus::Fail),
            result(check::KMS_GATE, CheckStatus::Skipped),
            result(check::SECRETS_GATE, CheckStatus::Skipped),
            result(check::KMS_BACKEND, CheckStatus::Skipped),
        ]);
        let stalled = store_conditions(&[], &missing, Some(1), &at(1));
        assert_eq!(kstatus(&stalled), ("False", "False", "True"));
        let message = &stalled
            .iter()
            .find(|c| c.type_ == types::STALLED)
            .unwrap()
            .message;
        assert!(
            message.starts_with("CredentialsValid: ") && message.ends_with("fix it"),
            "Stalled says what is broken and how to fix it: {message}"
        );
        // Fixed with a new generation: every condition at it, Stalled flipped.
        let fixed = store_conditions(&stalled, &Ok(passing()), Some(2), &at(5));
        assert_eq!(kstatus(&fixed), ("True", "False", "False"));
        let stalled_now = fixed.iter().find(|c| c.type_ == types::STALLED).unwrap();
        assert_eq!(stalled_now.last_transition_time, at(5));
        assert!(fixed.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn a_failure_that_passes_by_itself_is_reconciling_not_stalled() {
        let mut down = passing();
        down[3] = transient(check::KMS_BACKEND);
        let conditions = store_conditions(&[], &Ok(down.clone()), Some(1), &at(1));
        assert_eq!(kstatus(&conditions), ("False", "True", "False"));
        assert_eq!(
            get(&conditions, types::KMS_BACKEND_AVAILABLE),
            ("False", reasons::CHECK_FAILED)
        );
        // With a failure only a person can fix as well, the store is stalled.
        down[1] = result(check::KMS_GATE, CheckStatus::Fail);
        let conditions = store_conditions(&conditions, &Ok(down), Some(1), &at(2));
        assert_eq!(kstatus(&conditions), ("False", "False", "True"));
        // Stalled names the failure a person must fix, even behind a transient one.
        let mut mixed = passing();
        mixed[0] = transient(check::CREDENTIALS);
        mixed[2] = result(check::SECRETS_GATE, CheckStatus::Fail);
        let conditions = store_conditions(&[], &Ok(mixed), Some(1), &at(1));
        let stalled = conditions
            .iter()
            .find(|c| c.type_ == types::STALLED)
            .unwrap();
        assert!(
            stalled.status == "True" && stalled.message.starts_with("SecretsFeatureEnabled: "),
            "{stalled:?}"
        );
        // A connection error that passes by itself (an apiserver hiccup) is retried too.
        let error = Err(Error::Internal("a broken invariant".into()));
        let conditions = store_conditions(&[], &error, Some(1), &at(1));
        assert_eq!(kstatus(&conditions), ("False", "True", "False"));
    }

    #[test]
    fn ready_false_always_has_exactly_one_of_reconciling_and_stalled() {
        use CheckStatus::{Fail, Pass, Skipped};
        let statuses = [Pass, Fail, Skipped];
        for a in statuses {
            for b in statuses {
                for lasting in [false, true] {
                    let mut results = passing();
                    results[0].status = a;
                    results[2].status = b;
                    results[2].transient = !lasting;
                    let conditions = store_conditions(&[], &Ok(results), Some(1), &at(1));
                    let (ready, reconciling, stalled) = kstatus(&conditions);
                    if ready == "True" {
                        assert_eq!((reconciling, stalled), ("False", "False"));
                    } else {
                        assert_eq!(
                            (reconciling == "True") as u8 + (stalled == "True") as u8,
                            1,
                            "{a:?} {b:?} lasting={lasting}: {conditions:?}"
                        );
                    }
                }
            }
        }
    }
}
