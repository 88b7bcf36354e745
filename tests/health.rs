//! GitOps health, judged by the tools' own code: kstatus (`sigs.k8s.io/cli-utils`, what Flux's
//! `wait`/`healthChecks` and kpt use) and Argo CD's Lua health check (`config/argocd/health.lua`
//! run by gopher-lua the way Argo CD runs it), both in `tools/health` (built by
//! `tools/build-tools.sh`). Every object judged here was read from the real apiserver, as the real
//! operator left it.

mod common;

use std::{process::Stdio, time::Duration};

use common::{bin_dir, harness, wait_for};
use serde_json::{Value, json};
use thalassa_emulator::Faults;
use tokio::io::AsyncWriteExt;

/// What the tools say about one object.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    kstatus: String,
    kstatus_message: String,
    health: String,
    health_message: String,
}

/// Runs the health program on one object (JSON as the apiserver served it).
async fn judge(object: &Value) -> Verdict {
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

/// The live object, exactly as the apiserver serves it.
async fn live(h: &common::Harness, name: &str) -> Value {
    let (ok, out) = h
        .kubectl(
            &["get", "thalassasecret", name, "-n", h.ns(), "-o", "json"],
            None,
        )
        .await;
    assert!(ok, "kubectl get: {out}");
    serde_json::from_str(&out).expect("kubectl prints JSON")
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

/// Waits until the live object's verdict is `(kstatus, health)`; returns the object and verdict.
async fn wait_verdict(
    h: &common::Harness,
    name: &str,
    kstatus: &str,
    health: &str,
    what: &str,
) -> (Value, Verdict) {
    wait_for(Duration::from_secs(60), what, || async {
        let object = live(h, name).await;
        let verdict = judge(&object).await;
        (verdict.kstatus == kstatus && verdict.health == health).then_some((object, verdict))
    })
    .await
}

#[tokio::test]
async fn kstatus_and_argo_cd_tell_the_truth_at_every_stage() {
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
