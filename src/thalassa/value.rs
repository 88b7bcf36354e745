//! Redacting holders for secret material: values revealed by or sent to Thalassa, and tokens.
//!
//! None of these types implement `Display`; their `Debug` output never contains the content, and
//! their buffers are zeroized on drop. The bytes are reachable only through `expose()`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// Standard base64 as Thalassa uses it; decoding also accepts values without padding, because
/// the padding carries no information and rejecting it would only turn a good value into an error.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Raw secret bytes (already base64-decoded), zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes` without copying them.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes. Callers must not log or format them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes standard base64 (padding optional). The error never contains any of the input.
    pub fn from_base64(encoded: &str) -> Result<Self, InvalidBase64> {
        let mut decoded = Zeroizing::new(Vec::with_capacity(encoded.len() / 4 * 3 + 3));
        BASE64
            .decode_vec(encoded.as_bytes(), &mut decoded)
            .map_err(|_| InvalidBase64)?;
        Ok(Self(decoded))
    }

    /// Encodes as standard base64 with padding, in a buffer that is zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut encoded = Zeroizing::new(String::with_capacity(self.0.len().div_ceil(3) * 4));
        BASE64.encode_string(self.0.as_slice(), &mut encoded);
        encoded
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<String> for SecretBytes {
    fn from(text: String) -> Self {
        Self::new(text.into_bytes())
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
}

impl From<&str> for SecretBytes {
    fn from(text: &str) -> Self {
        Self::new(text.as_bytes().to_vec())
    }
}

/// A base64 field did not decode. Deliberately carries no position or byte, which would leak part
/// of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value is not valid base64")]
pub struct InvalidBase64;

/// A credential string (token, client secret), zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text` without copying it.
    pub(crate) fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret text. Callers must not log or format it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the string is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for SecretString {
    fn from(text: &str) -> Self {
        Self::new(text.to_owned())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// A revealed secret value: either one string (which may hold arbitrary bytes) or key/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// Value of the `string` format (`secretString`), decoded.
    String(SecretBytes),
    /// Value of the `keyValue` format (`secretKeyValues`), each value decoded. Keys are not secret.
    KeyValues(BTreeMap<String, SecretBytes>),
}

impl SecretValue {
    /// Decoded size in bytes: the string's length, or the sum of the key/value values' lengths.
    pub fn total_len(&self) -> usize {
        match self {
            SecretValue::String(bytes) => bytes.len(),
            SecretValue::KeyValues(pairs) => pairs.values().map(SecretBytes::len).sum(),
        }
    }
}

/// A value to store with `createSecret` or `putSecretValue`; the client base64-encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValueInput {
    /// Stored as `secretString`.
    String(SecretBytes),
    /// Stored as `secretKeyValues`.
    KeyValues(BTreeMap<String, SecretBytes>),
    /// Thalassa generates `byte_length` random bytes (16–4096), read back as `secretString`.
    Generate {
        /// Number of random bytes to generate.
        byte_length: u32,
    },
}

impl Serialize for SecretValueInput {
    /// Serializes as a map with exactly one of `secretString`, `secretKeyValues` or
    /// `generateSecret`, meant to be `#[serde(flatten)]`ed into a request body.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Self::String(bytes) => {
                map.serialize_entry("secretString", bytes.to_base64().as_str())?;
            }
            Self::KeyValues(pairs) => {
                let encoded: BTreeMap<&str, Zeroizing<String>> = pairs
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.to_base64()))
                    .collect();
                let view: BTreeMap<&str, &str> = encoded
                    .iter()
                    .map(|(key, value)| (*key, value.as_str()))
                    .collect();
                map.serialize_entry("secretKeyValues", &view)?;
            }
            Self::Generate { byte_length } => {
                map.serialize_entry("generateSecret", &GenerateSecret { byte_length })?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateSecret<'a> {
    byte_length: &'a u32,
}

/// Deserializes a base64 string straight into [`SecretBytes`], so the encoded value never sits in
/// an un-zeroized `String` and a decoding error never quotes it.
pub(crate) struct Base64Secret(pub(crate) SecretBytes);

impl<'de> Deserialize<'de> for Base64Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64Visitor;

        impl Visitor<'_> for Base64Visitor {
            type Value = Base64Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }

            fn visit_str<E: de::Error>(self, encoded: &str) -> Result<Self::Value, E> {
                SecretBytes::from_base64(encoded)
                    .map(Base64Secret)
                    .map_err(|InvalidBase64| E::custom("secret value is not valid base64"))
            }

            fn visit_string<E: de::Error>(self, mut encoded: String) -> Result<Self::Value, E> {
                let decoded = self.visit_str(&encoded);
                encoded.zeroize();
                decoded
            }
        }

        deserializer.deserialize_str(Base64Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_secret_bytes_is_redacted() {
        let value = SecretBytes::from("hunter2-password");
        let debug = format!("{value:?}");
        assert_eq!(debug, "SecretBytes(<redacted 16 bytes>)");
        assert!(!debug.contains("hunter2"));
    }

    #[test]
    fn debug_of_values_and_inputs_is_redacted() {
        let pairs = BTreeMap::from([("user".to_owned(), SecretBytes::from("s3cr3t-user"))]);
        let value = SecretValue::KeyValues(pairs.clone());
        let input = SecretValueInput::KeyValues(pairs);
        let string_input = SecretValueInput::String(SecretBytes::from("s3cr3t-string"));
        for debug in [
            format!("{value:?}"),
            format!("{input:?}"),
            format!("{string_input:#?}"),
        ] {
            assert!(!debug.contains("s3cr3t"), "{debug}");
        }
        assert!(format!("{value:?}").contains("user"));
    }

    #[test]
    fn debug_of_secret_string_is_redacted() {
        let token = SecretString::from("tok-very-secret");
        assert_eq!(format!("{token:?}"), "SecretString(<redacted>)");
        assert_eq!(token.expose(), "tok-very-secret");
    }

    #[test]
    fn base64_round_trips_binary() {
        let bytes: Vec<u8> = (0..=255).collect();
        let value = SecretBytes::new(bytes.clone());
        let encoded = value.to_base64();
        assert_eq!(SecretBytes::from_base64(&encoded).unwrap().expose(), bytes);
    }

    #[test]
    fn base64_accepts_missing_padding() {
        assert_eq!(SecretBytes::from_base64("YWI").unwrap().expose(), b"ab");
        assert_eq!(SecretBytes::from_base64("YWI=").unwrap().expose(), b"ab");
    }

    #[test]
    fn invalid_base64_error_does_not_echo_input() {
        let err = SecretBytes::from_base64("not*base64!").unwrap_err();
        assert!(!err.to_string().contains("not*base64"));
        let json = r#"{"v":"c2VjcmV0*bad"}"#;
        #[derive(Deserialize)]
        struct Holder {
            #[allow(dead_code)]
            v: Base64Secret,
        }
        let err = serde_json::from_str::<Holder>(json).err().unwrap();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn input_serializes_exactly_one_field() {
        let string = serde_json::to_value(SecretValueInput::String("ab".into())).unwrap();
        assert_eq!(string, serde_json::json!({"secretString": "YWI="}));
        let pairs = BTreeMap::from([("k".to_owned(), SecretBytes::from("v"))]);
        let kv = serde_json::to_value(SecretValueInput::KeyValues(pairs)).unwrap();
        assert_eq!(kv, serde_json::json!({"secretKeyValues": {"k": "dg=="}}));
        let generate =
            serde_json::to_value(SecretValueInput::Generate { byte_length: 32 }).unwrap();
        assert_eq!(
            generate,
            serde_json::json!({"generateSecret": {"byteLength": 32}})
        );
    }
}
