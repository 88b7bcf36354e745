//! Tenancy on the real control plane: every namespace reads Thalassa through its own store (its
//! own identity), cluster stores and the operator's default connection serve only the namespaces
//! they allow, and caches never answer for another identity. Each escape attempt is stopped at
//! admission or by a condition, with no Secret written or changed and no value anywhere.
//!
//! One test function: the operator runs in cluster mode (it must see several namespaces), so two
//! of them in parallel would act on each other's resources.

mod common;

use std::time::Duration;

use common::{
    REGION, harness_with, kubectl, kubectl_apply as apply, secret_data, wait_for,
    wait_store_condition,
};
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use thalassa_emulator::{
    Access, EmulatorConfig, FederatedIdentitySpec, JwksSource, SeedValue, TokenSpec,
};
use thalassa_operator::{crd::ThalassaSecret, store::ClusterThalassaSecretStore};

/// Values planted in Thalassa; none may appear where it does not belong.
const VALUE_A: &str = "VALUE-team-a-db-7f3";
const VALUE_B: &str = "VALUE-team-b-db-91c";
const VALUE_A_2: &str = "VALUE-team-a-db-v2-0b9";
const VALUE_SHARED: &str = "VALUE-shared-cfg-d04";
const TOKEN_A: &str = "token-team-a-5e1";
const TOKEN_B: &str = "token-team-b-c2a";
const TOKEN_NO_REVEAL: &str = "token-team-a-list-only-44d";
/// The ServiceAccount name the chart's RBAC lets the operator request tokens for.
const WI_SERVICE_ACCOUNT: &str = "thalassa-secrets";

async fn token_secret(client: &Client, namespace: &str, name: &str, pairs: &[(&str, &str)]) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
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
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn store_yaml(name: &str, url: &str, auth: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: {name}}}\nspec:\n  url: {url}\n  organisation: org-local\n  auth: {auth}\n"
    )
}

fn resource_yaml(name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n  refreshInterval: 10s\n  data: [{{secretKey: value, remoteRef: {{path: {path}}}}}]\n{extra}"
    )
}

/// Waits for Ready with `status` and `reason` at the current generation; returns its message.
async fn wait_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> String {
    let api: Api<ThalassaSecret> = Api::namespaced(client.clone(), namespace);
    wait_for(
        Duration::from_secs(60),
        &format!("{namespace}/{name}: Ready={status} {reason}"),
        || async {
            let ts = api.get(name).await.ok()?;
            let c = ts
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?
                .clone();
            (c.status == status
                && c.reason == reason
                && c.observed_generation == ts.metadata.generation)
                .then_some(c.message)
        },
    )
    .await
}

async fn secret_absent(client: &Client, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    assert!(
        secrets.get_opt(name).await.unwrap().is_none(),
        "{namespace}/{name}: no Secret may be written"
    );
}

#[tokio::test]
async fn every_namespace_reads_with_its_own_identity_and_escapes_are_stopped() {
    let cp = testenv::ControlPlane::shared();
    let jwks = cp.service_account_jwks().await.expect("apiserver JWKS");
    let federated = |id: &str, subject: &str, globs: &[&str]| FederatedIdentitySpec {
        service_account_id: id.into(),
        issuer: cp.service_account_issuer().into(),
        audiences: vec!["https://api.thalassa.cloud".into()],
        subject: subject.into(),
        jwks: JwksSource::Inline(jwks.to_string()),
        access: Access {
            path_globs: Some(globs.iter().map(|g| g.to_string()).collect()),
            ..Access::read_only()
        },
    };
    let config = EmulatorConfig {
        federated_identities: vec![federated(
            "sa-team-a",
            &format!("system:serviceaccount:wi-a-*:{WI_SERVICE_ACCOUNT}"),
            &["/team-a/*"],
        )],
        ..EmulatorConfig::default()
    };
    let mut h = harness_with("tenancy", config).await;
    let client = h.client.clone();
    let a_ns = cp.temp_namespace("wi-a").await;
    let b_ns = cp.temp_namespace("team-b").await;
    let (a, b) = (a_ns.name().to_string(), b_ns.name().to_string());
    let control = h.emulator.control();
    for (path, value) in [
        ("/team-a/db", VALUE_A),
        ("/team-b/db", VALUE_B),
        ("/shared/cfg", VALUE_SHARED),
    ] {
        control
            .create_secret(REGION, path, &h.key, SeedValue::String(value.into()))
            .unwrap();
    }
    let limited = |token: &str, globs: &[&str]| {
        TokenSpec::bearer(token).with_access(Access {
            path_globs: Some(globs.iter().map(|g| g.to_string()).collect()),
            ..Access::read_only()
        })
    };
    control.add_token(limited(TOKEN_A, &["/team-a/*"])).unwrap();
    control
        .add_token(limited(TOKEN_B, &["/team-b/*", "/shared/*"]))
        .unwrap();
    let url = h.emulator.base_url();
    token_secret(&client, &a, "thalassa", &[("token", TOKEN_A)]).await;
    token_secret(&client, &b, "thalassa", &[("token", TOKEN_B)]).await;
    token_secret(&client, &a, "wrong-key", &[("tok", TOKEN_A)]).await;
    // The platform's credentials, in its own namespace.
    token_secret(
        &client,
        h.ns(),
        "platform",
        &[("token", h.emulator.token())],
    )
    .await;
    let token_ref = "{tokenSecretRef: {name: thalassa}}";
    apply(&a, &store_yaml("thalassa", &url, token_ref))
        .await
        .unwrap();
    apply(&b, &store_yaml("thalassa", &url, token_ref))
        .await
        .unwrap();
    apply(
        &a,
        &store_yaml("wrong-key", &url, "{tokenSecretRef: {name: wrong-key}}"),
    )
    .await
    .unwrap();
    for (name, selector) in [
        ("nobody", ""),
        (
            "labelled",
            "  namespaceSelector: {matchLabels: {thalassa-access: granted}}\n",
        ),
    ] {
        apply(
            h.ns(),
            &format!(
                "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: {name}-{}}}\nspec:\n  url: {url}\n  organisation: org-local\n  credentialsNamespace: {}\n  auth: {{tokenSecretRef: {{name: platform}}}}\n{selector}",
                h.ns(),
                h.ns()
            ),
        )
        .await
        .unwrap();
    }
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &a);
    for name in [WI_SERVICE_ACCOUNT, "other-sa"] {
        sa.create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let wi = |sa: &str, id: &str, audience: &str| {
        format!(
            "{{workloadIdentity: {{serviceAccountName: {sa}, thalassaServiceAccountId: {id}{audience}}}}}"
        )
    };
    apply(
        &a,
        &store_yaml("wi", &url, &wi(WI_SERVICE_ACCOUNT, "sa-team-a", "")),
    )
    .await
    .unwrap();
    apply(
        &a,
        &store_yaml(
            "wi-audience",
            &url,
            &wi(
                WI_SERVICE_ACCOUNT,
                "sa-team-a",
                ", audience: https://evil.example",
            ),
        ),
    )
    .await
    .unwrap();
    apply(
        &a,
        &store_yaml("wi-other-sa", &url, &wi("other-sa", "sa-team-a", "")),
    )
    .await
    .unwrap();

    let operator = h.spawn_operator_watching(None, &[], "operator.log").await;
    h.operator = Some(operator);
    let store = |name: &str| format!("  storeRef: {{name: {name}}}\n");
    let cluster_store =
        |name: &str| format!("  storeRef: {{kind: ClusterThalassaSecretStore, name: {name}}}\n");
    let mut table = Vec::new();

    // Positive controls: each team reads its own paths with its own identity.
    apply(&a, &resource_yaml("own", "/team-a/db", &store("thalassa")))
        .await
        .unwrap();
    wait_ready(&client, &a, "own", "True", "Synced").await;
    apply(&a, &resource_yaml("own-wi", "/team-a/db", &store("wi")))
        .await
        .unwrap();
    wait_ready(&client, &a, "own-wi", "True", "Synced").await;
    apply(
        &b,
        &resource_yaml("shared", "/shared/cfg", &store("thalassa")),
    )
    .await
    .unwrap();
    wait_ready(&client, &b, "shared", "True", "Synced").await;

    // Each store reports whether its connection works, link by link.
    let store_condition =
        |name, type_, status| wait_store_condition(&client, &a, name, type_, status);
    store_condition("thalassa", "Ready", "True").await;
    store_condition("wi", "Ready", "True").await;
    let message = store_condition("wrong-key", "CredentialsValid", "False").await;
    assert!(message.contains("key token"), "{message}");
    store_condition("wrong-key", "Ready", "False").await;
    store_condition("wi-audience", "CredentialsValid", "False").await;
    let clusters: Api<ClusterThalassaSecretStore> = Api::all(client.clone());
    let nobody = format!("nobody-{}", h.ns());
    wait_for(Duration::from_secs(60), "cluster store Ready", || async {
        let store = clusters.get(&nobody).await.ok()?;
        store
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

    // Escapes stopped by a condition: (attempt, namespace, resource, spec tail, reason).
    let attempts: Vec<(&str, &str, &str, String, &str)> = vec![
        (
            "another team's path through its own store (token)",
            a.as_str(),
            "steal",
            resource_yaml("steal", "/team-b/db", &store("thalassa")),
            "Forbidden",
        ),
        (
            "another team's path through workload identity",
            a.as_str(),
            "steal-wi",
            resource_yaml("steal-wi", "/team-b/db", &store("wi")),
            "Forbidden",
        ),
        (
            "a path another namespace's identity just listed (shared cache)",
            a.as_str(),
            "shared-a",
            resource_yaml("shared-a", "/shared/cfg", &store("thalassa")),
            "Forbidden",
        ),
        (
            "no storeRef: the operator's default connection",
            a.as_str(),
            "default",
            resource_yaml("default", "/team-a/db", ""),
            "NamespaceNotAllowed",
        ),
        (
            "a cluster store that lists nobody",
            a.as_str(),
            "cluster-nobody",
            resource_yaml(
                "cluster-nobody",
                "/team-a/db",
                &cluster_store(&format!("nobody-{}", h.ns())),
            ),
            "NamespaceNotAllowed",
        ),
        (
            "another namespace's store by name",
            a.as_str(),
            "foreign-store",
            resource_yaml("foreign-store", "/team-b/db", &store("missing-in-a")),
            "StoreNotFound",
        ),
        (
            "a store whose Secret lacks the key",
            a.as_str(),
            "bad-key",
            resource_yaml("bad-key", "/team-a/db", &store("wrong-key")),
            "CredentialsUnavailable",
        ),
        (
            "workload identity with a wrong audience",
            a.as_str(),
            "wi-audience",
            resource_yaml("wi-audience", "/team-a/db", &store("wi-audience")),
            "Unauthorized",
        ),
        (
            "workload identity of a ServiceAccount the Thalassa identity does not trust",
            a.as_str(),
            "wi-other-sa",
            resource_yaml("wi-other-sa", "/team-a/db", &store("wi-other-sa")),
            "Unauthorized",
        ),
        (
            "the store's own credentials Secret as target",
            a.as_str(),
            "overwrite-creds",
            resource_yaml(
                "overwrite-creds",
                "/team-a/db",
                &format!("{}  target: {{name: thalassa}}\n", store("thalassa")),
            ),
            "TargetConflict",
        ),
    ];
    for (attempt, namespace, name, yaml, reason) in &attempts {
        apply(namespace, yaml).await.unwrap();
        let message = wait_ready(&client, namespace, name, "False", reason).await;
        if *name != "overwrite-creds" {
            secret_absent(&client, namespace, name).await;
        }
        table.push(format!("| {attempt} | condition `{reason}` | {message} |"));
    }
    // The credentials Secret the last attempt targeted is untouched.
    let creds = Api::<Secret>::namespaced(client.clone(), &a)
        .get("thalassa")
        .await
        .unwrap();
    assert_eq!(
        secret_data(&creds),
        [("token".to_string(), TOKEN_A.as_bytes().to_vec())].into()
    );

    // Stopped at admission.
    let rejected = [
        (
            "a store with two auth methods",
            store_yaml(
                "two",
                &url,
                "{tokenSecretRef: {name: thalassa}, workloadIdentity: {serviceAccountName: x, thalassaServiceAccountId: y}}",
            ),
            "exactly one of",
        ),
        (
            "a store naming a Secret in another namespace",
            store_yaml(
                "cross",
                &url,
                &format!("{{tokenSecretRef: {{name: thalassa, namespace: {b}}}}}"),
            ),
            "field not declared in schema",
        ),
        (
            "a store without auth",
            store_yaml("none", &url, "{}"),
            "exactly one of",
        ),
    ];
    for (attempt, yaml, expected) in rejected {
        let err = apply(&a, &yaml).await.expect_err(attempt);
        assert!(err.contains(expected), "{attempt}: {err}");
        table.push(format!("| {attempt} | admission | `{expected}` |"));
    }

    // A cluster store by label: allowed while labelled; the label removed, the Secret stays as it
    // was and the status says why.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = |value: Option<&str>| json!({"metadata": {"labels": {"thalassa-access": value}}});
    namespaces
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(label(Some("granted"))),
        )
        .await
        .unwrap();
    apply(
        &a,
        &resource_yaml(
            "by-label",
            "/team-a/db",
            &cluster_store(&format!("labelled-{}", h.ns())),
        ),
    )
    .await
    .unwrap();
    wait_ready(&client, &a, "by-label", "True", "Synced").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &a);
    let before = secrets.get("by-label").await.unwrap();
    namespaces
        .patch(&a, &PatchParams::default(), &Patch::Merge(label(None)))
        .await
        .unwrap();
    wait_ready(&client, &a, "by-label", "False", "NamespaceNotAllowed").await;
    let after = secrets.get("by-label").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "kept as it was"
    );
    table.push("| a cluster store after the namespace's label is removed | condition `NamespaceNotAllowed`, Secret unchanged | |".into());

    // The store itself changes identity (a token that may list but not reveal): values read with
    // the old identity are not served on the new one's say-so; the Secret keeps its data.
    control
        .add_token(TokenSpec::bearer(TOKEN_NO_REVEAL).with_access(Access {
            path_globs: Some(vec!["/team-a/*".into()]),
            reveal: false,
            ..Access::read_only()
        }))
        .unwrap();
    token_secret(&client, &a, "no-reveal", &[("token", TOKEN_NO_REVEAL)]).await;
    apply(&a, &store_yaml("switch", &url, token_ref))
        .await
        .unwrap();
    apply(
        &a,
        &resource_yaml("switched", "/team-a/db", &store("switch")),
    )
    .await
    .unwrap();
    wait_ready(&client, &a, "switched", "True", "Synced").await;
    let before = secrets.get("switched").await.unwrap();
    apply(
        &a,
        &store_yaml("switch", &url, "{tokenSecretRef: {name: no-reveal}}"),
    )
    .await
    .unwrap();
    wait_ready(&client, &a, "switched", "False", "Forbidden").await;
    let after = secrets.get("switched").await.unwrap();
    assert_eq!(secret_data(&after), secret_data(&before), "kept as it was");
    table.push("| the store switched to an identity that may list but not reveal | condition `Forbidden` (values re-read with the new identity), Secret unchanged | |".into());

    // Values only where they belong.
    let own = secret_data(&secrets.get("own").await.unwrap());
    assert_eq!(own["value"], VALUE_A.as_bytes());
    let log = h.operator_log();
    let events = kubectl(&["get", "events", "-A", "-o", "json"], None)
        .await
        .1;
    let statuses = kubectl(&["get", "thalassasecrets", "-A", "-o", "json"], None)
        .await
        .1;
    for (what, text) in [
        ("operator log", &log),
        ("events", &events),
        ("statuses", &statuses),
    ] {
        for secret in [
            VALUE_A,
            VALUE_B,
            VALUE_SHARED,
            TOKEN_A,
            TOKEN_B,
            h.emulator.token(),
        ] {
            assert!(!text.contains(secret), "{what} contains a secret");
        }
    }
    // An operator with no connection of its own (what the chart installs with no values): stores
    // keep working, a ThalassaSecret without storeRef is told to name one.
    h.stop_operator().await;
    let bare = common::OperatorCommand::new(cp.kubeconfig_path(), h.dir.join("bare.log"));
    let metrics_addr = format!("127.0.0.1:{}", bare.port());
    let bare = bare
        .env("RUST_LOG", "info")
        .args([
            "--thalassa-url",
            url.as_str(),
            "--allowed-api-urls",
            url.as_str(),
            "--region",
            REGION,
            "--operator-namespace",
            h.ns(),
            "--metrics-addr",
            &metrics_addr,
            "--default-refresh-interval",
            "10s",
        ])
        .start("operator without a default connection ready")
        .await;
    apply(&a, &resource_yaml("no-store", "/team-a/db", ""))
        .await
        .unwrap();
    let message = wait_ready(&client, &a, "no-store", "False", "StoreNotFound").await;
    assert!(message.contains("no default connection"), "{message}");
    secret_absent(&client, &a, "no-store").await;
    control
        .put_secret_value(REGION, "/team-a/db", SeedValue::String(VALUE_A_2.into()))
        .unwrap();
    h.wait_secret_in(&a, "own", "the new version through the store", |d| {
        d.get("value").map(Vec::as_slice) == Some(VALUE_A_2.as_bytes())
    })
    .await;
    table.push("| no storeRef, operator without a default connection | condition `StoreNotFound` (stores keep syncing) | |".into());
    let bare_log = bare.log_text();
    for secret in [VALUE_A, VALUE_A_2, VALUE_B, TOKEN_A, TOKEN_B] {
        assert!(!bare_log.contains(secret), "operator log contains a secret");
    }
    bare.kill().await;

    println!(
        "| attempt | stopped by | message |\n|---|---|---|\n{}",
        table.join("\n")
    );
}
