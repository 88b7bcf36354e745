//! The KMS endpoints the operator uses: the feature summary and one key. The key lifecycle
//! (create, enable, disable, rotate, delete) is in `testing`.
//!
//! I/O contract: each method validates the region and key identity, then makes one logical call
//! (see `transport`) and decodes the JSON answer.

use reqwest::Method;

use super::super::error::{Error, Route};
use super::super::types::{KmsKey, KmsSummary};
use super::Client;
use super::call::Call;

impl Client {
    /// `GET /v1/kms/summary`: feature gate and per-region availability.
    pub async fn kms_summary(&self) -> Result<KmsSummary, Error> {
        let call = self.kms_summary_call()?;
        self.fetch_json(call).await
    }

    /// One KMS key by identity or slug.
    pub async fn get_key(&self, region: &str, key: &str) -> Result<KmsKey, Error> {
        let call = self.key_call("getKey", Method::GET, region, key, "")?;
        self.fetch_json(call).await
    }

    /// A call about one KMS key of `region`.
    pub(super) fn key_call(
        &self,
        operation: &'static str,
        method: Method,
        region: &str,
        key: &str,
        suffix: &str,
    ) -> Result<Call, Error> {
        let url = self.kms_url(region, Some(key), suffix)?;
        let mut call = self
            .call(operation, method, url, Route::KmsKeys)
            .about(region, None);
        call.target.key = Some(key.to_owned());
        Ok(call)
    }

    /// The KMS summary call (also the probe that tells a KMS gate 403 from other 403s).
    pub(super) fn kms_summary_call(&self) -> Result<Call, Error> {
        let url = self.url("/v1/kms/summary")?;
        Ok(self.call("kmsSummary", Method::GET, url, Route::KmsSummary))
    }
}
