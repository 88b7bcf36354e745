//! Identity and access: the tokens the emulator accepts (configured, issued by the token
//! endpoint, revoked), who a request's token says is calling ([`Caller`]), and the IAM checks of
//! a path (read, write, reveal) against the caller's path globs and permissions.
//!
//! I/O contract: in-memory only. A token that is unknown, revoked or expired is refused with a
//! 401; an action the caller's access does not grant, with a 403 naming the action and path.

use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;

use super::Store;
use crate::config::{Access, TokenScheme, TokenSpec};
use crate::error::ApiError;

/// An [`Access`] with its path globs compiled.
#[derive(Debug)]
pub(crate) struct CompiledAccess {
    pub spec: Access,
    globs: Option<GlobSet>,
}

impl CompiledAccess {
    pub fn new(spec: Access) -> Result<Self, ApiError> {
        let globs = match &spec.path_globs {
            None => None,
            Some(patterns) => Some(compile_globs(patterns)?),
        };
        Ok(Self { spec, globs })
    }

    pub fn full() -> Self {
        Self {
            spec: Access::default(),
            globs: None,
        }
    }

    pub fn covers(&self, path: &str) -> bool {
        self.globs.as_ref().is_none_or(|g| g.is_match(path))
    }
}

pub(crate) fn compile_globs(patterns: &[String]) -> Result<GlobSet, ApiError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // `*` crosses `/` so `/app/production/*` grants the whole subtree, as in Thalassa's IAM examples.
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| ApiError::bad_request(format!("invalid glob {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| ApiError::bad_request(format!("invalid globs: {e}")))
}

#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub scheme: TokenScheme,
    pub access: Arc<CompiledAccess>,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    /// Where it came from, for the state summary (never the token itself).
    pub origin: String,
}

/// Who is calling and in which project scope.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub access: Arc<CompiledAccess>,
    pub project: Option<String>,
    /// Control-handle calls skip feature gates, IAM and regional availability.
    pub control: bool,
}

impl Caller {
    pub fn control(project: Option<String>) -> Self {
        Self {
            access: Arc::new(CompiledAccess::full()),
            project,
            control: true,
        }
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(24))
}

impl Store {
    pub fn add_token(&mut self, spec: TokenSpec, origin: &str) -> Result<(), ApiError> {
        if spec.token.trim().is_empty() {
            return Err(ApiError::bad_request("token must not be empty"));
        }
        let access = Arc::new(CompiledAccess::new(spec.access)?);
        self.tokens.insert(
            spec.token,
            TokenEntry {
                scheme: spec.scheme,
                access,
                revoked: false,
                expires_at: None,
                origin: origin.to_owned(),
            },
        );
        Ok(())
    }

    pub fn issue_token(
        &mut self,
        access: Arc<CompiledAccess>,
        lifetime_secs: i64,
        origin: String,
    ) -> String {
        let now = Timestamp::now();
        // Expired issued tokens are useless; drop them so long runs do not grow the table.
        self.tokens
            .retain(|_, t| t.expires_at.is_none_or(|exp| exp > now));
        let token = random_token("thl_");
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                scheme: TokenScheme::Bearer,
                access,
                revoked: false,
                expires_at: Some(now + SignedDuration::from_secs(lifetime_secs)),
                origin,
            },
        );
        token
    }

    /// Revokes the issued tokens (those with an expiry) whose origin starts with
    /// `origin_prefix`; returns how many were still valid.
    pub fn revoke_issued_tokens(&mut self, origin_prefix: &str) -> usize {
        let mut revoked = 0;
        for entry in self.tokens.values_mut() {
            if entry.expires_at.is_some()
                && !entry.revoked
                && entry.origin.starts_with(origin_prefix)
            {
                entry.revoked = true;
                revoked += 1;
            }
        }
        revoked
    }

    /// Revokes `token`; returns whether it was known.
    pub fn revoke_token(&mut self, token: &str) -> bool {
        match self.tokens.get_mut(token) {
            Some(entry) => {
                entry.revoked = true;
                true
            }
            None => false,
        }
    }

    pub fn authenticate(&self, scheme: &str, token: &str) -> Result<Arc<CompiledAccess>, ApiError> {
        let entry = self.tokens.get(token).ok_or_else(ApiError::unauthorized)?;
        let scheme_ok = if scheme.eq_ignore_ascii_case("bearer") {
            true
        } else if scheme.eq_ignore_ascii_case("token") {
            entry.scheme == TokenScheme::Token
        } else {
            false
        };
        let expired = entry.expires_at.is_some_and(|exp| exp <= Timestamp::now());
        if !scheme_ok || entry.revoked || expired {
            return Err(ApiError::unauthorized());
        }
        Ok(entry.access.clone())
    }

    pub(super) fn may_read(caller: &Caller, path: &str) -> Result<(), ApiError> {
        if caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: read on secret {path}"
            )))
        }
    }

    pub(super) fn may_write(caller: &Caller, path: &str, action: &str) -> Result<(), ApiError> {
        if !caller.access.spec.read_only && caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: {action} on secret {path}"
            )))
        }
    }

    pub(super) fn may_reveal(caller: &Caller, path: &str) -> Result<(), ApiError> {
        if caller.access.spec.reveal && caller.access.covers(path) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "permission denied: getSecretValue on secret {path}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_cross_slashes() {
        let access = CompiledAccess::new(Access {
            path_globs: Some(vec!["/app/production/*".into()]),
            ..Access::default()
        })
        .unwrap();
        assert!(access.covers("/app/production/db/password"));
        assert!(!access.covers("/app/staging/db"));
    }
}
