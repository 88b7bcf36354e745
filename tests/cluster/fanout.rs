//! `ClusterThalassaSecret` on the real control plane (apiserver, etcd, kube-controller-manager's
//! garbage collector and namespace controller) and the emulator: one ThalassaSecret copy per
//! selected namespace that the cluster store allows, never an adopted stranger, never a finalizer.
//!
//! One test function told as scenarios on one world: the operator runs in cluster mode (it acts
//! on every namespace), so two such tests side by side would act on each other's namespaces.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use thalassa_operator::{
    cluster_secret::{CLUSTER_SECRET_LABEL, ClusterThalassaSecret, ClusterThalassaSecretStatus},
    crd::ThalassaSecret,
};

use crate::common::{self, Harness, harness, kubectl_apply, secret_data, wait_for};

const VALUE: &str = "VALUE-registry-pull-6d1";
const PATH: &str = "/platform/registry";
/// The copies' name (the resource's own).
const NAME: &str = "registry-pull";

#[tokio::test]
async fn a_cluster_secret_fans_out_to_selected_allowed_namespaces_without_finalizers() {
    let _turn = common::area_turn(module_path!()).await;
    let world = Fanout::set_up().await;
    world.invalid_specs_are_refused_at_admission().await;
    let [a, b, c] = world.three_labelled_namespaces_get_ready_copies().await;
    let d = world.a_namespace_labelled_later_gets_its_copy().await;
    world
        .an_unlabelled_namespace_loses_its_copy_and_keeps_its_secret(&b)
        .await;
    world.a_stranger_of_the_copy_name_is_not_adopted().await;
    world
        .a_namespace_the_store_does_not_allow_gets_no_copy_and_is_named()
        .await;
    world.kstatus_and_argo_cd_judge_the_cluster_secret().await;
    world
        .a_namespace_with_a_copy_is_deleted_as_fast_as_a_plain_one(c)
        .await;
    world
        .deleting_the_cluster_secret_removes_copies_and_keeps_secrets(&[&a, &d])
        .await;
}

struct Fanout {
    h: Harness,
    client: Client,
    cp: &'static testenv::ControlPlane,
    /// The label the ClusterThalassaSecret selects (unique to this run).
    select: String,
    /// The label the cluster store allows.
    allow: String,
    /// Namespaces kept alive until the end.
    namespaces: std::sync::Mutex<Vec<testenv::TestNamespace>>,
}

impl Fanout {
    async fn set_up() -> Fanout {
        let cp = testenv::ControlPlane::shared();
        let h = harness("fanout").await;
        h.create_string(PATH, VALUE);
        let client = h.client.clone();
        let platform = h.ns().to_string();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &platform);
        secrets
            .patch(
                "platform",
                &PatchParams::apply("tests"),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "platform"},
                    "stringData": {"token": h.emulator.token()},
                })),
            )
            .await
            .unwrap();
        let world = Fanout {
            select: format!("pull-{platform}"),
            allow: format!("allowed-{platform}"),
            client,
            cp,
            h,
            namespaces: std::sync::Mutex::default(),
        };
        let store = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: fan-{platform}}}\nspec:\n  url: {url}\n  organisation: org-local\n  credentialsNamespace: {platform}\n  auth: {{tokenSecretRef: {{name: platform}}}}\n  namespaceSelector: {{matchLabels: {{{allow}: \"yes\"}}}}\n",
            url = world.h.emulator.base_url(),
            allow = world.allow,
        );
        kubectl_apply(&platform, &store).await.unwrap();
        let operator = world
            .h
            .spawn_operator_watching(None, &[], "operator.log")
            .await;
        let mut world = world;
        world.h.operator = Some(operator);
        world
    }

    /// A new namespace with the given labels (`select`, `allow`: this run's label keys).
    async fn namespace(&self, select: bool, allow: bool) -> String {
        let ns = self.cp.temp_namespace("fan").await;
        let name = ns.name().to_string();
        self.namespaces.lock().unwrap().push(ns);
        self.label(&name, select, allow).await;
        name
    }

    async fn label(&self, namespace: &str, select: bool, allow: bool) {
        let value = |on: bool| if on { Some("yes") } else { None };
        let patch = json!({"metadata": {"labels": {
            self.select.as_str(): value(select),
            self.allow.as_str(): value(allow),
        }}});
        Api::<Namespace>::all(self.client.clone())
            .patch(namespace, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    fn cluster_secrets(&self) -> Api<ClusterThalassaSecret> {
        Api::all(self.client.clone())
    }

    fn copies(&self, namespace: &str) -> Api<ThalassaSecret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits until the status says `(selected, copies, readyCopies)` and Ready is `ready`, at
    /// the current generation.
    async fn wait_status(
        &self,
        counts: (i64, i64, i64),
        ready: &str,
        what: &str,
    ) -> ClusterThalassaSecretStatus {
        let api = self.cluster_secrets();
        wait_for(Duration::from_secs(90), what, || async {
            let cts = api.get(NAME).await.ok()?;
            let status = cts.status?;
            let ready_now = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?
                .status
                .clone();
            ((
                status.selected_namespaces,
                status.copies,
                status.ready_copies,
            ) == counts
                && ready_now == ready
                && status.observed_generation == cts.metadata.generation)
                .then_some(status)
        })
        .await
    }

    async fn wait_secret(&self, namespace: &str) -> Secret {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        wait_for(
            Duration::from_secs(60),
            &format!("Secret {namespace}/{NAME}"),
            || async {
                let secret = secrets.get_opt(NAME).await.ok()??;
                (secret_data(&secret).get("token").map(Vec::as_slice) == Some(VALUE.as_bytes()))
                    .then_some(secret)
            },
        )
        .await
    }

    async fn invalid_specs_are_refused_at_admission(&self) {
        let template =
            "  template:\n    spec:\n      data: [{secretKey: token, remoteRef: {path: /p}}]\n";
        for (case, spec, expected) in [
            (
                "a namespaced store",
                format!("  namespaces: [a]\n{template}      storeRef: {{name: mine}}\n"),
                "template.spec.storeRef must name a ClusterThalassaSecretStore",
            ),
            (
                "no store",
                format!("  namespaces: [a]\n{template}"),
                "template.spec.storeRef must name a ClusterThalassaSecretStore",
            ),
            (
                "no namespaces",
                format!(
                    "{template}      storeRef: {{kind: ClusterThalassaSecretStore, name: s}}\n"
                ),
                "at least one of namespaceSelector or namespaces is required",
            ),
        ] {
            let yaml = format!(
                "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecret\nmetadata: {{name: bad}}\nspec:\n{spec}"
            );
            let refused = kubectl_apply(self.h.ns(), &yaml).await.expect_err(case);
            assert!(refused.contains(expected), "{case}: {refused}");
        }
    }

    async fn three_labelled_namespaces_get_ready_copies(&self) -> [String; 3] {
        let a = self.namespace(true, true).await;
        let b = self.namespace(true, true).await;
        let c = self.namespace(true, true).await;
        let reveals_before = self.h.reveals();
        let yaml = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecret\nmetadata: {{name: {NAME}}}\nspec:\n  namespaceSelector: {{matchLabels: {{{select}: \"yes\"}}}}\n  template:\n    metadata: {{labels: {{team: platform}}}}\n    spec:\n      data: [{{secretKey: token, remoteRef: {{path: {PATH}}}}}]\n      storeRef: {{kind: ClusterThalassaSecretStore, name: fan-{platform}}}\n",
            select = self.select,
            platform = self.h.ns(),
        );
        kubectl_apply(self.h.ns(), &yaml).await.unwrap();
        self.wait_status((3, 3, 3), "True", "three Ready copies")
            .await;
        for namespace in [&a, &b, &c] {
            self.wait_secret(namespace).await;
            let copy = self.copies(namespace).get(NAME).await.unwrap();
            assert_eq!(copy.labels()[CLUSTER_SECRET_LABEL], NAME);
            assert_eq!(copy.labels()["team"], "platform");
            let owner = &copy.metadata.owner_references.clone().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("ClusterThalassaSecret", Some(true))
            );
            assert!(copy.metadata.finalizers.is_none(), "no finalizer on a copy");
        }
        println!(
            "fan-out to 3 namespaces through one cluster store: {} reveals of {PATH}",
            self.h.reveals() - reveals_before
        );
        [a, b, c]
    }

    async fn a_namespace_labelled_later_gets_its_copy(&self) -> String {
        let d = self.namespace(false, true).await;
        self.label(&d, true, true).await;
        self.wait_status((4, 4, 4), "True", "the fourth namespace's copy Ready")
            .await;
        self.wait_secret(&d).await;
        d
    }

    async fn an_unlabelled_namespace_loses_its_copy_and_keeps_its_secret(&self, b: &str) {
        let before = self.wait_secret(b).await;
        self.label(b, false, true).await;
        self.wait_status(
            (3, 3, 3),
            "True",
            "the copy of an unlabelled namespace deleted",
        )
        .await;
        assert!(self.copies(b).get_opt(NAME).await.unwrap().is_none());
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), b);
        let after = secrets.get(NAME).await.unwrap();
        assert_eq!(
            after.metadata.uid, before.metadata.uid,
            "the Secret is kept"
        );
        assert_eq!(secret_data(&after)["token"], VALUE.as_bytes());
    }

    async fn a_stranger_of_the_copy_name_is_not_adopted(&self) {
        let e = self.namespace(false, true).await;
        let stranger = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {NAME}}}\nspec:\n  refreshPolicy: OnChange\n  data: [{{secretKey: mine, remoteRef: {{path: /someone/else}}}}]\n"
        );
        kubectl_apply(&e, &stranger).await.unwrap();
        let before = self.copies(&e).get(NAME).await.unwrap();
        self.label(&e, true, true).await;
        let status = self
            .wait_status((4, 3, 3), "False", "the stranger's namespace reported")
            .await;
        let failed = &status.failed_namespaces;
        assert!(
            failed
                .iter()
                .any(|f| f.namespace == e && f.reason == "NameTaken"),
            "{failed:?}"
        );
        let after = self.copies(&e).get(NAME).await.unwrap();
        assert_eq!(after.spec, before.spec, "not changed");
        assert!(after.metadata.owner_references.is_none(), "not adopted");
        assert!(!after.labels().contains_key(CLUSTER_SECRET_LABEL));
        // Out of the way for what follows.
        self.label(&e, false, true).await;
        self.wait_status((3, 3, 3), "True", "the stranger's namespace deselected")
            .await;
        assert!(
            self.copies(&e).get_opt(NAME).await.unwrap().is_some(),
            "never deleted"
        );
    }

    async fn a_namespace_the_store_does_not_allow_gets_no_copy_and_is_named(&self) {
        let f = self.namespace(true, false).await;
        let status = self
            .wait_status((4, 3, 3), "False", "the refused namespace reported")
            .await;
        let failed = &status.failed_namespaces;
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(
            (failed[0].namespace.as_str(), failed[0].reason.as_str()),
            (f.as_str(), "NamespaceNotAllowed")
        );
        assert_eq!(status.failed_count, 1);
        let stalled = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap();
        assert_eq!(stalled.status, "True");
        assert!(self.copies(&f).get_opt(NAME).await.unwrap().is_none());
        println!("refused namespace in status: {:?}", failed[0]);
    }

    async fn kstatus_and_argo_cd_judge_the_cluster_secret(&self) {
        let object = self.live().await;
        let verdict = crate::health::judge(&object).await;
        println!("one namespace refused: {verdict:?}");
        assert_eq!(
            (verdict.kstatus.as_str(), verdict.health.as_str()),
            ("Failed", "Degraded"),
            "{verdict:?}"
        );
        // The refused namespace allowed: every copy Ready.
        let refused = object["status"]["failedNamespaces"][0]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        self.label(&refused, true, true).await;
        self.wait_status((4, 4, 4), "True", "every copy Ready")
            .await;
        let verdict = crate::health::judge(&self.live().await).await;
        println!("every copy Ready: {verdict:?}");
        assert_eq!(
            (verdict.kstatus.as_str(), verdict.health.as_str()),
            ("Current", "Healthy"),
            "{verdict:?}"
        );
    }

    async fn live(&self) -> Value {
        let (ok, out) = self
            .h
            .kubectl(&["get", "clusterthalassasecret", NAME, "-o", "json"], None)
            .await;
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap()
    }

    /// Times the deletion of a namespace holding a Secret, then of one holding a copy and its
    /// Secret; asserts no finalizer appears on the namespace and the second is gone within a
    /// generous factor of the first.
    async fn a_namespace_with_a_copy_is_deleted_as_fast_as_a_plain_one(&self, c: String) {
        let plain = self.namespace(false, false).await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &plain);
        secrets
            .patch(
                NAME,
                &PatchParams::apply("tests"),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": NAME}, "stringData": {"token": "plain"},
                })),
            )
            .await
            .unwrap();
        let plain_took = self.delete_and_time(&plain).await;
        assert!(self.copies(&c).get_opt(NAME).await.unwrap().is_some());
        let copy_took = self.delete_and_time(&c).await;
        println!(
            "namespace deletion: plain (one Secret) {plain_took:?}, with a copy and its Secret {copy_took:?}"
        );
        assert!(
            copy_took <= plain_took * 5 + Duration::from_secs(10),
            "a namespace with a copy took {copy_took:?}, a plain one {plain_took:?}"
        );
        self.wait_status(
            (3, 3, 3),
            "True",
            "the deleted namespace no longer selected",
        )
        .await;
    }

    async fn delete_and_time(&self, namespace: &str) -> Duration {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let started = Instant::now();
        api.delete(namespace, &DeleteParams::default())
            .await
            .unwrap();
        wait_for(
            Duration::from_secs(120),
            &format!("namespace {namespace} gone"),
            || async {
                match api.get_opt(namespace).await.unwrap() {
                    None => Some(()),
                    Some(ns) => {
                        assert!(
                            ns.metadata.finalizers.unwrap_or_default().is_empty(),
                            "a finalizer on namespace {namespace}"
                        );
                        None
                    }
                }
            },
        )
        .await;
        started.elapsed()
    }

    async fn deleting_the_cluster_secret_removes_copies_and_keeps_secrets(
        &self,
        namespaces: &[&str],
    ) {
        self.cluster_secrets()
            .delete(NAME, &DeleteParams::default())
            .await
            .unwrap();
        for namespace in namespaces {
            let copies = self.copies(namespace);
            wait_for(
                Duration::from_secs(60),
                &format!("copy in {namespace} collected"),
                || async { copies.get_opt(NAME).await.unwrap().is_none().then_some(()) },
            )
            .await;
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let secret = secrets.get(NAME).await.unwrap();
            assert_eq!(secret_data(&secret)["token"], VALUE.as_bytes(), "Retain");
        }
    }
}
