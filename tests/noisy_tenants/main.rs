//! Issue 22: one tenant cannot hurt another. One module per area; each test runs on the real
//! control plane with the emulator, a tenant's hostile endpoint being a small server the test
//! starts on loopback.

#[path = "../common/mod.rs"]
mod common;

mod endpoints;
