//! Test fixtures shared by the controller's unit tests.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};

use crate::{config::Config, crd::OWNER_ANNOTATION, crd::ThalassaSecret, render::HashKey};

pub(crate) fn resource(yaml: &str) -> ThalassaSecret {
    let mut ts: ThalassaSecret = serde_yaml::from_str(yaml).unwrap();
    ts.metadata.namespace = Some("team".into());
    ts.metadata.uid = Some("uid-1".into());
    ts.metadata.generation = Some(1);
    ts
}

pub(crate) fn base(policy: &str, type_: &str) -> ThalassaSecret {
    resource(&format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: app}}\nspec:\n  data: [{{secretKey: password, remoteRef: {{path: /a/b}}}}]\n  target: {{creationPolicy: {policy}, type: {type_}}}\n"
    ))
}

pub(crate) fn secret(type_: &str, owner: Option<&str>, uid: &str, keys: &[&str]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("app".into()),
            uid: Some(uid.into()),
            annotations: owner
                .map(|o| BTreeMap::from([(OWNER_ANNOTATION.to_string(), o.to_string())])),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            keys.iter()
                .map(|k| (k.to_string(), ByteString(b"v".to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

pub(crate) fn config() -> Config {
    use clap::Parser;
    crate::config::Cli::try_parse_from([
        "op",
        "--organisation",
        "org",
        "--token-file",
        "/dev/null",
        "--operator-namespace",
        "ops",
    ])
    .expect("flags parse")
    .args
    .into_config()
    .expect("valid config")
}

pub(crate) fn key() -> HashKey {
    HashKey::new(vec![7; 32])
}
