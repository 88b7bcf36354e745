//! Endpoints only tests use: the Secrets Manager's policy updates and version destruction (S2
//! unstreamed, S5, S8), the KMS key lifecycle, and dropping the cached token. Tests use them to
//! set up and change what the operator reads; the operator deletes in Thalassa only for a push
//! with `deletionPolicy: Delete` (S9, in `secrets`) and never manages keys, so these are compiled
//! only with the `testing` feature (which this crate's tests turn on through a dev-dependency on
//! the crate itself) and never into the operator's binary.
//!
//! I/O contract: as the other endpoints (one logical call each, see `transport`); calls that
//! may add or change something are not retried once the request may have been processed.

use reqwest::Method;

use super::super::error::{Error, Route};
use super::super::types::{CreateKmsKeyRequest, KmsKey, Secret, UpdateAccessPolicyRequest};
use super::call::check_path;
use super::{Client, MAX_LISTING_RESPONSE_BYTES};

impl Client {
    /// Drops the cached access token, so the next request reads the token file or exchanges
    /// again (e.g. after credentials were rotated out of band).
    pub async fn invalidate_token(&self) {
        self.inner.tokens.clear().await;
    }

    // ---- Secrets Manager ----

    /// S2: every secret under `path_prefix`, recursively (filtered by the caller's `read`
    /// permission).
    pub async fn list_secrets(
        &self,
        region: &str,
        path_prefix: &str,
    ) -> Result<Vec<Secret>, Error> {
        self.fetch_json(self.list_call(region, path_prefix)?).await
    }

    /// S5: sets (`Some`) or clears (`None`) the secret's access policy, kept opaque because its
    /// schema is disputed.
    pub async fn update_access_policy(
        &self,
        region: &str,
        path: &str,
        access_policy: Option<&serde_json::Value>,
    ) -> Result<Secret, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/policy")?;
        let call = self
            .call("updateAccessPolicy", Method::PUT, url, Route::Secrets)
            .about(region, Some(path))
            .json(&UpdateAccessPolicyRequest { access_policy })?;
        self.fetch_json(call).await
    }

    /// S8: destroys one version (it stays in the history, unreadable).
    pub async fn destroy_secret_version(
        &self,
        region: &str,
        path: &str,
        version: u64,
    ) -> Result<(), Error> {
        check_path(path)?;
        let mut url = self.secret_url(region, path, "/versions")?;
        url.query_pairs_mut()
            .append_pair("version", &version.to_string());
        let mut call = self
            .call("destroySecretVersion", Method::DELETE, url, Route::Secrets)
            .about(region, Some(path));
        call.target.version = Some(version);
        self.execute(call).await.map(drop)
    }

    // ---- KMS keys ----

    /// Lists the region's KMS keys.
    pub async fn list_keys(&self, region: &str) -> Result<Vec<KmsKey>, Error> {
        let url = self.kms_url(region, None, "")?;
        let mut call = self
            .call("listKeys", Method::GET, url, Route::KmsKeys)
            .about(region, None);
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        self.fetch_json(call).await
    }

    /// Creates a KMS key (201). Not retried once the request may have been processed.
    pub async fn create_key(
        &self,
        region: &str,
        request: &CreateKmsKeyRequest,
    ) -> Result<KmsKey, Error> {
        let url = self.kms_url(region, None, "")?;
        let call = self
            .call("createKey", Method::POST, url, Route::KmsKeys)
            .about(region, None)
            .not_idempotent()
            .json(request)?;
        self.fetch_json(call).await
    }

    /// Enables a disabled key.
    pub async fn enable_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("enableKey", Method::POST, region, key, "/enable")?;
        self.fetch_json(call).await
    }

    /// Disables a key (no crypto, so secrets bound to it cannot be read or written).
    pub async fn disable_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("disableKey", Method::POST, region, key, "/disable")?;
        self.fetch_json(call).await
    }

    /// Schedules the key for deletion (30 days, `pending_deletion`).
    pub async fn delete_key(&self, region: &str, key: &str) -> Result<(), Error> {
        let call = self.key_call("deleteKey", Method::DELETE, region, key, "")?;
        self.execute(call).await.map(drop)
    }

    /// Cancels a scheduled deletion (the key becomes `active`).
    pub async fn cancel_key_deletion(&self, region: &str, key: &str) -> Result<(), Error> {
        let call = self.key_call(
            "cancelKeyDeletion",
            Method::DELETE,
            region,
            key,
            "/cancel-deletion",
        )?;
        self.execute(call).await.map(drop)
    }

    /// Rotates the key (new key version). Not retried once the request may have been processed.
    pub async fn rotate_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self
            .key_call("rotateKey", Method::POST, region, key, "/rotate")?
            .not_idempotent();
        self.fetch_json(call).await
    }
}
