//! Client for the Thalassa Cloud Secrets Manager, KMS and token APIs.
//!
//! [`Client`] speaks the REST API described in `docs/INTERFACES.md` and the shared API notes:
//! typed wire types ([`Secret`], [`KmsKey`], …), every [`Credentials`] kind Thalassa supports,
//! client-side rate limiting, retries with jittered backoff, and one [`Error`] type whose
//! [`Error::reason`] is stable. Secret values only ever live in [`SecretBytes`], which is
//! redacted in `Debug` and zeroized on drop.

mod auth;
mod body;
mod client;
mod error;
mod path;
mod ratelimit;
mod retry;
mod types;
mod value;

pub use auth::{CredentialSource, Credentials, DynamicCredentials};
pub use body::{Listed, MAX_LISTED_ENTRY_BYTES, MAX_LISTED_SECRETS};
pub use client::{
    Client, ClientConfig, DEFAULT_BODY_BUDGET_BYTES, MAX_LISTING_RESPONSE_BYTES,
    MAX_REVEAL_RESPONSE_BYTES, MAX_SECRET_VALUE_BYTES, RequestObserver, SharedLimits, USER_AGENT,
    install_crypto_provider,
};
pub use error::Error;
pub use path::{MAX_PATH_LEN, PathError, validate_browse_path, validate_path};
pub use retry::RetryWait;
pub use types::{
    BrowseSecretsResponse, CreateKmsKeyRequest, CreateSecretRequest, KmsKey, KmsKeyStatus,
    KmsKeyVersion, KmsRegionSummary, KmsSummary, ListedKmsKey, ListedSecret, Organisation,
    PutSecretValueResponse, Region, RevealedSecret, Secret, SecretVersion,
};
pub use value::{InvalidBase64, SecretBytes, SecretString, SecretValue, SecretValueInput};
