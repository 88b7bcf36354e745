//! The `ThalassaSecret` controller: the shared [`Context`], the watches and [`run`].
//!
//! A reconcile ([`reconcile`]) is a short driver over steps that each return what they
//! observed or decided: [`validate`] (no API calls), `resolve` (reads Thalassa), `plan` (no API
//! calls), `apply` (writes the Secret, the status and Events). The data-hash key is bootstrapped
//! in `hashkey`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource,
    api::PartialObjectMeta,
    runtime::{
        Controller, Predicate, WatchStreamExt,
        events::{Recorder, Reporter},
        predicates, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use crate::{
    config::Config,
    crd::{MANAGED_SELECTOR, ThalassaSecret},
    metrics::Metrics,
    readiness::Readiness,
    render::HashKey,
    sources::SourceCache,
    thalassa,
};

mod apply;
#[cfg(test)]
mod fixtures;
mod hashkey;
mod plan;
mod reconcile;
mod resolve;
mod validate;

pub use hashkey::load_or_create_hash_key;
use reconcile::Rejection;
pub use reconcile::{error_policy, reconcile};
pub use validate::{PathSource, ValidatedSpec, validate};

/// `lastCheckTime` is rewritten at most this often when nothing else in status changes.
const CHECK_TIME_REFRESH: Duration = Duration::from_secs(600);
/// First delay after a failure; doubles per consecutive failure, capped at the refresh interval.
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Operator configuration.
    pub config: Config,
    /// Shared, coalesced Thalassa access.
    pub sources: SourceCache,
    /// One recorder for all Events, so repeated events are merged into series.
    pub recorder: Recorder,
    /// Key for data hashes.
    pub hash_key: HashKey,
    /// Metadata of managed Secrets (label-selected; no values).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// resourceVersion of each managed Secret as last written or verified by this process.
    verified: Mutex<HashMap<(String, String), String>>,
    /// Consecutive failures per resource, for backoff.
    failures: Mutex<HashMap<ObjectRef<ThalassaSecret>, Failures>>,
    /// The last deterministic failure per resource, with the inputs it depended on.
    rejected: Mutex<HashMap<ObjectRef<ThalassaSecret>, Rejection>>,
    /// True once the managed-Secret watch has listed everything.
    secrets_synced: tokio::sync::watch::Sender<bool>,
    /// Caps how many periodic checks run at once, so new and edited resources always find a
    /// free reconcile slot.
    periodic_lane: Semaphore,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: Config,
        thalassa: thalassa::Client,
        hash_key: HashKey,
        secrets: Store<PartialObjectMeta<Secret>>,
        reporter: Reporter,
        metrics: Arc<Metrics>,
    ) -> Self {
        let periodic_slots = usize::from(config.concurrency / 2).max(1);
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            sources: SourceCache::new(thalassa),
            hash_key,
            secrets,
            verified: Mutex::default(),
            failures: Mutex::default(),
            rejected: Mutex::default(),
            secrets_synced: tokio::sync::watch::Sender::new(false),
            periodic_lane: Semaphore::new(periodic_slots),
            metrics,
        }
    }
}

/// A resource's run of failed reconciles.
#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    /// Consecutive failures so far.
    count: u32,
    /// The backoff cap: the resource's refresh interval, `None` when its spec is invalid.
    retry_cap: Option<Duration>,
}

impl Context {
    /// Remembers, for `error_policy`, the backoff cap of a resource whose reconcile failed.
    fn note_retry_cap(&self, key: &ObjectRef<ThalassaSecret>, retry_cap: Option<Duration>) {
        self.failures
            .lock()
            .expect("failures lock")
            .entry(key.clone())
            .or_default()
            .retry_cap = retry_cap;
    }

    /// Counts one more failure; returns the count and the backoff cap.
    fn count_failure(&self, key: &ObjectRef<ThalassaSecret>) -> (u32, Option<Duration>) {
        let mut map = self.failures.lock().expect("failures lock");
        let failures = map.entry(key.clone()).or_insert(Failures {
            count: 0,
            // error_policy without a noted cap (the reconcile did not run): retry soon.
            retry_cap: Some(self.config.default_refresh_interval),
        });
        failures.count = failures.count.saturating_add(1);
        (failures.count, failures.retry_cap)
    }

    /// Forgets the failures of a resource that synced.
    fn forget_failures(&self, key: &ObjectRef<ThalassaSecret>) {
        self.failures.lock().expect("failures lock").remove(key);
        self.rejected.lock().expect("rejected lock").remove(key);
    }

    /// Waits until the managed-Secret cache has synced (at once afterwards).
    async fn secret_cache_synced(&self) {
        let mut synced = self.secrets_synced.subscribe();
        // The sender lives in the context, so the channel never closes while we wait.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Drops per-resource state of resources that no longer exist.
    fn retain_resources(&self, exists: impl Fn(&ObjectRef<ThalassaSecret>) -> bool) {
        self.failures
            .lock()
            .expect("failures lock")
            .retain(|k, _| exists(k));
        self.rejected
            .lock()
            .expect("rejected lock")
            .retain(|k, _| exists(k));
    }
}

/// Maps a managed Secret to the `ThalassaSecret` named in its owner annotation.
fn owner_of(secret: PartialObjectMeta<Secret>) -> Option<ObjectRef<ThalassaSecret>> {
    let namespace = secret.metadata.namespace.as_deref()?;
    let owner = crate::render::named_owner(&secret.metadata)?;
    Some(ObjectRef::new(owner).within(namespace))
}

/// Drops what the operator never reads from cached objects (managedFields and kubectl's
/// last-applied copy), which would otherwise dominate memory at scale.
fn strip_cached_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Tracks the first complete listing of each watch, to report readiness.
struct SyncedWatches {
    readiness: Readiness,
    secrets: AtomicBool,
    resources: AtomicBool,
}

impl SyncedWatches {
    fn observe<K>(&self, event: &watcher::Event<K>, flag: impl Fn(&Self) -> &AtomicBool) {
        if matches!(event, watcher::Event::InitDone) {
            flag(self).store(true, Ordering::SeqCst);
            if self.secrets.load(Ordering::SeqCst)
                && self.resources.load(Ordering::SeqCst)
                && !self.readiness.get()
            {
                self.readiness.set(true);
                info!("caches synced; ready");
            }
        }
    }
}

/// Everything `run` needs besides the clients.
pub struct RunSettings {
    /// Data-hash key.
    pub hash_key: HashKey,
    /// Event reporter identity.
    pub reporter: Reporter,
    /// Metrics shared with the HTTP server and the Thalassa client.
    pub metrics: Arc<Metrics>,
    /// Set once the watches have listed everything.
    pub readiness: Readiness,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    thalassa: thalassa::Client,
    settings: RunSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let RunSettings {
        hash_key,
        reporter,
        metrics,
        readiness,
    } = settings;
    let (resources, secrets_api): (Api<ThalassaSecret>, Api<PartialObjectMeta<Secret>>) =
        match &config.watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let (secret_store, secret_writer) = reflector::store();
    let (resource_store, resource_writer) = reflector::store();
    let concurrency = config.concurrency;
    let ctx = Arc::new(Context::new(
        client,
        config,
        thalassa,
        hash_key,
        secret_store,
        reporter,
        metrics.clone(),
    ));
    // Ready once both watches have listed everything (the caches are synced). Seen on the
    // streams themselves: `Store::wait_until_ready` wakes only one waiter, and the controller
    // already waits on the resource store.
    let synced = Arc::new(SyncedWatches {
        readiness,
        secrets: AtomicBool::new(false),
        resources: AtomicBool::new(false),
    });
    let secrets_synced = synced.clone();
    let secrets_ctx = ctx.clone();
    let secret_stream = reflector(
        secret_writer,
        watcher(
            secrets_api,
            watcher::Config::default().labels(MANAGED_SELECTOR),
        )
        .modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| {
        secrets_synced.observe(event, |s| &s.secrets);
        if matches!(event, watcher::Event::InitDone) {
            // Reconciles wait for this: a resource whose Secret is not in the cache yet would
            // look new and reveal every source.
            secrets_ctx.secrets_synced.send_replace(true);
        }
    })
    .default_backoff()
    .touched_objects();

    let resources_synced = synced.clone();
    // Status writes bump resourceVersion but not generation: filtering on generation (and
    // annotations) keeps our own status patches from re-triggering reconciles.
    let resource_stream = reflector(
        resource_writer,
        watcher(resources, watcher::Config::default().any_semantic()).modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| resources_synced.observe(event, |s| &s.resources))
    .default_backoff()
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::annotations),
        Default::default(),
    );

    // State of deleted resources is dropped (deletions do not reach the reconciler).
    let prune_store = resource_store.clone();
    let prune_ctx = ctx.clone();
    let prune_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            prune_ctx.metrics.retain_resources(|ns, name| {
                prune_store.get(&ObjectRef::new(name).within(ns)).is_some()
            });
            prune_ctx.retain_resources(|key| prune_store.get(key).is_some());
        }
    });

    Controller::for_stream(resource_stream, resource_store)
        .watches_stream(secret_stream, owner_of)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile loop error");
            }
        })
        .await;
    prune_task.abort();
}
