//! Refresh on demand and refresh policies against a real control plane and the emulator: a
//! force-sync annotation reads every source once per new value; `Periodic`, `OnChange` and
//! `CreatedOnce` make exactly the Thalassa calls the README documents (emulator counters).

use crate::common;

use std::time::Duration;

use crate::common::{Harness, harness, wait_for};
use kube::api::{DeleteParams, Patch, PatchParams};

async fn value(h: &Harness, name: &str) -> Option<String> {
    let data = h.secrets().get_opt(name).await.ok()??;
    let data = common::secret_data(&data);
    data.get("password")
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn annotate(h: &Harness, name: &str, force: &str) {
    h.resources()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"secrets.thalassa.cloud/force-sync": force}}
            })),
        )
        .await
        .unwrap();
}

fn calls(h: &Harness) -> u64 {
    h.emulator.control().counters().total
}

#[tokio::test]
async fn force_sync_reads_every_source_once_per_new_value() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("force").await;
    h.create_string("/app/force/a", "a1");
    h.create_string("/app/force/b", "b1");
    // Consecutive force-syncs here test what one reads, not --force-sync-min-interval
    // (tests/cluster/noisy_tenants/restarts.rs).
    h.start_operator(&["--force-sync-min-interval=1s"]).await;
    h.apply_yaml(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: forced}
spec:
  refreshInterval: 10s
  data:
    - {secretKey: a, remoteRef: {path: /app/force/a}}
    - {secretKey: b, remoteRef: {path: /app/force/b}}
"#,
    )
    .await;
    h.wait_condition("forced", "Ready", "True", Some("Synced"))
        .await;
    let first = h.reveals();
    assert_eq!(first, 2);
    for (round, force) in ["1", "2"].into_iter().enumerate() {
        annotate(&h, "forced", force).await;
        wait_for(Duration::from_secs(30), "force-sync handled", || async {
            let ts = h.resources().get("forced").await.ok()?;
            (ts.status?.force_sync_handled.as_deref() == Some(force)).then_some(())
        })
        .await;
        assert_eq!(
            h.reveals(),
            first + 2 * (round as u64 + 1),
            "force-sync {force} read each source once"
        );
        // Later checks read nothing more.
        h.wait_checks("forced", 2).await;
        assert_eq!(h.reveals(), first + 2 * (round as u64 + 1));
    }
}

#[tokio::test]
async fn each_refresh_policy_makes_the_documented_calls() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("policy").await;
    for name in ["periodic", "onchange", "once"] {
        h.create_string(&format!("/app/{name}/password"), "v1");
    }
    h.start_operator(&[]).await;
    let control = h.emulator.control();

    // Periodic: metadata checks every interval, no reveal while nothing changes; a new version
    // is read once.
    h.apply_single(
        "periodic",
        "/app/periodic/password",
        &["refreshInterval: 10s"],
    )
    .await;
    h.wait_condition("periodic", "Ready", "True", Some("Synced"))
        .await;
    control.reset_counters();
    h.wait_checks("periodic", 2).await;
    let checks = calls(&h);
    assert!(checks >= 2, "two checks made {checks} calls");
    assert_eq!(h.reveals(), 0);
    h.put_string("/app/periodic/password", "v2");
    h.wait_secret("periodic", "v2", |d| {
        d.get("password") == Some(&b"v2".to_vec())
    })
    .await;
    assert_eq!(h.reveals(), 1);
    println!("Periodic: {checks} calls for two checks, 1 reveal for a new version");
    h.resources()
        .delete("periodic", &DeleteParams::default())
        .await
        .unwrap();

    // OnChange: nothing at all while the spec and the Secret stay the same, even when a new
    // version is stored; a spec change syncs it.
    h.apply_single(
        "onchange",
        "/app/onchange/password",
        &["refreshInterval: 10s", "refreshPolicy: OnChange"],
    )
    .await;
    h.wait_condition("onchange", "Ready", "True", Some("Synced"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.reset_counters();
    h.put_string("/app/onchange/password", "v2");
    // More than two refresh intervals of a Periodic resource.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(calls(&h), 0, "OnChange called Thalassa without a change");
    assert_eq!(value(&h, "onchange").await.as_deref(), Some("v1"));
    h.apply_single(
        "onchange",
        "/app/onchange/password",
        &["refreshInterval: 20s", "refreshPolicy: OnChange"],
    )
    .await;
    h.wait_secret("onchange", "v2 after a spec change", |d| {
        d.get("password") == Some(&b"v2".to_vec())
    })
    .await;
    assert_eq!(h.reveals(), 1);
    // A force-sync works under OnChange too: one more reveal.
    annotate(&h, "onchange", "1").await;
    wait_for(Duration::from_secs(30), "force-sync handled", || async {
        let ts = h.resources().get("onchange").await.ok()?;
        (ts.status?.force_sync_handled.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert_eq!(h.reveals(), 2);
    println!(
        "OnChange: 0 calls in 12 s without a change; 1 reveal after a spec change, 1 per force-sync"
    );

    // CreatedOnce: never updated, not even on a spec change; created again when deleted.
    h.apply_single(
        "once",
        "/app/once/password",
        &["refreshInterval: 10s", "refreshPolicy: CreatedOnce"],
    )
    .await;
    h.wait_condition("once", "Ready", "True", Some("Synced"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.reset_counters();
    h.put_string("/app/once/password", "v2");
    h.apply_single(
        "once",
        "/app/once/password",
        &["refreshInterval: 20s", "refreshPolicy: CreatedOnce"],
    )
    .await;
    h.wait_condition("once", "Ready", "True", Some("Synced"))
        .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        calls(&h),
        0,
        "CreatedOnce called Thalassa for an existing Secret"
    );
    assert_eq!(value(&h, "once").await.as_deref(), Some("v1"));
    h.secrets()
        .delete("once", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_secret("once", "created again", |d| {
        d.get("password") == Some(&b"v2".to_vec())
    })
    .await;
    assert_eq!(h.reveals(), 1);
    println!("CreatedOnce: 0 calls for an existing Secret; 1 reveal to create it again");
}
