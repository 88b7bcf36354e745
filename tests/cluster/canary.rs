//! No secret byte outside the Secret: a canary value is planted in Thalassa, synced, driven
//! through error paths, and then searched for in every operator log line, every Event, the
//! resource's status and every HTTP page the operator serves. The credential is searched too.

use crate::common::{REGION, harness, http_get, kubectl, secret_data};
use thalassa_emulator::SeedValue;

#[tokio::test]
async fn canary_value_never_leaves_the_secret() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("canary").await;
    let canary = format!("CANARY-{:016x}", rand::random::<u64>());
    let canary_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&canary)
    };
    h.create_string("/app/canary/password", &canary);
    h.create_kv(
        "/app/canary/creds",
        &[("username", &canary), ("other", "x")],
    );
    h.start_operator(&[]).await;
    h.apply_yaml(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: canary}
spec:
  refreshInterval: 10s
  data:
    - secretKey: password
      remoteRef: {path: /app/canary/password}
    - secretKey: username
      remoteRef: {path: /app/canary/creds, property: username}
"#,
    )
    .await;
    h.wait_condition("canary", "Ready", "True", Some("Synced"))
        .await;
    let secret = h.secrets().get("canary").await.unwrap();
    assert_eq!(
        secret_data(&secret)["password"],
        canary.as_bytes(),
        "the canary is in the Secret"
    );

    // Error paths that handle the value: a missing property of a key/value secret (the message
    // lists properties), a string secret read with a property, a disabled key, a new version.
    h.apply_yaml(
        r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: broken}
spec:
  refreshInterval: 10s
  data:
    - secretKey: a
      remoteRef: {path: /app/canary/creds, property: nope}
    - secretKey: b
      remoteRef: {path: /app/canary/password, property: nope}
"#,
    )
    .await;
    h.wait_condition("broken", "Ready", "False", Some("SourceFormatMismatch"))
        .await;
    h.emulator
        .control()
        .put_secret_value(
            REGION,
            "/app/canary/password",
            SeedValue::String(format!("{canary}-2")),
        )
        .unwrap();
    h.wait_secret("canary", "second canary version", |d| {
        d.get("password").map(Vec::as_slice) == Some(format!("{canary}-2").as_bytes())
    })
    .await;
    h.emulator
        .control()
        .set_key_status(REGION, &h.key, "disabled")
        .unwrap();
    h.wait_condition("canary", "Ready", "False", Some("KmsKeyNotActive"))
        .await;

    // Collect everything the operator produced.
    let mut outputs = vec![("operator log".to_string(), h.operator_log())];
    let (ok, events) = kubectl(&["get", "events", "-n", h.ns(), "-o", "yaml"], None).await;
    assert!(ok, "{events}");
    assert!(
        events.contains("SecretUpdated"),
        "events were recorded: {events}"
    );
    outputs.push(("events".into(), events));
    let (ok, resources) = kubectl(
        &["get", "thalassasecrets", "-n", h.ns(), "-o", "yaml"],
        None,
    )
    .await;
    assert!(ok, "{resources}");
    outputs.push(("ThalassaSecret status".into(), resources));
    let port = h.operator.as_ref().unwrap().port;
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        if let Some((_, body)) = http_get(&format!("http://127.0.0.1:{port}{path}")).await {
            outputs.push((format!("GET {path}"), body));
        }
    }
    assert!(
        outputs[0].1.lines().count() > 20,
        "the operator logged at debug level"
    );
    let token = h.emulator.token().to_string();
    for (what, text) in &outputs {
        for needle in [canary.as_str(), canary_b64.as_str(), token.as_str()] {
            assert!(
                !text.contains(needle),
                "{what} contains a secret ({} bytes searched)",
                text.len()
            );
        }
    }
}
