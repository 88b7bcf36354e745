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
pub(crate) fn router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
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

/// Serves the router on a thread of its own, with its own single-threaded runtime, until
/// `shutdown` resolves: `/healthz` and `/readyz` answer whatever the reconciles do to the main
/// runtime (a busy worker thread, a long synchronous step). Binds before returning, so a port
/// in use is an error at once; the receiver gets the server's result when it stops.
pub fn serve_on_own_thread(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("probes")
        .build()?;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router(readiness, metrics))
                    .with_graceful_shutdown(shutdown)
                    .await
            });
            let _ = done.send(served);
        })?;
    Ok(result)
}
