//! `thalassa-emulator`: serves the Thalassa Secrets Manager / KMS / token emulator.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use thalassa_emulator::{Emulator, EmulatorConfig, Faults, Seed, TokenSpec};

/// A local Thalassa Cloud Secrets Manager, KMS and token endpoint for tests and demos.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Full-access bearer token accepted by the API.
    #[arg(
        long,
        default_value = "emulator-token",
        env = "THALASSA_EMULATOR_TOKEN"
    )]
    token: String,
    /// Organisation identity expected in X-Organisation-Identity.
    #[arg(long, default_value = "org-local")]
    organisation: String,
    /// Region slug (repeatable). Default: nl-01.
    #[arg(long = "region")]
    regions: Vec<String>,
    /// YAML file with keys and secrets to create at start.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Enable the `secrets` feature gate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    secrets_feature: bool,
    /// Enable the `kms` feature gate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    kms_feature: bool,
    /// Region whose KMS backend starts unavailable (repeatable).
    #[arg(long)]
    kms_unavailable: Vec<String>,
    /// Latency added to every API request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // stdout carries only the start-up banner, so scripts can read the URL from its first line.
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed: Option<Seed> = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seed file {}", path.display()))?;
            Some(
                serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing seed file {}", path.display()))?,
            )
        }
        None => None,
    };
    let regions = if args.regions.is_empty() {
        vec!["nl-01".to_owned()]
    } else {
        args.regions.clone()
    };
    let emulator = Emulator::start(EmulatorConfig {
        listen: args.listen,
        organisation: args.organisation.clone(),
        regions: regions.clone(),
        tokens: vec![TokenSpec::bearer(args.token.clone())],
        seed,
        ..EmulatorConfig::default()
    })
    .await?;
    let control = emulator.control();
    control.set_feature_gates(args.secrets_feature, args.kms_feature);
    for region in &args.kms_unavailable {
        control
            .set_kms_available(region, false)
            .with_context(|| format!("--kms-unavailable {region}"))?;
    }
    if args.latency_ms > 0 {
        control.set_faults(Faults {
            latency_ms: args.latency_ms,
            ..Faults::default()
        });
    }
    // The one place a token is printed: the operator of this process chose it.
    println!("Thalassa emulator listening on {}", emulator.base_url());
    println!("  organisation : {}", emulator.organisation());
    for region in &regions {
        let available = !args.kms_unavailable.contains(region);
        println!("  region       : {region} (KMS available: {available})");
    }
    println!(
        "  features     : secrets={} kms={}",
        args.secrets_feature, args.kms_feature
    );
    println!("  token        : {}", emulator.token());
    println!("  control      : {}/_emulator/state", emulator.base_url());
    println!(
        "Try: curl -H 'Authorization: Bearer {}' -H 'X-Organisation-Identity: {}' {}/v1/kms/summary",
        emulator.token(),
        emulator.organisation(),
        emulator.base_url()
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}
