//! Push: `ThalassaPushSecret`, which stores a Kubernetes Secret of its namespace in Thalassa.
//!
//! The kind ([`crd`]) and the pure decisions of a push ([`plan`]: what changed, what to send,
//! whether a path may be written); the driver is `controller::push`.

pub mod crd;
pub mod plan;
