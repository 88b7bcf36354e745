//! KMS summary and key lifecycle routes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, patch, post};

use super::{AppState, caller, json_body, respond};
use crate::error::ApiError;
use crate::model::{CreateKeyRequest, KeyFilters, KeyView, UpdateRotationRequest};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kms/summary", get(summary))
        .route("/v1/kms/{region}/keys", get(list).post(create))
        .route(
            "/v1/kms/{region}/keys/{id}",
            get(get_key).delete(delete_key),
        )
        .route(
            "/v1/kms/{region}/keys/{id}/cancel-deletion",
            delete(cancel_deletion),
        )
        .route("/v1/kms/{region}/keys/{id}/disable", post(disable))
        .route("/v1/kms/{region}/keys/{id}/enable", post(enable))
        .route("/v1/kms/{region}/keys/{id}/rotate", post(rotate))
        .route(
            "/v1/kms/{region}/keys/{id}/rotation",
            patch(update_rotation),
        )
}

async fn summary(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let result = caller(&shared, &headers).map(|caller| shared.store().kms_summary(&caller));
    respond(StatusCode::OK, result)
}

async fn list(
    State(shared): State<AppState>,
    Path(region): Path<String>,
    Query(filters): Query<KeyFilters>,
    headers: HeaderMap,
) -> Response {
    let result = caller(&shared, &headers)
        .and_then(|caller| shared.store().list_keys(&caller, &region, &filters));
    respond(StatusCode::OK, result)
}

async fn create(
    State(shared): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = caller(&shared, &headers).and_then(|caller| {
        let request: CreateKeyRequest = json_body(&body)?;
        shared.store().create_key(&caller, &region, request)
    });
    respond(StatusCode::CREATED, result)
}

async fn get_key(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result =
        caller(&shared, &headers).and_then(|caller| shared.store().get_key(&caller, &region, &id));
    respond(StatusCode::OK, result)
}

type KeyOp =
    fn(&mut crate::model::Store, &crate::model::Caller, &str, &str) -> Result<KeyView, ApiError>;

fn key_op(shared: &AppState, headers: &HeaderMap, region: &str, id: &str, op: KeyOp) -> Response {
    let result =
        caller(shared, headers).and_then(|caller| op(&mut shared.store(), &caller, region, id));
    respond(StatusCode::OK, result)
}

async fn delete_key(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    key_op(
        &shared,
        &headers,
        &region,
        &id,
        crate::model::Store::delete_key,
    )
}

async fn cancel_deletion(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    key_op(
        &shared,
        &headers,
        &region,
        &id,
        crate::model::Store::cancel_key_deletion,
    )
}

async fn disable(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    key_op(
        &shared,
        &headers,
        &region,
        &id,
        crate::model::Store::disable_key,
    )
}

async fn enable(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    key_op(
        &shared,
        &headers,
        &region,
        &id,
        crate::model::Store::enable_key,
    )
}

async fn rotate(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    key_op(
        &shared,
        &headers,
        &region,
        &id,
        crate::model::Store::rotate_key,
    )
}

async fn update_rotation(
    State(shared): State<AppState>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = caller(&shared, &headers).and_then(|caller| {
        let request: UpdateRotationRequest = json_body(&body)?;
        shared
            .store()
            .update_rotation(&caller, &region, &id, request)
    });
    respond(StatusCode::OK, result)
}
