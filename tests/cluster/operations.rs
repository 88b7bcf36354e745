//! Operations on the real control plane: the metrics page after a sync, store condition metrics
//! from stalled to ready to deleted, leader election with two processes (one writer, failover on
//! crash and on SIGTERM), prompt graceful shutdown, and two shards side by side (`--selector`).

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Harness, Operator, harness, wait_for};

async fn apply(h: &Harness, name: &str) {
    h.apply_single(name, "/app/ops/password", &["refreshInterval: 10s"])
        .await;
}

fn metric_value(page: &str, line_prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_page_after_a_sync() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("metrics").await;
    h.create_string("/app/ops/password", "metrics-value");
    h.start_operator(&[]).await;
    apply(&h, "db").await;
    h.wait_condition("db", "Ready", "True", Some("Synced"))
        .await;
    let operator = h.operator.as_ref().unwrap();
    let wanted =
        r#"thalassa_operator_resources{condition="Ready",status="True",reason="Synced"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, page) = loop {
        let (status, page) = operator.get("/metrics").await.expect("metrics answer");
        if page.contains(wanted) {
            break (status, page);
        }
        assert!(Instant::now() < deadline, "no {wanted} in\n{page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, 200);
    println!("---- sample /metrics after one sync ----\n{page}");
    assert!(metric_value(&page, "thalassa_operator_reconcile_runs_total").unwrap() >= 1.0);
    assert_eq!(
        metric_value(&page, "thalassa_operator_thalassa_reveals_total"),
        Some(1.0)
    );
    assert!(
        metric_value(&page, "thalassa_operator_thalassa_metadata_requests_total").unwrap() >= 2.0
    );
    assert!(page.contains(
        r#"thalassa_operator_thalassa_requests_total{operation="getSecretValue",status="200"} 1"#
    ));
    assert!(page.contains("thalassa_operator_thalassa_request_duration_seconds_bucket{"));
    let last_check = metric_value(
        &page,
        &format!(r#"thalassa_operator_last_successful_check_timestamp_seconds{{namespace="{}",name="db"}}"#, h.ns()),
    )
    .expect("per-resource staleness gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last_check).abs() < 60.0,
        "last check {last_check} vs now {now}"
    );
    assert_eq!(
        metric_value(&page, "thalassa_operator_leader"),
        Some(0.0),
        "no election: not a leader"
    );
    assert!(!page.contains("metrics-value"));
    assert!(
        !page.contains("/app/ops/password"),
        "paths are never labels"
    );
    // Errors are counted by reason.
    h.emulator.control().set_feature_gates(false, true);
    h.wait_condition("db", "Ready", "False", Some("SecretsFeatureDisabled"))
        .await;
    let (_, page) = operator.get("/metrics").await.unwrap();
    assert!(
        page.contains(
            r#"thalassa_operator_reconcile_errors_total{reason="SecretsFeatureDisabled"}"#
        ),
        "{page}"
    );
    assert!(page.contains(r#"thalassa_operator_resources{condition="SecretsFeatureEnabled",status="False",reason="FeatureDisabled"} 1"#));
}

/// The `thalassa_operator_store_condition` lines of one store on a metrics page.
fn store_series(page: &str, namespace: &str, name: &str) -> Vec<String> {
    let store = format!(
        r#"thalassa_operator_store_condition{{kind="ThalassaSecretStore",namespace="{namespace}",name="{name}","#
    );
    page.lines()
        .filter(|l| l.starts_with(&store))
        .map(|l| l[store.len()..].to_string())
        .collect()
}

#[tokio::test]
async fn store_condition_metrics_follow_the_store() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("store-metrics").await;
    h.start_operator(&[]).await;
    let ns = h.ns().to_string();
    let kubectl_ok = |args: Vec<String>, stdin: Option<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = common::kubectl(&args, stdin.as_deref()).await;
        assert!(ok, "kubectl {args:?}: {out}");
    };
    let store = serde_json::json!({
        "apiVersion": "secrets.thalassa.cloud/v1alpha1",
        "kind": "ThalassaSecretStore",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {
            "organisation": h.emulator.organisation(),
            "auth": {"tokenSecretRef": {"name": "team-token"}},
        },
    });
    let apply = || vec!["apply".to_string(), "-f".into(), "-".into()];
    kubectl_ok(apply(), Some(store.to_string())).await;
    let operator = h.operator.as_ref().unwrap();
    let page_where = |what: &'static str, wanted: fn(&[String]) -> bool| {
        let ns = ns.clone();
        async move {
            wait_for(Duration::from_secs(90), what, || async {
                let (_, page) = operator.get("/metrics").await?;
                wanted(&store_series(&page, &ns, "team")).then_some(page)
            })
            .await
        }
    };

    // The token Secret is missing: Stalled, one series per condition type.
    let page = page_where("the store stalled", |series| {
        series
            .iter()
            .any(|l| l == r#"condition="Stalled",status="True",reason="CheckFailed"} 1"#)
    })
    .await;
    let series = store_series(&page, &ns, "team");
    for wanted in [
        r#"condition="Ready",status="False",reason="CheckFailed"} 1"#,
        r#"condition="Reconciling",status="False",reason="CheckFailed"} 1"#,
        r#"condition="CredentialsValid",status="False",reason="CheckFailed"} 1"#,
        r#"condition="KmsFeatureEnabled",status="Unknown",reason="NotChecked"} 1"#,
    ] {
        assert!(
            series.iter().any(|l| l == wanted),
            "{wanted} in {series:#?}"
        );
    }
    assert_eq!(
        series.len(),
        7,
        "one series per condition type: {series:#?}"
    );

    // Fixed: the old statuses' series are gone, not left at 0.
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "team-token", "namespace": ns},
        "stringData": {"token": h.emulator.token()},
    });
    kubectl_ok(apply(), Some(secret.to_string())).await;
    kubectl_ok(
        [
            "annotate",
            "--overwrite",
            "thalassasecretstore",
            "team",
            "-n",
            &ns,
            "checked=now",
        ]
        .map(String::from)
        .to_vec(),
        None,
    )
    .await;
    let page = page_where("the store ready", |series| {
        series
            .iter()
            .any(|l| l == r#"condition="Ready",status="True",reason="Verified"} 1"#)
    })
    .await;
    let series = store_series(&page, &ns, "team");
    assert_eq!(series.len(), 7, "{series:#?}");
    assert!(
        series.iter().all(|l| l.contains(r#"reason="Verified"} 1"#)),
        "only the current statuses: {series:#?}"
    );
    assert!(
        !page.contains(h.emulator.token()),
        "a token on the metrics page"
    );

    // Deleted: its series go (the pruner runs every minute).
    kubectl_ok(
        ["delete", "thalassasecretstore", "team", "-n", &ns]
            .map(String::from)
            .to_vec(),
        None,
    )
    .await;
    page_where("the deleted store's series gone", <[String]>::is_empty).await;
    h.stop_operator().await;
}

async fn is_leader(op: &Operator) -> bool {
    match op.get("/metrics").await {
        Some((_, page)) => metric_value(&page, "thalassa_operator_leader") == Some(1.0),
        None => false,
    }
}

fn wrote_secrets(op: &Operator) -> usize {
    op.log_text().matches("wrote Secret").count()
}

#[tokio::test]
async fn leader_election_one_writer_and_failover() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("leader").await;
    h.create_string("/app/ops/password", "v1");
    let args = [
        "--leader-election",
        "--lease-duration",
        "6s",
        "--lease-name",
        "ops-test",
    ];
    let a = h.spawn_operator(&args, "a.log").await;
    let b = h.spawn_operator(&args, "b.log").await;
    wait_for(Duration::from_secs(30), "a leader", || async {
        (is_leader(&a).await || is_leader(&b).await).then_some(())
    })
    .await;
    let (leader, follower) = if is_leader(&a).await { (a, b) } else { (b, a) };
    assert!(!is_leader(&follower).await, "exactly one leader");

    apply(&h, "first").await;
    h.wait_condition("first", "Ready", "True", Some("Synced"))
        .await;
    assert_eq!(wrote_secrets(&leader), 1, "the leader wrote the Secret");
    assert_eq!(wrote_secrets(&follower), 0, "the follower writes nothing");
    assert!(
        !follower.log_text().contains("reconcile{"),
        "the follower does not reconcile"
    );

    // Crash the leader (SIGKILL: no release). The follower takes over when the lease expires.
    let crashed = Instant::now();
    leader.kill().await;
    wait_for(Duration::from_secs(30), "failover", || async {
        is_leader(&follower).await.then_some(())
    })
    .await;
    let failover = crashed.elapsed();
    println!("failover after a crash: {failover:?} (lease duration 6s)");
    assert!(failover < Duration::from_secs(20), "{failover:?}");
    apply(&h, "second").await;
    h.wait_condition("second", "Ready", "True", Some("Synced"))
        .await;
    assert_eq!(
        wrote_secrets(&follower),
        1,
        "the new leader wrote the new Secret"
    );
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_promptly() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("shutdown").await;
    h.create_string("/app/ops/password", "v1");
    let args = [
        "--leader-election",
        "--lease-duration",
        "8s",
        "--lease-name",
        "ops-shutdown",
    ];
    let mut first = h.spawn_operator(&args, "first.log").await;
    wait_for(Duration::from_secs(30), "first leads", || async {
        is_leader(&first).await.then_some(())
    })
    .await;
    let second = h.spawn_operator(&args, "second.log").await;
    apply(&h, "db").await;
    h.wait_condition("db", "Ready", "True", Some("Synced"))
        .await;

    let stopping = Instant::now();
    first.terminate();
    let status = tokio::time::timeout(Duration::from_secs(10), first.child.wait())
        .await
        .expect("the operator exits within 10s of SIGTERM")
        .unwrap();
    let exit = stopping.elapsed();
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        first.log_text()
    );
    assert!(
        first.log_text().contains("released the leader lease"),
        "{}",
        first.log_text()
    );
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(h.client.clone(), h.ns());
    let lease = leases.get("ops-shutdown").await.unwrap();
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.is_empty() || holder == "second",
        "the lease was released, holder now {holder:?}"
    );
    // The follower takes the lease at its next check, at most one lease duration later.
    wait_for(Duration::from_secs(15), "handover to second", || async {
        is_leader(&second).await.then_some(())
    })
    .await;
    let handover = stopping.elapsed();
    println!("SIGTERM: exit after {exit:?}, handover after {handover:?} (lease duration 8s)");
    assert!(exit < Duration::from_secs(5), "{exit:?}");
}

/// The resources a shard has checked, from its last-check gauge series.
async fn checked_by(op: &Operator, namespace: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!(
        "thalassa_operator_last_successful_check_timestamp_seconds{{namespace=\"{namespace}\",name=\""
    );
    let page = op.get("/metrics").await.map(|(_, p)| p).unwrap_or_default();
    page.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The test stores whose status a shard writes (its store-condition series).
async fn stores_of(op: &Operator, namespace: &str) -> Vec<&'static str> {
    let (_, page) = op.get("/metrics").await.unwrap_or_default();
    ["store-a", "store-rest"]
        .into_iter()
        .filter(|name| !store_series(&page, namespace, name).is_empty())
        .collect()
}

/// A ThalassaSecret labelled for a shard (no label: `None`), optionally writing another name.
async fn apply_sharded(h: &Harness, name: &str, shard: Option<&str>, target: Option<&str>) {
    let labels = shard.map_or(String::new(), |s| format!(", labels: {{shard: {s}}}"));
    let target = target.map_or(String::new(), |t| format!("  target: {{name: {t}}}\n"));
    h.apply_yaml(&format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}{labels}}}\nspec:\n  data: [{{secretKey: password, remoteRef: {{path: /app/shard/{name}}}}}]\n{target}"
    ))
    .await;
}

#[tokio::test]
async fn two_shards_split_resources_disjointly_and_never_fight_over_a_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    use std::collections::BTreeSet;
    let h = harness("shards").await;
    let names = ["a0", "a1", "a2", "b0", "u0"];
    for name in names.iter().chain(&["intruder"]) {
        h.create_string(&format!("/app/shard/{name}"), &format!("value-{name}"));
    }
    let shard = |selector: &'static str, lease: &'static str| {
        [
            "--selector",
            selector,
            "--leader-election",
            "--lease-duration",
            "6s",
            "--lease-name",
            lease,
        ]
    };
    // A catch-all shard (`notin`) makes the split complete by construction.
    let a = h
        .spawn_operator(&shard("shard=a", "shard-a"), "shard-a.log")
        .await;
    let b = h
        .spawn_operator(&shard("shard notin (a)", "shard-b"), "shard-b.log")
        .await;
    wait_for(Duration::from_secs(30), "both shards lead", || async {
        (is_leader(&a).await && is_leader(&b).await).then_some(())
    })
    .await;

    for (name, label) in [
        ("a0", Some("a")),
        ("a1", Some("a")),
        ("a2", Some("a")),
        ("b0", Some("b")),
        ("u0", None),
    ] {
        apply_sharded(&h, name, label, None).await;
    }
    for name in names {
        h.wait_condition(name, "Ready", "True", Some("Synced"))
            .await;
    }
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    wait_for(
        Duration::from_secs(20),
        "each shard checked its own",
        || async {
            (checked_by(&a, h.ns()).await == set(&["a0", "a1", "a2"])
                && checked_by(&b, h.ns()).await == set(&["b0", "u0"]))
            .then_some(())
        },
    )
    .await;
    // A store's status belongs to the shard its labels select: a's store to a, an unlabelled one
    // to the catch-all shard b; never to both.
    for (store, labels) in [
        ("store-a", serde_json::json!({"shard": "a"})),
        ("store-rest", serde_json::json!({})),
    ] {
        let store = serde_json::json!({
            "apiVersion": "secrets.thalassa.cloud/v1alpha1",
            "kind": "ThalassaSecretStore",
            "metadata": {"name": store, "namespace": h.ns(), "labels": labels},
            "spec": {
                "organisation": h.emulator.organisation(),
                "auth": {"tokenSecretRef": {"name": "missing-token"}},
            },
        });
        let (ok, out) = common::kubectl(&["apply", "-f", "-"], Some(&store.to_string())).await;
        assert!(ok, "{out}");
    }
    wait_for(
        Duration::from_secs(60),
        "each store's status by its shard",
        || async {
            (stores_of(&a, h.ns()).await == ["store-a"]
                && stores_of(&b, h.ns()).await == ["store-rest"])
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        wrote_secrets(&a),
        3,
        "shard a wrote exactly its three Secrets"
    );
    assert_eq!(
        wrote_secrets(&b),
        2,
        "shard b wrote exactly its two Secrets"
    );

    // A resource of shard b aiming at shard a's Secret is refused, not fought over.
    apply_sharded(&h, "intruder", Some("b"), Some("a0")).await;
    h.wait_condition("intruder", "Ready", "False", Some("TargetConflict"))
        .await;
    let versions = || async {
        let list = h
            .secrets()
            .list_metadata(&kube::api::ListParams::default())
            .await
            .unwrap();
        list.items
            .into_iter()
            .map(|s| {
                (
                    s.metadata.name.unwrap(),
                    s.metadata.resource_version.unwrap(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = versions().await;
    // Two checks of each shard's resources later (10 s refresh), no Secret was written again.
    for (op, name) in [(&a, "a0"), (&b, "b0")] {
        op.wait_checks(h.ns(), name, 2).await;
    }
    assert_eq!(
        versions().await,
        before,
        "no Secret was rewritten by either shard"
    );
    assert_eq!(
        common::secret_data(&h.secrets().get("a0").await.unwrap())["password"],
        b"value-a0"
    );

    // Moving a resource to the other shard: the new shard takes it over without a reveal (the
    // Secret is intact and written for this spec), the old one lets go.
    let reveals = h.reveals();
    let wrote_before = wrote_secrets(&b);
    let patch = serde_json::json!({"metadata": {"labels": {"shard": "b"}}});
    let moved = h
        .resources()
        .patch(
            "a2",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let a_last = a.last_check(h.ns(), "a2").await;
    wait_for(Duration::from_secs(30), "shard b checks a2", || async {
        checked_by(&b, h.ns()).await.contains("a2").then_some(())
    })
    .await;
    // Two more checks by b: a has let go by then (its last check of a2 stands still).
    b.wait_checks(h.ns(), "a2", 2).await;
    let a_now = a.last_check(h.ns(), "a2").await;
    assert!(
        a_now.is_none() || a_now == a_last,
        "shard a stopped checking a2: {a_last:?} then {a_now:?}"
    );
    assert_eq!(h.reveals(), reveals, "taking over costs no reveal");
    assert_eq!(wrote_secrets(&b), wrote_before, "nor a Secret write");
    assert_eq!(
        h.resources()
            .get("a2")
            .await
            .unwrap()
            .metadata
            .resource_version,
        moved.metadata.resource_version,
        "nor a status write: the conditions of the last reveal stand"
    );
    assert_eq!(
        common::secret_data(&h.secrets().get("a2").await.unwrap())["password"],
        b"value-a2"
    );
    assert_eq!(wrote_secrets(&a), 3, "shard a wrote nothing more");
}

#[tokio::test]
async fn an_invalid_selector_stops_the_operator_at_start_with_the_api_servers_message() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("bad-selector").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_thalassa-secrets-operator"))
        .env(
            "KUBECONFIG",
            testenv::ControlPlane::shared().kubeconfig_path(),
        )
        .args([
            "--selector",
            "shard in (a",
            "--operator-namespace",
            h.ns(),
            "--metrics-addr",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid --selector \"shard in (a\" (SELECTOR)")
            && !stderr.contains("install the CRD"),
        "{stderr}"
    );
}
