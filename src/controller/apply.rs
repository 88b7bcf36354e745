//! The writes: the Secret (create, server-side apply on the resourceVersion just read, or one
//! merge patch when keys must go), the status (server-side apply, only when it changed), and
//! Events. One field manager for all of them.

use k8s_openapi::{
    api::core::v1::{ObjectReference, Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tracing::{debug, warn};

use super::{
    Context,
    plan::{Removals, Write},
};
use crate::{
    crd::{FIELD_MANAGER, ThalassaSecret},
    error::Result,
};

/// Performs the planned write; returns the Secret as written, or `None` when nothing was to do.
pub(super) async fn write_secret(
    secrets: &Api<Secret>,
    existing: Option<&Secret>,
    write: &Write,
    mut desired: Secret,
) -> Result<Option<Secret>> {
    let name = desired.name_any();
    let written = match write {
        Write::None => return Ok(None),
        Write::Create => {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            secrets.create(&params, &desired).await?
        }
        Write::Apply => {
            desired.metadata.resource_version =
                existing.and_then(|s| s.metadata.resource_version.clone());
            secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await?
        }
        Write::ReplaceKeys(remove) => {
            let patch = replace_keys_patch(
                &desired,
                existing.expect("planned on an existing Secret"),
                remove,
            );
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            secrets.patch(&name, &params, &Patch::Merge(&patch)).await?
        }
    };
    Ok(Some(written))
}

/// A JSON merge patch carrying the whole desired state plus the removal of `remove`, guarded by
/// the resourceVersion just read. Owner references of others are kept.
pub(super) fn replace_keys_patch(
    desired: &Secret,
    existing: &Secret,
    remove: &Removals,
) -> serde_json::Value {
    let mut patch = serde_json::to_value(desired).expect("a Secret serializes");
    patch["metadata"]["resourceVersion"] = json!(existing.metadata.resource_version);
    match &desired.metadata.owner_references {
        Some(ours) => {
            let mut references: Vec<OwnerReference> = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| ours.iter().all(|o| o.uid != r.uid))
                .cloned()
                .collect();
            references.extend(ours.iter().cloned());
            patch["metadata"]["ownerReferences"] = json!(references);
        }
        None => {
            if let Some(metadata) = patch["metadata"].as_object_mut() {
                metadata.remove("ownerReferences");
            }
        }
    }
    if !patch["data"].is_object() {
        patch["data"] = json!({});
    }
    for key in &remove.keys {
        patch["data"][key] = serde_json::Value::Null;
    }
    for (field, keys) in [
        ("labels", &remove.labels),
        ("annotations", &remove.annotations),
    ] {
        for key in keys {
            patch["metadata"][field][key] = serde_json::Value::Null;
        }
    }
    patch
}

/// Writes the status of a ThalassaSecret or a store with server-side apply (the caller decided
/// it changed). Returns the object's new resourceVersion.
pub(super) async fn write_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.meta().resource_version.clone())
}

pub(super) async fn publish(
    ctx: &Context,
    ts: &ThalassaSecret,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_event(
        ctx,
        &ts.object_ref(&()),
        event("Sync", type_, reason, &note),
    )
    .await;
}

/// An Event of `action`, its note cut to 1,000 characters (notes name paths, never values).
pub(super) fn event(action: &str, type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(crate::text::truncate(note, 1000)),
        action: action.into(),
        secondary: None,
    }
}

/// Publishes `event` about `reference`; in a namespace being deleted there is nobody to tell.
pub(super) async fn publish_event(ctx: &Context, reference: &ObjectReference, event: Event) {
    match ctx.recorder.publish(&event, reference).await {
        Ok(()) => {}
        Err(e) if crate::error::namespace_terminating(&e) => {
            debug!("namespace is being deleted; Event not published");
        }
        Err(e) => warn!(error = %crate::Error::from(e), "failed to publish event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::secret;

    #[test]
    fn the_replace_patch_holds_the_whole_state_and_keeps_foreign_owner_references() {
        let mut existing = secret("Opaque", None, "s1", &["old"]);
        existing.metadata.resource_version = Some("42".into());
        existing.metadata.owner_references = Some(vec![OwnerReference {
            uid: "someone".into(),
            ..Default::default()
        }]);
        let mut desired = secret("Opaque", Some("app"), "", &["new"]);
        desired.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-1".into(),
            ..Default::default()
        }]);
        let removals = Removals {
            keys: vec!["old".to_string()],
            labels: vec!["tier".to_string()],
            annotations: vec![crate::crd::TEMPLATE_ANNOTATION.to_string()],
        };
        let patch = replace_keys_patch(&desired, &existing, &removals);
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["metadata"]["labels"]["tier"], serde_json::Value::Null);
        assert_eq!(
            patch["metadata"]["annotations"][crate::crd::TEMPLATE_ANNOTATION],
            serde_json::Value::Null,
            "templated metadata no longer produced is removed"
        );
        assert_eq!(patch["data"]["old"], serde_json::Value::Null);
        assert!(patch["data"]["new"].is_string());
        let uids: Vec<&str> = patch["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uid"].as_str().unwrap())
            .collect();
        assert_eq!(uids, ["someone", "uid-1"]);
        desired.metadata.owner_references = None;
        let patch = replace_keys_patch(&desired, &existing, &Removals::default());
        assert!(patch["metadata"].get("ownerReferences").is_none());
    }
}

/// Request shapes of the Secret writes, against a tower-test mock of the apiserver: method,
/// path, query (field manager, force) and body of the one request each write sends.
#[cfg(test)]
mod request_shapes {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use std::collections::BTreeMap;

    use crate::controller::fixtures::secret;

    /// Runs `write` against a mock apiserver and returns (method, path and query, JSON body) of the
    /// only request it sent; the mock answers with `reply`.
    async fn one_request(
        existing: Option<&Secret>,
        write: Write,
        desired: Secret,
        reply: Secret,
    ) -> (String, String, serde_json::Value) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "team");
        let secrets: Api<Secret> = Api::namespaced(client, "team");
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("one request");
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let body = request.into_body().collect_bytes().await.unwrap();
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            let json = if body.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&body).unwrap()
            };
            (method, uri, json)
        });
        let written = write_secret(&secrets, existing, &write, desired)
            .await
            .unwrap();
        assert!(written.is_some());
        tokio::time::timeout(std::time::Duration::from_secs(1), server)
            .await
            .expect("the mock saw the request")
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_secret_is_created_with_the_field_manager() {
        let desired = secret("Opaque", Some("app"), "", &["password"]);
        let (method, uri, body) = one_request(None, Write::Create, desired.clone(), desired).await;
        assert_eq!(method, "POST");
        assert_eq!(
            uri,
            "/api/v1/namespaces/team/secrets?&fieldManager=thalassa-secrets-operator"
        );
        assert_eq!(body["metadata"]["name"], "app");
        assert!(body["data"]["password"].is_string());
    }

    #[tokio::test]
    async fn an_update_is_a_forced_apply_on_the_resource_version_just_read() {
        let mut existing = secret("Opaque", Some("app"), "s1", &["password"]);
        existing.metadata.resource_version = Some("41".into());
        let desired = secret("Opaque", Some("app"), "", &["password"]);
        let (method, uri, body) =
            one_request(Some(&existing), Write::Apply, desired, existing.clone()).await;
        assert_eq!(method, "PATCH");
        assert_eq!(
            uri,
            "/api/v1/namespaces/team/secrets/app?&force=true&fieldManager=thalassa-secrets-operator"
        );
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        assert_eq!(body["kind"], "Secret");
    }

    #[tokio::test]
    async fn removals_are_one_merge_patch_with_the_whole_state() {
        let mut existing = secret("Opaque", None, "s1", &["foreign", "kept"]);
        existing.metadata.resource_version = Some("7".into());
        let desired = secret("Opaque", Some("app"), "", &["kept", "new"]);
        let (method, uri, body) = one_request(
            Some(&existing),
            Write::ReplaceKeys(Removals {
                keys: vec!["foreign".into()],
                ..Removals::default()
            }),
            desired,
            existing.clone(),
        )
        .await;
        assert_eq!(method, "PATCH");
        assert_eq!(
            uri,
            "/api/v1/namespaces/team/secrets/app?&fieldManager=thalassa-secrets-operator"
        );
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(
            body["metadata"]["annotations"],
            serde_json::json!(BTreeMap::from([(crate::crd::OWNER_ANNOTATION, "app")]))
        );
        assert_eq!(body["data"]["foreign"], serde_json::Value::Null);
        assert!(body["data"]["kept"].is_string() && body["data"]["new"].is_string());
    }

    #[tokio::test]
    async fn nothing_to_write_sends_nothing() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let secrets: Api<Secret> = Api::namespaced(kube::Client::new(service, "team"), "team");
        let existing = secret("Opaque", Some("app"), "s1", &["password"]);
        let written = write_secret(&secrets, Some(&existing), &Write::None, existing.clone())
            .await
            .unwrap();
        assert!(written.is_none());
        drop(secrets);
        assert!(handle.next_request().await.is_none(), "no request was sent");
    }

    #[tokio::test]
    async fn a_status_is_a_forced_apply_of_the_status_subresource() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<ThalassaSecret> = Api::namespaced(kube::Client::new(service, "team"), "team");
        let status = crate::crd::ThalassaSecretStatus {
            observed_generation: Some(3),
            ..Default::default()
        };
        let reply = crate::controller::fixtures::base("Owner", "Opaque");
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("one request");
            let seen = (request.method().to_string(), request.uri().to_string());
            let body = request.into_body().collect_bytes().await.unwrap();
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            (
                seen,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        });
        write_status(&api, "app", &status).await.unwrap();
        let ((method, uri), body) = server.await.unwrap();
        assert_eq!(method, "PATCH");
        assert_eq!(
            uri,
            "/apis/secrets.thalassa.cloud/v1alpha1/namespaces/team/thalassasecrets/app/status?&force=true&fieldManager=thalassa-secrets-operator"
        );
        assert_eq!(body["kind"], "ThalassaSecret");
        assert_eq!(body["status"]["observedGeneration"], 3);
        assert!(body.get("spec").is_none(), "only the status is applied");
    }
}
