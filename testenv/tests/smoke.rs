//! Proves the test environment is a real control plane: CRD admission with CEL, server-side
//! apply, status subresource, watches, ownerReference garbage collection, service-account
//! token issuance and the issuer's discovery documents, and the version the binaries claim.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use testenv::{ControlPlane, KUBERNETES_VERSION};

const GROUP: &str = "smoke.testenv.thalassa.cloud";
const CRD_NAME: &str = "widgets.smoke.testenv.thalassa.cloud";
const CEL_MESSAGE: &str = "replicas must not exceed maxReplicas";
const FIELD_MANAGER: &str = "testenv-smoke";

/// A CRD of the test's own (not the operator's), with a status subresource and a CEL rule.
fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": GROUP,
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["replicas", "maxReplicas"],
                            "properties": {
                                "replicas": { "type": "integer", "minimum": 0 },
                                "maxReplicas": { "type": "integer", "minimum": 0 }
                            },
                            "x-kubernetes-validations": [{
                                "rule": "self.replicas <= self.maxReplicas",
                                "message": CEL_MESSAGE
                            }]
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": { "type": "string" },
                                "observedReplicas": { "type": "integer" }
                            }
                        }
                    }
                }}
            }]
        }
    }))
    .expect("the inline CRD is a valid CustomResourceDefinition")
}

fn widget_resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_string(),
        version: "v1".to_string(),
        api_version: format!("{GROUP}/v1"),
        kind: "Widget".to_string(),
        plural: "widgets".to_string(),
    }
}

#[tokio::test]
async fn version_endpoint_reports_the_built_kubernetes_version() {
    let control_plane = ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    let version = control_plane
        .client()
        .await
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(version.git_version, KUBERNETES_VERSION);
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "36")
    );
}

#[tokio::test]
async fn crd_cel_apply_status_and_garbage_collection_behave_like_a_cluster() {
    let started = Instant::now();
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.temp_namespace("smoke").await;
    let client = control_plane.client().await;

    // Install the CRD (server-side apply: idempotent on a long-lived control plane).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(widget_crd()),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, CRD_NAME, conditions::is_crd_established()),
    )
    .await
    .expect("CRD Established within 30 s")
    .unwrap();

    let resource = widget_resource();
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace.name(), &resource);

    // CEL validation rejects a bad object at admission, with the rule's message.
    let mut bad = DynamicObject::new("too-many", &resource)
        .data(json!({ "spec": { "replicas": 5, "maxReplicas": 3 } }));
    bad.metadata.namespace = Some(namespace.name().to_string());
    match widgets.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains(CEL_MESSAGE), "{}", status.message);
        }
        other => panic!("expected a 422 from the CEL rule, got {other:?}"),
    }

    // A valid owner, then a child ConfigMap owned by it, both through server-side apply.
    let owner = widgets
        .patch(
            "owner",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "Widget",
                "metadata": { "name": "owner" },
                "spec": { "replicas": 1, "maxReplicas": 3 }
            })),
        )
        .await
        .unwrap();
    let owner_uid = owner.metadata.uid.clone().expect("server assigns a uid");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace.name());
    let child = config_maps
        .patch(
            "owned-child",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "owned-child",
                    "ownerReferences": [{
                        "apiVersion": format!("{GROUP}/v1"),
                        "kind": "Widget",
                        "name": "owner",
                        "uid": owner_uid,
                        "controller": true,
                        "blockOwnerDeletion": true
                    }]
                },
                "data": { "key": "value" }
            })),
        )
        .await
        .unwrap();
    let child_uid = child.metadata.uid.clone().expect("server assigns a uid");

    // Status goes through the status subresource only.
    widgets
        .patch_status(
            "owner",
            &PatchParams::apply("testenv-smoke-status").force(),
            &Patch::Apply(json!({
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "Widget",
                "status": { "phase": "Ready", "observedReplicas": 1 }
            })),
        )
        .await
        .unwrap();
    widgets
        .patch(
            "owner",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "ignored-by-main-resource" } })),
        )
        .await
        .unwrap();
    let read_back = widgets.get("owner").await.unwrap();
    assert_eq!(read_back.data["status"]["phase"], "Ready");
    assert_eq!(read_back.data["status"]["observedReplicas"], 1);

    // Deleting the owner makes kube-controller-manager's garbage collector delete the child.
    // The collector learns about new CRD kinds on its 30 s discovery resync, hence 90 s.
    let deleted_at = Instant::now();
    widgets
        .delete(
            "owner",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(90),
        await_condition(
            config_maps.clone(),
            "owned-child",
            conditions::is_deleted(&child_uid),
        ),
    )
    .await
    .expect("the garbage collector deletes the owned ConfigMap within 90 s")
    .unwrap();
    assert!(config_maps.get_opt("owned-child").await.unwrap().is_none());
    eprintln!(
        "smoke: garbage collection took {:.1}s; whole test {:.1}s",
        deleted_at.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn service_account_tokens_are_issued_and_verifiable_via_the_issuer_jwks() {
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.temp_namespace("smoke-sa").await;
    let client = control_plane.client().await;

    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace.name());
    let mut workload = ServiceAccount::default();
    workload.metadata.name = Some("workload".to_string());
    service_accounts
        .create(&PostParams::default(), &workload)
        .await
        .unwrap();
    let token_request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Some(vec!["thalassa-test".to_string()]),
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        }
        .into(),
        ..TokenRequest::default()
    };
    let issued = service_accounts
        .create_token_request("workload", &PostParams::default(), &token_request)
        .await
        .unwrap();
    let token = issued
        .status
        .and_then(|status| status.token)
        .expect("token in status");

    let mut parts = token.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&BASE64URL.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&BASE64URL.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(claims["iss"], control_plane.service_account_issuer());
    assert_eq!(claims["aud"], json!(["thalassa-test"]));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:workload", namespace.name())
    );

    // The discovery document points at the JWKS, which holds the token's signing key.
    let discovery: serde_json::Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/.well-known/openid-configuration")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], control_plane.service_account_issuer());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/openid/v1/jwks", control_plane.api_url())
    );
    let jwks = control_plane.service_account_jwks().await.unwrap();
    let keys = jwks["keys"].as_array().expect("keys array");
    assert!(
        keys.iter().any(|key| key["kid"] == header["kid"]),
        "token kid {} not in {jwks}",
        header["kid"]
    );
    assert_eq!(header["alg"], "ES256");
}
