//! Leader election with a Lease (kube-lease-manager): several replicas run, exactly one writes.
//! The lease is renewed in the background and released on shutdown, so a planned restart hands
//! over at once; a crashed leader is replaced when its lease expires.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};

use crate::{config::LeaderElection, crd::FIELD_MANAGER};

/// This replica's place in the election.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

/// Joins the election for the Lease in `namespace`.
pub async fn join(
    client: Client,
    namespace: &str,
    settings: &LeaderElection,
) -> Result<Leadership, kube_lease_manager::LeaseManagerError> {
    let duration = settings.lease_duration.as_secs().max(5);
    // Renew a third of the way before expiry, so one slow API call does not lose the lease.
    let grace = (duration / 3).max(2);
    let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
        .with_namespace(namespace)
        .with_identity(&settings.identity)
        .with_duration(duration)
        .with_grace(grace)
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await?;
    let (state, task) = manager.watch().await;
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Waits until this replica holds the lease. Returns false if the election task ended.
    pub async fn acquired(&mut self) -> bool {
        self.state.wait_for(|leader| *leader).await.is_ok()
    }

    /// A receiver that tells whether this replica is the leader.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Leaves the election, releasing the lease if held (bounded so shutdown stays prompt).
    pub async fn release(self) {
        let Leadership { state, task } = self;
        // Closing the channel makes the background task release the lease and finish.
        drop(state);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
            Err(_) => tracing::warn!("timed out releasing the leader lease"),
        }
    }
}

/// Resolves when `state` says this replica is no longer the leader.
pub async fn lost(mut state: watch::Receiver<bool>) {
    let _ = state.wait_for(|leader| !*leader).await;
}
