//! Thalassa's getting-started flow against the real binary: start it with flags and a seed
//! file, check the KMS summary, create a key and a secret, reveal it, browse.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{b64, http_client, unb64};
use serde_json::{Value, json};

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_thalassa-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("banner").unwrap();
    let base = first
        .rsplit(' ')
        .next()
        .expect("banner ends with the URL")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    // keep draining stdout so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Running { child, base }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("Authorization", "Bearer demo-token")
        .header("X-Organisation-Identity", "org-demo");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn getting_started_flow_against_the_binary() {
    let seed = std::env::temp_dir().join(format!("emu-seed-{}.yaml", std::process::id()));
    std::fs::write(
        &seed,
        r#"
keys:
  - name: seeded-key
    keyType: aes128-gcm96
    rotations: 1
secrets:
  - path: /seeded/plain
    key: seeded-key
    string: hello
  - path: /seeded/history
    key: seeded-key
    labels: {team: shop}
    versions:
      - string: first
      - base64: AAEC
      - keyValues: {user: admin, password: pw}
"#,
    )
    .unwrap();
    let running = start(&[
        "--token",
        "demo-token",
        "--organisation",
        "org-demo",
        "--region",
        "nl-01",
        "--region",
        "de-01",
        "--kms-unavailable",
        "de-01",
        "--seed",
        seed.to_str().unwrap(),
    ]);
    let http = http_client();
    let base = running.base.as_str();

    // 1. KMS is enabled and available in nl-01 (and down in de-01, as flagged)
    let (status, summary) = call(&http, base, "GET", "/v1/kms/summary", None).await;
    assert_eq!(status, 200);
    assert_eq!(summary["featureEnabled"], true);
    let regions = summary["regions"].as_array().unwrap();
    let nl = regions.iter().find(|r| r["slug"] == "nl-01").unwrap();
    let de = regions.iter().find(|r| r["slug"] == "de-01").unwrap();
    assert_eq!(
        (nl["kmsAvailable"].as_bool(), de["kmsAvailable"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(nl["totalKeys"], 1);

    // 2. create a symmetric key
    let (status, key) = call(
        &http,
        base,
        "POST",
        "/v1/kms/nl-01/keys",
        Some(json!({"name": "app-secrets", "keyType": "aes256-gcm96"})),
    )
    .await;
    assert_eq!(status, 201);
    let key_id = key["identity"].as_str().unwrap();

    // 3. create a secret bound to it
    let (status, secret) = call(
        &http,
        base,
        "POST",
        "/v1/secrets/nl-01/secrets",
        Some(json!({
            "path": "/app/production/db/password",
            "kmsKeyIdentity": key_id,
            "secretString": b64("correct horse battery staple"),
            "description": "Production DB password"
        })),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(secret["currentVersion"], 1);
    assert_eq!(secret["kmsKey"]["identity"], key_id);

    // 4. reveal it
    let (status, value) = call(
        &http,
        base,
        "POST",
        "/v1/secrets/nl-01/secret/app/production/db/password/value",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        unb64(value["secretString"].as_str().unwrap()),
        b"correct horse battery staple"
    );
    assert_eq!(value["kmsKeyVersion"], "1");

    // 5. browse
    let (status, listing) = call(
        &http,
        base,
        "GET",
        "/v1/secrets/nl-01/secrets?path=/app/",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listing["prefixes"], json!(["/app/production/"]));
    assert_eq!(listing["secrets"], json!([]));

    // the seed file was applied: the key was rotated once, so values use key version 2
    let (_, plain) = call(
        &http,
        base,
        "POST",
        "/v1/secrets/nl-01/secret/seeded/plain/value",
        None,
    )
    .await;
    assert_eq!(unb64(plain["secretString"].as_str().unwrap()), b"hello");
    assert_eq!(plain["kmsKeyVersion"], "2");
    let (_, history) = call(
        &http,
        base,
        "GET",
        "/v1/secrets/nl-01/secret/seeded/history?includeVersions=true",
        None,
    )
    .await;
    assert_eq!(history["currentVersion"], 3);
    assert_eq!(history["labels"]["team"], "shop");
    let (_, v2) = call(
        &http,
        base,
        "POST",
        "/v1/secrets/nl-01/secret/seeded/history/value",
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(unb64(v2["secretString"].as_str().unwrap()), [0, 1, 2]);
    let (_, v3) = call(
        &http,
        base,
        "POST",
        "/v1/secrets/nl-01/secret/seeded/history/value",
        None,
    )
    .await;
    assert_eq!(
        unb64(v3["secretKeyValues"]["user"].as_str().unwrap()),
        b"admin"
    );

    // crypto in the flagged region is 503
    let (status, body) = call(
        &http,
        base,
        "POST",
        "/v1/kms/de-01/keys",
        Some(json!({"name": "k"})),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (503, Some("KMS is not available in region de-01"))
    );
    // control endpoints on the binary
    let state: Value = http
        .get(format!("{base}/_emulator/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["organisation"], "org-demo");
    let _ = std::fs::remove_file(&seed);
}

#[tokio::test]
async fn binary_flags_turn_gates_off() {
    let running = start(&[
        "--token",
        "demo-token",
        "--organisation",
        "org-demo",
        "--kms-feature=false",
    ]);
    let http = http_client();
    let (status, body) = call(
        &http,
        &running.base,
        "GET",
        "/v1/secrets/nl-01/secrets?path=/",
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        "KMS must be enabled first: feature 'kms' is not enabled for this organisation"
    );
    let (_, summary) = call(&http, &running.base, "GET", "/v1/kms/summary", None).await;
    assert_eq!(summary["featureEnabled"], false);
    let running = start(&[
        "--token",
        "demo-token",
        "--organisation",
        "org-demo",
        "--secrets-feature=false",
    ]);
    let (status, body) = call(
        &http,
        &running.base,
        "GET",
        "/v1/secrets/nl-01/secrets?path=/",
        None,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            403,
            Some("feature 'secrets' is not enabled for this organisation")
        )
    );
}
