//! Deleting a namespace full of synced resources: the operator must not fight the namespace
//! controller (no re-creates, retries, Warning Events or WARN lines), and the namespace must go
//! about as fast as one holding the same number of plain Secrets.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::common::{harness, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};

const RESOURCES: usize = 200;
/// Resources held by the test's finalizer while their namespace terminates.
const HELD: usize = 10;
/// The test's finalizer.
const HOLD: &str = "tests.thalassa.cloud/hold";

/// Sets `metadata.finalizers` of the first [`HELD`] resources.
async fn set_held_finalizers(
    resources: &Api<thalassa_operator::crd::ThalassaSecret>,
    finalizers: serde_json::Value,
) {
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers}});
    for i in 0..HELD {
        resources
            .patch(
                &format!("r{i:03}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }
}

/// Deletes `name` and returns how long until the apiserver no longer has it.
async fn delete_namespace_and_wait(namespaces: &Api<Namespace>, name: &str) -> Duration {
    let start = Instant::now();
    namespaces
        .delete(name, &DeleteParams::background())
        .await
        .expect("namespace delete accepted");
    wait_for(Duration::from_secs(180), "namespace gone", || async {
        namespaces.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test]
async fn deleting_a_namespace_is_not_fought() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("teardown").await;
    for i in 0..RESOURCES {
        h.create_string(&format!("/app/td/s{i:03}"), "value");
    }
    h.start_operator(&[
        "--thalassa-rate-limit",
        "1000",
        "--thalassa-rate-burst",
        "500",
    ])
    .await;
    for chunk in (0..RESOURCES).collect::<Vec<_>>().chunks(20) {
        let h = &h;
        futures::future::join_all(chunk.iter().map(|i| async move {
            let (name, path) = (format!("r{i:03}"), format!("/app/td/s{i:03}"));
            h.apply_single(&name, &path, &[]).await
        }))
        .await;
    }
    let resources = h.resources();
    wait_for(Duration::from_secs(120), "every resource Ready", || async {
        let list = resources.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|ts| {
                ts.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        (ready == RESOURCES).then_some(())
    })
    .await;

    // The baseline: the same number of plain Secrets in a namespace of their own.
    let control_plane = testenv::ControlPlane::shared();
    let plain = control_plane.temp_namespace("plain").await;
    let plain_secrets: Api<Secret> = Api::namespaced(h.client.clone(), plain.name());
    for chunk in (0..RESOURCES).collect::<Vec<_>>().chunks(20) {
        futures::future::join_all(chunk.iter().map(|i| {
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("r{i:03}")},
                "stringData": {"password": "value"},
            }))
            .unwrap();
            let api = plain_secrets.clone();
            async move { api.create(&PostParams::default(), &secret).await.unwrap() }
        }))
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let plain_time = delete_namespace_and_wait(&namespaces, plain.name()).await;

    // Warning Events are deleted with the namespace: record them as they are written.
    let warnings: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = warnings.clone();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(h.client.clone(), h.ns());
    let watch = tokio::spawn(
        watcher(events, watcher::Config::default())
            .applied_objects()
            .for_each(move |event| {
                if let Ok(event) = event
                    && event.type_.as_deref() == Some("Warning")
                {
                    recorder
                        .lock()
                        .unwrap()
                        .push(format!("{:?} {:?}", event.reason, event.note));
                }
                futures::future::ready(())
            }),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log_before = h.operator_log().len();
    // A few resources are held by a finalizer of the test, so they outlive their Secrets and the
    // operator surely faces a terminating namespace (otherwise whether it does depends on the
    // order in which the namespace controller deletes kinds).
    set_held_finalizers(&resources, serde_json::json!([HOLD])).await;
    let secrets = h.secrets();
    let start = Instant::now();
    namespaces
        .delete(h.ns(), &DeleteParams::background())
        .await
        .unwrap();
    wait_for(Duration::from_secs(180), "every Secret deleted", || async {
        let list = secrets.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|s| s.type_.as_deref() != Some("Opaque"))
            .then_some(())
    })
    .await;
    let until_secrets_gone = start.elapsed();
    // Time for the operator to react to the deletions of the held resources' Secrets.
    tokio::time::sleep(Duration::from_secs(4)).await;
    set_held_finalizers(&resources, serde_json::Value::Null).await;
    let released = Instant::now();
    wait_for(Duration::from_secs(180), "namespace gone", || async {
        namespaces
            .get_opt(h.ns())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // The hold is the test's, not the operator's: leave it out of the time.
    let managed_time = until_secrets_gone + released.elapsed();
    watch.abort();
    println!(
        "namespace deletion with {RESOURCES} resources: {:.1} s; with {RESOURCES} plain Secrets: {:.1} s",
        managed_time.as_secs_f64(),
        plain_time.as_secs_f64()
    );
    assert!(
        managed_time <= plain_time * 2 + Duration::from_secs(2),
        "the namespace took {managed_time:?}, plain Secrets {plain_time:?}"
    );
    let warnings = warnings.lock().unwrap().clone();
    assert!(warnings.is_empty(), "Warning Events: {warnings:?}");
    let log = h.operator_log();
    let warn_lines: Vec<&str> = log[log_before..]
        .lines()
        // Not " WARN ": with colour codes the level is wrapped in escapes.
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warn_lines.is_empty(), "WARN lines: {warn_lines:#?}");
    assert!(
        !log.contains("\u{1b}["),
        "the plain log format writes no ANSI colour codes into a file"
    );
    h.stop_operator().await;
}
