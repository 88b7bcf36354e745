//! The controller against a real control plane and the Thalassa emulator: the getting-started
//! flow, every prerequisite condition, failure semantics, drift repair, ownership and admission.

use crate::common;

use std::time::Duration;

use crate::common::{REGION, harness, kubectl, secret_data, wait_for};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use thalassa_emulator::{Access, Faults, TokenSpec};

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// The getting-started flow, applied with kubectl as a user would: string, key/value and pinned
/// sources; a new version reaches the Secret within the refresh interval; the pin holds.
#[tokio::test]
async fn getting_started_flow_with_kubectl() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("flow").await;
    h.create_string("/app/production/db/password", "s3cr3t-v1");
    h.create_kv(
        "/app/production/db/creds",
        &[("username", "admin"), ("port", "5432")],
    );
    h.create_string("/app/production/api/token", "token-v1");
    h.put_string("/app/production/api/token", "token-v2");
    h.start_operator(&[]).await;

    let yaml = format!(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: db, namespace: {ns}}}
spec:
  refreshInterval: 10s
  kmsKeyIdentity: {key}
  data:
    - secretKey: password
      remoteRef: {{path: /app/production/db/password}}
    - secretKey: username
      remoteRef: {{path: /app/production/db/creds, property: username}}
    - secretKey: api-token
      remoteRef: {{path: /app/production/api/token, version: 1}}
"#,
        ns = h.ns(),
        key = h.key
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&yaml)).await;
    assert!(ok, "kubectl apply failed: {out}");
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "thalassasecret/db",
            "-n",
            h.ns(),
            "--timeout=60s",
        ],
        None,
    )
    .await;
    assert!(ok, "kubectl wait failed: {out}");

    let secret = h.secrets().get("db").await.unwrap();
    let data = secret_data(&secret);
    assert_eq!(data["password"], bytes("s3cr3t-v1"));
    assert_eq!(data["username"], bytes("admin"));
    assert_eq!(
        data["api-token"],
        bytes("token-v1"),
        "pinned version 1 is served"
    );
    assert_eq!(data.len(), 3);
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "thalassa-secrets-operator"
    );
    assert!(
        secret.metadata.owner_references.is_none(),
        "Retain: no ownerReference"
    );

    let ts = h.resources().get("db").await.unwrap();
    let status = ts.status.unwrap();
    assert_eq!(status.synced_versions["/app/production/db/password"], 1);
    assert_eq!(status.synced_versions["/app/production/api/token"], 1);
    assert_eq!(status.kms_key_identity.as_deref(), Some(h.key.as_str()));
    assert_eq!(status.secret_name.as_deref(), Some("db"));
    use thalassa_operator::status::types;
    for type_ in types::ALL {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        // kstatus's abnormal-true conditions are False when all is well.
        let expected = if [types::RECONCILING, types::STALLED].contains(&type_) {
            "False"
        } else {
            "True"
        };
        assert_eq!(c.status, expected, "{type_} should be {expected}: {c:?}");
    }

    // A new version reaches the Secret within the refresh interval (plus a little slack for the
    // apiserver round trips); the pinned path does not move.
    let stored = std::time::Instant::now();
    h.put_string("/app/production/db/password", "s3cr3t-v2");
    h.put_string("/app/production/api/token", "token-v3");
    h.wait_secret("db", "password v2", |d| {
        d.get("password") == Some(&bytes("s3cr3t-v2"))
    })
    .await;
    let latency = stored.elapsed();
    println!("new version reached the Secret after {latency:?} (refresh interval 10s)");
    assert!(latency < Duration::from_secs(15), "took {latency:?}");
    let data = secret_data(&h.secrets().get("db").await.unwrap());
    assert_eq!(data["api-token"], bytes("token-v1"), "pin holds");
    // The status is written after the Secret: wait for it rather than read it once.
    let ts = wait_for(Duration::from_secs(30), "status with version 2", || async {
        let ts = h.resources().get("db").await.ok()?;
        (ts.status
            .as_ref()?
            .synced_versions
            .get("/app/production/db/password")
            == Some(&2))
        .then_some(ts)
    })
    .await;
    assert_eq!(common::condition(&ts, "Ready").reason, "Synced");
    assert_eq!(
        ts.status.unwrap().synced_versions["/app/production/db/password"],
        2
    );

    // dataFrom: every property of a key/value secret, and every secret under a prefix.
    h.apply_yaml(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: bulk}
spec:
  refreshInterval: 10s
  dataFrom:
    - path: /app/production/db/creds
    - pathPrefix: /app/production/api/
"#,
    )
    .await;
    let secret = h
        .wait_secret("bulk", "bulk keys", |d| {
            d.contains_key("port") && d.contains_key("token")
        })
        .await;
    let data = secret_data(&secret);
    assert_eq!(data["username"], bytes("admin"));
    assert_eq!(data["port"], bytes("5432"));
    assert_eq!(data["token"], bytes("token-v3"));
}

/// Each prerequisite switched off gives its own condition and reason while the Secret stays
/// byte-for-byte (and resourceVersion) unchanged; switching it back restores Ready.
#[tokio::test]
async fn each_broken_prerequisite_has_its_own_condition_and_keeps_the_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("prereq").await;
    h.create_string("/app/prereq/password", "keep-me");
    h.start_operator(&[]).await;
    h.apply_single("app", "/app/prereq/password", &["refreshInterval: 10s"])
        .await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    let before = h.secrets().get("app").await.unwrap();
    let control = h.emulator.control();
    let token = h.emulator.token().to_string();
    let key = h.key.clone();

    type Switch = Box<dyn Fn(bool) + Send + Sync>;
    let scenarios: Vec<(&str, &str, &str, &str, Switch)> = vec![
        (
            "secrets gate",
            "SecretsFeatureEnabled",
            "FeatureDisabled",
            "SecretsFeatureDisabled",
            {
                let c = control.clone();
                Box::new(move |on| c.set_feature_gates(on, true))
            },
        ),
        (
            "kms gate",
            "KmsFeatureEnabled",
            "FeatureDisabled",
            "KmsFeatureDisabled",
            {
                let c = control.clone();
                Box::new(move |on| c.set_feature_gates(true, on))
            },
        ),
        (
            "regional KMS backend",
            "KmsBackendAvailable",
            "Unavailable",
            "KmsBackendUnavailable",
            {
                let c = control.clone();
                Box::new(move |on| c.set_kms_available(REGION, on).unwrap())
            },
        ),
        (
            "disabled key",
            "KmsKeyActive",
            "KeyNotActive",
            "KmsKeyNotActive",
            {
                let (c, key) = (control.clone(), key.clone());
                Box::new(move |on| {
                    c.set_key_status(REGION, &key, if on { "active" } else { "disabled" })
                        .unwrap();
                })
            },
        ),
        (
            "key pending deletion",
            "KmsKeyActive",
            "KeyNotActive",
            "KmsKeyNotActive",
            {
                let (c, key) = (control.clone(), key.clone());
                Box::new(move |on| {
                    c.set_key_status(REGION, &key, if on { "active" } else { "pending_deletion" })
                        .unwrap();
                })
            },
        ),
        (
            "revoked token",
            "Authorized",
            "InvalidCredentials",
            "Unauthorized",
            {
                let (c, token) = (control.clone(), token.clone());
                Box::new(move |on| {
                    if on {
                        c.add_token(TokenSpec::bearer(token.clone())).unwrap();
                    } else {
                        c.revoke_token(&token);
                    }
                })
            },
        ),
        (
            "read-denied path",
            "Authorized",
            "PermissionDenied",
            "Forbidden",
            {
                let (c, token) = (control.clone(), token.clone());
                Box::new(move |on| {
                    let access = if on {
                        Access::default()
                    } else {
                        Access {
                            path_globs: Some(vec!["/other/*".into()]),
                            ..Access::default()
                        }
                    };
                    c.add_token(TokenSpec::bearer(token.clone()).with_access(access))
                        .unwrap();
                })
            },
        ),
    ];

    for (name, condition, reason, ready_reason, switch) in scenarios {
        println!("scenario: {name}");
        switch(false);
        let ts = h
            .wait_condition("app", condition, "False", Some(reason))
            .await;
        let ready = ts
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready.status, "False", "{name}: Ready must be False");
        assert_eq!(ready.reason, ready_reason, "{name}");
        let during = h.secrets().get("app").await.unwrap();
        assert_eq!(during.data, before.data, "{name}: data unchanged");
        assert_eq!(
            during.metadata.resource_version, before.metadata.resource_version,
            "{name}: the Secret was not written at all"
        );
        switch(true);
        h.wait_condition("app", "Ready", "True", Some("Synced"))
            .await;
        h.wait_condition("app", condition, "True", None).await;
    }
    let after = h.secrets().get("app").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // A kmsKeyIdentity that is not the bound key is refused without touching anything.
    h.apply_single(
        "wrong-key",
        "/app/prereq/password",
        &["kmsKeyIdentity: kms-not-the-bound-key"],
    )
    .await;
    h.wait_condition("wrong-key", "KmsKeyActive", "False", Some("KeyMismatch"))
        .await;
    h.wait_condition("wrong-key", "Ready", "False", Some("KmsKeyMismatch"))
        .await;
    assert!(h.secrets().get_opt("wrong-key").await.unwrap().is_none());

    // A definite "not found" keeps the Secret too.
    control
        .delete_secret(REGION, "/app/prereq/password")
        .unwrap();
    h.wait_condition("app", "Ready", "False", Some("SecretNotFound"))
        .await;
    let gone = h.secrets().get("app").await.unwrap();
    assert_eq!(gone.data, before.data);
}

/// 429 storms and 503 bursts: the operator backs off (bounded request counts), the Secret is never
/// touched, and it recovers afterwards.
#[tokio::test]
async fn rate_limit_storms_and_503_bursts_back_off_without_touching_the_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("storm").await;
    h.create_string("/app/storm/password", "steady");
    h.start_operator(&[]).await;
    h.apply_single("app", "/app/storm/password", &["refreshInterval: 10s"])
        .await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    let before = h.secrets().get("app").await.unwrap();
    let control = h.emulator.control();

    for (name, faults) in [
        (
            "429 storm",
            Faults {
                rate_limit_429: 1_000_000,
                retry_after_secs: 5,
                ..Faults::default()
            },
        ),
        (
            "503 burst",
            Faults {
                burst_503: 1_000_000,
                ..Faults::default()
            },
        ),
    ] {
        control.set_faults(faults);
        let ts = h.wait_condition("app", "Ready", "False", None).await;
        let ready = common::condition(&ts, "Ready");
        println!("{name}: Ready=False reason={}", ready.reason);
        control.reset_counters();
        let window = Duration::from_secs(30);
        tokio::time::sleep(window).await;
        let requests = control.counters().total;
        println!("{name}: {requests} Thalassa requests in {window:?} while failing");
        // Backoff (honouring Retry-After) keeps this to a handful; a retry loop would be thousands.
        assert!(
            requests <= 30,
            "{name}: {requests} requests in {window:?} is hammering"
        );
        assert!(requests >= 1, "{name}: the operator kept checking");
        let during = h.secrets().get("app").await.unwrap();
        assert_eq!(
            during.metadata.resource_version, before.metadata.resource_version,
            "{name}"
        );
        assert_eq!(during.data, before.data, "{name}");
        control.set_faults(Faults::default());
        h.wait_condition("app", "Ready", "True", Some("Synced"))
            .await;
    }
}

/// Drift repair after an edit and after a deletion, through the label-selected Secret watch.
#[tokio::test]
async fn drift_is_repaired_after_edit_and_deletion() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("drift").await;
    h.create_string("/app/drift/password", "original");
    h.start_operator(&["--default-refresh-interval", "10m"])
        .await;
    h.apply_single("app", "/app/drift/password", &[]).await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;

    // Edit: the refresh interval is 10 minutes, so only the watch can repair this quickly.
    let edited = std::time::Instant::now();
    h.secrets()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"password": "ZWRpdGVk", "extra": "eA=="}})),
        )
        .await
        .unwrap();
    h.wait_secret("app", "edit repaired", |d| {
        d.get("password") == Some(&bytes("original"))
    })
    .await;
    println!("edit repaired after {:?}", edited.elapsed());
    assert!(edited.elapsed() < Duration::from_secs(10));

    // Deletion.
    let deleted = std::time::Instant::now();
    h.secrets()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_secret("app", "deletion repaired", |d| {
        d.get("password") == Some(&bytes("original"))
    })
    .await;
    println!("deletion repaired after {:?}", deleted.elapsed());
    assert!(deleted.elapsed() < Duration::from_secs(10));
}

/// deletionPolicy Retain keeps the Secret when the resource goes; Delete lets garbage collection
/// remove it.
#[tokio::test]
async fn retain_keeps_and_delete_removes_the_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("policy").await;
    h.create_string("/app/policy/password", "v");
    h.start_operator(&[]).await;
    for (name, policy) in [("kept", "Retain"), ("removed", "Delete")] {
        h.apply_yaml(&format!(
            r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: {name}}}
spec:
  target: {{deletionPolicy: {policy}}}
  data:
    - secretKey: password
      remoteRef: {{path: /app/policy/password}}
"#
        ))
        .await;
        h.wait_condition(name, "Ready", "True", Some("Synced"))
            .await;
    }
    let removed = h.secrets().get("removed").await.unwrap();
    assert_eq!(
        removed.metadata.owner_references.as_ref().map(Vec::len),
        Some(1)
    );
    for name in ["kept", "removed"] {
        h.resources()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let secrets = h.secrets();
    wait_for(
        Duration::from_secs(90),
        "garbage collection of 'removed'",
        || {
            let secrets = secrets.clone();
            async move {
                secrets
                    .get_opt("removed")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    let kept = h.secrets().get("kept").await.unwrap();
    assert_eq!(secret_data(&kept)["password"], bytes("v"));
}

/// A Secret the operator did not create is never overwritten unless the spec opts in; Merge keeps
/// foreign keys.
#[tokio::test]
async fn foreign_secrets_are_refused_unless_merge_or_adopt() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("foreign").await;
    h.create_string("/app/foreign/password", "from-thalassa");
    h.start_operator(&[]).await;
    for name in ["conflict", "merged", "adopted"] {
        let foreign = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([("theirs".to_string(), ByteString(bytes("keep")))].into()),
            ..Default::default()
        };
        h.secrets()
            .create(&PostParams::default(), &foreign)
            .await
            .unwrap();
    }
    let spec = |name: &str, policy: &str| {
        format!(
            r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: {name}}}
spec:
  target: {{creationPolicy: {policy}}}
  data:
    - secretKey: password
      remoteRef: {{path: /app/foreign/password}}
"#
        )
    };
    h.apply_yaml(&spec("conflict", "Owner")).await;
    h.wait_condition("conflict", "Ready", "False", Some("TargetConflict"))
        .await;
    let untouched = h.secrets().get("conflict").await.unwrap();
    assert_eq!(
        secret_data(&untouched).keys().collect::<Vec<_>>(),
        ["theirs"]
    );
    // A first sync creates without reading when no managed Secret has the name, so finding it
    // taken costs one reveal; the retries (after 2 s and 4 s) read first and reveal nothing.
    let after_conflict = h.reveals();
    assert!(after_conflict <= 1, "{after_conflict} reveals");
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(
        h.reveals(),
        after_conflict,
        "retries of a conflict reveal nothing"
    );

    // Adopt and Merge expect a Secret that is not theirs: they read first, one reveal each.
    for (name, policy) in [("merged", "Merge"), ("adopted", "Adopt")] {
        let before = h.reveals();
        h.apply_yaml(&spec(name, policy)).await;
        h.wait_condition(name, "Ready", "True", Some("Synced"))
            .await;
        assert_eq!(h.reveals() - before, 1, "{policy}: one reveal");
    }
    let merged = secret_data(&h.secrets().get("merged").await.unwrap());
    assert_eq!(merged["theirs"], bytes("keep"));
    assert_eq!(merged["password"], bytes("from-thalassa"));

    let adopted = secret_data(&h.secrets().get("adopted").await.unwrap());
    assert_eq!(adopted.keys().collect::<Vec<_>>(), ["password"]);
}

/// Invalid specs are rejected at admission with readable messages.
#[tokio::test]
async fn invalid_specs_are_rejected_at_admission() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("admission").await;
    let cases = [
        (
            "bad path",
            r#"data: [{secretKey: a, remoteRef: {path: "app/no-leading-slash"}}]"#,
            "spec.data[0].remoteRef.path",
        ),
        (
            "trailing slash",
            r#"data: [{secretKey: a, remoteRef: {path: "/app/"}}]"#,
            "spec.data[0].remoteRef.path",
        ),
        (
            "double slash",
            r#"data: [{secretKey: a, remoteRef: {path: "/app//x"}}]"#,
            "spec.data[0].remoteRef.path",
        ),
        (
            "bad key",
            r#"data: [{secretKey: "a b", remoteRef: {path: "/app/x"}}]"#,
            "spec.data[0].secretKey",
        ),
        (
            "duplicate key",
            r#"data: [{secretKey: a, remoteRef: {path: "/app/x"}}, {secretKey: a, remoteRef: {path: "/app/y"}}]"#,
            "Duplicate value",
        ),
        (
            "empty",
            "refreshInterval: 1m",
            "at least one entry in data or dataFrom is required",
        ),
        (
            "short refresh",
            r#"{refreshInterval: 1s, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "refreshInterval must be at least 10s",
        ),
        (
            "path and prefix",
            r#"dataFrom: [{path: "/a", pathPrefix: "/b/"}]"#,
            "exactly one of path or pathPrefix must be set",
        ),
        (
            "merge with delete",
            r#"{target: {creationPolicy: Merge, deletionPolicy: Delete}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "deletionPolicy Delete cannot be combined with creationPolicy Merge",
        ),
        (
            "version zero",
            r#"data: [{secretKey: a, remoteRef: {path: "/a", version: 0}}]"#,
            "spec.data[0].remoteRef.version",
        ),
        (
            "bad type",
            r#"{target: {type: Fancy}, data: [{secretKey: a, remoteRef: {path: "/a"}}]}"#,
            "spec.target.type",
        ),
    ];
    for (name, spec, expected) in cases {
        common::assert_rejected(h.ns(), name, spec, expected).await;
    }
    // And target.name cannot change after creation.
    let yaml = |target: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: named, namespace: {}}}\nspec: {{target: {{name: {target}}}, data: [{{secretKey: a, remoteRef: {{path: /a}}}}]}}\n",
            h.ns()
        )
    };
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&yaml("one"))).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&yaml("two"))).await;
    assert!(!ok && out.contains("target.name is immutable"), "{out}");
}

/// The remaining Ready=False reasons that come from the spec or the sources, each with its own
/// resource: nothing is written for any of them.
#[tokio::test]
async fn spec_and_source_reasons_are_reported_without_writing() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("reasons").await;
    h.create_string("/app/reasons/a/token", "a");
    h.create_string("/app/reasons/b/token", "b");
    h.create_kv("/app/reasons/kv", &[("user", "u")]);
    h.start_operator(&[]).await;
    let cases = [
        (
            "key-conflict",
            "TargetKeyConflict",
            r#"dataFrom: [{pathPrefix: /app/reasons/a/}, {pathPrefix: /app/reasons/b/}]"#,
        ),
        (
            "missing-version",
            "VersionNotFound",
            r#"data: [{secretKey: t, remoteRef: {path: /app/reasons/a/token, version: 9}}]"#,
        ),
        (
            "unknown-region",
            "RegionNotFound",
            r#"region: xx-99
  data: [{secretKey: t, remoteRef: {path: /app/reasons/a/token}}]"#,
        ),
        (
            "tls-without-keys",
            "InvalidSpec",
            r#"target: {type: kubernetes.io/tls}
  data: [{secretKey: t, remoteRef: {path: /app/reasons/a/token}}]"#,
        ),
        (
            "kv-without-property",
            "SourceFormatMismatch",
            r#"data: [{secretKey: t, remoteRef: {path: /app/reasons/kv}}]"#,
        ),
        (
            "missing-path",
            "SecretNotFound",
            r#"data: [{secretKey: t, remoteRef: {path: /app/reasons/nothing-here}}]"#,
        ),
    ];
    for (name, _, spec) in &cases {
        h.apply_yaml(&format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n  {spec}\n"
        ))
        .await;
    }
    for (name, reason, _) in &cases {
        let ts = h.wait_condition(name, "Ready", "False", Some(reason)).await;
        let ready = ts
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert!(
            !ready.message.is_empty(),
            "{name}: a message explains {reason}"
        );
        assert!(
            h.secrets().get_opt(name).await.unwrap().is_none(),
            "{name}: nothing written"
        );
    }

    // An immutable Secret is never rewritten: a new version stops with TargetImmutable.
    h.apply_yaml(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: frozen}
spec:
  refreshInterval: 10s
  target: {immutable: true}
  data: [{secretKey: t, remoteRef: {path: /app/reasons/b/token}}]
"#,
    )
    .await;
    h.wait_condition("frozen", "Ready", "True", Some("Synced"))
        .await;
    let before = h.secrets().get("frozen").await.unwrap();
    assert_eq!(before.immutable, Some(true));
    h.put_string("/app/reasons/b/token", "b2");
    h.wait_condition("frozen", "Ready", "False", Some("TargetImmutable"))
        .await;
    let after = h.secrets().get("frozen").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
}
