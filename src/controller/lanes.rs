//! Fair shares of the reconcile slots between tenants (namespaces).
//!
//! The controller runs at most `--concurrency` reconciles at once, in one queue for everybody.
//! Without a share, one namespace whose resources wait on a slow or hostile Thalassa endpoint
//! (a call may take up to the 45 s call deadline) holds every slot, and another team's new
//! resource waits behind it. So a reconcile first takes a slot in its namespace's lane:
//!
//! - a namespace may hold at most its **share**: (slots − reserve) / active namespaces, at least
//!   one; `reserve` slots (an eighth, at least one) are never taken by a namespace alone, so a
//!   namespace with nothing in flight always finds a free slot;
//! - a reconcile over its namespace's share does not wait in its slot: it joins its namespace's
//!   queue (FIFO, each resource once) and returns; every slot released wakes the next queued
//!   resource of the namespaces, round-robin, that are under their share;
//! - with a single namespace active, it uses every slot but the reserve, so a lone tenant (or a
//!   benchmark in one namespace) loses almost nothing.
//!
//! Why namespaces and not stores: the namespace is the tenant (its editors own its stores and
//! resources), and one namespace may spread its work over many stores to multiply its share.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::crd::ThalassaSecret;

type Key = ObjectRef<ThalassaSecret>;

/// The lanes of every namespace. Cheap to share (`Arc` inside).
pub(crate) struct TenantLanes {
    inner: Arc<Inner>,
    /// Taken once by the controller: the resources to reconcile again because a slot freed up.
    wakeups: Mutex<Option<mpsc::UnboundedReceiver<Key>>>,
}

struct Inner {
    slots: usize,
    reserve: usize,
    state: Mutex<State>,
    wake: mpsc::UnboundedSender<Key>,
}

#[derive(Default)]
struct State {
    in_flight: HashMap<String, usize>,
    /// Queued resources per namespace, oldest first.
    waiting: BTreeMap<String, VecDeque<Key>>,
    /// The namespace woken last (round-robin cursor).
    last_woken: Option<String>,
}

impl State {
    fn active(&self, also: &str) -> usize {
        let mut active = self.in_flight.len();
        active += self
            .waiting
            .keys()
            .filter(|ns| !self.in_flight.contains_key(*ns))
            .count();
        if !self.in_flight.contains_key(also) && !self.waiting.contains_key(also) {
            active += 1;
        }
        active
    }

    fn held(&self, namespace: &str) -> usize {
        self.in_flight.get(namespace).copied().unwrap_or(0)
    }
}

/// A namespace's share of `slots` when `active` namespaces have work.
pub(crate) fn share(slots: usize, reserve: usize, active: usize) -> usize {
    (slots.saturating_sub(reserve) / active.max(1)).max(1)
}

/// The slots kept free of any single namespace.
fn reserve_of(slots: usize) -> usize {
    (slots / 8).max(1)
}

/// A reconcile slot held in a namespace's lane; released on drop.
pub(crate) struct LaneSlot {
    inner: Arc<Inner>,
    namespace: String,
}

impl TenantLanes {
    /// Lanes over `slots` reconcile slots (the controller's concurrency).
    pub(crate) fn new(slots: usize) -> Self {
        let (wake, wakeups) = mpsc::unbounded_channel();
        TenantLanes {
            inner: Arc::new(Inner {
                slots,
                reserve: reserve_of(slots),
                state: Mutex::default(),
                wake,
            }),
            wakeups: Mutex::new(Some(wakeups)),
        }
    }

    /// The stream of resources to reconcile again, for `Controller::reconcile_on`; `None` after
    /// the first call.
    pub(crate) fn take_wakeups(&self) -> Option<impl futures::Stream<Item = Key> + Send + use<>> {
        let receiver = self.wakeups.lock().expect("lanes lock").take()?;
        Some(futures::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|key| (key, receiver)) },
        ))
    }

    /// A slot for `key` in its namespace's lane, or `None` when the namespace holds its share:
    /// then the resource is queued and woken when a slot frees up.
    pub(crate) fn enter(&self, key: &Key) -> Option<LaneSlot> {
        let namespace = key.namespace.clone().unwrap_or_default();
        let mut state = self.inner.state.lock().expect("lanes lock");
        let cap = share(
            self.inner.slots,
            self.inner.reserve,
            state.active(&namespace),
        );
        if state.held(&namespace) < cap {
            *state.in_flight.entry(namespace.clone()).or_default() += 1;
            if let Some(queue) = state.waiting.get_mut(&namespace) {
                queue.retain(|k| k != key);
                if queue.is_empty() {
                    state.waiting.remove(&namespace);
                }
            }
            return Some(LaneSlot {
                inner: self.inner.clone(),
                namespace,
            });
        }
        let queue = state.waiting.entry(namespace).or_default();
        if !queue.contains(key) {
            queue.push_back(key.clone());
        }
        None
    }

    /// Forgets queued resources that no longer exist.
    pub(crate) fn retain(&self, exists: impl Fn(&Key) -> bool) {
        let mut state = self.inner.state.lock().expect("lanes lock");
        state.waiting.retain(|_, queue| {
            queue.retain(&exists);
            !queue.is_empty()
        });
    }

    /// How many resources wait in every lane together.
    #[cfg(test)]
    fn queued(&self) -> usize {
        let state = self.inner.state.lock().expect("lanes lock");
        state.waiting.values().map(VecDeque::len).sum()
    }
}

impl Drop for LaneSlot {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock().expect("lanes lock");
        if let Some(held) = state.in_flight.get_mut(&self.namespace) {
            *held -= 1;
            if *held == 0 {
                state.in_flight.remove(&self.namespace);
            }
        }
        // Round-robin: the first namespace after the last one woken that is under its share.
        let after = state.last_woken.clone();
        let mut order: Vec<String> = state.waiting.keys().cloned().collect();
        if let Some(after) = after {
            let split = order.partition_point(|ns| *ns <= after);
            order.rotate_left(split);
        }
        for namespace in order {
            let cap = share(
                self.inner.slots,
                self.inner.reserve,
                state.active(&namespace),
            );
            if state.held(&namespace) >= cap {
                continue;
            }
            let queue = state.waiting.get_mut(&namespace).expect("listed above");
            let key = queue.pop_front().expect("queues are never empty");
            if queue.is_empty() {
                state.waiting.remove(&namespace);
            }
            state.last_woken = Some(namespace);
            // The controller may be shutting down; the resource is retried on its requeue then.
            let _ = self.inner.wake.send(key);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, name: &str) -> Key {
        ObjectRef::new(name).within(namespace)
    }

    fn woken(receiver: &mut mpsc::UnboundedReceiver<Key>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(key) = receiver.try_recv() {
            out.push(format!(
                "{}/{}",
                key.namespace.unwrap_or_default(),
                key.name
            ));
        }
        out
    }

    fn lanes(slots: usize) -> (TenantLanes, mpsc::UnboundedReceiver<Key>) {
        let lanes = TenantLanes::new(slots);
        let receiver = lanes.wakeups.lock().unwrap().take().unwrap();
        (lanes, receiver)
    }

    #[test]
    fn shares_keep_a_reserve_and_never_drop_to_zero() {
        assert_eq!(share(16, 2, 1), 14);
        assert_eq!(share(16, 2, 2), 7);
        assert_eq!(share(16, 2, 100), 1);
        assert_eq!(share(1, 1, 1), 1);
        assert_eq!(reserve_of(16), 2);
        assert_eq!(reserve_of(4), 1);
    }

    #[test]
    fn a_lone_namespace_uses_every_slot_but_the_reserve() {
        let (lanes, _wakeups) = lanes(16);
        let held: Vec<_> = (0..14)
            .map(|i| {
                lanes
                    .enter(&key("noisy", &format!("r{i}")))
                    .expect("under share")
            })
            .collect();
        assert!(lanes.enter(&key("noisy", "r14")).is_none());
        assert_eq!(lanes.queued(), 1);
        drop(held);
    }

    #[test]
    fn a_quiet_namespace_gets_a_slot_while_a_noisy_one_holds_its_share() {
        let (lanes, mut wakeups) = lanes(16);
        let noisy: Vec<_> = (0..14)
            .map(|i| lanes.enter(&key("noisy", &format!("r{i}"))).unwrap())
            .collect();
        let quiet = lanes
            .enter(&key("quiet", "new"))
            .expect("a namespace holding none enters");
        // Now two namespaces are active: the noisy one is far over its share of 7.
        assert!(lanes.enter(&key("noisy", "more")).is_none());
        drop(quiet);
        // The quiet namespace's release wakes nobody: the only queued namespace is over share.
        assert!(woken(&mut wakeups).is_empty());
        // With the quiet namespace gone the noisy one's share is 14 again: its next release
        // wakes its queued resource.
        let mut noisy = noisy;
        noisy.pop();
        assert_eq!(woken(&mut wakeups), vec!["noisy/more"]);
    }

    #[test]
    fn releases_wake_queued_namespaces_round_robin() {
        let (lanes, mut wakeups) = lanes(2); // reserve 1: share 1 per namespace
        let a = lanes.enter(&key("a", "0")).unwrap();
        let b = lanes.enter(&key("b", "0")).unwrap();
        for i in 1..=2 {
            assert!(lanes.enter(&key("a", &i.to_string())).is_none());
            assert!(lanes.enter(&key("b", &i.to_string())).is_none());
        }
        // Queued once, however often a resource is turned away.
        assert!(lanes.enter(&key("a", "1")).is_none());
        assert_eq!(lanes.queued(), 4);
        drop(a);
        let first = woken(&mut wakeups);
        assert_eq!(first, vec!["a/1"]);
        let a1 = lanes.enter(&key("a", "1")).unwrap();
        drop(b);
        assert_eq!(woken(&mut wakeups), vec!["b/1"]);
        let b1 = lanes.enter(&key("b", "1")).unwrap();
        drop(a1);
        assert_eq!(woken(&mut wakeups), vec!["a/2"]);
        drop(b1);
        assert_eq!(woken(&mut wakeups), vec!["b/2"]);
    }

    #[test]
    fn deleted_resources_leave_the_queue() {
        let (lanes, _wakeups) = lanes(2);
        let _held = lanes.enter(&key("a", "0")).unwrap();
        assert!(lanes.enter(&key("a", "gone")).is_none());
        lanes.retain(|k| k.name != "gone");
        assert_eq!(lanes.queued(), 0);
    }
}
