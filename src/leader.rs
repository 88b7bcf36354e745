//! Leader election with a Lease (kube-lease-manager): several replicas run, exactly one writes.
//! The lease is renewed in the background and released on shutdown, so a planned restart hands
//! over at once; a crashed leader is replaced when its lease expires.

use std::{future::Future, pin::Pin, time::Duration};

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};

use crate::{config::LeaderElection, crd::FIELD_MANAGER, metrics::Metrics, readiness::Readiness};

/// The future that tells the controller to shut down.
pub(crate) type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>>;

/// How a run of the controller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Shutdown was requested (or this replica never became the leader before it).
    Stopped,
    /// This replica lost the lease while leading: the process should exit, so Kubernetes
    /// restarts it as a follower with clean state.
    LostLease,
}

/// Runs the controller for as long as this replica may write. Without an election: at once,
/// until `stop`. With one: a follower is ready (it knows its role) and waits for the lease; the
/// leader runs `controller` (not ready until its caches sync) until `stop` or until the lease is
/// lost, then releases the lease. `controller` gets the future that tells it to shut down.
pub async fn run_as_elected<F, Fut>(
    client: Client,
    namespace: &str,
    election: Option<&LeaderElection>,
    readiness: &Readiness,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
    controller: F,
) -> Result<Outcome, kube_lease_manager::LeaseManagerError>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(election) = election else {
        controller(Box::pin(stopped(stop.clone()))).await;
        return Ok(Outcome::Stopped);
    };
    let mut leadership = join(client, namespace, election).await?;
    readiness.set(true);
    tracing::info!(identity = %election.identity, lease = %election.lease_name, "waiting for the leader lease");
    let acquired = tokio::select! {
        acquired = leadership.acquired() => acquired,
        _ = stopped(stop.clone()) => false,
    };
    let mut outcome = Outcome::Stopped;
    if acquired {
        tracing::info!(identity = %election.identity, "became the leader");
        metrics.set_leader(true);
        readiness.set(false);
        let state = leadership.subscribe();
        let shutdown = {
            let stop = stopped(stop.clone());
            let lost = lost(state.clone());
            async move {
                tokio::select! {
                    _ = stop => {}
                    _ = lost => {}
                }
            }
        };
        controller(Box::pin(shutdown)).await;
        if !*state.borrow() && !*stop.borrow() {
            outcome = Outcome::LostLease;
        }
        metrics.set_leader(false);
    }
    leadership.release().await;
    Ok(outcome)
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// This replica's place in the election.
pub(crate) struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

/// Joins the election for the Lease in `namespace`.
pub(crate) async fn join(
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
    pub(crate) async fn acquired(&mut self) -> bool {
        self.state.wait_for(|leader| *leader).await.is_ok()
    }

    /// A receiver that tells whether this replica is the leader.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Leaves the election, releasing the lease if held (bounded so shutdown stays prompt).
    pub(crate) async fn release(self) {
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
pub(crate) async fn lost(mut state: watch::Receiver<bool>) {
    let _ = state.wait_for(|leader| !*leader).await;
}
