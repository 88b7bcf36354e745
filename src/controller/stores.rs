//! Status of the store kinds: whether each store's connection works, link by link — the chain the
//! `check` command walks (credentials, both feature gates, the regional KMS backend) — checked
//! through the very connection (and cached token) its ThalassaSecrets use, on every change of the
//! store and every [`STORE_CHECK_INTERVAL`].

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
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
    write(api, store, store.store_status(), &results).await?;
    Ok(Action::requeue(STORE_CHECK_INTERVAL))
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

/// Retries a failed status write after a minute.
pub fn store_error_policy<K>(store: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: Resource,
{
    warn!(store = %store.meta().name.clone().unwrap_or_default(), error = %error, "store check failed");
    Action::requeue(Duration::from_secs(60))
}

/// Writes the status computed from `results` when it changed.
async fn write<K>(
    api: &Api<K>,
    store: &K,
    old: Option<&StoreStatus>,
    results: &Result<Vec<CheckResult>>,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let generation = store.meta().generation;
    let next = StoreStatus {
        observed_generation: generation,
        conditions: store_conditions(
            old.map(|s| s.conditions.as_slice()).unwrap_or_default(),
            results,
            generation,
            &status::now(),
        ),
    };
    if old == Some(&next) {
        debug!("store status unchanged");
        return Ok(());
    }
    match apply::write_status(api, &store.name_any(), &next).await {
        // The store was deleted meanwhile: nothing to report on.
        Err(e) if e.is_kube_not_found() => Ok(()),
        other => other,
    }
}

/// The conditions for one check of a store (no I/O): one per link and `Ready`; transition times
/// kept for conditions whose status did not change.
pub fn store_conditions(
    previous: &[Condition],
    results: &Result<Vec<CheckResult>>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let results = match results {
        Ok(results) => results,
        Err(e) => {
            // The connection could not even be built (store being deleted, invalid settings).
            return vec![status::condition(
                previous,
                types::READY,
                "False",
                e.reason().as_str(),
                e.to_string(),
                generation,
                now,
            )];
        }
    };
    let mut all_pass = true;
    let mut links = Vec::with_capacity(LINKS.len());
    let mut first_failure = None;
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
                ("False", reasons::CHECK_FAILED, message)
            }
            Some(r) => ("Unknown", reasons::NOT_CHECKED, r.detail.clone()),
            None => ("Unknown", reasons::NOT_CHECKED, "not checked".to_string()),
        };
        all_pass &= state == "True";
        links.push(status::condition(
            previous, type_, state, reason, message, generation, now,
        ));
    }
    let ready = if all_pass {
        status::condition(
            previous,
            types::READY,
            "True",
            reasons::VERIFIED,
            "the connection works: credentials, both feature gates and the KMS backend".into(),
            generation,
            now,
        )
    } else {
        status::condition(
            previous,
            types::READY,
            "False",
            reasons::CHECK_FAILED,
            first_failure.unwrap_or_else(|| "a link could not be checked".into()),
            generation,
            now,
        )
    };
    std::iter::once(ready).chain(links).collect()
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
        }
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
        assert_eq!(first.len(), 5);

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
    }
}
