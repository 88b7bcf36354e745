//! `/_emulator/*`: the HTTP mirror of [`crate::Control`]. Unauthenticated by design (the
//! emulator listens on loopback by default); never faulted, counted or mixed with API routes.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;

use super::{AppState, json, json_body, no_content, respond};
use crate::config::{Access, SeedValueDoc, TokenScheme, TokenSpec};
use crate::control::{Control, SecretMetadata};
use crate::error::ApiError;
use crate::faults::Faults;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/state", get(state))
        .route("/feature-gates", put(feature_gates))
        .route("/regions/{region}/kms", put(region_kms))
        .route("/tokens", post(add_token))
        .route("/tokens/{token}", delete(revoke_token))
        .route("/regions/{region}/keys/{key}/status", put(key_status))
        .route("/faults", get(get_faults).put(set_faults))
        .route("/counters", get(counters).delete(reset_counters))
        .route("/keys", post(create_key))
        .route("/keys/rotate", post(rotate_key))
        .route("/secrets", post(create_secret).delete(delete_secret))
        .route("/secrets/versions", post(put_value))
}

fn control(shared: &AppState, project: Option<String>) -> Control {
    Control {
        shared: shared.clone(),
        project,
    }
}

fn default_region(shared: &AppState, region: Option<String>) -> String {
    region.unwrap_or_else(|| shared.store().regions[0].slug.clone())
}

async fn state(State(shared): State<AppState>) -> Response {
    json(StatusCode::OK, control(&shared, None).state())
}

#[derive(Debug, Default, Deserialize)]
struct GatesBody {
    secrets: Option<bool>,
    kms: Option<bool>,
}

async fn feature_gates(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<GatesBody>(&body).map(|body| {
        let mut store = shared.store();
        store.secrets_gate = body.secrets.unwrap_or(store.secrets_gate);
        store.kms_gate = body.kms.unwrap_or(store.kms_gate);
        serde_json::json!({ "secrets": store.secrets_gate, "kms": store.kms_gate })
    });
    respond(StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize)]
struct AvailabilityBody {
    available: Option<bool>,
}

async fn region_kms(
    State(shared): State<AppState>,
    Path(region): Path<String>,
    body: Bytes,
) -> Response {
    let result = json_body::<AvailabilityBody>(&body).and_then(|body| {
        let available = body
            .available
            .ok_or_else(|| ApiError::bad_request("available (bool) is required"))?;
        control(&shared, None).set_kms_available(&region, available)?;
        Ok(serde_json::json!({ "region": region, "kmsAvailable": available }))
    });
    respond(StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    token: Option<String>,
    #[serde(default)]
    scheme: Option<TokenScheme>,
    #[serde(default)]
    access: Option<Access>,
}

/// Adds a token; a random one is generated when `token` is absent, and returned either way.
async fn add_token(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<TokenBody>(&body).and_then(|body| {
        let token = body
            .token
            .unwrap_or_else(|| crate::model::random_token("emu_"));
        control(&shared, None).add_token(TokenSpec {
            token: token.clone(),
            scheme: body.scheme.unwrap_or_default(),
            access: body.access.unwrap_or_default(),
        })?;
        Ok(serde_json::json!({ "token": token }))
    });
    respond(StatusCode::CREATED, result)
}

async fn revoke_token(State(shared): State<AppState>, Path(token): Path<String>) -> Response {
    if control(&shared, None).revoke_token(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("unknown token").into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
struct KeyStatusBody {
    status: Option<String>,
    project: Option<String>,
}

async fn key_status(
    State(shared): State<AppState>,
    Path((region, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = json_body::<KeyStatusBody>(&body).and_then(|body| {
        let status = body
            .status
            .ok_or_else(|| ApiError::bad_request("status is required"))?;
        control(&shared, body.project).set_key_status(&region, &key, &status)?;
        Ok(serde_json::json!({ "key": key, "status": status }))
    });
    respond(StatusCode::OK, result)
}

async fn get_faults(State(shared): State<AppState>) -> Response {
    json(StatusCode::OK, control(&shared, None).faults())
}

async fn set_faults(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<Faults>(&body).inspect(|faults| {
        control(&shared, None).set_faults(faults.clone());
    });
    respond(StatusCode::OK, result)
}

async fn counters(State(shared): State<AppState>) -> Response {
    json(StatusCode::OK, control(&shared, None).counters())
}

async fn reset_counters(State(shared): State<AppState>) -> Response {
    control(&shared, None).reset_counters();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateKeyBody {
    region: Option<String>,
    project: Option<String>,
    name: Option<String>,
    key_type: Option<String>,
}

async fn create_key(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<CreateKeyBody>(&body).and_then(|body| {
        let region = default_region(&shared, body.region);
        let name = body
            .name
            .ok_or_else(|| ApiError::bad_request("name is required"))?;
        let identity = control(&shared, body.project).create_key(
            &region,
            &name,
            body.key_type.as_deref().unwrap_or("aes256-gcm96"),
        )?;
        Ok(serde_json::json!({ "identity": identity, "region": region }))
    });
    respond(StatusCode::CREATED, result)
}

#[derive(Debug, Default, Deserialize)]
struct RotateKeyBody {
    region: Option<String>,
    project: Option<String>,
    key: Option<String>,
}

async fn rotate_key(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<RotateKeyBody>(&body).and_then(|body| {
        let region = default_region(&shared, body.region);
        let key = body
            .key
            .ok_or_else(|| ApiError::bad_request("key is required"))?;
        let version = control(&shared, body.project).rotate_key(&region, &key)?;
        Ok(serde_json::json!({ "key": key, "latestVersion": version }))
    });
    respond(StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    region: Option<String>,
    project: Option<String>,
    path: Option<String>,
    key: Option<String>,
    description: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    value: SeedValueDoc,
}

async fn create_secret(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<SecretBody>(&body).and_then(|body| {
        let region = default_region(&shared, body.region);
        let path = body
            .path
            .ok_or_else(|| ApiError::bad_request("path is required"))?;
        let key = body
            .key
            .ok_or_else(|| ApiError::bad_request("key is required"))?;
        let value = body.value.to_value().map_err(ApiError::bad_request)?;
        let version = control(&shared, body.project).create_secret_with(
            &region,
            &path,
            &key,
            value,
            SecretMetadata {
                description: body.description,
                labels: body.labels,
                annotations: body.annotations,
            },
        )?;
        Ok(serde_json::json!({ "path": path, "version": version }))
    });
    respond(StatusCode::CREATED, result)
}

async fn put_value(State(shared): State<AppState>, body: Bytes) -> Response {
    let result = json_body::<SecretBody>(&body).and_then(|body| {
        let region = default_region(&shared, body.region);
        let path = body
            .path
            .ok_or_else(|| ApiError::bad_request("path is required"))?;
        let value = body.value.to_value().map_err(ApiError::bad_request)?;
        let version = control(&shared, body.project).put_secret_value(&region, &path, value)?;
        Ok(serde_json::json!({ "path": path, "version": version }))
    });
    respond(StatusCode::OK, result)
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    region: Option<String>,
    project: Option<String>,
    path: String,
    version: Option<u64>,
}

/// `?path=...&version=N` destroys one version; without `version` deletes the secret.
async fn delete_secret(
    State(shared): State<AppState>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    let region = default_region(&shared, query.region);
    let control = control(&shared, query.project);
    no_content(match query.version {
        Some(version) => control.destroy_version(&region, &query.path, version),
        None => control.delete_secret(&region, &query.path),
    })
}
