//! The data-hash key: read from its Secret, created when missing, replaced when malformed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use rand::Rng;
use tracing::warn;

use crate::{
    crd::FIELD_MANAGER,
    error::{Error, Result},
    render::HashKey,
};

/// The key in a data-hash key Secret, when it is usable (at least 32 bytes).
fn usable_hash_key(secret: &Secret) -> Option<Vec<u8>> {
    let key = secret.data.as_ref()?.get("key")?;
    (key.0.len() >= 32).then(|| key.0.clone())
}

/// Reads the data-hash key from its Secret, creating the Secret with 32 random bytes when missing.
/// A malformed key Secret (no `key`, or fewer than 32 bytes) is replaced with a new key: every
/// managed Secret then fails its hash check once and is read again, which is safe, where
/// refusing to start would be a crash loop.
pub async fn load_or_create_hash_key(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<HashKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let field_manager = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    // Each round either returns or lost a race with another replica (409) and reads again.
    for _ in 0..5 {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill(&mut bytes[..]);
        let data = BTreeMap::from([("key".to_string(), k8s_openapi::ByteString(bytes.clone()))]);
        let written = match api.get_opt(name).await? {
            Some(existing) => {
                if let Some(key) = usable_hash_key(&existing) {
                    return Ok(HashKey::new(key));
                }
                warn!(
                    secret = %format!("{namespace}/{name}"),
                    "the data-hash key Secret has no usable data.key (32 bytes or more); replacing it with a new key"
                );
                // A merge patch on the resourceVersion just read (the chart grants `patch` on
                // this Secret, never `update`): a concurrent writer makes it fail with 409.
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": existing.metadata.resource_version},
                    "data": data,
                });
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.patch(name, &params, &Patch::Merge(&patch)).await
            }
            None => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&field_manager, &secret).await
            }
        };
        match written {
            Ok(_) => return Ok(HashKey::new(bytes)),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Internal(format!(
        "the data-hash key Secret {namespace}/{name} kept changing while it was being read; delete it and restart the operator"
    )))
}
