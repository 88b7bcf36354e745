//! The desired Secret, computed without I/O: sources mapped to keys (revealed values, or keys
//! kept from the existing Secret), then the Secret with its keyed data hash and ownership
//! metadata.
//!
//! In: the resource, its spec, the revealed values and the existing Secret. Out: [`Desired`]
//! (holds values: never formatted; rendered data is zeroized on drop).

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{Resource, ResourceExt};

use super::SourceMetas;
use crate::controller::validate::ValidatedSpec;
use crate::{
    crd::{CreationPolicy, DeletionPolicy, SecretType, ThalassaSecret},
    error::{Error, Result},
    render::{
        self, HashKey, KeyMapping, RenderSource, RenderedData, SourceRecord, SourceValue,
        TargetSettings, data_hash, prefix_key, render_data, render_secret, reuse_keys,
    },
    thalassa::RevealedSecret,
};

/// How each path found under a prefix maps to keys.
pub(crate) fn prefix_mappings(
    spec: &ValidatedSpec,
    metas: &SourceMetas,
) -> BTreeMap<String, KeyMapping> {
    metas
        .keys()
        .filter(|path| !spec.paths.contains_key(*path))
        .filter_map(|path| {
            spec.prefixes
                .iter()
                .find(|p| path.starts_with(p.as_str()))
                .map(|prefix| {
                    (
                        path.clone(),
                        KeyMapping::UnderPrefix {
                            relative_key: prefix_key(prefix, path),
                        },
                    )
                })
        })
        .collect()
}

/// The desired Secret and the facts the write decision needs. Holds values: never formatted.
pub(crate) struct Desired {
    /// The Secret to write.
    pub(crate) secret: Secret,
    /// Its keyed data hash.
    pub(crate) hash: String,
    /// Rendered data (zeroized on drop).
    pub(crate) rendered: RenderedData,
}

/// What [`render_sources`] maps to keys besides the resource and its spec: the versions to
/// write, the values read this time, and the existing Secret with the keys each source wrote to
/// it (for sources not read again).
#[derive(Clone, Copy)]
pub(crate) struct RenderInputs<'a> {
    /// Path → version the Secret is to hold.
    pub(crate) desired: &'a BTreeMap<String, u64>,
    /// Values revealed this sync, by path.
    pub(crate) revealed: &'a BTreeMap<String, std::sync::Arc<RevealedSecret>>,
    /// The existing Secret, if any.
    pub(crate) existing: Option<&'a Secret>,
    /// What each source wrote to the existing Secret, by path.
    pub(crate) recorded: &'a BTreeMap<String, SourceRecord>,
}

/// Maps the sources to keys: revealed values and, for unchanged sources, the keys copied from
/// the existing Secret. With templates these are the templates' inputs, so the Secret type's
/// rules are checked on the templates' output instead.
pub(crate) fn render_sources(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    metas: &SourceMetas,
    inputs: RenderInputs<'_>,
) -> Result<RenderedData> {
    let RenderInputs {
        desired,
        revealed,
        existing,
        recorded,
    } = inputs;
    let prefix_mappings = prefix_mappings(spec, metas);
    let mut sources = Vec::new();
    for (path, version) in desired {
        let mappings: Vec<&KeyMapping> = match spec.paths.get(path) {
            Some(source) => source.mappings.iter().collect(),
            None => prefix_mappings.get(path).into_iter().collect(),
        };
        let value = match revealed.get(path) {
            Some(secret) => SourceValue::Revealed(&secret.value),
            None => {
                let keys = recorded
                    .get(path)
                    .map(|r| r.keys.clone())
                    .unwrap_or_default();
                match existing.and_then(|s| reuse_keys(s, &keys)) {
                    Some(reused) => SourceValue::Reused(reused),
                    None => {
                        return Err(Error::Internal(format!(
                            "keys of {path} vanished from the Secret"
                        )));
                    }
                }
            }
        };
        sources.push(RenderSource {
            path,
            version: *version,
            mappings,
            value,
        });
    }
    if spec.templates.is_some() {
        // Template inputs: the Secret's rules apply to the templates' output.
        return render::map_sources(&sources);
    }
    render_data(&sources, managed_type(ts))
}

/// The Secret type the resource manages: none when it merges into a foreign Secret.
pub(crate) fn managed_type(ts: &ThalassaSecret) -> Option<SecretType> {
    (ts.spec.target.creation_policy != CreationPolicy::Merge).then_some(ts.spec.target.r#type)
}

/// The desired Secret for rendered data: its keyed hash, ownership metadata and settings.
pub(crate) fn desired_secret(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    hash_key: &HashKey,
    rendered: RenderedData,
) -> Desired {
    let secret_type = managed_type(ts);
    let hash = data_hash(
        hash_key,
        secret_type.map(SecretType::as_str),
        rendered.data.iter(),
    );
    let owner_reference = (ts.spec.target.deletion_policy == DeletionPolicy::Delete)
        .then(|| ts.controller_owner_ref(&()))
        .flatten()
        .map(|r| OwnerReference {
            block_owner_deletion: None,
            ..r
        });
    let namespace = ts.namespace().unwrap_or_default();
    let target = TargetSettings {
        name: &spec.target_name,
        namespace: &namespace,
        owner_name: &ts.name_any(),
        owner_uid: ts.metadata.uid.as_deref().unwrap_or_default(),
        owner_generation: ts.metadata.generation.unwrap_or_default(),
        owner_reference,
        secret_type,
        labels: &ts.spec.target.labels,
        annotations: &ts.spec.target.annotations,
        immutable: ts.spec.target.immutable,
        connection: &spec.connection,
    };
    let secret = render_secret(&target, &rendered, &hash);
    Desired {
        secret,
        hash,
        rendered,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::controller::fixtures::key;
    use crate::controller::plan::*;

    /// Renders `base(policy)` reading `/a/b` as `value`, as if revealed.
    pub(in crate::controller::plan) fn desired(
        ts: &ThalassaSecret,
        value: &str,
    ) -> (Desired, BTreeMap<String, u64>) {
        let spec = crate::controller::validate(ts, &crate::controller::fixtures::config()).unwrap();
        let meta = SourceMeta {
            current_version: 3,
            kms_key_identity: None,
            kms_key_status: None,
        };
        let metas: SourceMetas = BTreeMap::from([("/a/b".to_string(), (meta, None))]);
        let versions = desired_versions(&metas);
        let revealed = BTreeMap::from([(
            "/a/b".to_string(),
            std::sync::Arc::new(RevealedSecret {
                path: "/a/b".into(),
                version: 3,
                value: crate::thalassa::SecretValue::String(crate::thalassa::SecretBytes::new(
                    value.as_bytes().to_vec(),
                )),
                kms_key_identity: "k".into(),
                kms_key_version: "1".into(),
            }),
        )]);
        let rendered = render_sources(
            ts,
            &spec,
            &metas,
            RenderInputs {
                desired: &versions,
                revealed: &revealed,
                existing: None,
                recorded: &BTreeMap::new(),
            },
        )
        .unwrap();
        (desired_secret(ts, &spec, &key(), rendered), versions)
    }
}
