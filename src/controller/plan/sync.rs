//! Whether and what a reconcile syncs, decided without I/O: the KMS summary's verdict for the
//! spec's region, the version wanted per path, whether the Secret was written for this very
//! resource, a pending force-sync, whether the refresh policy skips Thalassa altogether, and
//! whether every source is bound to the required, active key.
//!
//! In: the resource, its validated spec, what the listing and the summary said. Out: decisions
//! (`bool`, versions) or the [`Error`] that refuses the sync.

use std::collections::BTreeMap;

use kube::{ResourceExt, api::ObjectMeta};

use super::SourceMetas;
use crate::controller::validate::ValidatedSpec;
use crate::{
    crd::{FORCE_SYNC_ANNOTATION, OWNER_UID_ANNOTATION, RefreshPolicy, ThalassaSecret},
    error::{Error, Result},
    render::{self},
    sources::SourceMeta,
    status::{Observed, reasons},
    thalassa::{KmsKeyStatus, KmsSummary},
};

/// Judges the KMS summary for the spec's region: the kms gate must be on and the backend
/// available. A region the summary does not know is left to the listing, which answers with a
/// definite RegionNotFound instead of a misleading "KMS unavailable".
pub(crate) fn judge_kms_summary(summary: &KmsSummary, region: &str) -> Result<Option<Observed>> {
    if !summary.feature_enabled {
        return Err(Error::KmsFeatureDisabled);
    }
    match summary.region(region) {
        Some(r) if r.kms_available => Ok(Observed::ok(
            reasons::AVAILABLE,
            format!("KMS is available in region {region}"),
        )),
        Some(_) => Err(Error::KmsBackendUnavailable {
            region: region.to_string(),
        }),
        None => Ok(None),
    }
}

/// The version to write per path: the pin, or the current version.
pub(crate) fn desired_versions(metas: &SourceMetas) -> BTreeMap<String, u64> {
    metas
        .iter()
        .map(|(path, (meta, pinned))| (path.clone(), pinned.unwrap_or(meta.current_version)))
        .collect()
}

/// True when the Secret's annotations say it was written for this very resource (UID) at its
/// current generation, with values read through the same connection identity and rendered by
/// the same templates (a ConfigMap edit changes no generation).
pub(crate) fn written_for_resource(
    metadata: &ObjectMeta,
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
) -> bool {
    render::written_for(
        metadata,
        &ts.name_any(),
        ts.metadata.uid.as_deref().unwrap_or_default(),
        ts.metadata.generation,
    ) && render::written_with(metadata, &spec.connection)
        && render::parse_template(metadata).map(|r| r.hash)
            == spec.templates.as_ref().map(|t| t.hash.clone())
}

/// The value of the force-sync annotation when it asks for a sync not handled yet.
pub(crate) fn force_sync_requested(ts: &ThalassaSecret) -> Option<&str> {
    let value = ts
        .metadata
        .annotations
        .as_ref()?
        .get(FORCE_SYNC_ANNOTATION)?;
    let handled = ts
        .status
        .as_ref()
        .and_then(|s| s.force_sync_handled.as_ref());
    (handled != Some(value)).then_some(value.as_str())
}

/// True when the refresh policy says this reconcile needs no Thalassa call at all: `OnChange`
/// while the Secret is exactly as this process last wrote or verified it and the spec did not
/// change; `CreatedOnce` once the Secret exists and is this resource's. (A force-sync is
/// handled before this is asked.)
pub(crate) fn policy_skips_sync(
    ts: &ThalassaSecret,
    written: Option<&ObjectMeta>,
    spec_changed: bool,
    verified_rv: Option<&str>,
) -> bool {
    let Some(written) = written else {
        return false;
    };
    match ts.spec.refresh_policy {
        RefreshPolicy::Periodic => false,
        RefreshPolicy::OnChange => {
            !spec_changed
                && written.resource_version.is_some()
                && written.resource_version.as_deref() == verified_rv
        }
        RefreshPolicy::CreatedOnce => {
            render::named_owner(written) == Some(ts.name_any().as_str())
                && written
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OWNER_UID_ANNOTATION))
                    == ts.metadata.uid.as_ref()
        }
    }
}

/// Refuses sources bound to another key than the spec requires, or to a key that is not active.
pub(crate) fn check_keys(
    ts: &ThalassaSecret,
    metas: &BTreeMap<String, (SourceMeta, Option<u64>)>,
) -> Result<()> {
    for (path, (meta, _)) in metas {
        if let (Some(required), Some(actual)) = (&ts.spec.kms_key_identity, &meta.kms_key_identity)
            && required != actual
        {
            return Err(Error::KmsKeyMismatch {
                path: path.clone(),
                expected: required.clone(),
                actual: actual.clone(),
            });
        }
        if let Some(status) = &meta.kms_key_status
            && *status != KmsKeyStatus::Active
        {
            return Err(Error::KmsKeyNotActive {
                path: path.clone(),
                key: meta.kms_key_identity.clone().unwrap_or_default(),
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::base;

    use crate::error::Reason;

    #[test]
    fn the_kms_summary_is_judged_per_region() {
        let summary: KmsSummary = serde_json::from_value(serde_json::json!({
            "featureEnabled": true,
            "regions": [
                {"identity": "r1", "name": "NL 01", "slug": "nl-01", "kmsAvailable": true},
                {"identity": "r2", "name": "DE 01", "slug": "de-01", "kmsAvailable": false}
            ]
        }))
        .unwrap();
        assert!(judge_kms_summary(&summary, "nl-01").unwrap().unwrap().ok);
        assert_eq!(
            judge_kms_summary(&summary, "de-01").unwrap_err().reason(),
            Reason::KmsBackendUnavailable
        );
        assert!(judge_kms_summary(&summary, "xx-01").unwrap().is_none());
        let off = KmsSummary {
            feature_enabled: false,
            ..summary
        };
        assert_eq!(
            judge_kms_summary(&off, "nl-01").unwrap_err().reason(),
            Reason::KmsFeatureDisabled
        );
    }

    #[test]
    fn refresh_policies_decide_when_thalassa_is_not_called() {
        let written = |owner: &str, uid: &str, rv: &str| ObjectMeta {
            resource_version: Some(rv.into()),
            annotations: Some(BTreeMap::from([
                (crate::crd::OWNER_ANNOTATION.to_string(), owner.to_string()),
                (OWNER_UID_ANNOTATION.to_string(), uid.to_string()),
            ])),
            ..Default::default()
        };
        let mut ts = base("Owner", "Opaque");
        let ours = written("app", "uid-1", "5");
        let skips = |ts: &ThalassaSecret, w: Option<&ObjectMeta>, changed, rv| {
            policy_skips_sync(ts, w, changed, rv)
        };
        assert!(
            !skips(&ts, Some(&ours), false, Some("5")),
            "Periodic always checks"
        );
        ts.spec.refresh_policy = RefreshPolicy::OnChange;
        assert!(skips(&ts, Some(&ours), false, Some("5")), "nothing changed");
        assert!(
            !skips(&ts, Some(&ours), true, Some("5")),
            "the spec changed"
        );
        assert!(
            !skips(&ts, Some(&ours), false, Some("4")),
            "the Secret changed"
        );
        assert!(
            !skips(&ts, Some(&ours), false, None),
            "not verified since start"
        );
        assert!(!skips(&ts, None, false, None), "no Secret");
        ts.spec.refresh_policy = RefreshPolicy::CreatedOnce;
        assert!(skips(&ts, Some(&ours), true, None), "exists: never updated");
        assert!(!skips(&ts, None, false, None), "deleted: created again");
        let other = written("app", "uid-0", "5");
        assert!(
            !skips(&ts, Some(&other), false, None),
            "written for an earlier resource of the same name"
        );
    }
}
