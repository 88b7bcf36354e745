//! Readiness, shared by the controller (which sets it once its caches are synced, or once a
//! follower knows its role) and the HTTP server (which reports it on `/readyz`).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Readiness shared between the controller and the server.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the operator ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the operator is ready.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
