//! Issue 22: one tenant cannot hurt another. Each attack a namespace editor could make on the
//! shared operator, as a test against the real control plane and the emulator (one module per
//! area).

#[path = "../common/mod.rs"]
mod common;

mod restarts;
