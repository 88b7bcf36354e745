//! Issue 22's attacks of one tenant on the others, on the real control plane: each module is one
//! helper's share (memory and fairness of reveals, endpoints, restarts, templates).

#[path = "../common/mod.rs"]
mod common;

mod memory;
