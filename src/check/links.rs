//! The per-link judgments of the chain: each turns what one Thalassa call answered into a
//! [`CheckResult`] for its [`Link`] (pass, or fail with the fix from [`super::fix`]), without I/O
//! except [`reveal_check`], which makes the reveal (and drops the value unread).
//!
//! In: the answers (or typed client [`Error`]s) of the calls the chain run made. Out: one
//! [`CheckResult`] each; never a secret value or a credential.

use std::fmt::Write as _;

use super::{
    CheckResult, Link, SYMMETRIC_KEY_TYPES,
    fix::{FIX_KMS_GATE, FIX_SECRETS_GATE, describe, fix_cancel_deletion, fix_enable, fix_for},
};
use crate::thalassa::{BrowseSecretsResponse, Client, Error, KmsKey, KmsKeyStatus, KmsSummary};

pub(super) fn credentials_check(
    summary: &Result<KmsSummary, Error>,
    browse: &Result<BrowseSecretsResponse, Error>,
) -> CheckResult {
    let errors: Vec<&Error> = [summary.as_ref().err(), browse.as_ref().err()]
        .into_iter()
        .flatten()
        .collect();
    if let Some(error) = errors.iter().find(|e| {
        matches!(
            e,
            Error::Unauthorized { .. }
                | Error::CredentialFileUnreadable { .. }
                | Error::CredentialUnavailable { .. }
                | Error::InvalidConfig(_)
        )
    }) {
        return CheckResult::fail(Link::Credentials, describe(error), fix_for(error, ""));
    }
    let answered = summary.is_ok() || browse.is_ok() || errors.iter().any(|e| authenticated(e));
    if answered {
        return CheckResult::pass(
            Link::Credentials,
            "accepted (kmsSummary and browseSecrets / did not answer 401)",
        );
    }
    // Neither call got an answer that proves authentication: unreachable, 5xx, 429, …
    let error = errors[0];
    CheckResult::fail(
        Link::Credentials,
        format!("could not be verified: {}", describe(error)),
        fix_for(error, ""),
    )
    .transient_if(transient(error))
}

/// Whether a client error is expected to pass by itself: the operator's own classification
/// (a reason that does not need a person, such as `ProviderError` or `RateLimited`).
pub(super) fn transient(error: &Error) -> bool {
    !crate::error::thalassa_reason(error).needs_person()
}

/// Whether an error is an answer Thalassa only gives an authenticated caller.
fn authenticated(error: &Error) -> bool {
    matches!(
        error,
        Error::SecretsFeatureDisabled { .. }
            | Error::KmsFeatureDisabled { .. }
            | Error::Forbidden { .. }
            | Error::SecretNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::KeyNotFound { .. }
            | Error::RegionNotFound { .. }
            | Error::KeyNotActive { .. }
            | Error::KmsBackendUnavailable { .. }
            | Error::InvalidRequest { .. }
            | Error::Conflict { .. }
            | Error::InvalidArgument(_)
    )
}

pub(super) fn kms_gate_check(summary: &Result<KmsSummary, Error>, region: &str) -> CheckResult {
    match summary {
        Ok(summary) if summary.feature_enabled => {
            CheckResult::pass(Link::KmsGate, "enabled (kmsSummary featureEnabled: true)")
        }
        Ok(_) => CheckResult::fail(
            Link::KmsGate,
            "disabled for the organisation (kmsSummary featureEnabled: false)",
            FIX_KMS_GATE,
        ),
        Err(error @ Error::KmsFeatureDisabled { .. }) => {
            CheckResult::fail(Link::KmsGate, describe(error), FIX_KMS_GATE)
        }
        Err(error) => CheckResult::error(Link::KmsGate, error, region),
    }
}

/// The secrets gate when the kms gate is off: Thalassa then refuses every Secrets Manager call
/// because of KMS, so the secrets gate can only be judged when the answer names it explicitly.
pub(super) fn secrets_gate_with_kms_off(
    browse: &Result<BrowseSecretsResponse, Error>,
) -> CheckResult {
    match browse {
        Err(error @ Error::SecretsFeatureDisabled { .. }) => {
            CheckResult::fail(Link::SecretsGate, describe(error), FIX_SECRETS_GATE)
        }
        Err(Error::KmsFeatureDisabled { message }) if names_secrets_feature(message) => {
            CheckResult::fail(
                Link::SecretsGate,
                format!("disabled for the organisation: {message}"),
                FIX_SECRETS_GATE,
            )
        }
        _ => CheckResult::skipped(
            Link::SecretsGate,
            "Secrets Manager refuses every call while the kms feature gate is off",
        ),
    }
}

/// Whether a 403 message says the `secrets` feature (not KMS) is off.
fn names_secrets_feature(message: &str) -> bool {
    let words = message.to_lowercase();
    words.contains("secret")
        && (words.contains("feature") || words.contains("not enabled"))
        && !words.contains("kms")
}

pub(super) fn secrets_gate_check(
    browse: &Result<BrowseSecretsResponse, Error>,
    region: &str,
) -> CheckResult {
    match browse {
        Ok(listing) => CheckResult::pass(
            Link::SecretsGate,
            format!(
                "enabled (browseSecrets / in {region}: directories {}, secrets {})",
                listing.prefixes.len(),
                listing.secrets.len()
            ),
        ),
        Err(error @ Error::SecretsFeatureDisabled { .. }) => {
            CheckResult::fail(Link::SecretsGate, describe(error), FIX_SECRETS_GATE)
        }
        // 403 without a gate wording while KMS is on: the gate or IAM, Thalassa does not say.
        Err(error @ Error::Forbidden { .. }) => CheckResult::fail(
            Link::SecretsGate,
            format!(
                "browseSecrets / was refused (403; the secrets feature gate or a missing list \
                 permission): {}",
                describe(error)
            ),
            "ask your Thalassa administrator whether the secrets feature gate is enabled, and \
             grant the credential secrets:ReadAccess (read, list)",
        ),
        Err(Error::RegionNotFound { .. }) => CheckResult::skipped(
            Link::SecretsGate,
            format!(
                "region {region} is unknown (see {see})",
                see = Link::KmsBackend
            ),
        ),
        Err(error) => CheckResult::error(Link::SecretsGate, error, region),
    }
}

/// The regional backend check, and whether the region exists at all.
pub(super) fn backend_check(summary: &KmsSummary, region: &str) -> (CheckResult, bool) {
    let known: Vec<&str> = summary.regions.iter().map(|r| r.slug.as_str()).collect();
    let Some(entry) = summary.region(region) else {
        return (
            CheckResult::fail(
                Link::KmsBackend,
                format!("region {region} is not in the KMS summary"),
                format!(
                    "use a region of the organisation (--region): {}",
                    list_or_none(&known)
                ),
            ),
            false,
        );
    };
    if entry.kms_available {
        return (
            CheckResult::pass(
                Link::KmsBackend,
                format!(
                    "available in {} (keys: {} total, {} active)",
                    entry.slug, entry.total_keys, entry.active_keys
                ),
            ),
            true,
        );
    }
    let elsewhere: Vec<&str> = summary
        .regions
        .iter()
        .filter(|r| r.kms_available)
        .map(|r| r.slug.as_str())
        .collect();
    (
        CheckResult::fail(
            Link::KmsBackend,
            format!(
                "KMS is not available in {} (kmsSummary kmsAvailable: false; crypto calls answer 503)",
                entry.slug
            ),
            format!(
                "wait until Thalassa restores KMS in {} (usually transient; the operator keeps \
                 every Secret as it is meanwhile), or use a region where KMS is available: {}",
                entry.slug,
                list_or_none(&elsewhere)
            ),
        )
        .transient_if(true),
        true,
    )
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

pub(super) fn key_summary(key: &KmsKey) -> String {
    let mut text = key.identity.clone();
    if !key.slug.is_empty() && key.slug != key.identity {
        let _ = write!(text, " (slug {})", key.slug);
    }
    let _ = write!(text, ", {}", key.key_type);
    if let Some(version) = key.latest_version {
        let _ = write!(text, ", latest version {version}");
    }
    text
}

pub(super) fn key_exists_failure(
    error: &Error,
    wanted: &str,
    region: &str,
    backend_ok: bool,
) -> CheckResult {
    match error {
        Error::KeyNotFound { .. } => CheckResult::fail(
            Link::KeyExists,
            format!(
                "key {wanted} not found in {region} (KMS also answers 404 when IAM denies access \
                 to a key)"
            ),
            format!(
                "check the identity or slug (GET /v1/kms/{region}/keys lists the keys the \
                 credential can see), or grant the credential kms:ReadAccess on the key"
            ),
        ),
        Error::KmsBackendUnavailable { .. } if !backend_ok => CheckResult::skipped(
            Link::KeyExists,
            format!(
                "the KMS backend of {region} is unavailable (see {see})",
                see = Link::KmsBackend
            ),
        ),
        error => CheckResult::error(Link::KeyExists, error, region),
    }
}

pub(super) fn key_active_check(key: &KmsKey, region: &str) -> CheckResult {
    let id = &key.identity;
    match &key.status {
        KmsKeyStatus::Active => CheckResult::pass(Link::KeyActive, "active"),
        KmsKeyStatus::Disabled => CheckResult::fail(
            Link::KeyActive,
            format!("key {id} is disabled: secrets bound to it cannot be read or written"),
            fix_enable(region, id),
        ),
        KmsKeyStatus::PendingDeletion => CheckResult::fail(
            Link::KeyActive,
            match &key.deletion_scheduled_at {
                Some(at) => format!("key {id} is pending deletion (scheduled for {at})"),
                None => format!("key {id} is pending deletion"),
            },
            fix_cancel_deletion(region, id),
        ),
        KmsKeyStatus::Other(status) => CheckResult::fail(
            Link::KeyActive,
            format!("key {id} has status {status:?}, not active"),
            format!("make the key active in the Thalassa console (GET /v1/kms/{region}/keys/{id})"),
        ),
    }
}

pub(super) fn key_symmetric_check(key: &KmsKey, region: &str) -> CheckResult {
    if SYMMETRIC_KEY_TYPES.contains(&key.key_type.as_str()) {
        return CheckResult::pass(Link::KeySymmetric, key.key_type.clone());
    }
    CheckResult::fail(
        Link::KeySymmetric,
        format!(
            "key {} is {}; Secrets Manager only binds {}",
            key.identity,
            key.key_type,
            SYMMETRIC_KEY_TYPES.join(", ")
        ),
        format!(
            "key types cannot change: create a symmetric key (POST /v1/kms/{region}/keys \
             {{\"name\": \"...\", \"keyType\": \"aes256-gcm96\"}}) and bind secrets to it"
        ),
    )
}

pub(super) fn secret_readable_failure(error: &Error, path: &str, region: &str) -> CheckResult {
    match error {
        Error::SecretNotFound { .. } => CheckResult::fail(
            Link::SecretReadable,
            format!("secret {path} not found in {region}"),
            format!(
                "create the secret or fix --path (paths are case-sensitive; browse with \
                 GET /v1/secrets/{region}/secrets?path=/)"
            ),
        ),
        Error::Forbidden { .. } => CheckResult::fail(
            Link::SecretReadable,
            format!(
                "reading the metadata of {path} was refused: {}",
                describe(error)
            ),
            format!("grant read (and getSecretValue) on {path} to the credential"),
        ),
        error => CheckResult::error(Link::SecretReadable, error, region),
    }
}

pub(super) fn secret_readable_check(
    path: &str,
    current_version: u64,
    bound: Option<&KmsKey>,
    wanted: Option<(&str, Option<&KmsKey>)>,
    region: &str,
) -> CheckResult {
    let binding = match bound {
        Some(key) => format!("bound to key {} ({})", key.identity, key.status),
        None => "bound key not reported".to_owned(),
    };
    let detail = format!("{path}: current version {current_version}, {binding}");
    let (Some((wanted, wanted_found)), Some(bound)) = (wanted, bound) else {
        return CheckResult::pass(Link::SecretReadable, detail);
    };
    let matches = match wanted_found {
        Some(found) => found.identity == bound.identity,
        None => [&bound.identity, &bound.slug, &bound.name]
            .iter()
            .any(|name| name.as_str() == wanted),
    };
    if matches {
        return CheckResult::pass(Link::SecretReadable, detail);
    }
    CheckResult::fail(
        Link::SecretReadable,
        format!(
            "{path} is bound to key {}, not to --key {wanted}; a ThalassaSecret with \
             kmsKeyIdentity {wanted} refuses it (KeyMismatch)",
            bound.identity
        ),
        format!(
            "use kmsKeyIdentity {} (and --key), or re-create the secret in {region} with key \
             {wanted}",
            bound.identity
        ),
    )
}

pub(super) async fn reveal_check(
    client: &Client,
    region: &str,
    path: &str,
    bound: Option<&KmsKey>,
) -> CheckResult {
    match client.get_secret_value(region, path, None).await {
        Ok(revealed) => {
            let detail = format!(
                "revealed version {} with key {} version {} (value not shown)",
                revealed.version, revealed.kms_key_identity, revealed.kms_key_version
            );
            // The value is dropped (and zeroized) here, unread.
            drop(revealed);
            CheckResult::pass(Link::SecretReveal, detail)
        }
        Err(error @ Error::Forbidden { .. }) => CheckResult::fail(
            Link::SecretReveal,
            format!("getSecretValue was refused: {}", describe(&error)),
            format!(
                "grant getSecretValue on {path} to the credential (IAM policy or the secret's \
                 access policy), and access to its KMS key"
            ),
        ),
        Err(error @ Error::KeyNotActive { .. }) => {
            let fix = match bound {
                Some(key) if key.status == KmsKeyStatus::PendingDeletion => {
                    fix_cancel_deletion(region, &key.identity)
                }
                Some(key) => fix_enable(region, &key.identity),
                None => "enable the KMS key the secret is bound to (or cancel its deletion)".into(),
            };
            CheckResult::fail(Link::SecretReveal, describe(&error), fix)
        }
        Err(error @ Error::VersionNotFound { .. }) => CheckResult::fail(
            Link::SecretReveal,
            describe(&error),
            format!("store a new version of {path} (its current version is destroyed)"),
        ),
        Err(error) => CheckResult::error(Link::SecretReveal, &error, region),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckResult, CheckStatus, Link, SYMMETRIC_KEY_TYPES};
    use crate::thalassa::{BrowseSecretsResponse, KmsSummary};

    fn key(status: KmsKeyStatus, key_type: &str) -> KmsKey {
        serde_json::from_value(serde_json::json!({
            "identity": "kms-abc",
            "slug": "app",
            "name": "app",
            "keyType": key_type,
            "status": status.as_str(),
            "latestVersion": 2,
        }))
        .expect("key parses")
    }

    #[test]
    fn key_state_and_type_checks() {
        assert!(key_active_check(&key(KmsKeyStatus::Active, "aes256-gcm96"), "nl-01").passed());
        let disabled = key_active_check(&key(KmsKeyStatus::Disabled, "aes256-gcm96"), "nl-01");
        assert_eq!(disabled.status, CheckStatus::Fail);
        assert!(
            disabled
                .fix
                .unwrap()
                .contains("/v1/kms/nl-01/keys/kms-abc/enable")
        );
        let pending = key_active_check(&key(KmsKeyStatus::PendingDeletion, "aes256-gcm96"), "r");
        assert!(pending.fix.unwrap().contains("cancel-deletion"));
        for symmetric in SYMMETRIC_KEY_TYPES {
            assert!(key_symmetric_check(&key(KmsKeyStatus::Active, symmetric), "r").passed());
        }
        for asymmetric in ["rsa-2048", "ecdsa-p256", "ed25519", "hmac-sha256"] {
            let result = key_symmetric_check(&key(KmsKeyStatus::Active, asymmetric), "r");
            assert_eq!(result.status, CheckStatus::Fail, "{asymmetric}");
        }
    }

    #[test]
    fn credentials_classification() {
        let unauthorized = || {
            Err::<KmsSummary, _>(Error::Unauthorized {
                message: String::new(),
            })
        };
        let gate = || {
            Err::<BrowseSecretsResponse, _>(Error::KmsFeatureDisabled {
                message: String::new(),
            })
        };
        let result = credentials_check(&unauthorized(), &gate());
        assert_eq!(result.status, CheckStatus::Fail);
        assert!(result.fix.unwrap().contains("rotate the token"));
        // A gate 403 proves the token was accepted.
        let summary = Err(Error::KmsFeatureDisabled {
            message: String::new(),
        });
        assert!(credentials_check(&summary, &gate()).passed());
        // Neither call answered: not verified.
        let server = || Error::Server {
            status: 502,
            message: String::new(),
        };
        let result = credentials_check(&Err(server()), &Err(server()));
        assert_eq!(result.status, CheckStatus::Fail);
        assert!(result.detail.starts_with("could not be verified"));
        assert!(result.transient, "a 502 is expected to pass");
    }

    #[test]
    fn only_failures_that_pass_by_themselves_are_transient() {
        let unauthorized = Err::<KmsSummary, _>(Error::Unauthorized {
            message: String::new(),
        });
        let rejected = credentials_check(
            &unauthorized,
            &Err(Error::Unauthorized {
                message: String::new(),
            }),
        );
        assert!(!rejected.transient, "rejected credentials need a person");
        let missing = credentials_check(
            &Err(Error::CredentialUnavailable {
                what: "Secret a/b".into(),
                detail: "the Secret does not exist".into(),
            }),
            &Err(Error::CredentialUnavailable {
                what: "Secret a/b".into(),
                detail: "the Secret does not exist".into(),
            }),
        );
        assert!(!missing.transient, "a missing credential needs a person");
        let gate_off: KmsSummary =
            serde_json::from_value(serde_json::json!({"featureEnabled": false})).unwrap();
        let gate = kms_gate_check(&Ok(gate_off), "nl-01");
        assert!(gate.status == CheckStatus::Fail && !gate.transient);
        let summary = |available: bool| -> KmsSummary {
            serde_json::from_value(serde_json::json!({
                "featureEnabled": true,
                "regions": [{"slug": "nl-01", "identity": "r-1", "kmsAvailable": available,
                             "totalKeys": 0, "activeKeys": 0}]
            }))
            .expect("summary parses")
        };
        let (down, _) = backend_check(&summary(false), "nl-01");
        assert!(
            down.status == CheckStatus::Fail && down.transient,
            "{down:?}"
        );
        let (unknown, _) = backend_check(&summary(true), "nl-99");
        assert!(unknown.status == CheckStatus::Fail && !unknown.transient);
        let (up, _) = backend_check(&summary(true), "nl-01");
        assert!(up.passed() && !up.transient);
        let limited = CheckResult::error(
            Link::KmsGate,
            &Error::RateLimited { retry_after: None },
            "nl-01",
        );
        assert!(limited.transient);
    }

    #[test]
    fn secrets_gate_when_kms_is_off() {
        let refused = |message: &str| {
            Err(Error::KmsFeatureDisabled {
                message: message.into(),
            })
        };
        let both_off = secrets_gate_with_kms_off(&refused(
            "feature 'secrets' is not enabled for this organisation",
        ));
        assert_eq!(both_off.status, CheckStatus::Fail);
        let kms_only = secrets_gate_with_kms_off(&refused(
            "KMS must be enabled first: feature 'kms' is not enabled for this organisation",
        ));
        assert_eq!(kms_only.status, CheckStatus::Skipped);
    }

    #[test]
    fn key_binding_mismatch_fails_readable() {
        let bound = key(KmsKeyStatus::Active, "aes256-gcm96");
        let ok = secret_readable_check("/a", 3, Some(&bound), Some(("app", None)), "nl-01");
        assert!(ok.passed(), "{ok:?}");
        let other = secret_readable_check("/a", 3, Some(&bound), Some(("kms-zzz", None)), "nl-01");
        assert_eq!(other.status, CheckStatus::Fail);
        assert!(other.detail.contains("KeyMismatch"));
        let unbound = secret_readable_check("/a", 3, Some(&bound), None, "nl-01");
        assert!(unbound.passed());
    }
}
