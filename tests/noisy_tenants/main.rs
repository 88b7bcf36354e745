//! Noisy tenants on the real control plane (issue 22): what one namespace does to the shared
//! operator (slow or hostile endpoints, heavy templates, huge responses, restarts it may not ask
//! for) must not stop another namespace's syncs or slow them by more than a small factor. A
//! tenant's hostile endpoint is a small server the test starts on loopback.
//!
//! Tests that run the operator in cluster mode give it a `--selector` of their own, so
//! operators of tests running in parallel never act on each other's resources.

#[path = "../common/mod.rs"]
mod common;

mod lanes;
mod memory;
mod templates;
