//! `thalassa-secrets-operator check`: walks Thalassa's dependency chain for one connection and
//! region and says which link is broken and how to fix it.
//!
//! The chain, in order (a link is [`CheckStatus::Skipped`] when an earlier failure makes it
//! uncheckable):
//!
//! 1. [`Link::Credentials`]: `GET /v1/kms/summary` and a one-level browse of `/` do not answer 401.
//! 2. [`Link::KmsGate`]: the summary says `featureEnabled` (Secrets Manager needs KMS, so this comes
//!    before the secrets gate; it is also the only unambiguous gate signal).
//! 3. [`Link::SecretsGate`]: the browse of `/` is not refused by the `secrets` feature gate.
//! 4. [`Link::KmsBackend`]: the region is in the summary with `kmsAvailable: true`.
//! 5. [`Link::KeyExists`], [`Link::KeyActive`], [`Link::KeySymmetric`]: the `--key` (identity or slug) can be
//!    read, is `active`, and has a type Secrets Manager can bind ([`SYMMETRIC_KEY_TYPES`]).
//! 6. [`Link::SecretReadable`]: the `--path` metadata can be read (and, with `--key`, is bound to that
//!    key).
//! 7. [`Link::SecretReveal`]: `getSecretValue` on the `--path` succeeds. The value is dropped at once
//!    (it lives in a zeroizing type); only the version and the key identity/version are reported.
//!
//! Classification uses the client's typed [`Error`]s; the 403 ambiguity on Secrets routes (gate
//! or permission) is resolved by the client's `/v1/kms/summary` probe (see the API notes §6).

use std::fmt::{self, Write as _};

use crate::thalassa::{BrowseSecretsResponse, Client, Error, KmsKey, KmsKeyStatus, KmsSummary};

mod link;

pub use link::Link;

/// The KMS key types Secrets Manager can bind a secret to.
pub const SYMMETRIC_KEY_TYPES: [&str; 3] = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"];

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
    pub transient: bool,
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
        Self::fail(link, describe(error), fix_for(error, region)).transient_if(transient(error))
    }

    /// Marks a failure as expected to pass by itself (see [`CheckResult::transient`]).
    fn transient_if(mut self, transient: bool) -> Self {
        self.transient = self.status == CheckStatus::Fail && transient;
        self
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.status == CheckStatus::Pass
    }
}

/// Whether any check failed (the `check` command then exits with status 1).
pub fn any_failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == CheckStatus::Fail)
}

/// Runs the whole chain against `region`. `key` (identity or slug) and `path` are optional; their
/// checks are skipped without them. Makes at most seven API calls, one of them a reveal.
pub async fn run_checks(
    client: &Client,
    region: &str,
    key: Option<&str>,
    path: Option<&str>,
) -> Vec<CheckResult> {
    let summary = client.kms_summary().await;
    let browse = client.browse_secrets(region, "/").await;
    let mut results = Vec::with_capacity(Link::ALL.len());

    let credentials = credentials_check(&summary, &browse);
    let authenticated = credentials.passed();
    results.push(credentials);

    // Why a later link cannot be checked, from the first broken prerequisite.
    let mut blocked_kms: Option<String> =
        (!authenticated).then(|| "needs valid credentials".to_owned());

    let kms_gate = match &blocked_kms {
        Some(why) => CheckResult::skipped(Link::KmsGate, why.clone()),
        None => kms_gate_check(&summary, region),
    };
    if blocked_kms.is_none() && !kms_gate.passed() {
        blocked_kms = Some(format!(
            "needs the kms feature gate (see {see})",
            see = Link::KmsGate
        ));
    }
    results.push(kms_gate);

    let secrets_gate = match &blocked_kms {
        Some(_) if !authenticated => {
            CheckResult::skipped(Link::SecretsGate, "needs valid credentials")
        }
        Some(_) => secrets_gate_with_kms_off(&browse),
        None => secrets_gate_check(&browse, region),
    };
    let secrets_ok = secrets_gate.passed();
    results.push(secrets_gate);

    let (backend, region_known) = match (&blocked_kms, &summary) {
        (None, Ok(summary)) => backend_check(summary, region),
        (Some(why), _) => (CheckResult::skipped(Link::KmsBackend, why.clone()), false),
        (None, Err(error)) => (CheckResult::error(Link::KmsBackend, error, region), false),
    };
    let backend_ok = backend.passed();
    results.push(backend);
    if blocked_kms.is_none() && !region_known {
        blocked_kms = Some(format!(
            "region {region} is unknown (see {see})",
            see = Link::KmsBackend
        ));
    }

    // The key links.
    let mut key_found: Option<KmsKey> = None;
    let mut key_active = false;
    match (key, &blocked_kms) {
        (None, _) => {
            for name in [Link::KeyExists, Link::KeyActive, Link::KeySymmetric] {
                results.push(CheckResult::skipped(name, "no --key given"));
            }
        }
        (Some(_), Some(why)) => {
            for name in [Link::KeyExists, Link::KeyActive, Link::KeySymmetric] {
                results.push(CheckResult::skipped(name, why.clone()));
            }
        }
        (Some(wanted), None) => match client.get_key(region, wanted).await {
            Ok(found) => {
                results.push(CheckResult::pass(Link::KeyExists, key_summary(&found)));
                let active = key_active_check(&found, region);
                key_active = active.passed();
                results.push(active);
                results.push(key_symmetric_check(&found, region));
                key_found = Some(found);
            }
            Err(error) => {
                results.push(key_exists_failure(&error, wanted, region, backend_ok));
                for name in [Link::KeyActive, Link::KeySymmetric] {
                    results.push(CheckResult::skipped(
                        name,
                        format!(
                            "key {wanted} could not be read (see {see})",
                            see = Link::KeyExists
                        ),
                    ));
                }
            }
        },
    }

    // The secret links.
    let Some(path) = path else {
        for name in [Link::SecretReadable, Link::SecretReveal] {
            results.push(CheckResult::skipped(name, "no --path given"));
        }
        return results;
    };
    let blocked_secrets = blocked_kms.clone().or_else(|| {
        (!secrets_ok).then(|| {
            format!(
                "needs the secrets feature gate (see {see})",
                see = Link::SecretsGate
            )
        })
    });
    if let Some(why) = blocked_secrets {
        for name in [Link::SecretReadable, Link::SecretReveal] {
            results.push(CheckResult::skipped(name, why.clone()));
        }
        return results;
    }
    let secret = match client.get_secret(region, path, false).await {
        Ok(secret) => secret,
        Err(error) => {
            results.push(secret_readable_failure(&error, path, region));
            results.push(CheckResult::skipped(
                Link::SecretReveal,
                format!(
                    "the metadata of {path} could not be read (see {see})",
                    see = Link::SecretReadable
                ),
            ));
            return results;
        }
    };
    let bound = secret.kms_key.as_ref();
    results.push(secret_readable_check(
        path,
        secret.current_version,
        bound,
        key,
        key_found.as_ref(),
        region,
    ));

    if !backend_ok {
        results.push(CheckResult::skipped(
            Link::SecretReveal,
            format!(
                "a reveal needs the KMS backend of {region} (see {see})",
                see = Link::KmsBackend
            ),
        ));
        return results;
    }
    if let (Some(found), Some(bound)) = (&key_found, bound)
        && found.identity == bound.identity
        && !key_active
    {
        results.push(CheckResult::skipped(
            Link::SecretReveal,
            format!(
                "{path} is bound to key {}, which is not active (see {see})",
                found.identity,
                see = Link::KeyActive
            ),
        ));
        return results;
    }
    results.push(reveal_check(client, region, path, bound).await);
    results
}

fn credentials_check(
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
fn transient(error: &Error) -> bool {
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

fn kms_gate_check(summary: &Result<KmsSummary, Error>, region: &str) -> CheckResult {
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

const FIX_KMS_GATE: &str = "ask your Thalassa administrator to enable the kms feature gate for the \
                            organisation (Secrets Manager needs KMS)";
const FIX_SECRETS_GATE: &str = "ask your Thalassa administrator to enable the secrets feature gate \
                                (Secrets Manager) for the organisation";

/// The secrets gate when the kms gate is off: Thalassa then refuses every Secrets Manager call
/// because of KMS, so the secrets gate can only be judged when the answer names it explicitly.
fn secrets_gate_with_kms_off(browse: &Result<BrowseSecretsResponse, Error>) -> CheckResult {
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

fn secrets_gate_check(browse: &Result<BrowseSecretsResponse, Error>, region: &str) -> CheckResult {
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
fn backend_check(summary: &KmsSummary, region: &str) -> (CheckResult, bool) {
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

fn key_summary(key: &KmsKey) -> String {
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

fn key_exists_failure(error: &Error, wanted: &str, region: &str, backend_ok: bool) -> CheckResult {
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

fn key_active_check(key: &KmsKey, region: &str) -> CheckResult {
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

fn fix_enable(region: &str, id: &str) -> String {
    format!("enable the key: POST /v1/kms/{region}/keys/{id}/enable (or in the Thalassa console)")
}

fn fix_cancel_deletion(region: &str, id: &str) -> String {
    format!(
        "cancel the deletion before it runs: DELETE /v1/kms/{region}/keys/{id}/cancel-deletion \
         (or in the Thalassa console)"
    )
}

fn key_symmetric_check(key: &KmsKey, region: &str) -> CheckResult {
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

fn secret_readable_failure(error: &Error, path: &str, region: &str) -> CheckResult {
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

fn secret_readable_check(
    path: &str,
    current_version: u64,
    bound: Option<&KmsKey>,
    wanted: Option<&str>,
    wanted_found: Option<&KmsKey>,
    region: &str,
) -> CheckResult {
    let binding = match bound {
        Some(key) => format!("bound to key {} ({})", key.identity, key.status),
        None => "bound key not reported".to_owned(),
    };
    let detail = format!("{path}: current version {current_version}, {binding}");
    let (Some(wanted), Some(bound)) = (wanted, bound) else {
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

async fn reveal_check(
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

/// An error's text, as the `check` command prints it and store status shows it to tenants.
/// Client errors never contain values or credentials. A transport error says only what kind
/// of failure it was (could not connect, timed out): never the HTTP library's text, which
/// names the address and the operating system's answer (refused, unreachable, the TLS peer's
/// certificate), so a store's status cannot serve as a port scanner. The whole cause chain
/// goes to the log at debug level.
fn describe(error: &Error) -> String {
    if let Error::Transport { source, .. } = error {
        let mut chain = error.to_string();
        let mut cause = std::error::Error::source(error);
        while let Some(c) = cause {
            let _ = write!(chain, ": {c}");
            cause = c.source();
        }
        tracing::debug!(error = %chain, "Thalassa transport error");
        let class = if source.is_timeout() {
            "timed out"
        } else if source.is_connect() {
            "could not connect"
        } else if source.is_body() || source.is_decode() {
            "the response could not be read"
        } else {
            "the request failed"
        };
        return format!("{error}: {class}");
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// The generic fix for a client error. `region` may be empty when no region is involved.
fn fix_for(error: &Error, region: &str) -> String {
    match error {
        Error::Unauthorized { .. } => "rotate the token: the credential was rejected (401) — put \
             a valid, unexpired token in the --token-file / --personal-access-token-file, or \
             check --client-id and its secret, or the workload-identity trust of \
             --service-account-id; also check --organisation"
            .into(),
        Error::CredentialFileUnreadable { path, .. } => format!(
            "make {} readable and non-empty (in Kubernetes: the mounted credentials Secret)",
            path.display()
        ),
        Error::CredentialUnavailable { detail, .. } => detail.clone(),
        Error::InvalidConfig(_) => "fix the connection flags (--thalassa-url, --organisation, \
             --project, credentials)"
            .into(),
        Error::SecretsFeatureDisabled { .. } => FIX_SECRETS_GATE.into(),
        Error::KmsFeatureDisabled { .. } => FIX_KMS_GATE.into(),
        Error::Forbidden {
            path: Some(path), ..
        } => {
            format!("grant the needed permission on {path} to the credential")
        }
        Error::Forbidden { path: None, .. } => {
            "grant the credential the needed permission (IAM policy)".into()
        }
        Error::SecretNotFound { path, .. } => format!("create {path} or fix --path"),
        Error::VersionNotFound { path, .. } => format!("store a new version of {path}"),
        Error::KeyNotFound { .. } => "check the key identity or slug, or grant the credential \
             kms:ReadAccess on the key"
            .into(),
        Error::RegionNotFound { .. } => {
            "use a region of the organisation (--region); GET /v1/kms/summary lists them".into()
        }
        Error::KeyNotActive { .. } => {
            "enable the key or cancel its deletion (POST …/enable, DELETE …/cancel-deletion)".into()
        }
        Error::KmsBackendUnavailable { .. } => format!(
            "wait until Thalassa restores KMS in {region}, or use a region where KMS is available"
        ),
        Error::RateLimited { .. } => {
            "wait and run check again; lower --thalassa-rate-limit if the operator shares the \
             organisation's quota"
                .into()
        }
        Error::InvalidRequest { .. } | Error::Conflict { .. } => {
            "check --region, --key and --path".into()
        }
        Error::Server { .. } => "Thalassa answered with a server error: retry later, and \
             contact Thalassa support if it persists"
            .into(),
        Error::DeadlineExceeded { .. } => "Thalassa did not answer in time: retry later, and \
             check latency to the Thalassa API (or raise --thalassa-call-deadline)"
            .into(),
        Error::ValueTooLarge { .. } => {
            "store a smaller value; a Kubernetes Secret holds at most 1 MiB".into()
        }
        Error::Transport { .. } => "cannot reach Thalassa: check --thalassa-url, DNS, proxies \
             and egress to the Thalassa API (NetworkPolicy, firewall)"
            .into(),
        Error::InvalidResponse { .. } => {
            "check that --thalassa-url points at the Thalassa API".into()
        }
        Error::InvalidPath { .. } => "fix --path: a leading /, segments of letters, digits and \
             _ . + -, no // and no trailing /, no . or .. segment"
            .into(),
        Error::InvalidArgument(_) => "fix the region or key argument (no / or spaces)".into(),
    }
}

/// Renders the results as a plain-text table (CHECK, STATUS, DETAIL), each failure followed by
/// a `fix:` line, and a one-line summary.
pub fn render_table(results: &[CheckResult]) -> String {
    let name_width = results
        .iter()
        .map(|r| r.link.as_str().len())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(0);
    let status_width = "STATUS".len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:name_width$}  {:status_width$}  DETAIL",
        "CHECK", "STATUS"
    );
    for result in results {
        let _ = writeln!(
            out,
            "{:name_width$}  {:status_width$}  {}",
            result.link.as_str(),
            result.status.to_string(),
            result.detail
        );
        if let Some(fix) = &result.fix {
            let _ = writeln!(out, "{:name_width$}  {:status_width$}  fix: {fix}", "", "");
        }
    }
    let count = |status| results.iter().filter(|r| r.status == status).count();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} skipped",
        count(CheckStatus::Pass),
        count(CheckStatus::Fail),
        count(CheckStatus::Skipped)
    );
    out
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    /// A transport failure is described by its kind only: not the address, not what the
    /// operating system answered (a store's status must not serve as a port scanner).
    #[tokio::test]
    async fn a_transport_error_says_only_its_kind() {
        crate::thalassa::install_crypto_provider();
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let source = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v1/kms/summary"))
            .send()
            .await
            .unwrap_err();
        let error = Error::Transport {
            operation: "kmsSummary",
            source,
        };
        let text = describe(&error);
        assert_eq!(
            text,
            "request kmsSummary to Thalassa failed: could not connect"
        );
        assert!(!text.contains(&port.to_string()) && !text.contains("refused"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn table_has_a_row_per_check_and_fix_lines() {
        let results = vec![
            CheckResult::pass(Link::Credentials, "accepted"),
            CheckResult::fail(Link::KmsGate, "disabled", FIX_KMS_GATE),
            CheckResult::skipped(Link::SecretsGate, "needs the kms feature gate"),
        ];
        let table = render_table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CHECK"), "{table}");
        assert!(lines[1].starts_with("credentials") && lines[1].contains("PASS"));
        assert!(lines[2].starts_with("kms feature gate") && lines[2].contains("FAIL"));
        assert!(
            lines[3]
                .trim_start()
                .starts_with("fix: ask your Thalassa administrator")
        );
        assert!(lines[4].contains("SKIP") && lines[4].contains("needs the kms feature gate"));
        assert!(
            table.ends_with("1 passed, 1 failed, 1 skipped\n"),
            "{table}"
        );
        // Columns line up: the STATUS column starts at the same offset in every row.
        let offset = lines[0].find("STATUS").unwrap();
        for line in [lines[1], lines[2], lines[4]] {
            assert!(
                ["PASS", "FAIL", "SKIP"].contains(&&line[offset..offset + 4]),
                "{table}"
            );
        }
        assert!(any_failed(&results));
        assert!(!any_failed(&results[..1]));
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
        let ok = secret_readable_check("/a", 3, Some(&bound), Some("app"), None, "nl-01");
        assert!(ok.passed(), "{ok:?}");
        let other = secret_readable_check("/a", 3, Some(&bound), Some("kms-zzz"), None, "nl-01");
        assert_eq!(other.status, CheckStatus::Fail);
        assert!(other.detail.contains("KeyMismatch"));
        let unbound = secret_readable_check("/a", 3, Some(&bound), None, None, "nl-01");
        assert!(unbound.passed());
    }
}
