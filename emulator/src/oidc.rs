//! The `/oidc/token` grants: client credentials and RFC 8693 token exchange with the subject
//! JWT verified against the federated identity's JWKS, issuer, audience and subject.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use globset::GlobMatcher;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{FederatedIdentitySpec, JwksSource, OidcClientSpec};
use crate::error::ApiError;
use crate::model::CompiledAccess;

pub(crate) const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub(crate) const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(crate) const DEFAULT_LIFETIME_SECS: i64 = 3600;
pub(crate) const MIN_LIFETIME_SECS: i64 = 60;
pub(crate) const MAX_LIFETIME_SECS: i64 = 86_400;

/// An OAuth error response (RFC 6749 §5.2). `message` is repeated for clients that only read it.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            description: description.into(),
        }
    }
    pub fn invalid_client() -> Self {
        Self {
            status: 401,
            error: "invalid_client",
            description: "unknown client or wrong client secret".to_owned(),
        }
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_grant",
            description: description.into(),
        }
    }
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self {
            status: 400,
            error: "unsupported_grant_type",
            description: format!("grant_type {grant:?} is not supported"),
        }
    }
}

pub(crate) struct OidcClient {
    pub spec: OidcClientSpec,
    pub access: Arc<CompiledAccess>,
}

pub(crate) struct FederatedIdentity {
    pub spec: FederatedIdentitySpec,
    pub access: Arc<CompiledAccess>,
    subject: GlobMatcher,
}

#[derive(Default)]
pub(crate) struct OidcConfig {
    pub clients: Vec<OidcClient>,
    pub identities: Vec<FederatedIdentity>,
    http: OnceLock<reqwest::Client>,
}

impl OidcConfig {
    pub fn new(
        clients: Vec<OidcClientSpec>,
        identities: Vec<FederatedIdentitySpec>,
    ) -> Result<Self, ApiError> {
        let clients = clients
            .into_iter()
            .map(|spec| {
                Ok(OidcClient {
                    access: Arc::new(CompiledAccess::new(spec.access.clone())?),
                    spec,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        let identities = identities
            .into_iter()
            .map(|spec| {
                let subject = globset::GlobBuilder::new(&spec.subject)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| ApiError::bad_request(format!("invalid subject glob: {e}")))?
                    .compile_matcher();
                Ok(FederatedIdentity {
                    access: Arc::new(CompiledAccess::new(spec.access.clone())?),
                    subject,
                    spec,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(Self {
            clients,
            identities,
            http: OnceLock::new(),
        })
    }

    pub fn client(&self, id: &str, secret: &str) -> Result<&OidcClient, OAuthError> {
        self.clients
            .iter()
            .find(|c| c.spec.client_id == id && c.spec.client_secret == secret)
            .ok_or_else(OAuthError::invalid_client)
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            // reqwest is built without a bundled crypto provider; ring is the workspace's choice.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client configuration is static")
        })
    }

    async fn load_jwks(&self, source: &JwksSource) -> Result<JwkSet, String> {
        let text = match source {
            JwksSource::Inline(text) => text.clone(),
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?,
            JwksSource::Url(url) => self
                .http()
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("cannot fetch JWKS from {url}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("cannot fetch JWKS from {url}: {e}"))?,
        };
        serde_json::from_str(&text).map_err(|e| format!("invalid JWKS: {e}"))
    }

    /// Verifies `subject_token` for a federated identity of `service_account_id` and returns
    /// the access of the identity that accepted it.
    pub async fn exchange(
        &self,
        service_account_id: &str,
        subject_token: &str,
    ) -> Result<(Arc<CompiledAccess>, String), OAuthError> {
        let header = jsonwebtoken::decode_header(subject_token)
            .map_err(|e| OAuthError::invalid_grant(format!("malformed subject token: {e}")))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(OAuthError::invalid_grant(
                "subject token must be signed with an asymmetric algorithm",
            ));
        }
        let candidates: Vec<&FederatedIdentity> = self
            .identities
            .iter()
            .filter(|fi| fi.spec.service_account_id == service_account_id)
            .collect();
        if candidates.is_empty() {
            return Err(OAuthError::invalid_grant(format!(
                "no federated identity for service account {service_account_id}"
            )));
        }
        let mut last_error = String::new();
        for fi in candidates {
            match self.verify(fi, &header, subject_token).await {
                Ok(subject) => return Ok((fi.access.clone(), subject)),
                Err(e) => last_error = e,
            }
        }
        Err(OAuthError::invalid_grant(last_error))
    }

    async fn verify(
        &self,
        fi: &FederatedIdentity,
        header: &jsonwebtoken::Header,
        token: &str,
    ) -> Result<String, String> {
        let jwks = self.load_jwks(&fi.spec.jwks).await?;
        let keys: Vec<_> = jwks
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .collect();
        if keys.is_empty() {
            return Err("no key in the JWKS matches the subject token's kid".to_owned());
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&fi.spec.issuer]);
        validation.set_audience(&fi.spec.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last_error = String::new();
        for jwk in keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                Ok(data) => {
                    let subject = data.claims["sub"].as_str().unwrap_or_default().to_owned();
                    if !fi.subject.is_match(&subject) {
                        return Err(format!(
                            "subject {subject:?} is not trusted by the federated identity"
                        ));
                    }
                    return Ok(subject);
                }
                Err(e) => last_error = format!("subject token rejected: {e}"),
            }
        }
        Err(last_error)
    }
}

/// `access_token_lifetime`: integer seconds (`3600`) or a Go-style duration (`39600s`, `90m`, `1h`).
pub(crate) fn parse_lifetime(raw: Option<&str>) -> Result<i64, OAuthError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(DEFAULT_LIFETIME_SECS);
    };
    let bad = || {
        OAuthError::invalid_request(format!(
            "access_token_lifetime {raw:?} must be seconds or a duration like 3600s, 60m, 1h"
        ))
    };
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let number: i64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => number,
        "m" => number.checked_mul(60).ok_or_else(bad)?,
        "h" => number.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&secs) {
        return Err(OAuthError::invalid_request(format!(
            "access_token_lifetime must be between {MIN_LIFETIME_SECS}s and {MAX_LIFETIME_SECS}s"
        )));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime(None).unwrap(), 3600);
        assert_eq!(parse_lifetime(Some("39600s")).unwrap(), 39600);
        assert_eq!(parse_lifetime(Some("120")).unwrap(), 120);
        assert_eq!(parse_lifetime(Some("2h")).unwrap(), 7200);
        assert_eq!(parse_lifetime(Some("90m")).unwrap(), 5400);
        assert!(parse_lifetime(Some("10")).is_err());
        assert!(parse_lifetime(Some("25h")).is_err());
        assert!(parse_lifetime(Some("1d")).is_err());
    }
}
