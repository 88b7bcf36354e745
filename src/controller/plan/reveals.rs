//! Which values must be read from Thalassa again, decided without I/O: a value is reused from the
//! Secret only when the Secret is ours, intact, and was written for this generation, connection
//! identity and templates, at the version wanted.
//!
//! In: the wanted versions and what the Secret records. Out: the reveals to make and the bytes
//! kept as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::{TargetState, written_for_resource};
use crate::controller::validate::ValidatedSpec;
use crate::{crd::ThalassaSecret, render::SourceRecord};

/// Unchanged sources may be copied from the Secret only when it is ours, intact, and was written
/// for this resource's current generation (same mapping) with the same connection identity (a
/// value read with one store's credentials is never served on another's say-so) and the same
/// templates (a ConfigMap edit does not change the generation), and no force-sync asks for
/// every value to be read again.
pub(crate) fn reuse_allowed(
    ts: &ThalassaSecret,
    spec: &ValidatedSpec,
    existing: Option<&Secret>,
    target: TargetState,
) -> bool {
    target == (TargetState::Owned { intact: true })
        && spec.force.is_none()
        && existing.is_some_and(|s| written_for_resource(&s.metadata, ts, spec))
}

/// Which sources must be revealed: all of them after a spec change or an edit of the Secret,
/// otherwise only those whose version differs from the one the Secret records.
pub(crate) fn plan_reveals(
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
    reuse_allowed: bool,
) -> Vec<(String, u64)> {
    desired
        .iter()
        .filter(|(path, version)| {
            !(reuse_allowed && recorded.get(*path).is_some_and(|r| r.version == **version))
        })
        .map(|(path, version)| (path.clone(), *version))
        .collect()
}

/// Bytes of the existing Secret's data that the next write keeps as they are: the keys of the
/// paths wanted at a version already written that are not revealed again.
pub(crate) fn reused_bytes(
    existing: Option<&Secret>,
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
    to_reveal: &[(String, u64)],
) -> usize {
    let Some(data) = existing.and_then(|s| s.data.as_ref()) else {
        return 0;
    };
    desired
        .keys()
        .filter(|path| !to_reveal.iter().any(|(p, _)| p == *path))
        .filter_map(|path| recorded.get(path))
        .flat_map(|record| &record.keys)
        .filter_map(|key| data.get(key))
        .map(|value| value.0.len())
        .sum()
}

/// With templates, the Secret is either kept whole (nothing revealed) or rendered from every
/// source: true when it may be kept, because reuse is allowed and it records exactly the desired
/// versions of exactly the desired paths.
pub(crate) fn reuse_whole(
    desired: &BTreeMap<String, u64>,
    recorded: &BTreeMap<String, SourceRecord>,
    reuse_allowed: bool,
) -> bool {
    reuse_allowed
        && desired.len() == recorded.len()
        && desired
            .iter()
            .all(|(path, version)| recorded.get(path).is_some_and(|r| r.version == *version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::base;
    use crate::controller::plan::desired::tests::desired;
    use crate::controller::plan::*;

    #[test]
    fn reveals_are_planned_from_recorded_versions() {
        let desired = BTreeMap::from([("/a".to_string(), 2), ("/b".to_string(), 5)]);
        let recorded = BTreeMap::from([
            (
                "/a".to_string(),
                SourceRecord {
                    version: 2,
                    keys: vec!["a".into()],
                },
            ),
            (
                "/b".to_string(),
                SourceRecord {
                    version: 4,
                    keys: vec!["b".into()],
                },
            ),
        ]);
        assert_eq!(
            plan_reveals(&desired, &recorded, true),
            vec![("/b".to_string(), 5)]
        );
        assert_eq!(plan_reveals(&desired, &recorded, false).len(), 2);
        assert_eq!(plan_reveals(&desired, &BTreeMap::new(), true).len(), 2);
    }

    #[test]
    fn values_read_with_one_identity_are_never_reused_under_another() {
        let ts = base("Owner", "Opaque");
        let (wanted, _) = desired(&ts, "v1");
        let mut written = wanted.secret.clone();
        written.metadata.uid = Some("s1".into());
        let intact = TargetState::Owned { intact: true };
        let mut spec =
            crate::controller::validate(&ts, &crate::controller::fixtures::config()).unwrap();
        assert!(
            reuse_allowed(&ts, &spec, Some(&written), intact),
            "same (default) connection"
        );
        spec.connection = "ThalassaSecretStore/uid-s/1".into();
        assert!(
            !reuse_allowed(&ts, &spec, Some(&written), intact),
            "the resource moved to a store: everything is read again with the store's identity"
        );
        assert!(!written_for_resource(&written.metadata, &ts, &spec));
    }
}
