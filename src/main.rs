//! `thalassa-secrets-operator`: wires configuration, telemetry, the Kubernetes and Thalassa
//! clients, the HTTP server and the controller together. All logic lives in the library.

use anyhow::{Context as _, bail};
use kube::{Api, Client, runtime::events::Reporter};
use std::sync::Arc;

use thalassa_operator::{
    config::{Cli, Command},
    controller::{self, RunSettings},
    crd::ThalassaSecret,
    leader,
    metrics::Metrics,
    readiness::Readiness,
    server, telemetry, thalassa,
};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    // The template sandbox is this binary too: it limits itself and renders one request, before
    // any runtime, thread or client exists.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            thalassa_operator::template::SANDBOX_ARG,
        ))
    {
        std::process::exit(thalassa_operator::template::sandbox_main());
    }
    operator()
}

#[tokio::main]
async fn operator() -> anyhow::Result<()> {
    thalassa::install_crypto_provider();
    let cli = Cli::parse_args();
    telemetry::init(cli.args.log_format == "json");
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.args).await,
        Command::Check { region, key, path } => check(cli.args, region, key, path).await,
    }
}

/// `check`: walks the Thalassa dependency chain, prints the table and exits with status 1 when a
/// check failed. Needs no Kubernetes access.
async fn check(
    args: thalassa_operator::config::Args,
    region: Option<String>,
    key: Option<String>,
    path: Option<String>,
) -> anyhow::Result<()> {
    use thalassa_operator::check;
    let config = args.into_config()?;
    if !config.has_default_connection {
        bail!(
            "check needs a connection: give --organisation and one kind of credentials (see --help)"
        );
    }
    let region = region.unwrap_or(config.default_region);
    println!(
        "Checking Thalassa at {} (organisation {}{}), region {region}\n",
        config.thalassa.base_url,
        config.thalassa.organisation,
        config
            .thalassa
            .project
            .as_deref()
            .map(|p| format!(", project {p}"))
            .unwrap_or_default()
    );
    let client =
        thalassa::Client::new(config.thalassa).context("invalid Thalassa client settings")?;
    let results = check::run_checks(&client, &region, key.as_deref(), path.as_deref()).await;
    print!("{}", check::render_table(&results));
    if check::any_failed(&results) {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(args: thalassa_operator::config::Args) -> anyhow::Result<()> {
    let mut config = args.into_config()?;
    let metrics = Arc::new(Metrics::new());
    config.thalassa.observer = Some(metrics.clone());
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    // Fail early with a hint instead of a watch error loop when the CRD is missing.
    let probe: Api<ThalassaSecret> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = kube::api::ListParams::default().limit(1);
    if let Some(selector) = &config.selector {
        params = params.labels(selector);
    }
    if let Err(e) = probe.list(&params).await {
        if let (Some(selector), kube::Error::Api(status)) = (&config.selector, &e)
            && status.code == 400
        {
            bail!(
                "invalid --selector {selector:?} (SELECTOR): the API server says: {}",
                status.message
            );
        }
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
    let thalassa = if config.has_default_connection {
        Some(
            thalassa::Client::new(config.thalassa.clone())
                .context("invalid Thalassa client settings")?,
        )
    } else {
        tracing::info!("no default connection: every ThalassaSecret must name a store");
        None
    };
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
    // Its own thread and runtime: the probes answer whatever load the reconciles are under.
    let server = server::serve_on_own_thread(
        config.metrics_addr,
        readiness.clone(),
        metrics.clone(),
        stopped(stop_rx.clone()),
    )
    .context("cannot serve /healthz, /readyz and /metrics")?;
    tracing::info!(addr = %config.metrics_addr, "serving /healthz, /readyz and /metrics");
    let settings = |readiness: Readiness| RunSettings {
        hash_key: hash_key.clone(),
        reporter: reporter.clone(),
        metrics: metrics.clone(),
        readiness,
    };

    let namespace = config.operator_namespace.clone();
    let election = config.leader_election.clone();
    let outcome = leader::run_as_elected(
        client.clone(),
        &namespace,
        election.as_ref(),
        &readiness,
        &metrics,
        stop_rx.clone(),
        |shutdown| {
            controller::run(
                client,
                config,
                thalassa,
                settings(readiness.clone()),
                shutdown,
            )
        },
    )
    .await
    .context("cannot join the leader election")?;
    readiness.set(false);
    if outcome == leader::Outcome::LostLease {
        // Exit so Kubernetes restarts this replica as a follower with clean state.
        bail!("lost the leader lease; exiting");
    }
    server
        .await
        .context("server thread")?
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
