//! GitOps health, judged by the tools' own code: kstatus (`sigs.k8s.io/cli-utils`, what Flux's
//! `wait`/`healthChecks` and kpt use) and Argo CD's Lua health check (`config/argocd/health.lua`
//! run by gopher-lua the way Argo CD runs it), both in `tools/health` (built by
//! `tools/build-tools.sh`). Every object judged here was read from the real apiserver, as the real
//! operator left it: ThalassaSecrets, and both store kinds (which share the script, embedded in
//! argocd-cm under each kind's key; `tests/offline/docs.rs` checks that).
//!
//! The store test runs a cluster-mode operator (cluster stores are only served in cluster mode),
//! which would act on the other test's ThalassaSecrets: the two tests take turns.

use crate::common;

use std::{process::Stdio, time::Duration};

use crate::common::{bin_dir, harness, wait_for};
use serde_json::{Value, json};
use thalassa_emulator::Faults;
use tokio::io::AsyncWriteExt;

/// What the tools say about one object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) kstatus: String,
    pub(crate) kstatus_message: String,
    pub(crate) health: String,
    pub(crate) health_message: String,
}

/// Runs the health program on one object (JSON as the apiserver served it); also judges the
/// ClusterThalassaSecret of `fanout` and the ThalassaPushSecret of `push`.
pub(crate) async fn judge(object: &Value) -> Verdict {
    let lua = concat!(env!("CARGO_MANIFEST_DIR"), "/config/argocd/health.lua");
    let mut child = tokio::process::Command::new(bin_dir().join("thalassa-health"))
        .args(["--lua", lua])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("thalassa-health runs (built by tools/build-tools.sh)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&serde_json::to_vec(object).unwrap())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "thalassa-health failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let field = |name: &str| line[name].as_str().unwrap_or_default().to_string();
    Verdict {
        kstatus: field("kstatus"),
        kstatus_message: field("kstatusMessage"),
        health: field("health"),
        health_message: field("healthMessage"),
    }
}

/// The tests take turns (see the module comment).
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The live object (`resource` is the kubectl resource name), exactly as the apiserver serves it.
/// Cluster-scoped kinds (`clusterthalassasecretstore`) are read without a namespace.
pub(crate) async fn live_object(h: &common::Harness, resource: &str, name: &str) -> Value {
    let mut args = vec!["get", resource, name, "-o", "json"];
    if !resource.starts_with("cluster") {
        args.extend(["-n", h.ns()]);
    }
    let (ok, out) = h.kubectl(&args, None).await;
    assert!(ok, "kubectl get: {out}");
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

/// The live ThalassaSecret.
async fn live(h: &common::Harness, name: &str) -> Value {
    live_object(h, "thalassasecret", name).await
}

/// `(status, reason)` of a condition of a live object.
fn condition(object: &Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// One row of the table this test prints: scenario, the three conditions, and the verdicts.
fn row(scenario: &str, object: &Value, verdict: &Verdict) -> String {
    let show = |type_: &str| {
        condition(object, type_).map_or("-".to_string(), |(status, reason)| {
            format!("{status} {reason}")
        })
    };
    format!(
        "| {scenario} | {} | {} | {} | {} | {} |",
        show("Ready"),
        show("Reconciling"),
        show("Stalled"),
        verdict.kstatus,
        verdict.health
    )
}

/// Waits until the live ThalassaSecret's verdict is `(kstatus, health)`; returns the object and
/// verdict.
async fn wait_verdict(
    h: &common::Harness,
    name: &str,
    kstatus: &str,
    health: &str,
    what: &str,
) -> (Value, Verdict) {
    wait_object_verdict(h, "thalassasecret", name, kstatus, health, what).await
}

/// [`wait_verdict`] for any of the operator's kinds.
async fn wait_object_verdict(
    h: &common::Harness,
    resource: &str,
    name: &str,
    kstatus: &str,
    health: &str,
    what: &str,
) -> (Value, Verdict) {
    wait_for(Duration::from_secs(60), what, || async {
        let object = live_object(h, resource, name).await;
        let verdict = judge(&object).await;
        (verdict.kstatus == kstatus && verdict.health == health).then_some((object, verdict))
    })
    .await
}

#[tokio::test]
async fn kstatus_and_argo_cd_tell_the_truth_at_every_stage() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _turn = TURNS.lock().await;
    let mut h = harness("health").await;
    h.create_string("/app/health/password", "s3cret");
    let mut table = vec![
        "| scenario | Ready | Reconciling | Stalled | kstatus | Argo CD |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];

    // Before the operator has seen it: the CRD's status default makes it "not observed".
    h.apply_single("app", "/app/health/password", &["refreshInterval: 10s"])
        .await;
    let object = live(&h, "app").await;
    assert_eq!(object["status"], json!({"observedGeneration": 0}));
    let verdict = judge(&object).await;
    assert_eq!(
        (verdict.kstatus.as_str(), verdict.health.as_str()),
        ("InProgress", "Progressing"),
        "{verdict:?}"
    );
    table.push(row("created, operator not running", &object, &verdict));

    // During the first sync (every Thalassa call slowed down): still not observed.
    let control = h.emulator.control();
    control.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    h.start_operator(&[]).await;
    let object = live(&h, "app").await;
    let verdict = judge(&object).await;
    if object["status"]["observedGeneration"] == 0 {
        assert_eq!(
            (verdict.kstatus.as_str(), verdict.health.as_str()),
            ("InProgress", "Progressing"),
            "{verdict:?}"
        );
        table.push(row("first sync in progress", &object, &verdict));
    }
    control.set_faults(Faults::default());

    // Synced.
    let (object, verdict) = wait_verdict(&h, "app", "Current", "Healthy", "synced").await;
    assert_eq!(condition(&object, "Ready").unwrap().0, "True");
    assert_eq!(condition(&object, "Stalled").unwrap().0, "False");
    assert_eq!(condition(&object, "Reconciling").unwrap().0, "False");
    table.push(row("synced", &object, &verdict));

    // A spec change the operator has not handled yet: the response to the patch itself carries
    // the new generation with the old status.
    let (ok, out) = h
        .kubectl(
            &[
                "patch",
                "thalassasecret",
                "app",
                "-n",
                h.ns(),
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"target":{"labels":{"tier":"db"}}}}"#,
                "-o",
                "json",
            ],
            None,
        )
        .await;
    assert!(ok, "kubectl patch: {out}");
    let object: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(
        object["metadata"]["generation"],
        object["status"]["observedGeneration"]
    );
    let verdict = judge(&object).await;
    assert_eq!(
        (verdict.kstatus.as_str(), verdict.health.as_str()),
        ("InProgress", "Progressing"),
        "{verdict:?}"
    );
    table.push(row("spec changed, not yet handled", &object, &verdict));
    wait_verdict(&h, "app", "Current", "Healthy", "spec change synced").await;

    // Only a person can fix it: the secrets feature gate is off.
    control.set_feature_gates(false, true);
    let (object, verdict) = wait_verdict(&h, "app", "Failed", "Degraded", "stalled").await;
    assert_eq!(
        condition(&object, "Stalled").unwrap(),
        ("True".to_string(), "SecretsFeatureDisabled".to_string())
    );
    assert_eq!(
        condition(&object, "Ready").unwrap(),
        ("False".to_string(), "SecretsFeatureDisabled".to_string())
    );
    assert!(
        verdict
            .health_message
            .starts_with("SecretsFeatureDisabled: ")
            && verdict
                .kstatus_message
                .contains("'secrets' feature is not enabled"),
        "both tools say why: {verdict:?}"
    );
    table.push(row("secrets feature gate off", &object, &verdict));

    control.set_feature_gates(true, true);
    let (object, verdict) = wait_verdict(&h, "app", "Current", "Healthy", "gate back on").await;
    table.push(row("gate back on", &object, &verdict));

    // A transient outage: every call answers 503 for a while (longer than the client retries).
    control.set_faults(Faults {
        burst_503: 100_000,
        ..Faults::default()
    });
    let (object, verdict) = wait_verdict(&h, "app", "InProgress", "Progressing", "503 burst").await;
    assert_eq!(condition(&object, "Reconciling").unwrap().0, "True");
    assert_eq!(condition(&object, "Stalled").unwrap().0, "False");
    table.push(row("503 burst, retried", &object, &verdict));

    control.set_faults(Faults::default());
    let (object, verdict) =
        wait_verdict(&h, "app", "Current", "Healthy", "recovered from the burst").await;
    table.push(row("burst over", &object, &verdict));

    // The Secret was never lost on the way.
    let secret = h.secrets().get("app").await.unwrap();
    assert_eq!(
        common::secret_data(&secret)
            .get("password")
            .map(Vec::as_slice),
        Some(&b"s3cret"[..])
    );
    println!("{}", table.join("\n"));
}

/// Creates (or replaces) a Secret holding a Thalassa token under the key `token`.
async fn token_secret(h: &common::Harness, name: &str, token: &str) {
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": h.ns()},
        "stringData": {"token": token},
    });
    let (ok, out) = h
        .kubectl(&["apply", "-f", "-"], Some(&secret.to_string()))
        .await;
    assert!(ok, "kubectl apply Secret: {out}");
}

/// `kubectl` on a store object, asserting success; returns stdout.
async fn kubectl_ok(h: &common::Harness, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out) = h.kubectl(args, stdin).await;
    assert!(ok, "kubectl {args:?}: {out}");
    out
}

/// Both store kinds at every stage, judged by kstatus and the Argo CD script (the same file
/// argocd-cm embeds under `..._ThalassaSecretStore` and `..._ClusterThalassaSecretStore`).
#[tokio::test]
async fn kstatus_and_argo_cd_tell_the_truth_about_stores() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _turn = TURNS.lock().await;
    let mut h = harness("health-store").await;
    let ns = h.ns().to_string();
    let org = h.emulator.organisation().to_string();
    let cluster_name = format!("health-{ns}");
    // Cluster-scoped: deleted when the test ends, passed or not.
    let _cleanup = DeleteOnDrop(cluster_name.clone());
    let mut table = vec![
        "| kind | scenario | Ready | Reconciling | Stalled | kstatus | Argo CD |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut push = |kind: &str, scenario: &str, object: &Value, verdict: &Verdict| {
        let row = row(scenario, object, verdict);
        table.push(format!(
            "| {kind} {}",
            row.trim_start_matches('|').trim_start()
        ));
    };

    // Both stores name a token Secret that does not exist yet.
    let store = json!({
        "apiVersion": "secrets.thalassa.cloud/v1alpha1",
        "kind": "ThalassaSecretStore",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {"organisation": org, "auth": {"tokenSecretRef": {"name": "team-token"}}},
    });
    let cluster_store = json!({
        "apiVersion": "secrets.thalassa.cloud/v1alpha1",
        "kind": "ClusterThalassaSecretStore",
        "metadata": {"name": cluster_name},
        "spec": {
            "organisation": org,
            "credentialsNamespace": ns,
            "auth": {"tokenSecretRef": {"name": "platform-token"}},
            "namespaces": [ns],
        },
    });
    for object in [&store, &cluster_store] {
        kubectl_ok(&h, &["apply", "-f", "-"], Some(&object.to_string())).await;
    }
    let kinds = [
        (
            "ThalassaSecretStore",
            "thalassasecretstore",
            "team",
            "team-token",
        ),
        (
            "ClusterThalassaSecretStore",
            "clusterthalassasecretstore",
            cluster_name.as_str(),
            "platform-token",
        ),
    ];

    // Before the operator has checked them: the CRD's status default makes them "not observed".
    for (kind, resource, name, _) in kinds {
        let object = live_object(&h, resource, name).await;
        assert_eq!(object["status"], json!({"observedGeneration": 0}), "{kind}");
        let verdict = judge(&object).await;
        assert_eq!(
            (verdict.kstatus.as_str(), verdict.health.as_str()),
            ("InProgress", "Progressing"),
            "{kind}: {verdict:?}"
        );
        push(kind, "created, operator not running", &object, &verdict);
    }

    // Cluster mode: cluster stores are served only there. No ThalassaSecret uses these stores,
    // so they are checked every --unused-store-check-interval (1 h by default): short here, so
    // the store recovers from the outage below by itself within the test.
    let operator = h
        .spawn_operator_watching(
            None,
            &[
                "--store-retry-interval",
                "2s",
                "--unused-store-check-interval",
                "5s",
            ],
            "operator.log",
        )
        .await;
    h.operator = Some(operator);

    // The credentials Secret is missing: only a person can fix that.
    for (kind, resource, name, secret) in kinds {
        let (object, verdict) =
            wait_object_verdict(&h, resource, name, "Failed", "Degraded", kind).await;
        assert_eq!(
            condition(&object, "CredentialsValid").unwrap(),
            ("False".to_string(), "CheckFailed".to_string()),
            "{kind}"
        );
        assert_eq!(condition(&object, "Stalled").unwrap().0, "True", "{kind}");
        assert_eq!(condition(&object, "Reconciling").unwrap().0, "False");
        assert_eq!(condition(&object, "Ready").unwrap().0, "False");
        let names_the_secret = format!("Secret {ns}/{secret}");
        assert!(
            verdict
                .health_message
                .starts_with("CheckFailed: CredentialsValid: ")
                && verdict.health_message.contains(&names_the_secret)
                && verdict.kstatus_message.contains(&names_the_secret),
            "{kind}: both tools say why: {verdict:?}"
        );
        push(kind, "credentials Secret missing", &object, &verdict);
    }

    // Fixed: the Secret is created and the store touched (a store is checked when it changes,
    // and every 10 minutes).
    for (kind, resource, name, secret) in kinds {
        token_secret(&h, secret, h.emulator.token()).await;
        let mut args = vec!["annotate", "--overwrite", resource, name, "checked=now"];
        if !resource.starts_with("cluster") {
            args.extend(["-n", &ns]);
        }
        kubectl_ok(&h, &args, None).await;
        let (object, verdict) =
            wait_object_verdict(&h, resource, name, "Current", "Healthy", kind).await;
        assert_eq!(condition(&object, "Ready").unwrap().0, "True", "{kind}");
        assert_eq!(condition(&object, "Stalled").unwrap().0, "False");
        assert_eq!(condition(&object, "Reconciling").unwrap().0, "False");
        push(kind, "Secret created, store touched", &object, &verdict);
    }

    // A spec change the operator has not handled yet: the patch response carries the new
    // generation with the old status.
    let out = kubectl_ok(
        &h,
        &[
            "patch",
            "thalassasecretstore",
            "team",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            &json!({"spec": {"region": common::REGION}}).to_string(),
            "-o",
            "json",
        ],
        None,
    )
    .await;
    let object: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(
        object["metadata"]["generation"],
        object["status"]["observedGeneration"]
    );
    let verdict = judge(&object).await;
    assert_eq!(
        (verdict.kstatus.as_str(), verdict.health.as_str()),
        ("InProgress", "Progressing"),
        "{verdict:?}"
    );
    push(
        "ThalassaSecretStore",
        "spec changed, not yet checked",
        &object,
        &verdict,
    );
    let (object, verdict) = wait_object_verdict(
        &h,
        "thalassasecretstore",
        "team",
        "Current",
        "Healthy",
        "spec change checked",
    )
    .await;
    push(
        "ThalassaSecretStore",
        "spec change checked",
        &object,
        &verdict,
    );

    // A transient outage: every call answers 503 (longer than the client retries). Retried, not
    // stalled; over once Thalassa answers again, without anyone touching the store.
    let control = h.emulator.control();
    control.set_faults(Faults {
        burst_503: 100_000,
        ..Faults::default()
    });
    kubectl_ok(
        &h,
        &[
            "annotate",
            "--overwrite",
            "thalassasecretstore",
            "team",
            "-n",
            &ns,
            "checked=during-outage",
        ],
        None,
    )
    .await;
    let (object, verdict) = wait_object_verdict(
        &h,
        "thalassasecretstore",
        "team",
        "InProgress",
        "Progressing",
        "503 burst",
    )
    .await;
    assert_eq!(condition(&object, "Reconciling").unwrap().0, "True");
    assert_eq!(condition(&object, "Stalled").unwrap().0, "False");
    assert_eq!(condition(&object, "Ready").unwrap().0, "False");
    push(
        "ThalassaSecretStore",
        "503 burst, retried",
        &object,
        &verdict,
    );
    control.set_faults(Faults::default());
    let (object, verdict) = wait_object_verdict(
        &h,
        "thalassasecretstore",
        "team",
        "Current",
        "Healthy",
        "recovered from the burst by itself",
    )
    .await;
    push("ThalassaSecretStore", "burst over", &object, &verdict);

    // No token in any status.
    let statuses = kubectl_ok(
        &h,
        &[
            "get",
            "thalassasecretstores,clusterthalassasecretstores",
            "-A",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert!(
        !statuses.contains(h.emulator.token()),
        "a status holds the token"
    );
    // Stopped before the next test's turn.
    h.stop_operator().await;
    println!("{}", table.join("\n"));
}

/// Deletes a cluster store when dropped.
struct DeleteOnDrop(String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(bin_dir().join("kubectl"))
            .env(
                "KUBECONFIG",
                testenv::ControlPlane::shared().kubeconfig_path(),
            )
            .args([
                "delete",
                "clusterthalassasecretstore",
                &self.0,
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
    }
}
