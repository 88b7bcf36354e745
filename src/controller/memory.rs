//! What this process remembers between reconciles: one [`ResourceMemory`] per `ThalassaSecret`
//! in one map, plus the resourceVersion of each target Secret as last written or verified.
//!
//! In: what a reconcile learned (a status write's resourceVersion, a failure and its backoff
//! cap, a deterministic failure with the inputs it depended on, a force-sync honoured, a target
//! name found taken, a template compile check, a Secret written or verified). Out: named
//! answers (`is_stale`, `rejection_for`, `count_failure`, ...). No I/O; nothing here survives a
//! restart, and every answer is only ever an optimisation or a rate limit, never correctness.
//! Deleted resources are dropped by one [`Memory::retain`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use kube::runtime::reflector::ObjectRef;

use crate::{crd::ThalassaSecret, error::Error, template::TemplateError};

/// A resource's key in the memory.
type Key = ObjectRef<ThalassaSecret>;

/// The inputs a deterministic failure depended on. While they stay the same the failure is
/// reported again without revealing anything; any change (spec, a source version, the target
/// Secret) makes the next reconcile try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Attempt {
    pub(super) generation: Option<i64>,
    pub(super) desired: BTreeMap<String, u64>,
    pub(super) target_rv: Option<String>,
    /// Keyed hash of the resolved templates (a ConfigMap edit changes it, not the generation).
    pub(super) templates: Option<String>,
    /// A force-sync value not handled yet (a new one tries again).
    pub(super) force: Option<String>,
}

/// A deterministic failure and what it depended on.
struct Rejection {
    attempt: Attempt,
    error: Arc<Error>,
}

/// A resource's run of failed reconciles.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Consecutive failures so far.
    count: u32,
    /// The backoff cap: the resource's refresh interval, `None` when its spec is invalid.
    retry_cap: Option<Duration>,
}

/// The outcome of compiling one resource's templates: their keyed hash, and whether they
/// compiled (a template's own error is deterministic).
type TemplateCheck = (String, Result<(), TemplateError>);

/// Everything the process remembers about one resource.
#[derive(Default)]
struct ResourceMemory {
    /// Its run of failures, for backoff (none after a success).
    failures: Option<Failures>,
    /// The last deterministic failure, with the inputs it depended on.
    rejection: Option<Rejection>,
    /// The resourceVersion our last status write gave it.
    status_written: Option<String>,
    /// The force-sync value its last forced sync handled.
    force_handled: Option<String>,
    /// When its last forced sync was honoured (`--force-sync-min-interval`).
    forced_at: Option<Instant>,
    /// The rotate-generated value being (or last) handled, and the paths a new generated
    /// version was stored for under it: a retry after a partial failure rotates only the rest.
    rotation: Option<(String, std::collections::BTreeSet<String>)>,
    /// A create without a read found its target name taken: it reads first (until it syncs).
    name_taken: bool,
    /// The last compile check of its templates: unchanged templates are not compiled again.
    template_check: Option<TemplateCheck>,
}

/// The process's memory of resources and of the Secrets they wrote.
#[derive(Default)]
pub(super) struct Memory {
    resources: Mutex<HashMap<Key, ResourceMemory>>,
    /// resourceVersion of each managed Secret (namespace, name) as last written or verified by
    /// this process. Keyed by the Secret, not the resource: it describes the Secret as seen,
    /// whichever resource saw it, and is dropped when the Secret's owner is gone.
    verified: Mutex<HashMap<(String, String), String>>,
}

impl Memory {
    fn resources(&self) -> MutexGuard<'_, HashMap<Key, ResourceMemory>> {
        self.resources.lock().expect("memory lock")
    }

    /// Reads what is remembered of `key` (nothing remembered reads as the default).
    fn read<T>(&self, key: &Key, read: impl FnOnce(&ResourceMemory) -> T) -> T {
        match self.resources().get(key) {
            Some(memory) => read(memory),
            None => read(&ResourceMemory::default()),
        }
    }

    /// Changes what is remembered of `key`.
    fn update<T>(&self, key: &Key, update: impl FnOnce(&mut ResourceMemory) -> T) -> T {
        update(self.resources().entry(key.clone()).or_default())
    }

    /// Remembers the resourceVersion our status write gave a resource.
    pub(super) fn note_status_written(&self, ts: &ThalassaSecret, resource_version: String) {
        self.update(&ObjectRef::from_obj(ts), |m| {
            m.status_written = Some(resource_version);
        });
    }

    /// True when the copy in hand is older than our last status write of it. resourceVersions
    /// are compared as numbers (etcd revisions); one that is not a number is never called stale.
    pub(super) fn is_stale(&self, ts: &ThalassaSecret) -> bool {
        let ours = self.read(&ObjectRef::from_obj(ts), |m| m.status_written.clone());
        let Some(ours) = ours else {
            return false;
        };
        match (
            ours.parse::<u64>(),
            ts.metadata
                .resource_version
                .as_deref()
                .map(str::parse::<u64>),
        ) {
            (Ok(ours), Some(Ok(seen))) => seen < ours,
            _ => false,
        }
    }

    /// Remembers, for `error_policy`, the backoff cap of a resource whose reconcile failed.
    pub(super) fn note_retry_cap(&self, key: &Key, retry_cap: Option<Duration>) {
        self.update(key, |m| {
            m.failures
                .get_or_insert(Failures {
                    count: 0,
                    retry_cap,
                })
                .retry_cap = retry_cap;
        });
    }

    /// Counts one more failure; returns the count and the backoff cap (`default_cap` when the
    /// reconcile did not run to note one).
    pub(super) fn count_failure(
        &self,
        key: &Key,
        default_cap: Duration,
    ) -> (u32, Option<Duration>) {
        self.update(key, |m| {
            let failures = m.failures.get_or_insert(Failures {
                count: 0,
                // error_policy without a noted cap (the reconcile did not run): retry soon.
                retry_cap: Some(default_cap),
            });
            failures.count = failures.count.saturating_add(1);
            (failures.count, failures.retry_cap)
        })
    }

    /// Forgets the failures of a resource that synced: its backoff, its remembered rejection
    /// and a target name found taken.
    pub(super) fn forget_failures(&self, key: &Key) {
        if let Some(m) = self.resources().get_mut(key) {
            m.failures = None;
            m.rejection = None;
            m.name_taken = false;
        }
    }

    /// The failure remembered for exactly these inputs: the same failure again, without trying.
    pub(super) fn rejection_for(&self, key: &Key, attempt: &Attempt) -> Option<Arc<Error>> {
        self.read(key, |m| {
            m.rejection
                .as_ref()
                .filter(|r| r.attempt == *attempt)
                .map(|r| r.error.clone())
        })
    }

    /// Remembers a deterministic failure with the inputs it depended on; returns it shared.
    pub(super) fn remember_rejection(
        &self,
        key: &Key,
        attempt: Attempt,
        error: Error,
    ) -> Arc<Error> {
        let error = Arc::new(error);
        self.update(key, |m| {
            m.rejection = Some(Rejection {
                attempt,
                error: error.clone(),
            });
        });
        error
    }

    /// True when a create without a read found the resource's target name taken.
    pub(super) fn is_name_taken(&self, key: &Key) -> bool {
        self.read(key, |m| m.name_taken)
    }

    /// Remembers that the resource's target name was taken: it reads first from now on.
    pub(super) fn note_name_taken(&self, key: &Key) {
        self.update(key, |m| m.name_taken = true);
    }

    /// True when the resource's last forced sync handled `value`.
    pub(super) fn is_force_handled(&self, key: &Key, value: &str) -> bool {
        self.read(key, |m| m.force_handled.as_deref() == Some(value))
    }

    /// Remembers the force-sync value the resource's forced sync handled.
    pub(super) fn note_force_handled(&self, key: &Key, value: &str) {
        self.update(key, |m| m.force_handled = Some(value.to_string()));
    }

    /// True when a new generated version of `path` was stored for the rotate-generated `value`.
    pub(super) fn is_rotated(&self, key: &Key, value: &str, path: &str) -> bool {
        self.read(key, |m| {
            m.rotation
                .as_ref()
                .is_some_and(|(v, paths)| v == value && paths.contains(path))
        })
    }

    /// Remembers that a new generated version of `path` was stored for the rotate-generated
    /// `value` (a newer value starts a new record).
    pub(super) fn note_rotated(&self, key: &Key, value: &str, path: &str) {
        self.update(key, |m| match &mut m.rotation {
            Some((v, paths)) if v == value => {
                paths.insert(path.to_string());
            }
            rotation => {
                *rotation = Some((value.to_string(), [path.to_string()].into()));
            }
        });
    }

    /// Honours a forced sync now (remembering when), unless one was honoured less than
    /// `interval` ago: then how long it must still wait.
    pub(super) fn claim_forced_sync(
        &self,
        key: &Key,
        now: Instant,
        interval: Duration,
    ) -> Option<Duration> {
        self.update(key, |m| {
            let wait = force_wait(m.forced_at, now, interval);
            if wait.is_none() {
                m.forced_at = Some(now);
            }
            wait
        })
    }

    /// The outcome of the last compile check of the resource's templates, if they had `hash`.
    pub(super) fn template_check(
        &self,
        key: &Key,
        hash: &str,
    ) -> Option<Result<(), TemplateError>> {
        self.read(key, |m| {
            m.template_check
                .as_ref()
                .filter(|(checked, _)| checked == hash)
                .map(|(_, result)| result.clone())
        })
    }

    /// Remembers the outcome of compiling the resource's templates with keyed hash `hash`.
    pub(super) fn remember_template_check(
        &self,
        key: &Key,
        hash: String,
        result: Result<(), TemplateError>,
    ) {
        self.update(key, |m| m.template_check = Some((hash, result)));
    }

    /// The resourceVersion of Secret `namespace/name` as this process last wrote or verified it.
    pub(super) fn verified_rv(&self, namespace: &str, name: &str) -> Option<String> {
        self.verified
            .lock()
            .expect("verified lock")
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Remembers the resourceVersion of Secret `namespace/name` as written or verified.
    pub(super) fn note_verified(&self, namespace: &str, name: &str, resource_version: String) {
        self.verified
            .lock()
            .expect("verified lock")
            .insert((namespace.to_string(), name.to_string()), resource_version);
    }

    /// Drops the memory of resources that no longer `exist`, and of Secrets whose `owner`
    /// (the resource named in the cached Secret's owner annotation) no longer exists: a Secret
    /// whose resource is gone (deleted, or moved to another shard) is verified again by its next
    /// owner, if any.
    pub(super) fn retain(
        &self,
        exists: impl Fn(&Key) -> bool,
        owner: impl Fn(&str, &str) -> Option<Key>,
    ) {
        self.resources().retain(|key, _| exists(key));
        self.verified
            .lock()
            .expect("verified lock")
            .retain(|(namespace, name), _| owner(namespace, name).is_some_and(|o| exists(&o)));
    }
}

/// How long a forced sync must still wait when the last one was honoured at `last` (no I/O).
fn force_wait(last: Option<Instant>, now: Instant, interval: Duration) -> Option<Duration> {
    let elapsed = now.saturating_duration_since(last?);
    (elapsed < interval).then(|| interval - elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::base;

    #[test]
    fn a_force_sync_waits_for_the_rest_of_its_interval() {
        let interval = Duration::from_secs(60);
        let start = Instant::now();
        assert_eq!(
            force_wait(None, start, interval),
            None,
            "the first is at once"
        );
        assert_eq!(
            force_wait(Some(start), start + Duration::from_secs(20), interval),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            force_wait(Some(start), start + interval, interval),
            None,
            "at the end of the interval"
        );
        assert_eq!(
            force_wait(Some(start + interval), start, interval),
            Some(interval),
            "a clock that went backwards waits the whole interval"
        );
    }

    #[test]
    fn a_copy_older_than_our_status_write_is_stale() {
        let memory = Memory::default();
        let mut ts = base("Owner", "Opaque");
        ts.metadata.resource_version = Some("9".into());
        assert!(!memory.is_stale(&ts), "nothing written yet");
        memory.note_status_written(&ts, "10".into());
        assert!(memory.is_stale(&ts));
        ts.metadata.resource_version = Some("10".into());
        assert!(!memory.is_stale(&ts));
        memory.note_status_written(&ts, "not-a-number".into());
        ts.metadata.resource_version = Some("1".into());
        assert!(!memory.is_stale(&ts), "not a number: never stale");
    }

    #[test]
    fn a_success_forgets_failures_rejections_and_a_taken_name_but_not_the_rest() {
        let memory = Memory::default();
        let ts = base("Owner", "Opaque");
        let key = ObjectRef::from_obj(&ts);
        let attempt = Attempt {
            generation: Some(1),
            desired: BTreeMap::from([("/a/b".to_string(), 1)]),
            target_rv: None,
            templates: None,
            force: None,
        };
        memory.note_retry_cap(&key, Some(Duration::from_secs(60)));
        assert_eq!(
            memory.count_failure(&key, Duration::from_secs(5)),
            (1, Some(Duration::from_secs(60)))
        );
        assert_eq!(memory.count_failure(&key, Duration::from_secs(5)).0, 2);
        memory.remember_rejection(&key, attempt.clone(), Error::TemplateTurnTaken);
        assert!(memory.rejection_for(&key, &attempt).is_some());
        let other = Attempt {
            generation: Some(2),
            ..attempt.clone()
        };
        assert!(memory.rejection_for(&key, &other).is_none(), "new inputs");
        memory.note_name_taken(&key);
        memory.note_force_handled(&key, "v1");
        memory.forget_failures(&key);
        assert!(memory.rejection_for(&key, &attempt).is_none());
        assert!(!memory.is_name_taken(&key));
        assert!(memory.is_force_handled(&key, "v1"));
        assert_eq!(
            memory.count_failure(&key, Duration::from_secs(5)),
            (1, Some(Duration::from_secs(5))),
            "without a noted cap: the default"
        );
    }

    #[test]
    fn pruning_drops_gone_resources_and_secrets_whose_owner_is_gone() {
        let memory = Memory::default();
        let ts = base("Owner", "Opaque");
        let key = ObjectRef::from_obj(&ts);
        memory.note_name_taken(&key);
        memory.note_verified("team", "app", "5".into());
        memory.note_verified("team", "orphan", "6".into());
        memory.retain(
            |k| *k == key,
            |_, name| (name == "app").then(|| key.clone()),
        );
        assert!(memory.is_name_taken(&key));
        assert_eq!(memory.verified_rv("team", "app").as_deref(), Some("5"));
        assert_eq!(memory.verified_rv("team", "orphan"), None);
        memory.retain(|_| false, |_, _| Some(key.clone()));
        assert!(!memory.is_name_taken(&key));
        assert_eq!(memory.verified_rv("team", "app"), None);
    }
}
