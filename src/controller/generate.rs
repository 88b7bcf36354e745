//! Values Thalassa generates (`data[].generate`): the secret is created with `generateSecret`
//! when a direct lookup of its path answers a definite "not found", and a new generated version
//! is stored once per value of the rotate-generated annotation.
//!
//! In: the resource, its validated spec and the connection's [`SourceCache`]. Out: the source
//! metadata (as [`resolve::resolve_sources`] gives it, after any creation), or the rotation value
//! handled. Writes to Thalassa only: `createSecret` (S3) once in the lifetime of a path, and
//! `putSecretValue` (S6) once per path and rotation value. Never generates over an existing
//! secret: only a lookup that answered 404 leads to a create, a 409 on create means someone
//! created it meanwhile (it is read as usual), and any other failure is reported as it is.
//! Generated values are never seen here: Thalassa answers a create or put with metadata only.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kube::{
    ResourceExt,
    runtime::{events::EventType, reflector::ObjectRef},
};
use tracing::{debug, info};

use super::{Context, apply, plan::SourceMetas, resolve, validate::ValidatedSpec};
use crate::{
    crd::{
        GENERATED_BY_LABEL, GENERATED_FOR_ANNOTATION, GENERATED_FOR_UID_ANNOTATION, MANAGED_BY,
        ROTATE_GENERATED_ANNOTATION, ThalassaSecret,
    },
    error::{Error, GenerateStep, Result},
    sources::SourceCache,
    thalassa::{self, CreateSecretRequest, SecretValueInput},
};

/// [`resolve::resolve_sources`], creating each generated path a direct lookup found missing
/// (at most once per path in one reconcile) and resolving again.
pub(super) async fn resolve_generating(
    ts: &ThalassaSecret,
    ctx: &Context,
    spec: &ValidatedSpec,
    sources: &SourceCache,
    max_age: Duration,
) -> Result<SourceMetas> {
    let mut created = BTreeSet::new();
    loop {
        let error = match resolve::resolve_sources(spec, sources, max_age).await {
            Ok(metas) => return Ok(metas),
            Err(error) => error,
        };
        let Some(path) = missing_generated(spec, &error) else {
            return Err(error);
        };
        if !created.insert(path.to_string()) {
            // Created (or found created) in this reconcile and still "not found": report it.
            return Err(error);
        }
        let path = path.to_string();
        create(ts, ctx, spec, sources, &path).await?;
        sources.forget_path(&spec.region, &path);
    }
}

/// The generated path `error` proves missing: a definite 404 of the path itself (not a 403, an
/// outage, a missing version or key) for a `data[]` entry with `generate`.
fn missing_generated<'a>(spec: &ValidatedSpec, error: &'a Error) -> Option<&'a str> {
    let Error::Thalassa { source } = error else {
        return None;
    };
    match &**source {
        thalassa::Error::SecretNotFound { path, .. } if spec.generated.contains_key(path) => {
            Some(path)
        }
        _ => None,
    }
}

/// The create request for a generated `path`: the spec's key, the creator recorded in labels
/// and annotations (Thalassa metadata is set at create only).
fn create_request(ts: &ThalassaSecret, path: &str, bytes: u32, key: &str) -> CreateSecretRequest {
    let namespace = ts.namespace().unwrap_or_default();
    let mut request =
        CreateSecretRequest::new(path, key, SecretValueInput::Generate { byte_length: bytes });
    request.description = Some(format!(
        "generated for ThalassaSecret {namespace}/{}",
        ts.name_any()
    ));
    request
        .labels
        .insert(GENERATED_BY_LABEL.into(), MANAGED_BY.into());
    request.annotations.insert(
        GENERATED_FOR_ANNOTATION.into(),
        format!("{namespace}/{}", ts.name_any()),
    );
    if let Some(uid) = ts.uid() {
        request
            .annotations
            .insert(GENERATED_FOR_UID_ANNOTATION.into(), uid);
    }
    request
}

/// `createSecret` with a generated value at `path`; a 409 (created meanwhile) is success: the
/// secret is read as usual.
async fn create(
    ts: &ThalassaSecret,
    ctx: &Context,
    spec: &ValidatedSpec,
    sources: &SourceCache,
    path: &str,
) -> Result<()> {
    let (Some(bytes), Some(key)) = (spec.generated.get(path), &ts.spec.kms_key_identity) else {
        return Err(Error::Internal(format!(
            "{path} is not a generated entry with a key"
        )));
    };
    let request = create_request(ts, path, *bytes, key);
    match sources.client().create_secret(&spec.region, &request).await {
        Ok(_) => {
            info!(path, "created the secret with a value Thalassa generated");
            let note = format!("created {path} in Thalassa with a generated value ({bytes} bytes)");
            apply::publish(ctx, ts, EventType::Normal, "GeneratedValueCreated", note).await;
            Ok(())
        }
        Err(thalassa::Error::Conflict { .. }) => {
            debug!(
                path,
                "created meanwhile by someone else; reading it as usual"
            );
            Ok(())
        }
        Err(source) => Err(Error::Generate {
            step: GenerateStep::Create,
            path: path.to_string(),
            source: Arc::new(source),
        }),
    }
}

/// The rotate-generated value not handled yet (recorded in status once handled).
pub(super) fn rotation_requested(ts: &ThalassaSecret) -> Option<&str> {
    let value = ts
        .metadata
        .annotations
        .as_ref()?
        .get(ROTATE_GENERATED_ANNOTATION)?;
    let handled = ts
        .status
        .as_ref()
        .and_then(|s| s.rotate_generated_handled.as_ref());
    (handled != Some(value)).then_some(value.as_str())
}

/// Acts on a new rotate-generated value: one `putSecretValue` with `generateSecret` per
/// generated path not rotated for this value yet (a path not created yet is left to the create).
/// Returns the value once every path is rotated.
pub(super) async fn rotate(
    ts: &ThalassaSecret,
    ctx: &Context,
    spec: &ValidatedSpec,
    sources: &SourceCache,
) -> Result<Option<String>> {
    let Some(value) = rotation_requested(ts) else {
        return Ok(None);
    };
    let key = ObjectRef::from_obj(ts);
    for (path, bytes) in &spec.generated {
        if ctx.memory.is_rotated(&key, value, path) {
            continue;
        }
        let input = SecretValueInput::Generate {
            byte_length: *bytes,
        };
        match sources
            .client()
            .put_secret_value(&spec.region, path, &input)
            .await
        {
            Ok(stored) => {
                info!(
                    path,
                    version = stored.version,
                    "stored a new generated version"
                );
                let note = format!(
                    "stored version {} of {path} in Thalassa with a generated value",
                    stored.version
                );
                apply::publish(ctx, ts, EventType::Normal, "GeneratedValueRotated", note).await;
            }
            Err(e) if e.is_definite_not_found() => {
                debug!(
                    path,
                    "not created yet; the sync creates it with a generated value"
                );
            }
            Err(source) => {
                return Err(Error::Generate {
                    step: GenerateStep::Rotate,
                    path: path.clone(),
                    source: Arc::new(source),
                });
            }
        }
        ctx.memory.note_rotated(&key, value, path);
        sources.forget_path(&spec.region, path);
    }
    Ok(Some(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{
        fixtures::{config, resource},
        validate::validate,
    };

    fn generating() -> ThalassaSecret {
        resource(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: app}\nspec:\n  kmsKeyIdentity: key-1\n  data: [{secretKey: p, remoteRef: {path: /gen/p}, generate: {}}, {secretKey: q, remoteRef: {path: /read/q}}]\n",
        )
    }

    #[test]
    fn only_a_definite_not_found_of_a_generated_path_creates() {
        let ts = generating();
        let spec = validate(&ts, &config()).unwrap();
        let not_found = |path: &str| {
            Error::from(thalassa::Error::SecretNotFound {
                path: path.into(),
                message: String::new(),
            })
        };
        assert_eq!(
            missing_generated(&spec, &not_found("/gen/p")),
            Some("/gen/p")
        );
        assert_eq!(missing_generated(&spec, &not_found("/read/q")), None);
        let denied = Error::from(thalassa::Error::Forbidden {
            path: Some("/gen/p".into()),
            message: String::new(),
        });
        assert_eq!(missing_generated(&spec, &denied), None);
        let outage = Error::from(thalassa::Error::Server {
            status: 503,
            message: String::new(),
        });
        assert_eq!(missing_generated(&spec, &outage), None);
        let gated = Error::from(thalassa::Error::SecretsFeatureDisabled {
            message: String::new(),
        });
        assert_eq!(missing_generated(&spec, &gated), None);
    }

    #[test]
    fn the_create_request_records_its_creator_and_asks_for_generation() {
        let ts = generating();
        let body = serde_json::to_value(create_request(&ts, "/gen/p", 32, "key-1")).unwrap();
        assert_eq!(body["path"], "/gen/p");
        assert_eq!(body["kmsKeyIdentity"], "key-1");
        assert_eq!(body["generateSecret"]["byteLength"], 32);
        assert_eq!(body["labels"]["managed-by"], "thalassa-secrets-operator");
        assert_eq!(
            body["annotations"]["secrets.thalassa.cloud/generated-for"],
            "team/app"
        );
        assert_eq!(
            body["annotations"]["secrets.thalassa.cloud/generated-for-uid"],
            "uid-1"
        );
        assert!(body.get("secretString").is_none());
    }

    #[test]
    fn a_rotation_value_is_acted_on_until_recorded() {
        let mut ts = generating();
        assert_eq!(rotation_requested(&ts), None);
        ts.metadata.annotations = Some([(ROTATE_GENERATED_ANNOTATION.into(), "1".into())].into());
        assert_eq!(rotation_requested(&ts), Some("1"));
        ts.status.get_or_insert_default().rotate_generated_handled = Some("1".into());
        assert_eq!(rotation_requested(&ts), None);
    }
}
