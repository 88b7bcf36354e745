//! Every test that needs the Kubernetes control plane, in one binary, so the crate is linked and
//! the harness ([`common`]) compiled once. One module per area; each was a binary of its own
//! before. The tests attach to the control plane `tools/test-all.sh` starts (`TESTENV_DIR`), or
//! start one for the process.
//!
//! Areas take turns ([`common::area_turn`], the first line of every test): tests of one area run
//! beside each other, never beside another area's, as when each area was its own binary.

mod common;
#[path = "../support/samples.rs"]
mod samples;

mod admission_parity;
mod admission_policy;
mod canary;
mod chart;
mod controller;
mod cost;
mod fanout;
mod generated;
mod hardening;
mod health;
mod noisy_tenants;
mod operations;
mod push;
mod refresh;
mod restarts;
mod teardown;
mod templates;
mod tenancy;
