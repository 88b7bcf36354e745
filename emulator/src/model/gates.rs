//! Feature gates and regional availability: the organisation's `secrets` and `kms` features,
//! and whether KMS is available in a region. Control-handle callers skip them.
//!
//! I/O contract: in-memory only. A closed gate is a 403 with Thalassa's message (the Secrets
//! API names a closed KMS gate first, as Thalassa does); an unavailable region, a 4xx as well.

use super::{Caller, Store};
use crate::error::ApiError;

pub(crate) const MSG_SECRETS_GATE: &str = "feature 'secrets' is not enabled for this organisation";

pub(crate) const MSG_KMS_GATE_SECRETS: &str =
    "KMS must be enabled first: feature 'kms' is not enabled for this organisation";

pub(crate) const MSG_KMS_GATE: &str = "feature 'kms' is not enabled for this organisation";

impl Store {
    pub(super) fn secrets_gates(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.control {
            return Ok(());
        }
        if !self.secrets_gate {
            return Err(ApiError::forbidden(MSG_SECRETS_GATE));
        }
        if !self.kms_gate {
            return Err(ApiError::forbidden(MSG_KMS_GATE_SECRETS));
        }
        Ok(())
    }

    pub(super) fn kms_gate(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.control || self.kms_gate {
            Ok(())
        } else {
            Err(ApiError::forbidden(MSG_KMS_GATE))
        }
    }

    pub(super) fn require_kms_available(
        &self,
        caller: &Caller,
        region: &str,
    ) -> Result<(), ApiError> {
        let r = self.region(region)?;
        if caller.control || r.kms_available {
            Ok(())
        } else {
            Err(ApiError::kms_unavailable(&r.slug))
        }
    }
}
