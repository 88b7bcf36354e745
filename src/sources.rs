//! Shared, coalesced access to Thalassa for all `ThalassaSecret`s.
//!
//! Version checks are metadata listings (`GET /secrets?pathPrefix=`) keyed by region and prefix
//! and shared by every resource reading paths under that prefix: a listing younger than the
//! caller's `max_age` is reused, and concurrent callers await one in-flight request. Reveals of the
//! same path and version are coalesced while in flight, and never cached afterwards (no value
//! outlives the reconcile that needed it).
//!
//! A directory is listed only while the listing is worth its size: once a listing has shown how
//! many secrets a directory holds, explicit paths asked for under it are checked with per-path
//! metadata calls (each single-flight and cached like a listing) when they are few against that
//! count ([`prefer_per_path`]); otherwise, and whenever a fresh listing of it exists anyway, the
//! listing serves them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};

use crate::thalassa::{self, KmsKeyStatus, KmsSummary, ListedSecret, RevealedSecret};

/// Shared result of a coalesced call.
type SharedResult<T> = Shared<BoxFuture<'static, Result<Arc<T>, Arc<thalassa::Error>>>>;

/// Region, path and version (`None` = current) of one reveal.
type RevealKey = (String, String, Option<u64>);

/// The metadata the operator needs about one source secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMeta {
    /// Latest active version.
    pub(crate) current_version: u64,
    /// Identity of the bound KMS key, when reported.
    pub(crate) kms_key_identity: Option<String>,
    /// Status of the bound KMS key, when reported.
    pub(crate) kms_key_status: Option<KmsKeyStatus>,
}

impl From<ListedSecret> for SourceMeta {
    fn from(secret: ListedSecret) -> Self {
        let (kms_key_identity, kms_key_status) = match secret.kms_key {
            Some(key) => (Some(key.identity), Some(key.status)),
            None => (None, None),
        };
        SourceMeta {
            current_version: secret.current_version,
            kms_key_identity,
            kms_key_status,
        }
    }
}

/// Explicit paths are checked one by one instead of listing their directory when the directory
/// held at least this many times as many secrets as are watched under it…
pub(crate) const PER_PATH_RATIO: usize = 16;

/// …and at most this many paths are watched under it (so per-path checks of one directory cost at
/// most this many calls per check interval).
pub(crate) const PER_PATH_MAX: usize = 64;

/// Whether `watched` explicit paths under a directory whose last listing showed `listed`
/// secrets (`None`: never listed) are cheaper to check one by one than by listing it.
pub(crate) fn prefer_per_path(watched: usize, listed: Option<usize>) -> bool {
    listed.is_some_and(|listed| {
        watched > 0 && watched <= PER_PATH_MAX && watched.saturating_mul(PER_PATH_RATIO) <= listed
    })
}

/// One listing of every secret under a prefix.
#[derive(Debug)]
pub(crate) struct Listing {
    /// Path to metadata.
    pub(crate) secrets: BTreeMap<String, SourceMeta>,
}

struct Slot<T> {
    started: Instant,
    call: SharedResult<T>,
}

impl<T> Slot<T> {
    /// Reusable while younger than `max_age` and not a finished failure (failures are retried by
    /// the next caller instead of being served from the cache).
    fn usable(&self, max_age: Duration) -> bool {
        self.started.elapsed() <= max_age && !matches!(self.call.peek(), Some(Err(_)))
    }
}

/// Counts of calls made and calls saved, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Listings requested from Thalassa.
    pub(crate) listings_fetched: u64,
    /// Listing requests served by a fresh or in-flight listing.
    pub(crate) listings_shared: u64,
    /// Reveals requested from Thalassa.
    pub(crate) reveals_fetched: u64,
    /// Reveal requests that joined an in-flight reveal.
    pub(crate) reveals_coalesced: u64,
    /// Per-path metadata checks requested from Thalassa (instead of a listing).
    pub(crate) metadata_fetched: u64,
    /// Per-path metadata checks served by a fresh or in-flight one.
    pub(crate) metadata_shared: u64,
}

/// Region and directory (or prefix).
type PrefixKey = (String, String);

/// Shared Thalassa access for all resources.
pub(crate) struct SourceCache {
    client: thalassa::Client,
    listings: Mutex<HashMap<PrefixKey, Slot<Listing>>>,
    /// Number of secrets the last listing of each prefix showed.
    sizes: Arc<Mutex<HashMap<PrefixKey, usize>>>,
    /// Explicit paths asked for under each directory, with when they were last asked for.
    watched: Mutex<HashMap<PrefixKey, HashMap<String, Instant>>>,
    /// Per-path metadata checks, keyed by region and path.
    metas: Mutex<HashMap<(String, String), Slot<SourceMeta>>>,
    summary: Mutex<Option<Slot<KmsSummary>>>,
    reveals: Mutex<HashMap<RevealKey, SharedResult<RevealedSecret>>>,
    stats: Mutex<CacheStats>,
}

/// Listings (and per-path checks, and watched paths not asked for since) older than this are
/// dropped from memory when the next one is stored.
const LISTING_EVICT_AFTER: Duration = Duration::from_secs(3600);

impl SourceCache {
    /// Wraps a client.
    pub(crate) fn new(client: thalassa::Client) -> Self {
        SourceCache {
            client,
            listings: Mutex::default(),
            sizes: Arc::default(),
            watched: Mutex::default(),
            metas: Mutex::default(),
            summary: Mutex::default(),
            reveals: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// The underlying client.
    pub(crate) fn client(&self) -> &thalassa::Client {
        &self.client
    }

    /// Counters of fetched and shared calls.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> CacheStats {
        *self.stats.lock().expect("stats lock")
    }

    /// Every secret under `prefix` in `region`, from a listing no older than `max_age`.
    pub(crate) async fn listing(
        &self,
        region: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Result<Arc<Listing>, Arc<thalassa::Error>> {
        let key = (region.to_string(), prefix.to_string());
        let (call, shared) = {
            let mut listings = self.listings.lock().expect("listings lock");
            single_flight(&mut listings, key.clone(), max_age, || {
                let client = self.client.clone();
                let sizes = Arc::clone(&self.sizes);
                async move {
                    // Only entries under the prefix are kept (the client drops the rest while
                    // parsing), so a listing holds what this prefix names, however large the
                    // server's answer.
                    let listed = match client.list_secret_metadata(&key.0, &key.1).await {
                        Ok(thalassa::Listed::Entries(listed)) => listed,
                        Ok(thalassa::Listed::TooMany(count)) => {
                            // Remembered, so explicit paths under it are checked one by one.
                            sizes.lock().expect("sizes lock").insert(key.clone(), count);
                            return Err(Arc::new(thalassa::Error::InvalidResponse {
                                operation: "listSecrets",
                                detail: format!(
                                    "the listing of {} names more than {} secrets; list a narrower prefix",
                                    key.1,
                                    thalassa::MAX_LISTED_SECRETS
                                ),
                            }));
                        }
                        Err(e) => return Err(Arc::new(e)),
                    };
                    let secrets: BTreeMap<String, SourceMeta> = listed
                        .into_iter()
                        .map(|s| (s.path.clone(), SourceMeta::from(s)))
                        .collect();
                    sizes.lock().expect("sizes lock").insert(key, secrets.len());
                    Ok(Arc::new(Listing { secrets }))
                }
                .boxed()
            })
        };
        {
            let mut stats = self.stats.lock().expect("stats lock");
            if shared {
                stats.listings_shared += 1;
            } else {
                stats.listings_fetched += 1;
            }
        }
        call.await
    }

    /// Whether the explicit `paths` (all directly under `dir`) are to be checked one by one
    /// rather than through a listing of `dir`. Records them as watched under `dir`; a listing of
    /// `dir` younger than `max_age` (or in flight) is always used, and otherwise the choice is
    /// [`prefer_per_path`] over every path watched under `dir` in the last hour and the size of
    /// its last listing. Choosing per-path drops the stale listing, so its memory is freed.
    pub(crate) fn check_per_path(
        &self,
        region: &str,
        dir: &str,
        paths: &[&str],
        max_age: Duration,
    ) -> bool {
        let key = (region.to_string(), dir.to_string());
        let watched = {
            let mut watched = self.watched.lock().expect("watched lock");
            let now = Instant::now();
            let entry = watched.entry(key.clone()).or_default();
            for path in paths {
                entry.insert((*path).to_string(), now);
            }
            entry.retain(|_, asked| asked.elapsed() < LISTING_EVICT_AFTER);
            entry.len()
        };
        let mut listings = self.listings.lock().expect("listings lock");
        if listings.get(&key).is_some_and(|slot| slot.usable(max_age)) {
            return false;
        }
        let size = self.sizes.lock().expect("sizes lock").get(&key).copied();
        let per_path = prefer_per_path(watched, size);
        if per_path {
            listings.remove(&key);
        }
        per_path
    }

    /// Metadata of one watched path, from a check no older than `max_age`; concurrent callers
    /// share one request. The per-path counterpart of [`SourceCache::listing`].
    pub(crate) async fn checked_metadata(
        &self,
        region: &str,
        path: &str,
        max_age: Duration,
    ) -> Result<Arc<SourceMeta>, Arc<thalassa::Error>> {
        let key = (region.to_string(), path.to_string());
        let (call, shared) = {
            let mut metas = self.metas.lock().expect("metas lock");
            single_flight(&mut metas, key.clone(), max_age, || {
                let client = self.client.clone();
                async move {
                    client
                        .get_secret(&key.0, &key.1, false)
                        .await
                        .map(|s| Arc::new(SourceMeta::from(ListedSecret::from(s))))
                        .map_err(Arc::new)
                }
                .boxed()
            })
        };
        {
            let mut stats = self.stats.lock().expect("stats lock");
            if shared {
                stats.metadata_shared += 1;
            } else {
                stats.metadata_fetched += 1;
            }
        }
        call.await
    }

    /// The KMS summary (feature gate and per-region availability), no older than `max_age`.
    pub(crate) async fn summary(
        &self,
        max_age: Duration,
    ) -> Result<Arc<KmsSummary>, Arc<thalassa::Error>> {
        let call = {
            let mut summary = self.summary.lock().expect("summary lock");
            match summary.as_ref() {
                Some(slot) if slot.usable(max_age) => slot.call.clone(),
                _ => {
                    let client = self.client.clone();
                    let call =
                        async move { client.kms_summary().await.map(Arc::new).map_err(Arc::new) }
                            .boxed()
                            .shared();
                    *summary = Some(Slot {
                        started: Instant::now(),
                        call: call.clone(),
                    });
                    call
                }
            }
        };
        call.await
    }

    /// Forgets what the cache knows of `path` (its per-path check and its directory's listing):
    /// after the operator created the secret there, neither may answer "not there" again.
    pub(crate) fn forget_path(&self, region: &str, path: &str) {
        let dir = (region.to_string(), parent_prefix(path).to_string());
        self.listings.lock().expect("listings lock").remove(&dir);
        self.metas
            .lock()
            .expect("metas lock")
            .remove(&(region.to_string(), path.to_string()));
    }

    /// Metadata of one secret, for a path a listing did not show (missing, or not readable by the
    /// listing's filter): the direct call tells a definite 404 from a 403.
    pub(crate) async fn metadata(
        &self,
        region: &str,
        path: &str,
    ) -> Result<SourceMeta, Arc<thalassa::Error>> {
        self.client
            .get_secret(region, path, false)
            .await
            .map(|s| SourceMeta::from(ListedSecret::from(s)))
            .map_err(Arc::new)
    }

    /// Reveals one version (or the current one). Concurrent reveals of the same path and version
    /// share one request; nothing is kept once it completes.
    pub(crate) async fn reveal(
        &self,
        region: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Arc<RevealedSecret>, Arc<thalassa::Error>> {
        let key = (region.to_string(), path.to_string(), version);
        let call = {
            let mut reveals = self.reveals.lock().expect("reveals lock");
            match reveals.get(&key) {
                Some(call) => {
                    self.stats.lock().expect("stats lock").reveals_coalesced += 1;
                    call.clone()
                }
                None => {
                    self.stats.lock().expect("stats lock").reveals_fetched += 1;
                    let client = self.client.clone();
                    let (region, path, version) = key.clone();
                    let call = async move {
                        client
                            .get_secret_value(&region, &path, version)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared();
                    reveals.insert(key.clone(), call.clone());
                    call
                }
            }
        };
        let joined = Joined {
            cache: self,
            key,
            call,
        };
        joined.call.clone().await
    }
}

/// One caller's share of an in-flight reveal. When it ends, the entry is removed if the reveal
/// completed (the first finisher removes it; later callers of the same key start a new reveal,
/// so a value is never served after its reveal completed) or if no other caller waits for it:
/// a reveal every caller gave up on (a resource that stopped at its size limit) is dropped with
/// its partly read body and the budget that body holds, instead of staying in the map.
struct Joined<'a> {
    cache: &'a SourceCache,
    key: RevealKey,
    call: SharedResult<RevealedSecret>,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        let mut reveals = self.cache.reveals.lock().expect("reveals lock");
        // Not completed: the map's clone and this one are all that is left when nobody else
        // waits (the clone this caller awaited is dropped before this guard).
        let abandoned =
            self.call.peek().is_some() || self.call.strong_count().is_none_or(|count| count <= 2);
        if abandoned
            && reveals
                .get(&self.key)
                .is_some_and(|current| current.ptr_eq(&self.call))
        {
            reveals.remove(&self.key);
        }
    }
}

/// The call in `slots` for `key` when it is usable within `max_age` (`true`: shared), else a new
/// shared call from `start`, stored after dropping entries older than [`LISTING_EVICT_AFTER`].
fn single_flight<T>(
    slots: &mut HashMap<(String, String), Slot<T>>,
    key: (String, String),
    max_age: Duration,
    start: impl FnOnce() -> BoxFuture<'static, Result<Arc<T>, Arc<thalassa::Error>>>,
) -> (SharedResult<T>, bool) {
    if let Some(slot) = slots.get(&key)
        && slot.usable(max_age)
    {
        return (slot.call.clone(), true);
    }
    let call = start().shared();
    slots.retain(|_, slot| slot.started.elapsed() < LISTING_EVICT_AFTER);
    slots.insert(
        key,
        Slot {
            started: Instant::now(),
            call: call.clone(),
        },
    );
    (call, false)
}

/// The directory a listing for `path` covers: its parent, with a trailing `/`.
pub(crate) fn parent_prefix(path: &str) -> &str {
    match path.rfind('/') {
        Some(idx) => &path[..=idx],
        None => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_path_only_for_few_paths_in_a_known_large_directory() {
        // Never listed: list first, which tells the directory's size.
        assert!(!prefer_per_path(1, None));
        // The benchmark's two directories with 50 watched paths.
        assert!(!prefer_per_path(50, Some(200)));
        assert!(prefer_per_path(50, Some(3_100)));
        // The boundary of the ratio.
        assert!(prefer_per_path(4, Some(4 * PER_PATH_RATIO)));
        assert!(!prefer_per_path(4, Some(4 * PER_PATH_RATIO - 1)));
        // Small directories are always listed (one call covers every path).
        assert!(!prefer_per_path(1, Some(PER_PATH_RATIO - 1)));
        assert!(!prefer_per_path(5, Some(5)));
        // Never more than PER_PATH_MAX calls per check for one directory.
        assert!(prefer_per_path(PER_PATH_MAX, Some(1_000_000)));
        assert!(!prefer_per_path(PER_PATH_MAX + 1, Some(1_000_000)));
        assert!(!prefer_per_path(0, Some(1_000)));
    }

    #[tokio::test]
    async fn a_reveal_every_caller_abandoned_leaves_the_map() {
        // A server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = thalassa::Client::new(thalassa::ClientConfig::new(
            url,
            "org",
            thalassa::Credentials::BearerToken("token".into()),
        ))
        .unwrap();
        let cache = SourceCache::new(client);
        let in_flight = || cache.reveals.lock().unwrap().len();
        let mut first = Box::pin(cache.reveal("nl-01", "/a/b", Some(1)));
        let mut second = Box::pin(cache.reveal("nl-01", "/a/b", Some(1)));
        let _accepted = tokio::select! {
            _ = &mut first => panic!("the server never answers"),
            accepted = listener.accept() => accepted.unwrap(),
        };
        assert!(futures::poll!(&mut second).is_pending());
        assert_eq!(cache.stats().reveals_coalesced, 1);
        assert_eq!(in_flight(), 1);
        // One of two callers gives up: the other still waits for the same reveal.
        drop(first);
        assert_eq!(in_flight(), 1);
        drop(second);
        assert_eq!(in_flight(), 0, "nobody waits: the reveal is dropped");
    }

    #[test]
    fn parent_prefix_is_the_directory() {
        assert_eq!(parent_prefix("/app/prod/db/password"), "/app/prod/db/");
        assert_eq!(parent_prefix("/x"), "/");
    }
}
