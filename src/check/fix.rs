//! How a failure is worded and fixed: an error's text as the `check` table prints it and store
//! status shows it to tenants ([`describe`], which never names an address or the operating
//! system's answer), and the generic fix for each client error ([`fix_for`]).
//!
//! In: a typed client [`Error`] (and the region involved). Out: text without secret values or
//! credentials.

use std::fmt::Write as _;

use crate::thalassa::Error;

pub(super) const FIX_KMS_GATE: &str = "ask your Thalassa administrator to enable the kms feature gate for the \
                            organisation (Secrets Manager needs KMS)";
pub(super) const FIX_SECRETS_GATE: &str = "ask your Thalassa administrator to enable the secrets feature gate \
                                (Secrets Manager) for the organisation";

pub(super) fn fix_enable(region: &str, id: &str) -> String {
    format!("enable the key: POST /v1/kms/{region}/keys/{id}/enable (or in the Thalassa console)")
}

pub(super) fn fix_cancel_deletion(region: &str, id: &str) -> String {
    format!(
        "cancel the deletion before it runs: DELETE /v1/kms/{region}/keys/{id}/cancel-deletion \
         (or in the Thalassa console)"
    )
}

/// An error's text, as the `check` command prints it and store status shows it to tenants.
/// Client errors never contain values or credentials. A transport error says only what kind
/// of failure it was (could not connect, timed out): never the HTTP library's text, which
/// names the address and the operating system's answer (refused, unreachable, the TLS peer's
/// certificate), so a store's status cannot serve as a port scanner. The whole cause chain
/// goes to the log at debug level.
pub(super) fn describe(error: &Error) -> String {
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
pub(super) fn fix_for(error: &Error, region: &str) -> String {
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
