//! `thalassa-secrets-operator check` against the in-process Thalassa emulator: the all-green
//! chain, then each link broken in turn (which check fails, which are skipped, and that the
//! table names the fix), the command line, and the real binary's exit code and output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thalassa_emulator::{Access, Control, Emulator, EmulatorConfig, SeedValue, TokenSpec};
use thalassa_operator::check::Link::{
    self, Credentials as CREDENTIALS, KeyActive as KEY_ACTIVE, KeyExists as KEY_EXISTS,
    KeySymmetric as KEY_SYMMETRIC, KmsBackend as KMS_BACKEND, KmsGate as KMS_GATE,
    SecretReadable as SECRET_READABLE, SecretReveal as SECRET_REVEAL, SecretsGate as SECRETS_GATE,
};
use thalassa_operator::check::{self, CheckResult, CheckStatus};
use thalassa_operator::config::{Cli, Command};
use thalassa_operator::thalassa::{Client, ClientConfig, Credentials};

const REGION: &str = "nl-01";
const TOKEN: &str = "tok-check-full-8d2e41";
const NO_REVEAL: &str = "tok-check-no-reveal";
const OTHER_GLOB: &str = "tok-check-other-glob";
const PATH: &str = "/app/production/db/password";
const VALUE: &str = "canary-7b1f0c-never-printed";

use CheckStatus::{Fail, Pass, Skipped};

/// An emulator with a full-access token, a token without reveal permission, a token limited to
/// `/other/*`, one symmetric key `app-key` and one secret at [`PATH`] bound to it.
struct Env {
    emu: Emulator,
    control: Control,
    key: String,
}

async fn start() -> Env {
    let config = EmulatorConfig {
        tokens: vec![
            TokenSpec::bearer(TOKEN),
            TokenSpec::bearer(NO_REVEAL).with_access(Access {
                reveal: false,
                ..Access::default()
            }),
            TokenSpec::bearer(OTHER_GLOB).with_access(Access {
                path_globs: Some(vec!["/other/*".into()]),
                ..Access::default()
            }),
        ],
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await.expect("emulator starts");
    let control = emu.control();
    let key = control
        .create_key(REGION, "app-key", "aes256-gcm96")
        .expect("key");
    control
        .create_secret(REGION, PATH, &key, SeedValue::String(VALUE.into()))
        .expect("secret");
    Env { emu, control, key }
}

impl Env {
    fn client(&self, token: &str) -> Client {
        client_at(&self.emu.base_url(), self.emu.organisation(), token)
    }

    /// Runs the checks with `token`, asserts that nothing secret is in the table, returns both.
    async fn run(
        &self,
        token: &str,
        region: &str,
        key: Option<&str>,
        path: Option<&str>,
    ) -> (Vec<CheckResult>, String) {
        let results = check::run_checks(&self.client(token), region, key, path).await;
        let table = check::render_table(&results);
        assert_clean(&table);
        (results, table)
    }
}

fn client_at(url: &str, organisation: &str, token: &str) -> Client {
    let mut config = ClientConfig::new(url, organisation, Credentials::BearerToken(token.into()));
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(50);
    Client::new(config).expect("client")
}

fn assert_clean(text: &str) {
    for secret in [VALUE, TOKEN, NO_REVEAL, OTHER_GLOB] {
        assert!(
            !text.contains(secret),
            "output contains {secret:?}:\n{text}"
        );
    }
}

/// Asserts every check's status, in order, and that each failure carries a fix.
fn assert_statuses(results: &[CheckResult], expected: [CheckStatus; 9], table: &str) {
    let links: Vec<Link> = results.iter().map(|r| r.link).collect();
    assert_eq!(links, Link::ALL, "{table}");
    for (result, want) in results.iter().zip(expected) {
        assert_eq!(result.status, want, "{}:\n{table}", result.link);
        assert_eq!(
            result.fix.is_some(),
            want == Fail,
            "a fix exactly on failures ({}):\n{table}",
            result.link
        );
        assert!(!result.detail.is_empty(), "{}: empty detail", result.link);
    }
}

fn get(results: &[CheckResult], name: Link) -> &CheckResult {
    results
        .iter()
        .find(|r| r.link == name)
        .expect("check present")
}

fn assert_fix(results: &[CheckResult], name: Link, words: &str, table: &str) {
    let fix = get(results, name).fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains(words),
        "{name}: fix {fix:?} should say {words:?}"
    );
    assert!(table.contains(&format!("fix: {fix}")), "{table}");
}

fn assert_detail(results: &[CheckResult], name: Link, words: &str) {
    let detail = &get(results, name).detail;
    assert!(
        detail.contains(words),
        "{name}: detail {detail:?} should say {words:?}"
    );
}

#[tokio::test]
async fn healthy_chain_is_all_green() {
    let env = start().await;
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    assert_statuses(&results, [Pass; 9], &table);
    assert!(!check::any_failed(&results));
    assert_detail(&results, KEY_EXISTS, &env.key);
    assert_detail(&results, KEY_SYMMETRIC, "aes256-gcm96");
    assert_detail(&results, SECRET_READABLE, "current version 1");
    assert_detail(&results, SECRET_REVEAL, "revealed version 1");
    assert_detail(
        &results,
        SECRET_REVEAL,
        &format!("key {} version 1", env.key),
    );
    assert_detail(&results, SECRET_REVEAL, "value not shown");
    assert!(
        table.ends_with("9 passed, 0 failed, 0 skipped\n"),
        "{table}"
    );

    // The key by identity works as well as by slug.
    let (results, table) = env.run(TOKEN, REGION, Some(&env.key), Some(PATH)).await;
    assert_statuses(&results, [Pass; 9], &table);
}

#[tokio::test]
async fn key_and_path_are_optional() {
    let env = start().await;
    let (results, table) = env.run(TOKEN, REGION, None, None).await;
    assert_statuses(
        &results,
        [
            Pass, Pass, Pass, Pass, Skipped, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_detail(&results, KEY_EXISTS, "no --key given");
    assert_detail(&results, SECRET_REVEAL, "no --path given");
    assert!(!check::any_failed(&results));
}

#[tokio::test]
async fn secrets_gate_off() {
    let env = start().await;
    env.control.set_feature_gates(false, true);
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    // KMS still works, so the key links are still checked.
    assert_statuses(
        &results,
        [Pass, Pass, Fail, Pass, Pass, Pass, Pass, Skipped, Skipped],
        &table,
    );
    assert_fix(
        &results,
        SECRETS_GATE,
        "ask your Thalassa administrator to enable the secrets feature gate",
        &table,
    );
    assert_detail(&results, SECRET_READABLE, "needs the secrets feature gate");
}

#[tokio::test]
async fn kms_gate_off() {
    let env = start().await;
    env.control.set_feature_gates(true, false);
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    assert_statuses(
        &results,
        [
            Pass, Fail, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_fix(
        &results,
        KMS_GATE,
        "ask your Thalassa administrator to enable the kms feature gate",
        &table,
    );
    assert_detail(&results, SECRETS_GATE, "while the kms feature gate is off");
    assert_detail(&results, KEY_EXISTS, "needs the kms feature gate");
}

#[tokio::test]
async fn both_gates_off() {
    let env = start().await;
    env.control.set_feature_gates(false, false);
    let (results, table) = env.run(TOKEN, REGION, None, Some(PATH)).await;
    assert_statuses(
        &results,
        [
            Pass, Fail, Fail, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_fix(&results, KMS_GATE, "enable the kms feature gate", &table);
    assert_fix(
        &results,
        SECRETS_GATE,
        "enable the secrets feature gate",
        &table,
    );
}

#[tokio::test]
async fn region_kms_unavailable() {
    let env = start().await;
    env.control.set_kms_available(REGION, false).unwrap();
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    // Key metadata and secret metadata need no crypto; the reveal does.
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Fail, Pass, Pass, Pass, Pass, Skipped],
        &table,
    );
    assert_detail(&results, KMS_BACKEND, "kmsAvailable: false");
    assert_fix(
        &results,
        KMS_BACKEND,
        "wait until Thalassa restores KMS in nl-01",
        &table,
    );
    assert_detail(&results, SECRET_REVEAL, "needs the KMS backend of nl-01");
}

#[tokio::test]
async fn unknown_region() {
    let env = start().await;
    let (results, table) = env.run(TOKEN, "de-99", Some("app-key"), Some(PATH)).await;
    assert_statuses(
        &results,
        [
            Pass, Pass, Skipped, Fail, Skipped, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_detail(
        &results,
        KMS_BACKEND,
        "region de-99 is not in the KMS summary",
    );
    assert_fix(&results, KMS_BACKEND, "nl-01", &table);
}

#[tokio::test]
async fn key_disabled() {
    let env = start().await;
    env.control
        .set_key_status(REGION, "app-key", "disabled")
        .unwrap();
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Pass, Pass, Fail, Pass, Pass, Skipped],
        &table,
    );
    assert_detail(&results, KEY_ACTIVE, "disabled");
    assert_fix(
        &results,
        KEY_ACTIVE,
        &format!("enable the key: POST /v1/kms/nl-01/keys/{}/enable", env.key),
        &table,
    );
    assert_detail(&results, SECRET_REVEAL, "not active");

    // Without --key the reveal itself fails, naming the bound key.
    let (results, table) = env.run(TOKEN, REGION, None, Some(PATH)).await;
    assert_statuses(
        &results,
        [
            Pass, Pass, Pass, Pass, Skipped, Skipped, Skipped, Pass, Fail,
        ],
        &table,
    );
    assert_fix(
        &results,
        SECRET_REVEAL,
        &format!("/v1/kms/nl-01/keys/{}/enable", env.key),
        &table,
    );
}

#[tokio::test]
async fn key_pending_deletion() {
    let env = start().await;
    env.control
        .set_key_status(REGION, "app-key", "pending_deletion")
        .unwrap();
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Pass, Pass, Fail, Pass, Pass, Skipped],
        &table,
    );
    assert_detail(&results, KEY_ACTIVE, "pending deletion");
    assert_fix(
        &results,
        KEY_ACTIVE,
        &format!("DELETE /v1/kms/nl-01/keys/{}/cancel-deletion", env.key),
        &table,
    );
}

#[tokio::test]
async fn key_missing() {
    let env = start().await;
    let (results, table) = env.run(TOKEN, REGION, Some("no-such-key"), None).await;
    assert_statuses(
        &results,
        [
            Pass, Pass, Pass, Pass, Fail, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_detail(&results, KEY_EXISTS, "no-such-key not found in nl-01");
    assert_fix(&results, KEY_EXISTS, "GET /v1/kms/nl-01/keys", &table);
    assert_detail(&results, KEY_ACTIVE, "could not be read");

    // With a path bound to another key, the binding is reported too.
    let (results, table) = env
        .run(TOKEN, REGION, Some("no-such-key"), Some(PATH))
        .await;
    assert_eq!(get(&results, SECRET_READABLE).status, Fail, "{table}");
    assert_detail(&results, SECRET_READABLE, "KeyMismatch");
    assert_eq!(get(&results, SECRET_REVEAL).status, Pass, "{table}");
}

#[tokio::test]
async fn asymmetric_key() {
    let env = start().await;
    let rsa = env
        .control
        .create_key(REGION, "signing", "rsa-2048")
        .unwrap();
    env.control
        .create_key(REGION, "ec-signing", "ecdsa-p256")
        .unwrap();
    for key in [rsa.as_str(), "ec-signing"] {
        let (results, table) = env.run(TOKEN, REGION, Some(key), None).await;
        assert_statuses(
            &results,
            [Pass, Pass, Pass, Pass, Pass, Pass, Fail, Skipped, Skipped],
            &table,
        );
        assert_detail(&results, KEY_SYMMETRIC, "Secrets Manager only binds");
        assert_fix(&results, KEY_SYMMETRIC, "create a symmetric key", &table);
    }
}

#[tokio::test]
async fn revoked_token() {
    let env = start().await;
    assert!(env.control.revoke_token(TOKEN));
    let (results, table) = env.run(TOKEN, REGION, Some("app-key"), Some(PATH)).await;
    assert_statuses(
        &results,
        [
            Fail, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped, Skipped,
        ],
        &table,
    );
    assert_fix(&results, CREDENTIALS, "rotate the token", &table);
    assert_detail(&results, KMS_GATE, "needs valid credentials");
}

#[tokio::test]
async fn token_without_reveal_permission() {
    let env = start().await;
    let (results, table) = env
        .run(NO_REVEAL, REGION, Some("app-key"), Some(PATH))
        .await;
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Pass, Pass, Pass, Pass, Pass, Fail],
        &table,
    );
    assert_fix(
        &results,
        SECRET_REVEAL,
        &format!("grant getSecretValue on {PATH} to the credential"),
        &table,
    );
}

#[tokio::test]
async fn path_outside_the_tokens_globs() {
    let env = start().await;
    let (results, table) = env
        .run(OTHER_GLOB, REGION, Some("app-key"), Some(PATH))
        .await;
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Pass, Pass, Pass, Pass, Fail, Skipped],
        &table,
    );
    assert_fix(
        &results,
        SECRET_READABLE,
        &format!("grant read (and getSecretValue) on {PATH} to the credential"),
        &table,
    );
}

#[tokio::test]
async fn secret_missing() {
    let env = start().await;
    let (results, table) = env
        .run(TOKEN, REGION, Some("app-key"), Some("/app/production/nope"))
        .await;
    assert_statuses(
        &results,
        [Pass, Pass, Pass, Pass, Pass, Pass, Pass, Fail, Skipped],
        &table,
    );
    assert_fix(
        &results,
        SECRET_READABLE,
        "create the secret or fix --path",
        &table,
    );
}

#[tokio::test]
async fn unreachable_thalassa() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_at(&format!("http://127.0.0.1:{port}"), "org-local", TOKEN);
    let results = check::run_checks(&client, REGION, None, None).await;
    let table = check::render_table(&results);
    assert_eq!(get(&results, CREDENTIALS).status, Fail, "{table}");
    assert_fix(&results, CREDENTIALS, "cannot reach Thalassa", &table);
    assert!(results[1..].iter().all(|r| r.status == Skipped), "{table}");
}

#[test]
fn connection_flags_may_follow_the_subcommand() {
    let cli = Cli::try_parse_args_from([
        "op",
        "check",
        "--organisation",
        "org-a",
        "--token-file",
        "/t",
        "--region",
        "nl-02",
        "--key",
        "app-key",
        "--path",
        "/a/b",
    ])
    .expect("parses");
    assert_eq!(cli.args.organisation.as_deref(), Some("org-a"));
    assert_eq!(cli.args.region, "nl-02");
    match cli.command {
        Some(Command::Check { region, key, path }) => {
            assert_eq!(region, None);
            assert_eq!(key.as_deref(), Some("app-key"));
            assert_eq!(path.as_deref(), Some("/a/b"));
        }
        other => panic!("expected check, got {other:?}"),
    }
    // The region may also be given to check itself, and flags before the subcommand still work.
    let cli = Cli::try_parse_args_from(["op", "--organisation", "o", "check", "de-01"]).unwrap();
    assert_eq!(cli.args.organisation.as_deref(), Some("o"));
    assert!(matches!(cli.command, Some(Command::Check { region: Some(r), .. }) if r == "de-01"));
    // Running the controller is unchanged.
    let cli = Cli::try_parse_args_from(["op", "--organisation", "o"]).unwrap();
    assert!(cli.command.is_none());
}

fn token_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tso-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, TOKEN).unwrap();
    file
}

/// Runs the real binary's `check`; returns (exit code, stdout, stderr).
async fn run_binary(env: &Env, token: &Path) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_thalassa-secrets-operator"))
        .args([
            "check",
            "--thalassa-url",
            &env.emu.base_url(),
            "--organisation",
            env.emu.organisation(),
            "--token-file",
            token.to_str().unwrap(),
            "--region",
            REGION,
            "--key",
            "app-key",
            "--path",
            PATH,
        ])
        // No Kubernetes access: a kubeconfig pointing nowhere must not matter.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "debug")
        .kill_on_drop(true)
        .output()
        .await
        .expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exit_code_and_output() {
    let env = start().await;
    let token = token_file();

    let (code, stdout, stderr) = run_binary(&env, &token).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("organisation org-local"), "{stdout}");
    for name in Link::ALL {
        assert!(stdout.contains(name.as_str()), "{name} missing:\n{stdout}");
    }
    assert!(stdout.contains("9 passed, 0 failed, 0 skipped"), "{stdout}");
    assert!(stdout.contains("value not shown"), "{stdout}");
    assert_clean(&stdout);
    assert_clean(&stderr);

    env.control.set_feature_gates(true, false);
    let (code, stdout, stderr) = run_binary(&env, &token).await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("fix: ask your Thalassa administrator to enable the kms feature gate"),
        "{stdout}"
    );
    assert_clean(&stdout);
    assert_clean(&stderr);
    let _ = std::fs::remove_dir_all(token.parent().unwrap());
}
