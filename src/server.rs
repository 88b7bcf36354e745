//! The operator's HTTP port: `/healthz` (the process is alive), `/readyz` (caches synced, or the
//! replica knows it is a follower) and `/metrics` (Prometheus text format).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::{metrics::Metrics, readiness::Readiness};

#[derive(Clone)]
struct ServerState {
    readiness: Readiness,
    metrics: Arc<Metrics>,
}

/// Builds the router.
pub fn router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<ServerState>| async move {
                if s.readiness.get() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<ServerState>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
                    .into_response()
            }),
        )
        .with_state(ServerState { readiness, metrics })
}

/// Serves the router until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(readiness, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
