//! Regression tests for the holes adversarial testing found (issue 9): data loss, dishonest
//! status, takeover of Secrets that are not ours, and needless reveals. Each runs the real
//! operator against a real control plane and the Thalassa emulator.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::{Harness, REGION, harness, kubectl, secret_data, wait_for};
use futures::StreamExt;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Secret, ServiceAccount},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use thalassa_emulator::{Access, TokenSpec};

fn keys(secret: &Secret) -> BTreeSet<String> {
    secret_data(secret).into_keys().collect()
}

fn reveals(h: &Harness) -> u64 {
    h.reveals()
}

fn foreign_secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Restricts the operator's token to `globs` (None: full access again).
fn restrict_token(h: &Harness, globs: Option<Vec<&str>>) {
    let access = Access {
        path_globs: globs.map(|g| g.into_iter().map(String::from).collect()),
        ..Access::default()
    };
    h.emulator
        .control()
        .add_token(TokenSpec::bearer(h.emulator.token()).with_access(access))
        .unwrap();
}

/// Item 1: a listing that silently leaves a synced secret out (lost read access, or an empty
/// answer) never removes its key, and neither does a deletion, unless the resource opts in.
#[tokio::test]
async fn a_shrinking_listing_never_empties_a_prefix_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("shrink").await;
    h.create_string("/app/cfg/a", "value-a");
    h.create_string("/app/cfg/b", "value-b");
    h.start_operator(&[]).await;
    let yaml = |policy: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: cfg}}\nspec:\n  refreshInterval: 10s\n  dataFrom: [{{pathPrefix: /app/cfg/}}]\n  target: {{onSourceDeleted: {policy}}}\n"
        )
    };
    h.apply_yaml(&yaml("Retain")).await;
    h.wait_condition("cfg", "Ready", "True", Some("Synced"))
        .await;
    let synced = h.secrets().get("cfg").await.unwrap();
    assert_eq!(keys(&synced), BTreeSet::from(["a".into(), "b".into()]));

    // The token loses read access to b: the listing leaves b out without any error.
    restrict_token(&h, Some(vec!["/app/cfg/a"]));
    let ts = h
        .wait_condition("cfg", "Ready", "False", Some("Forbidden"))
        .await;
    let message = &ts.status.unwrap().conditions[0].message;
    assert!(message.contains("/app/cfg/b"), "{message}");
    let now = h.secrets().get("cfg").await.unwrap();
    assert_eq!(
        secret_data(&now),
        secret_data(&synced),
        "no key was removed"
    );

    // An empty listing (no access at all under the prefix): still nothing removed.
    restrict_token(&h, Some(vec!["/elsewhere/*"]));
    tokio::time::sleep(Duration::from_secs(12)).await;
    let now = h.secrets().get("cfg").await.unwrap();
    assert_eq!(
        secret_data(&now),
        secret_data(&synced),
        "no key was removed"
    );
    let ts = h.resources().get("cfg").await.unwrap();
    assert_eq!(
        status_of(&ts, "Ready"),
        ("False".into(), "Forbidden".into())
    );

    // Access back, b deleted in Thalassa: the key stays, the status names the path.
    restrict_token(&h, None);
    h.emulator
        .control()
        .delete_secret(REGION, "/app/cfg/b")
        .unwrap();
    let ts = h
        .wait_condition("cfg", "Ready", "False", Some("SecretNotFound"))
        .await;
    let message = &ts.status.unwrap().conditions[0].message;
    assert!(
        message.contains("/app/cfg/b") && message.contains("kept"),
        "{message}"
    );
    let now = h.secrets().get("cfg").await.unwrap();
    assert_eq!(
        secret_data(&now),
        secret_data(&synced),
        "no key was removed"
    );

    // Opting in removes exactly the deleted path's key.
    h.apply_yaml(&yaml("Delete")).await;
    h.wait_condition("cfg", "Ready", "True", Some("Synced"))
        .await;
    let now = h.secrets().get("cfg").await.unwrap();
    assert_eq!(keys(&now), BTreeSet::from(["a".into()]));
}

fn status_of(ts: &thalassa_operator::crd::ThalassaSecret, type_: &str) -> (String, String) {
    ts.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// Item 2: an adoption the apiserver would refuse (a Secret's type is immutable) leaves the
/// existing Secret untouched; a valid adoption writes the whole new state in one step.
#[tokio::test]
async fn a_failed_adopt_keeps_the_existing_data() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("adopt").await;
    h.create_string("/app/tls/crt", "cert");
    h.create_string("/app/tls/key", "key");
    h.secrets()
        .create(
            &PostParams::default(),
            &foreign_secret("legacy", "Opaque", &[("old", "keep-me")]),
        )
        .await
        .unwrap();
    h.start_operator(&[]).await;
    let yaml = |type_: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: legacy}}\nspec:\n  data:\n    - {{secretKey: tls.crt, remoteRef: {{path: /app/tls/crt}}}}\n    - {{secretKey: tls.key, remoteRef: {{path: /app/tls/key}}}}\n  target: {{creationPolicy: Adopt, type: {type_}}}\n"
        )
    };
    h.apply_yaml(&yaml("kubernetes.io/tls")).await;
    let ts = h
        .wait_condition("legacy", "Ready", "False", Some("TargetConflict"))
        .await;
    let message = &ts.status.unwrap().conditions[0].message;
    assert!(message.contains("type"), "{message}");
    let secret = h.secrets().get("legacy").await.unwrap();
    assert_eq!(
        secret_data(&secret),
        BTreeMap::from([("old".to_string(), b"keep-me".to_vec())]),
        "the refused adoption touched nothing"
    );

    h.apply_yaml(&yaml("Opaque")).await;
    h.wait_condition("legacy", "Ready", "True", Some("Synced"))
        .await;
    let secret = h.secrets().get("legacy").await.unwrap();
    assert_eq!(
        keys(&secret),
        BTreeSet::from(["tls.crt".into(), "tls.key".into()]),
        "adoption makes the data exactly what the spec renders"
    );
}

/// Item 3: a resource deleted (Retain) and created again under the same name with another
/// mapping gets its own keys, not the old ones.
#[tokio::test]
async fn a_recreated_resource_gets_its_own_mapping() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("recreate").await;
    h.create_string("/app/re/password", "pw");
    h.start_operator(&[]).await;
    h.apply_single("re", "/app/re/password", &["refreshInterval: 10s"])
        .await;
    h.wait_condition("re", "Ready", "True", Some("Synced"))
        .await;
    h.resources()
        .delete("re", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "resource gone", || async {
        h.resources()
            .get_opt("re")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: re}\nspec:\n  refreshInterval: 10s\n  data: [{secretKey: other, remoteRef: {path: /app/re/password}}]\n",
    )
    .await;
    h.wait_secret("re", "only the new mapping's key", |data| {
        data.keys().eq(["other"].iter())
    })
    .await;
    h.wait_condition("re", "Ready", "True", Some("Synced"))
        .await;
}

/// Item 4: Adopt or Merge onto a Secret another ThalassaSecret manages is a conflict, even when
/// both read the same path.
#[tokio::test]
async fn adopt_or_merge_onto_another_resources_secret_is_a_conflict() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("other").await;
    h.create_string("/app/same/password", "pw");
    h.start_operator(&[]).await;
    h.apply_single("first", "/app/same/password", &["target: {name: shared}"])
        .await;
    h.wait_condition("first", "Ready", "True", Some("Synced"))
        .await;
    let before = h.secrets().get("shared").await.unwrap();
    for policy in ["Adopt", "Merge"] {
        let name = format!("second-{}", policy.to_lowercase());
        h.apply_yaml(&format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n  data: [{{secretKey: mine, remoteRef: {{path: /app/same/password}}}}]\n  target: {{name: shared, creationPolicy: {policy}}}\n"
        ))
        .await;
        h.wait_condition(&name, "Ready", "False", Some("TargetConflict"))
            .await;
    }
    let after = h.secrets().get("shared").await.unwrap();
    assert_eq!(secret_data(&after), secret_data(&before));
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
}

/// Item 5: a key collision that comes from Thalassa's content is re-checked: once fixed in
/// Thalassa, the resource syncs again without a spec change.
#[tokio::test]
async fn a_collision_fixed_in_thalassa_recovers() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("collide").await;
    h.create_string("/app/col/a_b", "one");
    h.create_string("/app/col/a/b", "two");
    h.start_operator(&[]).await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: col}\nspec:\n  refreshInterval: 10s\n  dataFrom: [{pathPrefix: /app/col/}]\n",
    )
    .await;
    h.wait_condition("col", "Ready", "False", Some("TargetKeyConflict"))
        .await;
    h.emulator
        .control()
        .delete_secret(REGION, "/app/col/a/b")
        .unwrap();
    h.wait_condition("col", "Ready", "True", Some("Synced"))
        .await;
    h.wait_secret("col", "the surviving key", |data| {
        data.get("a_b").map(Vec::as_slice) == Some(b"one".as_slice())
    })
    .await;
}

/// Item 8: the operator's own data-hash key Secret is never a target; a malformed one is
/// replaced at start instead of crash-looping.
#[tokio::test]
async fn the_operators_key_secret_is_never_a_target_and_recovers_when_malformed() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("hashkey").await;
    h.create_string("/app/hk/password", "pw");
    let name = "thalassa-secrets-operator-hash-key";
    h.secrets()
        .create(
            &PostParams::default(),
            &foreign_secret(name, "Opaque", &[("key", "short")]),
        )
        .await
        .unwrap();
    h.start_operator(&[]).await;
    let recovered = h.secrets().get(name).await.unwrap();
    let key = secret_data(&recovered).remove("key").unwrap();
    assert!(key.len() >= 32, "a malformed key is replaced");

    for policy in ["Merge", "Adopt"] {
        let ts = format!("steal-{}", policy.to_lowercase());
        h.apply_yaml(&format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {ts}}}\nspec:\n  data: [{{secretKey: key, remoteRef: {{path: /app/hk/password}}}}]\n  target: {{name: {name}, creationPolicy: {policy}}}\n"
        ))
        .await;
        h.wait_condition(&ts, "Ready", "False", Some("TargetConflict"))
            .await;
    }
    let after = h.secrets().get(name).await.unwrap();
    assert_eq!(secret_data(&after).remove("key").unwrap(), key);
    assert_eq!(
        after.metadata.resource_version,
        recovered.metadata.resource_version
    );
}

/// Item 9: a service-account token Secret is never written, whatever the policy.
#[tokio::test]
async fn service_account_token_secrets_are_never_targets() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("satoken").await;
    h.create_string("/app/sa/token", "not-a-token");
    let sas: Api<ServiceAccount> = Api::namespaced(h.client.clone(), h.ns());
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "builder"}})).unwrap(),
    )
    .await
    .unwrap();
    let mut token = foreign_secret(
        "builder-token",
        "kubernetes.io/service-account-token",
        &[("token", "original")],
    );
    token.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/service-account.name".into(),
        "builder".into(),
    )]));
    let created = h
        .secrets()
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    h.start_operator(&[]).await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: sa}\nspec:\n  data: [{secretKey: token, remoteRef: {path: /app/sa/token}}]\n  target: {name: builder-token, creationPolicy: Merge}\n",
    )
    .await;
    let ts = h
        .wait_condition("sa", "Ready", "False", Some("TargetConflict"))
        .await;
    let message = &ts.status.unwrap().conditions[0].message;
    assert!(
        message.contains("kubernetes.io/service-account-token"),
        "{message}"
    );
    let after = h.secrets().get("builder-token").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        created.metadata.resource_version
    );
}

/// A Secret's name and keys as one watch event showed them.
type SecretVersion = (String, BTreeSet<String>);

/// Item 10: two resources created together on one target: exactly one writes, the other never
/// writes its data and reports the conflict. Several pairs race at once, so a lost race is likely
/// to happen at least once (the old code wrote both in about one pair in four).
#[tokio::test]
async fn two_resources_racing_for_one_target_only_one_writes() {
    let _turn = crate::common::area_turn(module_path!()).await;
    const PAIRS: usize = 4;
    let mut h = harness("race").await;
    for pair in 0..PAIRS {
        h.create_string(&format!("/app/race/{pair}/one"), "first");
        h.create_string(&format!("/app/race/{pair}/two"), "second");
    }
    h.start_operator(&[]).await;
    // Every version of every contested Secret the apiserver ever holds, by name and keys.
    let seen: Arc<Mutex<Vec<SecretVersion>>> = Arc::default();
    let recorder = seen.clone();
    let watch = watcher(h.secrets(), watcher::Config::default())
        .applied_objects()
        .for_each(move |secret| {
            if let Ok(secret) = secret {
                let name = secret.metadata.name.clone().unwrap_or_default();
                if name.starts_with("contested-") {
                    recorder.lock().unwrap().push((name, keys(&secret)));
                }
            }
            futures::future::ready(())
        });
    let watch = tokio::spawn(watch);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spec = |pair: usize, side: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: p{pair}-{side}}}\nspec:\n  data: [{{secretKey: {side}, remoteRef: {{path: /app/race/{pair}/{side}}}}}]\n  target: {{name: contested-{pair}}}\n"
        )
    };
    let docs: Vec<String> = (0..PAIRS)
        .flat_map(|pair| [spec(pair, "one"), spec(pair, "two")])
        .collect();
    futures::future::join_all(docs.iter().map(|doc| h.apply_yaml(doc))).await;
    let mut winners = BTreeMap::new();
    for pair in 0..PAIRS {
        let winner = wait_for(
            Duration::from_secs(60),
            "one winner, one conflict",
            || async {
                let mut states = Vec::new();
                for side in ["one", "two"] {
                    let ts = h.resources().get(&format!("p{pair}-{side}")).await.ok()?;
                    let state = status_of(&ts, "Ready");
                    if state.0.is_empty() {
                        return None;
                    }
                    states.push((side, state));
                }
                let won: Vec<&str> = states
                    .iter()
                    .filter(|(_, s)| s.0 == "True")
                    .map(|(n, _)| *n)
                    .collect();
                let lost = states
                    .iter()
                    .filter(|(_, s)| s.1 == "TargetConflict")
                    .count();
                (won.len() == 1 && lost == 1).then(|| won[0].to_string())
            },
        )
        .await;
        winners.insert(format!("contested-{pair}"), winner);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    for (name, winner) in &winners {
        let loser = if winner == "one" { "two" } else { "one" };
        let versions: Vec<&BTreeSet<String>> = seen
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, k)| k)
            .collect();
        assert!(!versions.is_empty(), "the watch saw {name}");
        assert!(
            versions.iter().all(|k| !k.contains(loser)),
            "{name}: the loser's key was never written: {versions:?}"
        );
    }
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "json"], None).await;
    assert!(ok, "{events}");
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let created = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "SecretCreated")
        .count();
    // A first sync is said by the status alone, so neither side claims a creation.
    assert_eq!(created, 0, "no SecretCreated Event for a first sync");
}

/// Item 11: a Secret the operator created is repaired when someone strips its managed-by label
/// and owner annotation (ownership is recorded by UID in status), and a key injected into an
/// Owner-managed Secret is removed.
#[tokio::test]
async fn stripped_ownership_and_injected_keys_are_repaired() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("strip").await;
    h.create_string("/app/strip/password", "pw");
    h.start_operator(&[]).await;
    h.apply_single("strip", "/app/strip/password", &["refreshInterval: 10s"])
        .await;
    h.wait_condition("strip", "Ready", "True", Some("Synced"))
        .await;
    let patch = serde_json::json!({"metadata": {
        "labels": {"app.kubernetes.io/managed-by": null},
        "annotations": {"secrets.thalassa.cloud/owner": null},
    }});
    h.secrets()
        .patch("strip", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(Duration::from_secs(40), "ownership restored", || async {
        let s = h.secrets().get("strip").await.ok()?;
        let labelled = s
            .metadata
            .labels
            .as_ref()?
            .get("app.kubernetes.io/managed-by")
            .is_some();
        let annotated = s
            .metadata
            .annotations
            .as_ref()?
            .get("secrets.thalassa.cloud/owner")
            .is_some();
        (labelled && annotated).then_some(())
    })
    .await;
    h.wait_condition("strip", "Ready", "True", Some("Synced"))
        .await;

    let inject = serde_json::json!({"data": {"injected": "aGk="}});
    h.secrets()
        .patch("strip", &PatchParams::default(), &Patch::Merge(&inject))
        .await
        .unwrap();
    h.wait_secret("strip", "injected key removed", |data| {
        data.keys().eq(["password"].iter())
    })
    .await;
    h.wait_condition("strip", "Ready", "True", Some("Synced"))
        .await;
}

/// Item 12: restarts reveal nothing when nothing changed (reconciles wait for both caches).
#[tokio::test]
async fn restarts_reveal_nothing_when_nothing_changed() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("restart").await;
    for i in 0..5 {
        h.create_string(&format!("/app/rs/s{i}"), &format!("v{i}"));
    }
    h.start_operator(&[]).await;
    for i in 0..5 {
        h.apply_single(&format!("r{i}"), &format!("/app/rs/s{i}"), &[])
            .await;
    }
    for i in 0..5 {
        h.wait_condition(&format!("r{i}"), "Ready", "True", Some("Synced"))
            .await;
    }
    let before = reveals(&h);
    for round in 0..4 {
        h.stop_operator().await;
        h.start_operator(&[]).await;
        // Every resource is reconciled at start; give it time to finish.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(reveals(&h), before, "restart {round} revealed a value");
    }
}

/// Items 14 and 16: a spec that passes admission but can never be served (data over 1 MiB, a
/// dockerconfigjson that is not JSON) is reported once and costs no reveal afterwards while
/// nothing changes; no status, Event or log line quotes the data.
#[tokio::test]
async fn unservable_specs_cost_no_reveals_and_quote_no_data() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("unservable").await;
    let block = "x".repeat(4096);
    for i in 0..260 {
        h.create_string(&format!("/app/big/s{i:03}"), &block);
    }
    h.create_string("/app/docker/config", "QCANARY-not-json-7f3a");
    h.start_operator(&[
        "--thalassa-rate-limit",
        "1000",
        "--thalassa-rate-burst",
        "300",
    ])
    .await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: big}\nspec:\n  refreshInterval: 10s\n  dataFrom: [{pathPrefix: /app/big/}]\n",
    )
    .await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: docker}\nspec:\n  refreshInterval: 10s\n  data: [{secretKey: .dockerconfigjson, remoteRef: {path: /app/docker/config}}]\n  target: {type: kubernetes.io/dockerconfigjson}\n",
    )
    .await;
    h.wait_condition("big", "Ready", "False", Some("SecretTooLarge"))
        .await;
    h.wait_condition("docker", "Ready", "False", Some("SourceFormatMismatch"))
        .await;
    let after_first = reveals(&h);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        reveals(&h),
        after_first,
        "nothing changed, so nothing was revealed again"
    );
    for name in ["big", "docker"] {
        assert!(h.secrets().get_opt(name).await.unwrap().is_none());
    }
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok, "{events}");
    let (ok, resources) = kubectl(&["get", "tsec", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok, "{resources}");
    for (what, text) in [
        ("events", events),
        ("status", resources),
        ("log", h.operator_log()),
    ] {
        assert!(!text.contains("CANARY"), "{what} quotes the value");
        assert!(!text.contains("xxxxxxxx"), "{what} quotes a value");
    }

    // A new version that fixes the content is picked up without a spec change.
    h.put_string("/app/docker/config", r#"{"auths":{}}"#);
    h.wait_condition("docker", "Ready", "True", Some("Synced"))
        .await;
}

/// The admission rules added for items 7, 14 and 15, through the real apiserver.
#[tokio::test]
async fn traversal_and_unservable_specs_are_rejected_at_admission() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("admit2").await;
    let cases = [
        (
            r#"data: [{secretKey: a, remoteRef: {path: "/team-a/../team-b/db"}}]"#,
            "'.' or '..'",
        ),
        (
            r#"data: [{secretKey: a, remoteRef: {path: "/team-a/./db"}}]"#,
            "'.' or '..'",
        ),
        (
            r#"data: [{secretKey: a, remoteRef: {path: "/team-a/.."}}]"#,
            "'.' or '..'",
        ),
        (r#"dataFrom: [{pathPrefix: "/a/../"}]"#, "'.' or '..'"),
        (r#"dataFrom: [{path: "/a/./b"}]"#, "'.' or '..'"),
        (
            r#"data: [{secretKey: "..", remoteRef: {path: "/a"}}]"#,
            "secretKey must not be",
        ),
        (
            r#"data: [{secretKey: ".", remoteRef: {path: "/a"}}]"#,
            "secretKey must not be",
        ),
        (
            r#"{target: {labels: {"bad key!": x}}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "target.labels",
        ),
        (
            r#"{target: {labels: {ok: "bad value!"}}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "target.labels",
        ),
        (
            r#"{target: {labels: {"secrets.thalassa.cloud/owner": x}}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "operator's own",
        ),
        (
            r#"{target: {annotations: {"-bad": x}}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "target.annotations",
        ),
    ];
    for (spec, expected) in cases {
        common::assert_rejected(h.ns(), spec, spec, expected).await;
    }
    // Valid labels and annotations pass.
    let good = format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: good, namespace: {}}}\nspec: {{target: {{labels: {{app.example.com/tier: db, plain: \"\"}}, annotations: {{example.com/note: \"any text, even with spaces\"}}}}, data: [{{secretKey: a, remoteRef: {{path: /a/.hidden/b...c}}}}]}}\n",
        h.ns()
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&good)).await;
    assert!(ok, "{out}");

    // target.name can be neither added nor removed after creation (item 15).
    let doc = |target: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {{NAME}}, namespace: {}}}\nspec: {{target: {target}, data: [{{secretKey: a, remoteRef: {{path: /a}}}}]}}\n",
            h.ns()
        )
    };
    let unnamed = doc("{}").replace("{NAME}", "add");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&unnamed)).await;
    assert!(ok, "{out}");
    let added = doc("{name: other}").replace("{NAME}", "add");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&added)).await;
    assert!(
        !ok && out.contains("target.name is immutable"),
        "adding: {out}"
    );

    let named = doc("{name: fixed}").replace("{NAME}", "remove");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&named)).await;
    assert!(ok, "{out}");
    let removed = doc("{}").replace("{NAME}", "remove");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&removed)).await;
    assert!(
        !ok && out.contains("target.name is immutable"),
        "removing: {out}"
    );
}
