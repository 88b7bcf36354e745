//! Tenancy on the real control plane: every namespace reads Thalassa through its own store (its
//! own identity), cluster stores and the operator's default connection serve only the namespaces
//! they allow, and caches never answer for another identity. Each escape attempt is stopped at
//! admission or by a condition, with no Secret written or changed and no value anywhere.
//!
//! One test function, told as named scenarios on one world ([`Tenancy`]): the operator runs in
//! cluster mode (it must see several namespaces), so two of them in parallel would act on each
//! other's resources. The scenarios run in order; later ones rely on what earlier ones synced
//! (`own` in team A's namespace).

use std::time::Duration;

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

use crate::common::{
    self, Harness, REGION, harness_with, kubectl, kubectl_apply as apply, secret_data, wait_for,
    wait_store_condition,
};

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

#[tokio::test]
async fn every_namespace_reads_with_its_own_identity_and_escapes_are_stopped() {
    let _turn = common::area_turn(module_path!()).await;
    let mut world = Tenancy::set_up().await;
    world.each_team_reads_its_own_paths().await;
    world
        .each_store_reports_whether_its_connection_works()
        .await;
    world.escapes_are_stopped_by_a_condition().await;
    world.malformed_stores_are_stopped_at_admission().await;
    world
        .a_cluster_store_serves_a_namespace_only_while_it_is_labelled()
        .await;
    world
        .a_store_that_changes_identity_does_not_serve_the_old_identitys_values()
        .await;
    world.values_appear_only_where_they_belong().await;
    world
        .an_operator_without_a_default_connection_serves_stores_only()
        .await;
    world.print_table();
}

/// The world of the story: team A's namespace (tokens and workload identity), team B's (tokens),
/// the platform's (the harness's namespace: the cluster stores' credentials), the emulator with
/// one value per team and a shared one, and the operator in cluster mode.
struct Tenancy {
    h: Harness,
    client: Client,
    cp: &'static testenv::ControlPlane,
    _a_ns: testenv::TestNamespace,
    _b_ns: testenv::TestNamespace,
    /// Team A's namespace.
    a: String,
    /// Team B's namespace.
    b: String,
    /// The emulator's URL, which every store uses.
    url: String,
    /// The rows of the table printed at the end: attempt, what stopped it, the message.
    table: Vec<String>,
}

impl Tenancy {
    /// Plants the values and tokens, creates every store and ServiceAccount the scenarios use,
    /// and starts the operator in cluster mode.
    async fn set_up() -> Tenancy {
        let cp = testenv::ControlPlane::shared();
        let config = emulator_trusting_team_a_service_accounts(cp).await;
        let h = harness_with("tenancy", config).await;
        let client = h.client.clone();
        let a_ns = cp.temp_namespace("wi-a").await;
        let b_ns = cp.temp_namespace("team-b").await;
        let mut world = Tenancy {
            client,
            cp,
            a: a_ns.name().to_string(),
            b: b_ns.name().to_string(),
            _a_ns: a_ns,
            _b_ns: b_ns,
            url: h.emulator.base_url(),
            h,
            table: Vec::new(),
        };
        world.plant_values_and_team_tokens();
        world.create_token_stores().await;
        world.create_cluster_stores().await;
        world.create_workload_identity_stores().await;
        let operator = world
            .h
            .spawn_operator_watching(None, &[], "operator.log")
            .await;
        world.h.operator = Some(operator);
        world
    }

    /// One value per team and a shared one; team A's token reads `/team-a/*`, team B's
    /// `/team-b/*` and `/shared/*`.
    fn plant_values_and_team_tokens(&self) {
        let control = self.h.emulator.control();
        for (path, value) in [
            ("/team-a/db", VALUE_A),
            ("/team-b/db", VALUE_B),
            ("/shared/cfg", VALUE_SHARED),
        ] {
            control
                .create_secret(REGION, path, &self.h.key, SeedValue::String(value.into()))
                .unwrap();
        }
        control.add_token(limited(TOKEN_A, &["/team-a/*"])).unwrap();
        control
            .add_token(limited(TOKEN_B, &["/team-b/*", "/shared/*"]))
            .unwrap();
    }

    /// Each team's `thalassa` store with its own token, and team A's `wrong-key` store whose
    /// Secret lacks the `token` key.
    async fn create_token_stores(&self) {
        let (a, b, url) = (&self.a, &self.b, &self.url);
        token_secret(&self.client, a, "thalassa", &[("token", TOKEN_A)]).await;
        token_secret(&self.client, b, "thalassa", &[("token", TOKEN_B)]).await;
        token_secret(&self.client, a, "wrong-key", &[("tok", TOKEN_A)]).await;
        apply(a, &store_yaml("thalassa", url, TOKEN_REF))
            .await
            .unwrap();
        apply(b, &store_yaml("thalassa", url, TOKEN_REF))
            .await
            .unwrap();
        apply(
            a,
            &store_yaml("wrong-key", url, "{tokenSecretRef: {name: wrong-key}}"),
        )
        .await
        .unwrap();
    }

    /// Two cluster stores with the platform's credentials (in its own namespace): `nobody-*`
    /// allows no namespace, `labelled-*` the namespaces labelled `thalassa-access: granted`.
    async fn create_cluster_stores(&self) {
        let (platform, url) = (self.h.ns(), &self.url);
        token_secret(
            &self.client,
            platform,
            "platform",
            &[("token", self.h.emulator.token())],
        )
        .await;
        for (name, selector) in [
            ("nobody", ""),
            (
                "labelled",
                "  namespaceSelector: {matchLabels: {thalassa-access: granted}}\n",
            ),
        ] {
            apply(
                platform,
                &format!(
                    "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: {name}-{platform}}}\nspec:\n  url: {url}\n  organisation: org-local\n  credentialsNamespace: {platform}\n  auth: {{tokenSecretRef: {{name: platform}}}}\n{selector}",
                ),
            )
            .await
            .unwrap();
        }
    }

    /// Team A's ServiceAccounts (the allowed name and another) and its workload-identity stores:
    /// `wi` (trusted), `wi-audience` (a wrong audience), `wi-other-sa` (a ServiceAccount the
    /// Thalassa identity does not trust).
    async fn create_workload_identity_stores(&self) {
        let (a, url) = (&self.a, &self.url);
        let sa: Api<ServiceAccount> = Api::namespaced(self.client.clone(), a);
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
            a,
            &store_yaml("wi", url, &wi(WI_SERVICE_ACCOUNT, "sa-team-a", "")),
        )
        .await
        .unwrap();
        apply(
            a,
            &store_yaml(
                "wi-audience",
                url,
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
            a,
            &store_yaml("wi-other-sa", url, &wi("other-sa", "sa-team-a", "")),
        )
        .await
        .unwrap();
    }

    /// Positive controls: each team reads its own paths with its own identity.
    async fn each_team_reads_its_own_paths(&self) {
        let (a, b) = (&self.a, &self.b);
        self.sync(a, "own", "/team-a/db", &store("thalassa")).await;
        self.sync(a, "own-wi", "/team-a/db", &store("wi")).await;
        self.sync(b, "shared", "/shared/cfg", &store("thalassa"))
            .await;
    }

    /// Each store reports whether its connection works, link by link.
    async fn each_store_reports_whether_its_connection_works(&self) {
        let store_condition =
            |name, type_, status| wait_store_condition(&self.client, &self.a, name, type_, status);
        store_condition("thalassa", "Ready", "True").await;
        store_condition("wi", "Ready", "True").await;
        let message = store_condition("wrong-key", "CredentialsValid", "False").await;
        assert!(message.contains("key token"), "{message}");
        store_condition("wrong-key", "Ready", "False").await;
        store_condition("wi-audience", "CredentialsValid", "False").await;
        let clusters: Api<ClusterThalassaSecretStore> = Api::all(self.client.clone());
        let nobody = format!("nobody-{}", self.h.ns());
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
    }

    /// Escapes stopped by a condition, with no Secret written; the store's own credentials
    /// Secret, targeted by the last attempt, is untouched.
    async fn escapes_are_stopped_by_a_condition(&mut self) {
        let nobody = cluster_store(&format!("nobody-{}", self.h.ns()));
        let overwrite_creds = format!("{}  target: {{name: thalassa}}\n", store("thalassa"));
        // (attempt, resource, path, spec tail, reason), all in team A's namespace.
        let attempts: [(&str, &str, &str, &str, &str); 10] = [
            (
                "another team's path through its own store (token)",
                "steal",
                "/team-b/db",
                &store("thalassa"),
                "Forbidden",
            ),
            (
                "another team's path through workload identity",
                "steal-wi",
                "/team-b/db",
                &store("wi"),
                "Forbidden",
            ),
            (
                "a path another namespace's identity just listed (shared cache)",
                "shared-a",
                "/shared/cfg",
                &store("thalassa"),
                "Forbidden",
            ),
            (
                "no storeRef: the operator's default connection",
                "default",
                "/team-a/db",
                "",
                "NamespaceNotAllowed",
            ),
            (
                "a cluster store that lists nobody",
                "cluster-nobody",
                "/team-a/db",
                &nobody,
                "NamespaceNotAllowed",
            ),
            (
                "another namespace's store by name",
                "foreign-store",
                "/team-b/db",
                &store("missing-in-a"),
                "StoreNotFound",
            ),
            (
                "a store whose Secret lacks the key",
                "bad-key",
                "/team-a/db",
                &store("wrong-key"),
                "CredentialsUnavailable",
            ),
            (
                "workload identity with a wrong audience",
                "wi-audience",
                "/team-a/db",
                &store("wi-audience"),
                "Unauthorized",
            ),
            (
                "workload identity of a ServiceAccount the Thalassa identity does not trust",
                "wi-other-sa",
                "/team-a/db",
                &store("wi-other-sa"),
                "Unauthorized",
            ),
            (
                "the store's own credentials Secret as target",
                "overwrite-creds",
                "/team-a/db",
                &overwrite_creds,
                "TargetConflict",
            ),
        ];
        for (attempt, name, path, tail, reason) in attempts {
            apply(&self.a, &resource_yaml(name, path, tail))
                .await
                .unwrap();
            let message = wait_ready(&self.client, &self.a, name, "False", reason).await;
            if name != "overwrite-creds" {
                secret_absent(&self.client, &self.a, name).await;
            }
            self.table
                .push(format!("| {attempt} | condition `{reason}` | {message} |"));
        }
        let creds = self.secrets_of_a().get("thalassa").await.unwrap();
        assert_eq!(
            secret_data(&creds),
            [("token".to_string(), TOKEN_A.as_bytes().to_vec())].into()
        );
    }

    /// Stores the schema and CEL rules refuse: two auth methods, a Secret in another
    /// namespace, no auth.
    async fn malformed_stores_are_stopped_at_admission(&mut self) {
        let url = &self.url;
        let rejected = [
            (
                "a store with two auth methods",
                store_yaml(
                    "two",
                    url,
                    "{tokenSecretRef: {name: thalassa}, workloadIdentity: {serviceAccountName: x, thalassaServiceAccountId: y}}",
                ),
                "exactly one of",
            ),
            (
                "a store naming a Secret in another namespace",
                store_yaml(
                    "cross",
                    url,
                    &format!(
                        "{{tokenSecretRef: {{name: thalassa, namespace: {}}}}}",
                        self.b
                    ),
                ),
                "field not declared in schema",
            ),
            (
                "a store without auth",
                store_yaml("none", url, "{}"),
                "exactly one of",
            ),
        ];
        for (attempt, yaml, expected) in rejected {
            let err = apply(&self.a, &yaml).await.expect_err(attempt);
            assert!(err.contains(expected), "{attempt}: {err}");
            self.table
                .push(format!("| {attempt} | admission | `{expected}` |"));
        }
    }

    /// A cluster store by label: allowed while labelled; the label removed, the Secret stays as
    /// it was and the status says why.
    async fn a_cluster_store_serves_a_namespace_only_while_it_is_labelled(&mut self) {
        self.label_team_a(Some("granted")).await;
        let labelled = cluster_store(&format!("labelled-{}", self.h.ns()));
        self.sync(&self.a, "by-label", "/team-a/db", &labelled)
            .await;
        let before = self.secrets_of_a().get("by-label").await.unwrap();
        self.label_team_a(None).await;
        wait_ready(
            &self.client,
            &self.a,
            "by-label",
            "False",
            "NamespaceNotAllowed",
        )
        .await;
        let after = self.secrets_of_a().get("by-label").await.unwrap();
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "kept as it was"
        );
        self.table.push("| a cluster store after the namespace's label is removed | condition `NamespaceNotAllowed`, Secret unchanged | |".into());
    }

    /// The store itself changes identity (a token that may list but not reveal): values read
    /// with the old identity are not served on the new one's say-so; the Secret keeps its data.
    async fn a_store_that_changes_identity_does_not_serve_the_old_identitys_values(&mut self) {
        let (a, url) = (&self.a, &self.url);
        self.h
            .emulator
            .control()
            .add_token(TokenSpec::bearer(TOKEN_NO_REVEAL).with_access(Access {
                path_globs: Some(vec!["/team-a/*".into()]),
                reveal: false,
                ..Access::read_only()
            }))
            .unwrap();
        token_secret(&self.client, a, "no-reveal", &[("token", TOKEN_NO_REVEAL)]).await;
        apply(a, &store_yaml("switch", url, TOKEN_REF))
            .await
            .unwrap();
        self.sync(a, "switched", "/team-a/db", &store("switch"))
            .await;
        let before = self.secrets_of_a().get("switched").await.unwrap();
        apply(
            a,
            &store_yaml("switch", url, "{tokenSecretRef: {name: no-reveal}}"),
        )
        .await
        .unwrap();
        wait_ready(&self.client, a, "switched", "False", "Forbidden").await;
        let after = self.secrets_of_a().get("switched").await.unwrap();
        assert_eq!(secret_data(&after), secret_data(&before), "kept as it was");
        self.table.push("| the store switched to an identity that may list but not reveal | condition `Forbidden` (values re-read with the new identity), Secret unchanged | |".into());
    }

    /// Team A's own Secret holds its value; no value or token is in the operator's log, the
    /// Events or the statuses.
    async fn values_appear_only_where_they_belong(&self) {
        let own = secret_data(&self.secrets_of_a().get("own").await.unwrap());
        assert_eq!(own["value"], VALUE_A.as_bytes());
        let log = self.h.operator_log();
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
                self.h.emulator.token(),
            ] {
                assert!(!text.contains(secret), "{what} contains a secret");
            }
        }
    }

    /// An operator with no connection of its own (what the chart installs with no values):
    /// stores keep working, a ThalassaSecret without storeRef is told to name one.
    async fn an_operator_without_a_default_connection_serves_stores_only(&mut self) {
        self.h.stop_operator().await;
        let (a, url) = (&self.a, &self.url);
        let bare =
            common::OperatorCommand::new(self.cp.kubeconfig_path(), self.h.dir.join("bare.log"));
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
                self.h.ns(),
                "--metrics-addr",
                &metrics_addr,
                "--default-refresh-interval",
                "10s",
            ])
            .start("operator without a default connection ready")
            .await;
        apply(a, &resource_yaml("no-store", "/team-a/db", ""))
            .await
            .unwrap();
        let message = wait_ready(&self.client, a, "no-store", "False", "StoreNotFound").await;
        assert!(message.contains("no default connection"), "{message}");
        secret_absent(&self.client, a, "no-store").await;
        self.h
            .emulator
            .control()
            .put_secret_value(REGION, "/team-a/db", SeedValue::String(VALUE_A_2.into()))
            .unwrap();
        self.h
            .wait_secret_in(a, "own", "the new version through the store", |d| {
                d.get("value").map(Vec::as_slice) == Some(VALUE_A_2.as_bytes())
            })
            .await;
        self.table.push("| no storeRef, operator without a default connection | condition `StoreNotFound` (stores keep syncing) | |".into());
        let bare_log = bare.log_text();
        for secret in [VALUE_A, VALUE_A_2, VALUE_B, TOKEN_A, TOKEN_B] {
            assert!(!bare_log.contains(secret), "operator log contains a secret");
        }
        bare.kill().await;
    }

    fn print_table(&self) {
        println!(
            "| attempt | stopped by | message |\n|---|---|---|\n{}",
            self.table.join("\n")
        );
    }

    /// Applies a ThalassaSecret `name` reading `path` (with `tail` naming its store) in
    /// `namespace` and waits until it is Ready=True Synced.
    async fn sync(&self, namespace: &str, name: &str, path: &str, tail: &str) {
        apply(namespace, &resource_yaml(name, path, tail))
            .await
            .unwrap();
        wait_ready(&self.client, namespace, name, "True", "Synced").await;
    }

    /// Sets (or with `None` removes) the `thalassa-access` label of team A's namespace.
    async fn label_team_a(&self, value: Option<&str>) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let label = json!({"metadata": {"labels": {"thalassa-access": value}}});
        namespaces
            .patch(&self.a, &PatchParams::default(), &Patch::Merge(label))
            .await
            .unwrap();
    }

    fn secrets_of_a(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.a)
    }
}

/// The emulator, with a Thalassa service account that trusts the allowed ServiceAccount name of
/// every `wi-a-*` namespace (team A's), reading `/team-a/*`.
async fn emulator_trusting_team_a_service_accounts(cp: &testenv::ControlPlane) -> EmulatorConfig {
    let jwks = cp.service_account_jwks().await.expect("apiserver JWKS");
    EmulatorConfig {
        federated_identities: vec![FederatedIdentitySpec {
            service_account_id: "sa-team-a".into(),
            issuer: cp.service_account_issuer().into(),
            audiences: vec!["https://api.thalassa.cloud".into()],
            subject: format!("system:serviceaccount:wi-a-*:{WI_SERVICE_ACCOUNT}"),
            jwks: JwksSource::Inline(jwks.to_string()),
            access: Access {
                path_globs: Some(vec!["/team-a/*".into()]),
                ..Access::read_only()
            },
        }],
        ..EmulatorConfig::default()
    }
}

/// A read-only bearer token limited to `globs`.
fn limited(token: &str, globs: &[&str]) -> TokenSpec {
    TokenSpec::bearer(token).with_access(Access {
        path_globs: Some(globs.iter().map(|g| g.to_string()).collect()),
        ..Access::read_only()
    })
}

/// A store's `auth` reading the token from the Secret `thalassa`.
const TOKEN_REF: &str = "{tokenSecretRef: {name: thalassa}}";

/// The spec tail of a ThalassaSecret reading through the namespaced store `name`.
fn store(name: &str) -> String {
    format!("  storeRef: {{name: {name}}}\n")
}

/// The spec tail of a ThalassaSecret reading through the cluster store `name`.
fn cluster_store(name: &str) -> String {
    format!("  storeRef: {{kind: ClusterThalassaSecretStore, name: {name}}}\n")
}

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
