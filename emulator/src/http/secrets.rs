//! Secrets Manager routes S1–S9. The secret path is embedded raw after the literal `secret`,
//! so one wildcard route serves S4–S9 and tells them apart by method and suffix.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;

use super::{AppState, caller, json_body, no_content, respond};
use crate::error::ApiError;
use crate::model::{
    CreateSecretRequest, GetSecretValueRequest, PutSecretValueRequest, plain_from_fields,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/secrets/{region}/secrets",
            get(browse_or_list).post(create),
        )
        .route("/v1/secrets/{region}/{*rest}", any(secret))
}

/// S1 (`?path=`) or S2 (`?pathPrefix=`, or neither: everything).
async fn browse_or_list(
    State(shared): State<AppState>,
    Path(region): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let caller = caller(&shared, &headers)?;
        let store = shared.store();
        if let Some(dir) = query.get("path") {
            store
                .browse_secrets(&caller, &region, dir)
                .map(|v| serde_json::to_value(v).expect("view serialises"))
        } else {
            let prefix = query.get("pathPrefix").map_or("", String::as_str);
            store
                .list_secrets(&caller, &region, prefix)
                .map(|v| serde_json::to_value(v).expect("view serialises"))
        }
    })();
    respond(StatusCode::OK, result)
}

/// S3.
async fn create(
    State(shared): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = (|| {
        let caller = caller(&shared, &headers)?;
        let request: CreateSecretRequest = json_body(&body)?;
        shared.store().create_secret(&caller, &region, request)
    })();
    respond(StatusCode::CREATED, result)
}

/// S4–S9.
async fn secret(
    State(shared): State<AppState>,
    method: Method,
    Path((region, rest)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = rest
        .strip_prefix("secret")
        .filter(|p| p.is_empty() || p.starts_with('/'))
    else {
        return ApiError::not_found("not found").into_response();
    };
    let caller = match caller(&shared, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match method {
        // GET is always metadata, even for paths ending in `/value` etc.
        Method::GET => {
            let include_versions = query
                .get("includeVersions")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            respond(
                StatusCode::OK,
                shared
                    .store()
                    .get_secret(&caller, &region, path, include_versions),
            )
        }
        Method::POST => {
            if let Some(path) = path.strip_suffix("/value") {
                let result = json_body::<GetSecretValueRequest>(&body).and_then(|request| {
                    check_body_path(path, request.path.as_deref())?;
                    shared
                        .store()
                        .get_secret_value(&caller, &region, path, request.version)
                });
                respond(StatusCode::OK, result)
            } else if let Some(path) = path.strip_suffix("/versions") {
                let result = json_body::<PutSecretValueRequest>(&body).and_then(|request| {
                    check_body_path(path, request.path.as_deref())?;
                    shared.store().put_secret_value(
                        &caller,
                        &region,
                        path,
                        plain_from_fields(&request.value),
                    )
                });
                respond(StatusCode::OK, result)
            } else {
                method_not_allowed()
            }
        }
        Method::PUT => match path.strip_suffix("/policy") {
            Some(path) => {
                let result = json_body::<Value>(&body).and_then(|body| {
                    let policy = match body {
                        Value::Object(mut map) => map.remove("accessPolicy"),
                        Value::Null => None,
                        _ => return Err(ApiError::bad_request("body must be a JSON object")),
                    };
                    shared
                        .store()
                        .update_access_policy(&caller, &region, path, policy)
                });
                respond(StatusCode::OK, result)
            }
            None => method_not_allowed(),
        },
        Method::DELETE => match (path.strip_suffix("/versions"), query.get("version")) {
            (Some(path), Some(version)) => {
                let result = version
                    .parse::<u64>()
                    .map_err(|_| ApiError::bad_request("version must be a positive integer"))
                    .and_then(|version| {
                        shared
                            .store()
                            .destroy_secret_version(&caller, &region, path, version)
                    });
                no_content(result)
            }
            // Without `?version=` this deletes the secret at the full path, so a secret whose
            // last segment is literally `versions` can still be deleted.
            _ => no_content(shared.store().delete_secret(&caller, &region, path)),
        },
        _ => method_not_allowed(),
    }
}

fn check_body_path(url_path: &str, body_path: Option<&str>) -> Result<(), ApiError> {
    match body_path.map(str::trim) {
        Some(p) if !p.is_empty() && p != url_path => Err(ApiError::bad_request(format!(
            "path in body ({p}) does not match the path in the URL ({url_path})"
        ))),
        _ => Ok(()),
    }
}

fn method_not_allowed() -> Response {
    ApiError::new(405, "method not allowed").into_response()
}
