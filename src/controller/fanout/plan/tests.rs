use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;

use super::*;
use crate::{
    cluster_secret::{ClusterThalassaSecretSpec, CopyMetadata, CopyTemplate, NamespaceName},
    crd::{StoreRef, ThalassaSecretSpec},
    store::{ClusterThalassaSecretStoreSpec, Connection, StoreAuth, TokenSecretRef},
};

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        match_expressions: None,
    }
}

fn cts(selector: Option<LabelSelector>, namespaces: &[&str]) -> ClusterThalassaSecret {
    let mut cts = ClusterThalassaSecret::new(
        "registry",
        ClusterThalassaSecretSpec {
            namespace_selector: selector,
            namespaces: namespaces
                .iter()
                .map(|n| NamespaceName(n.to_string()))
                .collect(),
            copy_name: None,
            template: CopyTemplate {
                metadata: CopyMetadata {
                    labels: BTreeMap::from([("team".into(), "platform".into())]),
                    annotations: BTreeMap::new(),
                },
                spec: ThalassaSecretSpec {
                    store_ref: Some(StoreRef {
                        kind: StoreKind::ClusterThalassaSecretStore,
                        name: "platform".into(),
                    }),
                    ..ThalassaSecretSpec::default()
                },
            },
        },
    );
    cts.meta_mut().uid = Some("uid-cts".into());
    cts.meta_mut().generation = Some(3);
    cts
}

fn store(allow: Option<LabelSelector>, namespaces: &[&str]) -> ClusterThalassaSecretStore {
    ClusterThalassaSecretStore::new(
        "platform",
        ClusterThalassaSecretStoreSpec {
            connection: Connection {
                url: None,
                organisation: "org".into(),
                project: None,
                region: None,
                auth: StoreAuth {
                    workload_identity: None,
                    token_secret_ref: Some(TokenSecretRef {
                        name: "t".into(),
                        key: None,
                    }),
                    client_credentials_secret_ref: None,
                },
            },
            credentials_namespace: "platform".into(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            namespace_selector: allow,
        },
    )
}

fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceView {
    NamespaceView {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        terminating: false,
    }
}

fn copy(namespace: &str, ready: Option<bool>) -> CopyView {
    CopyView {
        namespace: namespace.into(),
        uid: format!("uid-{namespace}"),
        stale: false,
        health: ready.map(|ready| CopyHealth {
            ready,
            stalled: !ready,
            reason: if ready { "Synced" } else { "SecretNotFound" }.into(),
            message: "m".into(),
        }),
    }
}

fn run(
    cts: &ClusterThalassaSecret,
    namespaces: &[NamespaceView],
    store: Option<&ClusterThalassaSecretStore>,
    copies: &[CopyView],
    taken: &[&str],
) -> Plan {
    let taken: BTreeSet<String> = taken.iter().map(|t| t.to_string()).collect();
    plan(
        cts,
        &Inputs {
            namespaces,
            store,
            copies,
            taken: &taken,
        },
    )
}

fn names(failed: &[FailedNamespace]) -> Vec<(&str, &str)> {
    failed
        .iter()
        .map(|f| (f.namespace.as_str(), f.reason.as_str()))
        .collect()
}

#[test]
fn every_selected_allowed_namespace_without_a_copy_gets_one() {
    let cts = cts(Some(selector("pull", "yes")), &["listed"]);
    let store = store(Some(LabelSelector::default()), &[]);
    let namespaces = [
        ns("a", &[("pull", "yes")]),
        ns("b", &[("pull", "yes")]),
        ns("other", &[]),
        ns("listed", &[]),
    ];
    let plan = run(&cts, &namespaces, Some(&store), &[], &[]);
    assert_eq!(plan.apply, ["a", "b", "listed"]);
    assert!(plan.delete.is_empty() && plan.failed.is_empty());
    assert_eq!((plan.selected, plan.copies, plan.ready), (3, 0, 0));
    assert_eq!(plan.health.outcome, Outcome::Retrying);
    assert_eq!(plan.health.reason, COPIES_PENDING);
}

#[test]
fn ready_copies_that_match_the_template_need_nothing() {
    let cts = cts(Some(selector("pull", "yes")), &[]);
    let store = store(Some(LabelSelector::default()), &[]);
    let namespaces = [ns("a", &[("pull", "yes")]), ns("b", &[("pull", "yes")])];
    let copies = [copy("a", Some(true)), copy("b", Some(true))];
    let plan = run(&cts, &namespaces, Some(&store), &copies, &[]);
    assert!(plan.apply.is_empty() && plan.delete.is_empty());
    assert_eq!((plan.selected, plan.copies, plan.ready), (2, 2, 2));
    assert_eq!(plan.health.outcome, Outcome::Ready);
}

#[test]
fn a_stale_copy_is_written_again() {
    let cts = cts(None, &["a"]);
    let store = store(None, &["a"]);
    let mut stale = copy("a", Some(true));
    stale.stale = true;
    let plan = run(&cts, &[ns("a", &[])], Some(&store), &[stale], &[]);
    assert_eq!(plan.apply, ["a"]);
    assert_eq!(plan.ready, 0, "a stale copy is not Ready for this template");
}

#[test]
fn deselected_terminating_and_disallowed_namespaces_lose_their_copy() {
    let cts = cts(Some(selector("pull", "yes")), &[]);
    let store = store(None, &["kept", "going"]);
    let mut going = ns("going", &[("pull", "yes")]);
    going.terminating = true;
    let namespaces = [
        going,
        ns("kept", &[("pull", "yes")]),
        ns("refused", &[("pull", "yes")]),
        ns("unlabelled", &[]),
    ];
    let copies = [
        copy("going", Some(true)),
        copy("kept", Some(true)),
        copy("refused", Some(true)),
        copy("unlabelled", Some(true)),
    ];
    let plan = run(&cts, &namespaces, Some(&store), &copies, &[]);
    let deleted: Vec<&str> = plan.delete.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(deleted, ["going", "refused", "unlabelled"]);
    assert_eq!(plan.delete[0].1, "uid-going", "deleted by UID");
    assert_eq!(plan.selected, 2, "a terminating namespace is not selected");
    assert_eq!(names(&plan.failed), [("refused", "NamespaceNotAllowed")]);
    assert!(matches!(plan.health.outcome, Outcome::NeedsPerson(_)));
    assert_eq!(plan.health.reason, NAMESPACES_FAILING);
}

#[test]
fn a_namespace_the_store_does_not_allow_gets_no_copy_and_is_named() {
    let cts = cts(None, &["a", "b"]);
    let store = store(None, &["a"]);
    let plan = run(&cts, &[ns("a", &[]), ns("b", &[])], Some(&store), &[], &[]);
    assert_eq!(plan.apply, ["a"]);
    assert_eq!(names(&plan.failed), [("b", "NamespaceNotAllowed")]);
    assert!(
        plan.failed[0]
            .message
            .contains("ClusterThalassaSecretStore platform")
    );
}

#[test]
fn a_name_taken_by_someone_else_is_reported_and_left_alone() {
    let cts = cts(None, &["a", "b"]);
    let store = store(None, &["a", "b"]);
    let plan = run(
        &cts,
        &[ns("a", &[]), ns("b", &[])],
        Some(&store),
        &[],
        &["b"],
    );
    assert_eq!(plan.apply, ["a"]);
    assert!(plan.delete.is_empty());
    assert_eq!(names(&plan.failed), [("b", "NameTaken")]);
    assert!(plan.failed[0].message.contains("b/registry"));
}

#[test]
fn without_its_store_nothing_is_created_or_deleted() {
    let cts = cts(None, &["a", "b"]);
    let copies = [copy("a", Some(true))];
    let plan = run(&cts, &[ns("a", &[]), ns("b", &[])], None, &copies, &[]);
    assert!(plan.apply.is_empty() && plan.delete.is_empty());
    assert_eq!(
        names(&plan.failed),
        [("a", "StoreNotFound"), ("b", "StoreNotFound")]
    );
    assert_eq!(plan.health.reason, "StoreNotFound");
    assert!(matches!(plan.health.outcome, Outcome::NeedsPerson(_)));
}

#[test]
fn a_failing_copy_is_listed_with_its_own_reason() {
    let cts = cts(None, &["a", "b"]);
    let store = store(None, &["a", "b"]);
    let copies = [copy("a", Some(false)), copy("b", None)];
    let plan = run(
        &cts,
        &[ns("a", &[]), ns("b", &[])],
        Some(&store),
        &copies,
        &[],
    );
    assert_eq!(names(&plan.failed), [("a", "SecretNotFound")]);
    assert!(
        matches!(plan.health.outcome, Outcome::NeedsPerson(_)),
        "the copy is stalled"
    );
    assert_eq!(plan.ready, 0);
}

#[test]
fn too_many_namespaces_change_nothing() {
    let cts = cts(Some(LabelSelector::default()), &[]);
    let store = store(Some(LabelSelector::default()), &[]);
    let namespaces: Vec<NamespaceView> = (0..=MAX_SELECTED_NAMESPACES)
        .map(|i| ns(&format!("n{i}"), &[]))
        .collect();
    let copies = [copy("gone", Some(true))];
    let plan = run(&cts, &namespaces, Some(&store), &copies, &[]);
    assert!(plan.apply.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.health.reason, "TooManyNamespaces");
    assert!(creation_candidates(&cts, &namespaces, Some(&store), &copies).is_empty());
}

#[test]
fn creation_candidates_are_the_allowed_namespaces_without_a_copy() {
    let cts = cts(None, &["a", "b", "c"]);
    let store = store(None, &["a", "b"]);
    let namespaces = [ns("a", &[]), ns("b", &[]), ns("c", &[])];
    let copies = [copy("a", Some(true))];
    assert_eq!(
        creation_candidates(&cts, &namespaces, Some(&store), &copies),
        ["b"]
    );
    assert!(creation_candidates(&cts, &namespaces, None, &copies).is_empty());
}

#[test]
fn the_copy_is_owned_labelled_and_never_confused_with_a_stranger() {
    let cts = cts(None, &["a"]);
    let copy = render_copy(&cts, "a");
    assert_eq!(copy.metadata.namespace.as_deref(), Some("a"));
    assert_eq!(copy.metadata.name.as_deref(), Some("registry"));
    let labels = copy.metadata.labels.clone().unwrap();
    assert_eq!(labels[CLUSTER_SECRET_LABEL], "registry");
    assert_eq!(labels["team"], "platform");
    let owner = &copy.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("ClusterThalassaSecret", "uid-cts", Some(true))
    );
    assert!(copy.metadata.finalizers.is_none());
    assert!(is_our_copy(&copy, &cts));
    assert!(!is_stale(&copy, &cts));

    let mut stranger = copy.clone();
    stranger.metadata.owner_references = None;
    assert!(
        !is_our_copy(&stranger, &cts),
        "the label alone proves nothing"
    );
    let mut reborn = cts.clone();
    reborn.meta_mut().uid = Some("uid-new".into());
    assert!(
        !is_our_copy(&copy, &reborn),
        "another owner of the same name"
    );

    let mut edited = copy.clone();
    edited.spec.refresh_interval = Some("10s".into());
    assert!(is_stale(&edited, &cts));
    let mut newer = cts.clone();
    newer.meta_mut().generation = Some(4);
    assert!(is_stale(&copy, &newer));
}

#[test]
fn only_the_first_failures_are_listed() {
    let failed: Vec<FailedNamespace> = (0..25)
        .map(|i| failure(&format!("n{i:02}"), "NameTaken", String::new()))
        .collect();
    let listed = listed(&failed);
    assert_eq!(listed.len(), MAX_FAILED_NAMESPACES_LISTED);
    assert_eq!(listed[0].namespace, "n00");
}
