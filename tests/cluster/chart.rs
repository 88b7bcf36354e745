//! The Helm chart, the kustomize bases and the samples, checked against a real kube-apiserver:
//! lint, renders with several value sets pass server-side dry-run, the values schema rejects bad
//! values by name, the CRD copies equal the generated CRD, RBAC is exactly what the operator
//! uses (and the roles aggregated into admin/edit/view exactly what namespace users get), and the
//! operator running with only the chart's ServiceAccount permissions syncs every sample, gets
//! workload-identity tokens only for the allowed ServiceAccount name, while namespace editors may
//! write ThalassaSecretStores but not ClusterThalassaSecretStores; `helm uninstall` then keeps the
//! CRD, the ThalassaSecrets and their Secrets.

use crate::common;
use crate::samples::{self, SAMPLE_SECRETS};

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::common::{
    Operator, OperatorCommand, documents, helm, impersonating_kubeconfig, kubectl, kubectl_with,
    secret_data, wait_for, wait_store_condition,
};
use clap::CommandFactory;
use k8s_openapi::{
    api::core::v1::{Secret, ServiceAccount},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde_yaml::Value;
use thalassa_emulator::{
    Access, Emulator, EmulatorConfig, FederatedIdentitySpec, JwksSource, Seed,
};
use thalassa_operator::{config::Cli, crd::ThalassaSecret, store::DEFAULT_AUDIENCE};

const CHART: &str = "charts/thalassa-secrets-operator";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join(CHART)
}

fn ci_values(name: &str) -> String {
    chart().join("ci").join(name).to_string_lossy().into_owned()
}

/// `helm template` that must succeed; returns the manifests.
async fn template(release: &str, namespace: &str, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = helm(&args).await;
    assert!(ok, "helm template {extra:?} failed:\n{err}");
    out
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == kind_ && name(d) == name_)
        .unwrap_or_else(|| panic!("no {kind_} {name_} rendered"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A Role's or ClusterRole's rules as (apiGroup, resource, verb, resourceNames) tuples.
fn rule_set(role: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    set.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    set
}

fn rules(
    spec: &[(&str, &str, &[&str])],
    names: &[&str],
) -> BTreeSet<(String, String, String, Vec<String>)> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    spec.iter()
        .flat_map(|(group, resource, verbs)| {
            let names = names.clone();
            verbs.iter().map(move |verb| {
                (
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    names.clone(),
                )
            })
        })
        .collect()
}

/// What the operator does in every namespace it watches, and nothing more.
const WATCH_RULES: &[(&str, &str, &[&str])] = &[
    (
        "secrets.thalassa.cloud",
        "thalassasecrets",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecrets/status",
        &["patch"],
    ),
    ("", "secrets", &["get", "list", "watch", "create", "patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "configmaps", &["list", "watch"]),
    ("apps", "deployments", &["get", "patch"]),
    ("apps", "statefulsets", &["get", "patch"]),
    ("apps", "daemonsets", &["get", "patch"]),
    (
        "secrets.thalassa.cloud",
        "thalassasecretstores",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecretstores/status",
        &["patch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassapushsecrets",
        &["get", "list", "watch", "patch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassapushsecrets/status",
        &["patch"],
    ),
];

/// What the operator reads cluster-wide in cluster mode only.
const CLUSTER_RULES: &[(&str, &str, &[&str])] = &[
    (
        "secrets.thalassa.cloud",
        "clusterthalassasecretstores",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "clusterthalassasecretstores/status",
        &["patch"],
    ),
    ("", "namespaces", &["get", "list", "watch"]),
    (
        "secrets.thalassa.cloud",
        "clusterthalassasecrets",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "clusterthalassasecrets/status",
        &["patch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecrets",
        &["create", "patch", "delete"],
    ),
];

const MANAGE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// What namespace admins and editors get (aggregated into `admin` and `edit`): ThalassaSecrets
/// and namespaced stores, never cluster stores, never a status.
const EDIT_RULES: &[(&str, &str, &[&str])] = &[
    ("secrets.thalassa.cloud", "thalassasecrets", MANAGE),
    ("secrets.thalassa.cloud", "thalassasecretstores", MANAGE),
    ("secrets.thalassa.cloud", "thalassapushsecrets", MANAGE),
];

/// What namespace viewers get (aggregated into `view`): read, status included.
const VIEW_RULES: &[(&str, &str, &[&str])] = &[
    (
        "secrets.thalassa.cloud",
        "thalassasecrets",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecrets/status",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecretstores",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassasecretstores/status",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassapushsecrets",
        &["get", "list", "watch"],
    ),
    (
        "secrets.thalassa.cloud",
        "thalassapushsecrets/status",
        &["get", "list", "watch"],
    ),
];

/// The aggregation labels a role carries (`admin`, `edit`, `view`), sorted.
fn aggregated_into(role: &Value) -> Vec<String> {
    let mut into: Vec<String> = role["metadata"]["labels"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let role = k
                .as_str()?
                .strip_prefix("rbac.authorization.k8s.io/aggregate-to-")?;
            (v.as_str() == Some("true")).then(|| role.to_string())
        })
        .collect();
    into.sort();
    into
}

/// The user-facing roles `edit` and `view` of a render (chart or kustomize) are exactly the
/// expected rules and aggregation labels, and no aggregated role touches cluster stores.
fn assert_user_roles(docs: &[Value], edit: &str, view: &str, what: &str) {
    let edit_role = find(docs, "ClusterRole", edit);
    assert_eq!(
        rule_set(edit_role),
        rules(EDIT_RULES, &[]),
        "{what}: {edit}"
    );
    assert_eq!(
        aggregated_into(edit_role),
        ["admin", "edit"],
        "{what}: {edit}"
    );
    let view_role = find(docs, "ClusterRole", view);
    assert_eq!(
        rule_set(view_role),
        rules(VIEW_RULES, &[]),
        "{what}: {view}"
    );
    assert_eq!(aggregated_into(view_role), ["view"], "{what}: {view}");
    for role in docs.iter().filter(|d| kind(d) == "ClusterRole") {
        if aggregated_into(role).is_empty() {
            continue;
        }
        for (_, resource, verb, _) in rule_set(role) {
            assert!(
                !resource.starts_with("clusterthalassasecret"),
                "{what}: {} aggregates {verb} on {resource} into a default role",
                name(role)
            );
        }
    }
}

/// Every watched namespace: the watch rules, and tokens only for the stores' ServiceAccount name.
fn watch_rules() -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut expected = rules(WATCH_RULES, &[]);
    expected.extend(rules(
        &[("", "serviceaccounts/token", &["create"])],
        &["thalassa-secrets"],
    ));
    expected
}

/// Cluster mode: the watch rules and the cluster-wide reads.
fn cluster_rules() -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut expected = watch_rules();
    expected.extend(rules(CLUSTER_RULES, &[]));
    expected
}

/// Server-side dry-run of manifests against the test apiserver.
async fn dry_run(what: &str, manifests: &str) {
    let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(manifests)).await;
    assert!(ok, "server-side dry-run of {what} failed:\n{out}");
}

/// Installs the CRD from the chart's copy (the file users get) and waits until it is served.
async fn install_chart_crd() {
    for (file, _) in thalassa_operator::crd::crd_files() {
        let path = chart().join("crds").join(&file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (ok, out) = kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=tests",
                "-f",
                "-",
            ],
            Some(&text),
        )
        .await;
        assert!(ok, "CRD apply failed: {out}");
        let crd = format!("crd/{}", file.trim_end_matches(".yaml"));
        let (ok, out) = kubectl(
            &["wait", "--for=condition=Established", &crd, "--timeout=60s"],
            None,
        )
        .await;
        assert!(ok, "CRD not established: {out}");
    }
}

/// A minimal ServiceMonitor CRD, so renders with `metrics.serviceMonitor.enabled` can be
/// dry-run (the Prometheus Operator is not installed in the test control plane).
async fn install_service_monitor_crd() {
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;
    let (ok, out) = kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tests",
            "-f",
            "-",
        ],
        Some(crd),
    )
    .await;
    assert!(ok, "ServiceMonitor CRD apply failed: {out}");
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "--timeout=60s",
        ],
        None,
    )
    .await;
    assert!(ok, "ServiceMonitor CRD not established: {out}");
}

// ---------------------------------------------------------------------------------------------
// Offline checks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn helm_lint_strict_passes_for_every_ci_values_file() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the ci/ values files, found {files:?}"
    );
    let chart = chart();
    for file in files {
        let (ok, out, err) = helm(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
        ])
        .await;
        assert!(
            ok,
            "helm lint --strict -f {} failed:\n{out}\n{err}",
            file.display()
        );
    }
}

#[tokio::test]
async fn values_schema_rejects_bad_values_naming_the_field() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let base = ["--set", "credentials.existingSecret=creds"];
    let cases: &[(&[&str], &[&str])] = &[
        // Credentials without an organisation: there is no default connection to use them.
        (&base, &["/credentials/existingSecret", "maxLength"]),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "logging.format=xml",
            ],
            &["/logging/format", "'plain', 'json'"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "defaultRefreshInterval=5d",
            ],
            &["/defaultRefreshInterval", "does not match pattern"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set-string",
                "defaultRefreshInterval=10",
            ],
            &["/defaultRefreshInterval"],
        ),
        (
            &["--set", "thalassa.organisation=o"],
            &["/credentials/existingSecret", "/workloadIdentity/enabled"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "workloadIdentity.enabled=true",
                "--set",
                "workloadIdentity.serviceAccountId=sa",
            ],
            &["oneOf", "/credentials/existingSecret"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "credentials.type=clientCredentials",
            ],
            &["/credentials/clientId"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "replicaCount=2",
            ],
            &["/leaderElection/enabled"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "concurrency=0",
            ],
            &["/concurrency"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "thalassa.apiUrl=ftp://x",
            ],
            &["/thalassa/apiUrl"],
        ),
        (
            &[
                "--set",
                "thalassa.organisation=o",
                "--set",
                "credentials.existingSecret=c",
                "--set",
                "thalassa.organization=typo",
            ],
            &["organization"],
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["template", "t", chart];
        full.extend_from_slice(args);
        let (ok, _, err) = helm(&full).await;
        assert!(!ok, "{args:?} should be rejected");
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{args:?}: not a schema error:\n{err}"
        );
        for needle in *expected {
            assert!(
                err.contains(needle),
                "{args:?}: error does not mention {needle:?}:\n{err}"
            );
        }
    }
}

#[test]
fn crd_copies_equal_the_generated_crd() {
    for (file, generated_yaml) in thalassa_operator::crd::crd_files() {
        let generated = root().join("crds").join(&file);
        let source = std::fs::read_to_string(&generated).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; generate it with `cargo run --bin crdgen -- --out-dir crds`",
                generated.display()
            )
        });
        assert_eq!(
            source, generated_yaml,
            "crds/{file} is stale: run `cargo run --bin crdgen -- --out-dir crds` then tools/sync-chart-crds.sh"
        );
        for copy in [
            chart().join("crds").join(&file),
            root().join("config/crd/bases").join(&file),
        ] {
            let text = std::fs::read_to_string(&copy).unwrap_or_default();
            assert!(
                text == source,
                "{} differs from crds/{file}: run tools/sync-chart-crds.sh",
                copy.display()
            );
        }
        let crd: CustomResourceDefinition = serde_yaml::from_str(&source).unwrap();
        assert_eq!(
            crd.metadata
                .annotations
                .unwrap_or_default()
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep"),
            "{file}: the CRD must survive helm uninstall"
        );
    }
    let out = std::process::Command::new(root().join("tools/sync-chart-crds.sh"))
        .arg("--check")
        .output()
        .expect("sync script runs");
    assert!(
        out.status.success(),
        "sync-chart-crds.sh --check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn rbac_is_exactly_what_the_operator_uses() {
    let _turn = crate::common::area_turn(module_path!()).await;
    // Cluster mode (default values).
    let docs = documents(&template("tso", "ops", &["-f", &ci_values("default-values.yaml")]).await);
    let cluster_role = find(&docs, "ClusterRole", "tso-thalassa-secrets-operator");
    assert_eq!(rule_set(cluster_role), cluster_rules(), "ClusterRole rules");
    let binding = find(&docs, "ClusterRoleBinding", "tso-thalassa-secrets-operator");
    assert_eq!(binding["roleRef"]["name"], "tso-thalassa-secrets-operator");
    assert_eq!(
        binding["subjects"][0]["name"],
        "tso-thalassa-secrets-operator"
    );
    assert_eq!(binding["subjects"][0]["namespace"], "ops");
    assert!(
        !docs.iter().any(|d| kind(d) == "Role"),
        "no namespaced Role without leader election in cluster mode"
    );
    assert_user_roles(
        &docs,
        "tso-thalassa-secrets-operator-edit",
        "tso-thalassa-secrets-operator-view",
        "chart",
    );
    let defaults = ci_values("default-values.yaml");
    let off = [
        "-f",
        &defaults,
        "--set",
        "rbac.aggregateToDefaultRoles=false",
    ];
    let docs_off = documents(&template("tso", "ops", &off).await);
    assert!(
        docs_off
            .iter()
            .all(|d| kind(d) != "ClusterRole" || aggregated_into(d).is_empty()),
        "rbac.aggregateToDefaultRoles=false aggregates nothing"
    );

    // Namespaced mode: no cluster-wide grant to the operator at all.
    let docs =
        documents(&template("tso", "ops", &["-f", &ci_values("namespaced-values.yaml")]).await);
    for doc in docs.iter().filter(|d| kind(d) == "ClusterRole") {
        assert!(
            doc["metadata"]["labels"]
                .as_mapping()
                .unwrap()
                .keys()
                .any(|k| k
                    .as_str()
                    .unwrap()
                    .starts_with("rbac.authorization.k8s.io/aggregate-to-")),
            "only aggregated user roles are cluster-wide in namespaced mode, got {}",
            name(doc)
        );
    }
    assert!(!docs.iter().any(|d| kind(d) == "ClusterRoleBinding"));
    let watch_role = find(&docs, "Role", "tso-thalassa-secrets-operator");
    assert_eq!(watch_role["metadata"]["namespace"], "team-a");
    assert_eq!(
        rule_set(watch_role),
        watch_rules(),
        "watch-namespace Role rules"
    );
    let self_role = find(&docs, "Role", "tso-thalassa-secrets-operator-self");
    assert_eq!(self_role["metadata"]["namespace"], "ops");
    let mut expected = rules(
        &[("", "secrets", &["get", "patch"])],
        &["tso-thalassa-secrets-operator-hash-key"],
    );
    expected.extend(rules(&[("", "secrets", &["create"])], &[]));
    assert_eq!(
        rule_set(self_role),
        expected,
        "release-namespace Role rules"
    );
    let binding = find(&docs, "RoleBinding", "tso-thalassa-secrets-operator");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["subjects"][0]["namespace"], "ops");

    // Leader election adds Leases in the release namespace only.
    let docs = documents(&template("tso", "ops", &["-f", &ci_values("ha-values.yaml")]).await);
    assert_eq!(
        rule_set(find(&docs, "ClusterRole", "tso-thalassa-secrets-operator")),
        cluster_rules()
    );
    let self_role = find(&docs, "Role", "tso-thalassa-secrets-operator-self");
    let mut expected = rules(&[("coordination.k8s.io", "leases", &["create"])], &[]);
    expected.extend(rules(
        &[("coordination.k8s.io", "leases", &["get", "update", "patch"])],
        &["tso-thalassa-secrets-operator-leader"],
    ));
    assert_eq!(rule_set(self_role), expected, "lease Role rules");

    // Nowhere a wildcard or a privilege-granting verb, and the operator never deletes or
    // replaces anything but the ThalassaSecret copies of ClusterThalassaSecrets (a deselected
    // namespace loses its copy).
    for file in [
        "default-values.yaml",
        "namespaced-values.yaml",
        "workload-identity-values.yaml",
        "ha-values.yaml",
        "no-values.yaml",
    ] {
        let docs = documents(&template("tso", "ops", &["-f", &ci_values(file)]).await);
        for role in docs
            .iter()
            .filter(|d| matches!(kind(d), "Role" | "ClusterRole"))
        {
            let user_role = name(role).ends_with("-edit") || name(role).ends_with("-view");
            for (group, resource, verb, _) in rule_set(role) {
                assert!(
                    group != "*" && resource != "*" && verb != "*",
                    "{file}: wildcard in {}",
                    name(role)
                );
                assert!(
                    !matches!(verb.as_str(), "escalate" | "bind" | "impersonate"),
                    "{file}: {} grants {verb}",
                    name(role)
                );
                if !user_role {
                    assert!(
                        verb != "deletecollection"
                            && (verb != "delete" || resource == "thalassasecrets"),
                        "{file}: {} grants {verb} on {resource}",
                        name(role)
                    );
                    assert!(
                        !(resource == "secrets" && verb == "update"),
                        "{file}: {} grants update on secrets (server-side apply needs only patch)",
                        name(role)
                    );
                }
            }
        }
        // The user-facing aggregated roles are never bound to the operator.
        for binding in docs
            .iter()
            .filter(|d| matches!(kind(d), "RoleBinding" | "ClusterRoleBinding"))
        {
            let role = binding["roleRef"]["name"].as_str().unwrap();
            assert!(
                !role.ends_with("-edit") && !role.ends_with("-view"),
                "{file}: operator bound to {role}"
            );
        }
    }

    // The kustomize base grants the same.
    let (ok, out) = kubectl(
        &["kustomize", root().join("config/rbac").to_str().unwrap()],
        None,
    )
    .await;
    assert!(ok, "kubectl kustomize config/rbac: {out}");
    let docs = documents(&out);
    assert_eq!(
        rule_set(find(&docs, "ClusterRole", "thalassa-secrets-operator")),
        cluster_rules()
    );
    assert_user_roles(
        &docs,
        "thalassa-secrets-operator-edit",
        "thalassa-secrets-operator-view",
        "kustomize config/rbac",
    );
}

/// Settings whose defaults in the chart and in config/manager must be the binary's.
const TUNING_KNOBS: [&str; 5] = [
    "THALASSA_RATE_LIMIT",
    "THALASSA_RATE_START",
    "THALASSA_RATE_BURST",
    "CONCURRENCY",
    "DEFAULT_REFRESH_INTERVAL",
];

/// The default of the operator flag read from environment variable `env`.
fn flag_default(env: &str) -> String {
    Cli::command()
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == env))
        .and_then(|a| a.get_default_values().first().cloned())
        .unwrap_or_else(|| panic!("{env} has a flag default"))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn deployment_is_hardened_and_uses_only_real_flags() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let known: BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    // Read by the runtime rather than by a flag: tracing's filter.
    let extra: BTreeSet<String> = ["RUST_LOG"].iter().map(|s| s.to_string()).collect();
    for file in [
        "default-values.yaml",
        "namespaced-values.yaml",
        "workload-identity-values.yaml",
        "ha-values.yaml",
        "no-values.yaml",
    ] {
        let docs = documents(&template("tso", "ops", &["-f", &ci_values(file)]).await);
        let deployment = find(&docs, "Deployment", "tso-thalassa-secrets-operator");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let env: BTreeMap<String, Value> = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
            .collect();
        for name in env.keys() {
            assert!(
                known.contains(name) || extra.contains(name),
                "{file}: env {name} is not an operator flag"
            );
        }
        for required in [
            "THALASSA_API_URL",
            "THALASSA_REGION",
            "POD_NAMESPACE",
            "POD_NAME",
        ] {
            assert!(env.contains_key(required), "{file}: {required} missing");
        }
        // The default connection exactly when the values name an organisation.
        assert_eq!(
            env.contains_key("THALASSA_ORGANISATION_ID"),
            file != "no-values.yaml",
            "{file}: THALASSA_ORGANISATION_ID"
        );
        assert_eq!(
            env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["runAsUser"], 65532);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(container["resources"]["limits"]["memory"].is_string());
        let pdb = docs.iter().any(|d| kind(d) == "PodDisruptionBudget");
        assert_eq!(
            pdb,
            deployment["spec"]["replicas"].as_u64().unwrap() > 1,
            "{file}: PDB only with replicas > 1"
        );
        match file {
            "workload-identity-values.yaml" => {
                assert_eq!(
                    env["THALASSA_SUBJECT_TOKEN_FILE"]["value"],
                    "/var/run/secrets/thalassa/serviceaccount/token"
                );
                assert_eq!(env["THALASSA_SERVICE_ACCOUNT_ID"]["value"], "sa-operator");
                let source = &pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
                assert_eq!(source["audience"], "https://api.thalassa.cloud");
                assert!(!env.contains_key("THALASSA_TOKEN_FILE"));
                assert!(docs.iter().any(|d| kind(d) == "NetworkPolicy"));
                assert!(!docs.iter().any(|d| kind(d) == "ServiceMonitor"));
            }
            "namespaced-values.yaml" => {
                assert_eq!(env["WATCH_NAMESPACE"]["value"], "team-a");
                assert_eq!(
                    env["THALASSA_PERSONAL_ACCESS_TOKEN_FILE"]["value"],
                    "/var/run/secrets/thalassa/credentials/personal-access-token"
                );
                assert_eq!(
                    pod["volumes"][0]["secret"]["items"][0]["key"],
                    "personal-access-token"
                );
                assert_eq!(env["LOG_FORMAT"]["value"], "json");
            }
            "ha-values.yaml" => {
                assert_eq!(env["LEADER_ELECTION"]["value"], "true");
                assert_eq!(env["LEASE_DURATION"]["value"], "15s");
                assert!(
                    env.contains_key("POD_NAME"),
                    "the lease identity is the pod name"
                );
                assert_eq!(env["THALASSA_CLIENT_ID"]["value"], "client-abc");
                assert_eq!(env["THALASSA_RATE_LIMIT"]["value"], "5.5");
                assert_eq!(env["SELECTOR"]["value"], "shard in (a)");
                assert!(docs.iter().any(|d| kind(d) == "ServiceMonitor"));
            }
            "no-values.yaml" => {
                assert!(!env.contains_key("SELECTOR"), "no shard: every resource");
                // The tuning knobs default as the binary does (a chart default of 20/s once
                // capped the adaptive rate below where it starts).
                for knob in TUNING_KNOBS {
                    assert_eq!(
                        env[knob]["value"].as_str(),
                        Some(flag_default(knob).as_str()),
                        "chart default of {knob}"
                    );
                }
                for credential in [
                    "THALASSA_TOKEN_FILE",
                    "THALASSA_PERSONAL_ACCESS_TOKEN_FILE",
                    "THALASSA_CLIENT_SECRET_FILE",
                    "THALASSA_SUBJECT_TOKEN_FILE",
                ] {
                    assert!(!env.contains_key(credential), "no values: {credential}");
                }
                assert!(pod["volumes"].is_null(), "no credentials to mount");
                assert!(container["volumeMounts"].is_null());
            }
            _ => {
                assert_eq!(
                    env["THALASSA_TOKEN_FILE"]["value"],
                    "/var/run/secrets/thalassa/credentials/token"
                );
                assert_eq!(
                    env["HASH_KEY_SECRET"]["value"],
                    "tso-thalassa-secrets-operator-hash-key"
                );
                assert!(!env.contains_key("WATCH_NAMESPACE"));
                assert!(
                    !docs
                        .iter()
                        .any(|d| matches!(kind(d), "NetworkPolicy" | "ServiceMonitor"))
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Against the test apiserver
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_chart_render_passes_server_side_dry_run() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_chart_crd().await;
    install_service_monitor_crd().await;
    let release_ns = control_plane.temp_namespace("chart-dry").await;
    let watch_ns = control_plane.temp_namespace("chart-watch").await;
    let watch = format!("watchNamespace={}", watch_ns.name());
    let variants: Vec<(&str, Vec<&str>)> = vec![
        (
            "default values",
            vec![
                "-f",
                "charts/thalassa-secrets-operator/ci/default-values.yaml",
            ],
        ),
        (
            "namespaced mode",
            vec![
                "-f",
                "charts/thalassa-secrets-operator/ci/namespaced-values.yaml",
                "--set",
                &watch,
            ],
        ),
        (
            "token exchange, NetworkPolicy on",
            vec![
                "-f",
                "charts/thalassa-secrets-operator/ci/workload-identity-values.yaml",
            ],
        ),
        (
            "replicas 2 and leader election, ServiceMonitor on",
            vec!["-f", "charts/thalassa-secrets-operator/ci/ha-values.yaml"],
        ),
        // No values at all: no default connection, every ThalassaSecret names a store.
        ("no values", vec![]),
    ];
    for (what, args) in variants {
        let mut args = args;
        args.push("--include-crds");
        let manifests = template("tso-dry", release_ns.name(), &args).await;
        assert!(
            manifests.contains("kind: Deployment"),
            "{what}: no Deployment rendered"
        );
        dry_run(what, &manifests).await;
    }
}

#[tokio::test]
async fn kustomize_bases_and_samples_pass_server_side_dry_run() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_chart_crd().await;
    let (ok, manifests) = kubectl(
        &["kustomize", root().join("config/default").to_str().unwrap()],
        None,
    )
    .await;
    assert!(ok, "kubectl kustomize config/default: {manifests}");
    let docs = documents(&manifests);
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    for expected in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            kinds.contains(expected),
            "config/default has no {expected}: {kinds:?}"
        );
    }
    let deployment = find(&docs, "Deployment", "thalassa-secrets-operator");
    assert_eq!(deployment["metadata"]["namespace"], "thalassa-system");
    let config = docs
        .iter()
        .find(|d| kind(d) == "ConfigMap" && name(d).starts_with("thalassa-secrets-operator-config"))
        .expect("the operator's ConfigMap");
    for knob in TUNING_KNOBS {
        assert_eq!(
            config["data"][knob].as_str(),
            Some(flag_default(knob).as_str()),
            "config/manager default of {knob}"
        );
    }
    let security = &deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], 65532);
    // Namespaced objects need their namespace to exist for a server-side dry-run.
    let (ok, out) = kubectl(
        &["apply", "--server-side", "--field-manager=tests", "-f", "-"],
        Some(&serde_yaml::to_string(find(&docs, "Namespace", "thalassa-system")).unwrap()),
    )
    .await;
    assert!(ok, "creating thalassa-system: {out}");
    dry_run("config/default", &manifests).await;

    let samples_ns = control_plane.temp_namespace("chart-samples").await;
    let (ok, samples) = kubectl(
        &["kustomize", root().join("config/samples").to_str().unwrap()],
        None,
    )
    .await;
    assert!(ok, "kubectl kustomize config/samples: {samples}");
    assert_eq!(
        documents(&samples).len(),
        11,
        "ten sample ThalassaSecrets and one template ConfigMap"
    );
    let (ok, out) = kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-n",
            samples_ns.name(),
            "-f",
            "-",
        ],
        Some(&samples),
    )
    .await;
    assert!(ok, "server-side dry-run of config/samples failed:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// The operator with exactly the chart's permissions
// ---------------------------------------------------------------------------------------------

/// `helm install` (cluster mode or namespaced mode), then the operator binary running with only
/// the chart ServiceAccount's permissions syncs every sample from the emulator seeded with
/// config/samples/emulator-seed.yaml; `helm uninstall` keeps the CRD and every synced Secret.
async fn operator_with_chart_permissions(cluster_mode: bool) {
    thalassa_operator::thalassa::install_crypto_provider();
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    install_chart_crd().await;
    let release = Release::install(cluster_mode).await;
    let emulator = release.emulator_seeded_like_the_samples().await;
    let dir = std::env::temp_dir().join(format!("tso-chart-{}", release.apps.name()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), emulator.token()).unwrap();
    let kubeconfig = impersonating_kubeconfig(&dir, release.namespace.name(), &release.fullname);
    release
        .the_service_account_has_the_charts_secret_rights(&kubeconfig)
        .await;
    default_roles_cover_namespaced_stores_only(&dir, release.apps.name()).await;
    let operator = release
        .start_operator_as_the_chart_deploys_it(&kubeconfig, &dir, &emulator)
        .await;
    release
        .apply_the_samples_and_wait_until_ready(&operator)
        .await;
    release.every_sample_secret_holds_its_data().await;
    release.the_typed_template_samples_have_their_types().await;
    release
        .the_hash_key_secret_is_in_the_release_namespace()
        .await;
    assert!(
        !operator.log_text().contains("forbidden"),
        "the operator hit a permission error:\n{}",
        operator.log_text()
    );
    stores_get_tokens_only_for_the_allowed_service_account(
        &release.client,
        &kubeconfig,
        release.apps.name(),
        &emulator,
        &operator,
    )
    .await;
    operator.kill().await;
    release
        .uninstall_keeps_the_crd_the_resources_and_their_secrets()
        .await;
    emulator.shutdown().await;
}

/// A release of the chart installed by `helm install`, and the namespace of the applications
/// whose ThalassaSecrets it serves.
struct Release {
    client: kube::Client,
    /// The release's namespace (the operator's namespace).
    namespace: testenv::TestNamespace,
    /// The applications' namespace: the samples go here.
    apps: testenv::TestNamespace,
    name: String,
    /// The chart's fullname: the Deployment, its ServiceAccount and the hash-key Secret's prefix.
    fullname: String,
    /// Installed without `watchNamespace`.
    cluster_mode: bool,
}

impl Release {
    /// `helm install` with the CI default values: in cluster mode, or watching only the apps
    /// namespace.
    async fn install(cluster_mode: bool) -> Release {
        let control_plane = testenv::ControlPlane::shared();
        let client = control_plane.client().await;
        let namespace = control_plane.temp_namespace("chart-rel").await;
        let apps = control_plane.temp_namespace("chart-apps").await;
        let name = format!("tso-{}", &apps.name()[apps.name().len() - 6..]);
        let fullname = format!("{name}-thalassa-secrets-operator");
        let chart = chart();
        let watch = format!("watchNamespace={}", apps.name());
        let mut args = vec![
            "install",
            &name,
            chart.to_str().unwrap(),
            "--namespace",
            namespace.name(),
            "-f",
            "charts/thalassa-secrets-operator/ci/default-values.yaml",
        ];
        if !cluster_mode {
            args.extend(["--set", &watch]);
        }
        let (ok, out, err) = helm(&args).await;
        assert!(ok, "helm install failed:\n{out}\n{err}");
        Release {
            client,
            namespace,
            apps,
            name,
            fullname,
            cluster_mode,
        }
    }

    /// The emulator, seeded exactly as the samples expect. Thalassa trusts the apps namespace's
    /// ServiceAccount of the chart's allowed name (and, to show RBAC is what refuses the other
    /// one, the other name too).
    async fn emulator_seeded_like_the_samples(&self) -> Emulator {
        let control_plane = testenv::ControlPlane::shared();
        let seed_text =
            std::fs::read_to_string(root().join("config/samples/emulator-seed.yaml")).unwrap();
        let seed: Seed =
            serde_yaml::from_str(&seed_text).expect("emulator-seed.yaml is a valid Seed");
        let jwks = control_plane
            .service_account_jwks()
            .await
            .expect("apiserver JWKS");
        Emulator::start(EmulatorConfig {
            seed: Some(seed),
            federated_identities: vec![FederatedIdentitySpec {
                service_account_id: WI_THALASSA_ACCOUNT.into(),
                issuer: control_plane.service_account_issuer().into(),
                audiences: vec![DEFAULT_AUDIENCE.into()],
                subject: format!("system:serviceaccount:{}:*", self.apps.name()),
                jwks: JwksSource::Inline(jwks.to_string()),
                access: Access::read_only(),
            }],
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts with the sample seed")
    }

    /// The impersonation is in effect: the ServiceAccount may patch Secrets but never delete
    /// them, and lists the Secrets of kube-system in cluster mode only.
    async fn the_service_account_has_the_charts_secret_rights(&self, kubeconfig: &Path) {
        let apps = self.apps.name();
        let (_, out) = kubectl_with(
            kubeconfig,
            &["auth", "can-i", "patch", "secrets", "-n", apps],
            None,
        )
        .await;
        assert_eq!(out.trim(), "yes", "SA cannot patch Secrets: {out}");
        let (_, out) = kubectl_with(
            kubeconfig,
            &["auth", "can-i", "delete", "secrets", "-n", apps],
            None,
        )
        .await;
        assert!(out.trim().starts_with("no"), "SA may delete Secrets: {out}");
        let (_, out) = kubectl_with(
            kubeconfig,
            &["auth", "can-i", "list", "secrets", "-n", "kube-system"],
            None,
        )
        .await;
        let expected = if self.cluster_mode { "yes" } else { "no" };
        assert!(
            out.trim().starts_with(expected),
            "list secrets in kube-system: {out}"
        );
    }

    /// The operator binary, configured like the chart's Deployment (always limited to the
    /// test's namespace, so it never touches other tests' resources on a shared control plane).
    async fn start_operator_as_the_chart_deploys_it(
        &self,
        kubeconfig: &Path,
        dir: &Path,
        emulator: &Emulator,
    ) -> Operator {
        let operator = OperatorCommand::new(kubeconfig, dir.join("operator.log"));
        let metrics_addr = format!("127.0.0.1:{}", operator.port());
        operator
            .env("RUST_LOG", "info")
            .env("POD_NAME", "operator-under-test")
            .env("POD_NAMESPACE", self.namespace.name())
            .env("THALASSA_API_URL", emulator.base_url())
            .env("ALLOWED_API_URLS", emulator.base_url())
            .env("THALASSA_ORGANISATION_ID", emulator.organisation())
            .env("THALASSA_REGION", "nl-01")
            .env("THALASSA_TOKEN_FILE", dir.join("token"))
            .env("HASH_KEY_SECRET", format!("{}-hash-key", self.fullname))
            .env("WATCH_NAMESPACE", self.apps.name())
            .env("DEFAULT_REFRESH_INTERVAL", "10s")
            .env("METRICS_ADDR", metrics_addr)
            .start("operator ready with the chart's permissions")
            .await
    }

    /// `kubectl apply -k config/samples` into the apps namespace, then every ThalassaSecret
    /// Ready.
    async fn apply_the_samples_and_wait_until_ready(&self, operator: &Operator) {
        let apps = self.apps.name();
        let (ok, samples) = kubectl(
            &["kustomize", root().join("config/samples").to_str().unwrap()],
            None,
        )
        .await;
        assert!(ok, "{samples}");
        let (ok, out) = kubectl(&["apply", "-n", apps, "-f", "-"], Some(&samples)).await;
        assert!(ok, "applying the samples: {out}");
        let (ok, out) = kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                "thalassasecret",
                "--all",
                "-n",
                apps,
                "--timeout=90s",
            ],
            None,
        )
        .await;
        if !ok {
            let (_, status) =
                kubectl(&["get", "thalassasecret", "-n", apps, "-o", "yaml"], None).await;
            panic!(
                "samples not Ready: {out}\n{status}\noperator log:\n{}",
                operator.log_text()
            );
        }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), self.apps.name())
    }

    /// Every Secret of [`SAMPLE_SECRETS`] holds exactly its keys and values.
    async fn every_sample_secret_holds_its_data(&self) {
        samples::every_sample_secret_holds_its_data(&self.secrets()).await;
    }

    /// The typed samples: a TLS Secret, a templated TLS pair of the same certificate, a
    /// registry pull Secret, and a templated annotation.
    async fn the_typed_template_samples_have_their_types(&self) {
        samples::the_typed_template_samples_have_their_types(&self.secrets()).await;
    }

    /// The operator created its data-hash key Secret in the release namespace.
    async fn the_hash_key_secret_is_in_the_release_namespace(&self) {
        let hash_keys: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace.name());
        assert!(
            hash_keys
                .get_opt(&format!("{}-hash-key", self.fullname))
                .await
                .unwrap()
                .is_some(),
            "hash-key Secret created in the release namespace"
        );
    }

    /// Uninstall: the chart's objects go, the CRD, the resources and their Secrets stay.
    async fn uninstall_keeps_the_crd_the_resources_and_their_secrets(&self) {
        let release_ns = self.namespace.name();
        let (ok, out, err) = helm(&["uninstall", &self.name, "--namespace", release_ns]).await;
        assert!(ok, "helm uninstall failed:\n{out}\n{err}");
        let (ok, out) = kubectl(
            &["get", "deployment", &self.fullname, "-n", release_ns],
            None,
        )
        .await;
        assert!(
            !ok && out.contains("NotFound"),
            "Deployment left after uninstall: {out}"
        );
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        assert!(
            crds.get_opt("thalassasecrets.secrets.thalassa.cloud")
                .await
                .unwrap()
                .is_some(),
            "CRD deleted by uninstall"
        );
        let resources: Api<ThalassaSecret> = Api::namespaced(self.client.clone(), self.apps.name());
        // Give the garbage collector time to act if anything were (wrongly) owned by the release.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let names: BTreeSet<String> = resources
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        // The ten samples and the two store users.
        assert_eq!(
            names.len(),
            12,
            "ThalassaSecrets after uninstall: {names:?}"
        );
        let secrets = self.secrets();
        for name in SAMPLE_SECRETS
            .iter()
            .map(|(n, _)| *n)
            .chain(["demo-tls", "allowed"])
        {
            wait_for(
                Duration::from_secs(1),
                &format!("Secret {name} kept"),
                || {
                    let secrets = secrets.clone();
                    async move { secrets.get_opt(name).await.ok().flatten() }
                },
            )
            .await;
        }
    }
}

/// The Thalassa service account the emulator maps the apps namespace's ServiceAccounts to.
const WI_THALASSA_ACCOUNT: &str = "sa-apps";
/// The chart's default `stores.serviceAccountName`: the one name the operator may request
/// tokens for.
const ALLOWED_SERVICE_ACCOUNT: &str = "thalassa-secrets";

async fn create_service_account(client: &kube::Client, namespace: &str, name: &str) {
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("ServiceAccount {namespace}/{name}: {e}"));
}

/// `kubectl auth can-i` as the user of `kubeconfig`: true for "yes", false for "no"; anything
/// else (an unknown resource, an error) fails the test. Warnings may precede the answer.
async fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (_, out) = kubectl_with(kubeconfig, &all, None).await;
    match out
        .lines()
        .map(str::trim)
        .find(|l| *l == "yes" || l.starts_with("no"))
    {
        Some(answer) => answer == "yes",
        None => panic!("kubectl auth can-i {args:?}: {out}"),
    }
}

/// Deletes a ClusterRoleBinding when dropped (the test's grants are cluster-scoped).
struct DeleteClusterRoleBinding(String);

impl Drop for DeleteClusterRoleBinding {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::bin_dir().join("kubectl"))
            .env(
                "KUBECONFIG",
                testenv::ControlPlane::shared().kubeconfig_path(),
            )
            .args([
                "delete",
                "clusterrolebinding",
                &self.0,
                "--ignore-not-found",
            ])
            .output();
    }
}

/// With the chart's aggregated ClusterRoles installed, the built-in roles (aggregated by the real
/// kube-controller-manager) let an editor manage ThalassaSecretStores but never write a
/// ClusterThalassaSecretStore, even bound cluster-wide (where an aggregated cluster-scoped rule
/// would apply), and let a viewer read stores and their status.
async fn default_roles_cover_namespaced_stores_only(dir: &Path, namespace: &str) {
    let client = testenv::ControlPlane::shared().client().await;
    for name in ["editor", "viewer"] {
        create_service_account(&client, namespace, name).await;
    }
    let binding = format!("{namespace}-editor");
    let _cleanup = DeleteClusterRoleBinding(binding.clone());
    let subject = |sa: &str| format!("--serviceaccount={namespace}:{sa}");
    let (ok, out) = kubectl(
        &[
            "create",
            "clusterrolebinding",
            &binding,
            "--clusterrole=edit",
            &subject("editor"),
        ],
        None,
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &[
            "create",
            "rolebinding",
            "viewer",
            "-n",
            namespace,
            "--clusterrole=view",
            &subject("viewer"),
        ],
        None,
    )
    .await;
    assert!(ok, "{out}");
    let user = |sa: &str| {
        let dir = dir.join(sa);
        std::fs::create_dir_all(&dir).unwrap();
        impersonating_kubeconfig(&dir, namespace, sa)
    };
    let (editor, viewer) = (user("editor"), user("viewer"));

    // Aggregation and the authorizer's cache take a moment.
    wait_for(
        Duration::from_secs(60),
        "edit aggregates stores",
        || async {
            can_i(
                &editor,
                &["create", "thalassasecretstores", "-n", namespace],
            )
            .await
            .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "view aggregates stores",
        || async {
            can_i(
                &viewer,
                &[
                    "get",
                    "thalassasecretstores",
                    "--subresource=status",
                    "-n",
                    namespace,
                ],
            )
            .await
            .then_some(())
        },
    )
    .await;
    for (verb, resource) in [
        ("create", "thalassasecrets"),
        ("delete", "thalassasecretstores"),
        ("update", "thalassasecretstores"),
    ] {
        assert!(
            can_i(&editor, &[verb, resource, "-n", namespace]).await,
            "editor may {verb} {resource}"
        );
    }
    for args in [
        vec!["create", "clusterthalassasecretstores"],
        vec!["update", "clusterthalassasecretstores"],
        vec!["get", "clusterthalassasecretstores"],
        vec![
            "patch",
            "thalassasecretstores",
            "--subresource=status",
            "-n",
            namespace,
        ],
    ] {
        assert!(!can_i(&editor, &args).await, "editor may not {args:?}");
    }
    for args in [
        vec!["get", "thalassasecretstores", "-n", namespace],
        vec!["list", "thalassasecretstores", "-n", namespace],
        vec![
            "get",
            "thalassasecrets",
            "--subresource=status",
            "-n",
            namespace,
        ],
    ] {
        assert!(can_i(&viewer, &args).await, "viewer may {args:?}");
    }
    for args in [
        vec!["create", "thalassasecretstores", "-n", namespace],
        vec!["get", "clusterthalassasecretstores"],
    ] {
        assert!(!can_i(&viewer, &args).await, "viewer may not {args:?}");
    }

    // And what the apiserver does with real requests (server-side dry run: authorized, admitted,
    // not stored).
    let store = format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: team, namespace: {namespace}}}\nspec:\n  organisation: o\n  auth: {{workloadIdentity: {{serviceAccountName: {ALLOWED_SERVICE_ACCOUNT}, thalassaServiceAccountId: sa}}}}\n"
    );
    let cluster_store = format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: {namespace}-escape}}\nspec:\n  organisation: o\n  credentialsNamespace: kube-system\n  auth: {{tokenSecretRef: {{name: anything}}}}\n  namespaceSelector: {{}}\n"
    );
    let dry_run = |kubeconfig: PathBuf, yaml: String| async move {
        kubectl_with(
            &kubeconfig,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&yaml),
        )
        .await
    };
    let (ok, out) = dry_run(editor.clone(), store.clone()).await;
    assert!(ok, "an editor creates a ThalassaSecretStore: {out}");
    let (ok, out) = dry_run(editor.clone(), cluster_store).await;
    assert!(
        !ok && out.contains("forbidden") && out.contains("clusterthalassasecretstores"),
        "an editor may not create a ClusterThalassaSecretStore: {out}"
    );
    let (ok, out) = dry_run(viewer, store).await;
    assert!(
        !ok && out.contains("forbidden"),
        "a viewer may not create a ThalassaSecretStore: {out}"
    );
}

/// Waits for the ThalassaSecret's Ready condition with `status` and `reason` at the current
/// generation; returns its message.
async fn wait_ready(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> String {
    let resources: Api<ThalassaSecret> = Api::namespaced(client.clone(), namespace);
    wait_for(
        Duration::from_secs(60),
        &format!("{name}: Ready={status} {reason}"),
        || async {
            let ts = resources.get(name).await.ok()?;
            let c = ts
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == status
                && c.reason == reason
                && c.observed_generation == ts.metadata.generation)
                .then_some(c.message)
        },
    )
    .await
}

/// A workload-identity store with exactly the chart's RBAC: a ServiceAccount outside the allow-list
/// (`stores.serviceAccountName`) gets no token at all — the apiserver refuses the TokenRequest
/// (403), so nothing reaches Thalassa and no Secret is written, while the store and its
/// ThalassaSecret say what to fix — and the allowed name gets a token, exchanged with Thalassa, and
/// syncs.
async fn stores_get_tokens_only_for_the_allowed_service_account(
    client: &kube::Client,
    operator_kubeconfig: &Path,
    namespace: &str,
    emulator: &Emulator,
    operator: &common::Operator,
) {
    const OUTSIDE: &str = "ci-bot";
    for name in [OUTSIDE, ALLOWED_SERVICE_ACCOUNT] {
        create_service_account(client, namespace, name).await;
    }
    // What the chart grants the operator, asked of the apiserver's authorizer.
    let token_of = |sa: &str| format!("serviceaccounts/{sa}");
    assert!(
        can_i(
            operator_kubeconfig,
            &[
                "create",
                &token_of(ALLOWED_SERVICE_ACCOUNT),
                "--subresource=token",
                "-n",
                namespace
            ],
        )
        .await,
        "the chart lets the operator request tokens for {ALLOWED_SERVICE_ACCOUNT}"
    );
    assert!(
        !can_i(
            operator_kubeconfig,
            &[
                "create",
                &token_of(OUTSIDE),
                "--subresource=token",
                "-n",
                namespace
            ],
        )
        .await,
        "the chart lets the operator request tokens for {OUTSIDE}"
    );
    let exchanges = || emulator.control().counters().operation_total("token");
    let exchanges_before = exchanges();
    let apply = |yaml: String| async move {
        let (ok, out) = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(&yaml)).await;
        assert!(ok, "{out}\n{yaml}");
    };
    let store = |name: &str, sa: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: {name}}}\nspec:\n  organisation: {}\n  auth: {{workloadIdentity: {{serviceAccountName: {sa}, thalassaServiceAccountId: {WI_THALASSA_ACCOUNT}}}}}\n",
            emulator.organisation()
        )
    };
    let resource = |name: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n  storeRef: {{name: {name}}}\n  refreshInterval: 10s\n  data: [{{secretKey: password, remoteRef: {{path: /app/production/db/password}}}}]\n"
        )
    };

    // Outside the allow-list.
    apply(store("outside", OUTSIDE)).await;
    apply(resource("outside")).await;
    let message = wait_store_condition(client, namespace, "outside", "Stalled", "True").await;
    let credentials =
        wait_store_condition(client, namespace, "outside", "CredentialsValid", "False").await;
    let ready = wait_ready(
        client,
        namespace,
        "outside",
        "False",
        "CredentialsUnavailable",
    )
    .await;
    for (what, text) in [
        ("store Stalled", &message),
        ("store CredentialsValid", &credentials),
        ("ThalassaSecret Ready", &ready),
    ] {
        for needle in [
            format!("ServiceAccount {namespace}/{OUTSIDE}"),
            "403 Forbidden".into(),
            "chart value stores.serviceAccountName".into(),
            "workloadIdentity.serviceAccountName".into(),
        ] {
            assert!(text.contains(&needle), "{what} lacks {needle:?}: {text}");
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    assert!(
        secrets.get_opt("outside").await.unwrap().is_none(),
        "no Secret written for the refused store"
    );
    assert_eq!(
        exchanges(),
        exchanges_before,
        "no token reached Thalassa's token exchange"
    );

    // The allowed name, with the same RBAC: a token is issued and exchanged, the value synced.
    apply(store("allowed", ALLOWED_SERVICE_ACCOUNT)).await;
    apply(resource("allowed")).await;
    wait_store_condition(client, namespace, "allowed", "Ready", "True").await;
    wait_ready(client, namespace, "allowed", "True", "Synced").await;
    let data = secret_data(&secrets.get("allowed").await.unwrap());
    assert_eq!(
        data.get("password").map(Vec::as_slice),
        Some(&b"s3cr3t-demo-password"[..])
    );
    assert!(
        emulator.control().counters().get("token", 200) > 0,
        "the allowed ServiceAccount's token was exchanged"
    );
    // The refused store is still refused: nothing synced meanwhile.
    assert!(secrets.get_opt("outside").await.unwrap().is_none());
    let log = operator.log_text();
    assert!(
        !log.contains(emulator.token()),
        "the operator log holds a token"
    );
}

#[tokio::test]
async fn operator_with_namespaced_chart_rbac_syncs_samples_and_uninstall_keeps_secrets() {
    let _turn = crate::common::area_turn(module_path!()).await;
    operator_with_chart_permissions(false).await;
}

#[tokio::test]
async fn operator_with_cluster_chart_rbac_syncs_samples_and_uninstall_keeps_secrets() {
    let _turn = crate::common::area_turn(module_path!()).await;
    operator_with_chart_permissions(true).await;
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard
// ---------------------------------------------------------------------------------------------

/// Every metric the operator exports (`src/metrics.rs`), as PromQL names it.
const OPERATOR_METRICS: &[&str] = &[
    "thalassa_operator_reconcile_runs_total",
    "thalassa_operator_reconcile_errors_total",
    "thalassa_operator_reconcile_duration_seconds",
    "thalassa_operator_thalassa_requests_total",
    "thalassa_operator_thalassa_request_duration_seconds",
    "thalassa_operator_thalassa_reveals_total",
    "thalassa_operator_thalassa_metadata_requests_total",
    "thalassa_operator_thalassa_rate_limit_wait_seconds_total",
    "thalassa_operator_resources",
    "thalassa_operator_last_successful_check_timestamp_seconds",
    "thalassa_operator_leader",
    "thalassa_operator_store_condition",
];

/// The histograms among [`OPERATOR_METRICS`] (queried through `_bucket`, `_sum`, `_count`).
const OPERATOR_HISTOGRAMS: &[&str] = &[
    "thalassa_operator_reconcile_duration_seconds",
    "thalassa_operator_thalassa_request_duration_seconds",
];

/// The `thalassa_operator_*` metric names in a PromQL expression, with histogram series
/// suffixes mapped to the histogram's name.
fn queried_metrics(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("thalassa_operator_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| OPERATOR_HISTOGRAMS.contains(base))
            })
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `targets[].expr` of every panel (rows may nest panels).
fn dashboard_exprs(panels: &serde_json::Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.is_empty(),
                "panel {:?} has a target without expr",
                panel["title"]
            );
            out.push(expr.to_owned());
        }
        dashboard_exprs(&panel["panels"], out);
    }
}

#[tokio::test]
async fn grafana_dashboard_configmap_embeds_a_dashboard_of_operator_metrics() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let base = [
        "--set",
        "thalassa.organisation=o",
        "--set",
        "credentials.existingSecret=c",
    ];
    let off = documents(&template("tso", "thalassa-system", &base).await);
    assert!(
        !off.iter().any(|d| kind(d) == "ConfigMap"),
        "no dashboard ConfigMap by default"
    );

    let mut on = base.to_vec();
    on.extend(["--set", "grafanaDashboard.enabled=true"]);
    let docs = documents(&template("tso", "thalassa-system", &on).await);
    let config_map = find(
        &docs,
        "ConfigMap",
        "tso-thalassa-secrets-operator-dashboard",
    );
    assert_eq!(config_map["metadata"]["namespace"], "thalassa-system");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let text = config_map["data"]["thalassa-secrets-operator.json"]
        .as_str()
        .expect("dashboard key");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("embedded JSON parses");
    let file = chart().join("dashboards/thalassa-secrets-operator.json");
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("file parses");
    assert_eq!(dashboard, shipped, "the ConfigMap embeds the file verbatim");
    assert_eq!(dashboard["uid"], "thalassa-secrets-operator");

    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "dashboard queries: {exprs:?}");
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let names = queried_metrics(expr);
        assert!(!names.is_empty(), "{expr:?} queries no operator metric");
        for name in names {
            assert!(
                OPERATOR_METRICS.contains(&name.as_str()),
                "{expr:?} queries {name}, which the operator does not export"
            );
            queried.insert(name);
        }
    }
    let all: BTreeSet<String> = OPERATOR_METRICS.iter().map(|m| m.to_string()).collect();
    assert_eq!(queried, all, "every operator metric is on the dashboard");
    // Panels use the datasource variable, so the dashboard works with any Prometheus.
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{:?}",
            panel["title"]
        );
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    // Namespace, labels and annotations are configurable; the ConfigMap is a valid object.
    let control_plane = testenv::ControlPlane::shared();
    let target_ns = control_plane.temp_namespace("chart-dash").await;
    let namespace = format!("grafanaDashboard.namespace={}", target_ns.name());
    let mut custom = on.clone();
    custom.extend([
        "--set",
        namespace.as_str(),
        "--set",
        "grafanaDashboard.labels.grafana_dashboard=null",
        "--set",
        "grafanaDashboard.labels.team-dashboards=thalassa",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=Operators",
    ]);
    let rendered = template("tso", "thalassa-system", &custom).await;
    let docs = documents(&rendered);
    let config_map = find(
        &docs,
        "ConfigMap",
        "tso-thalassa-secrets-operator-dashboard",
    );
    assert_eq!(config_map["metadata"]["namespace"], target_ns.name());
    assert!(config_map["metadata"]["labels"]["grafana_dashboard"].is_null());
    assert_eq!(
        config_map["metadata"]["labels"]["team-dashboards"],
        "thalassa"
    );
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
    dry_run(
        "dashboard ConfigMap",
        &serde_yaml::to_string(config_map).unwrap(),
    )
    .await;

    // The schema rejects unknown keys under grafanaDashboard.
    let mut bad = on.clone();
    bad.extend(["--set", "grafanaDashboard.label=x"]);
    let chart = chart();
    let mut args = vec!["template", "tso", chart.to_str().unwrap()];
    args.extend(bad);
    let (ok, _, err) = helm(&args).await;
    assert!(!ok && err.contains("/grafanaDashboard"), "{err}");
}
