//! Status of the store kinds: whether each store's connection works, link by link — the chain the
//! `check` command walks (credentials, both feature gates, the regional KMS backend) — checked
//! through the very connection (and cached token) its ThalassaSecrets use, on every change of the
//! store and then on a per-store schedule ([`StoreChecks`]): every `--store-check-interval` (10
//! minutes) while it works, with exponential backoff from `--store-retry-interval` (30 s) while
//! a failure expected to pass by itself lasts, and only every `--unused-store-check-interval`
//! (1 hour) when no ThalassaSecret uses it (such a store keeps no connection: it is built for
//! the check and dropped). Each check is two cheap calls (the KMS summary and one browse).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::{debug, warn};

use super::{Context, apply, connect};
use crate::{
    check::{self, CheckResult, CheckStatus, Link},
    config::StoreChecks,
    crd::StoreKind,
    error::{Error, Result},
    status::{self, ConditionStatus, ConditionType, Health, NewCondition, Outcome, Stamp},
    store::{ClusterThalassaSecretStore, StoreStatus, ThalassaSecretStore},
};

/// A store, by kind, namespace and name.
pub(crate) type StoreKey = (StoreKind, Option<String>, String);

/// Where one store's checks stand in this process.
#[derive(Debug, Clone)]
pub(crate) struct CheckState {
    /// The identity (UID and generation) last checked; a new one is checked at once.
    uid: String,
    generation: i64,
    /// The resourceVersion the store had after the check (after its own status write): any
    /// other change of the object (an annotation, a label: "touching" it) asks for a check.
    version: String,
    /// Whether a resource used the store at the last check.
    used: bool,
    /// Consecutive checks that failed in a way expected to pass by itself.
    failures: u32,
    /// When the next check is due.
    due: Instant,
}

/// What a reconcile sees of a store, for deciding whether it is due.
#[derive(Debug, Clone, Copy)]
struct Sighting<'a> {
    uid: &'a str,
    generation: i64,
    /// Its resourceVersion.
    version: &'a str,
    /// Whether a ThalassaSecret of this shard uses it.
    used: bool,
    /// Whether its status already describes its generation.
    status_current: bool,
}

/// Whether a reconcile of a store checks it now or only waits for its next check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    In(Duration),
}

/// Whether `store` is due for a check (no I/O). A reconcile that is not due (the echo of its own
/// status write, a watch re-list) checks nothing. A store is due when this process has not
/// checked it yet, it changed (spec, UID, or anything else: touching it asks for a check), it
/// became used, or its time came.
/// An unused store this process has not checked yet, whose status already describes its
/// generation (an earlier process checked it), waits a random part of the unused interval, so
/// a restart does not check every idle store at once.
fn due(
    state: Option<&CheckState>,
    seen: &Sighting<'_>,
    checks: &StoreChecks,
    now: Instant,
    jitter: f64,
) -> Due {
    let Sighting {
        uid,
        generation,
        version,
        used,
        status_current,
    } = *seen;
    match state {
        Some(state) if state.uid == uid && state.generation == generation => {
            if used && !state.used || state.version != version || now >= state.due {
                Due::Now
            } else {
                Due::In(state.due - now)
            }
        }
        Some(_) => Due::Now,
        None if !used && status_current => Due::In(checks.unused.mul_f64(jitter.clamp(0.0, 1.0))),
        None => Due::Now,
    }
}

/// The delay until the next check of a store (no I/O): the unused interval for a store no
/// resource uses; for a used one, the check interval while it works or needs a person, and
/// after the `failures`-th failure in a row expected to pass by itself,
/// `retry × 2^(failures−1)` scaled by a jitter factor in [0.8, 1.2), at most the check interval.
fn next_delay(checks: &StoreChecks, used: bool, failures: u32, jitter: f64) -> Duration {
    if !used {
        return checks.unused;
    }
    if failures == 0 {
        return checks.interval;
    }
    let exponential = checks
        .retry
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exponential
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
        .min(checks.interval)
}

/// Whether a ThalassaSecret of this shard names the store.
fn store_used(ctx: &Context, key: &StoreKey) -> bool {
    let (kind, namespace, name) = key;
    ctx.resources.state().iter().any(|ts| {
        super::refers_to(ts, *kind, name)
            && (*kind == StoreKind::ClusterThalassaSecretStore
                || ts.metadata.namespace == *namespace)
    })
}

/// Drops the check state of stores that no longer exist.
pub(super) fn retain_check_state(ctx: &Context) {
    ctx.store_checks
        .lock()
        .expect("store checks lock")
        .retain(|(kind, namespace, name), _| match kind {
            StoreKind::ThalassaSecretStore => ctx
                .stores
                .get(&ObjectRef::new(name).within(namespace.as_deref().unwrap_or_default()))
                .is_some(),
            StoreKind::ClusterThalassaSecretStore => {
                ctx.cluster_stores.get(&ObjectRef::new(name)).is_some()
            }
        });
}

/// Reasons of store conditions.
pub(crate) mod reasons {
    /// The link was checked and works (Ready: every link does).
    pub(crate) const VERIFIED: &str = "Verified";
    /// The link was checked and is broken; the message says how to fix it.
    pub(crate) const CHECK_FAILED: &str = "CheckFailed";
    /// The link could not be checked because an earlier one is broken.
    pub(crate) const NOT_CHECKED: &str = "NotChecked";
}

/// The condition types of a store after `Ready`, `Reconciling` and `Stalled`: one per link of
/// the chain a store check walks, in its order. `Stalled` is True when only a person can fix the
/// store (credentials, a feature gate, its settings); it is still checked again when it changes
/// and every 10 minutes.
const LINKS: [(ConditionType, Link); 4] = [
    (ConditionType::CredentialsValid, Link::Credentials),
    (ConditionType::KmsFeatureEnabled, Link::KmsGate),
    (ConditionType::SecretsFeatureEnabled, Link::SecretsGate),
    (ConditionType::KmsBackendAvailable, Link::KmsBackend),
];

/// Checks a namespaced store and writes its status, when its check is due.
pub(crate) async fn reconcile_store(
    store: Arc<ThalassaSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.caches_synced().await;
    let namespace = store.namespace().unwrap_or_default();
    let key = (
        StoreKind::ThalassaSecretStore,
        Some(namespace.clone()),
        store.name_any(),
    );
    let api = Api::namespaced(ctx.client.clone(), &namespace);
    check_and_report(&ctx, &api, &*store, key, |used| {
        connect::store_connection_for_check(
            &ctx,
            StoreKind::ThalassaSecretStore,
            &store.metadata,
            used,
            || connect::namespaced_store_connection(&ctx, &store),
            |key| connect::namespaced_store_connection_once(&ctx, key, &store),
        )
    })
    .await
}

/// Checks a cluster store and writes its status, when its check is due.
pub(crate) async fn reconcile_cluster_store(
    store: Arc<ClusterThalassaSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.caches_synced().await;
    let key = (
        StoreKind::ClusterThalassaSecretStore,
        None,
        store.name_any(),
    );
    let api = Api::all(ctx.client.clone());
    check_and_report(&ctx, &api, &*store, key, |used| {
        connect::store_connection_for_check(
            &ctx,
            StoreKind::ClusterThalassaSecretStore,
            &store.metadata,
            used,
            || connect::cluster_store_connection(&ctx, &store),
            |key| connect::cluster_store_connection_once(&ctx, key, &store),
        )
    })
    .await
}

/// Walks the chain through the store's connection (if it could be built) and writes the status,
/// when the store's check is due; schedules the next check.
async fn check_and_report<K>(
    ctx: &Context,
    api: &Api<K>,
    store: &K,
    key: StoreKey,
    connection: impl FnOnce(bool) -> Result<Arc<connect::Connection>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + HasStoreStatus,
{
    let checks = ctx.config.store_checks;
    let used = store_used(ctx, &key);
    let uid = store.meta().uid.clone().unwrap_or_default();
    let generation = store.meta().generation.unwrap_or_default();
    let version = store.meta().resource_version.clone().unwrap_or_default();
    let status_current = store
        .store_status()
        .is_some_and(|s| s.observed_generation == Some(generation));
    let when = {
        let states = ctx.store_checks.lock().expect("store checks lock");
        due(
            states.get(&key),
            &Sighting {
                uid: &uid,
                generation,
                version: &version,
                used,
                status_current,
            },
            &checks,
            Instant::now(),
            rand::random::<f64>(),
        )
    };
    if let Due::In(wait) = when {
        // A restart: the status describes this spec; the first check comes later.
        ctx.store_checks
            .lock()
            .expect("store checks lock")
            .entry(key)
            .or_insert_with(|| CheckState {
                uid,
                generation,
                version,
                used,
                failures: 0,
                due: Instant::now() + wait,
            });
        return Ok(Action::requeue(wait));
    }
    debug!(store = %store.name_any(), used, state = ?ctx.store_checks.lock().expect("store checks lock").get(&key), "store check");
    let results = walk_chain(connection(used)).await;
    let next = next_status(store, store.store_status(), &results);
    ctx.metrics.set_store_conditions(
        K::kind(&()).as_ref(),
        store.meta().namespace.as_deref().unwrap_or_default(),
        &store.name_any(),
        next.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())),
    );
    let version = write(api, store, store.store_status(), &next)
        .await?
        .unwrap_or(version);
    let retrying = ConditionType::Reconciling
        .find(&next.conditions)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let mut states = ctx.store_checks.lock().expect("store checks lock");
    let failures = match states.get(&key) {
        Some(s) if retrying && s.uid == uid && s.generation == generation => s.failures + 1,
        _ if retrying => 1,
        _ => 0,
    };
    let delay = next_delay(&checks, used, failures, rand::random::<f64>());
    states.insert(
        key,
        CheckState {
            uid,
            generation,
            version,
            used,
            failures,
            due: Instant::now() + delay,
        },
    );
    Ok(Action::requeue(delay))
}

/// Walks the chain through the store's connection (when it could be built), in the region the
/// store's ThalassaSecrets read in by default: its connection's.
async fn walk_chain(connection: Result<Arc<connect::Connection>>) -> Result<Vec<CheckResult>> {
    let connection = connection?;
    let client = connection.sources.client();
    Ok(check::run_checks(client, &connection.default_region, None, None).await)
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
pub(crate) fn store_error_policy<K>(store: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
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
) -> Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if old == Some(next) {
        debug!("store status unchanged");
        return Ok(None);
    }
    match apply::write_status(api, &store.name_any(), next).await {
        // The store was deleted meanwhile: nothing to report on.
        Err(e) if e.is_kube_not_found() => Ok(None),
        other => other,
    }
}

/// The conditions for one check of a store (no I/O): `Ready`, kstatus's `Reconciling` and
/// `Stalled` (both False when Ready; exactly one True when not), and one per link; transition
/// times kept for conditions whose status did not change.
pub(crate) fn store_conditions(
    previous: &[Condition],
    results: &Result<Vec<CheckResult>>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let stamp = Stamp {
        previous,
        generation,
        now,
    };
    let (health, links) = match results {
        // The connection could not even be built (store being deleted, invalid settings).
        Err(e) => (Health::failed(e, RETRY), Vec::new()),
        Ok(results) => judge_links(results),
    };
    status::kstatus_conditions(health)
        .into_iter()
        .chain(links)
        .map(|c| stamp.condition(c))
        .collect()
}

/// How a store words a retry in its `Reconciling`/`Stalled` messages.
const RETRY: &str = "checking again";

/// The store's health and one condition per link, from the `check` results.
fn judge_links(results: &[CheckResult]) -> (Health, Vec<NewCondition>) {
    let mut links = Vec::with_capacity(LINKS.len());
    let mut first_failure = None;
    let mut lasting = None;
    for (type_, link) in LINKS {
        let result = results.iter().find(|r| r.link == link);
        let (status, reason, message) = match result {
            Some(r) if r.status == CheckStatus::Pass => {
                (ConditionStatus::True, reasons::VERIFIED, r.detail.clone())
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
                (ConditionStatus::False, reasons::CHECK_FAILED, message)
            }
            Some(r) => (
                ConditionStatus::Unknown,
                reasons::NOT_CHECKED,
                r.detail.clone(),
            ),
            None => (
                ConditionStatus::Unknown,
                reasons::NOT_CHECKED,
                "not checked".to_string(),
            ),
        };
        links.push(NewCondition {
            type_,
            status,
            reason,
            message,
        });
    }
    let health = if links.iter().all(|c| c.status == ConditionStatus::True) {
        Health {
            outcome: Outcome::Ready,
            reason: reasons::VERIFIED,
            message: "the connection works: credentials, both feature gates and the KMS backend"
                .to_string(),
            retry: RETRY,
        }
    } else {
        Health {
            outcome: lasting.map_or(Outcome::Retrying, Outcome::NeedsPerson),
            reason: reasons::CHECK_FAILED,
            message: first_failure.unwrap_or_else(|| "a link could not be checked".into()),
            retry: RETRY,
        }
    };
    (health, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn result(link: Link, status: CheckStatus) -> CheckResult {
        CheckResult {
            link,
            status,
            detail: format!("{link} detail"),
            fix: (status == CheckStatus::Fail).then(|| "fix it".to_string()),
            transient: false,
        }
    }

    fn transient(link: Link) -> CheckResult {
        CheckResult {
            transient: true,
            ..result(link, CheckStatus::Fail)
        }
    }

    fn passing() -> Vec<CheckResult> {
        LINKS
            .iter()
            .map(|(_, link)| result(*link, CheckStatus::Pass))
            .collect()
    }

    /// `(Ready, Reconciling, Stalled)` statuses.
    fn kstatus(conditions: &[Condition]) -> (&str, &str, &str) {
        (
            get(conditions, ConditionType::Ready).0,
            get(conditions, ConditionType::Reconciling).0,
            get(conditions, ConditionType::Stalled).0,
        )
    }

    fn get(conditions: &[Condition], type_: ConditionType) -> (&str, &str) {
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    fn checks() -> StoreChecks {
        StoreChecks {
            retry: Duration::from_secs(30),
            interval: Duration::from_secs(600),
            unused: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_defaults_are_the_documented_intervals() {
        assert_eq!(crate::controller::fixtures::config().store_checks, checks());
        assert_eq!(StoreChecks::default(), checks());
    }

    #[test]
    fn a_failing_store_backs_off_exponentially_with_jitter_up_to_the_interval() {
        let c = checks();
        for jitter in [0.0, 0.5, 0.999] {
            let delays: Vec<Duration> = (1..=8).map(|n| next_delay(&c, true, n, jitter)).collect();
            assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
            assert!(delays.iter().all(|d| *d <= c.interval), "{delays:?}");
            assert_eq!(delays[7], c.interval, "capped");
        }
        assert_eq!(next_delay(&c, true, 1, 0.0), Duration::from_secs(24));
        assert_eq!(next_delay(&c, true, 1, 0.5), Duration::from_secs(30));
        assert_eq!(next_delay(&c, true, 3, 0.5), Duration::from_secs(120));
        assert!(next_delay(&c, true, 1, 0.999) < Duration::from_secs(36));
        // A huge run of failures neither overflows nor passes the cap.
        assert_eq!(next_delay(&c, true, u32::MAX, 0.3), c.interval);
        // Working or needing a person: the check interval.
        assert_eq!(next_delay(&c, true, 0, 0.3), c.interval);
        // Unused: the slow interval, failing or not.
        assert_eq!(next_delay(&c, false, 0, 0.3), c.unused);
        assert_eq!(next_delay(&c, false, 5, 0.3), c.unused);
    }

    fn seen<'a>(
        uid: &'a str,
        generation: i64,
        version: &'a str,
        used: bool,
        status_current: bool,
    ) -> Sighting<'a> {
        Sighting {
            uid,
            generation,
            version,
            used,
            status_current,
        }
    }

    #[test]
    fn a_store_is_checked_only_when_due() {
        let c = checks();
        let now = Instant::now();
        let state = CheckState {
            uid: "u".into(),
            generation: 2,
            version: "v1".into(),
            used: false,
            failures: 3,
            due: now + Duration::from_secs(100),
        };
        // Not due: the echo of a status write, a re-list, a label edit.
        assert_eq!(
            due(Some(&state), &seen("u", 2, "v1", false, true), &c, now, 0.5),
            Due::In(Duration::from_secs(100))
        );
        // Its time came.
        let later = now + Duration::from_secs(100);
        assert_eq!(
            due(
                Some(&state),
                &seen("u", 2, "v1", false, true),
                &c,
                later,
                0.5
            ),
            Due::Now
        );
        // A new spec, a new object, or a store that became used: at once.
        assert_eq!(
            due(Some(&state), &seen("u", 3, "v1", false, true), &c, now, 0.5),
            Due::Now
        );
        assert_eq!(
            due(Some(&state), &seen("v", 2, "v1", false, true), &c, now, 0.5),
            Due::Now
        );
        assert_eq!(
            due(Some(&state), &seen("u", 2, "v1", true, true), &c, now, 0.5),
            Due::Now
        );
        // Touched (an annotation, a label): at once.
        assert_eq!(
            due(Some(&state), &seen("u", 2, "v2", false, true), &c, now, 0.5),
            Due::Now
        );
        // First sight in this process: checked now, unless unused with a status of this spec.
        assert_eq!(
            due(None, &seen("u", 2, "v1", true, true), &c, now, 0.5),
            Due::Now
        );
        assert_eq!(
            due(None, &seen("u", 2, "v1", false, false), &c, now, 0.5),
            Due::Now
        );
        assert_eq!(
            due(None, &seen("u", 2, "v1", false, true), &c, now, 0.25),
            Due::In(Duration::from_secs(900))
        );
    }

    #[test]
    fn a_store_is_ready_only_when_every_link_works() {
        let all = Ok(LINKS
            .iter()
            .map(|(_, link)| result(*link, CheckStatus::Pass))
            .collect::<Vec<_>>());
        let first = store_conditions(&[], &all, Some(1), &at(1));
        assert_eq!(
            get(&first, ConditionType::Ready),
            ("True", reasons::VERIFIED)
        );
        assert_eq!(kstatus(&first), ("True", "False", "False"));
        assert_eq!(first.len(), 7);
        assert!(first.iter().all(|c| c.observed_generation == Some(1)));

        let broken = Ok(vec![
            result(Link::Credentials, CheckStatus::Fail),
            result(Link::KmsGate, CheckStatus::Skipped),
        ]);
        let next = store_conditions(&first, &broken, Some(1), &at(2));
        assert_eq!(
            get(&next, ConditionType::Ready),
            ("False", reasons::CHECK_FAILED)
        );
        assert_eq!(
            get(&next, ConditionType::CredentialsValid),
            ("False", reasons::CHECK_FAILED)
        );
        assert_eq!(
            get(&next, ConditionType::KmsFeatureEnabled),
            ("Unknown", reasons::NOT_CHECKED)
        );
        let ready = next
            .iter()
            .find(|c| c.type_ == ConditionType::Ready)
            .unwrap();
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
        assert_eq!(
            get(&conditions, ConditionType::Ready),
            ("False", "StoreNotReady")
        );
        assert_eq!(kstatus(&conditions), ("False", "False", "True"));
        assert_eq!(
            get(&conditions, ConditionType::Stalled),
            ("True", "StoreNotReady")
        );
    }

    #[test]
    fn missing_credentials_stall_the_store_until_fixed() {
        let missing = Ok(vec![
            result(Link::Credentials, CheckStatus::Fail),
            result(Link::KmsGate, CheckStatus::Skipped),
            result(Link::SecretsGate, CheckStatus::Skipped),
            result(Link::KmsBackend, CheckStatus::Skipped),
        ]);
        let stalled = store_conditions(&[], &missing, Some(1), &at(1));
        assert_eq!(kstatus(&stalled), ("False", "False", "True"));
        let message = &stalled
            .iter()
            .find(|c| c.type_ == ConditionType::Stalled)
            .unwrap()
            .message;
        assert!(
            message.starts_with("CredentialsValid: ") && message.ends_with("fix it"),
            "Stalled says what is broken and how to fix it: {message}"
        );
        // Fixed with a new generation: every condition at it, Stalled flipped.
        let fixed = store_conditions(&stalled, &Ok(passing()), Some(2), &at(5));
        assert_eq!(kstatus(&fixed), ("True", "False", "False"));
        let stalled_now = fixed
            .iter()
            .find(|c| c.type_ == ConditionType::Stalled)
            .unwrap();
        assert_eq!(stalled_now.last_transition_time, at(5));
        assert!(fixed.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn a_failure_that_passes_by_itself_is_reconciling_not_stalled() {
        let mut down = passing();
        down[3] = transient(Link::KmsBackend);
        let conditions = store_conditions(&[], &Ok(down.clone()), Some(1), &at(1));
        assert_eq!(kstatus(&conditions), ("False", "True", "False"));
        assert_eq!(
            get(&conditions, ConditionType::KmsBackendAvailable),
            ("False", reasons::CHECK_FAILED)
        );
        // With a failure only a person can fix as well, the store is stalled.
        down[1] = result(Link::KmsGate, CheckStatus::Fail);
        let conditions = store_conditions(&conditions, &Ok(down), Some(1), &at(2));
        assert_eq!(kstatus(&conditions), ("False", "False", "True"));
        // Stalled names the failure a person must fix, even behind a transient one.
        let mut mixed = passing();
        mixed[0] = transient(Link::Credentials);
        mixed[2] = result(Link::SecretsGate, CheckStatus::Fail);
        let conditions = store_conditions(&[], &Ok(mixed), Some(1), &at(1));
        let stalled = conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Stalled)
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
