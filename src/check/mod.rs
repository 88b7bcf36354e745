//! `thalassa-secrets-operator check`: walks Thalassa's dependency chain for one connection and
//! region and says which link is broken and how to fix it.
//!
//! The chain, in order ([`Link::ALL`]; a link is [`CheckStatus::Skipped`] when an earlier
//! failure makes it uncheckable): credentials, the `kms` feature gate (Secrets Manager needs
//! KMS, so it comes before the secrets gate; it is also the only unambiguous gate signal), the
//! `secrets` feature gate, the regional KMS backend, the `--key` (exists, active, symmetric:
//! [`SYMMETRIC_KEY_TYPES`]), the `--path` (metadata readable, bound to that key), and its reveal
//! (the value is dropped at once in its zeroizing type; only the version and the key
//! identity/version are reported). [`Link`] documents what each link asks.
//!
//! Files: `chain` walks the links ([`run_checks`]), `links` judges each answer, `fix`
//! words failures and their fixes, `table` renders the report ([`render_table`]).
//!
//! In: a client, a region, an optional key and path. Out: [`CheckResult`]s, one per link; never
//! a secret value or a credential.
//!
//! Classification uses the client's typed [`Error`]s; the 403 ambiguity on Secrets routes (gate
//! or permission) is resolved by the client's `/v1/kms/summary` probe (see the API notes §6).

use std::fmt;

use crate::thalassa::Error;

mod chain;
mod fix;
mod link;
mod links;
mod table;

pub use chain::run_checks;
pub use link::Link;
pub use table::render_table;

/// The KMS key types Secrets Manager can bind a secret to.
pub(crate) const SYMMETRIC_KEY_TYPES: [&str; 3] =
    ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"];

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The link works.
    Pass,
    /// The link is broken; [`CheckResult::fix`] says what to do.
    Fail,
    /// Not checked: not asked for, or an earlier failure makes it uncheckable
    /// ([`CheckResult::detail`] says which).
    Skipped,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skipped => "SKIP",
        })
    }
}

/// One row of the check report. Never contains a secret value or a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Which link.
    pub link: Link,
    /// Its outcome.
    pub status: CheckStatus,
    /// What was found, or why it was skipped.
    pub detail: String,
    /// For a failure: what to do about it.
    pub fix: Option<String>,
    /// For a failure: whether it is expected to pass without anyone acting (Thalassa answered
    /// 5xx or 429, a timeout, the regional KMS backend is unavailable). False for what only a
    /// person can fix (credentials, a feature gate, a permission, a key, a region).
    pub(crate) transient: bool,
}

impl CheckResult {
    fn pass(link: Link, detail: impl Into<String>) -> Self {
        Self {
            link,
            status: CheckStatus::Pass,
            detail: detail.into(),
            fix: None,
            transient: false,
        }
    }

    fn fail(link: Link, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            link,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            transient: false,
        }
    }

    fn skipped(link: Link, why: impl Into<String>) -> Self {
        Self {
            link,
            status: CheckStatus::Skipped,
            detail: why.into(),
            fix: None,
            transient: false,
        }
    }

    /// A failure described by a client error, with the fix [`fix_for`] gives.
    fn error(link: Link, error: &Error, region: &str) -> Self {
        Self::fail(link, fix::describe(error), fix::fix_for(error, region))
            .transient_if(links::transient(error))
    }

    /// Marks a failure as expected to pass by itself (see [`CheckResult::transient`]).
    fn transient_if(mut self, transient: bool) -> Self {
        self.transient = self.status == CheckStatus::Fail && transient;
        self
    }

    /// Whether the check passed.
    pub(crate) fn passed(&self) -> bool {
        self.status == CheckStatus::Pass
    }
}

/// Whether any check failed (the `check` command then exits with status 1).
pub fn any_failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == CheckStatus::Fail)
}
