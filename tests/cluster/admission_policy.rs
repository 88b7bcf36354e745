//! The chart's ValidatingAdmissionPolicy (`admissionPolicy.enabled`, `config/admission`) on a
//! real kube-apiserver: `creationPolicy` Adopt or Merge writes into an existing Secret with the
//! operator's permissions, so it is admitted only for users who may update (or patch) that Secret
//! themselves. A namespace user who may write ThalassaSecrets but only read Secrets is refused,
//! with a message that says what to do; Owner, a cluster admin, and the same user once granted
//! update are admitted. Likewise `rolloutRestartTargets` needs patch on each workload, and a
//! ThalassaPushSecret needs get on the Secret it pushes.

use crate::common;

use std::{path::Path, time::Duration};

use crate::common::{
    documents, helm, impersonating_kubeconfig, install_crd, kubectl, kubectl_with, wait_for,
};
use serde_yaml::Value;

const CHART: &str = "charts/thalassa-secrets-operator";
const TEMPLATE: &str = "templates/admission-policy.yaml";

/// The one object of this kind whose name ends with `suffix`.
fn of_kind<'a>(docs: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {suffix} expected: {docs:?}");
    found[0]
}

/// The policies the chart and `config/admission` install, by name suffix.
const POLICIES: [&str; 3] = ["-adopt-merge", "-restart-targets", "-push-source"];

/// Whether kubectl's output names one of the operator's policies.
fn names_a_policy(out: &str) -> bool {
    POLICIES.iter().any(|suffix| out.contains(suffix))
}

/// The policy and its binding as the chart renders them for `release`.
async fn render(release: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "-s", TEMPLATE];
    args.extend_from_slice(extra);
    let (ok, out, err) = helm(&args).await;
    assert!(ok, "helm template {args:?}: {err}");
    out
}

/// A ThalassaSecret named `name` writing the key `password` into `target` (a YAML flow mapping).
fn thalassa_secret(namespace: &str, name: &str, target: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  target: {target}\n  data:\n    - secretKey: password\n      remoteRef: {{path: /app/password}}\n"
    )
}

/// `kubectl apply` with this kubeconfig (server-side dry-run with `dry_run`).
async fn apply_as(kubeconfig: &Path, yaml: &str, dry_run: bool) -> (bool, String) {
    let mut args = vec!["apply", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    kubectl_with(kubeconfig, &args, Some(yaml)).await
}

/// Applies `yaml` as the user of `kubeconfig` and asserts that the policy refuses it with a
/// message containing every one of `expected`.
async fn assert_denied(kubeconfig: &Path, case: &str, yaml: &str, expected: &[&str]) {
    let (ok, out) = apply_as(kubeconfig, yaml, false).await;
    assert!(!ok, "{case}: should be refused, got: {out}");
    assert!(
        out.contains("ValidatingAdmissionPolicy") && names_a_policy(&out),
        "{case}: refused, but not by a policy: {out}"
    );
    for needle in expected {
        assert!(
            out.contains(needle),
            "{case}: message lacks {needle:?}: {out}"
        );
    }
}

async fn assert_admitted(kubeconfig: &Path, case: &str, yaml: &str) {
    let (ok, out) = apply_as(kubeconfig, yaml, false).await;
    assert!(ok, "{case}: should be admitted: {out}");
}

/// Waits until a server-side dry-run of `yaml` as this user is refused (`refused`) or admitted:
/// policy bindings and RBAC changes take a moment to reach the admission chain and authorizer.
async fn wait_until(kubeconfig: &Path, what: &str, yaml: &str, refused: bool) {
    wait_for(Duration::from_secs(60), what, || async move {
        let (ok, out) = apply_as(kubeconfig, yaml, true).await;
        let by_policy = !ok && names_a_policy(&out);
        (if refused { by_policy } else { ok }).then_some(())
    })
    .await;
}

/// Deletes the cluster-scoped policies and bindings of a release when the test ends, passed or
/// not.
struct Uninstall(String);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let kubeconfig = testenv::ControlPlane::shared().kubeconfig_path();
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            for suffix in POLICIES {
                let name = format!("{}-thalassa-secrets-operator{suffix}", self.0);
                let _ = std::process::Command::new(common::bin_dir().join("kubectl"))
                    .env("KUBECONFIG", kubeconfig)
                    .args(["delete", kind, &name, "--ignore-not-found"])
                    .output();
            }
        }
    }
}

#[tokio::test]
async fn adopt_and_merge_need_permission_to_update_the_target_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_crd(&control_plane.client().await).await;
    let namespace = control_plane.temp_namespace("vap").await;
    let ns = namespace.name();
    let dir = std::env::temp_dir().join(format!("tso-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();

    // The policy exactly as the chart renders it by default.
    let release = format!("vap-{}", &ns[ns.len() - 6..]);
    let manifests = render(&release, &[]).await;
    let _uninstall = Uninstall(release.clone());
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "installing the policy: {out}");

    // A namespace user who may write ThalassaSecrets but only read Secrets.
    let setup = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: dev, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev, namespace: {ns}}}
rules:
  - apiGroups: [secrets.thalassa.cloud]
    resources: [thalassasecrets]
    verbs: [create, get, list, patch, update]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: victim, namespace: {ns}}}
stringData: {{password: not-yours}}
---
apiVersion: v1
kind: Secret
metadata: {{name: shared, namespace: {ns}}}
stringData: {{other: kept}}
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&setup)).await;
    assert!(ok, "setup: {out}");
    let dev = impersonating_kubeconfig(&dir, ns, "dev");
    let (_, out) = kubectl_with(
        &dev,
        &["auth", "can-i", "update", "secrets", "-n", ns],
        None,
    )
    .await;
    assert!(
        out.trim().starts_with("no"),
        "dev may update Secrets: {out}"
    );
    let admin = control_plane.kubeconfig_path();

    let adopt = thalassa_secret(ns, "grab", "{name: victim, creationPolicy: Adopt}");
    wait_until(&dev, "the policy refuses dev's Adopt", &adopt, true).await;

    assert_denied(
        &dev,
        "Adopt",
        &adopt,
        &[
            &format!("creationPolicy Adopt takes over the Secret {ns}/victim"),
            "you need permission to update that Secret yourself",
            "use creationPolicy Owner with a target.name no Secret has yet",
        ],
    )
    .await;
    assert_denied(
        &dev,
        "Merge",
        &thalassa_secret(ns, "grab", "{name: victim, creationPolicy: Merge}"),
        &[&format!(
            "creationPolicy Merge writes its keys into the Secret {ns}/victim"
        )],
    )
    .await;
    // Without target.name the Secret is the resource's own name.
    assert_denied(
        &dev,
        "Adopt, target named by the resource",
        &thalassa_secret(ns, "victim", "{creationPolicy: Adopt}"),
        &[&format!("takes over the Secret {ns}/victim")],
    )
    .await;
    // Merge into a Secret that does not exist yet is refused too: it may exist by the time the
    // operator writes.
    assert_denied(
        &dev,
        "Merge, no such Secret yet",
        &thalassa_secret(ns, "later", "{name: not-yet, creationPolicy: Merge}"),
        &[&format!("the Secret {ns}/not-yet")],
    )
    .await;
    let (_, out) = kubectl(&["get", "thalassasecrets", "-n", ns, "-o", "name"], None).await;
    assert!(
        out.trim().is_empty() || out.contains("No resources"),
        "{out}"
    );

    // Owner never writes a Secret the operator did not create (it reports TargetConflict), so
    // the policy leaves it alone; switching it to Adopt afterwards is an UPDATE, and refused.
    let owner = thalassa_secret(ns, "grab", "{name: victim, creationPolicy: Owner}");
    assert_admitted(&dev, "Owner", &owner).await;
    assert_denied(
        &dev,
        "Owner changed to Adopt",
        &adopt,
        &[&format!(
            "creationPolicy Adopt takes over the Secret {ns}/victim"
        )],
    )
    .await;

    // A cluster admin may adopt; dev may then touch its metadata (the spec decides what is
    // written), but not change its spec.
    let admins = thalassa_secret(ns, "admins", "{name: victim, creationPolicy: Adopt}");
    assert_admitted(admin, "Adopt as cluster admin", &admins).await;
    let (ok, out) = kubectl_with(
        &dev,
        &["label", "thalassasecret", "admins", "-n", ns, "team=a"],
        None,
    )
    .await;
    assert!(ok, "dev labels the admin's Adopt resource: {out}");
    let (ok, out) = kubectl_with(
        &dev,
        &[
            "patch",
            "thalassasecret",
            "admins",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"data":[{"secretKey":"password","remoteRef":{"path":"/other/path"}}]}}"#,
        ],
        None,
    )
    .await;
    assert!(
        !ok && out.contains(&format!("takes over the Secret {ns}/victim")),
        "dev changes what the admin's Adopt resource writes: {out}"
    );

    // Granted update on that one Secret, dev may adopt it; patch alone is enough for Merge.
    let grant = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev-write, namespace: {ns}}}
rules:
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [victim]
    verbs: [update]
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [shared]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev-write, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-write}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&grant)).await;
    assert!(ok, "grant: {out}");
    wait_until(&dev, "dev's Adopt admitted once granted", &adopt, false).await;
    assert_admitted(&dev, "Adopt after the grant", &adopt).await;
    assert_admitted(
        &dev,
        "Merge with patch only",
        &thalassa_secret(ns, "merge", "{name: shared, creationPolicy: Merge}"),
    )
    .await;

    namespace.delete().await.expect("namespace deleted");
}

#[tokio::test]
async fn the_kustomize_policy_equals_the_chart_policy_and_the_value_switches_it() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let docs = documents(&render("tso", &[]).await);
    let (ok, out) = kubectl(
        &[
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/admission"),
        ],
        None,
    )
    .await;
    assert!(ok, "kubectl kustomize config/admission: {out}");
    let kustomize = documents(&out);
    assert_eq!(kustomize.len(), 2 * POLICIES.len(), "{kustomize:?}");
    for suffix in POLICIES {
        let policy = of_kind(&docs, "ValidatingAdmissionPolicy", suffix);
        assert_eq!(
            policy["metadata"]["name"],
            format!("tso-thalassa-secrets-operator{suffix}").as_str()
        );
        assert_eq!(
            of_kind(&kustomize, "ValidatingAdmissionPolicy", suffix)["spec"],
            policy["spec"],
            "config/admission/admission_policy.yaml differs from the chart's {TEMPLATE} ({suffix})"
        );
        let binding = of_kind(&docs, "ValidatingAdmissionPolicyBinding", suffix);
        assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
        assert_eq!(binding["spec"]["validationActions"][0], "Deny");
        assert!(
            binding["spec"]["matchResources"].is_null(),
            "cluster mode: every namespace"
        );
        let mut spec = binding["spec"].clone();
        spec["policyName"] = Value::from(format!("thalassa-secrets-operator{suffix}"));
        assert_eq!(
            of_kind(&kustomize, "ValidatingAdmissionPolicyBinding", suffix)["spec"],
            spec
        );
    }

    // Namespaced mode binds the policy to the watched namespace only.
    let docs = documents(&render("tso", &["--set", "watchNamespace=team-a"]).await);
    for suffix in POLICIES {
        assert_eq!(
            of_kind(&docs, "ValidatingAdmissionPolicyBinding", suffix)["spec"]["matchResources"]["namespaceSelector"]
                ["matchLabels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
    }

    // admissionPolicy.enabled=false renders neither.
    let (ok, out, err) = helm(&[
        "template",
        "tso",
        CHART,
        "--set",
        "admissionPolicy.enabled=false",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(!out.contains("ValidatingAdmissionPolicy"), "{out}");
}

/// A ThalassaSecret named `name` restarting `targets` (a YAML flow sequence).
fn restarting(namespace: &str, name: &str, targets: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  data:\n    - secretKey: password\n      remoteRef: {{path: /app/password}}\n  rolloutRestartTargets: {targets}\n"
    )
}

#[tokio::test]
async fn restart_targets_need_permission_to_patch_the_workload() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_crd(&control_plane.client().await).await;
    let namespace = control_plane.temp_namespace("vap-rr").await;
    let ns = namespace.name();
    let dir = std::env::temp_dir().join(format!("tso-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let release = format!("rr-{}", &ns[ns.len() - 6..]);
    let manifests = render(&release, &[]).await;
    let _uninstall = Uninstall(release.clone());
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "installing the policies: {out}");

    // A namespace user who may write ThalassaSecrets and read workloads, but patch none.
    let setup = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: dev, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev, namespace: {ns}}}
rules:
  - apiGroups: [secrets.thalassa.cloud]
    resources: [thalassasecrets]
    verbs: [create, get, list, patch, update]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, daemonsets]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&setup)).await;
    assert!(ok, "setup: {out}");
    let dev = impersonating_kubeconfig(&dir, ns, "dev");
    let admin = control_plane.kubeconfig_path();

    let platform = restarting(ns, "grab", "[{kind: Deployment, name: platform}]");
    wait_until(
        &dev,
        "the policy refuses dev's restart target",
        &platform,
        true,
    )
    .await;
    assert_denied(
        &dev,
        "a Deployment dev may not patch",
        &platform,
        &[
            &format!("rolloutRestartTargets names Deployment platform in {ns}"),
            "you need permission to patch each of them yourself",
            "leave them out of rolloutRestartTargets",
        ],
    )
    .await;
    // The kind decides the resource asked about.
    assert_denied(
        &dev,
        "a StatefulSet and a DaemonSet",
        &restarting(
            ns,
            "grab",
            "[{kind: StatefulSet, name: db}, {kind: DaemonSet, name: agent}]",
        ),
        &["names StatefulSet db, DaemonSet agent in"],
    )
    .await;
    // Without targets the policy does not apply.
    assert_admitted(&dev, "no targets", &restarting(ns, "plain", "[]")).await;

    // Granted patch on its own Deployment only, dev may name that one, not the platform's.
    let grant = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev-web, namespace: {ns}}}
rules:
  - apiGroups: [apps]
    resources: [deployments]
    resourceNames: [web]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev-web, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-web}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&grant)).await;
    assert!(ok, "grant: {out}");
    let web = restarting(ns, "web", "[{kind: Deployment, name: web}]");
    wait_until(
        &dev,
        "dev's own Deployment admitted once granted",
        &web,
        false,
    )
    .await;
    assert_admitted(&dev, "patch granted on that Deployment", &web).await;
    assert_denied(
        &dev,
        "its own and the platform's",
        &restarting(
            ns,
            "web",
            "[{kind: Deployment, name: web}, {kind: Deployment, name: platform}]",
        ),
        &[&format!(
            "rolloutRestartTargets names Deployment web, Deployment platform in {ns},"
        )],
    )
    .await;

    // An admin's resource naming the platform Deployment: dev may label it (metadata is not
    // checked, so a GitOps tool re-applying an unchanged spec is not either), not change its
    // spec (the spec decides when the target restarts).
    assert_admitted(
        admin,
        "the platform's target, as cluster admin",
        &restarting(ns, "admins", "[{kind: Deployment, name: platform}]"),
    )
    .await;
    let (ok, out) = kubectl_with(
        &dev,
        &["label", "thalassasecret", "admins", "-n", ns, "team=a"],
        None,
    )
    .await;
    assert!(ok, "dev labels the admin's resource: {out}");
    let (ok, out) = kubectl_with(
        &dev,
        &[
            "patch",
            "thalassasecret",
            "admins",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"data":[{"secretKey":"password","remoteRef":{"path":"/other/path"}}]}}"#,
        ],
        None,
    )
    .await;
    assert!(
        !ok && out.contains("rolloutRestartTargets names Deployment platform"),
        "dev changes the spec of the admin's resource: {out}"
    );

    namespace.delete().await.expect("namespace deleted");
}

/// A ThalassaPushSecret pushing `secret` to `/push/<name>`.
fn pushing(namespace: &str, name: &str, secret: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaPushSecret\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  secretRef: {{name: {secret}}}\n  kmsKeyIdentity: kms-key\n  data:\n    - {{secretKey: password, remotePath: /push/{name}}}\n"
    )
}

#[tokio::test]
async fn push_needs_permission_to_get_the_source_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_crd(&control_plane.client().await).await;
    let namespace = control_plane.temp_namespace("vap-push").await;
    let ns = namespace.name();
    let dir = std::env::temp_dir().join(format!("tso-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let release = format!("ps-{}", &ns[ns.len() - 6..]);
    let manifests = render(&release, &[]).await;
    let _uninstall = Uninstall(release.clone());
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "installing the policies: {out}");

    // A namespace user who may write ThalassaPushSecrets but read no Secret.
    let setup = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: dev, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev, namespace: {ns}}}
rules:
  - apiGroups: [secrets.thalassa.cloud]
    resources: [thalassapushsecrets]
    verbs: [create, get, list, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: platform-token, namespace: {ns}}}
stringData: {{password: not-yours}}
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&setup)).await;
    assert!(ok, "setup: {out}");
    let dev = impersonating_kubeconfig(&dir, ns, "dev");
    let admin = control_plane.kubeconfig_path();

    let grab = pushing(ns, "grab", "platform-token");
    wait_until(&dev, "the policy refuses dev's push", &grab, true).await;
    assert_denied(
        &dev,
        "a push of a Secret dev may not get",
        &grab,
        &[
            &format!("ThalassaPushSecret reads the Secret {ns}/platform-token"),
            "you need permission to get that Secret yourself",
        ],
    )
    .await;
    // A cluster admin may push it; dev may not point it at that Secret by a spec change either.
    assert_admitted(admin, "push as cluster admin", &grab).await;
    let own = pushing(ns, "own", "dev-secret");
    assert_denied(
        &dev,
        "a Secret that does not exist yet",
        &own,
        &[&format!("{ns}/dev-secret")],
    )
    .await;

    // Granted get on that one Secret, dev's push is admitted.
    let grant = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev-read, namespace: {ns}}}
rules:
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [dev-secret]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev-read, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-read}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: {ns}}}]
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&grant)).await;
    assert!(ok, "grant: {out}");
    wait_until(&dev, "dev's push admitted once granted", &own, false).await;
    assert_admitted(&dev, "push after the grant", &own).await;
    // Moving the admitted push to the Secret dev may not get is a spec change, and refused.
    assert_denied(
        &dev,
        "push moved to a Secret dev may not get",
        &pushing(ns, "own", "platform-token"),
        &[&format!("the Secret {ns}/platform-token")],
    )
    .await;

    namespace.delete().await.expect("namespace deleted");
}
