//! One API call as a value ([`Call`]): its operation name, method, URL, body, whether it is
//! safe to repeat, the route and target its errors are classified by, and the largest 2xx body
//! read. URLs are built here from validated segments only.
//!
//! I/O contract: pure. A URL is built only when every segment (region, KMS key, secret path)
//! is valid and the parsed URL keeps the path exactly as written; otherwise the call is refused
//! with [`Error::InvalidArgument`] or [`Error::InvalidPath`] and nothing is sent.

use reqwest::{Method, Url};
use serde::Serialize;
use zeroize::Zeroizing;

use super::super::error::{Error, Route, Target};
use super::super::path::{is_plain_segment, validate_browse_path, validate_path};
use super::transport::invalid_response;
use super::{Client, MAX_RESPONSE_BYTES};

/// A request body, kept in a zeroizing buffer because it may hold secret values or credentials.
pub(super) struct Body {
    pub(super) bytes: Zeroizing<Vec<u8>>,
    pub(super) content_type: &'static str,
}

/// One logical API call (all attempts share it).
pub(super) struct Call {
    pub(super) operation: &'static str,
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) body: Option<Body>,
    /// Safe to repeat when the outcome of an attempt is unknown.
    pub(super) idempotent: bool,
    pub(super) route: Route,
    pub(super) target: Target,
    /// Largest 2xx body read.
    pub(super) max_body: usize,
}

impl Call {
    pub(super) fn about(mut self, region: &str, path: Option<&str>) -> Self {
        self.target.region = Some(region.to_owned());
        self.target.path = path.map(str::to_owned);
        self
    }

    /// The error for a 2xx body over `limit`: a too-large value for a reveal, else an invalid
    /// response.
    pub(super) fn too_large(&self, limit: usize) -> Error {
        match (self.operation, &self.target.path) {
            ("getSecretValue", Some(path)) => Error::ValueTooLarge {
                path: path.clone(),
                limit,
            },
            _ => invalid_response(self.operation, format!("body larger than {limit} bytes")),
        }
    }

    /// Marks a call that may add or change something: not repeated once it may have been
    /// processed (a create or a new version; a retry could add a second version).
    pub(super) fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    pub(super) fn json<T: Serialize>(mut self, body: &T) -> Result<Self, Error> {
        let mut bytes = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *bytes, body).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot encode the {} request body ({:?})",
                self.operation,
                e.classify()
            ))
        })?;
        self.body = Some(Body {
            bytes,
            content_type: "application/json",
        });
        Ok(self)
    }
}

impl Client {
    /// `{base}{path}`, where `path` is already percent-encoded. Refuses a URL whose path is not
    /// exactly `path` at the end (URL parsing resolves `.` and `..` segments, for example), so a
    /// request never reaches another path than the one that was validated.
    pub(super) fn url(&self, path: &str) -> Result<Url, Error> {
        let text = format!("{}{path}", self.inner.base_url);
        let url = Url::parse(&text)
            .map_err(|e| Error::InvalidArgument(format!("cannot build a URL: {e}")))?;
        if !url.path().ends_with(path) || url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidArgument(format!(
                "the request URL would not keep the path {path:?} as written; not sent"
            )));
        }
        Ok(url)
    }

    pub(super) fn secrets_url(&self, region: &str, suffix: &str) -> Result<Url, Error> {
        check_segment("region", region)?;
        self.url(&format!("/v1/secrets/{region}{suffix}"))
    }

    /// `/v1/secrets/{region}/secret{path}{suffix}`: the path's segments go in percent-encoded
    /// (a validated path needs no escaping; `+` stays raw, as Thalassa expects).
    pub(super) fn secret_url(&self, region: &str, path: &str, suffix: &str) -> Result<Url, Error> {
        check_segment("region", region)?;
        self.url(&format!(
            "/v1/secrets/{region}/secret{}{suffix}",
            encode_path(path)
        ))
    }

    pub(super) fn kms_url(
        &self,
        region: &str,
        key: Option<&str>,
        suffix: &str,
    ) -> Result<Url, Error> {
        check_segment("region", region)?;
        match key {
            Some(key) => {
                check_segment("KMS key identity", key)?;
                self.url(&format!("/v1/kms/{region}/keys/{key}{suffix}"))
            }
            None => self.url(&format!("/v1/kms/{region}/keys{suffix}")),
        }
    }

    pub(super) fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        route: Route,
    ) -> Call {
        Call {
            operation,
            method,
            url,
            body: None,
            idempotent: true,
            route,
            target: Target::default(),
            max_body: MAX_RESPONSE_BYTES,
        }
    }
}

pub(super) fn check_path(path: &str) -> Result<(), Error> {
    validate_path(path).map_err(|source| Error::InvalidPath {
        path: path.to_owned(),
        source,
    })
}

pub(super) fn check_browse_path(path: &str) -> Result<(), Error> {
    validate_browse_path(path).map_err(|source| Error::InvalidPath {
        path: path.to_owned(),
        source,
    })
}

/// Percent-encodes a secret path for the URL, segment by segment: `/` separates segments;
/// `A-Z a-z 0-9 _ - . ~` and `+` (which Thalassa expects raw) stay; every other byte becomes
/// `%XX`. A validated path comes out unchanged.
fn encode_path(path: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'_' | b'-' | b'.' | b'~' | b'+') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn check_segment(what: &str, value: &str) -> Result<(), Error> {
    if is_plain_segment(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {value:?} must be 1-255 characters of A-Z a-z 0-9 _ - ."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientConfig, Credentials};
    use super::*;

    fn client(base_url: &str) -> Client {
        Client::new(ClientConfig::new(
            base_url,
            "org-1",
            Credentials::BearerToken("t".into()),
        ))
        .unwrap()
    }

    #[test]
    fn urls_embed_paths_raw() {
        let client = client("http://127.0.0.1:9/api/");
        assert_eq!(
            client
                .secret_url("nl-01", "/app/a+b", "/policy")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/secrets/nl-01/secret/app/a+b/policy"
        );
        assert_eq!(
            client
                .secret_url("nl-01", "/app/prod/db/password", "/value")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/secrets/nl-01/secret/app/prod/db/password/value"
        );
        assert_eq!(
            client
                .kms_url("nl-01", Some("kms-1"), "/cancel-deletion")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v1/kms/nl-01/keys/kms-1/cancel-deletion"
        );
        assert!(client.secrets_url("nl/01", "").is_err());
        assert!(client.kms_url("nl-01", Some("../x"), "").is_err());
    }

    #[test]
    fn urls_keep_the_path_exactly_or_are_refused() {
        let client = client("http://127.0.0.1:9/api/");
        // URL parsing would resolve these to another path: refused, never normalised.
        for path in ["/team-a/../team-b/db", "/a/./b", "/a/..", "/..", "/a/."] {
            let err = client.secret_url("nl-01", path, "/value").unwrap_err();
            assert_eq!(err.reason(), "InvalidArgument", "{path}: {err}");
            assert!(err.to_string().contains("not sent"), "{err}");
        }
        // Anything outside the path alphabet is percent-encoded, never interpreted.
        assert_eq!(
            client.secret_url("nl-01", "/a b/c?d#e", "").unwrap().path(),
            "/api/v1/secrets/nl-01/secret/a%20b/c%3Fd%23e"
        );
        assert_eq!(
            client
                .secret_url("nl-01", "/a/%2e%2e/b", "")
                .unwrap()
                .path(),
            "/api/v1/secrets/nl-01/secret/a/%252e%252e/b"
        );
        assert_eq!(encode_path("/app/a+b/c_d-e.f~g"), "/app/a+b/c_d-e.f~g");
        // A validated path is sent as written.
        assert_eq!(
            client
                .secret_url("nl-01", "/app/.hidden/..x", "/value")
                .unwrap()
                .path(),
            "/api/v1/secrets/nl-01/secret/app/.hidden/..x/value"
        );
    }
}
