//! Rollout restarts against a real control plane (the Deployment controller included) and the
//! emulator. A restart is counted as one more `metadata.generation` of the Deployment (every pod
//! template change bumps it): none on the first sync, exactly one for two sources rotated 2 s
//! apart (debounce), none on an operator restart, none on a drift repair; a missing target is a
//! condition, and the condition recovers when the workload appears.

use std::time::Duration;

use crate::common::{
    Harness, condition, create_deployment, deployment_state, harness, http_get, kubectl, wait_for,
};
use kube::api::{Patch, PatchParams};
use thalassa_operator::crd::{ALLOW_RESTART_ANNOTATION, DATA_HASH_ANNOTATION};

async fn secret_hash(h: &Harness, name: &str) -> String {
    let secret = h.secrets().get(name).await.unwrap();
    secret.metadata.annotations.unwrap()[DATA_HASH_ANNOTATION].clone()
}

async fn restarted_for(h: &Harness, name: &str) -> Option<String> {
    h.resources().get(name).await.ok()?.status?.restarted_for
}

const RESOURCE: &str = r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: app}
spec:
  refreshInterval: 10s
  data:
    - {secretKey: a, remoteRef: {path: /app/rr/a}}
    - {secretKey: b, remoteRef: {path: /app/rr/b}}
  rolloutRestartTargets:
    - {kind: Deployment, name: web}
  # Longer than it takes a version stored 2 s after the first to be detected (up to a refresh
  # interval), so both changes are inside one window.
  restartDebounce: 20s
"#;

#[tokio::test]
async fn restarts_once_per_change_and_never_for_restarts_or_repairs() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("restart").await;
    h.create_string("/app/rr/a", "a1");
    h.create_string("/app/rr/b", "b1");
    create_deployment(
        &h,
        "web",
        serde_json::json!({ALLOW_RESTART_ANNOTATION: "*"}),
    )
    .await;
    h.start_operator(&[]).await;
    h.apply_yaml(RESOURCE).await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    h.wait_condition("app", "RestartTargetsReady", "True", Some("Found"))
        .await;
    let recorded = restarted_for(&h, "app")
        .await
        .expect("the first sync records");
    let (generation, annotation) = deployment_state(&h, "web").await;
    assert_eq!(annotation, None, "the first sync restarts nothing");

    // Two sources rotated 2 s apart: one restart, for the data with both new values. The first
    // change is in the Secret before the second is stored, so without the debounce window it
    // would have had a restart of its own.
    h.put_string("/app/rr/a", "a2");
    h.wait_secret("app", "the first new version", |d| {
        d.get("a") == Some(&b"a2".to_vec())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.put_string("/app/rr/b", "b2");
    h.wait_secret("app", "both new versions", |d| {
        d.get("a") == Some(&b"a2".to_vec()) && d.get("b") == Some(&b"b2".to_vec())
    })
    .await;
    assert_eq!(
        deployment_state(&h, "web").await,
        (generation, None),
        "inside the window: no restart yet"
    );
    let restarted = wait_for(Duration::from_secs(60), "the restart", || async {
        deployment_state(&h, "web").await.1
    })
    .await;
    h.wait_checks("app", 2).await;
    let restarts = deployment_state(&h, "web").await.0 - generation;
    println!("two sources rotated 2 s apart: {restarts} restart(s)");
    assert_eq!(
        restarts, 1,
        "exactly one restart for two changes in the window"
    );
    let now_for = restarted_for(&h, "app").await;
    assert_eq!(now_for.as_deref(), Some(restarted.as_str()));
    assert_ne!(now_for, Some(recorded));
    assert!(
        !restarted.contains(&secret_hash(&h, "app").await),
        "the value is bound to the resource, not the bare data hash"
    );
    let port = h.operator.as_ref().unwrap().port;
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    let counter = format!(
        "thalassa_operator_rollout_restarts_total{{namespace=\"{}\",name=\"app\",kind=\"Deployment\"}} 1",
        h.ns()
    );
    assert!(metrics.contains(&counter), "{counter} not in /metrics");
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok && events.contains("RolloutRestarted"), "{events}");

    // An operator restart restarts nothing.
    let settled = deployment_state(&h, "web").await.0;
    h.stop_operator().await;
    h.start_operator(&[]).await;
    h.wait_checks("app", 2).await;
    let after_restart = deployment_state(&h, "web").await.0 - settled;
    println!("operator restart: {after_restart} restart(s)");
    assert_eq!(after_restart, 0);

    // A drift repair that restores the same data restarts nothing.
    h.secrets()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"a": "tampered"}})),
        )
        .await
        .unwrap();
    h.wait_secret("app", "the repaired Secret", |d| {
        d.get("a") == Some(&b"a2".to_vec())
    })
    .await;
    h.wait_checks("app", 2).await;
    let after_repair = deployment_state(&h, "web").await.0 - settled;
    println!("drift repair: {after_repair} restart(s)");
    assert_eq!(after_repair, 0);
}

#[tokio::test]
async fn a_missing_target_is_a_condition_not_an_error_loop() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("restart-missing").await;
    h.create_string("/app/rr/a", "a1");
    h.create_string("/app/rr/b", "b1");
    h.start_operator(&[]).await;
    h.apply_yaml(RESOURCE).await;
    let ts = h
        .wait_condition(
            "app",
            "RestartTargetsReady",
            "False",
            Some("RestartTargetNotFound"),
        )
        .await;
    let targets = condition(&ts, "RestartTargetsReady");
    assert!(targets.message.contains("Deployment web"), "{targets:?}");
    let ready = condition(&ts, "Ready");
    assert_eq!(ready.status, "True", "the Secret itself is synced");

    // A data change with the target still missing: recorded, no error loop (the Secret stays
    // Ready, the status records the new data).
    let recorded = restarted_for(&h, "app").await;
    assert!(recorded.is_some(), "the first sync records");
    h.put_string("/app/rr/a", "a2");
    h.wait_secret("app", "the new version", |d| {
        d.get("a") == Some(&b"a2".to_vec())
    })
    .await;
    wait_for(Duration::from_secs(60), "the change recorded", || async {
        let now = restarted_for(&h, "app").await;
        (now.is_some() && now != recorded).then_some(())
    })
    .await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    h.wait_condition(
        "app",
        "RestartTargetsReady",
        "False",
        Some("RestartTargetNotFound"),
    )
    .await;

    create_deployment(
        &h,
        "web",
        serde_json::json!({ALLOW_RESTART_ANNOTATION: "*"}),
    )
    .await;
    h.wait_condition("app", "RestartTargetsReady", "True", Some("Found"))
        .await;
    let (_, annotation) = deployment_state(&h, "web").await;
    assert_eq!(
        annotation, None,
        "a workload created after the change started with the new data"
    );
}
