//! Attacks 6 and 7 (force-sync part) of issue 22: a ThalassaSecret's author who may not patch a
//! workload cannot have the operator restart it (the workload must opt in), no workload is
//! restarted more than `--restart-limit` times per `--restart-window` whatever the data does, and
//! a burst of force-sync edits costs at most one forced sync per `--force-sync-min-interval`.
//! The refusal at admission is in `tests/cluster/admission_policy.rs`.

use std::time::{Duration, Instant};

use crate::common::{Harness, deployment_state, harness, kubectl, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use thalassa_operator::crd::{ALLOW_RESTART_ANNOTATION, RESTART_TIMES_ANNOTATION};

/// A Deployment; `allow` is its opt-in annotation's value, if any.
async fn create_deployment(h: &Harness, name: &str, allow: Option<&str>) {
    let annotations = allow.map_or_else(
        || serde_json::json!({}),
        |a| serde_json::json!({ALLOW_RESTART_ANNOTATION: a}),
    );
    crate::common::create_deployment(h, name, annotations).await;
}

async fn restarted_for(h: &Harness, name: &str) -> Option<String> {
    h.resources().get(name).await.ok()?.status?.restarted_for
}

/// Waits until the Deployment's restartedFor annotation is set and differs from `before`.
async fn wait_restart(h: &Harness, name: &str, before: Option<&str>) -> String {
    wait_for(Duration::from_secs(60), "a restart", || async {
        deployment_state(h, name)
            .await
            .1
            .filter(|now| Some(now.as_str()) != before)
    })
    .await
}

fn resource(targets: &str) -> String {
    format!(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: app}}
spec:
  refreshInterval: 10s
  restartDebounce: 1s
  data:
    - {{secretKey: a, remoteRef: {{path: /app/rr/a}}}}
  rolloutRestartTargets: {targets}
"#
    )
}

const CANARY: &str = "canary-7f3e9b21-deputy";

#[tokio::test]
async fn a_workload_that_does_not_opt_in_is_never_restarted_by_a_thalassa_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("deputy").await;
    h.create_string("/app/rr/a", &format!("{CANARY}-1"));
    // The platform team's Deployment in the tenant's namespace; the tenant's own opts in.
    create_deployment(&h, "platform", None).await;
    create_deployment(&h, "web", Some("app")).await;
    h.start_operator(&[]).await;
    h.apply_yaml(&resource(
        "[{kind: Deployment, name: platform}, {kind: Deployment, name: web}]",
    ))
    .await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    let (platform_generation, _) = deployment_state(&h, "platform").await;

    // The data changes twice: the tenant's own Deployment is restarted each time, the
    // platform's never.
    let mut web = None;
    for round in 2..=3 {
        let before = restarted_for(&h, "app").await;
        h.put_string("/app/rr/a", &format!("{CANARY}-{round}"));
        web = Some(wait_restart(&h, "web", web.as_deref()).await);
        wait_for(Duration::from_secs(30), "the restart recorded", || async {
            let now = restarted_for(&h, "app").await;
            (now.is_some() && now != before).then_some(())
        })
        .await;
        assert_eq!(
            deployment_state(&h, "platform").await,
            (platform_generation, None),
            "round {round}: the platform Deployment was restarted"
        );
    }
    let ts = h
        .wait_condition(
            "app",
            "RestartTargetsReady",
            "False",
            Some("RestartNotAllowed"),
        )
        .await;
    let message = crate::common::condition(&ts, "RestartTargetsReady").message;
    assert!(
        message.contains("Deployment platform") && message.contains(ALLOW_RESTART_ANNOTATION),
        "{message}"
    );
    assert!(!message.contains("Deployment web"), "{message}");
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok && events.contains("RolloutRestartRefused"), "{events}");
    assert!(!events.contains(CANARY), "a value in an Event");
    let status = serde_json::to_string(&h.resources().get("app").await.unwrap().status).unwrap();
    assert!(!status.contains(CANARY), "a value in the status");
    assert!(!h.operator_log().contains(CANARY), "a value in the log");

    // Its owner opts in: the condition recovers (the next data change restarts it).
    Api::<Deployment>::namespaced(h.client.clone(), h.ns())
        .patch(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {ALLOW_RESTART_ANNOTATION: "*"}}
            })),
        )
        .await
        .unwrap();
    h.wait_condition("app", "RestartTargetsReady", "True", Some("Found"))
        .await;
}

#[tokio::test]
async fn a_workload_is_restarted_at_most_the_limit_per_window_whatever_the_data_does() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    const WINDOW: u64 = 20;
    let mut h = harness("restart-bound").await;
    h.create_string("/app/rr/a", "v1");
    create_deployment(&h, "web", Some("*")).await;
    let window = format!("--restart-window={WINDOW}s");
    h.start_operator(&["--restart-limit=1", &window]).await;
    h.apply_yaml(&resource("[{kind: Deployment, name: web}]"))
        .await;
    h.wait_condition("app", "RestartTargetsReady", "True", Some("Found"))
        .await;
    let (generation, _) = deployment_state(&h, "web").await;

    // The first change: restarted.
    h.put_string("/app/rr/a", "v2");
    let first = wait_restart(&h, "web", None).await;
    let first_at = Instant::now();
    // Two more changes at once: the bound holds them back, the condition says until when.
    // (A force-sync reads them at once, well inside the window.)
    h.put_string("/app/rr/a", "v3");
    h.put_string("/app/rr/a", "v4");
    h.resources()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"secrets.thalassa.cloud/force-sync": "v4"}}
            })),
        )
        .await
        .unwrap();
    h.wait_secret("app", "the newest data", |d| {
        d.get("a") == Some(&b"v4".to_vec())
    })
    .await;
    let ts = h
        .wait_condition(
            "app",
            "RestartTargetsReady",
            "False",
            Some("RestartRateLimited"),
        )
        .await;
    let message = crate::common::condition(&ts, "RestartTargetsReady").message;
    assert!(
        message.contains("Deployment web") && message.contains("--restart-limit"),
        "{message}"
    );
    assert_eq!(
        deployment_state(&h, "web").await,
        (generation + 1, Some(first.clone())),
        "held back inside the window"
    );
    // Once the window allows: one restart, for the newest data.
    let second = wait_restart(&h, "web", Some(&first)).await;
    let waited = first_at.elapsed();
    h.wait_condition("app", "RestartTargetsReady", "True", Some("Found"))
        .await;
    assert_eq!(
        restarted_for(&h, "app").await.as_deref(),
        Some(second.as_str())
    );
    let (now, _) = deployment_state(&h, "web").await;
    println!(
        "3 data changes, --restart-limit=1 per {WINDOW}s: {} restarts, the second {:.1}s after the first",
        now - generation,
        waited.as_secs_f64()
    );
    assert_eq!(now - generation, 2, "one restart per window");
    let d = Api::<Deployment>::namespaced(h.client.clone(), h.ns())
        .get("web")
        .await
        .unwrap();
    let times: Vec<i64> = d.metadata.annotations.unwrap()[RESTART_TIMES_ANNOTATION]
        .split(',')
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(
        times.len(),
        1,
        "only the restarts inside the window are kept"
    );
}

#[tokio::test]
async fn fifty_force_sync_edits_make_at_most_one_forced_sync_per_interval() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    const SOURCES: u64 = 5;
    const INTERVAL: u64 = 15;
    const EDITS: usize = 50;
    let mut h = harness("force-burst").await;
    let mut data = String::new();
    for i in 0..SOURCES {
        h.create_string(&format!("/app/burst/k{i}"), "v1");
        data.push_str(&format!(
            "    - {{secretKey: k{i}, remoteRef: {{path: /app/burst/k{i}}}}}\n"
        ));
    }
    let interval = format!("--force-sync-min-interval={INTERVAL}s");
    h.start_operator(&[&interval]).await;
    h.apply_yaml(&format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: burst}}\nspec:\n  refreshInterval: 10s\n  data:\n{data}"
    ))
    .await;
    h.wait_condition("burst", "Ready", "True", Some("Synced"))
        .await;
    let before = h.reveals();
    let started = Instant::now();
    for edit in 1..=EDITS {
        h.resources()
            .patch(
                "burst",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"annotations": {"secrets.thalassa.cloud/force-sync": edit.to_string()}}
                })),
            )
            .await
            .unwrap();
    }
    let editing = started.elapsed();
    // The last value is not lost: it is synced at the end of the interval.
    let last = EDITS.to_string();
    wait_for(
        Duration::from_secs(INTERVAL * 3),
        "the last value handled",
        || async {
            let ts = h.resources().get("burst").await.ok()?;
            (ts.status?.force_sync_handled.as_deref() == Some(last.as_str())).then_some(())
        },
    )
    .await;
    let handled_after = started.elapsed();
    let reveals = h.reveals() - before;
    println!(
        "{EDITS} force-sync edits in {:.1}s: {reveals} reveals ({SOURCES} sources), last value handled after {:.1}s",
        editing.as_secs_f64(),
        handled_after.as_secs_f64()
    );
    // One forced sync at once, then one per interval started while the edits went on.
    let syncs = 2 + editing.as_secs() / INTERVAL;
    assert!(
        reveals <= SOURCES * syncs,
        "{reveals} reveals for {EDITS} edits: more than {syncs} forced syncs of {SOURCES} sources"
    );
    assert!(reveals >= SOURCES, "the force-sync read the sources again");
}
