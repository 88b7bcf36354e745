//! `POST /oidc/token` (form-encoded).

use std::collections::HashMap;

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;

use super::AppState;
use crate::oidc::{
    GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, OAuthError, TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT, parse_lifetime,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/oidc/token", post(token))
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
            "message": format!("{}: {}", self.error, self.description),
        });
        (status, Json(body)).into_response()
    }
}

async fn token(
    State(shared): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match issue(&shared, &headers, form).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn issue(
    shared: &AppState,
    headers: &HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<serde_json::Value, OAuthError> {
    let Form(form) = form.map_err(|e| OAuthError::invalid_request(e.body_text()))?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let grant =
        field("grant_type").ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let lifetime = parse_lifetime(field("access_token_lifetime"))?;
    let (access, origin) = match grant {
        GRANT_CLIENT_CREDENTIALS => {
            let (id, secret) = match basic_credentials(headers) {
                Some(pair) => pair,
                None => (
                    field("client_id").unwrap_or_default().to_owned(),
                    field("client_secret").unwrap_or_default().to_owned(),
                ),
            };
            let client = shared.oidc.client(&id, &secret)?;
            (client.access.clone(), format!("client-credentials:{id}"))
        }
        GRANT_TOKEN_EXCHANGE => {
            let subject_token = field("subject_token")
                .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
            match field("subject_token_type") {
                Some(TOKEN_TYPE_JWT | TOKEN_TYPE_ID_TOKEN) => {}
                other => {
                    return Err(OAuthError::invalid_request(format!(
                        "subject_token_type must be {TOKEN_TYPE_JWT} or {TOKEN_TYPE_ID_TOKEN}, got {other:?}"
                    )));
                }
            }
            let organisation = field("organisation_id")
                .ok_or_else(|| OAuthError::invalid_request("organisation_id is required"))?;
            let service_account = field("service_account_id")
                .ok_or_else(|| OAuthError::invalid_request("service_account_id is required"))?;
            if organisation != shared.store().organisation {
                return Err(OAuthError::invalid_grant(format!(
                    "unknown organisation {organisation}"
                )));
            }
            let (access, subject) = shared.oidc.exchange(service_account, subject_token).await?;
            (
                access,
                format!("token-exchange:{service_account}:{subject}"),
            )
        }
        other => return Err(OAuthError::unsupported_grant_type(other)),
    };
    let token = shared.store().issue_token(access, lifetime, origin);
    Ok(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }))
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` as Go's oauth2 sends it.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((percent_decode(id)?, percent_decode(secret)?))
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
