//! Issue 22: one tenant cannot hurt another. Each module is one helper's set of attacks, run
//! against the real control plane and the emulator (or a small loopback server standing in for a
//! hostile endpoint).

#[path = "../common/mod.rs"]
mod common;

mod templates;
