//! Validation of what admission cannot check, and resolution of the spec against the operator's
//! defaults. No API calls.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kube::ResourceExt;

use crate::{
    config::{Config, parse_duration},
    crd::{
        CreationPolicy, DataEntry, DataFromSource, DeletionPolicy, ThalassaSecret,
        ThalassaSecretSpec,
    },
    error::{Error, Result},
    render::{KeyMapping, is_label_value, is_qualified_name, is_valid_secret_key},
    thalassa,
};

/// `restartDebounce` when the spec leaves it out.
pub(crate) const DEFAULT_RESTART_DEBOUNCE: Duration = Duration::from_secs(10);

/// A spec checked and resolved against the operator's defaults.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    /// Region of every source.
    pub(crate) region: String,
    /// How often versions are checked.
    pub(crate) refresh_interval: Duration,
    /// How long after a data change the rollout restart targets are restarted.
    pub(crate) restart_debounce: Duration,
    /// Target Secret name.
    pub(crate) target_name: String,
    /// Explicit sources: path → (pinned version, mappings).
    pub(crate) paths: BTreeMap<String, PathSource>,
    /// Prefixes whose every secret is a source.
    pub(crate) prefixes: Vec<String>,
    /// Identity of the connection the sources are read with (set by the connect step).
    pub(crate) connection: String,
    /// The resource's templates, resolved and compiled (set by the resolve step); `None`
    /// without `target.template`.
    pub(crate) templates: Option<Templates>,
    /// A force-sync value this reconcile acts on (set by the driver): versions are checked now
    /// and every source is read again.
    pub(crate) force: Option<String>,
    /// Paths of the `data[]` entries with `generate`, with the number of bytes to generate.
    pub(crate) generated: BTreeMap<String, u32>,
    /// A rotate-generated value this reconcile stored new generated versions for (set by the
    /// sync): versions are checked now, as for a force-sync.
    pub(crate) rotated: Option<String>,
}

/// A resource's templates with ConfigMap texts read in, compiled once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Templates {
    /// Every template.
    pub(crate) set: crate::template::TemplateSet,
    /// Their keyed hash ([`crate::render::template_hash`]), recorded on the Secret.
    pub(crate) hash: String,
}

/// One explicitly named path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSource {
    /// Pinned version, if any.
    pub(crate) version: Option<u64>,
    /// How its value maps to keys.
    pub(crate) mappings: Vec<KeyMapping>,
}

/// Pure validation of what admission cannot check, and resolution of defaults.
///
/// Checks run in a fixed order (intervals, `data`, `dataFrom`, at least one source, target):
/// the first failure is the one reported.
pub fn validate(ts: &ThalassaSecret, config: &Config) -> Result<ValidatedSpec> {
    let spec = &ts.spec;
    let refresh_interval = refresh_interval(spec, config)?;
    let restart_debounce = restart_debounce(spec)?;
    let mut paths = data_paths(&spec.data)?;
    let generated = generated_paths(spec)?;
    let prefixes = data_from_sources(&spec.data_from, &mut paths)?;
    if paths.is_empty() && prefixes.is_empty() {
        return Err(Error::InvalidSpec(
            "at least one entry in data or dataFrom is required".into(),
        ));
    }
    let target_name = target_name(ts, config)?;
    Ok(ValidatedSpec {
        region: spec
            .region
            .clone()
            .unwrap_or_else(|| config.default_region.clone()),
        refresh_interval,
        restart_debounce,
        target_name,
        paths,
        prefixes,
        connection: crate::crd::DEFAULT_CONNECTION.to_string(),
        templates: None,
        force: None,
        generated,
        rotated: None,
    })
}

/// `refreshInterval`, or the operator's default; under 10s would poll Thalassa too often.
fn refresh_interval(spec: &ThalassaSecretSpec, config: &Config) -> Result<Duration> {
    let refresh_interval = match &spec.refresh_interval {
        Some(text) => {
            parse_duration(text).map_err(|e| Error::InvalidSpec(format!("refreshInterval: {e}")))?
        }
        None => config.default_refresh_interval,
    };
    if refresh_interval < Duration::from_secs(10) {
        return Err(Error::InvalidSpec(
            "refreshInterval must be at least 10s".into(),
        ));
    }
    Ok(refresh_interval)
}

/// `restartDebounce`, or [`DEFAULT_RESTART_DEBOUNCE`].
fn restart_debounce(spec: &ThalassaSecretSpec) -> Result<Duration> {
    match &spec.restart_debounce {
        Some(text) => {
            parse_duration(text).map_err(|e| Error::InvalidSpec(format!("restartDebounce: {e}")))
        }
        None => Ok(DEFAULT_RESTART_DEBOUNCE),
    }
}

/// The explicit `data[]` entries grouped by path. Entry by entry: a valid path, a valid and
/// unique Secret key, and one version per path (two versions of one path cannot both be read
/// into one Secret).
fn data_paths(data: &[DataEntry]) -> Result<BTreeMap<String, PathSource>> {
    let mut paths: BTreeMap<String, PathSource> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for entry in data {
        thalassa::validate_path(&entry.remote_ref.path).map_err(|e| {
            Error::InvalidSpec(format!("data[{}].remoteRef.path: {e}", entry.secret_key))
        })?;
        if !is_valid_secret_key(&entry.secret_key) {
            return Err(Error::InvalidSpec(format!(
                "data[].secretKey {:?} is not a valid Secret key ([-._a-zA-Z0-9]+, not '.', not starting with '..')",
                entry.secret_key
            )));
        }
        if !keys.insert(entry.secret_key.clone()) {
            return Err(Error::TargetKeyConflict {
                key: entry.secret_key.clone(),
            });
        }
        let source = paths
            .entry(entry.remote_ref.path.clone())
            .or_insert(PathSource {
                version: entry.remote_ref.version,
                mappings: Vec::new(),
            });
        if source.version != entry.remote_ref.version {
            return Err(Error::InvalidSpec(format!(
                "path {} is read at two different versions; read one version per path",
                entry.remote_ref.path
            )));
        }
        source.mappings.push(key_mapping(entry));
    }
    Ok(paths)
}

/// The `data[]` entries with `generate`: path → bytes. The same rules as the CRD's CEL rules (a
/// generated value is a string secret at its current version, created with `kmsKeyIdentity`),
/// plus Thalassa's bounds on the length.
fn generated_paths(spec: &ThalassaSecretSpec) -> Result<BTreeMap<String, u32>> {
    let mut generated = BTreeMap::new();
    for entry in &spec.data {
        let Some(generate) = &entry.generate else {
            continue;
        };
        let at =
            |problem: &str| Error::InvalidSpec(format!("data[{}]: {problem}", entry.secret_key));
        if entry.remote_ref.property.is_some() {
            return Err(at("remoteRef.property cannot be combined with generate"));
        }
        if entry.remote_ref.version.is_some() {
            return Err(at("remoteRef.version cannot be combined with generate"));
        }
        let bytes = generate.bytes();
        if !(MIN_GENERATE_BYTES..=MAX_GENERATE_BYTES).contains(&bytes) {
            return Err(at("generate.byteLength must be between 16 and 4096"));
        }
        if spec.kms_key_identity.is_none() {
            return Err(Error::InvalidSpec(
                "kmsKeyIdentity is required when a data entry has generate".into(),
            ));
        }
        generated.insert(entry.remote_ref.path.clone(), bytes);
    }
    Ok(generated)
}

/// Thalassa's bounds on `generateSecret.byteLength`.
const MIN_GENERATE_BYTES: u32 = 16;
const MAX_GENERATE_BYTES: u32 = 4096;

/// How one `data[]` entry's value maps to its Secret key: one property, or the whole value.
fn key_mapping(entry: &DataEntry) -> KeyMapping {
    match &entry.remote_ref.property {
        Some(property) => KeyMapping::Property {
            secret_key: entry.secret_key.clone(),
            property: property.clone(),
        },
        None => KeyMapping::Whole {
            secret_key: entry.secret_key.clone(),
        },
    }
}

/// Adds the `dataFrom[]` paths to `paths` (every property, latest version: a path pinned in
/// `data[]` cannot also be followed) and returns the prefixes, in order.
fn data_from_sources(
    data_from: &[DataFromSource],
    paths: &mut BTreeMap<String, PathSource>,
) -> Result<Vec<String>> {
    let mut prefixes = Vec::new();
    for (i, from) in data_from.iter().enumerate() {
        match (&from.path, &from.path_prefix) {
            (Some(path), None) => {
                thalassa::validate_path(path)
                    .map_err(|e| Error::InvalidSpec(format!("dataFrom[{i}].path: {e}")))?;
                let source = paths.entry(path.clone()).or_insert(PathSource {
                    version: None,
                    mappings: Vec::new(),
                });
                if source.version.is_some() {
                    return Err(Error::InvalidSpec(format!(
                        "path {path} is pinned in data[] and followed in dataFrom[]; read one version per path"
                    )));
                }
                source.mappings.push(KeyMapping::AllProperties);
            }
            (None, Some(prefix)) => {
                if !prefix.ends_with('/') {
                    return Err(Error::InvalidSpec(format!(
                        "dataFrom[{i}].pathPrefix must end with '/'"
                    )));
                }
                thalassa::validate_browse_path(prefix)
                    .map_err(|e| Error::InvalidSpec(format!("dataFrom[{i}].pathPrefix: {e}")))?;
                prefixes.push(prefix.clone());
            }
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "dataFrom[{i}]: exactly one of path or pathPrefix must be set"
                )));
            }
        }
    }
    Ok(prefixes)
}

/// The target Secret's name (default: the resource's), after checking the target: Merge must
/// not delete a Secret the operator did not create, labels and annotations must be valid, and
/// the operator's own hash-key Secret is never a target.
fn target_name(ts: &ThalassaSecret, config: &Config) -> Result<String> {
    let target = &ts.spec.target;
    if target.creation_policy == CreationPolicy::Merge
        && target.deletion_policy == DeletionPolicy::Delete
    {
        return Err(Error::InvalidSpec(
            "target.deletionPolicy Delete cannot be combined with creationPolicy Merge".into(),
        ));
    }
    validate_target_metadata(&target.labels, &target.annotations)?;
    let target_name = target.name.clone().unwrap_or_else(|| ts.name_any());
    if ts.namespace().as_deref() == Some(config.operator_namespace.as_str())
        && target_name == config.hash_key_secret
    {
        return Err(Error::TargetReserved { name: target_name });
    }
    Ok(target_name)
}

/// The same label and annotation rules as the CRD's CEL rules, checked again so nothing the
/// apiserver would refuse reaches a write.
fn validate_target_metadata(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    for (key, value) in labels {
        if !is_qualified_name(key) {
            return Err(Error::InvalidSpec(format!(
                "target.labels: {key:?} is not a qualified name"
            )));
        }
        if !is_label_value(value) {
            return Err(Error::InvalidSpec(format!(
                "target.labels: the value of {key:?} is not a valid label value"
            )));
        }
        if key.starts_with("secrets.thalassa.cloud/") || key == crate::crd::MANAGED_BY_LABEL {
            return Err(Error::InvalidSpec(format!(
                "target.labels: {key:?} is the operator's own"
            )));
        }
    }
    for key in annotations.keys() {
        if !is_qualified_name(key) {
            return Err(Error::InvalidSpec(format!(
                "target.annotations: {key:?} is not a qualified name"
            )));
        }
        if key.starts_with("secrets.thalassa.cloud/") {
            return Err(Error::InvalidSpec(format!(
                "target.annotations: {key:?} is the operator's own"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{config, resource};

    #[test]
    fn validate_refuses_what_the_apiserver_or_the_operator_would_refuse() {
        let config = config();
        let with = |extra: &str| {
            resource(&format!(
                "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: app}}\nspec:\n  data: [{{secretKey: password, remoteRef: {{path: /a/b}}}}]\n{extra}"
            ))
        };
        assert!(validate(&with(""), &config).is_ok());
        for (extra, expected) in [
            ("  target: {labels: {\"bad key\": x}}\n", "qualified name"),
            ("  target: {labels: {ok: \"-bad\"}}\n", "label value"),
            (
                "  target: {labels: {app.kubernetes.io/managed-by: me}}\n",
                "operator's own",
            ),
            (
                "  target: {annotations: {\"a/b/c\": x}}\n",
                "qualified name",
            ),
            (
                "  target: {annotations: {secrets.thalassa.cloud/owner: x}}\n",
                "operator's own",
            ),
            (
                "  target: {name: thalassa-secrets-operator-hash-key}\n",
                "data-hash key",
            ),
            ("  dataFrom: [{pathPrefix: /a/b}]\n", "must end with '/'"),
        ] {
            let ts = with(extra);
            let mut config = config.clone();
            config.operator_namespace = "team".into();
            let err = validate(&ts, &config).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        let dot_key = resource(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: app}\nspec:\n  data: [{secretKey: \"..\", remoteRef: {path: /a/b}}]\n",
        );
        assert!(validate(&dot_key, &config).is_err());
    }

    #[test]
    fn generate_needs_a_key_and_a_plain_current_value() {
        let config = config();
        let with = |spec: &str| {
            resource(&format!(
                "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: app}}\nspec:\n{spec}"
            ))
        };
        let ok = with(
            "  kmsKeyIdentity: k\n  data: [{secretKey: p, remoteRef: {path: /a/g}, generate: {}}, {secretKey: q, remoteRef: {path: /a/h}, generate: {byteLength: 64}}]\n",
        );
        let spec = validate(&ok, &config).unwrap();
        assert_eq!(
            spec.generated,
            BTreeMap::from([("/a/g".to_string(), 32), ("/a/h".to_string(), 64)])
        );
        for (spec, expected) in [
            (
                "  data: [{secretKey: p, remoteRef: {path: /a/g}, generate: {}}]\n",
                "kmsKeyIdentity is required",
            ),
            (
                "  kmsKeyIdentity: k\n  data: [{secretKey: p, remoteRef: {path: /a/g, property: x}, generate: {}}]\n",
                "remoteRef.property",
            ),
            (
                "  kmsKeyIdentity: k\n  data: [{secretKey: p, remoteRef: {path: /a/g, version: 2}, generate: {}}]\n",
                "remoteRef.version",
            ),
            (
                "  kmsKeyIdentity: k\n  data: [{secretKey: p, remoteRef: {path: /a/g}, generate: {byteLength: 15}}]\n",
                "between 16 and 4096",
            ),
            (
                "  kmsKeyIdentity: k\n  data: [{secretKey: p, remoteRef: {path: /a/g}, generate: {byteLength: 4097}}]\n",
                "between 16 and 4096",
            ),
        ] {
            let err = validate(&with(spec), &config).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }
}
