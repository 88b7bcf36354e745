//! The sample ThalassaSecrets (`config/samples`) and what their Secrets must hold once synced
//! from an emulator seeded with `config/samples/emulator-seed.yaml`. Shared by the chart tests of
//! `tests/cluster` and the node tests of `tests/node` (included with `#[path]`).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use std::collections::BTreeMap;

/// The Secrets the samples write (besides `demo-tls`, checked by its type), with every key and
/// its value.
pub const SAMPLE_SECRETS: &[(&str, &[(&str, &str)])] = &[
    ("db-password", &[("password", "s3cr3t-demo-password")]),
    (
        "db-connection",
        &[("DB_USER", "app"), ("DB_HOST", "db.production.internal")],
    ),
    ("api-token", &[("token", "api-token-v1")]),
    (
        "db-creds",
        &[
            ("username", "app"),
            ("host", "db.production.internal"),
            ("port", "5432"),
        ],
    ),
    (
        "app-config",
        &[
            ("log-level", "info"),
            ("smtp.host", "smtp.example.com"),
            ("smtp.port", "587"),
            ("flags_new-checkout", "true"),
        ],
    ),
    (
        "db-url",
        &[(
            "DATABASE_URL",
            "postgres://app:s3cr3t-demo-password@db.production.internal:5432/shop",
        )],
    ),
    (
        "app-config-file",
        &[(
            "config.yaml",
            "database:\n  user: app\n  password: \"s3cr3t-demo-password\"\nsmtp: smtp.example.com:587\n",
        )],
    ),
];

/// Every Secret of [`SAMPLE_SECRETS`] holds exactly its keys and values.
pub async fn every_sample_secret_holds_its_data(secrets: &Api<Secret>) {
    for (name, pairs) in SAMPLE_SECRETS {
        let secret = secrets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        let data = secret_data(&secret);
        assert_eq!(
            data.len(),
            pairs.len(),
            "{name}: keys {:?}",
            data.keys().collect::<Vec<_>>()
        );
        for (key, value) in *pairs {
            assert_eq!(
                data.get(*key)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                Some(value.to_string()),
                "{name}.{key}"
            );
        }
    }
}

/// The typed samples: a TLS Secret, a templated TLS pair of the same certificate, a
/// registry pull Secret, and a templated annotation.
pub async fn the_typed_template_samples_have_their_types(secrets: &Api<Secret>) {
    let tls = secrets.get("demo-tls").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let tls = secret_data(&tls);
    assert!(tls["tls.crt"].starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert!(tls["tls.key"].starts_with(b"-----BEGIN PRIVATE KEY-----"));
    let pair = secrets.get("demo-tls-pair").await.unwrap();
    assert_eq!(pair.type_.as_deref(), Some("kubernetes.io/tls"));
    let pair = secret_data(&pair);
    assert_eq!(pair.len(), 2, "only the templated keys");
    assert_eq!(
        (&pair["tls.crt"], &pair["tls.key"]),
        (&tls["tls.crt"], &tls["tls.key"])
    );
    let pull = secrets.get("registry-pull").await.unwrap();
    assert_eq!(
        pull.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let config: serde_json::Value =
        serde_json::from_slice(&secret_data(&pull)[".dockerconfigjson"]).unwrap();
    let auth = &config["auths"]["registry.example.com"];
    assert_eq!(auth["password"], "demo-registry-token");
    {
        use base64::Engine;
        assert_eq!(
            auth["auth"],
            base64::engine::general_purpose::STANDARD.encode("robot:demo-registry-token")
        );
    }
    let url = secrets.get("db-url").await.unwrap();
    assert_eq!(
        url.metadata.annotations.unwrap()["example.com/db-host"],
        "db.production.internal",
        "templated annotation"
    );
}

/// A Secret's data, decoded.
/// (`common::secret_data` of the cluster tests is the same; the benches include `common` but
/// not this file.)
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect()
}
