//! `thalassa-secrets-operator`: wires configuration, telemetry, the Kubernetes and Thalassa
//! clients, the HTTP server and the controller together. All logic lives in the library.

use anyhow::{Context as _, bail};
use clap::Parser;
use kube::{Api, Client, runtime::events::Reporter};
use thalassa_operator::{
    config::{Cli, Command},
    controller,
    crd::ThalassaSecret,
    server::{self, Readiness},
    telemetry, thalassa,
};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    thalassa::install_crypto_provider();
    let cli = Cli::parse();
    telemetry::init(cli.args.log_format == "json");
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.args).await,
    }
}

async fn run(args: thalassa_operator::config::Args) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    // Fail early with a hint instead of a watch error loop when the CRD is missing.
    let probe: Api<ThalassaSecret> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = probe.list(&kube::api::ListParams::default().limit(1)).await {
        bail!(
            "cannot list ThalassaSecrets ({e}); install the CRD first: kubectl apply -f crds/ (or helm install)"
        );
    }
    let hash_key = controller::load_or_create_hash_key(
        &client,
        &config.operator_namespace,
        &config.hash_key_secret,
    )
    .await
    .context("cannot read or create the data-hash key Secret")?;
    let thalassa = thalassa::Client::new(config.thalassa.clone())
        .context("invalid Thalassa client settings")?;
    let reporter = Reporter {
        controller: "thalassa-secrets-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let readiness = Readiness::default();
    let server = tokio::spawn(server::serve(
        config.metrics_addr,
        readiness.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(addr = %config.metrics_addr, "serving /healthz and /readyz");
    readiness.set(true);
    controller::run(
        client,
        config,
        thalassa,
        hash_key,
        reporter,
        stopped(stop_rx),
    )
    .await;
    readiness.set(false);
    server
        .await
        .context("server task")?
        .context("HTTP server")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
