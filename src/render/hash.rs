//! Keyed hashes of what the operator writes, and the check that a written Secret is intact.
//!
//! The data-hash annotation is an HMAC-SHA256 (keyed with a [`HashKey`] only the operator reads)
//! over the Secret's type and every key and value, so an edit to the Secret cannot forge a
//! matching annotation. Templated labels and annotations and the resolved templates are hashed
//! the same way.
//!
//! I/O contract: pure. Hashes are `hmac-sha256:<hex>` strings that reveal nothing of the values;
//! [`is_intact`] reads a Secret's annotations (see `annotations`) and recomputes them.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::annotations::{TemplateRecord, parse_sources, parse_template};
use crate::crd::DATA_HASH_ANNOTATION;

/// Secret key for a keyed hash of rendered data. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct HashKey(Zeroizing<Vec<u8>>);

impl HashKey {
    /// Wraps key material (at least 32 bytes are expected).
    pub fn new(bytes: Vec<u8>) -> Self {
        HashKey(Zeroizing::new(bytes))
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// HMAC-SHA256 over the Secret type (if managed) and every key/value, length-prefixed so no two
/// different maps hash alike. A plain hash would let anyone who edits the Secret forge a matching
/// annotation; the key lives in a Secret only the operator reads.
pub fn data_hash<'a>(
    key: &HashKey,
    secret_type: Option<&str>,
    data: impl IntoIterator<Item = (&'a String, &'a ByteString)>,
) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    let type_bytes = secret_type.unwrap_or("").as_bytes();
    mac.update(&(type_bytes.len() as u64).to_be_bytes());
    mac.update(type_bytes);
    let mut entries: Vec<_> = data.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in entries {
        mac.update(&(k.len() as u64).to_be_bytes());
        mac.update(k.as_bytes());
        mac.update(&(v.0.len() as u64).to_be_bytes());
        mac.update(&v.0);
    }
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2 + 12);
    hex.push_str("hmac-sha256:");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Keyed hash of the templated label and annotation values (they may be derived from values).
pub fn metadata_hash(
    key: &HashKey,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    let entries: BTreeMap<String, ByteString> = labels
        .iter()
        .map(|(k, v)| (format!("label:{k}"), ByteString(v.as_bytes().to_vec())))
        .chain(
            annotations
                .iter()
                .map(|(k, v)| (format!("annotation:{k}"), ByteString(v.as_bytes().to_vec()))),
        )
        .collect();
    data_hash(key, Some("template-metadata"), &entries)
}

/// A short fingerprint of the data-hash key (never the key): tells hashes made with another key.
pub fn key_fingerprint(key: &HashKey) -> String {
    let hash = data_hash(key, Some("key-fingerprint"), &BTreeMap::new());
    hash.trim_start_matches("hmac-sha256:")[..16].to_string()
}

/// Keyed hash of a resource's resolved templates: a Secret records it, so an edited template
/// (inline or in a ConfigMap) is noticed even when the resource's generation did not change.
pub fn template_hash(key: &HashKey, templates: &crate::template::TemplateSet) -> String {
    let text = serde_json::to_vec(templates).expect("templates serialize");
    let entries = BTreeMap::from([("templates".to_string(), ByteString(text))]);
    data_hash(key, Some("templates"), &entries)
}

/// Checks an existing Secret against its own annotations: true when the data of the keys it
/// records still hashes to its data-hash annotation (no edit since our last write). With
/// `owns_all_data` (Owner and Adopt: the data is exactly what the resource renders), a key the
/// record does not list also makes it not intact.
pub fn is_intact(secret: &Secret, key: &HashKey, owns_all_data: bool) -> bool {
    let Some(recorded) = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DATA_HASH_ANNOTATION))
    else {
        return false;
    };
    let sources = parse_sources(&secret.metadata);
    let template = parse_template(&secret.metadata);
    if let Some(record) = &template
        && !templated_metadata_intact(secret, key, record)
    {
        return false;
    }
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let mut ours = Vec::new();
    // A templated key may replace a source key of the same name (mergePolicy Merge): count once.
    let names: std::collections::BTreeSet<&String> = sources
        .values()
        .flat_map(|r| r.keys.iter())
        .chain(template.iter().flat_map(|t| t.keys.iter()))
        .collect();
    for key_name in names {
        match data.get_key_value(key_name) {
            Some(entry) => ours.push(entry),
            None => return false,
        }
    }
    if owns_all_data && data.len() != ours.len() {
        return false;
    }
    let secret_type = if owns_all_data {
        Some(secret.type_.as_deref().unwrap_or("Opaque"))
    } else {
        None
    };
    data_hash(key, secret_type, ours) == *recorded
}

/// True when the templated labels and annotations the record lists are present with the values
/// its keyed hash covers.
fn templated_metadata_intact(secret: &Secret, key: &HashKey, record: &TemplateRecord) -> bool {
    match (
        pick_entries(&secret.metadata.labels, &record.labels),
        pick_entries(&secret.metadata.annotations, &record.annotations),
    ) {
        (Some(labels), Some(annotations)) => {
            metadata_hash(key, &labels, &annotations) == record.metadata
        }
        _ => false,
    }
}

/// The entries of `keys` in `map`; `None` when any is missing.
pub(super) fn pick_entries(
    map: &Option<BTreeMap<String, String>>,
    keys: &[String],
) -> Option<BTreeMap<String, String>> {
    keys.iter()
        .map(|k| map.as_ref()?.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HashKey {
        HashKey::new(vec![7; 32])
    }

    #[test]
    fn hash_is_keyed_order_independent_and_sensitive_to_every_byte() {
        let mut a = BTreeMap::new();
        a.insert("x".to_string(), ByteString(b"1".to_vec()));
        a.insert("y".to_string(), ByteString(b"2".to_vec()));
        let h1 = data_hash(&key(), Some("Opaque"), &a);
        assert!(h1.starts_with("hmac-sha256:"));
        assert_eq!(h1, data_hash(&key(), Some("Opaque"), a.iter().rev()));
        assert_ne!(
            h1,
            data_hash(&HashKey::new(vec![8; 32]), Some("Opaque"), &a)
        );
        assert_ne!(h1, data_hash(&key(), Some("kubernetes.io/tls"), &a));
        let mut b = a.clone();
        b.insert("y".to_string(), ByteString(b"3".to_vec()));
        assert_ne!(h1, data_hash(&key(), Some("Opaque"), &b));
        // Length prefixes keep ("ab","") and ("a","b") apart.
        let mut c = BTreeMap::new();
        c.insert("ab".to_string(), ByteString(Vec::new()));
        let mut d = BTreeMap::new();
        d.insert("a".to_string(), ByteString(b"b".to_vec()));
        assert_ne!(data_hash(&key(), None, &c), data_hash(&key(), None, &d));
    }
}
