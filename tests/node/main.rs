//! The operator run the way users run it: its image (`tools/build-image.sh`) imported into a real
//! kubelet node (`testenv` with [`testenv::StartOptions::node`]: containerd, runc, CNI), installed
//! with `helm install` or `kubectl apply -k config/default`, started by the kubelet with the
//! chart's probes, security context and projected ServiceAccount token, and syncing the samples
//! from an emulator that pods reach on the node's host address.
//!
//! The node needs root and the packages of `tools/node-packages.sh`. Where they are missing every
//! test here prints `SKIPPED <test>: <reason>` and passes; where they are there, a node that does
//! not start fails the tests. The tests share one node and take turns.

#[path = "../support/samples.rs"]
mod samples;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Pod, Secret},
};
use kube::{Api, api::ListParams};
use thalassa_emulator::{
    Access, Emulator, EmulatorConfig, FederatedIdentitySpec, JwksSource, Seed, SeedValue,
};
use thalassa_operator::{crd::ThalassaSecret, store::DEFAULT_AUDIENCE};
use tokio::process::Command;

const CHART: &str = "charts/thalassa-secrets-operator";
/// The Thalassa service account the operator's own connection acts as (workload identity).
const OPERATOR_THALASSA_ACCOUNT: &str = "sa-operator";
/// The chart's `leaderElection.leaseDuration`.
const LEASE_DURATION: Duration = Duration::from_secs(15);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane with a node, started once for this binary; `None` (after printing why)
/// where this machine cannot run a node.
fn node_cluster(test: &str) -> Option<&'static testenv::ControlPlane> {
    static CLUSTER: OnceLock<Result<testenv::ControlPlane, String>> = OnceLock::new();
    if let Some(reason) = testenv::node_missing_prerequisites() {
        eprintln!("!!!!! SKIPPED {test}: no kubelet node on this machine: {reason} !!!!!");
        return None;
    }
    let cluster = CLUSTER.get_or_init(|| {
        let started = Instant::now();
        let cluster = testenv::ControlPlane::start(testenv::StartOptions {
            crds: vec![root().join("crds")],
            node: true,
            ..testenv::StartOptions::default()
        })
        .map_err(|error| format!("{error:#}"))?;
        let node = cluster.node().expect("started with a node");
        node.import_image(&image_archive())
            .map_err(|error| format!("{error:#}"))?;
        eprintln!(
            "node tests: control plane and node {} ready, image imported, in {:.1}s",
            node.name,
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    });
    match cluster {
        Ok(cluster) => Some(cluster),
        Err(reason) => panic!("the node's prerequisites are met, yet it did not start: {reason}"),
    }
}

/// The tests share the node and cluster-wide objects (CRDs, the kustomize base's namespace):
/// one at a time.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The image archive: `OPERATOR_IMAGE_ARCHIVE` (set by `tools/test-all.sh`), else built now.
fn image_archive() -> PathBuf {
    if let Some(archive) = std::env::var_os("OPERATOR_IMAGE_ARCHIVE").filter(|a| !a.is_empty()) {
        return PathBuf::from(archive);
    }
    let output = std::process::Command::new(root().join("tools/build-image.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("tools/build-image.sh runs");
    assert!(output.status.success(), "tools/build-image.sh failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    PathBuf::from(stdout.trim().lines().last().expect("an archive path"))
}

/// `localhost/thalassa-secrets-operator` and the crate version: what `tools/build-image.sh`
/// names the image.
fn image() -> (&'static str, &'static str) {
    (
        "localhost/thalassa-secrets-operator",
        env!("CARGO_PKG_VERSION"),
    )
}

/// Directory with kubectl and helm.
fn bin_dir() -> PathBuf {
    match std::env::var_os(testenv::ENV_BIN_DIR) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let output = std::process::Command::new(root().join("tools/build-tools.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("tools/build-tools.sh runs");
            PathBuf::from(
                String::from_utf8(output.stdout)
                    .unwrap()
                    .trim()
                    .lines()
                    .last()
                    .unwrap(),
            )
        }
    }
}

/// Runs a tool of the bin dir against the node's cluster: (success, stdout, stderr).
async fn tool(
    cluster: &testenv::ControlPlane,
    name: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let home = std::env::temp_dir().join(format!("tso-node-helm-{}", std::process::id()));
    let mut child = Command::new(bin_dir().join(name))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(root())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tool runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `probe` every 250 ms until it returns `Some`, or panics after `timeout`.
async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The emulator, seeded like the samples, listening where pods reach it (the node's host
/// address), trusting the cluster's ServiceAccount tokens for `subject` as
/// [`OPERATOR_THALASSA_ACCOUNT`].
async fn emulator_for_pods(cluster: &testenv::ControlPlane, subject: String) -> Emulator {
    let node = cluster.node().unwrap();
    let seed: Seed = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("config/samples/emulator-seed.yaml")).unwrap(),
    )
    .unwrap();
    let jwks = cluster
        .service_account_jwks()
        .await
        .expect("apiserver JWKS");
    Emulator::start(EmulatorConfig {
        listen: SocketAddr::new(node.host_ip.into(), 0),
        seed: Some(seed),
        federated_identities: vec![FederatedIdentitySpec {
            service_account_id: OPERATOR_THALASSA_ACCOUNT.into(),
            issuer: cluster.service_account_issuer().into(),
            audiences: vec![DEFAULT_AUDIENCE.into()],
            subject,
            jwks: JwksSource::Inline(jwks.to_string()),
            access: Access::read_only(),
        }],
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// One `helm install` of the chart on the node, watching its own apps namespace.
struct ChartOnNode {
    cluster: &'static testenv::ControlPlane,
    client: kube::Client,
    release: testenv::TestNamespace,
    apps: testenv::TestNamespace,
    name: String,
    fullname: String,
    emulator: Emulator,
}

impl ChartOnNode {
    /// Creates the namespaces and the emulator, then `helm install --wait` with the local image
    /// and workload identity; returns the world and how long the install took to be Ready.
    async fn install(cluster: &'static testenv::ControlPlane) -> (ChartOnNode, Duration) {
        let client = cluster.client().await;
        let release = cluster.temp_namespace("node-rel").await;
        let apps = cluster.temp_namespace("node-apps").await;
        let name = format!("tso-{}", &apps.name()[apps.name().len() - 6..]);
        let fullname = format!("{name}-thalassa-secrets-operator");
        let emulator = emulator_for_pods(
            cluster,
            format!("system:serviceaccount:{}:{fullname}", release.name()),
        )
        .await;
        let world = ChartOnNode {
            cluster,
            client,
            release,
            apps,
            name,
            fullname,
            emulator,
        };
        let started = Instant::now();
        let values = world.values(&[]);
        let mut args = vec![
            "install",
            &world.name,
            CHART,
            "--namespace",
            world.release.name(),
        ];
        args.extend(values.iter().map(String::as_str));
        args.extend(["--wait", "--timeout", "180s"]);
        let (ok, out, err) = tool(cluster, "helm", &args, None).await;
        let took = started.elapsed();
        assert!(
            ok,
            "helm install failed:\n{out}\n{err}\n{}",
            world.diagnostics().await
        );
        (world, took)
    }

    /// `--set` arguments: the local image, the emulator as the Thalassa API, workload identity,
    /// the apps namespace; then `extra`.
    fn values(&self, extra: &[&str]) -> Vec<String> {
        let url = self.emulator.base_url();
        let (repository, tag) = image();
        let mut sets = vec![
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".into(),
            format!("thalassa.apiUrl={url}"),
            format!("stores.allowedApiUrls[0]={url}"),
            format!("thalassa.organisation={}", self.emulator.organisation()),
            "workloadIdentity.enabled=true".into(),
            format!("workloadIdentity.serviceAccountId={OPERATOR_THALASSA_ACCOUNT}"),
            format!("watchNamespace={}", self.apps.name()),
            "defaultRefreshInterval=10s".into(),
        ];
        sets.extend(extra.iter().map(|set| (*set).to_string()));
        sets.into_iter()
            .flat_map(|set| ["--set".to_string(), set])
            .collect()
    }

    /// `helm upgrade --wait` with the install's values plus `extra`; returns how long it took.
    async fn upgrade(&self, extra: &[&str]) -> Duration {
        let started = Instant::now();
        let values = self.values(extra);
        let mut args = vec![
            "upgrade",
            &self.name,
            CHART,
            "--namespace",
            self.release.name(),
        ];
        args.extend(values.iter().map(String::as_str));
        args.extend(["--wait", "--timeout", "180s"]);
        let (ok, out, err) = tool(self.cluster, "helm", &args, None).await;
        assert!(
            ok,
            "helm upgrade failed:\n{out}\n{err}\n{}",
            self.diagnostics().await
        );
        started.elapsed()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.release.name())
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), self.apps.name())
    }

    /// The operator's pods that are not being deleted, by name.
    async fn running_pods(&self) -> Vec<Pod> {
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        self.pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Pod states, the operator's logs and the ThalassaSecrets, for a failure message.
    async fn diagnostics(&self) -> String {
        let ns = self.release.name();
        let (_, pods, _) = tool(
            self.cluster,
            "kubectl",
            &["get", "pods", "-n", ns, "-o", "wide"],
            None,
        )
        .await;
        let (_, events, _) =
            tool(self.cluster, "kubectl", &["get", "events", "-n", ns], None).await;
        let (_, logs, _) = tool(
            self.cluster,
            "kubectl",
            &[
                "logs",
                "-n",
                ns,
                "-l",
                &format!("app.kubernetes.io/instance={}", self.name),
                "--tail=60",
            ],
            None,
        )
        .await;
        let (_, resources, _) = tool(
            self.cluster,
            "kubectl",
            &[
                "get",
                "thalassasecrets",
                "-n",
                self.apps.name(),
                "-o",
                "wide",
            ],
            None,
        )
        .await;
        format!(
            "pods:\n{pods}\nevents:\n{events}\noperator logs:\n{logs}\nThalassaSecrets:\n{resources}"
        )
    }

    /// `kubectl apply -k config/samples` into the apps namespace, then every ThalassaSecret Ready.
    async fn apply_the_samples_and_wait_until_ready(&self) {
        let (ok, samples, err) = tool(
            self.cluster,
            "kubectl",
            &["kustomize", "config/samples"],
            None,
        )
        .await;
        assert!(ok, "{err}");
        let apps = self.apps.name();
        let (ok, out, err) = tool(
            self.cluster,
            "kubectl",
            &["apply", "-n", apps, "-f", "-"],
            Some(&samples),
        )
        .await;
        assert!(ok, "applying the samples: {out}{err}");
        let (ok, out, err) = tool(
            self.cluster,
            "kubectl",
            &[
                "wait",
                "--for=condition=Ready",
                "thalassasecret",
                "--all",
                "-n",
                apps,
                "--timeout=120s",
            ],
            None,
        )
        .await;
        assert!(
            ok,
            "samples not Ready: {out}{err}\n{}",
            self.diagnostics().await
        );
    }

    /// Every Secret of the apps namespace: its resourceVersion, and (to explain a difference)
    /// its annotations and data keys, never values.
    async fn secret_versions(&self) -> BTreeMap<String, SecretVersion> {
        self.secrets()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|secret| {
                let keys = secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(key, _)| key.clone())
                    .collect();
                Some((
                    secret.metadata.name?,
                    SecretVersion {
                        resource_version: secret.metadata.resource_version?,
                        annotations: secret.metadata.annotations.unwrap_or_default(),
                        keys,
                    },
                ))
            })
            .collect()
    }

    /// Waits until the operator in `pod` has checked every sample after `since` (its
    /// `last_successful_check_timestamp_seconds` metric, read from the pod's port).
    async fn wait_checked_after(&self, pod: &Pod, since: f64) {
        let ip = pod
            .status
            .as_ref()
            .and_then(|status| status.pod_ip.clone())
            .expect("a pod IP");
        let resources: Api<ThalassaSecret> = Api::namespaced(self.client.clone(), self.apps.name());
        let names: Vec<String> = resources
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|resource| resource.metadata.name)
            .collect();
        let url = format!("http://{ip}:8080/metrics");
        let apps = self.apps.name().to_string();
        wait_for(Duration::from_secs(90), "the operator to check every sample again", || {
            let (url, names, apps) = (url.clone(), names.clone(), apps.clone());
            async move {
                let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
                names
                    .iter()
                    .all(|name| {
                        let prefix = format!(
                            "thalassa_operator_last_successful_check_timestamp_seconds{{namespace=\"{apps}\",name=\"{name}\"}} "
                        );
                        body.lines()
                            .find_map(|line| line.strip_prefix(&prefix))
                            .and_then(|value| value.trim().parse::<f64>().ok())
                            .is_some_and(|at| at > since)
                    })
                    .then_some(())
            }
        })
        .await;
    }

    /// The holder of the release's leader-election Lease.
    async fn lease_holder(
        &self,
    ) -> Option<(
        String,
        Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
    )> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), self.release.name());
        let lease = leases
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()?;
        let spec = lease.spec?;
        Some((spec.holder_identity?, spec.acquire_time))
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Secret's resourceVersion, with its annotations and data keys (no values) to explain a
/// change.
#[derive(Debug, PartialEq, Eq)]
struct SecretVersion {
    resource_version: String,
    annotations: BTreeMap<String, String>,
    keys: Vec<String>,
}

/// Asserts that no Secret's resourceVersion changed, naming the changed ones with both states.
fn assert_no_secret_rewritten(
    before: &BTreeMap<String, SecretVersion>,
    after: &BTreeMap<String, SecretVersion>,
    by: &str,
) {
    let changed: Vec<String> = before
        .iter()
        .filter(|(name, version)| {
            after.get(*name).map(|v| &v.resource_version) != Some(&version.resource_version)
        })
        .map(|(name, version)| {
            format!(
                "{name}:\n  before {version:?}\n  after  {:?}",
                after.get(name)
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "Secrets rewritten by {by}:\n{}",
        changed.join("\n")
    );
    assert_eq!(before.len(), after.len(), "the same Secrets after {by}");
}

/// The operator's container process on the node, read from the host: `/proc/<pid>/…`.
async fn container_process(cluster: &testenv::ControlPlane, pod: &Pod) -> PathBuf {
    let container_id = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.first())
        .and_then(|status| status.container_id.clone())
        .expect("a running container");
    let container_id = container_id.trim_start_matches("containerd://");
    let node = cluster.node().unwrap();
    let output = Command::new("ctr")
        .arg("--address")
        .arg(&node.containerd_socket)
        .args(["--namespace", "k8s.io", "tasks", "ls"])
        .output()
        .await
        .unwrap();
    let tasks = String::from_utf8_lossy(&output.stdout);
    let pid = tasks
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(container_id)).then(|| fields.next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("task {container_id} not in:\n{tasks}"));
    PathBuf::from(format!("/proc/{pid}"))
}

/// The `/proc/<pid>/status` field `name`, trimmed.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc status"))
        .trim()
        .to_string()
}

/// The claims of a JWT (payload only; the signature is the emulator's business).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn helm_install_on_a_node_runs_the_image_confined_syncs_and_survives_upgrade_failover_and_uninstall()
 {
    let Some(cluster) = node_cluster(
        "helm_install_on_a_node_runs_the_image_confined_syncs_and_survives_upgrade_failover_and_uninstall",
    ) else {
        return;
    };
    let _turn = turn().await;
    let _logs = cluster.logs_on_panic();

    // Install: Ready means the kubelet's readiness probe passed (helm --wait).
    let (world, install_took) = ChartOnNode::install(cluster).await;
    eprintln!(
        "node: helm install → Deployment Ready in {:.1}s",
        install_took.as_secs_f64()
    );
    let pods = world.running_pods().await;
    assert_eq!(pods.len(), 1, "one operator pod");
    let pod = &pods[0];

    // Confined as the chart says, read from the process itself.
    let process = container_process(cluster, pod).await;
    let status = std::fs::read_to_string(process.join("status")).unwrap();
    assert_eq!(
        status_field(&status, "Uid"),
        "65532\t65532\t65532\t65532",
        "runs as 65532"
    );
    assert_eq!(
        status_field(&status, "Gid"),
        "65532\t65532\t65532\t65532",
        "group 65532"
    );
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(
        status_field(&status, "Seccomp"),
        "2",
        "seccomp filter (RuntimeDefault)"
    );
    assert_eq!(
        status_field(&status, "CapEff"),
        "0000000000000000",
        "no capabilities"
    );
    let mounts = std::fs::read_to_string(process.join("mountinfo")).unwrap();
    let root_mount = mounts
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    assert!(
        root_mount
            .split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|option| option == "ro"),
        "read-only root filesystem: {root_mount}"
    );

    // Its own connection: workload identity through the kubelet-projected token file.
    let environ = std::fs::read(process.join("environ")).unwrap();
    let token_file = environ
        .split(|byte| *byte == 0)
        .find_map(|entry| entry.strip_prefix(b"THALASSA_SUBJECT_TOKEN_FILE="))
        .map(|path| String::from_utf8_lossy(path).into_owned())
        .expect("THALASSA_SUBJECT_TOKEN_FILE in the container's environment");
    let token = std::fs::read_to_string(
        process
            .join("root")
            .join(token_file.trim_start_matches('/')),
    )
    .expect("the projected token file exists in the container");
    let claims = jwt_claims(token.trim());
    assert_eq!(
        claims["sub"],
        format!(
            "system:serviceaccount:{}:{}",
            world.release.name(),
            world.fullname
        )
    );
    assert_eq!(claims["aud"], serde_json::json!([DEFAULT_AUDIENCE]));
    assert_eq!(claims["iss"], cluster.service_account_issuer());

    // The samples sync, the templated ones rendered by the sandbox child inside the pod.
    world.apply_the_samples_and_wait_until_ready().await;
    samples::every_sample_secret_holds_its_data(&world.secrets()).await;
    samples::the_typed_template_samples_have_their_types(&world.secrets()).await;

    // Thalassa revokes the exchanged token: the operator exchanges the projected token again
    // and a new version still arrives.
    let revoked = world
        .emulator
        .control()
        .revoke_issued_tokens("token-exchange:");
    assert!(revoked >= 1, "the operator's exchanged token was live");
    world
        .emulator
        .control()
        .put_secret_value(
            "nl-01",
            "/app/production/db/password",
            SeedValue::String("rotated-after-revocation".into()),
        )
        .expect("a new version");
    let secrets = world.secrets();
    wait_for(
        Duration::from_secs(60),
        "the new version after the token revocation",
        || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get("db-password").await.ok()?;
                (samples::secret_data(&secret)
                    .get("password")
                    .map(Vec::as_slice)
                    == Some(b"rotated-after-revocation".as_slice()))
                .then_some(())
            }
        },
    )
    .await;

    // A changed value rolls the Deployment; the new pod rewrites no Secret.
    let before = world.secret_versions().await;
    let upgrade_started = unix_now();
    let upgrade_took = world.upgrade(&["podAnnotations.rolled=\"1\""]).await;
    let pods = world.running_pods().await;
    assert_eq!(pods.len(), 1);
    assert_ne!(
        pods[0].metadata.name, pod.metadata.name,
        "the Deployment rolled"
    );
    world.wait_checked_after(&pods[0], upgrade_started).await;
    assert_no_secret_rewritten(&before, &world.secret_versions().await, "the upgrade");
    eprintln!(
        "node: helm upgrade (rolling) → Ready in {:.1}s",
        upgrade_took.as_secs_f64()
    );

    // Two replicas: one leader; deleting its pod hands the Lease to the other within the lease
    // duration, and the new leader rewrites no Secret.
    world
        .upgrade(&[
            "podAnnotations.rolled=\"1\"",
            "replicaCount=2",
            "leaderElection.enabled=true",
        ])
        .await;
    let pods = wait_for(
        Duration::from_secs(120),
        "two operator pods, one holding the Lease",
        || async {
            let pods = world.running_pods().await;
            let (holder, _) = world.lease_holder().await?;
            (pods.len() == 2
                && pods
                    .iter()
                    .any(|pod| pod.metadata.name.as_deref() == Some(holder.as_str())))
            .then_some(pods)
        },
    )
    .await;
    let (leader, _) = world.lease_holder().await.unwrap();
    let standing = pods
        .iter()
        .find_map(|pod| pod.metadata.name.clone().filter(|name| *name != leader))
        .expect("a standing replica");
    let before = world.secret_versions().await;
    let deleted_at = Instant::now();
    let failover_started = unix_now();
    world
        .pods()
        .delete(&leader, &Default::default())
        .await
        .unwrap();
    // The standing replica, or the Deployment's replacement pod if it starts first: either is a
    // live replica of this release other than the deleted leader.
    let new_leader = wait_for(
        LEASE_DURATION * 3,
        "another replica to take the Lease",
        || async {
            let (holder, _) = world.lease_holder().await?;
            let pods = world.running_pods().await;
            pods.into_iter().find(|pod| {
                holder != leader && pod.metadata.name.as_deref() == Some(holder.as_str())
            })
        },
    )
    .await;
    let failover = deleted_at.elapsed();
    let new_leader_name = new_leader.metadata.name.clone().unwrap();
    eprintln!(
        "node: failover (leader pod deleted → Lease held by {}) in {:.1}s",
        if new_leader_name == standing {
            "the standing replica"
        } else {
            "the replacement pod"
        },
        failover.as_secs_f64()
    );
    assert!(
        failover <= LEASE_DURATION,
        "took over in {failover:?}, lease duration {LEASE_DURATION:?}"
    );
    // Its metrics are served once its pod IP is known (a replacement may still be starting).
    let new_leader = wait_for(
        Duration::from_secs(60),
        "the new leader's pod IP",
        || async {
            world.pods().get(&new_leader_name).await.ok().filter(|pod| {
                pod.status
                    .as_ref()
                    .is_some_and(|status| status.pod_ip.is_some())
            })
        },
    )
    .await;
    world
        .wait_checked_after(&new_leader, failover_started)
        .await;
    assert_no_secret_rewritten(&before, &world.secret_versions().await, "the failover");

    // Uninstall keeps the CRD, the ThalassaSecrets and their Secrets.
    let (ok, out, err) = tool(
        cluster,
        "helm",
        &[
            "uninstall",
            &world.name,
            "--namespace",
            world.release.name(),
            "--wait",
        ],
        None,
    )
    .await;
    assert!(ok, "helm uninstall: {out}{err}");
    let deployments: Api<Deployment> = Api::namespaced(world.client.clone(), world.release.name());
    assert!(
        deployments
            .get_opt(&world.fullname)
            .await
            .unwrap()
            .is_none(),
        "Deployment removed"
    );
    let resources: Api<ThalassaSecret> = Api::namespaced(world.client.clone(), world.apps.name());
    assert_eq!(
        resources
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        10,
        "the ten samples stay"
    );
    for (name, _) in samples::SAMPLE_SECRETS {
        assert!(
            world.secrets().get_opt(name).await.unwrap().is_some(),
            "Secret {name} kept"
        );
    }
}

#[tokio::test]
async fn kustomize_default_runs_the_same_image_on_a_node_and_syncs() {
    let Some(cluster) = node_cluster("kustomize_default_runs_the_same_image_on_a_node_and_syncs")
    else {
        return;
    };
    let _turn = turn().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await;
    let apps = cluster.temp_namespace("node-kustomize").await;
    // config/default installs into thalassa-system with the ServiceAccount
    // thalassa-secrets-operator; the operator's own connection uses a token file here.
    let emulator =
        emulator_for_pods(cluster, "system:serviceaccount:thalassa-system:none".into()).await;
    let (ok, base, err) = tool(cluster, "kubectl", &["kustomize", "config/default"], None).await;
    assert!(ok, "{err}");
    let (repository, tag) = image();
    let manifests = base
        .replace(
            "image: ghcr.io/thalassa-cloud/thalassa-secrets-operator:0.1.0",
            &format!("image: {repository}:{tag}"),
        )
        .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never");
    assert!(
        manifests.contains(&format!("image: {repository}:{tag}")),
        "the base names the released image"
    );
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &["apply", "--server-side", "-f", "-"],
        Some(&manifests),
    )
    .await;
    assert!(ok, "kubectl apply -k config/default: {out}{err}");
    let system = "thalassa-system";
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &[
            "create",
            "secret",
            "generic",
            "thalassa-credentials",
            "-n",
            system,
            &format!("--from-literal=token={}", emulator.token()),
        ],
        None,
    )
    .await;
    assert!(ok, "{out}{err}");
    let url = emulator.base_url();
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &[
            "set",
            "env",
            "deployment/thalassa-secrets-operator",
            "-n",
            system,
            &format!("THALASSA_API_URL={url}"),
            &format!("ALLOWED_API_URLS={url}"),
            &format!("THALASSA_ORGANISATION_ID={}", emulator.organisation()),
            &format!("DEFAULT_CONNECTION_NAMESPACES={}", apps.name()),
        ],
        None,
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &[
            "rollout",
            "status",
            "deployment/thalassa-secrets-operator",
            "-n",
            system,
            "--timeout=180s",
        ],
        None,
    )
    .await;
    let (_, logs, _) = tool(
        cluster,
        "kubectl",
        &[
            "logs",
            "-n",
            system,
            "deployment/thalassa-secrets-operator",
            "--tail=40",
        ],
        None,
    )
    .await;
    assert!(
        ok,
        "the kustomize Deployment did not become available: {out}{err}\n{logs}"
    );

    let (ok, samples_yaml, err) =
        tool(cluster, "kubectl", &["kustomize", "config/samples"], None).await;
    assert!(ok, "{err}");
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &["apply", "-n", apps.name(), "-f", "-"],
        Some(&samples_yaml),
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &[
            "wait",
            "--for=condition=Ready",
            "thalassasecret",
            "--all",
            "-n",
            apps.name(),
            "--timeout=120s",
        ],
        None,
    )
    .await;
    let (_, logs, _) = tool(
        cluster,
        "kubectl",
        &[
            "logs",
            "-n",
            system,
            "deployment/thalassa-secrets-operator",
            "--tail=40",
        ],
        None,
    )
    .await;
    assert!(
        ok,
        "samples not Ready under the kustomize install: {out}{err}\n{logs}"
    );
    samples::every_sample_secret_holds_its_data(&Api::namespaced(client.clone(), apps.name()))
        .await;

    // Remove what the base created that outlives this test (cluster-scoped objects and the
    // namespace), keeping the CRDs other tests use.
    let without_crds: String = manifests
        .split("\n---\n")
        .filter(|document| !document.contains("kind: CustomResourceDefinition"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let (ok, out, err) = tool(
        cluster,
        "kubectl",
        &["delete", "--wait=true", "-f", "-"],
        Some(&without_crds),
    )
    .await;
    assert!(ok, "deleting the kustomize install: {out}{err}");
    drop(emulator);
}
