//! `testenv up --dir D`: starts a control plane for scripts (e.g. `tools/test-all.sh`) and for
//! trying the operator by hand, writes `D/kubeconfig` and `D/env`, and stays in the foreground
//! until SIGTERM or SIGINT, then stops everything.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use testenv::{ControlPlane, StartOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    about = "Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start a control plane and run it until SIGTERM/SIGINT.
    Up {
        /// Run directory (created if missing; kept after stopping): kubeconfig, env, logs/.
        #[arg(long)]
        dir: PathBuf,
        /// Directory with etcd, kube-apiserver, kube-controller-manager
        /// (default: $TESTENV_BIN_DIR, else tools/build-tools.sh).
        #[arg(long, env = "TESTENV_BIN_DIR")]
        bin_dir: Option<PathBuf>,
        /// Also stop when the process with this PID exits (e.g. the calling script's $$), so a
        /// killed script cannot leave a control plane behind.
        #[arg(long)]
        exit_with: Option<u32>,
        /// CRD manifest file or directory of *.yaml to install before kube-controller-manager
        /// starts (repeatable), so its garbage collector knows those kinds from the start.
        #[arg(long = "crds")]
        crds: Vec<PathBuf>,
        /// Also run a kubelet node (containerd, runc, CNI bridge) in a network namespace of its
        /// own, so Deployments run as pods (needs root and tools/node-packages.sh).
        #[arg(long)]
        node: bool,
    },
    /// Exit 0 if this machine can run a node (`up --node`), else print why and exit 1.
    NodeCheck,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Commands::Up {
            dir,
            bin_dir,
            exit_with,
            crds,
            node,
        } => {
            let options = StartOptions {
                bin_dir,
                dir: Some(dir),
                keep_dir: true,
                startup_timeout: None,
                crds,
                node,
            };
            up(options, exit_with).await
        }
        Commands::NodeCheck => match testenv::node_missing_prerequisites() {
            None => Ok(()),
            Some(reason) => {
                eprintln!("{reason}");
                std::process::exit(1)
            }
        },
    }
}

async fn up(options: StartOptions, exit_with: Option<u32>) -> anyhow::Result<()> {
    // Register the handlers before the (slow) start, so a signal during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let control_plane = tokio::task::spawn_blocking(move || ControlPlane::start(options)).await??;
    eprintln!(
        "testenv: control plane ready in {:.1}s at {}\n  kubeconfig: {}\n  logs:       {}\n  pids:       {:?}",
        control_plane.startup_duration().as_secs_f64(),
        control_plane.api_url(),
        control_plane.kubeconfig_path().display(),
        control_plane.log_dir().display(),
        control_plane.component_pids(),
    );
    if let Some(node) = control_plane.node() {
        eprintln!(
            "  node:       {} (host address {}, containerd {})",
            node.name,
            node.host_ip,
            node.containerd_socket.display()
        );
    }
    println!("source {}", control_plane.dir().join("env").display());

    let owner_gone = async {
        match exit_with {
            Some(pid) => loop {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sigterm.recv() => eprintln!("testenv: SIGTERM, stopping"),
        _ = sigint.recv() => eprintln!("testenv: SIGINT, stopping"),
        () = owner_gone => eprintln!("testenv: process {} exited, stopping", exit_with.unwrap_or_default()),
    }
    tokio::task::spawn_blocking(move || control_plane.stop()).await?;
    eprintln!("testenv: stopped");
    Ok(())
}
