//! The Thalassa client against the Thalassa emulator: every endpoint, every error mapping,
//! retries, rate limiting and every credential kind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;
use thalassa_emulator::{
    Access, Control, Emulator, EmulatorConfig, Faults, FederatedIdentitySpec, JwksSource,
    OidcClientSpec, SeedValue, TokenSpec,
};
use thalassa_operator::thalassa::{
    Client, ClientConfig, CreateKmsKeyRequest, CreateSecretRequest, Credentials, Error,
    KmsKeyStatus, ListedSecret, MAX_REVEAL_RESPONSE_BYTES, MAX_SECRET_VALUE_BYTES, RequestObserver,
    RetryWait, SecretBytes, SecretValue, SecretValueInput,
};

const REGION: &str = "nl-01";
const FULL: &str = "tok-full";
const PAT: &str = "pat-full";
const READ_ONLY: &str = "tok-read-only";
const GLOB: &str = "tok-glob";
const NO_REVEAL: &str = "tok-no-reveal";
const NO_KMS: &str = "tok-no-kms";
const VALUE: &str = "s3cr3t-value-do-not-log";

/// An emulator with tokens of every access kind, one key and one secret at `/app/production/db`.
struct Env {
    emu: Emulator,
    control: Control,
    key: String,
}

async fn start() -> Env {
    start_with(EmulatorConfig::default()).await
}

async fn start_with(mut config: EmulatorConfig) -> Env {
    config.tokens = vec![
        TokenSpec::bearer(FULL),
        TokenSpec::pat(PAT),
        TokenSpec::bearer(READ_ONLY).with_access(Access::read_only()),
        TokenSpec::bearer(GLOB).with_access(Access {
            path_globs: Some(vec!["/app/production/*".into()]),
            ..Access::default()
        }),
        TokenSpec::bearer(NO_REVEAL).with_access(Access {
            reveal: false,
            ..Access::default()
        }),
        TokenSpec::bearer(NO_KMS).with_access(Access {
            kms: false,
            ..Access::default()
        }),
    ];
    let emu = Emulator::start(config).await.expect("emulator starts");
    let control = emu.control();
    let key = control
        .create_key(REGION, "operator-key", "aes256-gcm96")
        .expect("key");
    control
        .create_secret(
            REGION,
            "/app/production/db",
            &key,
            SeedValue::String(VALUE.into()),
        )
        .expect("secret");
    control
        .create_secret(REGION, "/other/x", &key, SeedValue::String("other".into()))
        .expect("secret");
    control.reset_counters();
    Env { emu, control, key }
}

fn config(emu: &Emulator, credentials: Credentials) -> ClientConfig {
    let mut config = ClientConfig::new(emu.base_url(), emu.organisation(), credentials);
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_secs(3);
    config.rate_limit_per_second = 1000.0;
    config.rate_limit_burst = 1000;
    config
}

fn client_with(emu: &Emulator, credentials: Credentials) -> Client {
    Client::new(config(emu, credentials)).expect("client")
}

fn bearer(emu: &Emulator, token: &str) -> Client {
    client_with(emu, Credentials::BearerToken(token.into()))
}

fn string_value(text: &str) -> SecretValueInput {
    SecretValueInput::String(SecretBytes::from(text))
}

/// Records what the client reports: every attempt, rate-limiter wait and scheduled retry, each
/// with the moment it was reported.
#[derive(Default)]
struct Recorder {
    attempts: Mutex<Vec<(&'static str, Option<u16>, Instant)>>,
    rates: Mutex<Vec<f64>>,
    limiter_waits: Mutex<Vec<Duration>>,
    retries: Mutex<Vec<ScheduledRetry>>,
}

/// One [`RequestObserver::observe_retry`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScheduledRetry {
    operation: &'static str,
    retry: u32,
    wait: Duration,
    source: RetryWait,
    /// When it was reported: right before the client sleeps `wait`.
    at: Instant,
}

impl RequestObserver for Recorder {
    fn observe(&self, operation: &'static str, status: Option<u16>, _elapsed: Duration) {
        let now = Instant::now();
        self.attempts.lock().unwrap().push((operation, status, now));
    }

    fn observe_rate_limit_wait(&self, _operation: &'static str, waited: Duration) {
        self.limiter_waits.lock().unwrap().push(waited);
    }

    fn observe_rate(&self, _organisation: &str, per_second: f64) {
        self.rates.lock().unwrap().push(per_second);
    }

    fn observe_retry(
        &self,
        operation: &'static str,
        retry: u32,
        wait: Duration,
        source: RetryWait,
    ) {
        let at = Instant::now();
        self.retries.lock().unwrap().push(ScheduledRetry {
            operation,
            retry,
            wait,
            source,
            at,
        });
    }
}

impl Recorder {
    fn count(&self, operation: &str, status: u16) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, st, _)| *op == operation && *st == Some(status))
            .count()
    }

    /// The attempts reported so far, as (operation, status).
    fn attempts(&self) -> Vec<(&'static str, Option<u16>)> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .map(|(op, status, _)| (*op, *status))
            .collect()
    }

    /// The retries scheduled so far, as (operation, retry number, wait, source).
    fn retries(&self) -> Vec<(&'static str, u32, Duration, RetryWait)> {
        self.retries
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.operation, r.retry, r.wait, r.source))
            .collect()
    }

    /// Asserts that every scheduled retry was slept: the next attempt of its operation was
    /// reported no sooner than `wait` after the retry was. A lower bound, so a busy machine can
    /// only make it hold by more.
    fn assert_retries_were_slept(&self) {
        let attempts = self.attempts.lock().unwrap();
        for retry in self.retries.lock().unwrap().iter() {
            let next = attempts
                .iter()
                .find(|(op, _, at)| *op == retry.operation && *at > retry.at)
                .unwrap_or_else(|| panic!("{retry:?} was never attempted"));
            assert!(
                next.2 - retry.at >= retry.wait,
                "{retry:?}: attempted again after {:?}",
                next.2 - retry.at
            );
        }
    }
}

fn observed_client(emu: &Emulator, credentials: Credentials) -> (Client, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut config = config(emu, credentials);
    config.observer = Some(recorder.clone());
    (Client::new(config).expect("client"), recorder)
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thalassa-client-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn getting_started_flow() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);

    let summary = client.kms_summary().await.unwrap();
    assert!(summary.feature_enabled);
    assert!(summary.kms_available_in(REGION));

    let key = client
        .create_key(
            REGION,
            &CreateKmsKeyRequest::new("getting-started", "aes256-gcm96"),
        )
        .await
        .unwrap();
    assert_eq!(key.status, KmsKeyStatus::Active);
    assert_eq!(key.key_type, "aes256-gcm96");

    let secret = client
        .create_secret(
            REGION,
            &CreateSecretRequest::new("/app/prod/db/password", &key.identity, string_value("pw")),
        )
        .await
        .unwrap();
    assert_eq!(secret.path, "/app/prod/db/password");
    assert_eq!(secret.current_version, 1);
    assert_eq!(secret.kms_key.unwrap().identity, key.identity);

    let revealed = client
        .get_secret_value(REGION, "/app/prod/db/password", None)
        .await
        .unwrap();
    assert_eq!(revealed.version, 1);
    assert_eq!(revealed.value, SecretValue::String("pw".into()));
    assert_eq!(revealed.kms_key_identity, key.identity);
    assert!(!revealed.kms_key_version.is_empty());

    let root = client.browse_secrets(REGION, "/").await.unwrap();
    assert!(root.prefixes.contains(&"/app/".to_owned()), "{root:?}");
    let level = client
        .browse_secrets(REGION, "/app/prod/db/")
        .await
        .unwrap();
    assert_eq!(level.secrets.len(), 1);
    assert_eq!(level.secrets[0].path, "/app/prod/db/password");
}

#[tokio::test]
async fn secrets_endpoints_round_trip() {
    let env = start().await;
    let (client, recorder) = observed_client(&env.emu, Credentials::BearerToken(FULL.into()));
    let path = "/app/a+b/config";

    // S3 with key/values and metadata.
    let mut create = CreateSecretRequest::new(
        path,
        &env.key,
        SecretValueInput::KeyValues(BTreeMap::from([
            ("user".to_owned(), SecretBytes::from("admin")),
            ("binary".to_owned(), SecretBytes::new(vec![0, 159, 255])),
        ])),
    );
    create.description = Some("test secret".into());
    create.labels.insert("team".into(), "platform".into());
    let created = client.create_secret(REGION, &create).await.unwrap();
    assert_eq!(created.description.as_deref(), Some("test secret"));
    assert_eq!(created.labels["team"], "platform");

    // S7: key/values decode to raw bytes.
    let revealed = client.get_secret_value(REGION, path, None).await.unwrap();
    let SecretValue::KeyValues(pairs) = &revealed.value else {
        panic!("expected key/values");
    };
    assert_eq!(pairs["user"].expose(), b"admin");
    assert_eq!(pairs["binary"].expose(), [0, 159, 255]);
    assert!(!format!("{revealed:?}").contains("admin"));

    // S6: a new version becomes current; the old one stays readable.
    let put = client
        .put_secret_value(REGION, path, &string_value("v2"))
        .await
        .unwrap();
    assert_eq!(put.version, 2);
    let generated = client
        .put_secret_value(
            REGION,
            path,
            &SecretValueInput::Generate { byte_length: 32 },
        )
        .await
        .unwrap();
    assert_eq!(generated.version, 3);
    let current = client.get_secret_value(REGION, path, None).await.unwrap();
    assert_eq!(current.version, 3);
    let SecretValue::String(bytes) = &current.value else {
        panic!("generated values read back as a string");
    };
    assert_eq!(bytes.len(), 32);
    let second = client
        .get_secret_value(REGION, path, Some(2))
        .await
        .unwrap();
    assert_eq!(second.value, SecretValue::String("v2".into()));

    // S4 with and without history.
    let meta = client.get_secret(REGION, path, false).await.unwrap();
    assert_eq!(meta.current_version, 3);
    assert!(meta.versions.is_empty());
    let with_history = client.get_secret(REGION, path, true).await.unwrap();
    assert_eq!(with_history.versions.len(), 3);

    // S5: set and clear the (opaque) policy.
    let policy = json!({"conditions": [{"type": "ip", "effect": "allow", "cidrs": ["0.0.0.0/0"]}]});
    let with_policy = client
        .update_access_policy(REGION, path, Some(&policy))
        .await
        .unwrap();
    assert_eq!(with_policy.access_policy, Some(policy));
    let cleared = client
        .update_access_policy(REGION, path, None)
        .await
        .unwrap();
    assert_eq!(cleared.access_policy, None);

    // S1 / S2.
    let listed = client.list_secrets(REGION, "/app/").await.unwrap();
    let paths: Vec<_> = listed.iter().map(|s| s.path.as_str()).collect();
    assert!(
        paths.contains(&path) && paths.contains(&"/app/production/db"),
        "{paths:?}"
    );
    assert!(!paths.contains(&"/other/x"));
    // The operator's lean decode of the same listing keeps path, version and key binding.
    let thalassa_operator::thalassa::Listed::Entries(lean) =
        client.list_secret_metadata(REGION, "/app/").await.unwrap()
    else {
        panic!("a small listing is not too large");
    };
    let expected: Vec<ListedSecret> = listed.iter().cloned().map(ListedSecret::from).collect();
    assert_eq!(lean, expected);
    assert!(
        lean.iter()
            .all(|s| s.current_version >= 1 && s.kms_key.is_some())
    );
    let browsed = client.browse_secrets(REGION, "/app/a+b/").await.unwrap();
    assert_eq!(browsed.secrets.len(), 1);

    // S8: destroyed versions stay in the history but cannot be read.
    client
        .destroy_secret_version(REGION, path, 1)
        .await
        .unwrap();
    let err = client
        .get_secret_value(REGION, path, Some(1))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "VersionNotFound", "{err}");
    assert!(!err.is_definite_not_found());
    let history = client.get_secret(REGION, path, true).await.unwrap();
    assert!(
        history
            .versions
            .iter()
            .any(|v| v.version == 1 && v.is_destroyed())
    );

    // S9.
    client.delete_secret(REGION, path).await.unwrap();
    let err = client.get_secret(REGION, path, false).await.unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
    assert!(err.is_definite_not_found());

    // Operation names match the emulator's counters, attempt for attempt.
    let counters = env.control.counters();
    for (operation, statuses) in &counters.operations {
        for (status, count) in statuses {
            assert_eq!(
                recorder.count(operation, *status) as u64,
                *count,
                "{operation} {status}"
            );
        }
    }
    assert_eq!(recorder.attempts().len() as u64, counters.total);
}

#[tokio::test]
async fn kms_key_endpoints() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);

    let created = client
        .create_key(
            REGION,
            &CreateKmsKeyRequest::new("lifecycle", "chacha20-poly1305"),
        )
        .await
        .unwrap();
    let id = created.identity.as_str();
    let keys = client.list_keys(REGION).await.unwrap();
    assert!(keys.iter().any(|k| k.identity == id));
    assert_eq!(client.get_key(REGION, id).await.unwrap().name, "lifecycle");
    // Keys can also be addressed by slug.
    assert_eq!(
        client
            .get_key(REGION, &created.slug)
            .await
            .unwrap()
            .identity,
        id
    );

    let disabled = client.disable_key(REGION, id).await.unwrap();
    assert_eq!(disabled.status, KmsKeyStatus::Disabled);
    let enabled = client.enable_key(REGION, id).await.unwrap();
    assert_eq!(enabled.status, KmsKeyStatus::Active);

    let before = enabled.latest_version.unwrap_or(1);
    let rotated = client.rotate_key(REGION, id).await.unwrap();
    assert_eq!(rotated.latest_version, Some(before + 1));

    client.delete_key(REGION, id).await.unwrap();
    assert_eq!(
        client.get_key(REGION, id).await.unwrap().status,
        KmsKeyStatus::PendingDeletion
    );
    client.cancel_key_deletion(REGION, id).await.unwrap();
    assert_eq!(
        client.get_key(REGION, id).await.unwrap().status,
        KmsKeyStatus::Active
    );

    let counters = env.control.counters();
    for operation in [
        "createKey",
        "listKeys",
        "getKey",
        "disableKey",
        "enableKey",
        "rotateKey",
        "deleteKey",
        "cancelKeyDeletion",
    ] {
        assert!(counters.operation_total(operation) > 0, "{operation}");
    }
}

/// One row of the error-mapping table.
#[derive(Debug, Clone, Copy)]
enum Case {
    SecretsGateOff,
    KmsGateOffSecretsRoute,
    KmsGateOffKmsRoute,
    BothGatesOff,
    KmsDown,
    KeyDisabledReveal,
    KeyDisabledPut,
    KeyPendingDeletion,
    WrongKeyOnCreate,
    WrongKeyType,
    MissingKey,
    RevokedToken,
    ReadOnlyPut,
    ReadOnlyKeyAdmin,
    PathGlobDenied,
    NoRevealPermission,
    NoKmsPermission,
    DestroyedVersion,
    MissingVersion,
    MissingSecret,
    ExistingSecret,
    UnknownRegion,
    InvalidPathClientSide,
    InvalidRegionClientSide,
}

#[tokio::test]
async fn error_mapping_table() {
    use Case::*;
    #[rustfmt::skip]
    let table: &[(Case, &str)] = &[
        (SecretsGateOff, "SecretsFeatureDisabled"),
        (KmsGateOffSecretsRoute, "KmsFeatureDisabled"),
        (KmsGateOffKmsRoute, "KmsFeatureDisabled"),
        (BothGatesOff, "KmsFeatureDisabled"),
        (KmsDown, "KmsBackendUnavailable"),
        (KeyDisabledReveal, "KeyNotActive"),
        (KeyDisabledPut, "KeyNotActive"),
        (KeyPendingDeletion, "KeyNotActive"),
        (WrongKeyOnCreate, "KeyNotFound"),
        (WrongKeyType, "InvalidRequest"),
        (MissingKey, "KeyNotFound"),
        (RevokedToken, "Unauthorized"),
        (ReadOnlyPut, "Forbidden"),
        (ReadOnlyKeyAdmin, "KeyNotFound"),
        (PathGlobDenied, "Forbidden"),
        (NoRevealPermission, "Forbidden"),
        (NoKmsPermission, "KeyNotFound"),
        (DestroyedVersion, "VersionNotFound"),
        (MissingVersion, "VersionNotFound"),
        (MissingSecret, "SecretNotFound"),
        (ExistingSecret, "Conflict"),
        (UnknownRegion, "RegionNotFound"),
        (InvalidPathClientSide, "InvalidPath"),
        (InvalidRegionClientSide, "InvalidArgument"),
    ];
    for &(case, reason) in table {
        let env = start().await;
        let result = run_case(&env, case).await;
        let err = match result {
            Ok(()) => panic!("{case:?}: expected {reason}, got success"),
            Err(err) => err,
        };
        assert_eq!(err.reason(), reason, "{case:?}: {err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(VALUE), "{case:?} leaks the value: {text}");
        for token in [FULL, PAT, READ_ONLY, GLOB, NO_REVEAL, NO_KMS] {
            assert!(!text.contains(token), "{case:?} leaks a token: {text}");
        }
        assert_eq!(
            err.is_definite_not_found(),
            reason == "SecretNotFound",
            "{case:?}"
        );
        if let Error::KmsBackendUnavailable { region, .. } = &err {
            assert_eq!(region, REGION);
        }
        env.emu.shutdown().await;
    }
}

async fn run_case(env: &Env, case: Case) -> Result<(), Error> {
    use Case::*;
    let full = bearer(&env.emu, FULL);
    let db = "/app/production/db";
    let reveal = |client: Client, path: &'static str, version: Option<u64>| async move {
        client
            .get_secret_value(REGION, path, version)
            .await
            .map(drop)
    };
    match case {
        SecretsGateOff => {
            env.control.set_feature_gates(false, true);
            reveal(full, db, None).await
        }
        KmsGateOffSecretsRoute => {
            env.control.set_feature_gates(true, false);
            reveal(full, db, None).await
        }
        KmsGateOffKmsRoute => {
            env.control.set_feature_gates(true, false);
            let summary = full.kms_summary().await?;
            assert!(!summary.feature_enabled);
            full.list_keys(REGION).await.map(drop)
        }
        BothGatesOff => {
            env.control.set_feature_gates(false, false);
            full.get_secret(REGION, db, false).await.map(drop)
        }
        KmsDown => {
            env.control.set_kms_available(REGION, false).unwrap();
            // Metadata needs no crypto and still works.
            full.get_secret(REGION, db, false).await?;
            let result = reveal(full, db, None).await;
            // 503 is retried: 1 attempt + 3 retries.
            assert_eq!(env.control.counters().get("getSecretValue", 503), 4);
            result
        }
        KeyDisabledReveal => {
            env.control
                .set_key_status(REGION, &env.key, "disabled")
                .unwrap();
            reveal(full, db, None).await
        }
        KeyDisabledPut => {
            env.control
                .set_key_status(REGION, &env.key, "disabled")
                .unwrap();
            full.put_secret_value(REGION, db, &string_value("x"))
                .await
                .map(drop)
        }
        KeyPendingDeletion => {
            env.control
                .set_key_status(REGION, &env.key, "pending_deletion")
                .unwrap();
            reveal(full, db, None).await
        }
        WrongKeyOnCreate => {
            let request = CreateSecretRequest::new("/new", "no-such-key", string_value("x"));
            full.create_secret(REGION, &request).await.map(drop)
        }
        WrongKeyType => {
            let rsa = env.control.create_key(REGION, "rsa", "rsa-2048").unwrap();
            let request = CreateSecretRequest::new("/new", &rsa, string_value("x"));
            full.create_secret(REGION, &request).await.map(drop)
        }
        MissingKey => full.get_key(REGION, "no-such-key").await.map(drop),
        RevokedToken => {
            full.get_secret(REGION, db, false).await?;
            assert!(env.control.revoke_token(FULL));
            let result = full.get_secret(REGION, db, false).await.map(drop);
            // A static token is not retried on 401.
            assert_eq!(env.control.counters().get("getSecret", 401), 1);
            result
        }
        ReadOnlyPut => {
            let client = bearer(&env.emu, READ_ONLY);
            // Reading is allowed.
            reveal(client.clone(), db, None).await?;
            client
                .put_secret_value(REGION, db, &string_value("x"))
                .await
                .map(drop)
        }
        ReadOnlyKeyAdmin => {
            let client = bearer(&env.emu, READ_ONLY);
            client.disable_key(REGION, &env.key).await.map(drop)
        }
        PathGlobDenied => {
            let client = bearer(&env.emu, GLOB);
            reveal(client.clone(), db, None).await?;
            // Listings are filtered to readable paths.
            let listed = client.list_secrets(REGION, "/").await?;
            assert!(
                listed
                    .iter()
                    .all(|s| s.path.starts_with("/app/production/"))
            );
            reveal(client, "/other/x", None).await
        }
        NoRevealPermission => {
            let client = bearer(&env.emu, NO_REVEAL);
            client.get_secret(REGION, db, false).await?;
            reveal(client, db, None).await
        }
        NoKmsPermission => {
            let client = bearer(&env.emu, NO_KMS);
            client.get_key(REGION, &env.key).await.map(drop)
        }
        DestroyedVersion => {
            env.control
                .put_secret_value(REGION, db, SeedValue::String("v2".into()))
                .unwrap();
            env.control.destroy_version(REGION, db, 1).unwrap();
            reveal(full, db, Some(1)).await
        }
        MissingVersion => reveal(full, db, Some(99)).await,
        MissingSecret => reveal(full, "/app/missing", None).await,
        ExistingSecret => {
            let request = CreateSecretRequest::new(db, &env.key, string_value("x"));
            full.create_secret(REGION, &request).await.map(drop)
        }
        UnknownRegion => full.get_secret_value("nl-99", db, None).await.map(drop),
        InvalidPathClientSide => {
            let result = reveal(full, "/app//x", None).await;
            assert_eq!(env.control.counters().total, 0, "nothing is sent");
            result
        }
        InvalidRegionClientSide => full.get_secret("nl/01", db, false).await.map(drop),
    }
}

#[tokio::test]
async fn rate_limited_requests_honour_retry_after() {
    let env = start().await;
    let (client, recorder) = observed_client(&env.emu, Credentials::BearerToken(FULL.into()));
    env.control.set_faults(Faults {
        rate_limit_429: 2,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let revealed = client
        .get_secret_value(REGION, "/app/production/db", None)
        .await
        .unwrap();
    assert_eq!(revealed.value, SecretValue::String(VALUE.into()));
    // Two retries, each waiting exactly the 1 s Retry-After (the backoff would be ≤ 20 ms), …
    let one_second = Duration::from_secs(1);
    assert_eq!(
        recorder.retries(),
        [
            ("getSecretValue", 1, one_second, RetryWait::RetryAfter),
            ("getSecretValue", 2, one_second, RetryWait::RetryAfter),
        ]
    );
    // … and really sleeping it before the next attempt.
    recorder.assert_retries_were_slept();
    let counters = env.control.counters();
    assert_eq!(counters.get("getSecretValue", 429), 2);
    assert_eq!(counters.get("getSecretValue", 200), 1);
    assert_eq!(recorder.count("getSecretValue", 429), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_reported_not_slept() {
    let env = start().await;
    let (client, recorder) = observed_client(&env.emu, Credentials::BearerToken(FULL.into()));
    env.control.set_faults(Faults {
        rate_limit_429: 5,
        retry_after_secs: 30,
        ..Faults::default()
    });
    // A backstop only: the call takes milliseconds, and sleeping the Retry-After would take 30 s.
    let err = tokio::time::timeout(
        Duration::from_secs(15),
        client.get_secret(REGION, "/app/production/db", false),
    )
    .await
    .expect("the 30 s Retry-After is not slept")
    .unwrap_err();
    // No retry was scheduled: the 30 s (over the 3 s cap) is reported, not slept.
    assert_eq!(recorder.retries(), []);
    assert_eq!(recorder.count("getSecret", 429), 1);
    assert_eq!(err.reason(), "RateLimited");
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(env.control.counters().get("getSecret", 429), 1);
}

#[tokio::test]
async fn bursts_of_503_are_retried() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    env.control.set_faults(Faults {
        burst_503: 2,
        ..Faults::default()
    });
    client
        .get_secret_value(REGION, "/app/production/db", None)
        .await
        .unwrap();
    let counters = env.control.counters();
    assert_eq!(counters.get("getSecretValue", 503), 2);
    assert_eq!(counters.get("getSecretValue", 200), 1);

    // A longer burst exhausts the retry budget (1 + 3 attempts).
    env.control.reset_counters();
    env.control.set_faults(Faults {
        burst_503: 10,
        ..Faults::default()
    });
    let err = client.list_keys(REGION).await.unwrap_err();
    assert_eq!(err.reason(), "KmsBackendUnavailable");
    assert_eq!(env.control.counters().get("listKeys", 503), 4);
}

#[tokio::test]
async fn server_errors_are_retried_only_when_safe() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    env.control.set_faults(Faults {
        error_rate: 1.0,
        error_status: 500,
        ..Faults::default()
    });
    let err = client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { status: 500, .. }), "{err}");
    assert_eq!(env.control.counters().get("getSecret", 500), 4);

    // putSecretValue may have been applied: a 500 is not repeated.
    let err = client
        .put_secret_value(REGION, "/app/production/db", &string_value("x"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Server");
    assert_eq!(env.control.counters().get("putSecretValue", 500), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    for _ in 0..2 {
        let _ = client.get_secret_value(REGION, "/app/missing", None).await;
    }
    let request = CreateSecretRequest::new("/app/production/db", &env.key, string_value("x"));
    let _ = client.create_secret(REGION, &request).await;
    let counters = env.control.counters();
    assert_eq!(counters.get("getSecretValue", 404), 2);
    assert_eq!(counters.get("createSecret", 409), 1);
}

#[tokio::test]
async fn rate_limiter_bounds_the_request_rate() {
    let env = start().await;
    let recorder = Arc::new(Recorder::default());
    let mut config = config(&env.emu, Credentials::BearerToken(FULL.into()));
    config.rate_limit_per_second = 10.0;
    config.rate_limit_burst = 2;
    config.observer = Some(recorder.clone());
    let client = Client::new(config).unwrap();
    let started = Instant::now();
    let calls = (0..12).map(|_| client.get_secret(REGION, "/app/production/db", false));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(env.control.counters().get("getSecret", 200), 12);
    assert_eq!(recorder.attempts().len(), 12);
    // The limiter's decisions (src/thalassa/ratelimit.rs checks them exactly, on paused time):
    // 2 calls take the burst, the other 10 reserve the next tokens, 100 ms apart, so they wait
    // 100 ms, 200 ms, … 1 s. Calls that reserve a little later wait a little less, never more:
    // at most 10 waits, none over 1 s, and together (5.5 s when all reserve at once) well over
    // the 1 s that 10 tokens at 10/s take.
    let waits = recorder.limiter_waits.lock().unwrap().clone();
    assert!(
        !waits.is_empty() && waits.len() <= 10,
        "{} calls waited: {waits:?}",
        waits.len()
    );
    assert!(
        waits.iter().all(|w| *w <= Duration::from_secs(1)),
        "{waits:?}"
    );
    let total: Duration = waits.iter().sum();
    assert!(total >= Duration::from_secs(1), "{total:?}: {waits:?}");
    // And the waits were slept: the last call got its token 1 s after the first reservation.
    // A lower bound, so a busy machine can only make it hold by more.
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
}

/// AIMD against a server quota: a client starting at 4× the quota (and a ceiling far above it)
/// cuts its rate at the first 429s, honours `Retry-After`, and then runs near the quota, so only
/// a small share of requests is refused and every call succeeds.
#[tokio::test]
async fn the_adaptive_rate_settles_near_a_server_quota() {
    let env = start().await;
    env.control.set_faults(Faults {
        quota_per_second: 100.0,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let recorder = Arc::new(Recorder::default());
    let mut config = config(&env.emu, Credentials::BearerToken(FULL.into()));
    config.rate_limit_per_second = 1000.0;
    config.rate_limit_start = 400.0;
    config.rate_limit_burst = 40;
    config.observer = Some(recorder.clone());
    let client = Client::new(config).unwrap();
    let started = Instant::now();
    let calls = 800;
    let results: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
        futures::stream::iter(
            (0..calls).map(|_| client.get_secret(REGION, "/app/production/db", false)),
        ),
        32,
    ))
    .await;
    let elapsed = started.elapsed();
    let refused = env.control.counters().get("getSecret", 429);
    let rates = recorder.rates.lock().unwrap().clone();
    let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{calls} calls against a 100/s quota: {:.1} s ({:.0}/s), {refused} refused (429), rate from 400/s down to {lowest:.0}/s, last {:.0}/s",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        rates.last().copied().unwrap_or_default()
    );
    assert!(results.iter().all(Result::is_ok), "every call succeeded");
    assert!(
        lowest < 400.0 / 2.0,
        "the first 429s cut the rate: {lowest}"
    );
    assert!(
        refused * 10 < calls,
        "{refused} of {calls} requests refused: the rate did not settle near the quota"
    );
}

#[tokio::test]
async fn personal_access_tokens_use_the_token_scheme() {
    let env = start().await;
    let pat = client_with(&env.emu, Credentials::PersonalAccessToken(PAT.into()));
    pat.get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
    // The emulator accepts the `Token` scheme only for PATs, so a bearer token sent as a PAT is
    // refused: proof that the scheme really is `Token`.
    let wrong = client_with(&env.emu, Credentials::PersonalAccessToken(FULL.into()));
    let err = wrong
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Unauthorized");
    let as_bearer = bearer(&env.emu, FULL);
    as_bearer
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
}

#[tokio::test]
async fn project_header_selects_the_project_scope() {
    let env = start().await;
    let project = env.control.with_project(Some("proj-1"));
    let key = project
        .create_key(REGION, "project-key", "aes256-gcm96")
        .unwrap();
    project
        .create_secret(REGION, "/in/project", &key, SeedValue::String("p".into()))
        .unwrap();
    let mut config = config(&env.emu, Credentials::BearerToken(FULL.into()));
    config.project = Some("proj-1".into());
    let scoped = Client::new(config).unwrap();
    let revealed = scoped
        .get_secret_value(REGION, "/in/project", None)
        .await
        .unwrap();
    assert_eq!(revealed.value, SecretValue::String("p".into()));
    let unscoped = bearer(&env.emu, FULL);
    let err = unscoped
        .get_secret(REGION, "/in/project", false)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
}

#[tokio::test]
async fn token_file_is_reread_after_a_401() {
    let env = start().await;
    env.control
        .add_token(TokenSpec::bearer("tok-file-a"))
        .unwrap();
    let file = temp_file("bearer-token", "tok-file-a\n");
    let client = client_with(&env.emu, Credentials::BearerTokenFile(file.clone()));
    client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
    // Rotate: the old token is revoked and the file holds a new one.
    env.control
        .add_token(TokenSpec::bearer("tok-file-b"))
        .unwrap();
    env.control.revoke_token("tok-file-a");
    std::fs::write(&file, "tok-file-b").unwrap();
    client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
    let counters = env.control.counters();
    assert_eq!(counters.get("getSecret", 401), 1);
    assert_eq!(counters.get("getSecret", 200), 2);

    // A missing file is reported as such.
    let missing = client_with(
        &env.emu,
        Credentials::BearerTokenFile("/nonexistent/token".into()),
    );
    let err = missing.kms_summary().await.unwrap_err();
    assert_eq!(err.reason(), "CredentialFileUnreadable");
}

#[tokio::test]
async fn client_credentials_grant_caches_the_token() {
    let env = start_with(EmulatorConfig {
        oidc_clients: vec![OidcClientSpec {
            client_id: "sa-access-key".into(),
            client_secret: "sa-access-secret".into(),
            access: Access::default(),
        }],
        ..EmulatorConfig::default()
    })
    .await;
    let client = client_with(
        &env.emu,
        Credentials::ClientCredentials {
            client_id: "sa-access-key".into(),
            client_secret: "sa-access-secret".into(),
            scopes: vec!["api:read".into(), "api:write".into()],
        },
    );
    for _ in 0..3 {
        client
            .get_secret_value(REGION, "/app/production/db", None)
            .await
            .unwrap();
    }
    let counters = env.control.counters();
    assert_eq!(counters.operation_total("token"), 1);
    assert_eq!(counters.get("getSecretValue", 200), 3);

    // The secret-file variant reads the same credentials from disk.
    let secret_file = temp_file("client-secret", "sa-access-secret\n");
    let from_file = client_with(
        &env.emu,
        Credentials::ClientCredentialsFile {
            client_id: "sa-access-key".into(),
            client_secret_file: secret_file,
            scopes: Vec::new(),
        },
    );
    from_file.list_keys(REGION).await.unwrap();

    let wrong = client_with(
        &env.emu,
        Credentials::ClientCredentials {
            client_id: "sa-access-key".into(),
            client_secret: "wrong-secret-value".into(),
            scopes: Vec::new(),
        },
    );
    let err = wrong.kms_summary().await.unwrap_err();
    assert_eq!(err.reason(), "Unauthorized");
    let text = format!("{err} {err:?}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
}

/// An ES256 signer with its JWKS, standing in for a Kubernetes service-account issuer.
struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "https://api.thalassa.cloud";

impl Issuer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self { key, rng }
    }

    fn jwks(&self) -> String {
        // Uncompressed point: 0x04 || x || y.
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string()
    }

    fn token(&self, subject: &str) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "test-key"});
        let claims = json!({
            "iss": ISSUER, "aud": [AUDIENCE], "sub": subject, "iat": now, "exp": now + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).unwrap();
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

#[tokio::test]
async fn token_exchange_rereads_the_subject_token_and_shares_one_exchange() {
    let issuer = Issuer::new();
    let env = start_with(EmulatorConfig {
        federated_identities: vec![FederatedIdentitySpec {
            service_account_id: "sa-operator".into(),
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            subject: "system:serviceaccount:ops:*".into(),
            jwks: JwksSource::Inline(issuer.jwks()),
            access: Access::read_only(),
        }],
        ..EmulatorConfig::default()
    })
    .await;
    let file = temp_file(
        "subject-token",
        &issuer.token("system:serviceaccount:ops:operator"),
    );
    let client = client_with(
        &env.emu,
        Credentials::TokenExchange {
            subject_token_file: file.clone(),
            service_account_id: "sa-operator".into(),
            access_token_lifetime: Some(Duration::from_secs(600)),
        },
    );

    // Concurrent first requests share one exchange; later ones reuse the cached token.
    let calls = (0..8).map(|_| client.get_secret_value(REGION, "/app/production/db", None));
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap().value, SecretValue::String(VALUE.into()));
    }
    client.list_secrets(REGION, "/").await.unwrap();
    assert_eq!(env.control.counters().get("token", 200), 1);

    // The exchanged token acts with the federated identity's access (read-only).
    let err = client
        .put_secret_value(REGION, "/app/production/db", &string_value("x"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Forbidden");

    // The file is read at every exchange: an untrusted subject now fails …
    std::fs::write(&file, issuer.token("system:serviceaccount:other:intruder")).unwrap();
    client.invalidate_token().await;
    let err = client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Unauthorized", "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(env.control.counters().get("token", 400), 1);

    // … and a rotated valid token works again.
    std::fs::write(&file, issuer.token("system:serviceaccount:ops:operator")).unwrap();
    client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
    assert_eq!(env.control.counters().get("token", 200), 2);
}

/// What the scripted server saw: (method path, headers, arrival) per request.
type Seen = Arc<Mutex<Vec<(String, reqwest::header::HeaderMap, jiff::Timestamp)>>>;

/// The `Retry-After` date the scripted server names for `/limited` when a request arrives at
/// `arrived`: 2 s later, in the HTTP-date format (whole seconds), and read back as a client
/// reads it.
fn retry_after_date(arrived: jiff::Timestamp) -> (String, jiff::Timestamp) {
    let text = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&(arrived + jiff::SignedDuration::from_secs(2)))
        .unwrap();
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(&text)
        .unwrap();
    (text, date)
}

/// A scripted HTTP server for behaviour the emulator cannot be made to show: tokens that are
/// revoked right after being issued, HTTP-date `Retry-After`, undecodable values. Returns its
/// base URL and the requests it saw.
async fn scripted_server() -> (String, Seen) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;

    #[derive(Clone)]
    struct Script {
        seen: Seen,
        tokens_issued: Arc<Mutex<u32>>,
        limited_calls: Arc<Mutex<u32>>,
    }

    async fn handle(
        State(script): State<Script>,
        method: axum::http::Method,
        uri: Uri,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let route = format!("{method} {}", uri.path());
        let arrived = jiff::Timestamp::now();
        script
            .seen
            .lock()
            .unwrap()
            .push((route.clone(), headers.clone(), arrived));
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match route.as_str() {
            "POST /oidc/token" => {
                let mut issued = script.tokens_issued.lock().unwrap();
                *issued += 1;
                axum::Json(json!({"access_token": format!("t{issued}"), "token_type": "Bearer"}))
                    .into_response()
            }
            // The first issued token is "revoked": a 401 must make the client exchange again.
            "GET /v1/kms/summary" if authorization == "Bearer t1" => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "invalid or missing credentials"})),
            )
                .into_response(),
            "GET /v1/kms/summary" => axum::Json(json!({"featureEnabled": true})).into_response(),
            "POST /v1/secrets/nl-01/secret/bad/value" => axum::Json(json!({
                "path": "/bad", "version": 1, "secretString": "c2VjcmV0!!not-base64",
                "kmsKeyIdentity": "k", "kmsKeyVersion": "1"
            }))
            .into_response(),
            "GET /v1/secrets/nl-01/secret/limited" => {
                let mut calls = script.limited_calls.lock().unwrap();
                *calls += 1;
                if *calls == 1 {
                    let (date, _) = retry_after_date(arrived);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", date)],
                        axum::Json(json!({"message": "slow down"})),
                    )
                        .into_response()
                } else {
                    axum::Json(json!({"path": "/limited", "currentVersion": 1})).into_response()
                }
            }
            _ => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"message": "not found"})),
            )
                .into_response(),
        }
    }

    let seen: Seen = Arc::default();
    let script = Script {
        seen: seen.clone(),
        tokens_issued: Arc::default(),
        limited_calls: Arc::default(),
    };
    let app = axum::Router::new().fallback(handle).with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn headers_reauthentication_http_dates_and_bad_values() {
    let (base_url, seen) = scripted_server().await;
    let mut config = ClientConfig::new(
        &base_url,
        "org-headers",
        Credentials::ClientCredentials {
            client_id: "id".into(),
            client_secret: "client-secret-value".into(),
            scopes: Vec::new(),
        },
    );
    config.project = Some("proj-headers".into());
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_secs(5);
    let recorder = Arc::new(Recorder::default());
    config.observer = Some(recorder.clone());
    let client = Client::new(config).unwrap();

    // 401 with an exchanged token: one new exchange, then success.
    let summary = client.kms_summary().await.unwrap();
    assert!(summary.feature_enabled);
    let routes: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(r, _, _)| r.clone())
        .collect();
    assert_eq!(
        routes,
        [
            "POST /oidc/token",
            "GET /v1/kms/summary",
            "POST /oidc/token",
            "GET /v1/kms/summary"
        ]
    );
    {
        let seen = seen.lock().unwrap();
        let (_, token_headers, _) = &seen[0];
        assert_eq!(
            token_headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let (_, api_headers, _) = &seen[3];
        assert_eq!(api_headers["authorization"], "Bearer t2");
        assert_eq!(api_headers["accept"], "application/json");
        assert_eq!(api_headers["x-organisation-identity"], "org-headers");
        assert_eq!(api_headers["x-project-identity"], "proj-headers");
        assert!(
            api_headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("thalassa-secrets-operator/")
        );
    }

    // A 401 answered with a fresh token is no retry.
    assert_eq!(recorder.retries(), []);

    // Retry-After as an HTTP date is honoured: one retry, waiting for the date …
    let secret = client.get_secret(REGION, "/limited", false).await.unwrap();
    assert_eq!(secret.current_version, 1);
    let retries = recorder.retries();
    assert!(
        matches!(
            retries[..],
            [("getSecret", 1, wait, RetryWait::RetryAfter)] if wait <= Duration::from_secs(2)
        ),
        "{retries:?}"
    );
    recorder.assert_retries_were_slept();
    // … which the retry did not come before. (10 ms for the system clock slewing against the
    // monotonic one the client sleeps on.)
    let limited: Vec<jiff::Timestamp> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(route, _, _)| route == "GET /v1/secrets/nl-01/secret/limited")
        .map(|(_, _, arrived)| *arrived)
        .collect();
    let [first, retried] = limited[..] else {
        panic!("{limited:?}");
    };
    let (_, named) = retry_after_date(first);
    assert!(
        retried >= named - jiff::SignedDuration::from_millis(10),
        "retried at {retried}, Retry-After named {named}"
    );

    // A value that is not base64 is an invalid response, and the error does not quote it.
    let err = client
        .get_secret_value(REGION, "/bad", None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidResponse");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("c2VjcmV0") && !text.contains("not-base64"),
        "{text}"
    );
}

// ---- Call deadline (issue 9, item 6) ----

/// A client with short timeouts, for the deadline tests, and what it reports.
fn deadline_client(
    emu: &Emulator,
    request_timeout: Duration,
    deadline: Duration,
) -> (Client, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut config = config(emu, Credentials::BearerToken(FULL.into()));
    config.request_timeout = request_timeout;
    config.call_deadline = deadline;
    config.max_retries = 10;
    config.observer = Some(recorder.clone());
    (Client::new(config).expect("client"), recorder)
}

#[tokio::test]
async fn call_deadline_bounds_a_call_against_a_slower_server() {
    let env = start().await;
    // Thalassa answers after 5 s; each attempt times out after 1 s; 10 retries would take 11 s.
    env.control.set_faults(Faults {
        latency_ms: 5_000,
        ..Faults::default()
    });
    let deadline = Duration::from_secs(3);
    for call in ["getSecretValue", "listSecrets"] {
        let (client, recorder) = deadline_client(&env.emu, Duration::from_secs(1), deadline);
        let started = Instant::now();
        let err = match call {
            "getSecretValue" => client
                .get_secret_value(REGION, "/app/production/db", None)
                .await
                .map(drop),
            _ => client.list_secrets(REGION, "/app/").await.map(drop),
        }
        .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(&err, Error::DeadlineExceeded { operation, deadline: d } if *operation == call && *d == deadline),
            "{err:?}"
        );
        // The deadline, not the budget of 10 retries, ended the call: every attempt ran into the
        // 1 s request timeout without a response, so at most 3 of the 11 allowed could end
        // within the 3 s, and each was followed by a backoff retry (bar the last, when that
        // retry could not have ended in time either).
        let attempts = recorder.attempts();
        assert!(
            (1..=3).contains(&attempts.len()) && attempts.iter().all(|a| *a == (call, None)),
            "{call}: {attempts:?}"
        );
        let retries = recorder.retries();
        assert!(
            (attempts.len() - 1..=attempts.len()).contains(&retries.len())
                && retries.iter().zip(1..).all(|(&(op, retry, _, source), n)| {
                    (op, retry, source) == (call, n, RetryWait::Backoff)
                }),
            "{call}: {retries:?}"
        );
        // Cutting off a slow server is the behaviour under test, so one wall-clock check stays:
        // at least the deadline (a lower bound, which load cannot break), and less than 2 s past
        // it, where retrying through the budget would take 11 s and the server answers after 5 s.
        assert!(
            elapsed >= deadline - Duration::from_millis(100)
                && elapsed < deadline + Duration::from_secs(2),
            "{call}: took {elapsed:?}"
        );
        assert_eq!(err.reason(), "DeadlineExceeded");
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(text.contains("timeout") && text.contains(call), "{text}");
        assert!(!text.contains(VALUE), "{text}");
    }
}

#[tokio::test]
async fn a_retry_whose_wait_passes_the_deadline_is_not_started() {
    let env = start().await;
    // 429 with Retry-After 2 s, within retry_max_delay (3 s) but past the 1.5 s deadline.
    env.control.set_faults(Faults {
        rate_limit_429: 5,
        retry_after_secs: 2,
        ..Faults::default()
    });
    let (client, recorder) = deadline_client(
        &env.emu,
        Duration::from_secs(1),
        Duration::from_millis(1500),
    );
    let err = client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    // No retry was scheduled: one attempt, and no sleep (sleeping the 2 s would have run into
    // the deadline and ended in DeadlineExceeded).
    assert_eq!(recorder.retries(), []);
    assert_eq!(recorder.count("getSecret", 429), 1);
    assert_eq!(recorder.attempts().len(), 1);
    // The real cause is reported (with its Retry-After), not a timeout.
    assert_eq!(err.reason(), "RateLimited", "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(env.control.counters().get("getSecret", 429), 1);
}

#[tokio::test]
async fn rate_limiter_waits_count_against_the_deadline() {
    let env = start().await;
    let recorder = Arc::new(Recorder::default());
    let mut config = config(&env.emu, Credentials::BearerToken(FULL.into()));
    config.rate_limit_per_second = 0.2;
    config.rate_limit_burst = 1;
    config.request_timeout = Duration::from_secs(1);
    config.call_deadline = Duration::from_secs(1);
    config.observer = Some(recorder.clone());
    let client = Client::new(config).unwrap();
    client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
    // The next token is 5 s away: the deadline cuts the wait off (the exact timing is checked
    // on paused time in src/thalassa/client.rs). Had the wait not counted, the call would have
    // succeeded after it.
    let err = client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "DeadlineExceeded", "{err}");
    // The wait never completed (a completed one is reported) and nothing more was sent.
    let waits = recorder.limiter_waits.lock().unwrap().clone();
    assert!(waits.is_empty(), "{waits:?}");
    assert_eq!(recorder.attempts().len(), 1);
    assert_eq!(recorder.retries(), []);
    assert_eq!(env.control.counters().get("getSecret", 200), 1);
}

// ---- Dot segments (issue 9, item 7) ----

#[tokio::test]
async fn dot_segments_never_reach_the_server() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    for path in [
        "/app/../other/x",
        "/app/./production/db",
        "/app/production/db/..",
    ] {
        let err = client
            .get_secret_value(REGION, path, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidPath", "{path}: {err}");
        assert!(
            err.to_string()
                .contains("secret path must not contain '.' or '..' segments"),
            "{err}"
        );
        let err = client.get_secret(REGION, path, false).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidPath", "{path}: {err}");
        let err = client
            .put_secret_value(REGION, path, &string_value("x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidPath", "{path}: {err}");
    }
    for prefix in ["/app/../", "/./", "/app/.."] {
        let err = client.list_secrets(REGION, prefix).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidPath", "{prefix}: {err}");
        let err = client.browse_secrets(REGION, prefix).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidPath", "{prefix}: {err}");
    }
    assert_eq!(env.control.counters().total, 0, "nothing is sent");
    // Dots inside a segment are ordinary characters.
    let key = env.key.clone();
    env.control
        .create_secret(
            REGION,
            "/app/.hidden/..x",
            &key,
            SeedValue::String("dots".into()),
        )
        .unwrap();
    let revealed = client
        .get_secret_value(REGION, "/app/.hidden/..x", None)
        .await
        .unwrap();
    assert_eq!(revealed.value, SecretValue::String("dots".into()));
}

// ---- Value size cap and concurrent reveals (issue 9, item 13) ----

#[tokio::test]
async fn oversized_reveal_fails_fast_with_value_too_large() {
    let env = start().await;
    let (client, recorder) = observed_client(&env.emu, Credentials::BearerToken(FULL.into()));
    // 64 MiB of padding, streamed: over the old 32 MiB cap too. (That reading stops at the first
    // chunk past the cap is checked chunk by chunk in src/thalassa/client.rs.)
    env.control.set_faults(Faults {
        pad_value_response_bytes: 64 * 1024 * 1024,
        ..Faults::default()
    });
    let err = client
        .get_secret_value(REGION, "/app/production/db", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ValueTooLarge { path, limit } if path == "/app/production/db" && *limit == MAX_REVEAL_RESPONSE_BYTES),
        "{err:?}"
    );
    assert_eq!(err.reason(), "ValueTooLarge");
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(text.contains("1 MiB") && !text.contains(VALUE), "{text}");
    // Fails at once: one attempt, cut off while reading (so no status is reported), and no retry
    // scheduled.
    assert_eq!(recorder.attempts(), [("getSecretValue", None)]);
    assert_eq!(recorder.retries(), []);
    assert_eq!(env.control.counters().get("getSecretValue", 200), 1);
    // The padding only concerns reveals: metadata still works.
    client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap();
}

#[tokio::test]
async fn values_up_to_the_cap_are_still_revealed() {
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    // The largest value Thalassa can hold: 256 keys of 128 characters, 4096 bytes each, i.e.
    // 1 MiB decoded and about 1.37 MiB of JSON.
    let pairs: BTreeMap<String, String> = (0..256)
        .map(|i| (format!("k{i:03}{}", "x".repeat(124)), "v".repeat(4096)))
        .collect();
    env.control
        .create_secret(REGION, "/app/big", &env.key, SeedValue::KeyValues(pairs))
        .unwrap();
    let revealed = client
        .get_secret_value(REGION, "/app/big", None)
        .await
        .unwrap();
    assert_eq!(revealed.value.total_len(), MAX_SECRET_VALUE_BYTES);

    // A body just under the reveal cap works; just over it does not.
    env.control.set_faults(Faults {
        pad_value_response_bytes: (MAX_REVEAL_RESPONSE_BYTES - 1024) as u64,
        ..Faults::default()
    });
    let revealed = client
        .get_secret_value(REGION, "/app/production/db", None)
        .await
        .unwrap();
    assert_eq!(revealed.value, SecretValue::String(VALUE.into()));
    env.control.set_faults(Faults {
        pad_value_response_bytes: MAX_REVEAL_RESPONSE_BYTES as u64,
        ..Faults::default()
    });
    let err = client
        .get_secret_value(REGION, "/app/production/db", None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ValueTooLarge", "{err}");
}

#[tokio::test]
async fn concurrent_reveals_are_bounded() {
    let env = start().await;
    let mut config = config(&env.emu, Credentials::BearerToken(FULL.into()));
    config.max_concurrent_reveals = 2;
    let client = Client::new(config).unwrap();
    env.control.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    // Six reveals, two at a time: three rounds of 300 ms.
    let started = Instant::now();
    let reveals = (0..6).map(|_| client.get_secret_value(REGION, "/app/production/db", None));
    for result in futures::future::join_all(reveals).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
    // Other calls are not limited: six at once take one round.
    let started = Instant::now();
    let gets = (0..6).map(|_| client.get_secret(REGION, "/app/production/db", false));
    for result in futures::future::join_all(gets).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(850), "{elapsed:?}");
}

// ---- Server messages (issue 9, item 16) ----

#[tokio::test]
async fn server_messages_never_reach_error_texts() {
    const CANARY: &str = "CANARY-7f3a9 secret=hunter2";
    let env = start().await;
    let client = bearer(&env.emu, FULL);
    #[rustfmt::skip]
    let cases: &[(u16, &str)] = &[
        (400, "InvalidRequest"),
        (409, "Conflict"),
        (500, "Server"),
        (401, "Unauthorized"),
        (403, "KmsFeatureDisabled"),
        (404, "SecretNotFound"),
        (503, "KmsBackendUnavailable"),
    ];
    for &(status, reason) in cases {
        env.control.set_faults(Faults {
            error_rate: 1.0,
            error_status: status,
            error_message: Some(CANARY.into()),
            ..Faults::default()
        });
        let err = client
            .get_secret(REGION, "/app/production/db", false)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "{status}: {err}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains("CANARY") && !text.contains("hunter2"),
                "{status}: {text}"
            );
        }
    }
    // What the texts say instead: the status, in our words.
    env.control.set_faults(Faults {
        error_rate: 1.0,
        error_status: 400,
        error_message: Some(CANARY.into()),
        ..Faults::default()
    });
    let err = client
        .get_secret(REGION, "/app/production/db", false)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Thalassa rejected the request as invalid (status 400)"
    );
}
