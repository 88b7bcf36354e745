//! Pure rendering: source values in, the Kubernetes Secret to apply out. No I/O here, so every
//! rule (key naming, type requirements, conflicts, hashes, ownership metadata) is unit-tested.
//!
//! This file maps source values to keys ([`render_data`], [`map_sources`]), checks the data
//! against the Secret type ([`check_data`]), applies template output ([`apply_templates`]) and
//! assembles the Secret ([`render_secret`]). Beside it:
//! - `names`: the Kubernetes rules for Secret keys, label values and qualified names;
//! - `annotations`: the codec of what a written Secret records (owner, sources, templates);
//! - `hash`: the keyed hashes of data and metadata, and the intactness check.
//!
//! I/O contract: pure functions; errors name paths and keys, never values. Rendered data is
//! zeroized on drop and never formatted.

mod annotations;
mod hash;
mod names;

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};

use crate::{
    crd::{MANAGED_BY, MANAGED_BY_LABEL, SecretType},
    error::{Error, Result},
    thalassa::SecretValue,
};

pub(crate) use annotations::{
    SourceRecord, TemplateRecord, named_owner, parse_sources, parse_template, written_for,
    written_with,
};
use hash::pick_entries;
pub use hash::{HashKey, data_hash, is_intact, key_fingerprint, metadata_hash, template_hash};
pub use names::{
    MAX_SECRET_DATA_BYTES, is_label_value, is_qualified_name, is_valid_secret_key, prefix_key,
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

/// Rendered Secret data plus the per-source record (and, with templates, the templated labels
/// and annotations and their record). The data holds values: it is zeroized on drop and never
/// formatted.
#[derive(Default)]
pub struct RenderedData {
    /// Secret key to bytes.
    pub data: BTreeMap<String, ByteString>,
    /// Path to what it produced.
    pub(crate) sources: BTreeMap<String, SourceRecord>,
    /// Labels the templates produced.
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotations the templates produced.
    pub(crate) annotations: BTreeMap<String, String>,
    /// What the templates contributed, when the resource has templates.
    pub(crate) template: Option<TemplateRecord>,
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
pub(crate) fn map_sources(sources: &[RenderSource<'_>]) -> Result<RenderedData> {
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
    // One order whatever produced the keys (entry order on a reveal, the Secret's sorted keys
    // on a reuse): otherwise the same data records differently after a restart and the Secret
    // is rewritten for nothing.
    for record in records.values_mut() {
        record.keys.sort_unstable();
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
pub(crate) fn check_data(
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
pub(crate) fn apply_templates(
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
pub(crate) fn reuse_templated(existing: &Secret) -> Option<RenderedData> {
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
pub(crate) fn mapped_len(mappings: &[&KeyMapping], value: &SecretValue) -> usize {
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

/// Everything about the target that the render needs, from the validated spec.
#[derive(Debug, Clone)]
pub(crate) struct TargetSettings<'a> {
    /// Secret name.
    pub(crate) name: &'a str,
    /// Namespace.
    pub(crate) namespace: &'a str,
    /// Owning resource's name.
    pub(crate) owner_name: &'a str,
    /// Owning resource's UID.
    pub(crate) owner_uid: &'a str,
    /// Owning resource's `metadata.generation`.
    pub(crate) owner_generation: i64,
    /// ownerReference to set when `deletionPolicy: Delete`.
    pub(crate) owner_reference: Option<OwnerReference>,
    /// Secret type; `None` leaves the type alone (Merge into a foreign Secret).
    pub(crate) secret_type: Option<SecretType>,
    /// Extra labels.
    pub(crate) labels: &'a BTreeMap<String, String>,
    /// Extra annotations.
    pub(crate) annotations: &'a BTreeMap<String, String>,
    /// Immutable flag.
    pub(crate) immutable: Option<bool>,
    /// Identity of the connection the values were read with ([`DEFAULT_CONNECTION`](crate::crd::DEFAULT_CONNECTION) or a store).
    pub(crate) connection: &'a str,
}

/// Builds the Secret to server-side apply: our keys only, ownership labels and annotations (owner,
/// sources and versions, keyed data hash), and the ownerReference for `deletionPolicy: Delete`.
pub(crate) fn render_secret(
    target: &TargetSettings<'_>,
    rendered: &RenderedData,
    data_hash: &str,
) -> Secret {
    let mut labels = target.labels.clone();
    labels.extend(rendered.labels.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = target.annotations.clone();
    annotations.extend(rendered.annotations.clone());
    annotations::record_annotations(&mut annotations, target, rendered, data_hash);
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

/// Borrows the named keys of an existing Secret, for a source whose version did not change; `None`
/// when any key is missing (then the source is revealed again).
pub(crate) fn reuse_keys<'a>(
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
    use super::annotations::written_generation;
    use super::*;
    use crate::crd::{CONNECTION_ANNOTATION, DEFAULT_CONNECTION};
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
            ["port", "user", "username"],
            "recorded in one order, not the mappings' order"
        );
        // Debug output names keys only.
        let debug = format!("{rendered:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("admin"),
            "{debug}"
        );
    }

    #[test]
    fn a_reveal_and_a_reuse_of_the_same_data_record_the_same_keys() {
        // Entries in the order of the sample `db-connection`: DB_USER before DB_HOST.
        let user = KeyMapping::Property {
            secret_key: "DB_USER".into(),
            property: "username".into(),
        };
        let host = KeyMapping::Property {
            secret_key: "DB_HOST".into(),
            property: "host".into(),
        };
        let creds = kv(&[("username", "app"), ("host", "db")]);
        let revealed = render_data(
            &[RenderSource {
                path: "/app/db/creds",
                version: 1,
                mappings: vec![&user, &host],
                value: SourceValue::Revealed(&creds),
            }],
            None,
        )
        .unwrap();
        // After a restart the unchanged source is reused from the written Secret's keys.
        let reused = render_data(
            &[RenderSource {
                path: "/app/db/creds",
                version: 1,
                mappings: vec![&user, &host],
                value: SourceValue::Reused(
                    revealed.data.iter().map(|(k, v)| (k.clone(), v)).collect(),
                ),
            }],
            None,
        )
        .unwrap();
        assert_eq!(revealed.sources, reused.sources);
        assert_eq!(revealed.data, reused.data);
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
