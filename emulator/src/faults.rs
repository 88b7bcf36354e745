//! Fault injection and request counters for the Thalassa API routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Faults applied to Thalassa API routes (never to `/_emulator/*`). Checked in this order for
/// each request: `rate_limit_429`, `burst_503`, `quota_per_second`, `error_rate`; `latency_ms`
/// delays every response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added delay before each API request is handled.
    pub latency_ms: u64,
    /// Probability (0.0–1.0) that a request is answered with `error_status`.
    pub error_rate: f64,
    /// Status used by `error_rate` (default 500).
    pub error_status: u16,
    /// The next N API requests are answered 503.
    pub burst_503: u32,
    /// The next N API requests are answered 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_429: u32,
    /// `Retry-After` value for injected 429s (default 1).
    pub retry_after_secs: u64,
    /// `message` of the bodies of injected errors (`error_rate`, `burst_503`, `rate_limit_429`);
    /// default: the emulator's own "injected fault: status N". Lets tests plant a canary in a
    /// server message.
    pub error_message: Option<String>,
    /// Extra bytes of JSON whitespace streamed after the body of every successful
    /// `getSecretValue` answer (still valid JSON), to serve reveal responses larger than the
    /// value size limits allow. 0 (default) = off.
    pub pad_value_response_bytes: u64,
    /// A server-side quota: requests beyond this many per second (token bucket, burst of one
    /// second's worth) are answered 429 with `Retry-After: retry_after_secs`. 0 (default) = off.
    pub quota_per_second: f64,
    /// The quota's bucket: server state, not configuration (leave it at its default).
    #[serde(skip)]
    pub quota: QuotaBucket,
}

/// Tokens left in the quota and when they were counted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuotaBucket {
    tokens: f64,
    counted_at: Option<std::time::Instant>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            error_status: 500,
            burst_503: 0,
            rate_limit_429: 0,
            retry_after_secs: 1,
            error_message: None,
            pad_value_response_bytes: 0,
            quota_per_second: 0.0,
            quota: QuotaBucket::default(),
        }
    }
}

/// The verdict of the fault injector for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Injected {
    None,
    RateLimited { retry_after_secs: u64 },
    Status(u16),
}

impl Faults {
    /// Consumes one request's worth of the burst counters and rolls the error dice.
    pub(crate) fn next(&mut self) -> Injected {
        if self.rate_limit_429 > 0 {
            self.rate_limit_429 -= 1;
            return Injected::RateLimited {
                retry_after_secs: self.retry_after_secs,
            };
        }
        if self.burst_503 > 0 {
            self.burst_503 -= 1;
            return Injected::Status(503);
        }
        if self.quota_per_second > 0.0 {
            let now = std::time::Instant::now();
            let quota = self.quota_per_second;
            let bucket = &mut self.quota;
            bucket.tokens = match bucket.counted_at {
                None => quota,
                Some(at) => {
                    (bucket.tokens + now.duration_since(at).as_secs_f64() * quota).min(quota)
                }
            };
            bucket.counted_at = Some(now);
            if bucket.tokens < 1.0 {
                return Injected::RateLimited {
                    retry_after_secs: self.retry_after_secs,
                };
            }
            bucket.tokens -= 1.0;
        }
        if self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate {
            return Injected::Status(self.error_status);
        }
        Injected::None
    }
}

/// Requests seen per operation name and status code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub total: u64,
    /// operation name (e.g. `getSecretValue`) -> status code -> count.
    pub operations: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl Counters {
    pub(crate) fn record(&mut self, operation: &str, status: u16) {
        self.total += 1;
        *self
            .operations
            .entry(operation.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// Requests of `operation` answered with `status`.
    pub fn get(&self, operation: &str, status: u16) -> u64 {
        self.operations
            .get(operation)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of `operation`, any status.
    pub fn operation_total(&self, operation: &str) -> u64 {
        self.operations
            .get(operation)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// Maps a request to its stable operation name (see docs/INTERFACES.md). `None` for paths
/// outside the Thalassa API.
pub(crate) fn operation_name(
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
) -> Option<&'static str> {
    let has_query_param = |name: &str| {
        query.is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split('=').next() == Some(name))
        })
    };
    use axum::http::Method;
    if path == "/oidc/token" {
        return Some("token");
    }
    if path == "/v1/kms/summary" {
        return Some("kmsSummary");
    }
    if let Some(rest) = path.strip_prefix("/v1/kms/") {
        let segments: Vec<&str> = rest.split('/').collect();
        // region / "keys" / id? / action?
        return Some(match (segments.get(1), segments.len(), method) {
            (Some(&"keys"), 2, &Method::GET) => "listKeys",
            (Some(&"keys"), 2, &Method::POST) => "createKey",
            (Some(&"keys"), 3, &Method::GET) => "getKey",
            (Some(&"keys"), 3, &Method::DELETE) => "deleteKey",
            (Some(&"keys"), 4, m) => match (segments[3], m) {
                ("cancel-deletion", &Method::DELETE) => "cancelKeyDeletion",
                ("disable", &Method::POST) => "disableKey",
                ("enable", &Method::POST) => "enableKey",
                ("rotate", &Method::POST) => "rotateKey",
                ("rotation", &Method::PATCH) => "updateRotation",
                _ => "unknown",
            },
            _ => "unknown",
        });
    }
    if let Some(rest) = path.strip_prefix("/v1/secrets/") {
        let Some((_region, rest)) = rest.split_once('/') else {
            return Some("unknown");
        };
        if rest == "secrets" {
            return Some(match *method {
                Method::GET if has_query_param("path") => "browseSecrets",
                Method::GET => "listSecrets",
                Method::POST => "createSecret",
                _ => "unknown",
            });
        }
        if let Some(secret_path) = rest.strip_prefix("secret/") {
            let suffix = secret_path.rsplit('/').next().unwrap_or("");
            return Some(match (method, suffix) {
                (&Method::GET, _) => "getSecret",
                (&Method::POST, "value") => "getSecretValue",
                (&Method::POST, "versions") => "putSecretValue",
                (&Method::DELETE, "versions") if has_query_param("version") => {
                    "destroySecretVersion"
                }
                (&Method::PUT, "policy") => "updateAccessPolicy",
                (&Method::DELETE, _) => "deleteSecret",
                _ => "unknown",
            });
        }
        return Some("unknown");
    }
    if path.starts_with("/_emulator") {
        return None;
    }
    Some("unknown")
}
