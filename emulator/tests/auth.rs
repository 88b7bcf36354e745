//! Credentials, token restrictions, client credentials and token exchange.

mod common;

use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use thalassa_emulator::{
    Access, EmulatorConfig, FederatedIdentitySpec, JwksSource, OidcClientSpec, SeedValue, TokenSpec,
};

async fn seeded(config: EmulatorConfig) -> (Api, String) {
    let api = Api::start_with(config).await;
    let control = api.control();
    let key = control.create_key(REGION, "app", "aes256-gcm96").unwrap();
    for path in [
        "/app/production/db/password",
        "/app/production/api",
        "/app/staging/api",
    ] {
        control
            .create_secret(
                REGION,
                path,
                &key,
                SeedValue::String(format!("value of {path}")),
            )
            .unwrap();
    }
    (api, key)
}

fn config_with(tokens: Vec<TokenSpec>) -> EmulatorConfig {
    let mut all = vec![TokenSpec::bearer(TOKEN)];
    all.extend(tokens);
    EmulatorConfig {
        tokens: all,
        ..EmulatorConfig::default()
    }
}

#[tokio::test]
async fn credentials_and_headers() {
    let (mut api, _) = seeded(config_with(vec![TokenSpec::pat("my-pat")])).await;
    let path = "/v1/secrets/nl-01/secret/app/staging/api";
    let cases: Vec<(Option<&str>, u16)> = vec![
        (Some("Bearer test-token"), 200),
        (Some("bearer test-token"), 200),
        (Some("Token my-pat"), 200),
        (Some("Bearer my-pat"), 200),
        (Some("Token test-token"), 401),
        (Some("Basic dGVzdDp0ZXN0"), 401),
        (Some("Bearer nope"), 401),
        (Some("Bearer"), 401),
        (None, 401),
    ];
    for (auth, want) in cases {
        let r = api.send_as(auth, "GET", path, None).await;
        assert_eq!(r.status, want, "{auth:?}");
        if want == 401 {
            assert_eq!(r.message(), "invalid or missing credentials");
        }
    }
    // revocation
    api.control()
        .add_token(TokenSpec::bearer("short-lived"))
        .unwrap();
    assert_eq!(
        api.send_as(Some("Bearer short-lived"), "GET", path, None)
            .await
            .status,
        200
    );
    assert!(api.control().revoke_token("short-lived"));
    assert_eq!(
        api.send_as(Some("Bearer short-lived"), "GET", path, None)
            .await
            .status,
        401
    );
    assert!(!api.control().revoke_token("never-existed"));
    // organisation header
    api.org = None;
    let r = api.get(path).await;
    assert_eq!(
        (r.status, r.message()),
        (400, "missing X-Organisation-Identity header")
    );
    api.org = Some("org-other".into());
    let r = api.get(path).await;
    assert_eq!(r.status, 403);
    assert!(r.message().starts_with("permission denied"));
    api.org = Some(ORG.into());
    // authentication comes before the organisation check
    api.org = None;
    assert_eq!(api.send_as(None, "GET", path, None).await.status, 401);
}

#[tokio::test]
async fn token_restrictions() {
    let (api, key) = seeded(config_with(vec![
        TokenSpec::bearer("read-only").with_access(Access::read_only()),
        TokenSpec::bearer("prod-only").with_access(Access {
            path_globs: Some(vec!["/app/production/*".into()]),
            ..Access::default()
        }),
        TokenSpec::bearer("no-reveal").with_access(Access {
            reveal: false,
            ..Access::default()
        }),
        TokenSpec::bearer("no-kms").with_access(Access {
            kms: false,
            ..Access::default()
        }),
    ]))
    .await;
    let sec = "/v1/secrets/nl-01";
    let keys = "/v1/kms/nl-01/keys";
    let create =
        json!({"path": "/app/production/new", "kmsKeyIdentity": key, "secretString": b64("x")});
    let put = json!({"secretString": b64("x")});
    type Case<'a> = (&'a str, &'a str, String, Option<Value>, u16, &'a str);
    let cases: Vec<Case> = vec![
        // read-only: metadata and reveal yes, writes 403, key admin 404
        (
            "read-only",
            "GET",
            format!("{sec}/secret/app/staging/api"),
            None,
            200,
            "",
        ),
        (
            "read-only",
            "POST",
            format!("{sec}/secret/app/staging/api/value"),
            None,
            200,
            "",
        ),
        (
            "read-only",
            "POST",
            format!("{sec}/secrets"),
            Some(create.clone()),
            403,
            "permission denied: create on secret /app/production/new",
        ),
        (
            "read-only",
            "POST",
            format!("{sec}/secret/app/staging/api/versions"),
            Some(put.clone()),
            403,
            "permission denied: putSecretValue on secret /app/staging/api",
        ),
        (
            "read-only",
            "PUT",
            format!("{sec}/secret/app/staging/api/policy"),
            Some(json!({"accessPolicy": null})),
            403,
            "permission denied: update on secret /app/staging/api",
        ),
        (
            "read-only",
            "DELETE",
            format!("{sec}/secret/app/staging/api/versions?version=1"),
            None,
            403,
            "permission denied: delete on secret /app/staging/api",
        ),
        (
            "read-only",
            "DELETE",
            format!("{sec}/secret/app/staging/api"),
            None,
            403,
            "permission denied: delete on secret /app/staging/api",
        ),
        ("read-only", "GET", keys.to_string(), None, 200, ""),
        ("read-only", "GET", format!("{keys}/{key}"), None, 200, ""),
        (
            "read-only",
            "POST",
            keys.to_string(),
            Some(json!({"name": "n"})),
            404,
            "",
        ),
        (
            "read-only",
            "POST",
            format!("{keys}/{key}/disable"),
            None,
            404,
            "",
        ),
        (
            "read-only",
            "POST",
            format!("{keys}/{key}/rotate"),
            None,
            404,
            "",
        ),
        (
            "read-only",
            "DELETE",
            format!("{keys}/{key}"),
            None,
            404,
            "",
        ),
        // path globs
        (
            "prod-only",
            "GET",
            format!("{sec}/secret/app/production/db/password"),
            None,
            200,
            "",
        ),
        (
            "prod-only",
            "POST",
            format!("{sec}/secret/app/production/db/password/value"),
            None,
            200,
            "",
        ),
        (
            "prod-only",
            "GET",
            format!("{sec}/secret/app/staging/api"),
            None,
            403,
            "permission denied: read on secret /app/staging/api",
        ),
        (
            "prod-only",
            "POST",
            format!("{sec}/secret/app/staging/api/value"),
            None,
            403,
            "permission denied: getSecretValue on secret /app/staging/api",
        ),
        (
            "prod-only",
            "POST",
            format!("{sec}/secrets"),
            Some(create.clone()),
            201,
            "",
        ),
        // no reveal
        (
            "no-reveal",
            "GET",
            format!("{sec}/secret/app/staging/api"),
            None,
            200,
            "",
        ),
        (
            "no-reveal",
            "POST",
            format!("{sec}/secret/app/staging/api/value"),
            None,
            403,
            "permission denied: getSecretValue on secret /app/staging/api",
        ),
        // no KMS access: key routes hide existence
        ("no-kms", "GET", keys.to_string(), None, 404, ""),
        ("no-kms", "GET", format!("{keys}/{key}"), None, 404, ""),
        (
            "no-kms",
            "POST",
            keys.to_string(),
            Some(json!({"name": "n"})),
            404,
            "",
        ),
        (
            "no-kms",
            "GET",
            "/v1/kms/summary".to_string(),
            None,
            200,
            "",
        ),
        (
            "no-kms",
            "POST",
            format!("{sec}/secrets"),
            Some(json!({"path": "/k", "kmsKeyIdentity": key, "secretString": b64("x")})),
            404,
            "",
        ),
        (
            "no-kms",
            "POST",
            format!("{sec}/secret/app/staging/api/value"),
            None,
            200,
            "",
        ),
    ];
    for (token, method, path, body, want, message) in cases {
        let r = api
            .send_as(Some(&format!("Bearer {token}")), method, &path, body)
            .await;
        assert_eq!(r.status, want, "{token} {method} {path}: {:?}", r.body);
        assert!(
            r.message().contains(message),
            "{token} {method} {path}: {}",
            r.message()
        );
    }
    // list and browse are silently filtered
    let prod = Some("Bearer prod-only");
    let r = api
        .send_as(prod, "GET", &format!("{sec}/secrets?pathPrefix=/"), None)
        .await;
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
            "/app/production/api",
            "/app/production/db/password",
            "/app/production/new"
        ]
    );
    let r = api
        .send_as(prod, "GET", &format!("{sec}/secrets?path=/app/"), None)
        .await;
    assert_eq!(r.body["prefixes"], json!(["/app/production/"]));
    let r = api
        .send_as(
            prod,
            "GET",
            &format!("{sec}/secrets?path=/app/staging/"),
            None,
        )
        .await;
    assert_eq!(
        r.body,
        json!({"path": "/app/staging/", "prefixes": [], "secrets": []})
    );
    // invalid glob is refused
    assert!(
        api.control()
            .add_token(TokenSpec::bearer("bad").with_access(Access {
                path_globs: Some(vec!["/a/[".into()]),
                ..Access::default()
            }))
            .is_err()
    );
}

async fn post_form(api: &Api, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Resp {
    let mut request = api
        .http
        .post(format!("{}/oidc/token", api.emu.base_url()))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    Resp {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap(),
    }
}

#[tokio::test]
async fn client_credentials_grant() {
    let api = Api::start_with(EmulatorConfig {
        tokens: vec![TokenSpec::bearer(TOKEN)],
        oidc_clients: vec![OidcClientSpec {
            client_id: "sa-operator".into(),
            client_secret: "s3cret".into(),
            access: Access::read_only(),
        }],
        ..EmulatorConfig::default()
    })
    .await;
    let key = api
        .control()
        .create_key(REGION, "k", "aes256-gcm96")
        .unwrap();
    api.control()
        .create_secret(REGION, "/s", &key, SeedValue::String("v".into()))
        .unwrap();

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "sa-operator"),
        ("client_secret", "s3cret"),
    ];
    let r = post_form(&api, &form, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    assert_eq!(
        api.send_as(
            Some(&auth),
            "POST",
            "/v1/secrets/nl-01/secret/s/value",
            None
        )
        .await
        .status,
        200
    );
    // the issued token carries the client's (read-only) access
    let r = api
        .send_as(
            Some(&auth),
            "POST",
            "/v1/secrets/nl-01/secret/s/versions",
            Some(json!({"secretString": b64("w")})),
        )
        .await;
    assert_eq!(r.status, 403);
    // issued tokens are Bearer-only and revocable
    assert_eq!(
        api.send_as(
            Some(&format!("Token {token}")),
            "GET",
            "/v1/kms/summary",
            None
        )
        .await
        .status,
        401
    );
    api.control().revoke_token(&token);
    assert_eq!(
        api.send_as(Some(&auth), "GET", "/v1/kms/summary", None)
            .await
            .status,
        401
    );

    // HTTP Basic client authentication (what golang.org/x/oauth2 tries first)
    let r = post_form(
        &api,
        &[("grant_type", "client_credentials")],
        Some(("sa-operator", "s3cret")),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("access_token_lifetime", "600"),
        ],
        Some(("sa-operator", "s3cret")),
    )
    .await;
    assert_eq!(r.body["expires_in"], 600);

    let r = post_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "sa-operator"),
            ("client_secret", "wrong"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let r = post_form(&api, &[("grant_type", "password")], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = post_form(&api, &[], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

/// An EC P-256 issuer: signs subject tokens and publishes its JWKS.
struct Issuer {
    key: EncodingKey,
    kid: String,
}

impl Issuer {
    fn new(kid: &str) -> Issuer {
        use p256::pkcs8::EncodePrivateKey;
        let secret = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        let der = secret.to_pkcs8_der().unwrap();
        Issuer {
            key: EncodingKey::from_ec_der(der.as_bytes()),
            kid: kid.to_owned(),
        }
    }

    fn jwks(&self) -> String {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
    }

    fn sign(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

const ISS: &str = "https://kubernetes.default.svc";
const AUD: &str = "https://api.thalassa.cloud";
const SUB: &str = "system:serviceaccount:thalassa-system:operator";

fn claims(overrides: Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims =
        json!({"iss": ISS, "aud": [AUD, "other"], "sub": SUB, "iat": now, "exp": now + 600});
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn identity(service_account: &str, jwks: JwksSource, access: Access) -> FederatedIdentitySpec {
    FederatedIdentitySpec {
        service_account_id: service_account.into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        subject: "system:serviceaccount:thalassa-system:*".into(),
        jwks,
        access,
    }
}

fn exchange_form<'a>(token: &'a str, service_account: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("organisation_id", ORG),
        ("service_account_id", service_account),
    ]
}

#[tokio::test]
async fn token_exchange() {
    let issuer = Issuer::new("k1");
    let impostor = Issuer::new("k1"); // same kid, different key: signature must fail
    let jwks_dir = std::env::temp_dir().join(format!("emu-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&jwks_dir).unwrap();
    let jwks_file = jwks_dir.join("jwks.json");
    std::fs::write(&jwks_file, issuer.jwks()).unwrap();

    // a JWKS served over HTTP, as a real issuer would
    let jwks_doc = issuer.jwks();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/openid/v1/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/openid/v1/jwks",
            axum::routing::get(move || async move { jwks_doc }),
        );
        axum::serve(listener, app).await.unwrap();
    });

    let (api, _) = seeded(EmulatorConfig {
        tokens: vec![TokenSpec::bearer(TOKEN)],
        federated_identities: vec![
            identity(
                "sa-inline",
                JwksSource::Inline(issuer.jwks()),
                Access {
                    path_globs: Some(vec!["/app/production/*".into()]),
                    ..Access::read_only()
                },
            ),
            identity(
                "sa-file",
                JwksSource::File(jwks_file.clone()),
                Access::default(),
            ),
            identity("sa-url", JwksSource::Url(jwks_url), Access::default()),
        ],
        ..EmulatorConfig::default()
    })
    .await;

    let good = issuer.sign(claims(json!({})));
    for sa in ["sa-inline", "sa-file", "sa-url"] {
        let r = post_form(&api, &exchange_form(&good, sa), None).await;
        assert_eq!(r.status, 200, "{sa}: {:?}", r.body);
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["expires_in"], 3600);
    }
    // the issued token acts with the identity's access
    let r = post_form(&api, &exchange_form(&good, "sa-inline"), None).await;
    let auth = format!("Bearer {}", r.body["access_token"].as_str().unwrap());
    let sec = "/v1/secrets/nl-01/secret";
    assert_eq!(
        api.send_as(
            Some(&auth),
            "POST",
            &format!("{sec}/app/production/api/value"),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        api.send_as(
            Some(&auth),
            "POST",
            &format!("{sec}/app/staging/api/value"),
            None
        )
        .await
        .status,
        403
    );
    assert_eq!(
        api.send_as(
            Some(&auth),
            "DELETE",
            &format!("{sec}/app/production/api"),
            None
        )
        .await
        .status,
        403
    );

    // id_token subject type and lifetimes
    let mut form = exchange_form(&good, "sa-file");
    form[2].1 = "urn:ietf:params:oauth:token-type:id_token";
    form.push(("access_token_lifetime", "39600s"));
    let r = post_form(&api, &form, None).await;
    assert_eq!(
        (r.status, r.body["expires_in"].as_i64()),
        (200, Some(39600))
    );
    let mut form = exchange_form(&good, "sa-file");
    form.push(("access_token_lifetime", "10"));
    assert_eq!(
        post_form(&api, &form, None).await.body["error"],
        "invalid_request"
    );

    // rejections: (what, token, service account, status, error)
    let now = jsonwebtoken::get_current_timestamp();
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "wrong issuer",
            issuer.sign(claims(json!({"iss": "https://evil"}))),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "wrong audience",
            issuer.sign(claims(json!({"aud": "https://elsewhere"}))),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "bad signature",
            impostor.sign(claims(json!({}))),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "expired",
            issuer.sign(claims(json!({"iat": now - 7200, "exp": now - 3600}))),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "untrusted subject",
            issuer.sign(claims(json!({"sub": "system:serviceaccount:default:x"}))),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "unknown service account",
            good.clone(),
            "sa-unknown",
            400,
            "invalid_grant",
        ),
        (
            "not a JWT",
            "not-a-jwt".to_owned(),
            "sa-file",
            400,
            "invalid_grant",
        ),
        (
            "bad signature via URL",
            impostor.sign(claims(json!({}))),
            "sa-url",
            400,
            "invalid_grant",
        ),
    ];
    for (what, token, sa, status, error) in cases {
        let r = post_form(&api, &exchange_form(&token, sa), None).await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (status, Some(error)),
            "{what}: {:?}",
            r.body
        );
    }
    let mut form = exchange_form(&good, "sa-file");
    form[2].1 = "urn:ietf:params:oauth:token-type:saml2";
    assert_eq!(
        post_form(&api, &form, None).await.body["error"],
        "invalid_request"
    );
    let mut form = exchange_form(&good, "sa-file");
    form[3].1 = "org-other";
    assert_eq!(
        post_form(&api, &form, None).await.body["error"],
        "invalid_grant"
    );
    let form: Vec<_> = exchange_form(&good, "sa-file")
        .into_iter()
        .filter(|(k, _)| *k != "subject_token")
        .collect();
    assert_eq!(
        post_form(&api, &form, None).await.body["error"],
        "invalid_request"
    );

    let counters = api.control().counters();
    assert!(counters.get("token", 200) >= 5);
    assert!(counters.get("token", 400) >= 8);
    let _ = std::fs::remove_dir_all(&jwks_dir);
}
