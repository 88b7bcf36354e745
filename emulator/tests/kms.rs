//! KMS lifecycle, envelope encryption, feature gates and regional availability.

mod common;

use common::*;
use serde_json::json;
use thalassa_emulator::{EmulatorConfig, SeedValue, TokenSpec};

const KEYS: &str = "/v1/kms/nl-01/keys";

#[tokio::test]
async fn key_lifecycle() {
    let api = Api::start().await;
    let r = api
        .send(
            "POST",
            KEYS,
            Some(json!({"name": "My App Key", "keyType": "aes128-gcm96", "labels": {"a": "b"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    let key = r.body.clone();
    let id = key["identity"].as_str().unwrap().to_owned();
    assert!(id.starts_with("kms-") && id.len() == 20, "{id}");
    assert_eq!(key["slug"], "my-app-key");
    assert_eq!(key["name"], "My App Key");
    assert_eq!(key["keyType"], "aes128-gcm96");
    assert_eq!(key["status"], "active");
    assert_eq!(key["latestVersion"], 1);
    assert_eq!(key["versions"].as_array().unwrap().len(), 1);
    assert_eq!(key["organisation"]["identity"], ORG);
    assert_eq!(key["exportAllowed"], false);

    // default key type and validation
    let r = api
        .send("POST", KEYS, Some(json!({"name": "default"})))
        .await;
    assert_eq!(
        (r.status, r.body["keyType"].as_str()),
        (201, Some("aes256-gcm96"))
    );
    assert_eq!(
        api.send("POST", KEYS, Some(json!({"name": "my app key"})))
            .await
            .status,
        409
    );
    assert_eq!(
        api.send("POST", KEYS, Some(json!({"name": "x", "keyType": "des"})))
            .await
            .status,
        400
    );
    assert_eq!(
        api.send("POST", KEYS, Some(json!({"keyType": "aes128-gcm96"})))
            .await
            .status,
        400
    );
    assert_eq!(
        api.send(
            "POST",
            KEYS,
            Some(json!({"name": "r", "keyRotationEnabled": true}))
        )
        .await
        .status,
        400
    );

    // get by identity and by slug; list with filters
    assert_eq!(
        api.get(&format!("{KEYS}/{id}")).await.body["identity"],
        id.as_str()
    );
    assert_eq!(
        api.get(&format!("{KEYS}/my-app-key")).await.body["identity"],
        id.as_str()
    );
    assert_eq!(api.get(&format!("{KEYS}/kms-nope")).await.status, 404);
    assert_eq!(api.get(KEYS).await.body.as_array().unwrap().len(), 2);
    let r = api.get(&format!("{KEYS}?slug=default")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    // disable / enable
    let r = api
        .send("POST", &format!("{KEYS}/{id}/disable"), None)
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("disabled"))
    );
    let r = api.send("POST", &format!("{KEYS}/{id}/enable"), None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("active")));

    // rotate adds a version; rotation settings
    let r = api.send("POST", &format!("{KEYS}/{id}/rotate"), None).await;
    assert_eq!((r.status, r.body["latestVersion"].as_u64()), (200, Some(2)));
    let r = api
        .send(
            "PATCH",
            &format!("{KEYS}/{id}/rotation"),
            Some(json!({"keyRotationEnabled": true, "rotationPeriodInDays": 90})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.body["keyRotationEnabled"].as_bool(),
            r.body["rotationPeriodInDays"].as_i64()
        ),
        (Some(true), Some(90))
    );
    assert_eq!(
        api.send(
            "PATCH",
            &format!("{KEYS}/{id}/rotation"),
            Some(json!({"rotationPeriodInDays": 0}))
        )
        .await
        .status,
        400
    );

    // delete -> pending_deletion (+30 days), crypto refused, cancel -> active
    let r = api.send("DELETE", &format!("{KEYS}/{id}"), None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("pending_deletion"))
    );
    let scheduled: jiff::Timestamp = r.body["deletionScheduledAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let days = (scheduled - jiff::Timestamp::now()).get_seconds() / 86_400;
    assert!((29..=30).contains(&days), "{days}");
    assert_eq!(
        api.get(&format!("{KEYS}/{id}")).await.body["status"],
        "pending_deletion"
    );
    assert_eq!(
        api.send("DELETE", &format!("{KEYS}/{id}"), None)
            .await
            .status,
        400
    );
    assert_eq!(
        api.send("POST", &format!("{KEYS}/{id}/rotate"), None)
            .await
            .status,
        400
    );
    assert_eq!(
        api.send("POST", &format!("{KEYS}/{id}/enable"), None)
            .await
            .status,
        400
    );
    let r = api
        .send("DELETE", &format!("{KEYS}/{id}/cancel-deletion"), None)
        .await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("active")));
    assert!(r.body.get("deletionScheduledAt").is_none());
    assert_eq!(
        api.send("DELETE", &format!("{KEYS}/{id}/cancel-deletion"), None)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn key_states_block_reveal_and_put_but_not_metadata() {
    let api = Api::start().await;
    let key = api.create_key("k", "aes256-gcm96").await;
    assert_eq!(api.create_secret("/s", &key, "v").await.status, 201);
    for (status, message) in [
        (
            "disabled",
            format!("kms key {key} is not active (status: disabled)"),
        ),
        (
            "pending_deletion",
            format!("kms key {key} is not active (status: pending_deletion)"),
        ),
    ] {
        api.control().set_key_status(REGION, &key, status).unwrap();
        let r = api.reveal("/s", None).await;
        assert_eq!((r.status, r.message()), (400, message.as_str()), "{status}");
        let r = api.put_string("/s", "w").await;
        assert_eq!((r.status, r.message()), (400, message.as_str()), "{status}");
        assert_eq!(
            api.get("/v1/secrets/nl-01/secret/s").await.body["kmsKey"]["status"],
            status
        );
        assert_eq!(
            api.get("/v1/secrets/nl-01/secrets?path=/").await.status,
            200
        );
    }
    api.control()
        .set_key_status(REGION, &key, "active")
        .unwrap();
    assert_eq!(api.reveal_string("/s", None).await, "v");
    assert!(api.control().set_key_status(REGION, &key, "bogus").is_err());
}

#[tokio::test]
async fn rotation_keeps_old_versions_readable_and_ciphertext_is_not_plaintext() {
    let api = Api::start().await;
    let control = api.control();
    for key_type in ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"] {
        let key = api.create_key(key_type, key_type).await;
        let path = format!("/rot/{key_type}");
        let plaintext = format!("plaintext-canary-{key_type}");
        assert_eq!(api.create_secret(&path, &key, &plaintext).await.status, 201);
        let r = api.reveal(&path, None).await;
        assert_eq!(r.body["kmsKeyVersion"], "1");

        let stored = control.stored_ciphertext(REGION, &path, 1).expect("stored");
        assert!(
            !stored
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes())
        );
        assert_ne!(stored, plaintext.as_bytes());
        assert_eq!(stored.len(), plaintext.len() + 16, "AEAD tag appended");

        let r = api
            .send("POST", &format!("/v1/kms/nl-01/keys/{key}/rotate"), None)
            .await;
        assert_eq!(r.body["latestVersion"], 2);
        assert_eq!(
            api.put_string(&path, "after-rotation").await.body["version"],
            2
        );
        let r = api.reveal(&path, Some(2)).await;
        assert_eq!(r.body["kmsKeyVersion"], "2");
        let r = api.reveal(&path, Some(1)).await;
        assert_eq!(
            r.body["kmsKeyVersion"], "1",
            "old version still decrypts with key v1"
        );
        assert_eq!(
            unb64(r.body["secretString"].as_str().unwrap()),
            plaintext.as_bytes()
        );
        // identical plaintexts encrypt differently (random nonce)
        api.put_string(&path, "same").await;
        api.put_string(&path, "same").await;
        assert_ne!(
            control.stored_ciphertext(REGION, &path, 3),
            control.stored_ciphertext(REGION, &path, 4)
        );
    }
    // nothing in the state summary leaks a value
    assert!(!control.state().to_string().contains("plaintext-canary"));
}

#[tokio::test]
async fn feature_gates_return_documented_403s() {
    let api = Api::start().await;
    let key = api.create_key("k", "aes256-gcm96").await;
    assert_eq!(api.create_secret("/s", &key, "v").await.status, 201);
    let control = api.control();
    let secrets_routes: Vec<(&str, String)> = vec![
        ("GET", "/v1/secrets/nl-01/secrets?path=/".into()),
        ("GET", "/v1/secrets/nl-01/secrets?pathPrefix=/".into()),
        ("POST", "/v1/secrets/nl-01/secrets".into()),
        ("GET", "/v1/secrets/nl-01/secret/s".into()),
        ("POST", "/v1/secrets/nl-01/secret/s/value".into()),
        ("POST", "/v1/secrets/nl-01/secret/s/versions".into()),
        ("PUT", "/v1/secrets/nl-01/secret/s/policy".into()),
        (
            "DELETE",
            "/v1/secrets/nl-01/secret/s/versions?version=1".into(),
        ),
        ("DELETE", "/v1/secrets/nl-01/secret/s".into()),
    ];
    let kms_routes: Vec<(&str, String)> = vec![
        ("GET", "/v1/kms/nl-01/keys".into()),
        ("POST", "/v1/kms/nl-01/keys".into()),
        ("GET", format!("/v1/kms/nl-01/keys/{key}")),
        ("DELETE", format!("/v1/kms/nl-01/keys/{key}")),
        (
            "DELETE",
            format!("/v1/kms/nl-01/keys/{key}/cancel-deletion"),
        ),
        ("POST", format!("/v1/kms/nl-01/keys/{key}/disable")),
        ("POST", format!("/v1/kms/nl-01/keys/{key}/enable")),
        ("POST", format!("/v1/kms/nl-01/keys/{key}/rotate")),
        ("PATCH", format!("/v1/kms/nl-01/keys/{key}/rotation")),
    ];
    let cases = [
        (
            false,
            true,
            "feature 'secrets' is not enabled for this organisation",
            None,
        ),
        (
            true,
            false,
            "KMS must be enabled first: feature 'kms' is not enabled for this organisation",
            Some("feature 'kms' is not enabled for this organisation"),
        ),
        (
            false,
            false,
            "feature 'secrets' is not enabled for this organisation",
            Some("feature 'kms' is not enabled for this organisation"),
        ),
    ];
    for (secrets, kms, secrets_message, kms_message) in cases {
        control.set_feature_gates(secrets, kms);
        for (method, path) in &secrets_routes {
            let r = api.send(method, path, Some(json!({}))).await;
            assert_eq!(
                (r.status, r.message()),
                (403, secrets_message),
                "{method} {path}"
            );
        }
        for (method, path) in &kms_routes {
            let r = api.send(method, path, Some(json!({}))).await;
            match kms_message {
                Some(m) => assert_eq!((r.status, r.message()), (403, m), "{method} {path}"),
                None => assert_ne!(r.status, 403, "{method} {path}"),
            }
        }
        let summary = api.get("/v1/kms/summary").await;
        assert_eq!(summary.status, 200);
        assert_eq!(summary.body["featureEnabled"], kms);
    }
    control.set_feature_gates(true, true);
    assert_eq!(api.reveal_string("/s", None).await, "v");
}

#[tokio::test]
async fn regional_kms_outage_is_503_on_crypto_only() {
    let api = Api::start_with(EmulatorConfig {
        regions: vec!["nl-01".into(), "nl-02".into()],
        tokens: vec![TokenSpec::bearer(TOKEN)],
        ..EmulatorConfig::default()
    })
    .await;
    let key = api.create_key("k", "aes256-gcm96").await;
    assert_eq!(api.create_secret("/s", &key, "v").await.status, 201);
    api.control().set_kms_available("nl-01", false).unwrap();
    let unavailable = "KMS is not available in region nl-01";

    let summary = api.get("/v1/kms/summary").await.body;
    let regions = summary["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0]["slug"], "nl-01");
    assert_eq!(regions[0]["kmsAvailable"], false);
    assert_eq!(regions[0]["totalKeys"], 1);
    assert_eq!(regions[0]["activeKeys"], 1);
    assert_eq!(regions[1]["kmsAvailable"], true);

    // crypto operations
    let r = api.reveal("/s", None).await;
    assert_eq!((r.status, r.message()), (503, unavailable));
    let r = api.put_string("/s", "w").await;
    assert_eq!((r.status, r.message()), (503, unavailable));
    let r = api.create_secret("/t", &key, "v").await;
    assert_eq!((r.status, r.message()), (503, unavailable));
    let r = api
        .send("POST", &format!("/v1/kms/nl-01/keys/{key}/rotate"), None)
        .await;
    assert_eq!((r.status, r.message()), (503, unavailable));
    let r = api
        .send("POST", "/v1/kms/nl-01/keys", Some(json!({"name": "new"})))
        .await;
    assert_eq!(r.status, 503);
    // metadata keeps working
    assert_eq!(api.get("/v1/secrets/nl-01/secret/s").await.status, 200);
    assert_eq!(
        api.get("/v1/secrets/nl-01/secrets?path=/").await.status,
        200
    );
    assert_eq!(
        api.get("/v1/secrets/nl-01/secrets?pathPrefix=/")
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(&format!("/v1/kms/nl-01/keys/{key}")).await.status,
        200
    );
    assert_eq!(
        api.send(
            "DELETE",
            "/v1/secrets/nl-01/secret/s/versions?version=1",
            None
        )
        .await
        .status,
        204
    );
    // the other region is unaffected
    let r = api
        .send("POST", "/v1/kms/nl-02/keys", Some(json!({"name": "k2"})))
        .await;
    assert_eq!(r.status, 201);
    api.control().set_kms_available("nl-01", true).unwrap();
    assert_eq!(api.put_string("/s", "back").await.status, 200);
    assert!(api.control().set_kms_available("nl-99", false).is_err());
}

#[tokio::test]
async fn control_seeding_follows_api_rules() {
    let api = Api::start().await;
    let control = api.control();
    let key = control
        .create_key(REGION, "seeded", "chacha20-poly1305")
        .unwrap();
    assert_eq!(
        control
            .create_secret(REGION, "/seed/a", "seeded", SeedValue::String("one".into()))
            .unwrap(),
        1
    );
    assert_eq!(
        control
            .put_secret_value(REGION, "/seed/a", SeedValue::Bytes(vec![1, 2, 3]))
            .unwrap(),
        2
    );
    assert_eq!(api.reveal_string("/seed/a", Some(1)).await, "one");
    assert_eq!(
        unb64(
            api.reveal("/seed/a", None).await.body["secretString"]
                .as_str()
                .unwrap()
        ),
        [1, 2, 3]
    );
    assert_eq!(
        api.reveal("/seed/a", None).await.body["kmsKeyIdentity"],
        key.as_str()
    );
    assert!(
        control
            .create_secret(REGION, "/seed/a", &key, SeedValue::String("x".into()))
            .is_err()
    );
    assert!(
        control
            .create_secret(REGION, "bad path", &key, SeedValue::String("x".into()))
            .is_err()
    );
    assert!(
        control
            .create_secret(REGION, "/seed/b", &key, SeedValue::String(String::new()))
            .is_err()
    );
    assert!(
        control
            .create_secret(REGION, "/seed/b", "missing", SeedValue::String("x".into()))
            .is_err()
    );
    control.destroy_version(REGION, "/seed/a", 1).unwrap();
    assert_eq!(api.reveal("/seed/a", Some(1)).await.status, 404);
    control.delete_secret(REGION, "/seed/a").unwrap();
    assert_eq!(api.reveal("/seed/a", None).await.status, 404);
    // seeding works even while gates are off (it bypasses them)
    control.set_feature_gates(false, false);
    control
        .create_secret(REGION, "/seed/c", &key, SeedValue::Generate(32))
        .unwrap();
    control.set_feature_gates(true, true);
    assert_eq!(
        unb64(
            api.reveal("/seed/c", None).await.body["secretString"]
                .as_str()
                .unwrap()
        )
        .len(),
        32
    );
}
