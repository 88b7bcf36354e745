//! A real kubelet node beside the control plane ([`crate::StartOptions::node`]): containerd,
//! runc and the CNI bridge plugin from Debian's packages, kubelet and kube-scheduler built from
//! the control plane's own Go module, and a sandbox image built locally from `tools/pause`.
//!
//! Everything the node touches stays inside this run:
//! - **Network.** The node (kubelet, containerd, every pod) lives in a network namespace of
//!   its own, joined to the host by one veth pair on a private /30. The apiserver listens on
//!   the host end of that pair, so the kubelet and pods reach it and nothing else: the node
//!   namespace has no default route, and the in-cluster `kubernetes` Service address is
//!   DNAT'ed to the apiserver inside the namespace (standing in for kube-proxy). Pods get
//!   addresses from a /24 of 10.214.0.0/16 the host routes to the node, so tests reach a pod's
//!   port (metrics, probes) directly.
//! - **Files.** containerd's root and state (pod network namespaces included), the kubelet's
//!   root, pod logs and the CNI state are under `<run dir>/node`.
//! - **Cgroups.** Pods live under a cgroup root of their own (`/testenv-<id>`) in every v1
//!   hierarchy.
//! - **Host settings.** The kubelet rewrites a few host sysctls (`kernel.panic`,
//!   `kernel.panic_on_oops`, `vm.overcommit_memory`); their values from before the start are
//!   written back on teardown.
//!
//! Teardown is one generated shell script, `<run dir>/node/teardown.sh`, written before
//! anything is created: [`crate::ControlPlane::stop`] runs it after stopping the processes, and
//! so does the watchdog when the owning process dies without cleaning up. It kills the pods'
//! processes by the PIDs in the node's cgroups and the containerd shims by the PIDs whose
//! command line names this node's containerd socket, unmounts everything under the node
//! directory, removes the cgroups and the network namespace, and restores the sysctls.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::process::Component;

/// The in-cluster address of the `kubernetes` Service (first address of the service range).
pub(crate) const SERVICE_IP: &str = "10.0.0.1";
/// The service range given to the apiserver when a node runs.
pub(crate) const SERVICE_RANGE: &str = "10.0.0.0/24";
/// The sandbox image name given to containerd; built from `pause` at start.
const SANDBOX_IMAGE: &str = "localhost/testenv/pause:1";
/// Host sysctls the kubelet rewrites; restored on teardown.
const KUBELET_SYSCTLS: [&str; 5] = [
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// Debian packages the node needs (installed by `tools/node-packages.sh`), by a file each has.
const PACKAGES: [(&str, &str); 6] = [
    ("containerd", "/usr/bin/containerd"),
    ("containerd (ctr)", "/usr/bin/ctr"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iptables", "/usr/sbin/iptables"),
    ("buildah", "/usr/bin/buildah"),
];
/// Name of the teardown script in the node directory.
pub(crate) const TEARDOWN_SCRIPT: &str = "teardown.sh";

/// What a running node's users need to know; recorded in `controlplane.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The Node object's name.
    pub name: String,
    /// The host end of the veth pair: the apiserver listens here, and so must anything pods
    /// are to reach on the host (e.g. a Thalassa emulator).
    pub host_ip: Ipv4Addr,
    /// The node's address (kubelet, inside the node's network namespace).
    pub node_ip: Ipv4Addr,
    /// `/run/netns/<name>` of the node's network namespace.
    pub netns: String,
    /// containerd's socket (for `ctr --address`).
    pub containerd_socket: PathBuf,
}

impl NodeInfo {
    /// Imports an image archive (`docker-archive`, as `tools/build-image.sh` writes) into the
    /// node's containerd, where the kubelet finds it (`imagePullPolicy: Never` or
    /// `IfNotPresent`).
    ///
    /// # Errors
    /// If `ctr` fails; its output is in the error.
    pub fn import_image(&self, archive: &Path) -> anyhow::Result<()> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive))
        .with_context(|| format!("importing {} into the node", archive.display()))
    }
}

/// Why a node cannot start on this machine, if it cannot: not root, a missing kernel feature
/// or a missing package. `None` means the prerequisites are there, so a failure to start is a
/// real failure, not a reason to skip.
pub fn missing_prerequisites() -> Option<String> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Some("a node needs root (network namespaces, cgroups, mounts)".into());
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
    {
        return Some("no cgroup hierarchy with the memory controller at /sys/fs/cgroup".into());
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing Debian packages: {} (tools/node-packages.sh installs them)",
            missing.join(", ")
        ));
    }
    None
}

/// The node's network: a namespace and a veth pair, created by [`Network::create`].
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) id: String,
    pub(crate) netns: String,
    pub(crate) host_veth: String,
    pub(crate) node_veth: String,
    pub(crate) host_ip: Ipv4Addr,
    pub(crate) node_ip: Ipv4Addr,
    pub(crate) pod_subnet: String,
}

impl Network {
    /// Writes the teardown script into `node_dir` first, then creates the namespace, the veth
    /// pair and the namespace's routes and NAT rules. `id` names them (short: interface names
    /// hold 15 bytes).
    pub(crate) fn create(node_dir: &Path, id: &str) -> anyhow::Result<Network> {
        fs::create_dir_all(node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
        let (host_ip, node_ip) = free_link_addresses()?;
        let pod_subnet = free_pod_subnet()?;
        let network = Network {
            id: id.to_string(),
            netns: format!("testenv-{id}"),
            host_veth: format!("tvh{id}"),
            node_veth: format!("tvn{id}"),
            host_ip,
            node_ip,
            pod_subnet,
        };
        write_teardown(node_dir, &network)?;
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", &network.netns])?;
        ip(&[
            "link",
            "add",
            &network.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &network.node_veth,
        ])?;
        ip(&["link", "set", &network.node_veth, "netns", &network.netns])?;
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &network.host_veth,
        ])?;
        ip(&["link", "set", &network.host_veth, "up"])?;
        ip(&[
            "route",
            "add",
            &network.pod_subnet,
            "via",
            &node_ip.to_string(),
        ])?;
        let inside = |args: &[&str]| run(network.inside(args[0]).args(&args[1..]));
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{node_ip}/30"),
            "dev",
            &network.node_veth,
        ])?;
        inside(&["ip", "link", "set", &network.node_veth, "up"])?;
        // No default route: the only way out of the namespace is to the host end of the pair.
        // The service range is routed on-link only so that a local connect to the Service
        // address gets as far as the DNAT rule below.
        inside(&[
            "ip",
            "route",
            "add",
            SERVICE_RANGE,
            "dev",
            &network.node_veth,
        ])?;
        inside(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(network)
    }

    /// A command run inside the node's network namespace (only the network namespace: mounts,
    /// cgroups and the rest stay the host's, unlike `ip netns exec`, which remounts /sys).
    pub(crate) fn inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        command
    }

    /// Sends the `kubernetes` Service address (443) to the apiserver on the host end of the
    /// pair, for pods (PREROUTING) and for processes of the namespace itself (OUTPUT); pod
    /// traffic leaving for the host is masqueraded to the node's address, the one host route
    /// back.
    pub(crate) fn route_service_to(&self, api_port: u16) -> anyhow::Result<()> {
        let target = format!("{}:{api_port}", self.host_ip);
        for chain in ["PREROUTING", "OUTPUT"] {
            run(self.inside("iptables").args([
                "-t",
                "nat",
                "-A",
                chain,
                "-d",
                SERVICE_IP,
                "-p",
                "tcp",
                "--dport",
                "443",
                "-j",
                "DNAT",
                "--to-destination",
                &target,
            ]))?;
        }
        run(self.inside("iptables").args([
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            &self.pod_subnet,
            "-o",
            &self.node_veth,
            "-j",
            "MASQUERADE",
        ]))
    }
}

/// A free /30 on 10.213.0.0/16 for the veth pair: `.1` host, `.2` node. Concurrent runs get
/// different ones because the host addresses are taken as soon as they are assigned.
fn free_link_addresses() -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    use rand::Rng as _;
    let taken = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .context("running `ip addr`")?
            .stdout,
    )
    .into_owned();
    let mut rng = rand::rng();
    for _ in 0..64 {
        let block: u16 = rng.random_range(0..16384);
        let [third, fourth] = (block * 4).to_be_bytes();
        let host = Ipv4Addr::new(10, 213, third, fourth + 1);
        if !taken.contains(&format!("inet {host}/")) {
            return Ok((host, Ipv4Addr::new(10, 213, third, fourth + 2)));
        }
    }
    bail!("no free /30 on 10.213.0.0/16 for the node's veth pair")
}

/// A /24 of 10.214.0.0/16 for the pods that no host route uses yet.
fn free_pod_subnet() -> anyhow::Result<String> {
    use rand::Rng as _;
    let routes = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "route", "show"])
            .output()
            .context("running `ip route`")?
            .stdout,
    )
    .into_owned();
    let mut rng = rand::rng();
    for _ in 0..64 {
        let subnet = format!("10.214.{}.0/24", rng.random_range(0..=255u8));
        if !routes.lines().any(|route| route.starts_with(&subnet)) {
            return Ok(subnet);
        }
    }
    bail!("no free /24 on 10.214.0.0/16 for the node's pods")
}

/// The script that undoes everything a node creates (see the module docs). Idempotent, and
/// safe on a half-started node: each step ignores what is not there.
fn write_teardown(node_dir: &Path, network: &Network) -> anyhow::Result<()> {
    let mut sysctls = String::new();
    for key in KUBELET_SYSCTLS {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        if let Ok(value) = fs::read_to_string(&path) {
            let _ = write!(sysctls, " {key}={}", value.trim());
        }
    }
    let script = format!(
        r#"#!/bin/sh
# Generated by testenv: tears down the node of this run directory (see testenv/src/node.rs).
dir='{dir}'
sock="$dir/containerd/containerd.sock"
cgroup_root='{cgroup_root}'
# 1. The containerd shims of this node, by the socket in their command line, and every
#    process in the node's cgroups (the pods), until none is left.
for proc in /proc/[0-9]*; do
  case "$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)" in
    *containerd-shim*"$sock"*) kill -KILL "${{proc#/proc/}}" 2>/dev/null ;;
  esac
done
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  pids=$(find /sys/fs/cgroup/*/"$cgroup_root" -name cgroup.procs -exec cat {{}} + 2>/dev/null)
  [ -z "$pids" ] && break
  kill -KILL $pids 2>/dev/null
  sleep 0.2
done
# 2. Every mount under the node directory (rootfs overlays, volumes, pod network namespaces),
#    deepest first.
awk -v prefix="$dir/" 'index($5, prefix) == 1 {{ print $5 }}' /proc/self/mountinfo | sort -r |
  while read -r mount; do umount -l "$mount" 2>/dev/null; done
# 3. The node's cgroups, children first.
for hierarchy in /sys/fs/cgroup/*/; do
  [ -d "$hierarchy$cgroup_root" ] && find "$hierarchy$cgroup_root" -depth -type d -exec rmdir {{}} \; 2>/dev/null
done
# 4. The network namespace (its veth end, bridge and NAT rules go with it) and the host end.
ip netns delete '{netns}' 2>/dev/null
ip link delete '{host_veth}' 2>/dev/null
# 5. The host sysctls the kubelet changed, as they were before the node started.
sysctl -qw{sysctls} 2>/dev/null
exit 0
"#,
        dir = node_dir.display(),
        cgroup_root = cgroup_root(&network.id),
        netns = network.netns,
        host_veth = network.host_veth,
    );
    let path = node_dir.join(TEARDOWN_SCRIPT);
    fs::write(&path, script).with_context(|| format!("writing {}", path.display()))
}

/// Runs the node's teardown script if `node_dir` has one. Best effort: it reports nothing.
pub(crate) fn teardown(node_dir: &Path) {
    let script = node_dir.join(TEARDOWN_SCRIPT);
    if script.is_file() {
        let _ = Command::new("sh")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether anything is still mounted under `dir` (then it must not be removed recursively).
pub(crate) fn has_mounts_under(dir: &Path) -> bool {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
        mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .any(|mount| mount.starts_with(&prefix))
    })
}

fn cgroup_root(id: &str) -> String {
    format!("testenv-{id}")
}

/// What [`start`] needs from the control plane.
pub(crate) struct NodeInputs<'a> {
    pub(crate) bin_dir: &'a Path,
    pub(crate) node_dir: &'a Path,
    pub(crate) log_dir: &'a Path,
    pub(crate) run_dir: &'a Path,
    pub(crate) network: &'a Network,
    pub(crate) ca_cert: &'a Path,
    pub(crate) kubeconfig: &'a Path,
}

/// Starts containerd and the kubelet in the node's namespace (kube-scheduler is started by the
/// caller like the other control-plane components) and returns what tests need. The caller
/// waits for the Node to be Ready.
pub(crate) fn start(
    inputs: &NodeInputs<'_>,
    timeout: Duration,
    components: &mut Vec<Component>,
) -> anyhow::Result<NodeInfo> {
    let NodeInputs {
        bin_dir,
        node_dir,
        log_dir,
        run_dir,
        network,
        ca_cert,
        kubeconfig,
    } = *inputs;
    let path = |p: &Path| p.display().to_string();
    let containerd_dir = node_dir.join("containerd");
    let cni_dir = node_dir.join("cni");
    for dir in [
        &containerd_dir,
        &cni_dir.join("net.d"),
        &node_dir.join("kubelet"),
    ] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let socket = containerd_dir.join("containerd.sock");
    let containerd_config = containerd_dir.join("config.toml");
    fs::write(
        &containerd_config,
        containerd_toml(&containerd_dir, &cni_dir),
    )?;
    fs::write(
        cni_dir.join("net.d/10-testenv.conflist"),
        cni_conflist(&cni_dir, &network.pod_subnet),
    )?;
    let cgroup_root = cgroup_root(&network.id);
    create_cgroup_root(&cgroup_root)?;

    components.push(Component::spawn(
        "containerd",
        Path::new("nsenter"),
        &[
            format!("--net=/run/netns/{}", network.netns),
            "--".into(),
            "containerd".into(),
            format!("--config={}", path(&containerd_config)),
        ],
        run_dir,
        log_dir,
    )?);
    crate::wait_until("containerd", timeout, components, || {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .arg("version"))
        .map_err(|error| format!("{error:#}"))
    })?;
    let info = NodeInfo {
        name: format!("testenv-node-{}", network.id),
        host_ip: network.host_ip,
        node_ip: network.node_ip,
        netns: format!("/run/netns/{}", network.netns),
        containerd_socket: socket,
    };
    let sandbox = build_sandbox_image(bin_dir, node_dir)?;
    info.import_image(&sandbox)?;

    let kubelet_config = node_dir.join("kubelet/config.yaml");
    fs::write(
        &kubelet_config,
        kubelet_yaml(&info, &cgroup_root, ca_cert, node_dir),
    )?;
    let kubelet_root = node_dir.join("kubelet/root");
    components.push(Component::spawn(
        "kubelet",
        Path::new("nsenter"),
        &[
            format!("--net=/run/netns/{}", network.netns),
            "--".into(),
            path(&bin_dir.join("kubelet")),
            format!("--config={}", path(&kubelet_config)),
            format!("--kubeconfig={}", path(kubeconfig)),
            format!("--root-dir={}", path(&kubelet_root)),
            format!("--cert-dir={}", path(&node_dir.join("kubelet/pki"))),
            format!("--hostname-override={}", info.name),
            format!("--node-ip={}", info.node_ip),
        ],
        run_dir,
        log_dir,
    )?);
    Ok(info)
}

/// A cgroup of its own in every v1 hierarchy (with cpuset's CPUs and memory nodes copied from
/// the parent, as a new cpuset starts empty).
fn create_cgroup_root(name: &str) -> anyhow::Result<()> {
    for hierarchy in fs::read_dir("/sys/fs/cgroup").context("reading /sys/fs/cgroup")? {
        let hierarchy = hierarchy?.path();
        if !hierarchy.join("cgroup.procs").is_file() || hierarchy.ends_with("unified") {
            continue;
        }
        let cgroup = hierarchy.join(name);
        fs::create_dir_all(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = fs::read_to_string(hierarchy.join(file)) {
                fs::write(cgroup.join(file), value.trim())
                    .with_context(|| format!("writing {}", cgroup.join(file).display()))?;
            }
        }
    }
    Ok(())
}

/// The sandbox image: the static `pause` from the tool cache alone in a scratch image, as a
/// `docker-archive` (buildah, with its storage in the node directory; removed afterwards).
fn build_sandbox_image(bin_dir: &Path, node_dir: &Path) -> anyhow::Result<PathBuf> {
    let pause = bin_dir.join("pause");
    if !pause.is_file() {
        bail!(
            "missing {} (tools/build-tools.sh builds it)",
            pause.display()
        );
    }
    let storage = node_dir.join("buildah");
    let archive = node_dir.join("pause.tar");
    let buildah = || {
        let mut command = Command::new("buildah");
        command
            .arg(format!("--root={}", storage.join("root").display()))
            .arg(format!("--runroot={}", storage.join("run").display()))
            .arg("--storage-driver=vfs");
        command
    };
    let container = output(buildah().args(["from", "scratch"]))?;
    let container = container.trim();
    run(buildah()
        .arg("copy")
        .arg(container)
        .arg(&pause)
        .arg("/pause"))?;
    run(buildah().args(["config", "--entrypoint", r#"["/pause"]"#, container]))?;
    run(buildah()
        .arg("commit")
        .arg("--quiet")
        .arg(container)
        .arg(format!(
            "docker-archive:{}:{SANDBOX_IMAGE}",
            archive.display()
        )))?;
    let _ = run(buildah().args(["rm", container]));
    let _ = fs::remove_dir_all(&storage);
    Ok(archive)
}

fn containerd_toml(containerd_dir: &Path, cni_dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  # runc cannot write oom_score_adj here: the VM's bounding set lacks CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, so teardown finds them there.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"#,
        root = containerd_dir.join("root").display(),
        state = containerd_dir.join("state").display(),
        socket = containerd_dir.join("containerd.sock").display(),
        cni_conf = cni_dir.join("net.d").display(),
    )
}

fn cni_conflist(cni_dir: &Path, pod_subnet: &str) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "testenv",
        "plugins": [{
            "type": "bridge",
            "bridge": "testenv0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": pod_subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": cni_dir.join("ipam").display().to_string(),
            }
        }]
    })
    .to_string()
}

fn kubelet_yaml(info: &NodeInfo, cgroup_root: &str, ca_cert: &Path, node_dir: &Path) -> String {
    let resolv_conf = node_dir.join("resolv.conf");
    // Pods get no name servers: nothing outside the node's namespace is to be reached.
    let _ = fs::write(&resolv_conf, "");
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {node_ip}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
# This machine has cgroup v1 only; kubelet 1.36 refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {pod_logs}
resolvConf: {resolv_conf}
clusterDomain: cluster.local
# A test machine's disk is shared with builds: never evict or collect images for space.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
"#,
        node_ip = info.node_ip,
        ca = ca_cert.display(),
        socket = info.containerd_socket.display(),
        pod_logs = node_dir.join("pod-logs").display(),
        resolv_conf = resolv_conf.display(),
    )
}

/// Runs `command`; an error carries its output.
fn run(command: &mut Command) -> anyhow::Result<()> {
    output(command).map(|_| ())
}

/// Runs `command` and returns its stdout; an error carries its output.
fn output(command: &mut Command) -> anyhow::Result<String> {
    let described = format!("{command:?}");
    let result = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {described}"))?;
    if !result.status.success() {
        bail!(
            "{described} failed with {}: {}{}",
            result.status,
            String::from_utf8_lossy(&result.stderr).trim(),
            String::from_utf8_lossy(&result.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&result.stdout).into_owned())
}
