//! The target Secret, decided without I/O: how the existing Secret relates to this resource
//! (absent, ours, foreign, or refused), which keys and template metadata must go, the write that
//! brings it to the desired state, and the Event that names what happened.
//!
//! In: the resource, the existing Secret (as read), the desired Secret ([`super::Desired`]).
//! Out: [`TargetState`], [`Write`] (with its [`Removals`]) or the [`Error`] that refuses it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::ResourceExt;

use super::Desired;
use crate::{
    crd::{CreationPolicy, DATA_HASH_ANNOTATION, SecretType, TEMPLATE_ANNOTATION, ThalassaSecret},
    error::{Error, Result},
    render::{self, HashKey, SourceRecord, is_intact, parse_sources},
};

/// How the existing Secret relates to this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetState {
    /// No Secret with the target name.
    Absent,
    /// Ours: its owner annotation names this resource, or its UID is the one recorded in status.
    /// `intact` when its data still matches its keyed hash (and, for Owner and Adopt, has no
    /// other keys).
    Owned {
        /// No edit since our last write.
        intact: bool,
    },
    /// Someone else's Secret that the spec allows us to take over (Adopt) or write into (Merge).
    Foreign,
}

/// Classifies the existing Secret, refusing what may never be written: a type the operator does
/// not manage, another resource's Secret, a foreign Secret without Adopt or Merge, and a type
/// change (a Secret's type is immutable).
pub(crate) fn classify_target(
    ts: &ThalassaSecret,
    name: &str,
    existing: Option<&Secret>,
    hash_key: &HashKey,
) -> Result<TargetState> {
    let Some(existing) = existing else {
        return Ok(TargetState::Absent);
    };
    let existing_type = existing.type_.as_deref().unwrap_or("Opaque");
    if SecretType::from_type_str(existing_type).is_none() {
        return Err(Error::TargetTypeRefused {
            name: name.to_string(),
            secret_type: existing_type.to_string(),
        });
    }
    let our_name = ts.name_any();
    let named_owner = render::named_owner(&existing.metadata);
    if named_owner.is_some_and(|owner| owner != our_name) {
        return Err(Error::TargetConflict {
            name: name.to_string(),
        });
    }
    let recorded_uid = ts.status.as_ref().and_then(|s| s.secret_uid.as_ref());
    let owned = named_owner.is_some()
        || (recorded_uid.is_some() && recorded_uid == existing.metadata.uid.as_ref());
    let policy = ts.spec.target.creation_policy;
    if !owned && policy == CreationPolicy::Owner {
        return Err(Error::TargetConflict {
            name: name.to_string(),
        });
    }
    let owns_all_data = policy != CreationPolicy::Merge;
    let wanted = ts.spec.target.r#type.as_str();
    if owns_all_data && existing_type != wanted {
        return Err(Error::TargetTypeConflict {
            name: name.to_string(),
            existing: existing_type.to_string(),
            wanted: wanted.to_string(),
        });
    }
    Ok(if owned {
        TargetState::Owned {
            intact: is_intact(existing, hash_key, owns_all_data),
        }
    } else {
        TargetState::Foreign
    })
}

/// What the existing Secret records about each source, when it is ours.
pub(crate) fn recorded_sources(
    existing: Option<&Secret>,
    target: TargetState,
) -> BTreeMap<String, SourceRecord> {
    match (existing, target) {
        (Some(s), TargetState::Owned { .. }) => parse_sources(&s.metadata),
        _ => BTreeMap::new(),
    }
}

/// Keys to delete from the existing Secret: with Owner and Adopt every key the render does not
/// produce; with Merge only keys this resource wrote before (from sources or templates).
pub(crate) fn keys_to_remove(
    existing: &Secret,
    rendered: &BTreeMap<String, ByteString>,
    policy: CreationPolicy,
    recorded: &BTreeMap<String, SourceRecord>,
    templated: &[String],
) -> Vec<String> {
    let present = existing.data.iter().flatten().map(|(k, _)| k);
    let candidates: Vec<&String> = if policy == CreationPolicy::Merge {
        let ours: BTreeSet<&String> = recorded
            .values()
            .flat_map(|r| r.keys.iter())
            .chain(templated)
            .collect();
        present.filter(|k| ours.contains(k)).collect()
    } else {
        present.collect()
    };
    candidates
        .into_iter()
        .filter(|k| !rendered.contains_key(*k))
        .cloned()
        .collect()
}

/// The write that brings the Secret to the rendered state, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// Already exactly this.
    None,
    /// No Secret yet: create it (a concurrent creator makes this fail instead of overwriting).
    Create,
    /// Server-side apply, on the resourceVersion just read.
    Apply,
    /// Keys must go: one merge patch with the whole new state and the removals, on the
    /// resourceVersion just read, so nothing is removed unless everything is written.
    ReplaceKeys(Removals),
}

/// What a merge patch removes: data keys, and labels and annotations templates wrote before but
/// no longer produce (a merge patch, unlike an apply, removes only what it names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Removals {
    /// Data keys.
    pub(crate) keys: Vec<String>,
    /// Label keys.
    pub(crate) labels: Vec<String>,
    /// Annotation keys.
    pub(crate) annotations: Vec<String>,
}

impl Removals {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// The labels and annotations the existing Secret's template record says templates wrote, and
/// the record itself, that the desired Secret no longer has.
fn stale_template_metadata(existing: &Secret, desired: &Secret) -> (Vec<String>, Vec<String>) {
    let Some(record) = render::parse_template(&existing.metadata) else {
        return (Vec::new(), Vec::new());
    };
    let lacks = |map: &Option<BTreeMap<String, String>>, key: &String| {
        !map.as_ref().is_some_and(|m| m.contains_key(key))
    };
    let labels = record
        .labels
        .iter()
        .filter(|k| lacks(&desired.metadata.labels, k))
        .cloned()
        .collect();
    let mut annotations: Vec<String> = record
        .annotations
        .iter()
        .filter(|k| lacks(&desired.metadata.annotations, k))
        .cloned()
        .collect();
    if lacks(
        &desired.metadata.annotations,
        &TEMPLATE_ANNOTATION.to_string(),
    ) {
        annotations.push(TEMPLATE_ANNOTATION.to_string());
    }
    (labels, annotations)
}

/// The Event for a write (pure): repair of our own Secret, adoption, update, or creation of a
/// Secret this resource had before. None for the first sync of a new resource: its status says
/// it, and 10,000 first syncs should not cost 10,000 Events.
pub(crate) fn write_event(
    existing: bool,
    target: TargetState,
    (was_synced, had_secret): (bool, bool),
    name: &str,
    policy: CreationPolicy,
) -> Option<(&'static str, String)> {
    Some(match (existing, target) {
        (false, _) if was_synced => (
            "SecretRepaired",
            format!("Secret {name} was deleted; recreated it"),
        ),
        (false, _) if !had_secret => return None,
        (false, _) => ("SecretCreated", format!("created Secret {name}")),
        (true, TargetState::Owned { intact: false }) if was_synced => (
            "SecretRepaired",
            format!("Secret {name} was edited or incomplete; restored it"),
        ),
        (true, TargetState::Foreign) => (
            "SecretAdopted",
            format!("took over Secret {name} ({policy:?})"),
        ),
        _ => ("SecretUpdated", format!("updated Secret {name}")),
    })
}

/// Decides the write that brings the existing Secret to `desired`: none when it already is
/// exactly that, a create when there is none, one merge patch when keys must go, otherwise a
/// server-side apply. An immutable Secret whose data would change is refused.
pub(crate) fn plan_write(
    ts: &ThalassaSecret,
    existing: Option<&Secret>,
    target: TargetState,
    desired: &Desired,
    recorded: &BTreeMap<String, SourceRecord>,
) -> Result<Write> {
    let Some(existing) = existing else {
        return Ok(Write::Create);
    };
    let same_data = target == (TargetState::Owned { intact: true })
        && existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DATA_HASH_ANNOTATION))
            == Some(&desired.hash);
    // What templates wrote before, when the Secret is ours (a foreign one's annotation is not
    // trusted to name keys or metadata to delete).
    let owned = matches!(target, TargetState::Owned { .. });
    let templated = owned
        .then(|| render::parse_template(&existing.metadata).map(|t| t.keys))
        .flatten()
        .unwrap_or_default();
    let (labels, annotations) = if owned {
        stale_template_metadata(existing, &desired.secret)
    } else {
        (Vec::new(), Vec::new())
    };
    let remove = Removals {
        keys: keys_to_remove(
            existing,
            &desired.rendered.data,
            ts.spec.target.creation_policy,
            recorded,
            &templated,
        ),
        labels,
        annotations,
    };
    let write = if !remove.is_empty() {
        Write::ReplaceKeys(remove)
    } else if same_data && metadata_matches(existing, &desired.secret) {
        Write::None
    } else {
        Write::Apply
    };
    if write != Write::None && existing.immutable == Some(true) && !same_data {
        return Err(Error::TargetImmutable {
            name: existing.name_any(),
        });
    }
    Ok(write)
}

/// True when the existing Secret already carries every label, annotation and owner reference the
/// desired one has.
pub(crate) fn metadata_matches(existing: &Secret, desired: &Secret) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owner_ok = match &desired.metadata.owner_references {
        Some(want) => want.iter().all(|w| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|h| h.uid == w.uid)
        }),
        None => true,
    };
    contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
        && owner_ok
        && (desired.type_.is_none() || existing.type_ == desired.type_)
        && (desired.immutable.is_none() || existing.immutable == desired.immutable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{base, key, secret};
    use crate::controller::plan::desired::tests::desired;

    use crate::error::Reason;

    #[test]
    fn classify_target_covers_every_case() {
        let owner = base("Owner", "Opaque");
        let adopt = base("Adopt", "Opaque");
        let merge = base("Merge", "kubernetes.io/tls");
        let class = |ts: &ThalassaSecret, s: Option<&Secret>| {
            classify_target(ts, "app", s, &key()).map_err(|e| e.to_string())
        };
        assert_eq!(class(&owner, None), Ok(TargetState::Absent));
        // Ours by annotation (not intact: no hash).
        assert_eq!(
            class(
                &owner,
                Some(&secret("Opaque", Some("app"), "s1", &["password"]))
            ),
            Ok(TargetState::Owned { intact: false })
        );
        // Another resource's Secret, whatever the policy.
        for ts in [&owner, &adopt, &merge] {
            let err = class(ts, Some(&secret("Opaque", Some("other"), "s1", &[]))).unwrap_err();
            assert!(err.contains("not managed by this ThalassaSecret"), "{err}");
        }
        // Foreign: refused for Owner, adoptable for Adopt and Merge.
        let foreign = secret("Opaque", None, "s1", &["x"]);
        assert!(class(&owner, Some(&foreign)).is_err());
        assert_eq!(class(&adopt, Some(&foreign)), Ok(TargetState::Foreign));
        assert_eq!(class(&merge, Some(&foreign)), Ok(TargetState::Foreign));
        // A type the operator never writes.
        let token = secret(
            "kubernetes.io/service-account-token",
            None,
            "s1",
            &["token"],
        );
        for ts in [&owner, &adopt, &merge] {
            let err = class(ts, Some(&token)).unwrap_err();
            assert!(err.contains("never writes"), "{err}");
        }
        // A type change is refused for Adopt (types are immutable), ignored for Merge.
        let tls_wanted = base("Adopt", "kubernetes.io/tls");
        let err = class(&tls_wanted, Some(&foreign)).unwrap_err();
        assert!(err.contains("cannot change"), "{err}");
        // Ours by the UID recorded in status, with label and annotation stripped.
        let mut recorded = base("Owner", "Opaque");
        recorded.status = Some(crate::crd::ThalassaSecretStatus {
            secret_uid: Some("s1".into()),
            ..Default::default()
        });
        assert_eq!(
            class(&recorded, Some(&foreign)),
            Ok(TargetState::Owned { intact: false })
        );
        let other_uid = secret("Opaque", None, "s2", &["x"]);
        assert!(class(&recorded, Some(&other_uid)).is_err());
    }

    #[test]
    fn keys_to_remove_depend_on_the_policy() {
        let existing = secret("Opaque", Some("app"), "s1", &["ours", "old", "theirs"]);
        let rendered = BTreeMap::from([("ours".to_string(), ByteString(b"v".to_vec()))]);
        let recorded = BTreeMap::from([(
            "/p".to_string(),
            SourceRecord {
                version: 1,
                keys: vec!["ours".into(), "old".into()],
            },
        )]);
        assert_eq!(
            keys_to_remove(&existing, &rendered, CreationPolicy::Owner, &recorded, &[]),
            vec!["old".to_string(), "theirs".to_string()]
        );
        assert_eq!(
            keys_to_remove(
                &existing,
                &rendered,
                CreationPolicy::Adopt,
                &BTreeMap::new(),
                &[]
            ),
            vec!["old".to_string(), "theirs".to_string()]
        );
        assert_eq!(
            keys_to_remove(&existing, &rendered, CreationPolicy::Merge, &recorded, &[]),
            vec!["old".to_string()],
            "Merge removes only keys it wrote"
        );
        assert_eq!(
            keys_to_remove(
                &existing,
                &rendered,
                CreationPolicy::Merge,
                &recorded,
                &["theirs".to_string()]
            ),
            vec!["old".to_string(), "theirs".to_string()],
            "Merge removes the keys its templates wrote too"
        );
    }

    #[test]
    fn the_write_is_planned_without_io() {
        let ts = base("Owner", "Opaque");
        let (wanted, _) = desired(&ts, "v1");
        let none = BTreeMap::new();
        // No Secret: create.
        assert_eq!(
            plan_write(&ts, None, TargetState::Absent, &wanted, &none).unwrap(),
            Write::Create
        );
        // Exactly the rendered Secret, ours and intact: nothing to write.
        let mut current = wanted.secret.clone();
        current.metadata.uid = Some("s1".into());
        let recorded = parse_sources(&current.metadata);
        let intact = TargetState::Owned { intact: true };
        assert_eq!(
            plan_write(&ts, Some(&current), intact, &wanted, &recorded).unwrap(),
            Write::None
        );
        // New data: apply.
        let (newer, _) = desired(&ts, "v2");
        assert_eq!(
            plan_write(&ts, Some(&current), intact, &newer, &recorded).unwrap(),
            Write::Apply
        );
        // Edited (not intact): apply even with the same hash.
        let edited = TargetState::Owned { intact: false };
        assert_eq!(
            plan_write(&ts, Some(&current), edited, &wanted, &recorded).unwrap(),
            Write::Apply
        );
        // A label the spec wants is missing: apply.
        let mut unlabelled = current.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(
            plan_write(&ts, Some(&unlabelled), intact, &wanted, &recorded).unwrap(),
            Write::Apply
        );
        // An extra key: one merge patch that removes it.
        let mut injected = current.clone();
        injected
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), ByteString(b"x".to_vec()));
        assert_eq!(
            plan_write(&ts, Some(&injected), edited, &wanted, &recorded).unwrap(),
            Write::ReplaceKeys(Removals {
                keys: vec!["extra".into()],
                ..Removals::default()
            })
        );
        // Immutable and the data would change: refused, nothing written.
        let mut frozen = current.clone();
        frozen.immutable = Some(true);
        let err = plan_write(&ts, Some(&frozen), intact, &newer, &recorded).unwrap_err();
        assert_eq!(err.reason(), Reason::TargetImmutable);
        assert_eq!(
            plan_write(&ts, Some(&frozen), intact, &wanted, &recorded).unwrap(),
            Write::None
        );
    }

    #[test]
    fn events_name_what_happened() {
        let owner = CreationPolicy::Owner;
        let reason = |existing, target, synced| {
            write_event(existing, target, (synced, true), "s", owner)
                .unwrap()
                .0
        };
        assert_eq!(
            write_event(false, TargetState::Absent, (false, false), "s", owner),
            None,
            "a first sync is said by the status alone"
        );
        assert_eq!(reason(false, TargetState::Absent, false), "SecretCreated");
        assert_eq!(reason(false, TargetState::Absent, true), "SecretRepaired");
        assert_eq!(
            reason(true, TargetState::Owned { intact: false }, true),
            "SecretRepaired"
        );
        assert_eq!(
            reason(true, TargetState::Owned { intact: true }, true),
            "SecretUpdated"
        );
        assert_eq!(reason(true, TargetState::Foreign, false), "SecretAdopted");
    }
}
