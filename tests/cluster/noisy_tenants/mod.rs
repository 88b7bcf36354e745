//! Noisy tenants on the real control plane (issue 22): what one namespace does to the shared
//! operator (slow or hostile endpoints, heavy templates, huge responses, restarts it may not ask
//! for) must not stop another namespace's syncs or slow them by more than a small factor. A
//! tenant's hostile endpoint is a small server the test starts on loopback.
//!
//! The tests run one at a time ([`one_at_a_time`]), and beside no other area's test (the area
//! turn of `main.rs`): each loads the machine on purpose and measures the operator under that
//! load, and some run the operator in cluster mode, where it would act on the resources of a
//! test running beside it.

mod endpoints;
mod lanes;
mod memory;
mod restarts;
mod templates;

/// Held for the whole of each test of this area.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}
