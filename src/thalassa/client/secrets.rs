//! The Secrets Manager endpoints the operator uses: browse (S1), the streamed listing (S2), a
//! secret's metadata (S4), revealing a value (S7), and the two writes, creating a secret (S3)
//! storing a new version (S6), for generated values and push, and deleting a secret (S9), for a
//! push with `deletionPolicy: Delete`. Destroying versions is in `testing`.
//!
//! I/O contract: each method validates its path and region, then makes one logical call (see
//! `transport`). A reveal waits for one of this client's reveal permits, holds it until the value
//! is decoded, and refuses a value over [`MAX_SECRET_VALUE_BYTES`].

use reqwest::Method;
use tokio::time::Instant;

use super::super::body::{Listed, ListingSink};
use super::super::error::{Error, Route};
use super::super::types::{
    BrowseSecretsResponse, CreateSecretRequest, GetSecretValueRequest, GetSecretValueResponse,
    PutSecretValueRequest, PutSecretValueResponse, RevealedSecret, Secret,
};
use super::super::value::SecretValueInput;
use super::call::{Call, check_browse_path, check_path};
use super::transport::{decode_json, invalid_response};
use super::{
    Client, MAX_LISTING_RESPONSE_BYTES, MAX_REVEAL_RESPONSE_BYTES, MAX_SECRET_VALUE_BYTES,
};

impl Client {
    /// S1: one directory level under `path` (a directory such as `/app/prod/`, or `/`).
    pub async fn browse_secrets(
        &self,
        region: &str,
        path: &str,
    ) -> Result<BrowseSecretsResponse, Error> {
        check_browse_path(path)?;
        let mut url = self.secrets_url(region, "/secrets")?;
        url.query_pairs_mut().append_pair("path", path);
        let mut call = self
            .call("browseSecrets", Method::GET, url, Route::Secrets)
            .about(region, Some(path));
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        self.fetch_json(call).await
    }

    /// S2 as the operator reads it: every secret under `path_prefix`, decoded into
    /// [`ListedSecret`](crate::thalassa::ListedSecret)s (path, current version, key binding) with every other field skipped.
    ///
    /// The body is parsed as it arrives, element by element ([`ListingSink`]): only entries
    /// whose path starts with `path_prefix` are kept (a server may answer with more), at most
    /// [`MAX_LISTED_SECRETS`](crate::thalassa::MAX_LISTED_SECRETS) of them ([`Listed::TooMany`] past that), and the body is refused
    /// past [`MAX_LISTING_RESPONSE_BYTES`]. Neither the raw body nor entries outside the prefix
    /// are ever held, so memory follows the entries kept, not the listing's size.
    pub async fn list_secret_metadata(
        &self,
        region: &str,
        path_prefix: &str,
    ) -> Result<Listed, Error> {
        let call = self.list_call(region, path_prefix)?;
        let deadline = Instant::now() + self.inner.call_deadline;
        self.execute_into(call, deadline, |limit| ListingSink::new(path_prefix, limit))
            .await
    }

    /// The S2 call for `path_prefix`.
    pub(super) fn list_call(&self, region: &str, path_prefix: &str) -> Result<Call, Error> {
        check_browse_path(path_prefix)?;
        let mut url = self.secrets_url(region, "/secrets")?;
        url.query_pairs_mut().append_pair("pathPrefix", path_prefix);
        let mut call = self
            .call("listSecrets", Method::GET, url, Route::Secrets)
            .about(region, Some(path_prefix));
        call.max_body = MAX_LISTING_RESPONSE_BYTES;
        Ok(call)
    }

    /// S4: a secret's metadata; with `include_versions`, its version history too.
    pub async fn get_secret(
        &self,
        region: &str,
        path: &str,
        include_versions: bool,
    ) -> Result<Secret, Error> {
        check_path(path)?;
        let mut url = self.secret_url(region, path, "")?;
        if include_versions {
            url.query_pairs_mut().append_pair("includeVersions", "true");
        }
        let mut call = self
            .call("getSecret", Method::GET, url, Route::Secrets)
            .about(region, Some(path));
        if include_versions {
            call.max_body = MAX_LISTING_RESPONSE_BYTES;
        }
        self.fetch_json(call).await
    }

    /// S7: reveals the current version (`None`) or a specific one, base64-decoded.
    pub async fn get_secret_value(
        &self,
        region: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<RevealedSecret, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/value")?;
        let mut call = self
            .call("getSecretValue", Method::POST, url, Route::Secrets)
            .about(region, Some(path))
            .json(&GetSecretValueRequest { path, version })?;
        call.target.version = version;
        call.max_body = MAX_REVEAL_RESPONSE_BYTES;
        let operation = call.operation;
        let deadline = Instant::now() + self.inner.call_deadline;
        // This store's permit, held until the value is decoded (the body holds its bytes of the
        // process-wide budget meanwhile).
        let _permit = tokio::time::timeout_at(deadline, self.inner.reveals.acquire())
            .await
            .map_err(|_| self.deadline_exceeded(operation))?;
        let body = self.execute_by(call, deadline).await?;
        let response: GetSecretValueResponse = decode_json(operation, &body)?;
        drop(body);
        let revealed = response
            .into_revealed()
            .map_err(|detail| invalid_response(operation, detail.to_owned()))?;
        if revealed.value.total_len() > MAX_SECRET_VALUE_BYTES {
            return Err(Error::ValueTooLarge {
                path: path.to_owned(),
                limit: MAX_SECRET_VALUE_BYTES,
            });
        }
        Ok(revealed)
    }

    /// S3: creates a secret and its version 1 (201). Not retried once the request may have been
    /// processed.
    pub async fn create_secret(
        &self,
        region: &str,
        request: &CreateSecretRequest,
    ) -> Result<Secret, Error> {
        check_path(&request.path)?;
        let url = self.secrets_url(region, "/secrets")?;
        let mut call = self
            .call("createSecret", Method::POST, url, Route::Secrets)
            .about(region, Some(&request.path))
            .not_idempotent()
            .json(request)?;
        call.target.key = Some(request.kms_key_identity.clone());
        self.fetch_json(call).await
    }

    /// S6: stores a new version, which becomes current. Not retried once the request may have
    /// been processed (a retry could add a second version).
    pub async fn put_secret_value(
        &self,
        region: &str,
        path: &str,
        value: &SecretValueInput,
    ) -> Result<PutSecretValueResponse, Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "/versions")?;
        let call = self
            .call("putSecretValue", Method::POST, url, Route::Secrets)
            .about(region, Some(path))
            .not_idempotent()
            .json(&PutSecretValueRequest { path, value })?;
        self.fetch_json(call).await
    }

    /// S9: deletes the secret and all its versions, permanently (a push with `deletionPolicy:
    /// Delete`, for the paths it created). Retried: deleting twice deletes once.
    pub async fn delete_secret(&self, region: &str, path: &str) -> Result<(), Error> {
        check_path(path)?;
        let url = self.secret_url(region, path, "")?;
        let call = self
            .call("deleteSecret", Method::DELETE, url, Route::Secrets)
            .about(region, Some(path));
        self.execute(call).await.map(drop)
    }
}
