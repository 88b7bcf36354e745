//! The annotation codec: what a written Secret records about how it was written (owner and its
//! UID and generation, the connection, each source's version and keys, what the templates
//! produced, the data hash), written by [`record_annotations`] and read back by the `parse_*`
//! and `written_*` functions.
//!
//! I/O contract: pure. The records never hold values, only versions, key names and keyed
//! hashes. Reading is lenient: a missing or unreadable annotation reads as "nothing recorded",
//! which makes the operator reveal and write again rather than trust it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{RenderedData, TargetSettings};
use crate::crd::{
    CONNECTION_ANNOTATION, DATA_HASH_ANNOTATION, DEFAULT_CONNECTION, GENERATION_ANNOTATION,
    OWNER_ANNOTATION, OWNER_UID_ANNOTATION, SOURCES_ANNOTATION, TEMPLATE_ANNOTATION,
};

/// What each source path contributed, recorded in the Secret's sources annotation so unchanged
/// sources can be reused without a reveal. Never holds values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct SourceRecord {
    /// Version written.
    pub(crate) version: u64,
    /// Secret keys the path produced.
    pub(crate) keys: Vec<String>,
}

/// What the templates contributed, recorded in the template annotation (never values): the
/// templated keys, labels and annotations, a keyed hash of the templates they were rendered
/// from, and a keyed hash of the templated label and annotation values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct TemplateRecord {
    /// Keyed hash of the resolved templates ([`template_hash`](super::template_hash)).
    pub(crate) hash: String,
    /// Secret keys the templates produced.
    pub(crate) keys: Vec<String>,
    /// Label keys the templates produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) labels: Vec<String>,
    /// Annotation keys the templates produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) annotations: Vec<String>,
    /// Keyed hash of the templated label and annotation values ([`metadata_hash`](super::metadata_hash)).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) metadata: String,
}

/// Parses the sources annotation of an existing Secret (empty when missing or unreadable).
pub(crate) fn parse_sources(metadata: &ObjectMeta) -> BTreeMap<String, SourceRecord> {
    metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCES_ANNOTATION))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Parses the template annotation of an existing Secret (`None` when missing or unreadable).
pub(crate) fn parse_template(metadata: &ObjectMeta) -> Option<TemplateRecord> {
    metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
}

/// The owner generation recorded on an existing Secret.
pub(crate) fn written_generation(metadata: &ObjectMeta) -> Option<i64> {
    metadata
        .annotations
        .as_ref()?
        .get(GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// True when the Secret's values were read with the connection `connection` (a Secret without the
/// annotation was read with the default connection).
pub(crate) fn written_with(metadata: &ObjectMeta, connection: &str) -> bool {
    let recorded = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONNECTION_ANNOTATION))
        .map_or(DEFAULT_CONNECTION, String::as_str);
    recorded == connection
}

/// True when the Secret's annotations say it was rendered for this very resource (UID, not just
/// name) at this generation, so what it records about sources can be trusted.
pub(crate) fn written_for(
    metadata: &ObjectMeta,
    owner_name: &str,
    owner_uid: &str,
    generation: Option<i64>,
) -> bool {
    named_owner(metadata) == Some(owner_name)
        && metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNER_UID_ANNOTATION))
            .is_some_and(|v| v == owner_uid)
        && generation.is_some()
        && written_generation(metadata) == generation
}

/// The `ThalassaSecret` a Secret's owner annotation names, if any.
pub(crate) fn named_owner(metadata: &ObjectMeta) -> Option<&str> {
    metadata
        .annotations
        .as_ref()?
        .get(OWNER_ANNOTATION)
        .map(String::as_str)
}

/// Adds what the Secret records about this write to `annotations`: the template record (with
/// templates), the owner and its UID, the source records, the data hash, the owner's generation
/// and, unless it is the default, the connection.
pub(super) fn record_annotations(
    annotations: &mut BTreeMap<String, String>,
    target: &TargetSettings<'_>,
    rendered: &RenderedData,
    data_hash: &str,
) {
    if let Some(record) = &rendered.template {
        annotations.insert(
            TEMPLATE_ANNOTATION.into(),
            serde_json::to_string(record).expect("template record serializes"),
        );
    }
    annotations.insert(OWNER_ANNOTATION.into(), target.owner_name.to_string());
    annotations.insert(OWNER_UID_ANNOTATION.into(), target.owner_uid.to_string());
    annotations.insert(
        SOURCES_ANNOTATION.into(),
        serde_json::to_string(&rendered.sources).expect("source records serialize"),
    );
    annotations.insert(DATA_HASH_ANNOTATION.into(), data_hash.to_string());
    annotations.insert(
        GENERATION_ANNOTATION.into(),
        target.owner_generation.to_string(),
    );
    if target.connection != DEFAULT_CONNECTION {
        annotations.insert(CONNECTION_ANNOTATION.into(), target.connection.to_string());
    }
}
