//! A local emulator of the Thalassa Cloud Secrets Manager, KMS key lifecycle and `/oidc/token`,
//! with real envelope encryption, feature gates, regional KMS outages, fault injection and
//! request counters. See `emulator/README.md` for the behaviour chosen where the API is silent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod config;
mod control;
mod crypto;
mod error;
mod faults;
mod http;
mod model;
mod oidc;

pub use config::{
    Access, EmulatorConfig, FederatedIdentitySpec, JwksSource, OidcClientSpec, Seed, SeedKey,
    SeedSecret, SeedValue, SeedValueDoc, TokenScheme, TokenSpec,
};
pub use control::Control;
pub use crypto::KeyType;
pub use error::ApiError;
pub use faults::{Counters, Faults};

/// Counter names for each Thalassa operation, as recorded in [`Counters`].
pub const OPERATIONS: [&str; 20] = [
    "browseSecrets",
    "listSecrets",
    "createSecret",
    "getSecret",
    "updateAccessPolicy",
    "putSecretValue",
    "getSecretValue",
    "destroySecretVersion",
    "deleteSecret",
    "kmsSummary",
    "listKeys",
    "createKey",
    "getKey",
    "deleteKey",
    "cancelKeyDeletion",
    "disableKey",
    "enableKey",
    "rotateKey",
    "updateRotation",
    "token",
];

/// A running emulator. Dropping it without [`Emulator::shutdown`] leaves the server task
/// running until the runtime ends.
pub struct Emulator {
    addr: SocketAddr,
    organisation: String,
    token: String,
    shared: Arc<http::Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        anyhow::ensure!(
            !config.regions.is_empty(),
            "at least one region is required"
        );
        let mut store = model::Store::new(config.organisation.clone(), &config.regions);
        let mut tokens = config.tokens;
        if tokens.is_empty() {
            tokens.push(TokenSpec::bearer(model::random_token("emu_")));
        }
        let token = tokens[0].token.clone();
        for spec in tokens {
            store
                .add_token(spec, "config")
                .context("invalid token configuration")?;
        }
        let oidc = oidc::OidcConfig::new(config.oidc_clients, config.federated_identities)
            .context("invalid OIDC configuration")?;
        let shared = Arc::new(http::Shared {
            store: Mutex::new(store),
            oidc,
        });
        let control = Control {
            shared: shared.clone(),
            project: None,
        };
        if let Some(seed) = &config.seed {
            control
                .apply_seed(seed, &config.regions[0])
                .context("applying seed")?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = http::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        Ok(Emulator {
            addr,
            organisation: config.organisation,
            token,
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn organisation(&self) -> &str {
        &self.organisation
    }

    /// The first configured token (or the generated one).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
            project: None,
        }
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
