//! Shared harness for the operator's cluster tests: a real control plane (testenv), a Thalassa
//! emulator per test, the real operator binary watching one temporary namespace, and the turns
//! the areas of the binary take ([`area_turn`]).

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use thalassa_emulator::{Emulator, EmulatorConfig, SeedValue};
use thalassa_operator::crd::ThalassaSecret;
use tokio::process::{Child, Command};

/// Region every test uses.
pub const REGION: &str = "nl-01";

/// One test's world.
pub struct Harness {
    /// Client for the control plane.
    pub client: Client,
    /// The test's namespace (deleted afterwards).
    pub namespace: testenv::TestNamespace,
    /// The Thalassa emulator.
    pub emulator: Emulator,
    /// Identity of the KMS key created for the test.
    pub key: String,
    /// The running operator, if started.
    pub operator: Option<Operator>,
    /// Scratch directory (token file, operator log).
    pub dir: PathBuf,
    /// `RUST_LOG` of the operators it starts; default `debug` (or `OPERATOR_TEST_RUST_LOG`).
    /// Benchmarks use `info`, as in production, so debug logging does not take the CPU.
    pub operator_log_filter: Option<String>,
    _logs: testenv::LogsOnPanic,
    _operator_logs: OperatorLogsOnPanic,
}

/// A running operator process.
pub struct Operator {
    /// The process (killed on drop).
    pub child: Child,
    /// Its HTTP port (`/healthz`, `/readyz`, `/metrics`).
    pub port: u16,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
    // Declared after `child`: deregistered once the kill on drop has been sent.
    _watched: testenv::WatchedProcess,
}

impl Operator {
    /// GET a path on the operator's HTTP port.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("http://127.0.0.1:{}{path}", self.port)).await
    }

    /// This operator's last-successful-check timestamp of `namespace/name`, if any.
    pub async fn last_check(&self, namespace: &str, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        let prefix = format!(
            "thalassa_operator_last_successful_check_timestamp_seconds{{namespace=\"{namespace}\",name=\"{name}\"}} "
        );
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits until this operator has finished `n` more successful checks of `namespace/name`.
    pub async fn wait_checks(&self, namespace: &str, name: &str, n: usize) {
        for _ in 0..n {
            let before = self.last_check(namespace, name).await.unwrap_or(0.0);
            wait_for(Duration::from_secs(30), "another check", || async move {
                self.last_check(namespace, name)
                    .await
                    .filter(|t| *t > before)
                    .map(|_| ())
            })
            .await;
        }
    }

    /// The operator's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(self) {
        let Operator {
            mut child,
            _watched: watched,
            ..
        } = self;
        let _ = child.start_kill();
        // Deregistered before it is reaped, so the watchdog never holds a PID free for reuse.
        drop(watched);
        let _ = child.wait().await;
    }
}

/// The operator binary, about to be started with [`OperatorCommand::start`]: `KUBECONFIG` set,
/// a free port chosen (pass it as `--metrics-addr` or `METRICS_ADDR`), output appended to a log.
pub struct OperatorCommand {
    command: Command,
    port: u16,
    log: PathBuf,
}

impl OperatorCommand {
    pub fn new(kubeconfig: &Path, log: PathBuf) -> OperatorCommand {
        let mut command = Command::new(env!("CARGO_BIN_EXE_thalassa-secrets-operator"));
        command.env("KUBECONFIG", kubeconfig);
        OperatorCommand {
            command,
            port: free_port(),
            log,
        }
    }

    /// The port for the operator's HTTP server.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> OperatorCommand {
        self.command.env(key, value);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> OperatorCommand {
        self.command.args(args);
        self
    }

    /// Spawns the operator, registers it with testenv's watchdog (so it dies with this test
    /// process even on SIGKILL), and waits up to 60 s for `/readyz`; `what` names the wait.
    pub async fn start(mut self, what: &str) -> Operator {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("operator starts");
        let watched = testenv::ControlPlane::shared()
            .stop_with_this_process(child.id().expect("pid"))
            .expect("operator registered with the testenv watchdog");
        let operator = Operator {
            child,
            port: self.port,
            log: self.log,
            _watched: watched,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while operator
            .get("/readyz")
            .await
            .is_none_or(|(status, _)| status != 200)
        {
            assert!(
                Instant::now() < deadline,
                "timed out after 60s waiting for {what}; operator log ({}):\n{}",
                operator.log.display(),
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        operator
    }
}

struct OperatorLogsOnPanic(PathBuf);

impl Drop for OperatorLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                eprintln!(
                    "---- operator log tail ({}) ----\n{}",
                    path.display(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Starts the control plane (once per binary), installs the CRD, creates a namespace, an emulator
/// with a key, and returns the harness. The operator is started by [`Harness::start_operator`].
pub async fn harness(prefix: &str) -> Harness {
    harness_with(prefix, EmulatorConfig::default()).await
}

/// [`harness`] with an emulator configured by `config` (tokens, federated identities).
pub async fn harness_with(prefix: &str, config: EmulatorConfig) -> Harness {
    thalassa_operator::thalassa::install_crypto_provider();
    let control_plane = testenv::ControlPlane::shared();
    let logs = control_plane.logs_on_panic();
    let client = control_plane.client().await;
    install_crd(&client).await;
    let namespace = control_plane.temp_namespace(prefix).await;
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let key = emulator
        .control()
        .create_key(REGION, "app-key", "aes256-gcm96")
        .expect("key created");
    let dir = std::env::temp_dir().join(format!("tso-{}", namespace.name()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), emulator.token()).unwrap();
    let operator_logs = dir.clone();
    Harness {
        client,
        namespace,
        emulator,
        key,
        operator: None,
        dir,
        operator_log_filter: None,
        _logs: logs,
        _operator_logs: OperatorLogsOnPanic(operator_logs),
    }
}

/// Applies the generated CRD and waits until it is established.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in thalassa_operator::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        wait_for(Duration::from_secs(30), "CRD established", || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

impl Harness {
    /// Namespace name.
    pub fn ns(&self) -> &str {
        self.namespace.name()
    }

    /// Creates a string secret in the emulator.
    pub fn create_string(&self, path: &str, value: &str) {
        self.emulator
            .control()
            .create_secret(REGION, path, &self.key, SeedValue::String(value.into()))
            .expect("secret created");
    }

    /// Creates a key/value secret in the emulator.
    pub fn create_kv(&self, path: &str, pairs: &[(&str, &str)]) {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.emulator
            .control()
            .create_secret(REGION, path, &self.key, SeedValue::KeyValues(map))
            .expect("secret created");
    }

    /// Stores a new string version; returns its number.
    pub fn put_string(&self, path: &str, value: &str) -> u64 {
        self.emulator
            .control()
            .put_secret_value(REGION, path, SeedValue::String(value.into()))
            .expect("version stored")
    }

    /// Reveals (`getSecretValue` calls, any status) the emulator has answered so far.
    pub fn reveals(&self) -> u64 {
        self.emulator
            .control()
            .counters()
            .operations
            .get("getSecretValue")
            .map(|by_status| by_status.values().sum())
            .unwrap_or(0)
    }

    /// Waits until the running operator has finished `n` more successful checks of `name`, so
    /// "nothing happened" is asserted after the operator looked.
    pub async fn wait_checks(&self, name: &str, n: usize) {
        self.operator
            .as_ref()
            .expect("an operator runs")
            .wait_checks(self.ns(), name, n)
            .await;
    }

    /// Starts the operator binary against this namespace and the emulator, and waits until it
    /// is ready.
    pub async fn start_operator(&mut self, extra_args: &[&str]) {
        let operator = self.spawn_operator(extra_args, "operator.log").await;
        self.operator = Some(operator);
    }

    /// Spawns one more operator process (logging to `log_name` in the scratch dir) and waits for
    /// `/readyz`.
    pub async fn spawn_operator(&self, extra_args: &[&str], log_name: &str) -> Operator {
        self.spawn_operator_watching(Some(self.ns()), extra_args, log_name)
            .await
    }

    /// Like [`Harness::spawn_operator`], watching `namespace` (namespaced mode) or, with `None`,
    /// every namespace (cluster mode). The operator namespace is the harness's namespace.
    pub async fn spawn_operator_watching(
        &self,
        namespace: Option<&str>,
        extra_args: &[&str],
        log_name: &str,
    ) -> Operator {
        let operator = OperatorCommand::new(
            testenv::ControlPlane::shared().kubeconfig_path(),
            self.dir.join(log_name),
        );
        let metrics_addr = format!("127.0.0.1:{}", operator.port());
        operator
            .env(
                "RUST_LOG",
                self.operator_log_filter.clone().or_else(|| std::env::var("OPERATOR_TEST_RUST_LOG").ok()).unwrap_or_else(|| {
                    "debug,kube=info,kube_runtime=info,hyper=info,hyper_util=info,tower=info,rustls=info,reqwest=info,h2=info".into()
                }),
            )
            .env("POD_NAME", log_name.trim_end_matches(".log"))
            // An env default, so a test can still pass --default-refresh-interval.
            .env("DEFAULT_REFRESH_INTERVAL", "10s")
            .args([
                "--thalassa-url",
                &self.emulator.base_url(),
                // The stores of the tests use the emulator, on loopback with a random port.
                "--allowed-api-urls",
                &self.emulator.base_url(),
                "--organisation",
                self.emulator.organisation(),
                "--token-file",
                self.dir.join("token").to_str().unwrap(),
                "--region",
                REGION,
                "--operator-namespace",
                self.ns(),
                "--metrics-addr",
                &metrics_addr,
            ])
            .args(
                namespace
                    .map(|ns| vec!["--watch-namespace", ns])
                    .unwrap_or_default(),
            )
            .args(extra_args)
            .start("operator ready")
            .await
    }

    /// Stops the operator (SIGKILL) and waits for it.
    pub async fn stop_operator(&mut self) {
        if let Some(op) = self.operator.take() {
            op.kill().await;
        }
    }

    /// Operator log so far.
    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("operator.log")).unwrap_or_default()
    }

    /// `kubectl` against the test control plane, returning (success, stdout+stderr).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        kubectl(args, stdin).await
    }

    /// The ThalassaSecret API in the namespace.
    pub fn resources(&self) -> Api<ThalassaSecret> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// The Secret API in the namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// Applies a ThalassaSecret from YAML (namespace filled in).
    pub async fn apply_yaml(&self, yaml: &str) -> ThalassaSecret {
        let mut ts: ThalassaSecret = serde_yaml::from_str(yaml).expect("valid YAML");
        ts.metadata.namespace = Some(self.ns().to_string());
        let name = ts.metadata.name.clone().unwrap();
        self.resources()
            .patch(
                &name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&ts),
            )
            .await
            .expect("ThalassaSecret applies")
    }

    /// Applies a ThalassaSecret reading one path into the Secret key `password`, with extra
    /// `spec` lines (YAML, indented by two spaces) such as `refreshInterval: 10s`.
    pub async fn apply_single(
        &self,
        name: &str,
        path: &str,
        extra_spec: &[&str],
    ) -> ThalassaSecret {
        let mut yaml = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n"
        );
        for line in extra_spec {
            yaml.push_str(&format!("  {line}\n"));
        }
        yaml.push_str(&format!(
            "  data:\n    - secretKey: password\n      remoteRef: {{path: {path}}}\n"
        ));
        self.apply_yaml(&yaml).await
    }

    /// Waits until the resource has a condition with this status (and reason, if given).
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> ThalassaSecret {
        let api = self.resources();
        let what = format!("{name}: {type_}={status} reason={reason:?}");
        wait_for(Duration::from_secs(60), &what, || {
            let api = api.clone();
            async move {
                let ts = api.get(name).await.ok()?;
                let ok = ts.status.as_ref()?.conditions.iter().any(|c| {
                    c.type_ == type_
                        && c.status == status
                        && reason.is_none_or(|r| c.reason == r)
                        && c.observed_generation == ts.metadata.generation
                });
                ok.then_some(ts)
            }
        })
        .await
    }

    /// Waits until the Secret exists and `check` accepts its data.
    pub async fn wait_secret(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool,
    ) -> Secret {
        self.wait_secret_in(self.ns(), name, what, check).await
    }

    /// [`Harness::wait_secret`] in another namespace.
    pub async fn wait_secret_in(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool,
    ) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        wait_for(Duration::from_secs(60), what, || {
            let api = api.clone();
            let check = &check;
            async move {
                let secret = api.get_opt(name).await.ok()??;
                let data = secret_data(&secret);
                check(&data).then_some(secret)
            }
        })
        .await
    }
}

/// The resource's condition of `type_` (panics when it has none).
pub fn condition(
    ts: &ThalassaSecret,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    ts.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} has no condition {type_}",
                ts.metadata.name.as_deref().unwrap_or_default()
            )
        })
}

/// Applies a ThalassaSecret named `bad` whose spec is `spec` (a YAML flow mapping, with or
/// without its braces) and asserts that the apiserver refuses it with a message containing
/// `expected`.
pub async fn assert_rejected(namespace: &str, case: &str, spec: &str, expected: &str) {
    let spec_yaml = if spec.starts_with('{') {
        spec.to_string()
    } else {
        format!("{{{spec}}}")
    };
    let yaml = format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: bad, namespace: {namespace}}}\nspec: {spec_yaml}\n"
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&yaml)).await;
    assert!(!ok, "{case}: should be rejected");
    assert!(
        out.contains(expected),
        "{case}: message should mention {expected:?}: {out}"
    );
}

/// Decoded data of a Secret.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Polls `probe` every 250 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP, returning (status, body).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// A numeric setting from the environment (benchmark sizes), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Directory with kubectl, etcd, kube-apiserver, helm.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var(testenv::ENV_BIN_DIR) {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/build-tools.sh");
        let out = std::process::Command::new(script)
            .output()
            .expect("tools/build-tools.sh runs");
        assert!(
            out.status.success(),
            "tools/build-tools.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .lines()
                .last()
                .unwrap(),
        )
    })
}

/// Runs kubectl against the shared control plane.
pub async fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    kubectl_with(
        testenv::ControlPlane::shared().kubeconfig_path(),
        args,
        stdin,
    )
    .await
}

/// Runs kubectl with this kubeconfig, returning (success, stdout+stderr).
pub async fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(bin_dir().join("kubectl"))
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs helm in the repository root (with its own cache/config dirs and the test control
/// plane's kubeconfig), returning (success, stdout, stderr).
pub async fn helm(args: &[&str]) -> (bool, String, String) {
    let home = std::env::temp_dir().join(format!("tso-helm-home-{}", std::process::id()));
    let out = Command::new(bin_dir().join("helm"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env(
            "KUBECONFIG",
            testenv::ControlPlane::shared().kubeconfig_path(),
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("helm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A kubeconfig (`dir/kubeconfig-sa`) that impersonates a ServiceAccount, for processes that
/// cannot take `--as` (the operator) and for acting as a namespace user.
pub fn impersonating_kubeconfig(dir: &Path, namespace: &str, service_account: &str) -> PathBuf {
    use serde_yaml::Value;
    let admin = std::fs::read_to_string(testenv::ControlPlane::shared().kubeconfig_path()).unwrap();
    let mut config: Value = serde_yaml::from_str(&admin).unwrap();
    let user = &mut config["users"][0]["user"];
    user["as"] = Value::from(format!(
        "system:serviceaccount:{namespace}:{service_account}"
    ));
    user["as-groups"] = Value::Sequence(vec![
        Value::from("system:serviceaccounts"),
        Value::from(format!("system:serviceaccounts:{namespace}")),
        Value::from("system:authenticated"),
    ]);
    let path = dir.join("kubeconfig-sa");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// The objects of a multi-document YAML stream (empty documents skipped).
pub fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Waits until the store's condition `type_` has `status` at the current generation; returns
/// its message.
pub async fn wait_store_condition(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
) -> String {
    let stores: kube::Api<thalassa_operator::store::ThalassaSecretStore> =
        kube::Api::namespaced(client.clone(), namespace);
    wait_for(
        Duration::from_secs(60),
        &format!("store {name}: {type_}={status}"),
        || async {
            let store = stores.get(name).await.ok()?;
            let c = store
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == type_ && c.status == status)?;
            (c.observed_generation == store.metadata.generation).then_some(c.message)
        },
    )
    .await
}

/// `kubectl apply --server-side --validate=strict` of one YAML document into `namespace`; the
/// apiserver's message on refusal.
pub async fn kubectl_apply(namespace: &str, yaml: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    let (ok, out) = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=tests",
            "--validate=strict",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        Some(&serde_json::to_string(&value).unwrap()),
    )
    .await;
    if ok { Ok(()) } else { Err(out) }
}

/// Creates a one-replica Deployment `name` in the harness's namespace with these annotations.
pub async fn create_deployment(h: &Harness, name: &str, annotations: serde_json::Value) {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(h.client.clone(), h.ns())
        .create(&kube::api::PostParams::default(), &deployment)
        .await
        .expect("Deployment created");
}

/// A Deployment's generation (one more per restart) and its pod template's restartedFor.
pub async fn deployment_state(h: &Harness, name: &str) -> (i64, Option<String>) {
    use k8s_openapi::api::apps::v1::Deployment;
    let d = Api::<Deployment>::namespaced(h.client.clone(), h.ns())
        .get(name)
        .await
        .unwrap();
    let annotation = d
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| {
            a.get(thalassa_operator::crd::RESTARTED_FOR_ANNOTATION)
                .cloned()
        });
    (d.metadata.generation.unwrap(), annotation)
}

/// Areas of the cluster binary take turns: while a test of one area runs, tests of that area may
/// start beside it, but a test of another area waits until the area's last test has finished.
/// This keeps what held when each area was a binary of its own (cargo runs binaries one after
/// another): some areas run the operator in cluster mode, where it acts on every namespace's
/// resources, install cluster-wide objects, or measure the operator under a load they create.
pub struct AreaTurn;

/// Which area holds the turn, and how many of its tests are running.
struct Turns {
    area: Option<&'static str>,
    running: usize,
}

static TURNS: std::sync::Mutex<Turns> = std::sync::Mutex::new(Turns {
    area: None,
    running: 0,
});
static TURN_ENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn turns() -> std::sync::MutexGuard<'static, Turns> {
    TURNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits for the turn of the area of `module_path` (its first module below the crate: call with
/// `module_path!()`); held until dropped, for the whole test.
pub async fn area_turn(module_path: &'static str) -> AreaTurn {
    let area = module_path.split("::").nth(1).unwrap_or(module_path);
    loop {
        // Registered before looking, so an end of turn between the look and the wait is not lost.
        let ended = TURN_ENDED.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        {
            let mut turns = turns();
            if turns.area.is_none_or(|held| held == area) {
                turns.area = Some(area);
                turns.running += 1;
                return AreaTurn;
            }
        }
        ended.await;
    }
}

impl Drop for AreaTurn {
    fn drop(&mut self) {
        let mut turns = turns();
        turns.running -= 1;
        if turns.running == 0 {
            turns.area = None;
            drop(turns);
            TURN_ENDED.notify_waiters();
        }
    }
}
