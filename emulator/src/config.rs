//! Start-up configuration of the emulator and the seed format shared by `--seed` YAML,
//! [`EmulatorConfig::seed`] and the seeding control routes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the emulator needs to start. `Default` gives a ready single-organisation setup.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The one organisation this emulator serves (matched against `X-Organisation-Identity`).
    pub organisation: String,
    /// Region slugs, e.g. `nl-01`. KMS starts available in each.
    pub regions: Vec<String>,
    /// Accepted API tokens. If empty, one random full-access bearer token is created.
    pub tokens: Vec<TokenSpec>,
    /// Keys and secrets created at start.
    pub seed: Option<Seed>,
    /// Service-account credentials accepted by the client-credentials grant.
    pub oidc_clients: Vec<OidcClientSpec>,
    /// Trust relationships accepted by the token-exchange grant.
    pub federated_identities: Vec<FederatedIdentitySpec>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            organisation: "org-local".to_owned(),
            regions: vec!["nl-01".to_owned()],
            tokens: Vec::new(),
            seed: None,
            oidc_clients: Vec::new(),
            federated_identities: Vec::new(),
        }
    }
}

/// An API token the emulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    pub token: String,
    #[serde(default)]
    pub scheme: TokenScheme,
    #[serde(default)]
    pub access: Access,
}

impl TokenSpec {
    /// A full-access token used with `Authorization: Bearer <token>`.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            scheme: TokenScheme::Bearer,
            access: Access::default(),
        }
    }

    /// A full-access personal access token used with `Authorization: Token <token>`.
    pub fn pat(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            scheme: TokenScheme::Token,
            access: Access::default(),
        }
    }

    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
}

/// How a token is presented. Bearer tokens must use `Bearer`; personal access tokens are
/// accepted with either `Token` (what client-go sends) or `Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TokenScheme {
    #[default]
    Bearer,
    Token,
}

/// What a credential may do. `Default` is full access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Access {
    /// No create/put/destroy/delete/policy (403 on Secrets) and no key administration (404 on KMS).
    pub read_only: bool,
    /// `None` = all paths. Globs where `*` also matches `/` (so `/app/production/*` covers the tree).
    pub path_globs: Option<Vec<String>>,
    /// getSecretValue permission (false -> 403 on reveal).
    pub reveal: bool,
    /// KMS IAM access (false -> 404 on KMS key routes and on binding a key at secret creation).
    pub kms: bool,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            read_only: false,
            path_globs: None,
            reveal: true,
            kms: true,
        }
    }
}

impl Access {
    /// Read metadata and reveal values, no writes, no KMS administration: what the operator needs.
    pub fn read_only() -> Self {
        Self {
            read_only: true,
            ..Self::default()
        }
    }
}

/// Service-account access credentials for the OAuth2 client-credentials grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcClientSpec {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub access: Access,
}

/// A federated identity: which external JWTs may be exchanged for a token acting as
/// `service_account_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentitySpec {
    pub service_account_id: String,
    /// Required `iss` of the subject token.
    pub issuer: String,
    /// Trusted audiences; the token's `aud` must contain at least one (match mode `any`).
    pub audiences: Vec<String>,
    /// Required `sub`; a glob (`system:serviceaccount:shop:*`).
    pub subject: String,
    /// Where the issuer's signing keys come from.
    pub jwks: JwksSource,
    #[serde(default)]
    pub access: Access,
}

/// Source of a JSON Web Key Set. `Url` is fetched on every exchange so key rotation is picked up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JwksSource {
    /// The JWKS document itself (`{"keys":[...]}`).
    Inline(String),
    File(PathBuf),
    /// `http://` or `https://` (web PKI roots) URL.
    Url(String),
}

/// Keys and secrets to create at start (the `--seed` YAML file has this shape).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub keys: Vec<SeedKey>,
    #[serde(default)]
    pub secrets: Vec<SeedSecret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedKey {
    pub name: String,
    /// Default `aes256-gcm96`.
    #[serde(default)]
    pub key_type: Option<String>,
    /// Default: the first configured region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    /// Extra versions to create by rotating right after creation.
    #[serde(default)]
    pub rotations: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedSecret {
    pub path: String,
    /// Key name, slug or identity in the same region/project.
    pub key: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// A single value (version 1) ...
    #[serde(flatten)]
    pub value: SeedValueDoc,
    /// ... or several, stored as versions 1, 2, ... in order.
    #[serde(default)]
    pub versions: Vec<SeedValueDoc>,
}

/// The YAML/JSON shape of a seed value: exactly one field set.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedValueDoc {
    /// Plain text, stored as its UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Standard base64 of arbitrary bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Key/value secret with plain-text values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_values: Option<BTreeMap<String, String>>,
    /// Number of random bytes to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<u32>,
}

impl SeedValueDoc {
    pub fn is_empty(&self) -> bool {
        self.string.is_none()
            && self.base64.is_none()
            && self.key_values.is_none()
            && self.generate.is_none()
    }

    /// Converts to a [`SeedValue`], failing unless exactly one field is set.
    pub fn to_value(&self) -> Result<SeedValue, String> {
        let set = [
            self.string.is_some(),
            self.base64.is_some(),
            self.key_values.is_some(),
            self.generate.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set != 1 {
            return Err(
                "exactly one of string, base64, keyValues or generate must be set".to_owned(),
            );
        }
        if let Some(s) = &self.string {
            return Ok(SeedValue::String(s.clone()));
        }
        if let Some(b) = &self.base64 {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| "base64 must be valid standard base64".to_owned())?;
            return Ok(SeedValue::Bytes(bytes));
        }
        if let Some(kv) = &self.key_values {
            return Ok(SeedValue::KeyValues(kv.clone()));
        }
        Ok(SeedValue::Generate(self.generate.unwrap_or(32)))
    }
}

/// A secret value for seeding and the control handle (plain values, encoded by the emulator).
#[derive(Clone, PartialEq, Eq)]
pub enum SeedValue {
    String(String),
    Bytes(Vec<u8>),
    KeyValues(BTreeMap<String, String>),
    Generate(u32),
}

// Values must never show up in logs, so Debug prints only the shape.
impl std::fmt::Debug for SeedValueDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_value() {
            Ok(v) => v.fmt(f),
            Err(_) => f.write_str("SeedValueDoc(<invalid>)"),
        }
    }
}

impl std::fmt::Debug for SeedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => write!(f, "SeedValue::String(<{} bytes>)", s.len()),
            Self::Bytes(b) => write!(f, "SeedValue::Bytes(<{} bytes>)", b.len()),
            Self::KeyValues(kv) => write!(f, "SeedValue::KeyValues(<{} keys>)", kv.len()),
            Self::Generate(n) => write!(f, "SeedValue::Generate({n})"),
        }
    }
}
