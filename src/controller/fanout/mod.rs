//! The `ClusterThalassaSecret` controller: one `ThalassaSecret` copy per selected namespace that
//! the cluster store allows.
//!
//! A reconcile is observe (the watch caches, and one GET per namespace that would get a new copy,
//! to never adopt a ThalassaSecret someone else created) → [`plan::plan`] (no I/O) → write the
//! copies (server-side apply) and delete the ones no longer wanted (with a UID precondition) →
//! write the status when it changed. It makes no Thalassa call of its own: each copy is an
//! ordinary ThalassaSecret, reconciled by the ThalassaSecret controller.
//!
//! Copies carry an ownerReference to the cluster resource, so Kubernetes garbage collection
//! removes them with it: no finalizer on the resource, and none on any namespace. A namespace
//! being deleted is simply no longer selected.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{debug, info, warn};

use crate::{
    cluster_secret::{CLUSTER_SECRET_LABEL, ClusterThalassaSecret, ClusterThalassaSecretStatus},
    crd::{FIELD_MANAGER, StoreKind, ThalassaSecret},
    error::{Error, Result, kube_summary},
    status::{ConditionStatus, ConditionType, Stamp, kstatus_conditions, now},
    store::ClusterThalassaSecretStore,
};

mod plan;

use plan::{CopyHealth, CopyView, NamespaceView};

/// How often a fan-out is looked at again without any event (the watches bring every change;
/// this only repairs what a lost event would leave).
const RESYNC: Duration = Duration::from_secs(300);

/// The caches a fan-out reads.
struct FanoutContext {
    client: Client,
    /// Copies: ThalassaSecrets carrying [`CLUSTER_SECRET_LABEL`].
    copies: Store<ThalassaSecret>,
    /// Namespace metadata.
    namespaces: Store<PartialObjectMeta<Namespace>>,
    cluster_stores: Store<ClusterThalassaSecretStore>,
}

/// Runs the fan-out controller until `shutdown` resolves (cluster mode only). `shard` selects the
/// ClusterThalassaSecrets this shard serves.
pub(crate) async fn run(
    client: Client,
    shard: watcher::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (copies, copy_writer) = reflector::store();
    let (namespaces, namespace_writer) = reflector::store();
    let (cluster_stores, store_writer) = reflector::store();
    let controller = Controller::new(Api::<ClusterThalassaSecret>::all(client.clone()), shard);
    let (all, by_store) = (controller.store(), controller.store());
    let copy_stream = reflector(
        copy_writer,
        watcher(
            Api::<ThalassaSecret>::all(client.clone()),
            watcher::Config::default().labels(CLUSTER_SECRET_LABEL),
        )
        .modify(super::strip_cached_metadata),
    )
    .default_backoff()
    .touched_objects();
    let namespace_stream = reflector(
        namespace_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(super::strip_cached_metadata),
    )
    .default_backoff()
    .touched_objects();
    let store_stream = reflector(
        store_writer,
        watcher(
            Api::<ClusterThalassaSecretStore>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(super::strip_cached_metadata),
    )
    .default_backoff()
    .touched_objects();
    let ctx = Arc::new(FanoutContext {
        client,
        copies,
        namespaces,
        cluster_stores,
    });
    controller
        .watches_stream(copy_stream, |copy: ThalassaSecret| {
            copy.labels()
                .get(CLUSTER_SECRET_LABEL)
                .map(|name| ObjectRef::new(name))
        })
        .watches_stream(namespace_stream, move |_: PartialObjectMeta<Namespace>| {
            every(&all, |_| true)
        })
        .watches_stream(store_stream, move |store: ClusterThalassaSecretStore| {
            let name = store.name_any();
            every(&by_store, |cts| reads_through(cts, &name))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "fan-out loop error");
            }
        })
        .await;
}

fn every(
    store: &Store<ClusterThalassaSecret>,
    keep: impl Fn(&ClusterThalassaSecret) -> bool,
) -> Vec<ObjectRef<ClusterThalassaSecret>> {
    store
        .state()
        .iter()
        .filter(|cts| keep(cts))
        .map(|cts| ObjectRef::from_obj(&**cts))
        .collect()
}

fn reads_through(cts: &ClusterThalassaSecret, store: &str) -> bool {
    cts.spec
        .template
        .spec
        .store_ref
        .as_ref()
        .is_some_and(|r| r.kind == StoreKind::ClusterThalassaSecretStore && r.name == store)
}

fn error_policy(cts: Arc<ClusterThalassaSecret>, error: &Error, _: Arc<FanoutContext>) -> Action {
    warn!(name = %cts.name_any(), reason = error.reason().as_str(), error = %error, "fan-out failed");
    Action::requeue(Duration::from_secs(30))
}

/// observe → plan → write copies → write status.
async fn reconcile(cts: Arc<ClusterThalassaSecret>, ctx: Arc<FanoutContext>) -> Result<Action> {
    // An empty cache would make every copy look missing (or every namespace unselected).
    for ready in [
        ctx.copies.wait_until_ready().await,
        ctx.namespaces.wait_until_ready().await,
        ctx.cluster_stores.wait_until_ready().await,
    ] {
        ready.map_err(|_| Error::Internal("a fan-out cache was dropped".into()))?;
    }
    if cts.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the copies.
        return Ok(Action::await_change());
    }
    let namespaces: Vec<NamespaceView> = ctx
        .namespaces
        .state()
        .iter()
        .map(|n| NamespaceView::of(n))
        .collect();
    let store = cts
        .spec
        .template
        .spec
        .store_ref
        .as_ref()
        .and_then(|r| ctx.cluster_stores.get(&ObjectRef::new(&r.name)));
    let (copies, mut taken) = observe_copies(&cts, &ctx.copies);
    let candidates = plan::creation_candidates(&cts, &namespaces, store.as_deref(), &copies);
    taken.extend(name_taken(&ctx.client, &plan::copy_name(&cts), candidates).await?);
    let plan = plan::plan(
        &cts,
        &plan::Inputs {
            namespaces: &namespaces,
            store: store.as_deref(),
            copies: &copies,
            taken: &taken,
        },
    );
    let mut failed = plan.failed.clone();
    write_copies(&ctx.client, &cts, &plan, &mut failed).await;
    write_status(&ctx.client, &cts, &plan, failed).await?;
    Ok(Action::requeue(RESYNC))
}

/// The copies this resource created, and the namespaces where a labelled ThalassaSecret of the
/// copy's name is not ours (left alone).
fn observe_copies(
    cts: &ClusterThalassaSecret,
    cache: &Store<ThalassaSecret>,
) -> (Vec<CopyView>, BTreeSet<String>) {
    let name = plan::copy_name(cts);
    let mut copies = Vec::new();
    let mut taken = BTreeSet::new();
    for ts in cache.state() {
        if ts.labels().get(CLUSTER_SECRET_LABEL) != Some(&cts.name_any()) {
            continue;
        }
        let namespace = ts.namespace().unwrap_or_default();
        if !plan::is_our_copy(&ts, cts) {
            if ts.name_any() == name {
                taken.insert(namespace);
            }
            continue;
        }
        copies.push(CopyView {
            namespace,
            uid: ts.uid().unwrap_or_default(),
            stale: plan::is_stale(&ts, cts),
            health: copy_health(&ts),
        });
    }
    copies.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    (copies, taken)
}

/// A copy's Ready condition, if it reported on its current generation.
fn copy_health(ts: &ThalassaSecret) -> Option<CopyHealth> {
    let status = ts.status.as_ref()?;
    if status.observed_generation != ts.meta().generation {
        return None;
    }
    let ready = ConditionType::Ready.find(&status.conditions)?;
    let stalled = ConditionType::Stalled
        .find(&status.conditions)
        .is_some_and(|c| c.status == ConditionStatus::True);
    Some(CopyHealth {
        ready: ready.status == ConditionStatus::True,
        stalled,
        reason: ready.reason.clone(),
        message: ready.message.clone(),
    })
}

/// Of the namespaces where a new copy would be created, those already holding a ThalassaSecret
/// of the copy's name (one GET each; the label-selected cache cannot see unlabelled ones).
async fn name_taken(
    client: &Client,
    name: &str,
    candidates: Vec<String>,
) -> Result<BTreeSet<String>> {
    let mut taken = BTreeSet::new();
    for namespace in candidates {
        let api: Api<ThalassaSecret> = Api::namespaced(client.clone(), &namespace);
        if api.get_metadata_opt(name).await?.is_some() {
            taken.insert(namespace);
        }
    }
    Ok(taken)
}

/// Applies and deletes what the plan decided; a failed write is reported for its namespace.
async fn write_copies(
    client: &Client,
    cts: &ClusterThalassaSecret,
    plan: &plan::Plan,
    failed: &mut Vec<crate::cluster_secret::FailedNamespace>,
) {
    let name = plan::copy_name(cts);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for namespace in &plan.apply {
        let api: Api<ThalassaSecret> = Api::namespaced(client.clone(), namespace);
        let copy = plan::render_copy(cts, namespace);
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(&copy)).await {
            report_write_failure(failed, namespace, "write", &e);
        } else {
            info!(cluster_secret = %cts.name_any(), namespace = %namespace, "copy written");
        }
    }
    for (namespace, uid) in &plan.delete {
        let api: Api<ThalassaSecret> = Api::namespaced(client.clone(), namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                info!(cluster_secret = %cts.name_any(), namespace = %namespace, "copy deleted")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => report_write_failure(failed, namespace, "delete", &e),
        }
    }
    failed.sort_by(|a, b| a.namespace.cmp(&b.namespace));
}

fn report_write_failure(
    failed: &mut Vec<crate::cluster_secret::FailedNamespace>,
    namespace: &str,
    what: &str,
    error: &kube::Error,
) {
    warn!(namespace = %namespace, error = %kube_summary(error), "cannot {what} a copy");
    failed.push(crate::cluster_secret::FailedNamespace {
        namespace: namespace.to_string(),
        reason: crate::error::Reason::KubernetesError.as_str().to_string(),
        message: format!("cannot {what} the copy: {}", kube_summary(error)),
    });
}

/// Writes the status when it differs from the stored one (conditions keep their transition
/// times while they do not flip).
async fn write_status(
    client: &Client,
    cts: &ClusterThalassaSecret,
    plan: &plan::Plan,
    failed: Vec<crate::cluster_secret::FailedNamespace>,
) -> Result<()> {
    let old = cts.status.clone().unwrap_or_default();
    let now = now();
    let stamp = Stamp {
        previous: &old.conditions,
        generation: cts.meta().generation,
        now: &now,
    };
    let status = ClusterThalassaSecretStatus {
        observed_generation: cts.meta().generation,
        conditions: kstatus_conditions(plan.health.clone())
            .into_iter()
            .map(|c| stamp.condition(c))
            .collect(),
        selected_namespaces: count(plan.selected),
        copies: count(plan.copies),
        ready_copies: count(plan.ready),
        failed_count: count(failed.len()),
        failed_namespaces: plan::listed(&failed),
    };
    if status == old {
        return Ok(());
    }
    let api: Api<ClusterThalassaSecret> = Api::all(client.clone());
    super::apply::write_status(&api, &cts.name_any(), &status).await?;
    Ok(())
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
