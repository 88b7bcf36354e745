//! thalassa-secrets-operator: syncs secrets from Thalassa Cloud Secrets Manager into native
//! Kubernetes Secrets.
//!
//! The binary in `main.rs` only wires these modules together.

#![warn(unreachable_pub)]

pub mod check;
pub mod cluster_secret;
pub mod config;
pub mod controller;
pub mod crd;
pub mod endpoints;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod push;
pub mod readiness;
pub mod render;
pub mod server;
pub(crate) mod sources;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod text;
pub mod thalassa;

pub(crate) use error::Error;
