//! Pure decisions of a reconcile: no API calls here, so every rule is a table test. One file
//! per decision:
//!
//! - [`sync`]: whether and what to sync (the KMS summary, versions, refresh policy, force-sync,
//!   bound keys);
//! - [`target`]: the existing Secret (absent / owned / foreign, or refused), the write, the Event;
//! - [`reveals`]: which values are read again and which are reused;
//! - [`desired`]: the desired Secret;
//! - [`next_status`]: the next status.
//!
//! Callers use the decisions through this module (`plan::classify_target`, `plan::plan_status`).

use std::collections::BTreeMap;

use crate::sources::SourceMeta;

mod desired;
mod next_status;
mod reveals;
mod sync;
mod target;

pub(super) use desired::{
    Desired, RenderInputs, desired_secret, managed_type, prefix_mappings, render_sources,
};
pub(super) use next_status::{StatusInputs, SyncOutcome, plan_status};
pub(super) use reveals::{plan_reveals, reuse_allowed, reuse_whole, reused_bytes};
pub(super) use sync::{
    check_keys, desired_versions, force_sync_requested, judge_kms_summary, policy_skips_sync,
    written_for_resource,
};
pub(super) use target::{
    Removals, TargetState, Write, classify_target, plan_write, recorded_sources, write_event,
};

/// Metadata (and pin) of every source path.
pub(super) type SourceMetas = BTreeMap<String, (SourceMeta, Option<u64>)>;
