//! The `Authorization` header of API calls: a bearer token from the token cache, read from the
//! credentials (a static token or token file) or obtained from `{base}/oidc/token` (a token
//! exchange, run through the same retry loop as API calls).
//!
//! I/O contract: may read a token file and POST to the token endpoint; returns the header value
//! (marked sensitive) and the token generation, so a 401 can invalidate exactly that token.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderValue;
use zeroize::Zeroizing;

use super::super::auth::{Credentials, TokenResponse};
use super::super::error::{Error, Route, Target};
use super::super::value::SecretString;
use super::call::{Body, Call};
use super::transport::{decode_json, invalid_response};
use super::{Client, MAX_RESPONSE_BYTES};

impl Client {
    /// The `Authorization` header value and the token generation it came from.
    pub(super) async fn authorization(&self) -> Result<(HeaderValue, u64), Error> {
        let credentials = &self.inner.credentials;
        let (token, generation) = self
            .inner
            .tokens
            .get_or_fetch(|| async {
                let current = credentials.current().await?;
                if current.uses_token_endpoint() {
                    self.request_token(&current).await
                } else {
                    let (token, lifetime) = current.read_static_token().await?;
                    Ok((token, credentials.static_token_lifetime(lifetime)))
                }
            })
            .await?;
        let text = Zeroizing::new(format!("{} {}", credentials.scheme(), token.expose()));
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            Error::InvalidConfig("the access token is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        Ok((value, generation))
    }

    /// Obtains an access token from `{base}/oidc/token`, with the same retry rules as API calls.
    async fn request_token(
        &self,
        credentials: &Credentials,
    ) -> Result<(SecretString, Duration), Error> {
        let form = credentials
            .token_request_form(&self.inner.organisation)
            .await?;
        let call = Call {
            operation: "token",
            method: Method::POST,
            url: self.url("/oidc/token")?,
            body: Some(Body {
                bytes: form,
                content_type: "application/x-www-form-urlencoded",
            }),
            idempotent: true,
            route: Route::Token,
            target: Target::default(),
            max_body: MAX_RESPONSE_BYTES,
        };
        // Boxed: API calls fetch tokens through this, and it runs through the same retry loop.
        let body = Box::pin(self.execute(call)).await?;
        let token: TokenResponse = decode_json("token", &body)?;
        if token.access_token.is_empty() {
            return Err(invalid_response("token", "access_token is empty".into()));
        }
        let lifetime = token.lifetime();
        Ok((token.access_token, lifetime))
    }
}
