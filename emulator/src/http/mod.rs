//! The HTTP surface: Thalassa API routes (with faults, counters and logging) and the
//! `/_emulator/*` control routes (without).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::faults::{Injected, operation_name};
use crate::model::{Caller, Store};
use crate::oidc::OidcConfig;

mod control;
mod kms;
mod oidc;
mod secrets;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub oidc: OidcConfig,
}

impl Shared {
    /// Locks the store. A panic while holding the lock leaves plain data behind, so a poisoned
    /// lock is still usable.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) type AppState = Arc<Shared>;

pub(crate) fn router(shared: AppState) -> Router {
    let api = Router::new()
        .merge(secrets::routes())
        .merge(kms::routes())
        .merge(oidc::routes())
        .fallback(|| async { ApiError::not_found("not found") })
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            api_middleware,
        ))
        .with_state(shared.clone());
    Router::new()
        .nest("/_emulator", control::routes().with_state(shared))
        .merge(api)
}

/// Faults, counters and the access log for Thalassa API routes.
async fn api_middleware(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let Some(operation) = operation_name(&method, request.uri().path(), request.uri().query())
    else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let (injected, latency_ms, error_message, pad_bytes) = {
        let mut store = shared.store();
        (
            store.faults.next(),
            store.faults.latency_ms,
            store.faults.error_message.clone(),
            store.faults.pad_value_response_bytes,
        )
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let response = match injected {
        Injected::None => next.run(request).await,
        Injected::RateLimited { retry_after_secs } => {
            let message = error_message
                .unwrap_or_else(|| "too many requests (injected by the emulator)".to_owned());
            let mut response = ApiError::new(429, message).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Injected::Status(status) => ApiError::new(
            status,
            error_message.unwrap_or_else(|| format!("injected fault: status {status}")),
        )
        .into_response(),
    };
    let response =
        if operation == "getSecretValue" && response.status().is_success() && pad_bytes > 0 {
            padded(response, pad_bytes).await
        } else {
            response
        };
    let status = response.status().as_u16();
    shared.store().counters.record(operation, status);
    // Paths are not secret, but the log keeps to the operation name: values and tokens never appear.
    tracing::info!(
        method = %method,
        operation,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// The response with `pad_bytes` spaces streamed after its body, in 64 KiB chunks and without a
/// `Content-Length`, so a client has to read incrementally to notice the size.
async fn padded(response: Response, pad_bytes: u64) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(500, "emulator: cannot read the response body").into_response();
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    const CHUNK: u64 = 64 * 1024;
    let spaces = Bytes::from(vec![b' '; CHUNK as usize]);
    let padding = (0..pad_bytes.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(pad_bytes - i * CHUNK) as usize;
        Ok::<_, std::convert::Infallible>(spaces.slice(..len))
    });
    let stream = futures::stream::iter(std::iter::once(Ok(body)).chain(padding));
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// Authenticates the request and resolves its organisation and project scope.
pub(crate) fn caller(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    let store = shared.store();
    let access = store.authenticate(scheme, token.trim())?;
    let organisation = header_value(headers, "x-organisation-identity")
        .ok_or_else(|| ApiError::bad_request("missing X-Organisation-Identity header"))?;
    if organisation != store.organisation {
        return Err(ApiError::forbidden(format!(
            "permission denied: credentials are not valid for organisation {organisation}"
        )));
    }
    Ok(Caller {
        access,
        project: header_value(headers, "x-project-identity"),
        control: false,
    })
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Parses a JSON body; an empty body gives `T::default()` (reveal accepts no body at all).
pub(crate) fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: T) -> Response {
    (status, axum::Json(value)).into_response()
}

pub(crate) fn respond<T: serde::Serialize>(
    status: StatusCode,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(value) => json(status, value),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn no_content(result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
