//! Secret values: the three value fields of a create or put (a string, key/value pairs, or a
//! generated value), their limits, the plaintext of one version while a request is served
//! ([`Plain`]), and the sealed (encrypted) form that is stored ([`Sealed`]).
//!
//! I/O contract: pure. A value over the limits or with an invalid field is a 400 that never
//! quotes the value; the plaintext lives only as long as the request that needs it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::Deserialize;

use crate::config::SeedValue;
use crate::crypto::NONCE_LEN;
use crate::error::ApiError;

pub(crate) const MAX_VALUE_BYTES: usize = 4096;

pub(crate) const MAX_KEYS: usize = 256;

pub(crate) const MAX_KEY_NAME_LEN: usize = 128;

pub(crate) const MIN_GENERATE: i64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    String,
    KeyValues,
}

/// One encrypted version payload. The plaintext is never stored.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub format: ValueFormat,
    pub key_version: u32,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// The plaintext of one version, alive only while a request is being served.
pub(crate) enum Plain {
    String(Vec<u8>),
    KeyValues(BTreeMap<String, Vec<u8>>),
}

impl Plain {
    pub(super) fn format(&self) -> ValueFormat {
        match self {
            Self::String(_) => ValueFormat::String,
            Self::KeyValues(_) => ValueFormat::KeyValues,
        }
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::String(b) => b.clone(),
            Self::KeyValues(kv) => {
                let encoded: BTreeMap<&String, String> =
                    kv.iter().map(|(k, v)| (k, B64.encode(v))).collect();
                serde_json::to_vec(&encoded).expect("a string map always serialises")
            }
        }
    }

    pub(super) fn from_bytes(format: ValueFormat, bytes: Vec<u8>) -> Result<Self, ApiError> {
        match format {
            ValueFormat::String => Ok(Self::String(bytes)),
            ValueFormat::KeyValues => {
                let encoded: BTreeMap<String, String> = serde_json::from_slice(&bytes)
                    .map_err(|_| ApiError::new(500, "stored value is corrupt"))?;
                let mut kv = BTreeMap::new();
                for (k, v) in encoded {
                    let bytes = B64
                        .decode(v)
                        .map_err(|_| ApiError::new(500, "stored value is corrupt"))?;
                    kv.insert(k, bytes);
                }
                Ok(Self::KeyValues(kv))
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateSecret {
    pub byte_length: Option<i64>,
}

/// The three mutually exclusive value fields of create and put.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValueFields {
    pub secret_string: Option<String>,
    pub secret_key_values: Option<BTreeMap<String, String>>,
    pub generate_secret: Option<GenerateSecret>,
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(value)
        .map_err(|_| ApiError::bad_request(format!("{field} must be valid base64")))
}

fn check_size(field: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.is_empty() || bytes.len() > MAX_VALUE_BYTES {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {MAX_VALUE_BYTES} bytes after base64 decoding (got {})",
            bytes.len()
        )));
    }
    Ok(())
}

fn check_key_values(kv: &BTreeMap<String, Vec<u8>>) -> Result<(), ApiError> {
    if kv.is_empty() || kv.len() > MAX_KEYS {
        return Err(ApiError::bad_request(format!(
            "secretKeyValues must have 1 to {MAX_KEYS} keys (got {})",
            kv.len()
        )));
    }
    for (name, value) in kv {
        if !valid_key_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid key name {name:?} in secretKeyValues: must be 1 to {MAX_KEY_NAME_LEN} characters of A-Z a-z 0-9 _ . -"
            )));
        }
        check_size(&format!("secretKeyValues[{name}]"), value)?;
    }
    Ok(())
}

/// Decodes and checks the exactly-one-of value fields of create and put.
pub(crate) fn plain_from_fields(fields: &ValueFields) -> Result<Plain, ApiError> {
    let set = [
        fields.secret_string.is_some(),
        fields.secret_key_values.is_some(),
        fields.generate_secret.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set != 1 {
        return Err(ApiError::bad_request(
            "exactly one of secretString, secretKeyValues or generateSecret must be set",
        ));
    }
    if let Some(s) = &fields.secret_string {
        let bytes = decode_b64("secretString", s)?;
        check_size("secretString", &bytes)?;
        return Ok(Plain::String(bytes));
    }
    if let Some(kv) = &fields.secret_key_values {
        let mut decoded = BTreeMap::new();
        for (name, value) in kv {
            decoded.insert(
                name.clone(),
                decode_b64(&format!("secretKeyValues[{name}]"), value)?,
            );
        }
        check_key_values(&decoded)?;
        return Ok(Plain::KeyValues(decoded));
    }
    let length = fields
        .generate_secret
        .as_ref()
        .and_then(|g| g.byte_length)
        .unwrap_or(0);
    generated(length)
}

fn generated(length: i64) -> Result<Plain, ApiError> {
    if !(MIN_GENERATE..=MAX_VALUE_BYTES as i64).contains(&length) {
        return Err(ApiError::bad_request(format!(
            "generateSecret.byteLength must be between {MIN_GENERATE} and {MAX_VALUE_BYTES}"
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    rand::rng().fill_bytes(&mut bytes);
    Ok(Plain::String(bytes))
}

/// Converts a control/seed value into a plaintext, applying the API's value rules.
pub(crate) fn plain_from_seed(value: &SeedValue) -> Result<Plain, ApiError> {
    let plain = match value {
        SeedValue::String(s) => Plain::String(s.as_bytes().to_vec()),
        SeedValue::Bytes(b) => Plain::String(b.clone()),
        SeedValue::KeyValues(kv) => Plain::KeyValues(
            kv.iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
        ),
        SeedValue::Generate(n) => return generated(i64::from(*n)),
    };
    match &plain {
        Plain::String(b) => check_size("secretString", b)?,
        Plain::KeyValues(kv) => check_key_values(kv)?,
    }
    Ok(plain)
}
