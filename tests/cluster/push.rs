//! `ThalassaPushSecret` against a real control plane and the emulator: a push creates the
//! Thalassa secret (value, KMS key, ownership labels), stores a new version only when the
//! Secret's data changes (emulator counters: no call while nothing changed over three checks),
//! refuses a path it did not create unless `updatePolicy: Replace`, leaves the old path alone
//! when the spec moves, deletes only with `deletionPolicy: Delete` and only what it created, is
//! `Forbidden` with nothing written for an identity that may not write, and never lets the
//! Secret's value out (logs, Events, status, metrics).

use std::time::Duration;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use thalassa_emulator::{Access, TokenSpec};
use thalassa_operator::{
    push::crd::ThalassaPushSecret,
    thalassa::{Client, ClientConfig, Credentials, SecretValue},
};

use crate::common::{Harness, REGION, harness, http_get, kubectl, kubectl_apply, wait_for};

fn pushes(h: &Harness) -> Api<ThalassaPushSecret> {
    Api::namespaced(h.client.clone(), h.ns())
}

/// A Thalassa client with the emulator's full-access token, to look at what was pushed.
fn thalassa(h: &Harness) -> Client {
    let credentials = Credentials::BearerToken(h.emulator.token().into());
    Client::new(ClientConfig::new(
        h.emulator.base_url(),
        h.emulator.organisation(),
        credentials,
    ))
    .expect("client")
}

async fn put_secret(h: &Harness, name: &str, pairs: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(h.client.clone(), h.ns());
    if api.get_opt(name).await.unwrap().is_some() {
        api.replace(name, &PostParams::default(), &secret)
            .await
            .unwrap();
    } else {
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
}

/// Waits for Ready with `status` (and `reason`) at the current generation.
async fn wait_ready(h: &Harness, name: &str, status: &str, reason: &str) -> ThalassaPushSecret {
    let api = pushes(h);
    wait_for(
        Duration::from_secs(60),
        &format!("{name}: Ready={status} {reason}"),
        || {
            let api = api.clone();
            async move {
                let push = api.get(name).await.ok()?;
                let s = push.status.as_ref()?;
                s.conditions
                    .iter()
                    .any(|c| {
                        c.type_ == "Ready"
                            && c.status == status
                            && c.reason == reason
                            && c.observed_generation == push.metadata.generation
                    })
                    .then_some(push)
            }
        },
    )
    .await
}

/// kstatus and the Argo CD health script on the live push, as the apiserver serves it.
async fn judge_live(h: &Harness, name: &str) -> crate::health::Verdict {
    let object = crate::health::live_object(h, "thalassapushsecret", name).await;
    crate::health::judge(&object).await
}

/// The operator's last successful check of the push (its metric).
async fn last_check(h: &Harness, name: &str) -> Option<f64> {
    let port = h.operator.as_ref()?.port;
    let (_, body) = http_get(&format!("http://127.0.0.1:{port}/metrics")).await?;
    let prefix = format!(
        "thalassa_operator_push_last_successful_check_timestamp_seconds{{namespace=\"{}\",name=\"{name}\"}} ",
        h.ns()
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits for `n` more successful checks of the push.
async fn wait_checks(h: &Harness, name: &str, n: usize) {
    for _ in 0..n {
        let before = last_check(h, name).await.unwrap_or(0.0);
        wait_for(
            Duration::from_secs(40),
            "another push check",
            || async move {
                last_check(h, name)
                    .await
                    .filter(|t| *t > before)
                    .map(|_| ())
            },
        )
        .await;
    }
}

fn writes(h: &Harness) -> (u64, u64) {
    let counters = h.emulator.control().counters();
    (
        counters.operation_total("createSecret"),
        counters.operation_total("putSecretValue"),
    )
}

async fn string_value(client: &Client, path: &str) -> (u64, Vec<u8>) {
    let revealed = client.get_secret_value(REGION, path, None).await.unwrap();
    match revealed.value {
        SecretValue::String(bytes) => (revealed.version, bytes.expose().to_vec()),
        other => panic!("{path}: not a string secret: {other:?}"),
    }
}

fn push_yaml(name: &str, key: &str, extra: &str, data: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaPushSecret\nmetadata: {{name: {name}}}\nspec:\n  secretRef: {{name: source}}\n  refreshInterval: 10s\n  kmsKeyIdentity: {key}\n{extra}  data:\n{data}"
    )
}

#[tokio::test]
async fn push_creates_then_versions_only_on_change_and_never_leaks_the_value() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("push").await;
    let canary = format!("CANARY-PUSH-{:016x}", rand::random::<u64>());
    let canary_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&canary)
    };
    put_secret(&h, "source", &[("password", &canary), ("user", "app")]).await;
    h.start_operator(&[]).await;
    let data = "    - {secretKey: password, remotePath: /push/db/password}\n    - {remotePath: /push/db/all}\n";
    kubectl_apply(h.ns(), &push_yaml("db", &h.key, "", data))
        .await
        .unwrap();
    let push = wait_ready(&h, "db", "True", "Synced").await;
    let uid = push.metadata.uid.clone().unwrap();
    let client = thalassa(&h);

    // Created: the value, the KMS key, the ownership labels; status records it (no value).
    let meta = client
        .get_secret(REGION, "/push/db/password", false)
        .await
        .unwrap();
    assert_eq!(
        meta.kms_key.as_ref().map(|k| k.identity.as_str()),
        Some(h.key.as_str())
    );
    assert_eq!(
        meta.labels.get("secrets.thalassa.cloud/pushed-by-uid"),
        Some(&uid)
    );
    assert_eq!(
        string_value(&client, "/push/db/password").await,
        (1, canary.clone().into_bytes())
    );
    let all = client
        .get_secret_value(REGION, "/push/db/all", None)
        .await
        .unwrap();
    match all.value {
        SecretValue::KeyValues(map) => {
            assert_eq!(map["password"].expose(), canary.as_bytes());
            assert_eq!(map["user"].expose(), b"app");
        }
        other => panic!("not key/values: {other:?}"),
    }
    let pushed = push.status.unwrap().pushed;
    assert_eq!(pushed.len(), 2);
    assert!(
        pushed.iter().all(|p| p.created && p.version == 1),
        "{pushed:?}"
    );
    assert_eq!(writes(&h), (2, 0), "one createSecret per path");

    // Nothing changed: three checks, no Thalassa call at all.
    let before = h.emulator.control().counters().total;
    wait_checks(&h, "db", 3).await;
    let idle = h.emulator.control().counters().total - before;
    println!("push: Thalassa calls over three idle checks: {idle}");
    assert_eq!(idle, 0, "an unchanged Secret costs no Thalassa call");

    // A change stores a new version at both paths (one getSecret + one putSecretValue each).
    let before = h.emulator.control().counters();
    let changed = format!("{canary}-2");
    put_secret(&h, "source", &[("password", &changed), ("user", "app")]).await;
    wait_for(Duration::from_secs(40), "version 2 pushed", || async {
        let push = pushes(&h).get("db").await.ok()?;
        push.status?
            .pushed
            .iter()
            .all(|p| p.version == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        string_value(&client, "/push/db/password").await,
        (2, changed.clone().into_bytes())
    );
    let after = h.emulator.control().counters();
    let (gets, puts) = (
        after.operation_total("getSecret") - before.operation_total("getSecret"),
        after.operation_total("putSecretValue") - before.operation_total("putSecretValue"),
    );
    println!(
        "push: Thalassa calls for one change of two entries: {gets} getSecret, {puts} putSecretValue"
    );
    assert_eq!(puts, 2);

    // Retain (the default): deleting the resource leaves the remote secrets.
    pushes(&h)
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "push deleted", || async {
        pushes(&h).get_opt("db").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        client
            .get_secret(REGION, "/push/db/password", false)
            .await
            .is_ok()
    );
    assert!(
        client
            .get_secret(REGION, "/push/db/all", false)
            .await
            .is_ok()
    );

    // The canary never left the Secret.
    let mut outputs = vec![("operator log".to_string(), h.operator_log())];
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok, "{events}");
    outputs.push(("events".into(), events));
    let (_, statuses) = kubectl(
        &["get", "thalassapushsecrets", "-n", h.ns(), "-o", "yaml"],
        None,
    )
    .await;
    outputs.push(("status".into(), statuses));
    if let Some((_, metrics)) = http_get(&format!(
        "http://127.0.0.1:{}/metrics",
        h.operator.as_ref().unwrap().port
    ))
    .await
    {
        outputs.push(("metrics".into(), metrics));
    }
    assert!(
        outputs[0].1.contains("pushed a new version"),
        "the operator logged the push"
    );
    for (what, text) in &outputs {
        for needle in [canary.as_str(), canary_b64.as_str()] {
            assert!(!text.contains(needle), "{what} contains the pushed value");
        }
    }
    h.stop_operator().await;
}

#[tokio::test]
async fn push_refuses_a_path_it_did_not_create_unless_replace() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("push-foreign").await;
    h.create_string("/push/foreign", "theirs");
    put_secret(&h, "source", &[("password", "ours")]).await;
    h.start_operator(&[]).await;
    let data = "    - {secretKey: password, remotePath: /push/foreign}\n";
    kubectl_apply(
        h.ns(),
        &push_yaml("foreign", &h.key, "  deletionPolicy: Delete\n", data),
    )
    .await
    .unwrap();
    let push = wait_ready(&h, "foreign", "False", "RemoteNotOwned").await;
    let client = thalassa(&h);
    assert_eq!(
        string_value(&client, "/push/foreign").await,
        (1, b"theirs".to_vec())
    );
    assert_eq!(writes(&h), (0, 0), "nothing written through the API");
    assert!(
        push.metadata.finalizers.unwrap_or_default().is_empty(),
        "nothing created, no finalizer"
    );
    // GitOps tools judge the refusal with their own code: it needs a person.
    let verdict = judge_live(&h, "foreign").await;
    assert_eq!(
        (verdict.kstatus.as_str(), verdict.health.as_str()),
        ("Failed", "Degraded"),
        "{verdict:?}"
    );

    pushes(&h)
        .patch(
            "foreign",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"updatePolicy": "Replace"}})),
        )
        .await
        .unwrap();
    let push = wait_ready(&h, "foreign", "True", "Synced").await;
    assert_eq!(
        string_value(&client, "/push/foreign").await,
        (2, b"ours".to_vec())
    );
    let pushed = push.status.unwrap().pushed;
    assert!(
        !pushed[0].created,
        "a replaced path is not ours: {pushed:?}"
    );
    let verdict = judge_live(&h, "foreign").await;
    assert_eq!(
        (verdict.kstatus.as_str(), verdict.health.as_str()),
        ("Current", "Healthy"),
        "{verdict:?}"
    );

    // deletionPolicy Delete deletes only what the resource created: not this path.
    pushes(&h)
        .delete("foreign", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "push deleted", || async {
        pushes(&h)
            .get_opt("foreign")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        client
            .get_secret(REGION, "/push/foreign", false)
            .await
            .is_ok()
    );
    h.stop_operator().await;
}

#[tokio::test]
async fn moving_the_path_leaves_the_old_one_and_delete_removes_only_created_paths() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("push-move").await;
    put_secret(&h, "source", &[("password", "v1")]).await;
    h.start_operator(&[]).await;
    let data = "    - {secretKey: password, remotePath: /push/move/a}\n";
    kubectl_apply(
        h.ns(),
        &push_yaml("mover", &h.key, "  deletionPolicy: Delete\n", data),
    )
    .await
    .unwrap();
    let push = wait_ready(&h, "mover", "True", "Synced").await;
    assert!(
        push.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"secrets.thalassa.cloud/push-cleanup".to_string()),
        "Delete with a created path holds the finalizer"
    );
    let data = "    - {secretKey: password, remotePath: /push/move/b}\n";
    kubectl_apply(
        h.ns(),
        &push_yaml("mover", &h.key, "  deletionPolicy: Delete\n", data),
    )
    .await
    .unwrap();
    let push = wait_ready(&h, "mover", "True", "Synced").await;
    let pushed = push.status.unwrap().pushed;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].remote_path, "/push/move/b");
    let client = thalassa(&h);
    assert_eq!(
        string_value(&client, "/push/move/a").await,
        (1, b"v1".to_vec()),
        "the old path is left alone"
    );
    assert_eq!(
        string_value(&client, "/push/move/b").await,
        (1, b"v1".to_vec())
    );

    let deletes_before = h
        .emulator
        .control()
        .counters()
        .operation_total("deleteSecret");
    pushes(&h)
        .delete("mover", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "push deleted", || async {
        pushes(&h)
            .get_opt("mover")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let deletes = h
        .emulator
        .control()
        .counters()
        .operation_total("deleteSecret")
        - deletes_before;
    println!("push: Thalassa deleteSecret calls on deletion with deletionPolicy Delete: {deletes}");
    let gone = client
        .get_secret(REGION, "/push/move/b", false)
        .await
        .unwrap_err();
    assert!(gone.is_definite_not_found(), "{gone}");
    assert!(
        client
            .get_secret(REGION, "/push/move/a", false)
            .await
            .is_ok(),
        "the old path is still there"
    );
    assert_eq!(deletes, 1);
    h.stop_operator().await;
}

#[tokio::test]
async fn a_tenant_push_to_a_path_it_may_not_write_is_forbidden_and_writes_nothing() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("push-tenant").await;
    const TOKEN: &str = "tenant-read-only-token";
    h.emulator
        .control()
        .add_token(TokenSpec::bearer(TOKEN).with_access(Access {
            path_globs: Some(vec!["/team/*".into()]),
            ..Access::read_only()
        }))
        .unwrap();
    put_secret(&h, "thalassa", &[("token", TOKEN)]).await;
    put_secret(&h, "source", &[("password", "x")]).await;
    h.start_operator(&[]).await;
    let store = format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: team}}\nspec:\n  url: {}\n  organisation: {}\n  auth: {{tokenSecretRef: {{name: thalassa}}}}\n",
        h.emulator.base_url(),
        h.emulator.organisation()
    );
    kubectl_apply(h.ns(), &store).await.unwrap();
    let data = "    - {secretKey: password, remotePath: /team/pushed}\n";
    kubectl_apply(
        h.ns(),
        &push_yaml("tenant", &h.key, "  storeRef: {name: team}\n", data),
    )
    .await
    .unwrap();
    let push = wait_ready(&h, "tenant", "False", "Forbidden").await;
    let authorized = push
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Authorized"))
        .unwrap();
    assert_eq!(authorized.status, "False");
    let counters = h.emulator.control().counters();
    assert_eq!(counters.get("createSecret", 201), 0, "nothing was written");
    assert_eq!(counters.get("putSecretValue", 200), 0);
    let missing = thalassa(&h)
        .get_secret(REGION, "/team/pushed", false)
        .await
        .unwrap_err();
    assert!(missing.is_definite_not_found(), "{missing}");
    h.stop_operator().await;
}

#[tokio::test]
async fn invalid_push_specs_are_rejected_at_admission() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("push-admission").await;
    let cases = [
        (
            "no KMS key",
            "{secretRef: {name: s}, data: [{remotePath: /a}]}",
            "every data entry needs a kmsKeyIdentity",
        ),
        (
            "duplicate path",
            "{secretRef: {name: s}, kmsKeyIdentity: k, data: [{remotePath: /a}, {remotePath: /a, secretKey: x}]}",
            "duplicate entries for key [remotePath=",
        ),
        (
            "dot segment",
            "{secretRef: {name: s}, kmsKeyIdentity: k, data: [{remotePath: /a/../b}]}",
            "must not contain '.' or '..' segments",
        ),
        (
            "short interval",
            "{secretRef: {name: s}, kmsKeyIdentity: k, refreshInterval: 1s, data: [{remotePath: /a}]}",
            "refreshInterval must be at least 10s",
        ),
    ];
    for (case, spec, expected) in cases {
        let yaml = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaPushSecret\nmetadata: {{name: bad}}\nspec: {spec}\n"
        );
        let refused = kubectl_apply(h.ns(), &yaml).await.expect_err(case);
        assert!(refused.contains(expected), "{case}: {refused}");
    }
}
