//! The pure step of a fan-out: given the namespaces, the cluster store, the copies that exist and
//! which namespaces hold a ThalassaSecret of the copy's name that is not ours, decide which copies
//! to write and delete and what the status says. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{Resource, ResourceExt, api::PartialObjectMeta};

use crate::{
    cluster_secret::{
        CLUSTER_SECRET_LABEL, ClusterThalassaSecret, FailedNamespace, MAX_FAILED_NAMESPACES_LISTED,
        MAX_SELECTED_NAMESPACES,
    },
    crd::{StoreKind, ThalassaSecret},
    error::{Error, Reason},
    status::{Health, Outcome},
    store::ClusterThalassaSecretStore,
};

/// Annotation on a copy: the `metadata.generation` of the ClusterThalassaSecret it was written
/// for (a different one means the template may have changed).
pub(crate) const GENERATION_ANNOTATION: &str = "secrets.thalassa.cloud/cluster-secret-generation";

/// Ready=True reason: every selected namespace has a Ready copy.
pub(crate) const COPIES_READY: &str = "CopiesReady";
/// Reconciling reason: copies are being written or have not synced yet.
pub(crate) const COPIES_PENDING: &str = "CopiesPending";
/// Reason when some namespaces fail (each is listed with its own reason).
pub(crate) const NAMESPACES_FAILING: &str = "NamespacesFailing";

/// A namespace as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceView {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// Being deleted: gets no copy (and is never held up by one).
    pub(crate) terminating: bool,
}

impl NamespaceView {
    pub(crate) fn of(namespace: &PartialObjectMeta<Namespace>) -> NamespaceView {
        NamespaceView {
            name: namespace.name_any(),
            labels: namespace.labels().clone(),
            terminating: namespace.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What the plan knows of one existing copy (a labelled ThalassaSecret whose controller owner
/// is this resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyView {
    pub(crate) namespace: String,
    pub(crate) uid: String,
    /// It differs from what the template asks for.
    pub(crate) stale: bool,
    /// Its own health: `None` while it has not reported on its current generation.
    pub(crate) health: Option<CopyHealth>,
}

/// A copy's Ready condition at its current generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyHealth {
    pub(crate) ready: bool,
    /// Its Stalled condition is True: only a person can fix it.
    pub(crate) stalled: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// Everything a fan-out decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Namespaces whose copy is written (created, or updated to the template).
    pub(crate) apply: Vec<String>,
    /// Copies to delete: (namespace, UID).
    pub(crate) delete: Vec<(String, String)>,
    pub(crate) selected: usize,
    pub(crate) copies: usize,
    pub(crate) ready: usize,
    /// Every failing namespace, sorted by name.
    pub(crate) failed: Vec<FailedNamespace>,
    pub(crate) health: Health,
}

/// The inputs of [`plan`].
pub(crate) struct Inputs<'a> {
    pub(crate) namespaces: &'a [NamespaceView],
    /// The cluster store the template names, if it exists.
    pub(crate) store: Option<&'a ClusterThalassaSecretStore>,
    pub(crate) copies: &'a [CopyView],
    /// Namespaces holding a ThalassaSecret of the copy's name that this resource did not create.
    pub(crate) taken: &'a BTreeSet<String>,
}

/// The Active namespaces `cts` selects (its list, or its selector), sorted by name.
pub(crate) fn selected<'a>(
    cts: &ClusterThalassaSecret,
    namespaces: &'a [NamespaceView],
) -> Vec<&'a NamespaceView> {
    let listed: BTreeSet<&str> = cts.spec.namespaces.iter().map(|n| n.0.as_str()).collect();
    let mut chosen: Vec<&NamespaceView> = namespaces
        .iter()
        .filter(|n| !n.terminating)
        .filter(|n| {
            listed.contains(n.name.as_str())
                || cts
                    .spec
                    .namespace_selector
                    .as_ref()
                    .is_some_and(|s| super::super::connect::selector_matches(s, &n.labels))
        })
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    chosen
}

/// The selected namespaces the store allows that have no copy of ours: where the driver must
/// check that no foreign ThalassaSecret holds the copy's name before creating one.
pub(crate) fn creation_candidates(
    cts: &ClusterThalassaSecret,
    namespaces: &[NamespaceView],
    store: Option<&ClusterThalassaSecretStore>,
    copies: &[CopyView],
) -> Vec<String> {
    let Some(store) = store else {
        return Vec::new();
    };
    let have: BTreeSet<&str> = copies.iter().map(|c| c.namespace.as_str()).collect();
    let chosen = selected(cts, namespaces);
    if chosen.len() > MAX_SELECTED_NAMESPACES {
        return Vec::new();
    }
    chosen
        .into_iter()
        .filter(|n| allowed(store, n) && !have.contains(n.name.as_str()))
        .map(|n| n.name.clone())
        .collect()
}

fn allowed(store: &ClusterThalassaSecretStore, namespace: &NamespaceView) -> bool {
    super::super::connect::cluster_store_allows(
        store,
        &namespace.name,
        Some(namespace.labels.clone()),
    )
}

/// Decides the writes, deletions and status of one fan-out.
pub(crate) fn plan(cts: &ClusterThalassaSecret, inputs: &Inputs<'_>) -> Plan {
    let chosen = selected(cts, inputs.namespaces);
    let copies: BTreeMap<&str, &CopyView> = inputs
        .copies
        .iter()
        .map(|c| (c.namespace.as_str(), c))
        .collect();
    let mut plan = Plan {
        apply: Vec::new(),
        delete: Vec::new(),
        selected: chosen.len(),
        copies: inputs.copies.len(),
        ready: 0,
        failed: Vec::new(),
        health: ready_health(0),
    };
    if chosen.len() > MAX_SELECTED_NAMESPACES {
        plan.health = Health::failed(
            &Error::TooManyNamespaces {
                selected: chosen.len(),
                limit: MAX_SELECTED_NAMESPACES,
            },
            "checking again",
        );
        plan.ready = count_ready(inputs.copies);
        return plan;
    }
    let Some(store) = inputs.store else {
        return store_missing(cts, plan, &chosen, inputs.copies);
    };
    let mut wanted = BTreeSet::new();
    let mut pending = false;
    for namespace in &chosen {
        let name = namespace.name.as_str();
        if !allowed(store, namespace) {
            plan.failed.push(failed_with(
                name,
                &Error::NamespaceNotAllowed {
                    store: format!("ClusterThalassaSecretStore {}", store.name_any()),
                    namespace: name.to_string(),
                },
            ));
            continue;
        }
        wanted.insert(name);
        pending |= place(
            &mut plan,
            cts,
            name,
            copies.get(name).copied(),
            inputs.taken,
        );
    }
    for copy in inputs.copies {
        if !wanted.contains(copy.namespace.as_str()) {
            plan.delete.push((copy.namespace.clone(), copy.uid.clone()));
        }
    }
    plan.health = health(&plan, pending, inputs.copies);
    plan
}

/// Decides for one selected, allowed namespace: write its copy (new or stale), count it Ready,
/// or report it (a taken name, a failing copy). True while its copy is pending.
fn place(
    plan: &mut Plan,
    cts: &ClusterThalassaSecret,
    name: &str,
    copy: Option<&CopyView>,
    taken: &BTreeSet<String>,
) -> bool {
    let Some(copy) = copy else {
        if taken.contains(name) {
            plan.failed.push(failed_with(
                name,
                &Error::NameTaken {
                    namespace: name.to_string(),
                    name: copy_name(cts),
                },
            ));
            return false;
        }
        plan.apply.push(name.to_string());
        return true;
    };
    if copy.stale {
        plan.apply.push(name.to_string());
        return true;
    }
    match &copy.health {
        Some(h) if h.ready => {
            plan.ready += 1;
            false
        }
        Some(h) => {
            plan.failed
                .push(failure(name, &h.reason, h.message.clone()));
            false
        }
        None => true,
    }
}

/// Without its store nothing is created or deleted (a store re-created under the same name
/// serves the same copies); every selected namespace is reported.
fn store_missing(
    cts: &ClusterThalassaSecret,
    mut plan: Plan,
    chosen: &[&NamespaceView],
    copies: &[CopyView],
) -> Plan {
    let store = cts
        .spec
        .template
        .spec
        .store_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let missing = |namespace: &str| Error::StoreNotFound {
        kind: StoreKind::ClusterThalassaSecretStore,
        name: store.clone(),
        namespace: namespace.to_string(),
    };
    plan.failed = chosen
        .iter()
        .map(|n| failed_with(&n.name, &missing(&n.name)))
        .collect();
    plan.ready = count_ready(copies);
    plan.health = Health::failed(&missing(""), "checking again");
    plan
}

fn count_ready(copies: &[CopyView]) -> usize {
    copies
        .iter()
        .filter(|c| c.health.as_ref().is_some_and(|h| h.ready))
        .count()
}

/// Stalled when a failure needs a person (a namespace the store refuses, a taken name, a copy
/// that is itself stalled); Reconciling while copies are written or syncing, or fail in a way
/// that passes; else Ready.
fn health(plan: &Plan, pending: bool, copies: &[CopyView]) -> Health {
    let stalled_copy = |namespace: &str| {
        copies
            .iter()
            .any(|c| c.namespace == namespace && c.health.as_ref().is_some_and(|h| h.stalled))
    };
    let needs_person = plan.failed.iter().any(|f| {
        f.reason == Reason::NamespaceNotAllowed.as_str()
            || f.reason == Reason::NameTaken.as_str()
            || stalled_copy(&f.namespace)
    });
    if let Some(first) = plan.failed.first() {
        let message = format!(
            "{} of {} selected namespaces fail; first: {}: {}: {}",
            plan.failed.len(),
            plan.selected,
            first.namespace,
            first.reason,
            first.message
        );
        return if needs_person {
            stalled(NAMESPACES_FAILING, message)
        } else {
            retrying(NAMESPACES_FAILING, message)
        };
    }
    if pending || !plan.delete.is_empty() {
        return retrying(
            COPIES_PENDING,
            format!("{} of {} copies Ready", plan.ready, plan.selected),
        );
    }
    ready_health(plan.ready)
}

fn ready_health(ready: usize) -> Health {
    Health {
        outcome: Outcome::Ready,
        reason: COPIES_READY,
        message: format!("{ready} copies Ready, one in every selected namespace"),
        retry: "checking again",
    }
}

fn stalled(reason: &'static str, message: String) -> Health {
    Health {
        outcome: Outcome::NeedsPerson(message.clone()),
        reason,
        message,
        retry: "checking again",
    }
}

fn retrying(reason: &'static str, message: String) -> Health {
    Health {
        outcome: Outcome::Retrying,
        reason,
        message,
        retry: "checking again",
    }
}

fn failed_with(namespace: &str, error: &Error) -> FailedNamespace {
    failure(namespace, error.reason().as_str(), error.to_string())
}

fn failure(namespace: &str, reason: &str, message: String) -> FailedNamespace {
    FailedNamespace {
        namespace: namespace.to_string(),
        reason: reason.to_string(),
        message: crate::text::truncate(&message, 512),
    }
}

/// The name of every copy: `spec.copyName`, or the resource's own.
pub(crate) fn copy_name(cts: &ClusterThalassaSecret) -> String {
    cts.spec.copy_name.clone().unwrap_or_else(|| cts.name_any())
}

/// The first failing namespaces, as listed in status.
pub(crate) fn listed(failed: &[FailedNamespace]) -> Vec<FailedNamespace> {
    failed
        .iter()
        .take(MAX_FAILED_NAMESPACES_LISTED)
        .cloned()
        .collect()
}

/// True when `ts` is a copy this resource created: our label and a controller ownerReference
/// with our UID (a resource deleted and created again under the same name is another owner).
pub(crate) fn is_our_copy(ts: &ThalassaSecret, cts: &ClusterThalassaSecret) -> bool {
    let uid = cts.meta().uid.as_deref().unwrap_or_default();
    ts.labels().get(CLUSTER_SECRET_LABEL) == Some(&cts.name_any())
        && ts
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true))
}

/// The copy for `namespace`, as server-side applied: the template's metadata and spec, our label,
/// the generation annotation and the ownerReference (Kubernetes garbage collection removes the
/// copies with the resource, so there is no finalizer anywhere).
pub(crate) fn render_copy(cts: &ClusterThalassaSecret, namespace: &str) -> ThalassaSecret {
    let template = &cts.spec.template;
    let mut copy = ThalassaSecret::new(&copy_name(cts), template.spec.clone());
    copy.metadata.namespace = Some(namespace.to_string());
    let mut labels = template.metadata.labels.clone();
    labels.insert(CLUSTER_SECRET_LABEL.into(), cts.name_any());
    copy.metadata.labels = Some(labels);
    let mut annotations = template.metadata.annotations.clone();
    annotations.insert(
        GENERATION_ANNOTATION.into(),
        cts.meta().generation.unwrap_or_default().to_string(),
    );
    copy.metadata.annotations = Some(annotations);
    copy.metadata.owner_references = Some(vec![owner_reference(cts)]);
    copy
}

fn owner_reference(cts: &ClusterThalassaSecret) -> OwnerReference {
    OwnerReference {
        api_version: ClusterThalassaSecret::api_version(&()).into_owned(),
        kind: ClusterThalassaSecret::kind(&()).into_owned(),
        name: cts.name_any(),
        uid: cts.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        // blockOwnerDeletion would need `update` on the owner's finalizers; deletion of the
        // owner never waits for the copies.
        block_owner_deletion: None,
    }
}

/// True when an existing copy differs from what [`render_copy`] writes: another generation of
/// the resource, a changed spec, or a template label or annotation edited away.
pub(crate) fn is_stale(copy: &ThalassaSecret, cts: &ClusterThalassaSecret) -> bool {
    let template = &cts.spec.template;
    let generation = cts.meta().generation.unwrap_or_default().to_string();
    let annotations = copy.annotations();
    let labels = copy.labels();
    annotations.get(GENERATION_ANNOTATION) != Some(&generation)
        || copy.spec != template.spec
        || template
            .metadata
            .labels
            .iter()
            .any(|(k, v)| labels.get(k) != Some(v))
        || template
            .metadata
            .annotations
            .iter()
            .any(|(k, v)| annotations.get(k) != Some(v))
}

#[cfg(test)]
mod tests;
