//! Pure rendering: source values in, the Kubernetes Secret to apply out. No I/O here, so every
//! rule (key naming, type requirements, conflicts, hashes, ownership metadata) is unit-tested.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    crd::{
        CONNECTION_ANNOTATION, CreationPolicy, DATA_HASH_ANNOTATION, DEFAULT_CONNECTION,
        DeletionPolicy, GENERATION_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION,
        OWNER_UID_ANNOTATION, SOURCES_ANNOTATION, SecretType, TEMPLATE_ANNOTATION,
    },
    error::{Error, Result},
    thalassa::SecretValue,
};

/// How a source's value maps to Secret keys (derived from the spec by `validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMapping {
    /// `data[]` without `property`: a string secret written to one key.
    Whole {
        /// Secret key.
        secret_key: String,
    },
    /// `data[]` with `property`: one property of a key/value secret written to one key.
    Property {
        /// Secret key.
        secret_key: String,
        /// Property of the key/value secret.
        property: String,
    },
    /// `dataFrom[].path`: every property of a key/value secret, under its own name.
    AllProperties,
    /// A secret found under `dataFrom[].pathPrefix`: a string secret becomes `<relative>`, each
    /// property of a key/value secret becomes `<relative>.<property>`.
    UnderPrefix {
        /// Key derived from the path relative to the prefix.
        relative_key: String,
    },
}

/// Derives the Secret key for a path found under a prefix: the path relative to the prefix with
/// `/` replaced by `_` and `+` by `-` (Secret keys allow only `[-._a-zA-Z0-9]`).
pub fn prefix_key(prefix: &str, path: &str) -> String {
    path.strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/')
        .replace('/', "_")
        .replace('+', "-")
}

/// The value of one source at one version, ready to render.
#[derive(Debug)]
pub enum SourceValue<'a> {
    /// Freshly revealed from Thalassa.
    Revealed(&'a SecretValue),
    /// Unchanged since the last write: the keys this source wrote, copied from the existing
    /// Secret (whose keyed hash was verified).
    Reused(BTreeMap<String, &'a ByteString>),
}

/// One source with its mappings and value.
#[derive(Debug)]
pub struct RenderSource<'a> {
    /// Thalassa path.
    pub path: &'a str,
    /// Version being written.
    pub version: u64,
    /// How its value maps to keys (several `data[]` entries can read one path).
    pub mappings: Vec<&'a KeyMapping>,
    /// The value.
    pub value: SourceValue<'a>,
}

/// What each source path contributed, recorded in the Secret's sources annotation so unchanged
/// sources can be reused without a reveal. Never holds values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceRecord {
    /// Version written.
    pub version: u64,
    /// Secret keys the path produced.
    pub keys: Vec<String>,
}

/// What the templates contributed, recorded in the template annotation (never values): the
/// templated keys, labels and annotations, a keyed hash of the templates they were rendered
/// from, and a keyed hash of the templated label and annotation values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TemplateRecord {
    /// Keyed hash of the resolved templates ([`template_hash`]).
    pub hash: String,
    /// Secret keys the templates produced.
    pub keys: Vec<String>,
    /// Label keys the templates produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Annotation keys the templates produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    /// Keyed hash of the templated label and annotation values ([`metadata_hash`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

/// Rendered Secret data plus the per-source record (and, with templates, the templated labels
/// and annotations and their record). The data holds values: it is zeroized on drop and never
/// formatted.
#[derive(Default)]
pub struct RenderedData {
    /// Secret key to bytes.
    pub data: BTreeMap<String, ByteString>,
    /// Path to what it produced.
    pub sources: BTreeMap<String, SourceRecord>,
    /// Labels the templates produced.
    pub labels: BTreeMap<String, String>,
    /// Annotations the templates produced.
    pub annotations: BTreeMap<String, String>,
    /// What the templates contributed, when the resource has templates.
    pub template: Option<TemplateRecord>,
}

impl std::fmt::Debug for RenderedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("sources", &self.sources)
            .field("template", &self.template)
            .finish()
    }
}

impl Drop for RenderedData {
    fn drop(&mut self) {
        for value in self.data.values_mut() {
            zeroize::Zeroize::zeroize(&mut value.0);
        }
        self.labels.values_mut().for_each(zeroize::Zeroize::zeroize);
        self.annotations
            .values_mut()
            .for_each(zeroize::Zeroize::zeroize);
    }
}

/// Maps source values to Secret keys. Fails on a key written twice, on a value whose shape does
/// not match its mapping, or when the Secret type's required keys are missing.
pub fn render_data(
    sources: &[RenderSource<'_>],
    secret_type: Option<SecretType>,
) -> Result<RenderedData> {
    let rendered = map_sources(sources)?;
    check_data(&rendered.data, &rendered.sources, secret_type)?;
    Ok(rendered)
}

/// Maps source values to keys without checking them against what a Secret holds: the inputs of
/// templates (whose output is checked instead). Fails on a key written twice or a value whose
/// shape does not match its mapping.
pub fn map_sources(sources: &[RenderSource<'_>]) -> Result<RenderedData> {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut records: BTreeMap<String, SourceRecord> = BTreeMap::new();
    for source in sources {
        let mut produced: Vec<(String, Vec<u8>)> = Vec::new();
        match &source.value {
            SourceValue::Reused(keys) => {
                for (key, bytes) in keys {
                    produced.push((key.clone(), bytes.0.clone()));
                }
            }
            SourceValue::Revealed(value) => {
                for mapping in &source.mappings {
                    produce(source.path, mapping, value, &mut produced)?;
                }
            }
        }
        let record = records.entry(source.path.to_string()).or_default();
        record.version = source.version;
        for (key, bytes) in produced {
            if data.contains_key(&key) {
                return Err(Error::TargetKeyConflict { key });
            }
            record.keys.push(key.clone());
            data.insert(key, ByteString(bytes));
        }
    }
    Ok(RenderedData {
        data,
        sources: records,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        template: None,
    })
}

/// Checks the final data against what a Secret holds and what its type requires: at most
/// [`MAX_SECRET_DATA_BYTES`], valid JSON in `.dockerconfigjson`, the type's required keys.
/// `records` names the source of a key in messages.
pub fn check_data(
    data: &BTreeMap<String, ByteString>,
    records: &BTreeMap<String, SourceRecord>,
    secret_type: Option<SecretType>,
) -> Result<()> {
    if let Some(key) = data.keys().find(|k| !is_valid_secret_key(k)) {
        return Err(Error::SourceFormatMismatch {
            path: records
                .iter()
                .find(|(_, r)| r.keys.contains(key))
                .map(|(p, _)| p.clone())
                .unwrap_or_default(),
            detail: format!(
                "produces the Secret key {key:?}, which is not a valid key ([-._a-zA-Z0-9]+)"
            ),
        });
    }
    let size: usize = data.values().map(|v| v.0.len()).sum();
    if size > MAX_SECRET_DATA_BYTES {
        return Err(Error::SecretTooLarge {
            bytes: size,
            limit: MAX_SECRET_DATA_BYTES,
        });
    }
    if secret_type == Some(SecretType::DockerConfigJson)
        && let Some(config) = data.get(".dockerconfigjson")
        && serde_json::from_slice::<serde::de::IgnoredAny>(&config.0).is_err()
    {
        // Our own words: the parser's message may quote the value.
        return Err(Error::SourceFormatMismatch {
            path: records
                .iter()
                .find(|(_, r)| r.keys.iter().any(|k| k == ".dockerconfigjson"))
                .map(|(p, _)| p.clone())
                .unwrap_or_default(),
            detail: "produces the key .dockerconfigjson, which is not valid JSON (required by target.type kubernetes.io/dockerconfigjson)".into(),
        });
    }
    if let Some(secret_type) = secret_type {
        let (required, any_of) = secret_type.required_keys();
        let present = |k: &&str| data.contains_key(*k);
        let satisfied = if any_of {
            required.iter().any(present)
        } else {
            required.iter().all(present)
        };
        if !satisfied {
            return Err(Error::InvalidSpec(format!(
                "target.type {} needs the key(s) {} ({}), but the sources produce {:?}",
                secret_type.as_str(),
                required.join(", "),
                if any_of { "at least one" } else { "all" },
                data.keys().collect::<Vec<_>>()
            )));
        }
    }
    Ok(())
}

/// The data after templates: their output alone (`Replace`) or on top of the source keys
/// (`Merge`), checked against the Secret type; the templated labels and annotations; and the
/// record of what the templates produced (`hash` is [`template_hash`] of `set`).
pub fn apply_templates(
    mut raw: RenderedData,
    mut output: crate::template::Output,
    set: &crate::template::TemplateSet,
    hash: &str,
    secret_type: Option<SecretType>,
    key: &HashKey,
) -> Result<RenderedData> {
    let mut data = if set.merge {
        std::mem::take(&mut raw.data)
    } else {
        BTreeMap::new()
    };
    let mut sources = std::mem::take(&mut raw.sources);
    let templated: Vec<String> = output.data.keys().cloned().collect();
    for record in sources.values_mut() {
        // What a source produced is in the Secret only where no template replaced it.
        record
            .keys
            .retain(|k| set.merge && !output.data.contains_key(k));
    }
    for (name, bytes) in std::mem::take(&mut output.data) {
        data.insert(name, ByteString(bytes));
    }
    if secret_type == Some(SecretType::DockerConfigJson)
        && let Some(source) = set.data.get(".dockerconfigjson")
        && data
            .get(".dockerconfigjson")
            .is_some_and(|v| serde_json::from_slice::<serde::de::IgnoredAny>(&v.0).is_err())
    {
        return Err(Error::Template(crate::template::TemplateError {
            template: source.name.clone(),
            line: None,
            column: None,
            problem: "renders text that is not valid JSON, which target.type kubernetes.io/dockerconfigjson requires".into(),
        }));
    }
    check_data(&data, &sources, secret_type)?;
    let labels = std::mem::take(&mut output.labels);
    let annotations = std::mem::take(&mut output.annotations);
    let record = TemplateRecord {
        hash: hash.to_string(),
        keys: templated,
        labels: labels.keys().cloned().collect(),
        annotations: annotations.keys().cloned().collect(),
        metadata: metadata_hash(key, &labels, &annotations),
    };
    Ok(RenderedData {
        data,
        sources,
        labels,
        annotations,
        template: Some(record),
    })
}

/// With templates and nothing changed: the existing Secret's data, templated labels and
/// annotations as they are (its keyed hashes were verified), so nothing is revealed. `None` when
/// anything it records is missing.
pub fn reuse_templated(existing: &Secret) -> Option<RenderedData> {
    let sources = parse_sources(&existing.metadata);
    let record = parse_template(&existing.metadata)?;
    let names: std::collections::BTreeSet<&String> = sources
        .values()
        .flat_map(|r| r.keys.iter())
        .chain(record.keys.iter())
        .collect();
    let have = existing.data.as_ref()?;
    let data = names
        .into_iter()
        .map(|k| have.get(k).map(|v| (k.clone(), v.clone())))
        .collect::<Option<BTreeMap<_, _>>>()?;
    let labels = pick_entries(&existing.metadata.labels, &record.labels)?;
    let annotations = pick_entries(&existing.metadata.annotations, &record.annotations)?;
    Some(RenderedData {
        data,
        sources,
        labels,
        annotations,
        template: Some(record),
    })
}

/// The bytes `value` adds to the Secret's data through `mappings`: what [`map_sources`] would
/// produce from it, without copying anything (a mapping that does not fit the value adds
/// nothing here; rendering reports it).
pub fn mapped_len(mappings: &[&KeyMapping], value: &SecretValue) -> usize {
    mappings
        .iter()
        .map(|mapping| match (mapping, value) {
            (KeyMapping::Whole { .. }, SecretValue::String(bytes))
            | (KeyMapping::UnderPrefix { .. }, SecretValue::String(bytes)) => bytes.len(),
            (KeyMapping::Property { property, .. }, SecretValue::KeyValues(map)) => {
                map.get(property).map_or(0, |bytes| bytes.len())
            }
            (KeyMapping::AllProperties, SecretValue::KeyValues(_))
            | (KeyMapping::UnderPrefix { .. }, SecretValue::KeyValues(_)) => value.total_len(),
            _ => 0,
        })
        .sum()
}

fn produce(
    path: &str,
    mapping: &KeyMapping,
    value: &SecretValue,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let mismatch = |detail: String| Error::SourceFormatMismatch {
        path: path.to_string(),
        detail,
    };
    match (mapping, value) {
        (KeyMapping::Whole { secret_key }, SecretValue::String(bytes)) => {
            out.push((secret_key.clone(), bytes.expose().to_vec()));
        }
        (KeyMapping::Whole { .. }, SecretValue::KeyValues(map)) => {
            return Err(mismatch(format!(
                "is a key/value secret; set remoteRef.property to one of {:?}",
                map.keys().collect::<Vec<_>>()
            )));
        }
        (
            KeyMapping::Property {
                secret_key,
                property,
            },
            SecretValue::KeyValues(map),
        ) => {
            let bytes = map.get(property).ok_or_else(|| {
                mismatch(format!(
                    "has no property {property:?} (properties: {:?})",
                    map.keys().collect::<Vec<_>>()
                ))
            })?;
            out.push((secret_key.clone(), bytes.expose().to_vec()));
        }
        (KeyMapping::Property { property, .. }, SecretValue::String(_)) => {
            return Err(mismatch(format!(
                "is a string secret, so remoteRef.property {property:?} cannot be read; remove property"
            )));
        }
        (KeyMapping::AllProperties, SecretValue::KeyValues(map)) => {
            for (property, bytes) in map {
                out.push((property.clone(), bytes.expose().to_vec()));
            }
        }
        (KeyMapping::AllProperties, SecretValue::String(_)) => {
            return Err(mismatch(
                "is a string secret; dataFrom.path needs a key/value secret (use data[] for string secrets)".into(),
            ));
        }
        (KeyMapping::UnderPrefix { relative_key }, SecretValue::String(bytes)) => {
            out.push((relative_key.clone(), bytes.expose().to_vec()));
        }
        (KeyMapping::UnderPrefix { relative_key }, SecretValue::KeyValues(map)) => {
            for (property, bytes) in map {
                out.push((
                    format!("{relative_key}.{property}"),
                    bytes.expose().to_vec(),
                ));
            }
        }
    }
    Ok(())
}

/// The most data a Kubernetes Secret holds: the apiserver refuses a Secret whose values add up
/// to more than 1 MiB.
pub const MAX_SECRET_DATA_BYTES: usize = 1024 * 1024;

/// Kubernetes qualified-name rule for label and annotation keys (the CRD's CEL rule uses the same
/// expression): an optional DNS-subdomain prefix and `/`, then 1-63 characters `[A-Za-z0-9_.-]`
/// beginning and ending alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let subdomain_label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // The apiserver also limits the prefix, a DNS subdomain, to 253 bytes.
    prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(subdomain_label))
        && is_label_value(name)
        && !name.is_empty()
}

/// Kubernetes label value rule: empty, or at most 63 characters `[A-Za-z0-9_.-]` beginning and
/// ending alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

/// Kubernetes Secret key rule (`IsConfigMapKey`): 1–253 characters of `[-._a-zA-Z0-9]`, not `.`,
/// and not starting with `..` (the apiserver refuses `..a` and `...` too).
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

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

/// Everything about the target that the render needs, from the validated spec.
#[derive(Debug, Clone)]
pub struct TargetSettings<'a> {
    /// Secret name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Owning resource's name.
    pub owner_name: &'a str,
    /// Owning resource's UID.
    pub owner_uid: &'a str,
    /// Owning resource's `metadata.generation`.
    pub owner_generation: i64,
    /// ownerReference to set when `deletionPolicy: Delete`.
    pub owner_reference: Option<OwnerReference>,
    /// Secret type; `None` leaves the type alone (Merge into a foreign Secret).
    pub secret_type: Option<SecretType>,
    /// Extra labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Extra annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// Immutable flag.
    pub immutable: Option<bool>,
    /// Deletion policy.
    pub deletion_policy: DeletionPolicy,
    /// Creation policy.
    pub creation_policy: CreationPolicy,
    /// Identity of the connection the values were read with ([`DEFAULT_CONNECTION`] or a store).
    pub connection: &'a str,
}

/// Builds the Secret to server-side apply: our keys only, ownership labels and annotations (owner,
/// sources and versions, keyed data hash), and the ownerReference for `deletionPolicy: Delete`.
pub fn render_secret(
    target: &TargetSettings<'_>,
    rendered: &RenderedData,
    data_hash: &str,
) -> Secret {
    let mut labels = target.labels.clone();
    labels.extend(rendered.labels.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = target.annotations.clone();
    annotations.extend(rendered.annotations.clone());
    if let Some(record) = &rendered.template {
        annotations.insert(
            TEMPLATE_ANNOTATION.into(),
            serde_json::to_string(record).expect("template record serializes"),
        );
    }
    annotations.insert(OWNER_ANNOTATION.into(), target.owner_name.to_string());
    annotations.insert(OWNER_UID_ANNOTATION.into(), target.owner_uid.to_string());
    annotations.insert(
        SOURCES_ANNOTATION.into(),
        serde_json::to_string(&rendered.sources).expect("source records serialize"),
    );
    annotations.insert(DATA_HASH_ANNOTATION.into(), data_hash.to_string());
    annotations.insert(
        GENERATION_ANNOTATION.into(),
        target.owner_generation.to_string(),
    );
    if target.connection != DEFAULT_CONNECTION {
        annotations.insert(CONNECTION_ANNOTATION.into(), target.connection.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(target.name.to_string()),
            namespace: Some(target.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: target.owner_reference.clone().map(|r| vec![r]),
            ..Default::default()
        },
        type_: target.secret_type.map(|t| t.as_str().to_string()),
        data: Some(rendered.data.clone()),
        immutable: target.immutable,
        ..Default::default()
    }
}

/// Parses the sources annotation of an existing Secret (empty when missing or unreadable).
pub fn parse_sources(metadata: &ObjectMeta) -> BTreeMap<String, SourceRecord> {
    metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCES_ANNOTATION))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Parses the template annotation of an existing Secret (`None` when missing or unreadable).
pub fn parse_template(metadata: &ObjectMeta) -> Option<TemplateRecord> {
    metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
}

/// The owner generation recorded on an existing Secret.
pub fn written_generation(metadata: &ObjectMeta) -> Option<i64> {
    metadata
        .annotations
        .as_ref()?
        .get(GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// True when the Secret's values were read with the connection `connection` (a Secret without the
/// annotation was read with the default connection).
pub fn written_with(metadata: &ObjectMeta, connection: &str) -> bool {
    let recorded = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONNECTION_ANNOTATION))
        .map_or(DEFAULT_CONNECTION, String::as_str);
    recorded == connection
}

/// True when the Secret's annotations say it was rendered for this very resource (UID, not just
/// name) at this generation, so what it records about sources can be trusted.
pub fn written_for(
    metadata: &ObjectMeta,
    owner_name: &str,
    owner_uid: &str,
    generation: Option<i64>,
) -> bool {
    named_owner(metadata) == Some(owner_name)
        && metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNER_UID_ANNOTATION))
            .is_some_and(|v| v == owner_uid)
        && generation.is_some()
        && written_generation(metadata) == generation
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
fn pick_entries(
    map: &Option<BTreeMap<String, String>>,
    keys: &[String],
) -> Option<BTreeMap<String, String>> {
    keys.iter()
        .map(|k| map.as_ref()?.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
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

/// The `ThalassaSecret` a Secret's owner annotation names, if any.
pub fn named_owner(metadata: &ObjectMeta) -> Option<&str> {
    metadata
        .annotations
        .as_ref()?
        .get(OWNER_ANNOTATION)
        .map(String::as_str)
}

/// Borrows the named keys of an existing Secret, for a source whose version did not change; `None`
/// when any key is missing (then the source is revealed again).
pub fn reuse_keys<'a>(
    secret: &'a Secret,
    keys: &[String],
) -> Option<BTreeMap<String, &'a ByteString>> {
    let data = secret.data.as_ref()?;
    keys.iter()
        .map(|k| data.get(k).map(|v| (k.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{error::Reason, thalassa::SecretBytes};

    fn s(text: &str) -> SecretValue {
        SecretValue::String(SecretBytes::new(text.as_bytes().to_vec()))
    }

    fn kv(pairs: &[(&str, &str)]) -> SecretValue {
        SecretValue::KeyValues(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretBytes::new(v.as_bytes().to_vec())))
                .collect(),
        )
    }

    fn key() -> HashKey {
        HashKey::new(vec![7; 32])
    }

    #[test]
    fn maps_every_kind_of_source() {
        let whole = KeyMapping::Whole {
            secret_key: "password".into(),
        };
        let prop = KeyMapping::Property {
            secret_key: "user".into(),
            property: "username".into(),
        };
        let all = KeyMapping::AllProperties;
        let under = KeyMapping::UnderPrefix {
            relative_key: prefix_key("/app/prod/", "/app/prod/db/api+key"),
        };
        let pw = s("hunter2");
        let creds = kv(&[("username", "admin"), ("port", "5432")]);
        let api = s("k");
        let sources = [
            RenderSource {
                path: "/app/prod/db/password",
                version: 7,
                mappings: vec![&whole],
                value: SourceValue::Revealed(&pw),
            },
            RenderSource {
                path: "/app/prod/db/creds",
                version: 3,
                mappings: vec![&prop, &all],
                value: SourceValue::Revealed(&creds),
            },
            RenderSource {
                path: "/app/prod/db/api+key",
                version: 1,
                mappings: vec![&under],
                value: SourceValue::Revealed(&api),
            },
        ];
        let rendered = render_data(&sources, Some(SecretType::Opaque)).unwrap();
        let keys: Vec<_> = rendered.data.keys().cloned().collect();
        assert_eq!(keys, ["db_api-key", "password", "port", "user", "username"]);
        assert_eq!(rendered.data["user"].0, b"admin");
        assert_eq!(rendered.sources["/app/prod/db/creds"].version, 3);
        assert_eq!(
            rendered.sources["/app/prod/db/creds"].keys,
            ["user", "port", "username"]
        );
        // Debug output names keys only.
        let debug = format!("{rendered:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("admin"),
            "{debug}"
        );
    }

    #[test]
    fn rejects_conflicts_shape_mismatches_and_missing_type_keys() {
        let a = KeyMapping::Whole {
            secret_key: "k".into(),
        };
        let b = KeyMapping::Whole {
            secret_key: "k".into(),
        };
        let (v1, v2) = (s("1"), s("2"));
        let dup = [
            RenderSource {
                path: "/a",
                version: 1,
                mappings: vec![&a],
                value: SourceValue::Revealed(&v1),
            },
            RenderSource {
                path: "/b",
                version: 1,
                mappings: vec![&b],
                value: SourceValue::Revealed(&v2),
            },
        ];
        assert_eq!(
            render_data(&dup, None).unwrap_err().reason(),
            Reason::TargetKeyConflict
        );

        let prop = KeyMapping::Property {
            secret_key: "k".into(),
            property: "missing".into(),
        };
        let creds = kv(&[("username", "secret-user")]);
        let err = render_data(
            &[RenderSource {
                path: "/c",
                version: 1,
                mappings: vec![&prop],
                value: SourceValue::Revealed(&creds),
            }],
            None,
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::SourceFormatMismatch);
        assert!(err.to_string().contains("username") && !err.to_string().contains("secret-user"));

        let err = render_data(
            &[RenderSource {
                path: "/a",
                version: 1,
                mappings: vec![&a],
                value: SourceValue::Revealed(&v1),
            }],
            Some(SecretType::Tls),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidSpec);
        assert!(err.to_string().contains("tls.crt"));
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

    #[test]
    fn rendered_secret_round_trips_through_intact_check() {
        let whole = KeyMapping::Whole {
            secret_key: "password".into(),
        };
        let pw = s("hunter2");
        let rendered = render_data(
            &[RenderSource {
                path: "/p",
                version: 2,
                mappings: vec![&whole],
                value: SourceValue::Revealed(&pw),
            }],
            Some(SecretType::Opaque),
        )
        .unwrap();
        let hash = data_hash(&key(), Some("Opaque"), &rendered.data);
        let empty = BTreeMap::new();
        let target = TargetSettings {
            name: "db",
            namespace: "shop",
            owner_name: "db",
            owner_uid: "uid-1",
            owner_generation: 1,
            owner_reference: None,
            secret_type: Some(SecretType::Opaque),
            labels: &empty,
            annotations: &empty,
            immutable: None,
            deletion_policy: DeletionPolicy::Retain,
            creation_policy: CreationPolicy::Owner,
            connection: DEFAULT_CONNECTION,
        };
        let mut secret = render_secret(&target, &rendered, &hash);
        assert_eq!(named_owner(&secret.metadata), Some("db"));
        assert!(
            !secret
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(CONNECTION_ANNOTATION),
            "the default connection is recorded by the annotation's absence"
        );
        assert!(written_with(&secret.metadata, DEFAULT_CONNECTION));
        assert_eq!(
            secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str),
            Some(MANAGED_BY)
        );
        assert!(is_intact(&secret, &key(), true));
        assert_eq!(parse_sources(&secret.metadata)["/p"].version, 2);
        assert_eq!(written_generation(&secret.metadata), Some(1));
        let annotations = serde_json::to_string(&secret.metadata.annotations).unwrap();
        assert!(!annotations.contains("hunter2"));
        // An edit to the data is detected.
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"edited".to_vec()));
        assert!(!is_intact(&secret, &key(), true));
    }

    #[test]
    fn an_injected_key_breaks_intactness_only_when_the_data_is_all_ours() {
        let whole = KeyMapping::Whole {
            secret_key: "password".into(),
        };
        let pw = s("hunter2");
        let sources = [RenderSource {
            path: "/p",
            version: 2,
            mappings: vec![&whole],
            value: SourceValue::Revealed(&pw),
        }];
        let rendered = render_data(&sources, None).unwrap();
        let hash = data_hash(&key(), None, &rendered.data);
        let empty = BTreeMap::new();
        let target = TargetSettings {
            name: "db",
            namespace: "shop",
            owner_name: "db",
            owner_uid: "uid-1",
            owner_generation: 3,
            owner_reference: None,
            secret_type: None,
            labels: &empty,
            annotations: &empty,
            immutable: None,
            deletion_policy: DeletionPolicy::Retain,
            creation_policy: CreationPolicy::Merge,
            connection: "ThalassaSecretStore/s-uid/2",
        };
        let mut secret = render_secret(&target, &rendered, &hash);
        assert!(written_for(&secret.metadata, "db", "uid-1", Some(3)));
        assert!(written_with(
            &secret.metadata,
            "ThalassaSecretStore/s-uid/2"
        ));
        assert!(
            !written_with(&secret.metadata, "ThalassaSecretStore/s-uid/3"),
            "another store generation is another identity"
        );
        assert!(!written_with(&secret.metadata, DEFAULT_CONNECTION));
        assert!(
            !written_for(&secret.metadata, "db", "uid-2", Some(3)),
            "another UID"
        );
        assert!(
            !written_for(&secret.metadata, "db", "uid-1", Some(4)),
            "another generation"
        );
        assert!(!written_for(&secret.metadata, "other", "uid-1", Some(3)));
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("injected".into(), ByteString(b"x".to_vec()));
        assert!(
            is_intact(&secret, &key(), false),
            "Merge: other keys are not ours"
        );
    }

    #[test]
    fn oversized_data_and_invalid_docker_config_are_refused_without_quoting() {
        let whole = |k: &str| KeyMapping::Whole {
            secret_key: k.into(),
        };
        let (a, b) = (whole("a"), whole("b"));
        let big = SecretValue::String(SecretBytes::new(vec![b'x'; MAX_SECRET_DATA_BYTES / 2 + 1]));
        let err = render_data(
            &[
                RenderSource {
                    path: "/a",
                    version: 1,
                    mappings: vec![&a],
                    value: SourceValue::Revealed(&big),
                },
                RenderSource {
                    path: "/b",
                    version: 1,
                    mappings: vec![&b],
                    value: SourceValue::Revealed(&big),
                },
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::SecretTooLarge);
        let docker = whole(".dockerconfigjson");
        let not_json = s("QCANARY{");
        let err = render_data(
            &[RenderSource {
                path: "/d",
                version: 1,
                mappings: vec![&docker],
                value: SourceValue::Revealed(&not_json),
            }],
            Some(SecretType::DockerConfigJson),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::SourceFormatMismatch);
        let text = err.to_string();
        assert!(text.contains("/d") && !text.contains("CANARY"), "{text}");
    }

    #[test]
    fn qualified_names_follow_the_kubernetes_rules() {
        for good in ["app", "a.b-c_d", "example.com/tier", "a/b", "x9"] {
            assert!(is_qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "a/b/c",
            "Example.com/x",
            "/x",
            "x/",
            "a..b/x",
            &"n".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        for good in ["", "v1", "a.b_c-d"] {
            assert!(is_label_value(good), "{good}");
        }
        for bad in ["-v", "v-", "a b", &"v".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn prefix_keys_follow_the_documented_naming() {
        assert_eq!(prefix_key("/app/", "/app/db/password"), "db_password");
        assert_eq!(prefix_key("/", "/x"), "x");
        assert_eq!(prefix_key("/app/", "/app/a+b"), "a-b");
        assert!(is_valid_secret_key("db_password.v1-x"));
        assert!(
            !is_valid_secret_key("a b") && !is_valid_secret_key("..") && !is_valid_secret_key("")
        );
        // The apiserver refuses every key starting with `..`, not only `..` itself.
        assert!(!is_valid_secret_key("..a") && !is_valid_secret_key("..."));
        assert!(is_valid_secret_key(".a") && is_valid_secret_key("a.."));
    }

    fn templated(merge: bool) -> RenderedData {
        let user = kv(&[("username", "app"), ("password", "hunter2")]);
        let all = KeyMapping::AllProperties;
        let raw = map_sources(&[RenderSource {
            path: "/db",
            version: 4,
            mappings: vec![&all],
            value: SourceValue::Revealed(&user),
        }])
        .unwrap();
        let set = crate::template::TemplateSet {
            data: BTreeMap::from([(
                "username".to_string(),
                crate::template::Source {
                    name: "target.template.data[username]".into(),
                    text: "{{ username | upper }}".into(),
                },
            )]),
            merge,
            ..Default::default()
        };
        let mut output = crate::template::render(
            &set,
            &raw.data
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        )
        .unwrap();
        output.labels.insert("tier".into(), "db".into());
        apply_templates(
            raw,
            output,
            &set,
            "hmac-sha256:t",
            Some(SecretType::Opaque),
            &key(),
        )
        .unwrap()
    }

    #[test]
    fn templates_replace_or_merge_and_record_what_they_wrote() {
        let replaced = templated(false);
        assert_eq!(replaced.data.keys().collect::<Vec<_>>(), ["username"]);
        assert_eq!(replaced.data["username"].0, b"APP");
        assert!(
            replaced.sources["/db"].keys.is_empty(),
            "no source key is in the Secret"
        );
        let record = replaced.template.clone().unwrap();
        assert_eq!(
            (record.keys.clone(), record.labels.clone()),
            (vec!["username".to_string()], vec!["tier".to_string()])
        );
        let merged = templated(true);
        assert_eq!(
            merged.data.keys().collect::<Vec<_>>(),
            ["password", "username"]
        );
        assert_eq!(merged.data["username"].0, b"APP", "the template wins");
        assert_eq!(merged.sources["/db"].keys, ["password"]);
    }

    #[test]
    fn a_templated_secret_is_intact_until_its_data_or_templated_metadata_is_edited() {
        let rendered = templated(true);
        let hash = data_hash(&key(), Some("Opaque"), rendered.data.iter());
        let labels = BTreeMap::new();
        let annotations = BTreeMap::new();
        let target = TargetSettings {
            name: "app",
            namespace: "team",
            owner_name: "app",
            owner_uid: "uid-1",
            owner_generation: 1,
            owner_reference: None,
            secret_type: Some(SecretType::Opaque),
            labels: &labels,
            annotations: &annotations,
            immutable: None,
            deletion_policy: DeletionPolicy::Retain,
            creation_policy: CreationPolicy::Owner,
            connection: DEFAULT_CONNECTION,
        };
        let secret = render_secret(&target, &rendered, &hash);
        assert!(is_intact(&secret, &key(), true));
        let reused = reuse_templated(&secret).expect("everything recorded is there");
        assert_eq!(reused.data, rendered.data);
        assert_eq!(reused.labels["tier"], "db");
        let mut relabelled = secret.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "web".into());
        assert!(
            !is_intact(&relabelled, &key(), true),
            "a templated label was edited"
        );
        let mut unlabelled = secret.clone();
        unlabelled.metadata.labels.as_mut().unwrap().remove("tier");
        assert!(!is_intact(&unlabelled, &key(), true));
        assert!(reuse_templated(&unlabelled).is_none());
        let mut edited = secret;
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("username".into(), ByteString(b"root".to_vec()));
        assert!(
            !is_intact(&edited, &key(), true),
            "templated data was edited"
        );
    }
}
