//! Fault injection, request counters and the `/_emulator/*` control routes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use thalassa_emulator::{Faults, OPERATIONS};

#[tokio::test]
async fn rate_limit_429_with_retry_after_then_recovers() {
    let api = Api::start().await;
    api.control().set_faults(Faults {
        rate_limit_429: 2,
        retry_after_secs: 7,
        ..Faults::default()
    });
    for _ in 0..2 {
        let r = api.get("/v1/kms/summary").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.headers["retry-after"], "7");
        assert!(r.message().contains("too many requests"));
    }
    assert_eq!(api.get("/v1/kms/summary").await.status, 200);
    assert_eq!(api.control().faults().rate_limit_429, 0);
    // control routes are never faulted
    api.control().set_faults(Faults {
        rate_limit_429: 5,
        ..Faults::default()
    });
    let r = api
        .http
        .get(format!("{}/_emulator/state", api.emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api.control().faults().rate_limit_429, 5);
}

#[tokio::test]
async fn burst_503_error_rate_and_latency() {
    let api = Api::start().await;
    api.control().set_faults(Faults {
        burst_503: 3,
        ..Faults::default()
    });
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(api.get("/v1/secrets/nl-01/secrets?path=/").await.status);
        }
        v
    };
    assert_eq!(statuses, [503, 503, 503, 200]);

    api.control().set_faults(Faults {
        error_rate: 1.0,
        error_status: 502,
        ..Faults::default()
    });
    assert_eq!(api.get("/v1/kms/summary").await.status, 502);
    api.control().set_faults(Faults {
        error_rate: 0.0,
        ..Faults::default()
    });
    assert_eq!(api.get("/v1/kms/summary").await.status, 200);

    api.control().set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(api.get("/v1/kms/summary").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // faults also apply to the token endpoint (it is a Thalassa route)
    api.control().set_faults(Faults {
        burst_503: 1,
        ..Faults::default()
    });
    let r = api
        .http
        .post(format!("{}/oidc/token", api.emu.base_url()))
        .form(&[("grant_type", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn counters_per_operation_and_status() {
    let api = Api::start().await;
    let key = api.create_key("k", "aes256-gcm96").await;
    api.control().reset_counters();
    let sec = "/v1/secrets/nl-01";
    let keys = "/v1/kms/nl-01/keys";
    let calls: Vec<(&str, String, Option<serde_json::Value>, &str, u16)> = vec![
        (
            "GET",
            format!("{sec}/secrets?path=/"),
            None,
            "browseSecrets",
            200,
        ),
        (
            "GET",
            format!("{sec}/secrets?pathPrefix=/"),
            None,
            "listSecrets",
            200,
        ),
        (
            "POST",
            format!("{sec}/secrets"),
            Some(json!({"path": "/c", "kmsKeyIdentity": key, "secretString": b64("v")})),
            "createSecret",
            201,
        ),
        ("GET", format!("{sec}/secret/c"), None, "getSecret", 200),
        (
            "PUT",
            format!("{sec}/secret/c/policy"),
            Some(json!({"accessPolicy": {}})),
            "updateAccessPolicy",
            200,
        ),
        (
            "POST",
            format!("{sec}/secret/c/versions"),
            Some(json!({"secretString": b64("w")})),
            "putSecretValue",
            200,
        ),
        (
            "POST",
            format!("{sec}/secret/c/value"),
            None,
            "getSecretValue",
            200,
        ),
        (
            "POST",
            format!("{sec}/secret/missing/value"),
            None,
            "getSecretValue",
            404,
        ),
        (
            "DELETE",
            format!("{sec}/secret/c/versions?version=1"),
            None,
            "destroySecretVersion",
            204,
        ),
        (
            "DELETE",
            format!("{sec}/secret/c"),
            None,
            "deleteSecret",
            204,
        ),
        ("GET", "/v1/kms/summary".into(), None, "kmsSummary", 200),
        ("GET", keys.into(), None, "listKeys", 200),
        (
            "POST",
            keys.into(),
            Some(json!({"name": "k2"})),
            "createKey",
            201,
        ),
        ("GET", format!("{keys}/{key}"), None, "getKey", 200),
        (
            "POST",
            format!("{keys}/{key}/rotate"),
            None,
            "rotateKey",
            200,
        ),
        (
            "PATCH",
            format!("{keys}/{key}/rotation"),
            Some(json!({"keyRotationEnabled": false})),
            "updateRotation",
            200,
        ),
        (
            "POST",
            format!("{keys}/{key}/disable"),
            None,
            "disableKey",
            200,
        ),
        (
            "POST",
            format!("{keys}/{key}/enable"),
            None,
            "enableKey",
            200,
        ),
        ("DELETE", format!("{keys}/{key}"), None, "deleteKey", 200),
        (
            "DELETE",
            format!("{keys}/{key}/cancel-deletion"),
            None,
            "cancelKeyDeletion",
            200,
        ),
        ("POST", "/oidc/token".into(), None, "token", 400),
    ];
    for (method, path, body, _, want) in &calls {
        let r = api.send(method, path, body.clone()).await;
        assert_eq!(r.status, *want, "{method} {path}: {:?}", r.body);
    }
    let counters = api.control().counters();
    for (_, _, _, op, status) in &calls {
        assert!(
            counters.get(op, *status) >= 1,
            "{op} {status}: {counters:?}"
        );
        assert!(OPERATIONS.contains(op));
    }
    assert_eq!(counters.get("getSecretValue", 200), 1);
    assert_eq!(counters.operation_total("getSecretValue"), 2);
    assert_eq!(counters.total, calls.len() as u64);
    // every documented operation was exercised
    for op in OPERATIONS {
        assert!(counters.operation_total(op) >= 1, "{op}");
    }
    // the same numbers over HTTP, then reset
    let base = api.emu.base_url();
    let over_http: serde_json::Value = api
        .http
        .get(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["total"], calls.len());
    assert_eq!(over_http["operations"]["getSecretValue"]["404"], 1);
    let r = api
        .http
        .delete(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(api.control().counters().total, 0);
}

#[tokio::test]
async fn control_routes_mirror_the_handle() {
    let api = Api::start().await;
    let base = format!("{}/_emulator", api.emu.base_url());
    let http = &api.http;
    let send = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
            )
        }
    };
    use reqwest::Method as M;

    // seeding
    let (status, body) = send(
        M::POST,
        "/keys",
        Some(json!({"name": "demo", "keyType": "chacha20-poly1305"})),
    )
    .await;
    assert_eq!(status, 201);
    let key = body["identity"].as_str().unwrap().to_owned();
    let (status, body) = send(
        M::POST,
        "/secrets",
        Some(json!({"path": "/demo/s", "key": "demo", "string": "one"})),
    )
    .await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(1)));
    let (status, body) = send(
        M::POST,
        "/secrets/versions",
        Some(json!({"path": "/demo/s", "keyValues": {"user": "u"}})),
    )
    .await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(2)));
    assert_eq!(
        send(
            M::POST,
            "/secrets",
            Some(json!({"path": "/demo/t", "key": "demo"}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            M::POST,
            "/secrets",
            Some(json!({"path": "/demo/t", "key": "demo", "base64": b64("bin")}))
        )
        .await
        .0,
        201
    );
    assert_eq!(api.reveal_string("/demo/s", Some(1)).await, "one");
    assert_eq!(
        unb64(
            api.reveal("/demo/s", None).await.body["secretKeyValues"]["user"]
                .as_str()
                .unwrap()
        ),
        b"u"
    );
    let (status, body) = send(M::POST, "/keys/rotate", Some(json!({"key": key}))).await;
    assert_eq!((status, body["latestVersion"].as_u64()), (200, Some(2)));

    // state summary: shapes, no values, no tokens
    let (status, state) = send(M::GET, "/state", None).await;
    assert_eq!(status, 200);
    assert_eq!(state["organisation"], ORG);
    assert_eq!(state["featureGates"], json!({"secrets": true, "kms": true}));
    assert_eq!(state["scopes"][0]["secrets"].as_array().unwrap().len(), 2);
    assert!(!state.to_string().contains(TOKEN));
    assert!(!state.to_string().contains(&b64("one")));

    // gates
    assert_eq!(
        send(M::PUT, "/feature-gates", Some(json!({"kms": false})))
            .await
            .1,
        json!({"secrets": true, "kms": false})
    );
    assert_eq!(api.reveal("/demo/s", None).await.status, 403);
    send(M::PUT, "/feature-gates", Some(json!({"kms": true}))).await;
    // regional availability
    assert_eq!(
        send(
            M::PUT,
            "/regions/nl-01/kms",
            Some(json!({"available": false}))
        )
        .await
        .0,
        200
    );
    assert_eq!(api.reveal("/demo/s", None).await.status, 503);
    send(
        M::PUT,
        "/regions/nl-01/kms",
        Some(json!({"available": true})),
    )
    .await;
    assert_eq!(
        send(
            M::PUT,
            "/regions/xx-99/kms",
            Some(json!({"available": true}))
        )
        .await
        .0,
        404
    );
    // key status
    assert_eq!(
        send(
            M::PUT,
            &format!("/regions/nl-01/keys/{key}/status"),
            Some(json!({"status": "disabled"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(api.reveal("/demo/s", None).await.status, 400);
    send(
        M::PUT,
        "/regions/nl-01/keys/demo/status",
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(api.reveal("/demo/s", None).await.status, 200);
    // tokens
    let (status, body) = send(
        M::POST,
        "/tokens",
        Some(json!({"token": "ro", "access": {"readOnly": true}})),
    )
    .await;
    assert_eq!((status, body["token"].as_str()), (201, Some("ro")));
    assert_eq!(
        api.send_as(
            Some("Bearer ro"),
            "DELETE",
            "/v1/secrets/nl-01/secret/demo/s",
            None
        )
        .await
        .status,
        403
    );
    let (_, body) = send(M::POST, "/tokens", Some(json!({"scheme": "Token"}))).await;
    let generated = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.send_as(
            Some(&format!("Token {generated}")),
            "GET",
            "/v1/kms/summary",
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(M::DELETE, &format!("/tokens/{generated}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        api.send_as(
            Some(&format!("Token {generated}")),
            "GET",
            "/v1/kms/summary",
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(send(M::DELETE, "/tokens/unknown", None).await.0, 404);
    // faults
    let (status, body) = send(
        M::PUT,
        "/faults",
        Some(json!({"rateLimit429": 1, "retryAfterSecs": 3})),
    )
    .await;
    assert_eq!((status, body["rateLimit429"].as_u64()), (200, Some(1)));
    assert_eq!(api.get("/v1/kms/summary").await.headers["retry-after"], "3");
    assert_eq!(send(M::GET, "/faults", None).await.1["rateLimit429"], 0);
    // destroy and delete
    assert_eq!(
        send(M::DELETE, "/secrets?path=/demo/s&version=1", None)
            .await
            .0,
        204
    );
    assert_eq!(api.reveal("/demo/s", Some(1)).await.status, 404);
    assert_eq!(send(M::DELETE, "/secrets?path=/demo/s", None).await.0, 204);
    assert_eq!(api.reveal("/demo/s", None).await.status, 404);
    assert_eq!(send(M::DELETE, "/secrets?path=/demo/s", None).await.0, 404);
    // control calls are not counted as API traffic
    let counters = api.control().counters();
    assert_eq!(
        counters
            .operations
            .keys()
            .filter(|k| !OPERATIONS.contains(&k.as_str()))
            .count(),
        0
    );
}

#[tokio::test]
async fn error_message_and_reveal_padding() {
    let api = Api::start().await;
    // Injected errors carry the configured message.
    api.control().set_faults(Faults {
        error_rate: 1.0,
        error_status: 400,
        error_message: Some("planted message".into()),
        ..Faults::default()
    });
    let r = api.get("/v1/kms/summary").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "planted message");

    // Reveals get whitespace after their JSON body, streamed without Content-Length; other
    // routes are not padded.
    api.control().set_faults(Faults::default());
    let key = api.create_key("k", "aes256-gcm96").await;
    assert_eq!(api.create_secret("/pad", &key, "v").await.status, 201);
    let pad = 200_000;
    api.control().set_faults(Faults {
        pad_value_response_bytes: pad,
        ..Faults::default()
    });
    let response = api
        .http
        .post(format!(
            "{}/v1/secrets/nl-01/secret/pad/value",
            api.emu.base_url()
        ))
        .header("Authorization", api.auth.clone().unwrap())
        .header("X-Organisation-Identity", api.org.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.content_length().is_none());
    let text = response.text().await.unwrap();
    assert!(text.len() > pad as usize, "{}", text.len());
    let body: serde_json::Value = serde_json::from_str(&text).expect("still valid JSON");
    assert_eq!(unb64(body["secretString"].as_str().unwrap()), b"v");
    let r = api.get("/v1/secrets/nl-01/secret/pad").await;
    assert_eq!(r.status, 200);
}
