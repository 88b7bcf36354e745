//! Shared, coalesced access to Thalassa for all `ThalassaSecret`s.
//!
//! Version checks are metadata listings (`GET /secrets?pathPrefix=`) keyed by region and prefix
//! and shared by every resource reading paths under that prefix: a listing younger than the
//! caller's `max_age` is reused, and concurrent callers await one in-flight request. Reveals of the
//! same path and version are coalesced while in flight, and never cached afterwards (no value
//! outlives the reconcile that needed it).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};

use crate::thalassa::{self, KmsKeyStatus, KmsSummary, RevealedSecret};

/// Shared result of a coalesced call.
type SharedResult<T> = Shared<BoxFuture<'static, Result<Arc<T>, Arc<thalassa::Error>>>>;

/// Region, path and version (`None` = current) of one reveal.
type RevealKey = (String, String, Option<u64>);

/// The metadata the operator needs about one source secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    /// Latest active version.
    pub current_version: u64,
    /// Identity of the bound KMS key, when reported.
    pub kms_key_identity: Option<String>,
    /// Status of the bound KMS key, when reported.
    pub kms_key_status: Option<KmsKeyStatus>,
}

impl From<&thalassa::Secret> for SourceMeta {
    fn from(secret: &thalassa::Secret) -> Self {
        SourceMeta {
            current_version: secret.current_version,
            kms_key_identity: secret.kms_key.as_ref().map(|k| k.identity.clone()),
            kms_key_status: secret.kms_key.as_ref().map(|k| k.status.clone()),
        }
    }
}

/// One listing of every secret under a prefix.
#[derive(Debug)]
pub struct Listing {
    /// Path to metadata.
    pub secrets: BTreeMap<String, SourceMeta>,
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
pub struct CacheStats {
    /// Listings requested from Thalassa.
    pub listings_fetched: u64,
    /// Listing requests served by a fresh or in-flight listing.
    pub listings_shared: u64,
    /// Reveals requested from Thalassa.
    pub reveals_fetched: u64,
    /// Reveal requests that joined an in-flight reveal.
    pub reveals_coalesced: u64,
}

/// Shared Thalassa access for all resources.
pub struct SourceCache {
    client: thalassa::Client,
    listings: Mutex<HashMap<(String, String), Slot<Listing>>>,
    summary: Mutex<Option<Slot<KmsSummary>>>,
    reveals: Mutex<HashMap<RevealKey, SharedResult<RevealedSecret>>>,
    stats: Mutex<CacheStats>,
}

/// Listings older than this are dropped from memory when the next listing is stored.
const LISTING_EVICT_AFTER: Duration = Duration::from_secs(3600);

impl SourceCache {
    /// Wraps a client.
    pub fn new(client: thalassa::Client) -> Self {
        SourceCache {
            client,
            listings: Mutex::default(),
            summary: Mutex::default(),
            reveals: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &thalassa::Client {
        &self.client
    }

    /// Counters of fetched and shared calls.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().expect("stats lock")
    }

    /// Every secret under `prefix` in `region`, from a listing no older than `max_age`.
    pub async fn listing(
        &self,
        region: &str,
        prefix: &str,
        max_age: Duration,
    ) -> Result<Arc<Listing>, Arc<thalassa::Error>> {
        let call = {
            let mut listings = self.listings.lock().expect("listings lock");
            let key = (region.to_string(), prefix.to_string());
            match listings.get(&key) {
                Some(slot) if slot.usable(max_age) => {
                    self.stats.lock().expect("stats lock").listings_shared += 1;
                    slot.call.clone()
                }
                _ => {
                    self.stats.lock().expect("stats lock").listings_fetched += 1;
                    let client = self.client.clone();
                    let (region, prefix) = key.clone();
                    let call = async move {
                        let secrets = client
                            .list_secrets(&region, &prefix)
                            .await
                            .map_err(Arc::new)?;
                        Ok(Arc::new(Listing {
                            secrets: secrets
                                .iter()
                                .map(|s| (s.path.clone(), SourceMeta::from(s)))
                                .collect(),
                        }))
                    }
                    .boxed()
                    .shared();
                    listings.retain(|_, slot| slot.started.elapsed() < LISTING_EVICT_AFTER);
                    listings.insert(
                        key,
                        Slot {
                            started: Instant::now(),
                            call: call.clone(),
                        },
                    );
                    call
                }
            }
        };
        call.await
    }

    /// The KMS summary (feature gate and per-region availability), no older than `max_age`.
    pub async fn summary(
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

    /// Metadata of one secret, for a path a listing did not show (missing, or not readable by the
    /// listing's filter): the direct call tells a definite 404 from a 403.
    pub async fn metadata(
        &self,
        region: &str,
        path: &str,
    ) -> Result<SourceMeta, Arc<thalassa::Error>> {
        self.client
            .get_secret(region, path, false)
            .await
            .map(|s| SourceMeta::from(&s))
            .map_err(Arc::new)
    }

    /// Reveals one version (or the current one). Concurrent reveals of the same path and version
    /// share one request; nothing is kept once it completes.
    pub async fn reveal(
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
        let result = call.clone().await;
        // The first finisher removes the in-flight entry; later callers of the same key start a
        // new reveal, so a value is never served after its reveal completed.
        let mut reveals = self.reveals.lock().expect("reveals lock");
        if reveals
            .get(&key)
            .is_some_and(|current| current.ptr_eq(&call))
        {
            reveals.remove(&key);
        }
        result
    }
}

/// The directory a listing for `path` covers: its parent, with a trailing `/`.
pub fn parent_prefix(path: &str) -> &str {
    match path.rfind('/') {
        Some(idx) => &path[..=idx],
        None => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_prefix_is_the_directory() {
        assert_eq!(parent_prefix("/app/prod/db/password"), "/app/prod/db/");
        assert_eq!(parent_prefix("/x"), "/");
    }
}
