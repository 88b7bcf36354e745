//! Template ConfigMaps (`templateFrom`): the operator watches only the metadata of ConfigMaps
//! carrying the template label, and reads the data of those a `ThalassaSecret` names when it
//! needs them. What it keeps is bounded by what resources use: the usable items (each at most
//! [`MAX_TEMPLATE_BYTES`]) of referenced ConfigMaps, dropped once no resource names them. A
//! tenant that labels large ConfigMaps nobody uses costs their metadata only.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    crd::{TEMPLATE_CONFIGMAP_SELECTOR, ThalassaSecret},
    error::Result,
};

/// The largest template, inline (the CRD's limit) or in a ConfigMap.
pub(super) const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// One item of a template ConfigMap as kept: its text, or only its size when it is too large to
/// be a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    /// The template's text.
    Text(String),
    /// Larger than [`MAX_TEMPLATE_BYTES`]: a `TemplateError` for whoever names it.
    TooLarge(usize),
}

/// The usable part of one template ConfigMap, at one resourceVersion.
#[derive(Debug)]
pub(super) struct Kept {
    resource_version: Option<String>,
    /// `data` key to item.
    pub(super) items: BTreeMap<String, Item>,
}

impl Kept {
    fn of(config_map: ConfigMap) -> Kept {
        let items = config_map
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, text)| {
                let item = if text.len() > MAX_TEMPLATE_BYTES {
                    Item::TooLarge(text.len())
                } else {
                    Item::Text(text)
                };
                (key, item)
            })
            .collect();
        Kept {
            resource_version: config_map.metadata.resource_version,
            items,
        }
    }

    /// Bytes of text kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.items
            .values()
            .map(|item| match item {
                Item::Text(text) => text.len(),
                Item::TooLarge(_) => 0,
            })
            .sum()
    }
}

/// The label-selected metadata watch's store plus the data of the ConfigMaps resources name.
pub(crate) struct TemplateConfigMaps {
    client: Client,
    /// Metadata of every labelled ConfigMap (the watch), which says whether one exists and at
    /// which resourceVersion.
    meta: Store<PartialObjectMeta<ConfigMap>>,
    /// (namespace, name) to what was read of it.
    kept: Mutex<HashMap<(String, String), Arc<Kept>>>,
}

impl TemplateConfigMaps {
    /// Over the metadata watch's store.
    pub(crate) fn new(client: Client, meta: Store<PartialObjectMeta<ConfigMap>>) -> Self {
        TemplateConfigMaps {
            client,
            meta,
            kept: Mutex::default(),
        }
    }

    /// The usable items of the labelled ConfigMap `namespace/name`, read from the apiserver
    /// when the watch shows a resourceVersion other than the one kept; `None` when no labelled
    /// ConfigMap of that name exists.
    pub(super) async fn get(&self, namespace: &str, name: &str) -> Result<Option<Arc<Kept>>> {
        let Some(meta) = self.meta.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let key = (namespace.to_string(), name.to_string());
        if let Some(kept) = self.kept.lock().expect("kept lock").get(&key)
            && kept.resource_version == meta.metadata.resource_version
        {
            return Ok(Some(kept.clone()));
        }
        // A list by name with the label selector needs only the list permission the watch has.
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default()
            .fields(&format!("metadata.name={name}"))
            .labels(TEMPLATE_CONFIGMAP_SELECTOR);
        let Some(config_map) = api.list(&params).await?.items.into_iter().next() else {
            return Ok(None);
        };
        let kept = Arc::new(Kept::of(config_map));
        self.kept
            .lock()
            .expect("kept lock")
            .insert(key, kept.clone());
        Ok(Some(kept))
    }

    /// Drops what no resource names any more, or what is no longer labelled.
    pub(super) fn retain_used(&self, resources: &Store<ThalassaSecret>) {
        let used: std::collections::HashSet<(String, String)> = resources
            .state()
            .iter()
            .flat_map(|ts| {
                let namespace = ts.namespace().unwrap_or_default();
                ts.spec
                    .target
                    .template
                    .iter()
                    .flat_map(|t| &t.template_from)
                    .map(move |from| (namespace.clone(), from.config_map.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.kept.lock().expect("kept lock").retain(|key, _| {
            used.contains(key)
                && self
                    .meta
                    .get(&ObjectRef::new(&key.1).within(&key.0))
                    .is_some()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_items_are_kept_as_their_size_only() {
        let config_map: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t", "resourceVersion": "7"},
            "data": {"small": "{{ a }}", "big": "x".repeat(MAX_TEMPLATE_BYTES + 1)},
        }))
        .unwrap();
        let kept = Kept::of(config_map);
        assert_eq!(kept.resource_version.as_deref(), Some("7"));
        assert_eq!(kept.items["small"], Item::Text("{{ a }}".into()));
        assert_eq!(kept.items["big"], Item::TooLarge(MAX_TEMPLATE_BYTES + 1));
        assert_eq!(kept.bytes(), 7);
    }
}
