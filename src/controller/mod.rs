//! The `ThalassaSecret` controller: the shared [`Context`], the watches and [`run`].
//!
//! A reconcile ([`reconcile`]) is a short driver (validate → connect → observe → sync → plan
//! status → report) over steps that each return what they observed or decided: [`validate`] (no
//! API calls), `sync` (the steps of one sync, over `resolve`: reads Thalassa, `plan`: no API
//! calls, and `apply`: writes the Secret, the status and Events). What the process remembers
//! between reconciles is in `memory`; the context otherwise holds shared services. The
//! data-hash key is bootstrapped in `hashkey`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
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
    crd::{MANAGED_SELECTOR, StoreKind, TEMPLATE_CONFIGMAP_SELECTOR, ThalassaSecret},
    metrics::Metrics,
    readiness::Readiness,
    render::HashKey,
    sources::SourceCache,
    store::{ClusterThalassaSecretStore, ThalassaSecretStore},
    thalassa,
};
use connect::{Connection, ConnectionKey};

mod apply;
mod config_maps;
mod connect;
mod fanout;
#[cfg(test)]
mod fixtures;
mod generate;
mod hashkey;
mod lanes;
mod memory;
mod plan;
mod push;
mod reconcile;
mod resolve;
mod restart;
#[cfg(test)]
mod scenarios;
mod stores;
mod sync;
mod validate;

pub use hashkey::load_or_create_hash_key;
pub(crate) use reconcile::{error_policy, reconcile};
pub use validate::{PathSource, ValidatedSpec, validate};

/// `lastCheckTime` is rewritten at most this often when nothing else in status changes.
const CHECK_TIME_REFRESH: Duration = Duration::from_secs(600);
/// First delay after a failure; doubles per consecutive failure, capped at the refresh interval.
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// The watched caches the controller reads besides the resources themselves.
pub(crate) struct Caches {
    /// Managed Secrets (metadata).
    pub(crate) secrets: Store<PartialObjectMeta<Secret>>,
    /// Namespaced stores.
    pub(crate) stores: Store<ThalassaSecretStore>,
    /// Cluster stores.
    pub(crate) cluster_stores: Store<ClusterThalassaSecretStore>,
    /// Namespace metadata (cluster mode).
    pub(crate) namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// Metadata of ConfigMaps labelled as templates.
    pub(crate) template_config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// This shard's ThalassaSecrets: which stores are in use.
    pub(crate) resources: Store<ThalassaSecret>,
}

/// What the context shares besides the clients and the caches.
pub(crate) struct Services {
    /// Key for data hashes.
    pub(crate) hash_key: HashKey,
    /// Event reporter identity.
    pub(crate) reporter: Reporter,
    /// Prometheus metrics.
    pub(crate) metrics: Arc<Metrics>,
}

/// Shared services of the controller: clients, caches, limits, metrics, and the [`Memory`]
/// of what happened to each resource.
///
/// [`Memory`]: memory::Memory
pub(crate) struct Context {
    /// Kubernetes client.
    pub(crate) client: Client,
    /// Operator configuration.
    pub(crate) config: Config,
    /// The operator's own connection (flags and environment), if configured, for the namespaces
    /// allowed to use it.
    default_connection: Option<Arc<Connection>>,
    /// The rate limit and reveal cap every connection shares.
    shared_limits: thalassa::SharedLimits,
    /// Connections built from stores, by store identity: caches are never shared across them.
    connections: Mutex<HashMap<ConnectionKey, Arc<Connection>>>,
    /// Namespaced stores.
    stores: Store<ThalassaSecretStore>,
    /// Cluster stores.
    cluster_stores: Store<ClusterThalassaSecretStore>,
    /// Namespace labels, for cluster stores' namespace selectors (cluster mode only).
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// One recorder for all Events, so repeated events are merged into series.
    pub(crate) recorder: Recorder,
    /// Key for data hashes.
    pub(crate) hash_key: HashKey,
    /// Metadata of managed Secrets (label-selected; no values).
    pub(crate) secrets: Store<PartialObjectMeta<Secret>>,
    /// ConfigMaps labelled as templates (label-selected metadata; data read when used), for
    /// `templateFrom`.
    pub(crate) template_config_maps: config_maps::TemplateConfigMaps,
    /// What this process remembers about each resource (failures, rejections, status writes,
    /// force-syncs, ...) and about the Secrets it wrote.
    memory: memory::Memory,
    /// The stores whose status this process writes (its shard's), once their watches run.
    shard_stores: std::sync::OnceLock<ShardStores>,
    /// True once every watch the reconciles read (Secrets, stores, namespaces) has listed
    /// everything.
    caches_synced: tokio::sync::watch::Sender<bool>,
    /// Caps how many periodic checks run at once, so new and edited resources always find a
    /// free reconcile slot.
    periodic_lane: Semaphore,
    /// Each namespace's share of the reconcile slots.
    lanes: lanes::TenantLanes,
    /// Prometheus metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The HTTP client every store's connection shares (TLS roots and pool held once).
    store_http: reqwest::Client,
    /// This shard's ThalassaSecrets, to tell used stores from unused ones.
    resources: Store<ThalassaSecret>,
    /// When each store is checked next, and its run of failures (per-store backoff).
    store_checks: Mutex<HashMap<stores::StoreKey, stores::CheckState>>,
}

impl Context {
    /// Builds the context.
    pub(crate) fn new(
        client: Client,
        config: Config,
        thalassa: Option<thalassa::Client>,
        caches: Caches,
        services: Services,
    ) -> Self {
        let Services {
            hash_key,
            reporter,
            metrics,
        } = services;
        let periodic_slots = usize::from(config.concurrency / 2).max(1);
        let config_concurrency = config.concurrency;
        let shared_limits = thalassa.as_ref().map_or_else(
            || thalassa::SharedLimits::of(&config.thalassa),
            thalassa::Client::shared_limits,
        );
        let default_connection = thalassa.map(|client| {
            Arc::new(Connection {
                sources: SourceCache::new(client),
                default_region: config.default_region.clone(),
                identity: crate::crd::DEFAULT_CONNECTION.into(),
            })
        });
        let template_config_maps =
            config_maps::TemplateConfigMaps::new(client.clone(), caches.template_config_maps);
        let config_thalassa = config.thalassa.clone();
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            default_connection,
            shared_limits,
            connections: Mutex::default(),
            stores: caches.stores,
            cluster_stores: caches.cluster_stores,
            namespaces: caches.namespaces,
            hash_key,
            secrets: caches.secrets,
            template_config_maps,
            memory: memory::Memory::default(),
            shard_stores: std::sync::OnceLock::new(),
            caches_synced: tokio::sync::watch::Sender::new(false),
            periodic_lane: Semaphore::new(periodic_slots),
            lanes: lanes::TenantLanes::new(usize::from(config_concurrency)),
            metrics,
            store_http: thalassa::Client::http_client(&config_thalassa)
                .expect("the HTTP client for stores builds"),
            resources: caches.resources,
            store_checks: Mutex::default(),
        }
    }
}

/// The stores of this shard: namespaced, and cluster stores in cluster mode.
type ShardStores = (
    Store<ThalassaSecretStore>,
    Option<Store<ClusterThalassaSecretStore>>,
);

impl Context {
    /// Labels of a namespace, when namespaces are watched (cluster mode).
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let namespaces = self.namespaces.as_ref()?;
        namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
    }

    /// Waits until the caches reconciles read have synced (at once afterwards).
    async fn caches_synced(&self) {
        let mut synced = self.caches_synced.subscribe();
        // The sender lives in the context, so the channel never closes while we wait.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Drops what is remembered of resources that no longer exist, and of Secrets whose owner
    /// is gone.
    fn retain_resources(&self, exists: impl Fn(&ObjectRef<ThalassaSecret>) -> bool) {
        self.memory.retain(exists, |namespace, name| {
            self.secrets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|secret| owner_of(&secret))
        });
    }
}

/// Maps a managed Secret to the `ThalassaSecret` named in its owner annotation.
fn owner_of(secret: &PartialObjectMeta<Secret>) -> Option<ObjectRef<ThalassaSecret>> {
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

/// The watches whose first complete listing readiness and reconciles wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    Secrets,
    TemplateConfigMaps,
    Stores,
    ClusterStores,
    Namespaces,
    Resources,
}

/// Tracks the first complete listing of each watch: reconciles start once every cache they read
/// is complete (a Secret or store missing from a cache would make a resource look new or
/// unconfigured), and the operator is ready once everything, resources included, is listed.
struct SyncedWatches {
    readiness: Readiness,
    expected: BTreeSet<Watch>,
    synced: Mutex<BTreeSet<Watch>>,
}

impl SyncedWatches {
    fn observe<K>(&self, ctx: &Context, watch: Watch, event: &watcher::Event<K>) {
        if !matches!(event, watcher::Event::InitDone) {
            return;
        }
        let mut synced = self.synced.lock().expect("synced lock");
        synced.insert(watch);
        let caches_done = self
            .expected
            .iter()
            .filter(|w| **w != Watch::Resources)
            .all(|w| synced.contains(w));
        if caches_done {
            ctx.caches_synced.send_replace(true);
        }
        if self.expected.iter().all(|w| synced.contains(w)) && !self.readiness.get() {
            self.readiness.set(true);
            info!("caches synced; ready");
        }
    }
}

/// Where a watch reports its first complete listing: the tracker, the context, which watch.
type WatchReport = (Arc<SyncedWatches>, Arc<Context>, Watch);

/// A reflector over `api` feeding `writer`, reporting its first listing as `watch`.
fn cached_watch<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    config: watcher::Config,
    (synced, ctx, watch): WatchReport,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflector(writer, watcher(api, config).modify(strip_cached_metadata))
        .inspect_ok(move |event| synced.observe(&ctx, watch, event))
        .default_backoff()
        .touched_objects()
}

/// The resources that read through a store (or, for a namespace, through a cluster store) an
/// event touched.
fn users_of(
    resources: &Store<ThalassaSecret>,
    uses: impl Fn(&ThalassaSecret) -> bool,
) -> Vec<ObjectRef<ThalassaSecret>> {
    resources
        .state()
        .iter()
        .filter(|ts| uses(ts))
        .map(|ts| ObjectRef::from_obj(&**ts))
        .collect()
}

fn refers_to(ts: &ThalassaSecret, kind: StoreKind, name: &str) -> bool {
    ts.spec
        .store_ref
        .as_ref()
        .is_some_and(|r| r.kind == kind && r.name == name)
}

/// True when the resource's templates come (partly) from the ConfigMap `name`.
fn renders_from(ts: &ThalassaSecret, name: &str) -> bool {
    ts.spec
        .target
        .template
        .iter()
        .flat_map(|t| &t.template_from)
        .any(|from| from.config_map.name == name)
}

async fn log_loop_error<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        debug!(error = %e, "reconcile loop error");
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

/// Runs the controller until `shutdown` resolves: the caches and the context, the
/// `ThalassaSecret` controller over its watches, the pruner, then the resource and store
/// controllers side by side until both have shut down.
pub async fn run(
    client: Client,
    config: Config,
    thalassa: Option<thalassa::Client>,
    settings: RunSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let RunSettings {
        hash_key,
        reporter,
        metrics,
        readiness,
    } = settings;
    let namespace = config.watch_namespace.clone();
    let shard = shard_config(config.selector.as_deref());
    // In namespaced mode the operator reads nothing cluster-scoped: no cluster stores, no
    // namespace labels.
    let cluster_mode = namespace.is_none();
    let (caches, writers) = caches(cluster_mode);
    let resource_store = caches.resources.clone();
    let concurrency = config.concurrency;
    let services = Services {
        hash_key,
        reporter,
        metrics,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        thalassa,
        caches,
        services,
    ));
    let synced = Arc::new(SyncedWatches::new(readiness, cluster_mode));
    let watch = |which| (synced.clone(), ctx.clone(), which);
    let controller = resource_controller(&client, (namespace.as_deref(), &shard), writers, watch);

    let prune_task = spawn_pruner(ctx.clone(), resource_store);
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let resources = run_resources(controller, concurrency, ctx.clone(), shutdown.clone());
    // ClusterThalassaSecrets are cluster-scoped: served in cluster mode only.
    let fanout = cluster_mode.then(|| fanout::run(client.clone(), shard.clone(), shutdown.clone()));
    futures::join!(
        resources,
        push::run_push(
            client.clone(),
            (namespace.clone(), shard.clone()),
            ctx.clone(),
            shutdown.clone()
        ),
        run_store_status(client, (namespace, shard), ctx, shutdown),
        async move {
            if let Some(fanout) = fanout {
                fanout.await;
            }
        }
    );
    prune_task.abort();
}

/// The write halves of the watched caches, each handed to the watch that fills it.
struct Writers {
    secrets: reflector::store::Writer<PartialObjectMeta<Secret>>,
    resources: reflector::store::Writer<ThalassaSecret>,
    stores: reflector::store::Writer<ThalassaSecretStore>,
    cluster_stores: reflector::store::Writer<ClusterThalassaSecretStore>,
    namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    template_config_maps: reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
}

/// Every cache the controller reads, created empty: the read halves go into the context, the
/// write halves to the watches. Namespaces are read only in cluster mode.
fn caches(cluster_mode: bool) -> (Caches, Writers) {
    let (secrets, secret_writer) = reflector::store();
    let (resources, resource_writer) = reflector::store();
    let (stores, store_writer) = reflector::store();
    let (cluster_stores, cluster_store_writer) = reflector::store();
    let (namespaces, namespace_writer) = reflector::store();
    let (template_config_maps, config_map_writer) = reflector::store();
    let caches = Caches {
        secrets,
        stores,
        cluster_stores,
        namespaces: cluster_mode.then_some(namespaces),
        template_config_maps,
        resources,
    };
    let writers = Writers {
        secrets: secret_writer,
        resources: resource_writer,
        stores: store_writer,
        cluster_stores: cluster_store_writer,
        namespaces: namespace_writer,
        template_config_maps: config_map_writer,
    };
    (caches, writers)
}

impl SyncedWatches {
    /// Expects the watches this mode starts: the cluster-scoped ones only in cluster mode.
    fn new(readiness: Readiness, cluster_mode: bool) -> Self {
        let mut expected = BTreeSet::from([
            Watch::Secrets,
            Watch::TemplateConfigMaps,
            Watch::Stores,
            Watch::Resources,
        ]);
        if cluster_mode {
            expected.extend([Watch::ClusterStores, Watch::Namespaces]);
        }
        SyncedWatches {
            readiness,
            expected,
            synced: Mutex::default(),
        }
    }
}

/// The `ThalassaSecret` controller over its own watch and the watches of what resources read
/// (managed Secrets, template ConfigMaps, stores; cluster stores and namespaces in cluster
/// mode), each mapping an event to the resources it concerns.
fn resource_controller(
    client: &Client,
    (namespace, shard): (Option<&str>, &watcher::Config),
    writers: Writers,
    watch: impl Fn(Watch) -> WatchReport,
) -> Controller<ThalassaSecret> {
    let resource_store = writers.resources.as_reader();
    let resources = resource_stream(
        writers.resources,
        scoped(client, namespace),
        shard.clone(),
        watch(Watch::Resources),
    );
    let controller = Controller::for_stream(resources, resource_store.clone());
    let controller = watch_namespaced_inputs(
        controller,
        (client, namespace),
        &resource_store,
        (
            writers.secrets,
            writers.template_config_maps,
            writers.stores,
        ),
        &watch,
    );
    if namespace.is_some() {
        return controller;
    }
    watch_cluster_scope(
        controller,
        client,
        &resource_store,
        (writers.cluster_stores, writers.namespaces),
        (watch(Watch::ClusterStores), watch(Watch::Namespaces)),
    )
}

/// This shard's resources, filling `writer`.
///
/// Status writes bump resourceVersion but not generation: filtering on generation (and
/// annotations) keeps our own status patches from re-triggering reconciles.
fn resource_stream(
    writer: reflector::store::Writer<ThalassaSecret>,
    api: Api<ThalassaSecret>,
    shard: watcher::Config,
    (synced, ctx, watch): WatchReport,
) -> impl futures::Stream<Item = Result<ThalassaSecret, watcher::Error>> + Send {
    reflector(
        writer,
        watcher(api, shard.any_semantic()).modify(strip_cached_metadata),
    )
    .inspect_ok(move |event| synced.observe(&ctx, watch, event))
    .default_backoff()
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::annotations),
        Default::default(),
    )
}

/// Managed Secrets trigger their owner; template ConfigMaps and namespaced stores trigger the
/// resources (in their namespace) that use them.
fn watch_namespaced_inputs(
    controller: Controller<ThalassaSecret>,
    (client, namespace): (&Client, Option<&str>),
    resources: &Store<ThalassaSecret>,
    (secret_writer, config_map_writer, store_writer): (
        reflector::store::Writer<PartialObjectMeta<Secret>>,
        reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
        reflector::store::Writer<ThalassaSecretStore>,
    ),
    watch: impl Fn(Watch) -> WatchReport,
) -> Controller<ThalassaSecret> {
    let (users, template_users) = (resources.clone(), resources.clone());
    controller
        .watches_stream(
            cached_watch(
                secret_writer,
                scoped(client, namespace),
                watcher::Config::default().labels(MANAGED_SELECTOR),
                watch(Watch::Secrets),
            ),
            |secret| owner_of(&secret),
        )
        .watches_stream(
            // `PartialObjectMeta`: metadata-only requests; the data is read when a resource
            // names the ConfigMap (`config_maps`).
            cached_watch(
                config_map_writer,
                scoped::<PartialObjectMeta<ConfigMap>>(client, namespace),
                watcher::Config::default().labels(TEMPLATE_CONFIGMAP_SELECTOR),
                watch(Watch::TemplateConfigMaps),
            ),
            move |config_map: PartialObjectMeta<ConfigMap>| {
                let (namespace, name) = (config_map.namespace(), config_map.name_any());
                users_of(&template_users, |ts| {
                    ts.namespace() == namespace && renders_from(ts, &name)
                })
            },
        )
        .watches_stream(
            cached_watch(
                store_writer,
                scoped(client, namespace),
                watcher::Config::default(),
                watch(Watch::Stores),
            ),
            move |store: ThalassaSecretStore| {
                let (namespace, name) = (store.namespace(), store.name_any());
                users_of(&users, |ts| {
                    ts.namespace() == namespace
                        && refers_to(ts, StoreKind::ThalassaSecretStore, &name)
                })
            },
        )
}

/// The `ThalassaSecret` reconcile loop: also woken by the lanes (periodic and deferred work),
/// at most `concurrency` reconciles at once, draining in-flight reconciles on shutdown.
///
/// Not `async`: the controller is assembled (and the lanes' wakeups taken) when this is called,
/// as `run` always did, not when the loop is first polled.
fn run_resources(
    mut controller: Controller<ThalassaSecret>,
    concurrency: u16,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    if let Some(wakeups) = ctx.lanes.take_wakeups() {
        controller = controller.reconcile_on(wakeups);
    }
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(log_loop_error)
}

/// Cluster mode: cluster stores and namespace labels trigger the resources that use them.
fn watch_cluster_scope(
    controller: Controller<ThalassaSecret>,
    client: &Client,
    resources: &Store<ThalassaSecret>,
    (cluster_store_writer, namespace_writer): (
        reflector::store::Writer<ClusterThalassaSecretStore>,
        reflector::store::Writer<PartialObjectMeta<Namespace>>,
    ),
    (cluster_stores_watch, namespaces_watch): (WatchReport, WatchReport),
) -> Controller<ThalassaSecret> {
    let (users, users_ns) = (resources.clone(), resources.clone());
    controller
        .watches_stream(
            cached_watch(
                cluster_store_writer,
                Api::all(client.clone()),
                watcher::Config::default(),
                cluster_stores_watch,
            ),
            move |store: ClusterThalassaSecretStore| {
                let name = store.name_any();
                users_of(&users, |ts| {
                    refers_to(ts, StoreKind::ClusterThalassaSecretStore, &name)
                })
            },
        )
        .watches_stream(
            cached_watch(
                namespace_writer,
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default(),
                namespaces_watch,
            ),
            move |namespace: PartialObjectMeta<Namespace>| {
                let name = namespace.name_any();
                users_of(&users_ns, |ts| {
                    ts.namespace().as_deref() == Some(name.as_str())
                        && ts
                            .spec
                            .store_ref
                            .as_ref()
                            .is_some_and(|r| r.kind == StoreKind::ClusterThalassaSecretStore)
                })
            },
        )
}

/// An API for a namespaced kind: in the watched namespace, or in every namespace.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Drops, every minute, the state of deleted resources and stores (deletions do not reach the
/// reconciler).
fn spawn_pruner(
    ctx: Arc<Context>,
    resources: Store<ThalassaSecret>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            ctx.metrics.retain_resources(|ns, name| {
                resources.get(&ObjectRef::new(name).within(ns)).is_some()
            });
            ctx.retain_resources(|key| resources.get(key).is_some());
            ctx.lanes.retain(|key| resources.get(key).is_some());
            ctx.template_config_maps.retain_used(&resources);
            connect::retain_connections(&ctx);
            stores::retain_store_metrics(&ctx);
            stores::retain_check_state(&ctx);
        }
    })
}

/// The watch of this shard's objects: those matching `--selector`, or all.
fn shard_config(selector: Option<&str>) -> watcher::Config {
    match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

/// Store status: the stores' own watches (few objects), checked through the same cached
/// connections the resources use. Cluster stores only in cluster mode. A shard writes the
/// status of the stores its selector matches, so two shards never both write one store's
/// status (the connection cache still reads every store: any shard's resources may use any).
async fn run_store_status(
    client: Client,
    (namespace, shard): (Option<String>, watcher::Config),
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let cluster_mode = namespace.is_none();
    let stores = Controller::new(
        scoped::<ThalassaSecretStore>(&client, namespace.as_deref()),
        shard.clone(),
    );
    let cluster_stores = cluster_mode
        .then(|| Controller::new(Api::<ClusterThalassaSecretStore>::all(client), shard));
    // The stores whose status this shard writes, for pruning the metrics of those that left.
    let _ = ctx.shard_stores.set((
        stores.store(),
        cluster_stores.as_ref().map(Controller::store),
    ));
    let stores = stores
        .graceful_shutdown_on(shutdown.clone())
        .run(
            stores::reconcile_store,
            stores::store_error_policy,
            ctx.clone(),
        )
        .for_each(log_loop_error);
    match cluster_stores {
        Some(cluster_stores) => {
            let cluster_stores = cluster_stores
                .graceful_shutdown_on(shutdown)
                .run(
                    stores::reconcile_cluster_store,
                    stores::store_error_policy,
                    ctx,
                )
                .for_each(log_loop_error);
            futures::join!(stores, cluster_stores);
        }
        None => stores.await,
    }
}
