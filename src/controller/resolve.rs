//! Reading Thalassa: the KMS summary, the shared listings, direct lookups of paths a listing
//! no longer shows, and the reveals. Every call goes through the shared, coalescing
//! [`SourceCache`](crate::sources::SourceCache).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, join_all},
    stream::FuturesUnordered,
};
use tracing::debug;

use kube::ResourceExt;

use super::{
    config_maps::{Item, MAX_TEMPLATE_BYTES, TemplateConfigMaps},
    plan::SourceMetas,
    validate::{Templates, ValidatedSpec},
};
use crate::{
    crd::{SourceDeletionPolicy, TEMPLATE_CONFIGMAP_LABEL, ThalassaSecret},
    error::{Error, Result},
    render::{HashKey, SourceRecord, is_valid_secret_key, template_hash},
    sources::{SourceCache, SourceMeta, parent_prefix},
    template::{self, MAX_TEMPLATES_TOTAL_BYTES, TemplateError, TemplateSet},
    thalassa::{self, KmsSummary, RevealedSecret},
};

/// The resource's templates: the inline ones and those of the ConfigMaps `templateFrom` names
/// (read through [`TemplateConfigMaps`]), with their keyed hash, so a missing ConfigMap is
/// reported before anything is revealed. Everything they pull in together is at most
/// [`MAX_TEMPLATES_TOTAL_BYTES`]. Compiling them is the sandbox's work
/// ([`template::check_in_sandbox`]).
pub(super) async fn templates(
    ts: &ThalassaSecret,
    config_maps: &TemplateConfigMaps,
    hash_key: &HashKey,
) -> Result<Option<Templates>> {
    let Some(template) = &ts.spec.target.template else {
        return Ok(None);
    };
    let namespace = ts.namespace().unwrap_or_default();
    let mut total: usize = template
        .data
        .values()
        .chain(template.labels.values())
        .chain(template.annotations.values())
        .map(String::len)
        .sum();
    let too_much = |total: usize| {
        Error::Template(TemplateError {
            template: "target.template".into(),
            line: None,
            column: None,
            problem: format!(
                "the templates (inline and templateFrom items together) add up to more than {MAX_TEMPLATES_TOTAL_BYTES} bytes (at least {total})"
            ),
        })
    };
    if total > MAX_TEMPLATES_TOTAL_BYTES {
        return Err(too_much(total));
    }
    let mut from_config_maps = BTreeMap::new();
    for source in &template.template_from {
        let name = &source.config_map.name;
        let unusable = |problem: String| {
            Error::Template(TemplateError {
                template: format!("ConfigMap {name}"),
                line: None,
                column: None,
                problem,
            })
        };
        let config_map = config_maps.get(&namespace, name).await?.ok_or_else(|| {
            unusable(format!(
                "not found: it must exist in namespace {namespace} and carry the label {TEMPLATE_CONFIGMAP_LABEL}: \"true\""
            ))
        })?;
        for item in &source.config_map.items {
            let text = match config_map.items.get(&item.key) {
                None => return Err(unusable(format!("has no key {} in data", item.key))),
                Some(Item::TooLarge(bytes)) => {
                    return Err(unusable(format!(
                        "key {} holds {bytes} bytes; a template may have at most {MAX_TEMPLATE_BYTES}",
                        item.key,
                    )));
                }
                Some(Item::Text(text)) => text,
            };
            total += text.len();
            if total > MAX_TEMPLATES_TOTAL_BYTES {
                return Err(too_much(total));
            }
            let secret_key = item.secret_key.clone().unwrap_or_else(|| item.key.clone());
            if !is_valid_secret_key(&secret_key) {
                return Err(Error::InvalidSpec(format!(
                    "target.template.templateFrom: {secret_key:?} is not a valid Secret key; set secretKey"
                )));
            }
            let source = template::Source {
                name: format!("ConfigMap {name} key {}", item.key),
                text: text.clone(),
            };
            if from_config_maps
                .insert(secret_key.clone(), source)
                .is_some()
            {
                return Err(Error::InvalidSpec(format!(
                    "target.template.templateFrom: two items write the Secret key {secret_key}"
                )));
            }
        }
    }
    let set = TemplateSet::from_spec(template, from_config_maps);
    let hash = template_hash(hash_key, &set);
    Ok(Some(Templates { set, hash }))
}

/// The KMS summary, or `None` when the credentials may not read it (that does not block the
/// sync; outages and throttling do).
pub(super) async fn kms_summary(
    sources: &SourceCache,
    max_age: Duration,
) -> Result<Option<Arc<KmsSummary>>> {
    match sources.summary(max_age).await {
        Ok(summary) => Ok(Some(summary)),
        Err(e)
            if matches!(
                &*e,
                thalassa::Error::Forbidden { .. }
                    | thalassa::Error::KeyNotFound { .. }
                    | thalassa::Error::InvalidRequest { .. }
            ) =>
        {
            debug!(error = %e, "KMS summary not readable; backend availability not checked");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Resolves every source path to its metadata (and pin) from shared listings, or, for a few
/// explicit paths in a large directory, from shared per-path checks
/// ([`SourceCache::check_per_path`]); paths a listing does not show are looked up directly to tell
/// "not found" from "not permitted".
pub(super) async fn resolve_sources(
    spec: &ValidatedSpec,
    sources: &SourceCache,
    max_age: Duration,
) -> Result<SourceMetas> {
    let mut by_dir: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in spec.paths.keys() {
        by_dir.entry(parent_prefix(path)).or_default().push(path);
    }
    let mut groups: BTreeSet<String> = spec.prefixes.iter().cloned().collect();
    let mut per_path = Vec::new();
    for (dir, paths) in by_dir {
        // A directory this resource lists anyway (`dataFrom.pathPrefix`) serves its paths too.
        if !groups.contains(dir) && sources.check_per_path(&spec.region, dir, &paths, max_age) {
            per_path.extend(paths);
        } else {
            groups.insert(dir.to_string());
        }
    }
    let (listings, checked) = futures::join!(
        join_all(groups.iter().map(|prefix| async move {
            (
                prefix.clone(),
                sources.listing(&spec.region, prefix, max_age).await,
            )
        })),
        join_all(per_path.iter().map(|path| async move {
            (
                *path,
                sources.checked_metadata(&spec.region, path, max_age).await,
            )
        }))
    );
    let mut by_prefix = BTreeMap::new();
    for (prefix, listing) in listings {
        by_prefix.insert(prefix, listing?);
    }
    let mut checked_metas = BTreeMap::new();
    for (path, meta) in checked {
        checked_metas.insert(path, meta?);
    }
    let mut metas = BTreeMap::new();
    for (path, source) in &spec.paths {
        let meta = if let Some(meta) = checked_metas.get(path.as_str()) {
            SourceMeta::clone(meta)
        } else {
            let listed = by_prefix
                .get(parent_prefix(path))
                .and_then(|l| l.secrets.get(path).cloned());
            match listed {
                Some(meta) => meta,
                None => sources.metadata(&spec.region, path).await?,
            }
        };
        metas.insert(path.clone(), (meta, source.version));
    }
    for prefix in &spec.prefixes {
        if let Some(listing) = by_prefix.get(prefix) {
            for (path, meta) in &listing.secrets {
                if path.starts_with(prefix.as_str()) && !metas.contains_key(path) {
                    metas.insert(path.clone(), (meta.clone(), None));
                }
            }
        }
    }
    Ok(metas)
}

/// Paths this resource synced from a prefix that the listings no longer show. A listing is no
/// proof of absence (Thalassa leaves out what the caller may not read), so each is looked up
/// directly: found, it stays a source; a definite "not found" removes its keys only with
/// `onSourceDeleted: Delete`; anything else (a 403, an outage) stops the sync with the keys kept.
pub(super) async fn recover_missing_sources(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    sources: &SourceCache,
    recorded: &BTreeMap<String, SourceRecord>,
    metas: &mut SourceMetas,
) -> Result<()> {
    let missing: Vec<&String> = recorded
        .keys()
        .filter(|path| {
            !metas.contains_key(*path)
                && !spec.paths.contains_key(*path)
                && spec.prefixes.iter().any(|p| path.starts_with(p.as_str()))
        })
        .collect();
    let mut deleted = Vec::new();
    for path in missing {
        match sources.metadata(&spec.region, path).await {
            Ok(meta) => {
                debug!(path = %path, "listed no more, but still readable");
                metas.insert(path.clone(), (meta, None));
            }
            Err(e) if e.is_definite_not_found() => {
                if ts.spec.target.on_source_deleted == SourceDeletionPolicy::Retain {
                    deleted.push(path.clone());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if deleted.is_empty() {
        Ok(())
    } else {
        Err(Error::SourceDeleted { paths: deleted })
    }
}

/// Reveals of one resource in flight at once. With the per-store reveal permits and the
/// process-wide body budget of the client, this bounds what one resource holds while its values
/// arrive: the values accepted so far (at most the Secret's limit) and this many bodies.
pub(super) const REVEALS_PER_RESOURCE: usize = 8;

/// Reveals the planned paths (coalesced with concurrent reveals of the same path and version),
/// at most [`REVEALS_PER_RESOURCE`] at a time, adding up as they arrive the bytes each adds to
/// the Secret (`measure`: what its mappings produce from it). The first value that takes the
/// total past `room` (the Secret's limit less the bytes kept from the existing Secret) stops
/// everything with [`Error::SecretTooLarge`]: reveals in flight are dropped and no further ones
/// start, so a resource never holds more than its Secret could take.
/// A value bound to another key than `spec.kmsKeyIdentity` is refused.
pub(super) async fn reveal(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    sources: &SourceCache,
    metas: &SourceMetas,
    to_reveal: &[(String, u64)],
    budget: RevealBudget,
    measure: impl Fn(&str, &RevealedSecret) -> usize,
) -> Result<BTreeMap<String, Arc<RevealedSecret>>> {
    // Boxed as `Send` up front (nothing starts until polled): a stream adapter over borrowing
    // closures trips the compiler's higher-ranked `Send` inference in the controller's future.
    type Reveal<'a> = BoxFuture<'a, (String, Result<Arc<RevealedSecret>, Arc<thalassa::Error>>)>;
    let mut waiting = to_reveal.iter().map(|(path, version)| -> Reveal<'_> {
        let pinned = metas.get(path).and_then(|(_, pinned)| *pinned);
        // A followed path is read at the version the listing reported, so a put landing between
        // listing and reveal is picked up by the next check, not half-applied now.
        let version = pinned.or(Some(*version));
        async move {
            (
                path.clone(),
                sources.reveal(&spec.region, path, version).await,
            )
        }
        .boxed()
    });
    let mut revealed = FuturesUnordered::new();
    revealed.extend(waiting.by_ref().take(REVEALS_PER_RESOURCE));
    let mut values = BTreeMap::new();
    let mut total = budget.kept;
    while let Some((path, result)) = revealed.next().await {
        let secret = result?;
        if let Some(required) = &ts.spec.kms_key_identity
            && &secret.kms_key_identity != required
        {
            return Err(Error::KmsKeyMismatch {
                path,
                expected: required.clone(),
                actual: secret.kms_key_identity.clone(),
            });
        }
        total = total.saturating_add(measure(&path, &secret));
        if total > budget.limit {
            debug!(
                revealed = values.len() + 1,
                planned = to_reveal.len(),
                "the values revealed so far pass the Secret's size limit; not revealing the rest"
            );
            return Err(Error::SecretTooLarge {
                bytes: total,
                limit: budget.limit,
            });
        }
        values.insert(path, secret);
        revealed.extend(waiting.next());
    }
    Ok(values)
}

/// What the revealed values of one resource may add up to.
#[derive(Debug, Clone, Copy)]
pub(super) struct RevealBudget {
    /// Bytes the Secret keeps from its current data (sources not revealed again).
    pub(crate) kept: usize,
    /// The Secret's limit.
    pub(crate) limit: usize,
}
