//! A real, local Kubernetes control plane for integration tests: etcd, kube-apiserver and
//! kube-controller-manager (garbage collector, namespace, service-account and cluster-role
//! aggregation controllers) run as plain processes on loopback. No Docker, no mocks: admission
//! (CEL), RBAC (with the built-in admin/edit/view roles aggregated), server-side apply, status
//! subresources, watches and ownerReference garbage collection behave exactly as in a cluster.
//! With `StartOptions::node` a kubelet node joins (containerd, runc and the CNI bridge in a network
//! namespace of its own; see `node.rs`), with the scheduler and the controllers Deployments need.
//!
//! ```no_run
//! # async fn example() {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//!
//! let control_plane = testenv::ControlPlane::shared();
//! let namespace = control_plane.temp_namespace("my-test").await;
//! let client = control_plane.client().await;
//! let config_maps: Api<ConfigMap> = Api::namespaced(client, namespace.name());
//! # }
//! ```
//!
//! See `docs/testing.md` for how the binaries are built and the environment variables.
#![forbid(unsafe_code)]

mod logs;
mod namespace;
mod node;
mod pki;
mod process;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

pub use logs::{DEFAULT_TAIL_LINES, LogsOnPanic};
pub use namespace::{TEST_NAMESPACE_LABEL, TestNamespace};
pub use node::{NodeInfo, missing_prerequisites as node_missing_prerequisites};

use pki::Pki;
use process::{
    Component, KEEP_MARKER, STOPPED_MARKER, deregister_pid, pid_alive, register_pid,
    spawn_watchdog, touch_marker,
};

/// Kubernetes version the binaries are built at (`tools/build-tools.sh`); `/version` reports it.
pub const KUBERNETES_VERSION: &str = "v1.36.3";

/// Env var: directory of a control plane already started by `testenv up --dir D`.
/// [`ControlPlane::shared`] attaches to it instead of starting its own.
pub const ENV_DIR: &str = "TESTENV_DIR";
/// Env var: directory holding `etcd`, `kube-apiserver`, `kube-controller-manager`.
/// Without it, `tools/build-tools.sh` is run (builds on first use, then prints the cached dir).
pub const ENV_BIN_DIR: &str = "TESTENV_BIN_DIR";
/// Env var: CRD manifests (files or directories of `*.yaml`, `:`-separated) that a control
/// plane started by [`ControlPlane::shared`] installs before kube-controller-manager starts.
pub const ENV_CRDS: &str = "TESTENV_CRDS";
/// Env var: when `1`, the run directory (logs, etcd data, certificates) is kept after the run.
pub const ENV_KEEP: &str = "TESTENV_KEEP";

/// Name of the state file written into the run directory once the control plane is ready.
const STATE_FILE: &str = "controlplane.json";
/// Readiness deadline per component; generous because 2-core CI machines run several
/// compilations next to the tests.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start a control plane with [`ControlPlane::start`]. `Default` suits tests.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Directory with the binaries; default: [`ENV_BIN_DIR`], else `tools/build-tools.sh`.
    pub bin_dir: Option<PathBuf>,
    /// Run directory; default: a fresh `$TMPDIR/testenv-<pid>-<random>`. Must not hold another
    /// control plane's state.
    pub dir: Option<PathBuf>,
    /// Keep the run directory after stopping (also forced by [`ENV_KEEP`]` = 1` and by a failing
    /// test's [`LogsOnPanic`]).
    pub keep_dir: bool,
    /// Readiness deadline for each component; default 120 s.
    pub startup_timeout: Option<Duration>,
    /// CRD manifests (YAML files, possibly multi-document, or directories of `*.yaml`) to
    /// install and wait for before kube-controller-manager starts. Why: the garbage collector
    /// only learns about kinds created later on its 30 s discovery resync, so ownerReference
    /// cleanup of pre-installed kinds is immediate (measured ~0.1 s vs ~30–45 s).
    pub crds: Vec<PathBuf>,
    /// Also run a kubelet node (see the `node` module): the apiserver then listens on the
    /// node-facing host address instead of loopback, pods get ServiceAccount tokens, and
    /// kube-scheduler plus the controllers a Deployment needs run. Needs root and the Debian
    /// packages `tools/node-packages.sh` installs ([`node_missing_prerequisites`] tells).
    pub node: bool,
}

/// What `controlplane.json` in the run directory records; read back by [`ControlPlane::attach`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    api_url: String,
    kubeconfig: PathBuf,
    service_account_issuer: String,
    kubernetes_version: String,
    components: Vec<ComponentPid>,
    startup_millis: u64,
    #[serde(default)]
    node: Option<NodeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ComponentPid {
    name: String,
    pid: u32,
}

/// A running control plane: either started (and owned) by this process, or attached to one
/// that `testenv up` started. Holds only paths and process handles, never a `kube::Client`,
/// because a client is bound to the tokio runtime it was created on and every `#[tokio::test]`
/// has its own runtime; [`ControlPlane::client`] builds a fresh one per call instead.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    log_dir: PathBuf,
    state: State,
    /// `None` when attached: then the processes belong to someone else.
    owned: Option<Mutex<Owned>>,
}

#[derive(Debug)]
struct Owned {
    /// In start order; stopped in reverse.
    components: Vec<Component>,
    keep_dir: bool,
    stopped: bool,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// A process registered with [`ControlPlane::stop_with_this_process`]; dropping the guard
/// deregisters it. Drop it once the process has been killed or has exited — and before that
/// if it is to survive this process after all.
#[derive(Debug)]
#[must_use = "dropping the guard deregisters the process at once"]
pub struct WatchedProcess {
    dir: PathBuf,
    pid: u32,
}

impl WatchedProcess {
    /// The registered PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for WatchedProcess {
    fn drop(&mut self) {
        deregister_pid(&self.dir, self.pid);
    }
}

impl ControlPlane {
    /// The control plane for this test binary: attaches to the one in [`ENV_DIR`] if set,
    /// otherwise starts one on first use (blocking, typically 10–30 s) that lives until the
    /// binary exits; the watchdog then stops it and removes its directory.
    ///
    /// # Panics
    /// If no control plane can be started or attached, with the reason and the log tails, every
    /// time it is called (the failure is remembered, so later tests fail fast).
    pub fn shared() -> &'static ControlPlane {
        let shared = SHARED.get_or_init(|| {
            let result = match std::env::var_os(ENV_DIR).filter(|dir| !dir.is_empty()) {
                Some(dir) => ControlPlane::attach(Path::new(&dir)),
                None => ControlPlane::start(StartOptions {
                    crds: std::env::var_os(ENV_CRDS)
                        .map(|paths| std::env::split_paths(&paths).collect())
                        .unwrap_or_default(),
                    ..StartOptions::default()
                }),
            };
            result.map_err(|error| format!("{error:#}"))
        });
        match shared {
            Ok(control_plane) => control_plane,
            Err(reason) => panic!("testenv: no Kubernetes control plane: {reason}"),
        }
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until each is ready.
    /// Blocking; safe to call from async code (the work runs on its own thread). The processes
    /// stop on [`ControlPlane::stop`], on drop, or — via the watchdog — when this process dies.
    ///
    /// # Errors
    /// Missing binaries, a component that exits or does not become ready in time (the error
    /// then contains the log tails; the run directory is kept).
    pub fn start(options: StartOptions) -> anyhow::Result<ControlPlane> {
        thread::Builder::new()
            .name("testenv-start".into())
            .spawn(move || start_blocking(options))
            .context("spawning the start thread")?
            .join()
            .map_err(|_| anyhow!("the testenv start thread panicked"))?
    }

    /// Attaches to a control plane started by `testenv up --dir <dir>` (or any
    /// [`ControlPlane::start`] with that `dir`). The attached handle never stops it.
    ///
    /// # Errors
    /// If `dir` holds no ready control plane or its kube-apiserver is no longer running.
    pub fn attach(dir: &Path) -> anyhow::Result<ControlPlane> {
        let state_path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&state_path).with_context(|| {
            format!(
                "{ENV_DIR}={} holds no ready control plane ({} not readable; is `testenv up --dir {}` running?)",
                dir.display(),
                state_path.display(),
                dir.display()
            )
        })?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", state_path.display()))?;
        for component in &state.components {
            if !pid_alive(component.pid) {
                bail!(
                    "the control plane in {} is not running any more ({} pid {} is gone)\n{}",
                    dir.display(),
                    component.name,
                    component.pid,
                    logs::tails(&dir.join("logs"), DEFAULT_TAIL_LINES)
                );
            }
        }
        Ok(ControlPlane {
            dir: dir.to_path_buf(),
            log_dir: dir.join("logs"),
            state,
            owned: None,
        })
    }

    /// A new client with cluster-admin rights (`system:masters`), built from the kubeconfig.
    /// Cheap enough to call per test; bound to the calling tokio runtime.
    ///
    /// # Panics
    /// If the kubeconfig cannot be read or the client cannot be built.
    pub async fn client(&self) -> kube::Client {
        match self.try_client().await {
            Ok(client) => client,
            Err(error) => panic!("testenv: cannot build a kube client: {error:#}"),
        }
    }

    /// Like [`ControlPlane::client`], returning the error instead of panicking.
    ///
    /// # Errors
    /// If the kubeconfig cannot be read or the client cannot be built.
    pub async fn try_client(&self) -> anyhow::Result<kube::Client> {
        let config = self.kube_config().await?;
        kube::Client::try_from(config).context("building kube::Client")
    }

    /// The cluster-admin `kube::Config`, for code under test that builds its own client.
    ///
    /// # Errors
    /// If the kubeconfig cannot be read or parsed.
    pub async fn kube_config(&self) -> anyhow::Result<kube::Config> {
        kube_config_from(&self.state.kubeconfig).await
    }

    /// Creates a namespace `<prefix>-<random>` (deleted best-effort when the returned guard is
    /// dropped; printing log tails first if the test is failing).
    ///
    /// # Panics
    /// If the namespace cannot be created.
    pub async fn temp_namespace(&self, prefix: &str) -> TestNamespace {
        match TestNamespace::create(self, prefix).await {
            Ok(namespace) => namespace,
            Err(error) => {
                panic!(
                    "testenv: cannot create a test namespace: {error:#}\n{}",
                    self.log_tails(DEFAULT_TAIL_LINES)
                )
            }
        }
    }

    /// A guard that prints the last [`DEFAULT_TAIL_LINES`] lines of each component log if the
    /// current test panics before the guard is dropped.
    pub fn logs_on_panic(&self) -> LogsOnPanic {
        LogsOnPanic {
            run_dir: self.dir.clone(),
            log_dir: self.log_dir.clone(),
        }
    }

    /// The last `lines` lines of each component log, headed by the file path.
    pub fn log_tails(&self, lines: usize) -> String {
        logs::tails(&self.log_dir, lines)
    }

    /// The keys the apiserver signs service-account tokens with, as served at
    /// `/openid/v1/jwks` (ES256 / P-256), for workload-identity tests.
    ///
    /// # Errors
    /// If the request fails.
    pub async fn service_account_jwks(&self) -> anyhow::Result<serde_json::Value> {
        let client = self.try_client().await?;
        let request = http::Request::get("/openid/v1/jwks").body(Vec::new())?;
        let body = client.request_text(request).await?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Run directory: `kubeconfig`, `env`, `controlplane.json`, `logs/`, `pki/`, `etcd/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the cluster-admin kubeconfig (usable by kubectl and helm too).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.state.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_url(&self) -> &str {
        &self.state.api_url
    }

    /// The `iss` of service-account tokens (`--service-account-issuer`); equal to
    /// [`ControlPlane::api_url`], so `<issuer>/.well-known/openid-configuration` is served.
    pub fn service_account_issuer(&self) -> &str {
        &self.state.service_account_issuer
    }

    /// Directory with `etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// `(component name, pid)` for etcd, kube-apiserver and kube-controller-manager.
    pub fn component_pids(&self) -> Vec<(String, u32)> {
        self.state
            .components
            .iter()
            .map(|component| (component.name.clone(), component.pid))
            .collect()
    }

    /// The kubelet node, when started with [`StartOptions::node`].
    pub fn node(&self) -> Option<&NodeInfo> {
        self.state.node.as_ref()
    }

    /// Wall time from [`ControlPlane::start`] until all components were ready.
    pub fn startup_duration(&self) -> Duration {
        Duration::from_millis(self.state.startup_millis)
    }

    /// Registers `pid` (a process this process started for a test, e.g. the operator under test)
    /// with the watchdog, so that it is stopped (SIGTERM, 10 s later SIGKILL) when this process
    /// dies without cleaning up, SIGKILL included. For a control plane this process started, that
    /// is the control plane's own watchdog, which stops `pid` before the components, while the
    /// apiserver still serves; it is gone after [`ControlPlane::stop`], so such a control plane
    /// must outlive the registration. An attached control plane's watchdog watches `testenv up`,
    /// not this process, so the first call starts a watchdog for this process alone, on a
    /// directory of its own.
    ///
    /// Keep the returned guard while the process runs and drop it once it is gone, so that a
    /// later process reusing the PID is never signalled.
    ///
    /// # Errors
    /// If the PID list cannot be written, the watchdog cannot be started, or this (owned)
    /// control plane has already been stopped.
    pub fn stop_with_this_process(&self, pid: u32) -> anyhow::Result<WatchedProcess> {
        let dir = self.watchdog_dir()?;
        register_pid(dir, pid)?;
        Ok(WatchedProcess {
            dir: dir.to_path_buf(),
            pid,
        })
    }

    /// The run directory whose watchdog watches this process (see
    /// [`ControlPlane::stop_with_this_process`]).
    fn watchdog_dir(&self) -> anyhow::Result<&Path> {
        if let Some(owned) = &self.owned {
            let owned = owned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if owned.stopped {
                bail!(
                    "the control plane in {} is stopped; its watchdog is gone",
                    self.dir.display()
                );
            }
            return Ok(&self.dir);
        }
        // One per process, shared by every attached handle; removed by its watchdog.
        static OWN_WATCHDOG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        OWN_WATCHDOG
            .get_or_init(|| {
                let dir = std::env::temp_dir().join(format!(
                    "testenv-children-{}-{}",
                    std::process::id(),
                    random_suffix(6)
                ));
                fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))
                    .and_then(|()| spawn_watchdog(&dir))
                    .map(|()| dir)
                    .map_err(|error| format!("{error:#}"))
            })
            .as_deref()
            .map_err(|error| anyhow!("starting a watchdog for this process: {error}"))
    }

    /// Stops the processes (reverse start order: SIGTERM, 10 s grace, SIGKILL) and removes the
    /// run directory unless it is to be kept. Idempotent; does nothing for an attached handle.
    pub fn stop(&self) {
        let Some(owned) = &self.owned else { return };
        let mut owned = owned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if owned.stopped {
            return;
        }
        owned.stopped = true;
        for component in owned.components.iter_mut().rev() {
            component.stop();
        }
        node::teardown(&self.dir.join("node"));
        touch_marker(&self.dir, STOPPED_MARKER);
        // Never recurse into a mount a node's teardown could not remove (a pod volume may be
        // a host path).
        if !owned.keep_dir
            && !self.dir.join(KEEP_MARKER).exists()
            && !node::has_mounts_under(&self.dir)
        {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs ring as the process-wide rustls provider (kube's TLS needs one chosen).
fn install_crypto_provider() {
    // An error only means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn kube_config_from(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    install_crypto_provider();
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))
}

/// The three binaries a control plane needs.
struct Binaries {
    etcd: PathBuf,
    kube_apiserver: PathBuf,
    kube_controller_manager: PathBuf,
}

impl Binaries {
    /// The control plane's binaries in `bin_dir`; with `node`, also checks for the node's
    /// (kubelet, kube-scheduler, pause), which the node module runs from there.
    fn find(bin_dir: &Path, node: bool) -> anyhow::Result<Binaries> {
        let path = |name: &str| bin_dir.join(name);
        let node_binaries: &[&str] = if node {
            &["kubelet", "kube-scheduler", "pause"]
        } else {
            &[]
        };
        let missing: Vec<&str> = ["etcd", "kube-apiserver", "kube-controller-manager"]
            .iter()
            .chain(node_binaries)
            .copied()
            .filter(|name| !path(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing {} in {} (build them with tools/build-tools.sh, or point {ENV_BIN_DIR} at a directory that has them)",
                missing.join(", "),
                bin_dir.display()
            );
        }
        Ok(Binaries {
            etcd: path("etcd"),
            kube_apiserver: path("kube-apiserver"),
            kube_controller_manager: path("kube-controller-manager"),
        })
    }
}

/// [`StartOptions::bin_dir`], else [`ENV_BIN_DIR`], else the last stdout line of
/// `tools/build-tools.sh` (which builds whatever is missing first; its progress goes to stderr).
fn resolve_bin_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os(ENV_BIN_DIR).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/build-tools.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {} (see its output above; or set {ENV_BIN_DIR})",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or_else(|| anyhow!("{} printed no bin directory", script.display()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// Reserves `count` distinct free loopback ports. They are released before the components bind
/// them, so another process could grab one in between; that would surface as a start failure
/// with an "address already in use" log line, which is rare enough on a test machine.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("reserving loopback ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

fn random_suffix(len: usize) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Everything [`ControlPlane::start`] does, on a thread of its own so it may run a private
/// tokio runtime even when called from inside a test's runtime.
fn start_blocking(options: StartOptions) -> anyhow::Result<ControlPlane> {
    let started = Instant::now();
    let timeout = options.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT);
    let bin_dir = resolve_bin_dir(options.bin_dir)?;
    let binaries = Binaries::find(&bin_dir, options.node)?;
    let keep_dir = options.keep_dir
        || std::env::var(ENV_KEEP).is_ok_and(|value| value == "1" || value == "true");

    let dir = match options.dir {
        Some(dir) => {
            if dir.join(STATE_FILE).exists() || dir.join(process::PIDS_FILE).exists() {
                bail!(
                    "{} already holds a control plane's state; use an empty directory",
                    dir.display()
                );
            }
            dir
        }
        None => std::env::temp_dir().join(format!(
            "testenv-{}-{}",
            std::process::id(),
            random_suffix(6)
        )),
    };
    let log_dir = dir.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let dir = dir.canonicalize()?;
    let log_dir = dir.join("logs");
    if keep_dir {
        touch_marker(&dir, KEEP_MARKER);
    }
    spawn_watchdog(&dir)?;

    let mut owned = Owned {
        components: Vec::new(),
        keep_dir,
        stopped: false,
    };
    let crds = crd_manifests(&options.crds)?;
    let plan = LaunchPlan {
        binaries: &binaries,
        bin_dir: &bin_dir,
        dir: &dir,
        log_dir: &log_dir,
        timeout,
        crds: &crds,
        node: options.node,
    };
    match launch(&plan, &mut owned.components) {
        Ok(mut state) => {
            state.startup_millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(0);
            write_state_files(&dir, &state)?;
            Ok(ControlPlane {
                dir,
                log_dir,
                state,
                owned: Some(Mutex::new(owned)),
            })
        }
        Err(error) => {
            for component in owned.components.iter_mut().rev() {
                component.stop();
            }
            node::teardown(&dir.join("node"));
            touch_marker(&dir, KEEP_MARKER);
            touch_marker(&dir, STOPPED_MARKER);
            // The cause first, then the tails: the cause is what a reader needs in one line.
            Err(anyhow!(
                "starting the control plane in {} failed (directory kept for inspection): {error:#}\n{}",
                dir.display(),
                logs::tails(&log_dir, DEFAULT_TAIL_LINES)
            ))
        }
    }
}

/// What [`launch`] starts, and where.
struct LaunchPlan<'a> {
    binaries: &'a Binaries,
    bin_dir: &'a Path,
    dir: &'a Path,
    log_dir: &'a Path,
    timeout: Duration,
    crds: &'a [CustomResourceDefinition],
    node: bool,
}

/// Generates the PKI, starts the components one after the other and waits for each; with a
/// node, first its network (so the apiserver can listen on the node-facing address), and last
/// kube-scheduler, containerd and the kubelet, waiting until the Node is Ready.
fn launch(plan: &LaunchPlan<'_>, components: &mut Vec<Component>) -> anyhow::Result<State> {
    let LaunchPlan {
        binaries,
        bin_dir,
        dir,
        log_dir,
        timeout,
        crds,
        node,
    } = *plan;
    let network = if node {
        Some(node::Network::create(&dir.join("node"), &random_suffix(5))?)
    } else {
        None
    };
    let bind_ip = network
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |network| {
            IpAddr::V4(network.host_ip)
        });
    let pki = Pki::generate(&dir.join("pki"), &serving_names(bind_ip, node))?;
    let ports = free_ports(5)?;
    let (etcd_port, etcd_peer_port, api_port, kcm_port, scheduler_port) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let api_url = format!("https://{bind_ip}:{api_port}");
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &api_url, &pki)?;

    let path = |p: &Path| p.display().to_string();
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
    let etcd_args = vec![
        "--name=testenv".to_string(),
        format!("--data-dir={}", path(&dir.join("etcd"))),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls={etcd_peer_url}"),
        format!("--initial-advertise-peer-urls={etcd_peer_url}"),
        format!("--initial-cluster=testenv={etcd_peer_url}"),
        // Durability is worthless for a throw-away test store; fsync dominates write latency.
        "--unsafe-no-fsync".to_string(),
        "--log-level=warn".to_string(),
    ];
    components.push(Component::spawn(
        "etcd",
        &binaries.etcd,
        &etcd_args,
        dir,
        log_dir,
    )?);
    wait_until("etcd", timeout, components, || {
        probe_etcd(etcd_port).map_err(|error| format!("{error:#}"))
    })?;

    let mut apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--bind-address={bind_ip}"),
        format!("--secure-port={api_port}"),
        format!("--cert-dir={}", path(&dir.join("apiserver-certs"))),
        format!("--tls-cert-file={}", path(&pki.serving_cert)),
        format!("--tls-private-key-file={}", path(&pki.serving_key)),
        format!("--client-ca-file={}", path(&pki.ca_cert)),
        // Only so kube-controller-manager finds complete front-proxy settings (see Pki).
        format!(
            "--requestheader-client-ca-file={}",
            path(&pki.front_proxy_ca_cert)
        ),
        "--requestheader-allowed-names=front-proxy-client".to_string(),
        "--requestheader-username-headers=X-Remote-User".to_string(),
        "--requestheader-group-headers=X-Remote-Group".to_string(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_string(),
        "--authorization-mode=RBAC".to_string(),
        format!("--service-account-issuer={api_url}"),
        // Without this the discovery document advertises the host's default-route IP, which
        // the serving certificate does not cover; tests fetch the JWKS on loopback.
        format!("--service-account-jwks-uri={api_url}/openid/v1/jwks"),
        format!(
            "--service-account-key-file={}",
            path(&pki.service_account_pub)
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(&pki.service_account_key)
        ),
        format!("--service-cluster-ip-range={}", node::SERVICE_RANGE),
        "--allow-privileged=true".to_string(),
    ];
    if node {
        apiserver_args.extend([
            // The `kubernetes` Endpoints name this address, which the node's DNAT reaches.
            format!("--advertise-address={bind_ip}"),
            // `kubectl logs` and the kubelet's webhook authorization of the apiserver's calls.
            format!("--kubelet-client-certificate={}", path(&pki.admin_cert)),
            format!("--kubelet-client-key={}", path(&pki.admin_key)),
            "--kubelet-preferred-address-types=InternalIP".to_string(),
        ]);
    } else {
        apiserver_args.extend([
            // No service-account token controller/volumes: without this, pods would need tokens.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            // Never publish the advertise address into the `kubernetes` Endpoints; nothing
            // routes to it, and it keeps the apiserver from depending on the host's network.
            "--endpoint-reconciler-type=none".to_string(),
        ]);
    }
    components.push(Component::spawn(
        "kube-apiserver",
        &binaries.kube_apiserver,
        &apiserver_args,
        dir,
        log_dir,
    )?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // kube::Client::try_from spawns its buffer task, so it must run inside the runtime.
    let _entered = runtime.enter();
    let admin_config = runtime.block_on(kube_config_from(&kubeconfig))?;
    let admin_client = kube::Client::try_from(admin_config.clone())?;
    wait_until("kube-apiserver /readyz", timeout, components, || {
        runtime.block_on(probe_http(&admin_client, "/readyz"))
    })?;

    if !crds.is_empty() {
        runtime
            .block_on(install_crds(&admin_client, crds, timeout))
            .context("installing the CRDs given in StartOptions::crds / TESTENV_CRDS")?;
    }

    // clusterrole-aggregation: the built-in admin/edit/view roles get their rules from the
    // ClusterRoles aggregated into them (without it they have none).
    let mut controllers = "garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller".to_string();
    if node {
        // What a Deployment's pods need: their ReplicaSets, the `kube-root-ca.crt` ConfigMap
        // of projected tokens, and the node's not-ready taint lifted once it is Ready.
        controllers.push_str(",deployment-controller,replicaset-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller,pod-garbage-collector-controller");
    }
    let kcm_args = vec![
        format!("--kubeconfig={}", path(&kubeconfig)),
        format!("--authentication-kubeconfig={}", path(&kubeconfig)),
        format!("--authorization-kubeconfig={}", path(&kubeconfig)),
        format!("--controllers={controllers}"),
        format!("--root-ca-file={}", path(&pki.ca_cert)),
        "--leader-elect=false".to_string(),
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={kcm_port}"),
        format!("--cert-dir={}", path(&dir.join("kcm-certs"))),
    ];
    components.push(Component::spawn(
        "kube-controller-manager",
        &binaries.kube_controller_manager,
        &kcm_args,
        dir,
        log_dir,
    )?);
    wait_healthz(
        "kube-controller-manager",
        kcm_port,
        &admin_config,
        (&runtime, timeout),
        components,
    )?;

    let node_info = match &network {
        None => None,
        Some(network) => {
            network.route_service_to(api_port)?;
            let scheduler_args = vec![
                format!("--kubeconfig={}", path(&kubeconfig)),
                format!("--authentication-kubeconfig={}", path(&kubeconfig)),
                format!("--authorization-kubeconfig={}", path(&kubeconfig)),
                "--leader-elect=false".to_string(),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={scheduler_port}"),
            ];
            components.push(Component::spawn(
                "kube-scheduler",
                &bin_dir.join("kube-scheduler"),
                &scheduler_args,
                dir,
                log_dir,
            )?);
            wait_healthz(
                "kube-scheduler",
                scheduler_port,
                &admin_config,
                (&runtime, timeout),
                components,
            )?;
            let inputs = node::NodeInputs {
                bin_dir,
                node_dir: &dir.join("node"),
                log_dir,
                run_dir: dir,
                network,
                ca_cert: &pki.ca_cert,
                kubeconfig: &kubeconfig,
            };
            let info = node::start(&inputs, timeout, components)?;
            wait_until("the node to be Ready", timeout, components, || {
                runtime.block_on(probe_node_ready(&admin_client, &info.name))
            })?;
            Some(info)
        }
    };

    Ok(State {
        service_account_issuer: api_url.clone(),
        api_url,
        kubeconfig,
        kubernetes_version: KUBERNETES_VERSION.to_string(),
        components: components
            .iter()
            .map(|component| ComponentPid {
                name: component.name.to_string(),
                pid: component.child.id(),
            })
            .collect(),
        startup_millis: 0,
        node: node_info,
    })
}

/// Names the apiserver's serving certificate covers besides loopback: with a node, the
/// node-facing address and what pods use (the `kubernetes` Service's address and names).
fn serving_names(bind_ip: IpAddr, node: bool) -> Vec<String> {
    if !node {
        return Vec::new();
    }
    let mut names = vec![bind_ip.to_string(), node::SERVICE_IP.to_string()];
    names.extend(
        [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from),
    );
    names
}

/// Waits for a component's `/healthz` on its loopback secure port. The component serves it
/// with a self-signed certificate from its cert-dir; the admin client certificate
/// authenticates through the apiserver's published client CA.
fn wait_healthz(
    name: &str,
    port: u16,
    admin_config: &kube::Config,
    (runtime, timeout): (&tokio::runtime::Runtime, Duration),
    components: &mut [Component],
) -> anyhow::Result<()> {
    let mut config = admin_config.clone();
    config.cluster_url = format!("https://127.0.0.1:{port}").parse()?;
    config.root_cert = None;
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    wait_until(&format!("{name} /healthz"), timeout, components, || {
        runtime.block_on(probe_http(&client, "/healthz"))
    })
}

/// Whether the Node `name` reports `Ready=True`.
async fn probe_node_ready(client: &kube::Client, name: &str) -> Result<(), String> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let node = nodes
        .get_opt(name)
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("node {name} not registered yet"))?;
    let ready = node
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "Ready");
    match ready {
        Some(condition) if condition.status == "True" => Ok(()),
        Some(condition) => Err(format!(
            "node {name} Ready={}: {}",
            condition.status,
            condition.message.unwrap_or_default()
        )),
        None => Err(format!("node {name} has no Ready condition yet")),
    }
}

/// Reads every CRD from `paths` (files, or directories whose `*.yaml`/`*.yml` files are read
/// in name order); multi-document YAML is split, empty documents are skipped.
fn crd_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<Result<_, _>>()?;
            entries.retain(|file| {
                file.extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "yml")
            });
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    let mut crds = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document)
                .with_context(|| format!("parsing {}", file.display()))?;
            if value.is_null() {
                continue;
            }
            crds.push(serde_yaml::from_value(value).with_context(|| {
                format!("{} holds something that is not a CRD", file.display())
            })?);
        }
    }
    Ok(crds)
}

/// Server-side applies the CRDs and waits until each is Established.
async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in crds {
        let name = crd
            .metadata
            .name
            .clone()
            .context("a CRD without metadata.name")?;
        api.patch(
            &name,
            &kube::api::PatchParams::apply("testenv").force(),
            &kube::api::Patch::Apply(crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(timeout, established)
            .await
            .with_context(|| format!("CRD {name} not Established after {timeout:?}"))??;
    }
    Ok(())
}

/// Polls `probe` every 100 ms until it succeeds, failing early if any component has exited.
fn wait_until(
    what: &str,
    timeout: Duration,
    components: &mut [Component],
    mut probe: impl FnMut() -> Result<(), String>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for component in components.iter_mut() {
            if let Some(reason) = component.exited() {
                bail!(
                    "waiting for {what}: {reason} (log: {})",
                    component.log.display()
                );
            }
        }
        let last_error = match probe() {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            bail!("{what} not ready after {timeout:?}; last probe: {last_error}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// etcd's `/health` over plain HTTP on loopback (a raw request avoids an HTTP client dependency).
fn probe_etcd(port: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        bail!("etcd /health: {}", response.lines().last().unwrap_or(""))
    }
}

async fn probe_http(client: &kube::Client, path: &str) -> Result<(), String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|error| error.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("{path}: no answer within 5 s")),
    }
}

fn write_kubeconfig(path: &Path, api_url: &str, pki: &Pki) -> anyhow::Result<()> {
    let data = |file: &Path| -> anyhow::Result<String> {
        Ok(BASE64.encode(fs::read(file).with_context(|| format!("reading {}", file.display()))?))
    };
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {api_url}
    certificate-authority-data: {ca}
users:
- name: testenv-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
    namespace: default
current-context: testenv
",
        ca = data(&pki.ca_cert)?,
        cert = data(&pki.admin_cert)?,
        key = data(&pki.admin_key)?,
    );
    fs::write(path, kubeconfig).with_context(|| format!("writing {}", path.display()))
}

/// `controlplane.json` (for [`ControlPlane::attach`]) and `env` (for `source` in shell scripts).
/// Written last, so their presence means "ready".
fn write_state_files(dir: &Path, state: &State) -> anyhow::Result<()> {
    let mut env = format!(
        "export {ENV_DIR}='{dir}'\nexport KUBECONFIG='{kubeconfig}'\nexport TESTENV_API_URL='{api}'\nexport TESTENV_SA_ISSUER='{issuer}'\n",
        dir = dir.display(),
        kubeconfig = state.kubeconfig.display(),
        api = state.api_url,
        issuer = state.service_account_issuer,
    );
    if let Some(node) = &state.node {
        // For scripts: where pods reach the host, and the node's containerd (image import).
        env.push_str(&format!(
            "export TESTENV_NODE_HOST_IP='{}'\nexport TESTENV_NODE_CONTAINERD_SOCKET='{}'\n",
            node.host_ip,
            node.containerd_socket.display()
        ));
    }
    fs::write(dir.join("env"), env)?;
    // Write-then-rename so an attaching reader never sees half a file.
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    fs::rename(&tmp, dir.join(STATE_FILE))?;
    Ok(())
}
