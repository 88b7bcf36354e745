//! Secrets Manager conformance: paths, values, versions, browse/list shapes, status codes.

mod common;

use common::*;
use serde_json::json;

const SECRETS: &str = "/v1/secrets/nl-01/secrets";

async fn api_with_key() -> (Api, String) {
    let api = Api::start().await;
    let key = api.create_key("app", "aes256-gcm96").await;
    (api, key)
}

#[tokio::test]
async fn path_rules_on_create() {
    let (api, key) = api_with_key().await;
    let long_ok = format!("/{}", "a".repeat(511));
    let too_long = format!("/{}", "a".repeat(512));
    let cases: Vec<(&str, u16)> = vec![
        ("/app/db", 201),
        ("/a+b/c.d_e-f/G9", 201),
        (long_ok.as_str(), 201),
        (too_long.as_str(), 400),
        ("app/db", 400),
        ("/", 400),
        ("/app/", 400),
        ("/app//db", 400),
        ("/app db", 400),
        ("/app%20db", 400),
        ("/app$", 400),
        ("/ünï", 400),
        ("", 400),
    ];
    for (path, want) in cases {
        let r = api.create_secret(path, &key, "v").await;
        assert_eq!(r.status, want, "path {path:?}: {:?}", r.body);
        if want == 400 {
            assert!(
                r.message().contains("invalid path"),
                "{path:?}: {}",
                r.message()
            );
        }
    }
}

#[tokio::test]
async fn value_rules() {
    let (api, key) = api_with_key().await;
    let big = "x".repeat(4096);
    let too_big = "x".repeat(4097);
    let many: serde_json::Map<String, serde_json::Value> = (0..257)
        .map(|i| (format!("k{i}"), json!(b64("v"))))
        .collect();
    let max: serde_json::Map<String, serde_json::Value> = (0..256)
        .map(|i| (format!("k{i}"), json!(b64("v"))))
        .collect();
    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        ("string", json!({"secretString": b64("hello")}), 201, ""),
        (
            "binary",
            json!({"secretString": b64([0u8, 159, 146, 150])}),
            201,
            "",
        ),
        ("4096 bytes", json!({"secretString": b64(&big)}), 201, ""),
        (
            "4097 bytes",
            json!({"secretString": b64(&too_big)}),
            400,
            "1 to 4096",
        ),
        ("empty", json!({"secretString": ""}), 400, "1 to 4096"),
        (
            "not base64",
            json!({"secretString": "%%%not-base64"}),
            400,
            "valid base64",
        ),
        ("none", json!({}), 400, "exactly one of"),
        (
            "two",
            json!({"secretString": b64("a"), "generateSecret": {"byteLength": 32}}),
            400,
            "exactly one of",
        ),
        (
            "kv",
            json!({"secretKeyValues": {"user": b64("admin"), "pass.word-1_x": b64("pw")}}),
            201,
            "",
        ),
        ("kv 256 keys", json!({"secretKeyValues": max}), 201, ""),
        (
            "kv 257 keys",
            json!({"secretKeyValues": many}),
            400,
            "1 to 256 keys",
        ),
        (
            "kv empty",
            json!({"secretKeyValues": {}}),
            400,
            "1 to 256 keys",
        ),
        (
            "kv bad name",
            json!({"secretKeyValues": {"a b": b64("x")}}),
            400,
            "invalid key name",
        ),
        (
            "kv long name",
            json!({"secretKeyValues": {"k".repeat(129): b64("x")}}),
            400,
            "invalid key name",
        ),
        (
            "kv empty value",
            json!({"secretKeyValues": {"a": ""}}),
            400,
            "1 to 4096",
        ),
        (
            "kv not base64",
            json!({"secretKeyValues": {"a": "!!"}}),
            400,
            "valid base64",
        ),
        (
            "generate 16",
            json!({"generateSecret": {"byteLength": 16}}),
            201,
            "",
        ),
        (
            "generate 4096",
            json!({"generateSecret": {"byteLength": 4096}}),
            201,
            "",
        ),
        (
            "generate 15",
            json!({"generateSecret": {"byteLength": 15}}),
            400,
            "byteLength",
        ),
        (
            "generate 4097",
            json!({"generateSecret": {"byteLength": 4097}}),
            400,
            "byteLength",
        ),
    ];
    for (i, (name, mut body, want, message)) in cases.into_iter().enumerate() {
        body["path"] = json!(format!("/values/case{i}"));
        body["kmsKeyIdentity"] = json!(key);
        let r = api.send("POST", SECRETS, Some(body)).await;
        assert_eq!(r.status, want, "{name}: {:?}", r.body);
        assert!(r.message().contains(message), "{name}: {}", r.message());
        if want == 201 {
            assert!(
                r.body.get("secretString").is_none(),
                "values are never echoed"
            );
        }
    }
    // generateSecret reads back as secretString of the requested length.
    let r = api.reveal("/values/case16", None).await;
    assert_eq!(unb64(r.body["secretString"].as_str().unwrap()).len(), 16);
    // the same rules apply to put
    let r = api
        .send(
            "POST",
            "/v1/secrets/nl-01/secret/values/case0/versions",
            Some(json!({"secretString": "??"})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn create_conflict_missing_key_and_metadata_shape() {
    let (api, key) = api_with_key().await;
    let r = api
        .send(
            "POST",
            SECRETS,
            Some(json!({
                "path": "/app/db/password", "kmsKeyIdentity": key, "secretString": b64("pw"),
                "description": "db password", "labels": {"team": "shop"}, "annotations": {"a": "b"}
            })),
        )
        .await;
    assert_eq!(r.status, 201);
    let s = &r.body;
    assert_eq!(s["path"], "/app/db/password");
    assert_eq!(s["currentVersion"], 1);
    assert_eq!(s["objectVersion"], 1);
    assert_eq!(s["description"], "db password");
    assert_eq!(s["labels"]["team"], "shop");
    assert_eq!(s["kmsKey"]["identity"], key.as_str());
    assert_eq!(s["kmsKey"]["keyType"], "aes256-gcm96");
    assert_eq!(s["region"]["slug"], "nl-01");
    assert!(s["lastAccessedAt"].is_null());
    assert!(s["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(s.get("versions").is_none());

    assert_eq!(
        api.create_secret("/app/db/password", &key, "x")
            .await
            .status,
        409
    );
    let r = api
        .create_secret("/app/other", "kms-doesnotexist", "x")
        .await;
    assert_eq!(
        (r.status, r.message()),
        (404, "kms key not found: kms-doesnotexist")
    );
    let r = api
        .send(
            "POST",
            SECRETS,
            Some(json!({"path": "/app/nokey", "secretString": b64("x")})),
        )
        .await;
    assert_eq!(r.status, 400);
    // the key may also be named by slug
    assert_eq!(
        api.create_secret("/app/by-slug", "app", "x").await.status,
        201
    );
    // malformed JSON
    let r = api
        .send("POST", SECRETS, Some(json!("not an object")))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn key_must_be_active_and_symmetric() {
    let (api, key) = api_with_key().await;
    for key_type in ["aes128-gcm96", "chacha20-poly1305"] {
        let k = api.create_key(key_type, key_type).await;
        let path = format!("/types/{key_type}");
        assert_eq!(api.create_secret(&path, &k, "v").await.status, 201);
        assert_eq!(api.reveal_string(&path, None).await, "v");
    }
    for key_type in ["rsa-2048", "ecdsa-p256", "ed25519", "hmac-sha256"] {
        let k = api.create_key(&format!("asym-{key_type}"), key_type).await;
        let r = api.create_secret("/types/asym", &k, "v").await;
        assert_eq!(r.status, 400, "{key_type}");
        assert!(r.message().contains("symmetric"), "{}", r.message());
    }
    api.control()
        .set_key_status(REGION, &key, "disabled")
        .unwrap();
    let r = api.create_secret("/x", &key, "v").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        format!("kms key {key} is not active (status: disabled)")
    );
}

#[tokio::test]
async fn versions_put_pinned_read_destroy() {
    let (api, key) = api_with_key().await;
    assert_eq!(
        api.create_secret("/app/token", &key, "one").await.status,
        201
    );
    let r = api.put_string("/app/token", "two").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"path": "/app/token", "version": 2}));
    assert_eq!(
        api.put_string("/app/token", "three").await.body["version"],
        3
    );

    assert_eq!(api.reveal_string("/app/token", None).await, "three");
    assert_eq!(api.reveal_string("/app/token", Some(1)).await, "one");
    assert_eq!(api.reveal_string("/app/token", Some(2)).await, "two");
    let r = api.reveal("/app/token", Some(9)).await;
    assert_eq!(
        (r.status, r.message()),
        (404, "version 9 not found for secret /app/token")
    );

    let meta = api.get("/v1/secrets/nl-01/secret/app/token").await.body;
    assert_eq!(meta["currentVersion"], 3);
    assert_eq!(meta["objectVersion"], 3);

    // destroy v2: 204, keeps history, no longer readable
    let r = api
        .send(
            "DELETE",
            "/v1/secrets/nl-01/secret/app/token/versions?version=2",
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = api.reveal("/app/token", Some(2)).await;
    assert_eq!(
        (r.status, r.message()),
        (404, "version 2 of secret /app/token is destroyed")
    );
    assert!(
        api.control()
            .stored_ciphertext(REGION, "/app/token", 2)
            .is_none()
    );
    let meta = api
        .get("/v1/secrets/nl-01/secret/app/token?includeVersions=true")
        .await
        .body;
    let versions = meta["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["status"], "active");
    assert_eq!(versions[1]["status"], "destroyed");
    assert!(versions[1]["destroyedAt"].is_string());
    assert!(versions[0]["destroyedAt"].is_null());
    assert_eq!(versions[2]["status"], "current");
    // destroying again is idempotent; unknown version is 404; missing/invalid number is 400
    let base = "/v1/secrets/nl-01/secret/app/token/versions";
    assert_eq!(
        api.send("DELETE", &format!("{base}?version=2"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.send("DELETE", &format!("{base}?version=7"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        api.send("DELETE", &format!("{base}?version=x"), None)
            .await
            .status,
        400
    );

    // destroying the current version: allowed, currentVersion stays, reveal of current is 404
    assert_eq!(
        api.send("DELETE", &format!("{base}?version=3"), None)
            .await
            .status,
        204
    );
    let meta = api.get("/v1/secrets/nl-01/secret/app/token").await.body;
    assert_eq!(meta["currentVersion"], 3);
    assert_eq!(api.reveal("/app/token", None).await.status, 404);
    assert_eq!(api.reveal_string("/app/token", Some(1)).await, "one");
    // a new put continues the numbering and becomes current
    assert_eq!(
        api.put_string("/app/token", "four").await.body["version"],
        4
    );
    assert_eq!(api.reveal_string("/app/token", None).await, "four");
}

#[tokio::test]
async fn reveal_shapes_and_last_accessed() {
    let (api, key) = api_with_key().await;
    let r = api
        .send(
            "POST",
            SECRETS,
            Some(json!({"path": "/kv", "kmsKeyIdentity": key, "secretKeyValues": {"user": b64("admin"), "pass": b64("s3cr3t")}})),
        )
        .await;
    assert_eq!(r.status, 201);
    // no body at all (docs' curl) and {path} (client-go) both read the current version
    let r = api.reveal("/kv", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["path"], "/kv");
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["kmsKeyIdentity"], key.as_str());
    assert_eq!(r.body["kmsKeyVersion"], "1");
    assert!(r.body.get("secretString").is_none());
    assert_eq!(
        unb64(r.body["secretKeyValues"]["user"].as_str().unwrap()),
        b"admin"
    );
    assert_eq!(
        unb64(r.body["secretKeyValues"]["pass"].as_str().unwrap()),
        b"s3cr3t"
    );
    let r = api
        .send(
            "POST",
            "/v1/secrets/nl-01/secret/kv/value",
            Some(json!({"path": "/kv"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .send(
            "POST",
            "/v1/secrets/nl-01/secret/kv/value",
            Some(json!({"path": "/other"})),
        )
        .await;
    assert_eq!(r.status, 400);

    let meta = api.get("/v1/secrets/nl-01/secret/kv").await.body;
    assert!(meta["lastAccessedAt"].is_string());
    // metadata never carries values
    assert!(!meta.to_string().contains(&b64("s3cr3t")));
    // reveal of a missing secret
    let r = api.reveal("/nope", None).await;
    assert_eq!((r.status, r.message()), (404, "secret not found: /nope"));
}

#[tokio::test]
async fn suffix_named_paths_and_methods() {
    let (api, key) = api_with_key().await;
    // a secret whose last segment is literally `value`
    assert_eq!(api.create_secret("/x/value", &key, "v").await.status, 201);
    let r = api.get("/v1/secrets/nl-01/secret/x/value").await;
    assert_eq!((r.status, r.body["path"].as_str()), (200, Some("/x/value")));
    // POST .../value reveals /x (which does not exist)
    assert_eq!(api.reveal("/x", None).await.status, 404);
    // and the `/x/value` secret is revealed at /x/value/value
    assert_eq!(api.reveal_string("/x/value", None).await, "v");
    // a secret named `/y/versions` can be deleted (DELETE without ?version=)
    assert_eq!(
        api.create_secret("/y/versions", &key, "v").await.status,
        201
    );
    assert_eq!(
        api.send("DELETE", "/v1/secrets/nl-01/secret/y/versions", None)
            .await
            .status,
        204
    );
    // methods that no route takes
    assert_eq!(
        api.send("POST", "/v1/secrets/nl-01/secret/x/value/other", None)
            .await
            .status,
        405
    );
    assert_eq!(
        api.send("PUT", "/v1/secrets/nl-01/secret/x/value", None)
            .await
            .status,
        405
    );
    assert_eq!(api.get("/v1/secrets/nl-01/secretx").await.status, 404);
    assert_eq!(
        api.get("/v1/secrets/nl-99/secret/x/value").await.status,
        404
    );
}

#[tokio::test]
async fn delete_then_path_is_reusable() {
    let (api, key) = api_with_key().await;
    assert_eq!(api.create_secret("/tmp/s", &key, "a").await.status, 201);
    assert_eq!(api.put_string("/tmp/s", "b").await.status, 200);
    assert_eq!(
        api.send("DELETE", "/v1/secrets/nl-01/secret/tmp/s", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/v1/secrets/nl-01/secret/tmp/s").await.status, 404);
    assert_eq!(
        api.send("DELETE", "/v1/secrets/nl-01/secret/tmp/s", None)
            .await
            .status,
        404
    );
    assert_eq!(api.put_string("/tmp/s", "c").await.status, 404);
    let r = api.create_secret("/tmp/s", &key, "fresh").await;
    assert_eq!(
        (r.status, r.body["currentVersion"].as_u64()),
        (201, Some(1))
    );
    assert_eq!(api.reveal_string("/tmp/s", None).await, "fresh");
}

#[tokio::test]
async fn browse_and_list_shapes() {
    let (api, key) = api_with_key().await;
    for path in [
        "/app/prod/db/password",
        "/app/prod/db/user",
        "/app/prod/api-key",
        "/app/staging/api-key",
        "/top",
        "/application",
    ] {
        assert_eq!(api.create_secret(path, &key, "v").await.status, 201);
    }
    let r = api.get(&format!("{SECRETS}?path=/app/prod/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["path"], "/app/prod/");
    assert_eq!(r.body["prefixes"], json!(["/app/prod/db/"]));
    let names: Vec<&str> = r.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/app/prod/api-key"]);
    // without the trailing slash the same directory is browsed
    let r2 = api.get(&format!("{SECRETS}?path=/app/prod")).await;
    assert_eq!(r2.body["prefixes"], r.body["prefixes"]);
    // root
    let r = api.get(&format!("{SECRETS}?path=/")).await;
    assert_eq!(r.body["prefixes"], json!(["/app/"]));
    assert_eq!(r.body["secrets"].as_array().unwrap().len(), 2);
    // empty directory: arrays are still sent
    let r = api.get(&format!("{SECRETS}?path=/nothing/")).await;
    assert_eq!(
        r.body,
        json!({"path": "/nothing/", "prefixes": [], "secrets": []})
    );
    // invalid browse path
    assert_eq!(api.get(&format!("{SECRETS}?path=/a//b/")).await.status, 400);

    // list is a bare, recursive array
    let r = api.get(&format!("{SECRETS}?pathPrefix=/app/prod/")).await;
    let paths: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/app/prod/api-key",
            "/app/prod/db/password",
            "/app/prod/db/user"
        ]
    );
    // string prefix semantics: /app matches /application too
    let r = api.get(&format!("{SECRETS}?pathPrefix=/app")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 5);
    let r = api.get(SECRETS).await;
    assert_eq!(r.body.as_array().unwrap().len(), 6);
    let r = api.get(&format!("{SECRETS}?pathPrefix=/zzz")).await;
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn access_policy_is_stored_opaquely() {
    let (api, key) = api_with_key().await;
    assert_eq!(api.create_secret("/p", &key, "v").await.status, 201);
    let policy =
        json!({"conditions": [{"type": "ip", "effect": "allow", "cidrs": ["10.0.0.0/8"]}]});
    let r = api
        .send(
            "PUT",
            "/v1/secrets/nl-01/secret/p/policy",
            Some(json!({"accessPolicy": policy})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["accessPolicy"], policy);
    assert_eq!(r.body["objectVersion"], 2);
    assert_eq!(
        api.get("/v1/secrets/nl-01/secret/p").await.body["accessPolicy"],
        policy
    );
    let r = api
        .send(
            "PUT",
            "/v1/secrets/nl-01/secret/p/policy",
            Some(json!({"accessPolicy": null})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("accessPolicy").is_none());
    assert_eq!(
        api.send(
            "PUT",
            "/v1/secrets/nl-01/secret/missing/policy",
            Some(json!({"accessPolicy": null}))
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn project_header_scopes_state() {
    let (mut api, key) = api_with_key().await;
    assert_eq!(
        api.create_secret("/shared/name", &key, "org").await.status,
        201
    );
    api.project = Some("proj-a".into());
    // the organisation-level key is not visible from a project
    assert_eq!(
        api.create_secret("/shared/name", &key, "a").await.status,
        404
    );
    let project_key = api.create_key("app", "aes256-gcm96").await;
    assert_eq!(
        api.create_secret("/shared/name", &project_key, "a")
            .await
            .status,
        201
    );
    assert_eq!(api.reveal_string("/shared/name", None).await, "a");
    api.project = None;
    assert_eq!(api.reveal_string("/shared/name", None).await, "org");
    api.project = Some("proj-b".into());
    assert_eq!(api.reveal("/shared/name", None).await.status, 404);
}

/// `generateSecret` on a new version (S6) follows the same rules as on create: `byteLength`
/// 16..=4096 (400 otherwise, and when absent), exactly one value field; the response names the new
/// version and never echoes a value; the value reads back as a `secretString` of that length.
#[tokio::test]
async fn generate_on_put_follows_the_create_rules() {
    let (api, key) = api_with_key().await;
    assert_eq!(
        api.create_secret("/gen/put", &key, "first").await.status,
        201
    );
    let versions = "/v1/secrets/nl-01/secret/gen/put/versions";
    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        (
            "15",
            json!({"generateSecret": {"byteLength": 15}}),
            400,
            "byteLength",
        ),
        (
            "4097",
            json!({"generateSecret": {"byteLength": 4097}}),
            400,
            "byteLength",
        ),
        (
            "no length",
            json!({"generateSecret": {}}),
            400,
            "byteLength",
        ),
        ("none", json!({}), 400, "exactly one of"),
        (
            "two",
            json!({"secretString": b64("a"), "generateSecret": {"byteLength": 32}}),
            400,
            "exactly one of",
        ),
        ("16", json!({"generateSecret": {"byteLength": 16}}), 200, ""),
        (
            "4096",
            json!({"generateSecret": {"byteLength": 4096}}),
            200,
            "",
        ),
    ];
    let mut version = 1;
    for (name, mut body, want, message) in cases {
        body["path"] = json!("/gen/put");
        let r = api.send("POST", versions, Some(body)).await;
        assert_eq!(r.status, want, "{name}: {:?}", r.body);
        assert!(r.message().contains(message), "{name}: {}", r.message());
        if want == 200 {
            version += 1;
            assert_eq!(r.body["version"], version, "{name}");
            assert_eq!(r.body["path"], "/gen/put");
            assert!(r.body.get("secretString").is_none(), "never echoed");
        }
    }
    let r = api.reveal("/gen/put", Some(2)).await;
    assert_eq!(unb64(r.body["secretString"].as_str().unwrap()).len(), 16);
    let r = api.reveal("/gen/put", None).await;
    assert_eq!(r.body["version"], 3);
    assert_eq!(unb64(r.body["secretString"].as_str().unwrap()).len(), 4096);
    // Rejected puts stored nothing.
    let meta = api.get("/v1/secrets/nl-01/secret/gen/put").await.body;
    assert_eq!(meta["currentVersion"], 3);
}

/// A create with `generateSecret` needs a key (400 without), answers 409 at an existing path
/// without touching it, and records labels and annotations as sent.
#[tokio::test]
async fn generate_on_create_needs_a_key_and_never_replaces() {
    let (api, key) = api_with_key().await;
    let body = |key: Option<&str>| {
        let mut body = json!({
            "path": "/gen/create", "generateSecret": {"byteLength": 32},
            "labels": {"managed-by": "thalassa-secrets-operator"},
            "annotations": {"secrets.thalassa.cloud/generated-for": "shop/db"}
        });
        if let Some(key) = key {
            body["kmsKeyIdentity"] = json!(key);
        }
        body
    };
    let r = api.send("POST", SECRETS, Some(body(None))).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("kmsKeyIdentity"), "{}", r.message());
    let r = api.send("POST", SECRETS, Some(body(Some(&key)))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["labels"]["managed-by"], "thalassa-secrets-operator");
    assert_eq!(
        r.body["annotations"]["secrets.thalassa.cloud/generated-for"],
        "shop/db"
    );
    let first = api.reveal("/gen/create", None).await.body["secretString"].clone();
    let r = api.send("POST", SECRETS, Some(body(Some(&key)))).await;
    assert_eq!(r.status, 409);
    let after = api.reveal("/gen/create", None).await.body["secretString"].clone();
    assert_eq!(after, first, "kept");
    let meta = api.get("/v1/secrets/nl-01/secret/gen/create").await.body;
    assert_eq!(meta["currentVersion"], 1);
}
