//! Which Thalassa connection a `ThalassaSecret` reads through, and whether its namespace may use
//! it (deny by default). Every connection — a namespaced store, a cluster store, the operator's
//! own default — is one [`Connection`] with its own [`SourceCache`]: listings and reveals are
//! shared only between resources using the same credentials, never across identities.

use std::{collections::BTreeMap, sync::Arc};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::{Secret, ServiceAccount},
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ObjectMeta, PostParams},
    core::{Selector, SelectorExt},
    runtime::reflector::ObjectRef,
};

use super::Context;
use crate::{
    crd::{StoreKind, StoreRef, ThalassaSecret},
    error::{Error, Result, kube_summary},
    sources::SourceCache,
    store::{
        ClusterThalassaSecretStore, Connection as StoreConnection, DEFAULT_AUDIENCE, StoreAuth,
        ThalassaSecretStore,
    },
    thalassa::{self, CredentialSource, Credentials, DynamicCredentials, SecretString},
};

/// Lifetime asked of ServiceAccount tokens (the apiserver may shorten it, never below 10 min).
const SUBJECT_TOKEN_SECONDS: i64 = 600;

/// A Thalassa connection and the caches that belong to its identity.
pub(crate) struct Connection {
    /// Shared listings and coalesced reveals of this identity only.
    pub(crate) sources: SourceCache,
    /// Region for resources without `spec.region`.
    pub(crate) default_region: String,
    /// Recorded on the Secrets it writes (`CONNECTION_ANNOTATION`): the default connection, or a
    /// store's kind, UID and generation.
    pub(crate) identity: String,
}

/// Which object a connection was built from; a changed store (new UID or generation) is a new
/// identity with empty caches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnectionKey {
    kind: StoreKind,
    namespace: Option<String>,
    name: String,
    uid: String,
    generation: i64,
}

/// The connection of `ts`, after checking that its namespace may use it.
pub(super) fn connect(ts: &ThalassaSecret, ctx: &Context) -> Result<Arc<Connection>> {
    connect_to(
        ctx,
        ts.namespace().unwrap_or_default(),
        ts.spec.store_ref.as_ref(),
    )
}

/// The connection `store_ref` names for a resource of `namespace` (any kind: a ThalassaSecret
/// reads through it, a ThalassaPushSecret writes), after checking that the namespace may use it.
pub(super) fn connect_to(
    ctx: &Context,
    namespace: String,
    store_ref: Option<&StoreRef>,
) -> Result<Arc<Connection>> {
    let Some(store_ref) = store_ref else {
        return default_connection(ctx, &namespace);
    };
    match store_ref.kind {
        StoreKind::ThalassaSecretStore => {
            let store = ctx
                .stores
                .get(&ObjectRef::new(&store_ref.name).within(&namespace))
                .ok_or_else(|| Error::StoreNotFound {
                    kind: StoreKind::ThalassaSecretStore,
                    name: store_ref.name.clone(),
                    namespace: namespace.clone(),
                })?;
            namespaced_store_connection(ctx, &store)
        }
        StoreKind::ClusterThalassaSecretStore => {
            let store = ctx
                .cluster_stores
                .get(&ObjectRef::new(&store_ref.name))
                .ok_or_else(|| Error::StoreNotFound {
                    kind: StoreKind::ClusterThalassaSecretStore,
                    name: store_ref.name.clone(),
                    namespace: namespace.clone(),
                })?;
            if !cluster_store_allows(&store, &namespace, ctx.namespace_labels(&namespace)) {
                return Err(Error::NamespaceNotAllowed {
                    store: format!("ClusterThalassaSecretStore {}", store.name_any()),
                    namespace,
                });
            }
            cluster_store_connection(ctx, &store)
        }
    }
}

/// The connection of a namespaced store (cached by its identity).
pub(super) fn namespaced_store_connection(
    ctx: &Context,
    store: &ThalassaSecretStore,
) -> Result<Arc<Connection>> {
    let key = key_of(StoreKind::ThalassaSecretStore, &store.metadata)?;
    let namespace = store.namespace().unwrap_or_default();
    cached(ctx, key.clone(), || {
        build(
            ctx,
            &key,
            &store.spec.connection,
            &namespace,
            format!("ThalassaSecretStore {namespace}/{}", store.name_any()),
        )
    })
}

/// The connection a store's status check uses: the cached one when its resources built it, or,
/// for a store no resource uses (`used` false), a connection built for this check only and
/// dropped after it, so an idle store keeps no client, caches or token in memory.
pub(super) fn store_connection_for_check(
    ctx: &Context,
    kind: StoreKind,
    meta: &ObjectMeta,
    used: bool,
    build_cached: impl FnOnce() -> Result<Arc<Connection>>,
    build_once: impl FnOnce(&ConnectionKey) -> Result<Connection>,
) -> Result<Arc<Connection>> {
    if used {
        return build_cached();
    }
    let key = key_of(kind, meta)?;
    if let Some(connection) = ctx.connections.lock().expect("connections lock").get(&key) {
        return Ok(connection.clone());
    }
    build_once(&key).map(Arc::new)
}

/// A namespaced store's connection, not cached (see [`store_connection_for_check`]).
pub(super) fn namespaced_store_connection_once(
    ctx: &Context,
    key: &ConnectionKey,
    store: &ThalassaSecretStore,
) -> Result<Connection> {
    let namespace = store.namespace().unwrap_or_default();
    build(
        ctx,
        key,
        &store.spec.connection,
        &namespace,
        format!("ThalassaSecretStore {namespace}/{}", store.name_any()),
    )
}

/// A cluster store's connection, not cached (see [`store_connection_for_check`]).
pub(super) fn cluster_store_connection_once(
    ctx: &Context,
    key: &ConnectionKey,
    store: &ClusterThalassaSecretStore,
) -> Result<Connection> {
    build(
        ctx,
        key,
        &store.spec.connection,
        &store.spec.credentials_namespace,
        format!("ClusterThalassaSecretStore {}", store.name_any()),
    )
}

/// The connection of a cluster store (cached by its identity); says nothing about who may use it.
pub(super) fn cluster_store_connection(
    ctx: &Context,
    store: &ClusterThalassaSecretStore,
) -> Result<Arc<Connection>> {
    let key = key_of(StoreKind::ClusterThalassaSecretStore, &store.metadata)?;
    cached(ctx, key.clone(), || {
        build(
            ctx,
            &key,
            &store.spec.connection,
            &store.spec.credentials_namespace,
            format!("ClusterThalassaSecretStore {}", store.name_any()),
        )
    })
}

/// The operator's own connection (flags and environment), for the namespaces allowed to use it.
fn default_connection(ctx: &Context, namespace: &str) -> Result<Arc<Connection>> {
    let allowed = ctx.config.watch_namespace.as_deref() == Some(namespace)
        || ctx
            .config
            .default_connection_namespaces
            .iter()
            .any(|n| n == namespace);
    let Some(connection) = &ctx.default_connection else {
        return Err(Error::NoDefaultConnection);
    };
    if !allowed {
        return Err(Error::NamespaceNotAllowed {
            store: "the operator's default connection".into(),
            namespace: namespace.to_string(),
        });
    }
    Ok(connection.clone())
}

fn key_of(kind: StoreKind, meta: &ObjectMeta) -> Result<ConnectionKey> {
    if meta.deletion_timestamp.is_some() {
        return Err(Error::StoreNotReady {
            store: format!("{kind} {}", meta.name.clone().unwrap_or_default()),
            detail: "it is being deleted".into(),
        });
    }
    Ok(ConnectionKey {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or_default(),
    })
}

/// The cached connection for `key`, or a new one from `build`.
fn cached(
    ctx: &Context,
    key: ConnectionKey,
    build: impl FnOnce() -> Result<Connection>,
) -> Result<Arc<Connection>> {
    let mut connections = ctx.connections.lock().expect("connections lock");
    if let Some(connection) = connections.get(&key) {
        return Ok(connection.clone());
    }
    let connection = Arc::new(build()?);
    // An older generation of the same store is a different identity: drop its caches now.
    connections
        .retain(|k, _| !(k.kind == key.kind && k.namespace == key.namespace && k.name == key.name));
    connections.insert(key, connection.clone());
    Ok(connection)
}

/// Drops connections whose store no longer exists at that UID and generation.
pub(super) fn retain_connections(ctx: &Context) {
    let current = |key: &ConnectionKey| {
        let meta = match key.kind {
            StoreKind::ThalassaSecretStore => ctx
                .stores
                .get(
                    &ObjectRef::new(&key.name).within(key.namespace.as_deref().unwrap_or_default()),
                )
                .map(|s| s.metadata.clone()),
            StoreKind::ClusterThalassaSecretStore => ctx
                .cluster_stores
                .get(&ObjectRef::new(&key.name))
                .map(|s| s.metadata.clone()),
        };
        meta.is_some_and(|m| key_of(key.kind, &m).is_ok_and(|k| k == *key))
    };
    ctx.connections
        .lock()
        .expect("connections lock")
        .retain(|k, _| current(k));
}

/// True when `namespace` is listed by the cluster store or selected by its namespace selector.
/// A store that lists and selects nothing allows nobody.
pub(super) fn cluster_store_allows(
    store: &ClusterThalassaSecretStore,
    namespace: &str,
    labels: Option<BTreeMap<String, String>>,
) -> bool {
    store.spec.namespaces.iter().any(|n| n == namespace)
        || store
            .spec
            .namespace_selector
            .as_ref()
            .is_some_and(|selector| selector_matches(selector, &labels.unwrap_or_default()))
}

/// Kubernetes label-selector semantics, through kube's `Selector`. A selector it cannot parse
/// (unknown operator, `In` without values) matches nothing.
pub(super) fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|selector| selector.matches(labels))
}

/// A client for a store's connection: the operator's settings (timeouts, retries) and shared
/// limits, the store's URL, organisation and project, and credentials read from the store's
/// namespace (or the cluster store's credentials namespace) whenever a token is needed.
fn build(
    ctx: &Context,
    key: &ConnectionKey,
    spec: &StoreConnection,
    credentials_namespace: &str,
    name: String,
) -> Result<Connection> {
    // The allow-list is checked before anything else: a refused URL gets no request, no token
    // exchange and no ServiceAccount token.
    let url = spec
        .url
        .as_deref()
        .unwrap_or(ctx.config.thalassa.base_url.as_str());
    let allowed = &ctx.config.allowed_api_urls;
    let url = allowed.check(url).map_err(|why| Error::UrlNotAllowed {
        store: name.clone(),
        why,
        allowed: allowed.to_string(),
    })?;
    let mut config = ctx.config.thalassa.clone();
    config.base_url = url;
    // One HTTP client (TLS roots, connection pool) for every store: a store adds only its own
    // small state.
    config.shared_http = Some(ctx.store_http.clone());
    config.organisation = spec.organisation.clone();
    config.project = spec.project.clone();
    config.shared_limits = Some(ctx.shared_limits.clone());
    config.credentials = Credentials::Dynamic(DynamicCredentials(credential_source(
        ctx.client.clone(),
        &spec.auth,
        credentials_namespace,
    )));
    let client = thalassa::Client::new(config).map_err(|e| Error::StoreNotReady {
        store: name.clone(),
        detail: e.to_string(),
    })?;
    Ok(Connection {
        sources: SourceCache::new(client),
        default_region: spec
            .region
            .clone()
            .unwrap_or_else(|| ctx.config.default_region.clone()),
        identity: format!("{}/{}/{}", key.kind, key.uid, key.generation),
    })
}

fn credential_source(
    client: Client,
    auth: &StoreAuth,
    namespace: &str,
) -> Arc<dyn CredentialSource> {
    if let Some(wi) = &auth.workload_identity {
        return Arc::new(ServiceAccountToken {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            service_account: wi.service_account_name.clone(),
            audience: wi
                .audience
                .clone()
                .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string()),
            thalassa_service_account_id: wi.thalassa_service_account_id.clone(),
        });
    }
    if let Some(r) = &auth.client_credentials_secret_ref {
        return Arc::new(SecretKeys {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: r.name.clone(),
            keys: SecretKeysKind::ClientCredentials {
                id_key: r
                    .client_id_key
                    .clone()
                    .unwrap_or_else(|| "client-id".into()),
                secret_key: r
                    .client_secret_key
                    .clone()
                    .unwrap_or_else(|| "client-secret".into()),
            },
        });
    }
    // The schema requires exactly one method; this is the token reference (or a broken object,
    // which then fails with a clear message when the token is read).
    let r = auth.token_secret_ref.clone();
    Arc::new(SecretKeys {
        api: Api::namespaced(client, namespace),
        namespace: namespace.to_string(),
        name: r.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        keys: SecretKeysKind::Token {
            key: r.and_then(|r| r.key).unwrap_or_else(|| "token".into()),
        },
    })
}

/// Credentials in keys of a Kubernetes Secret, read again whenever a token is needed.
struct SecretKeys {
    api: Api<Secret>,
    namespace: String,
    name: String,
    keys: SecretKeysKind,
}

enum SecretKeysKind {
    Token { key: String },
    ClientCredentials { id_key: String, secret_key: String },
}

impl SecretKeys {
    fn unavailable(&self, detail: impl Into<String>) -> thalassa::Error {
        thalassa::Error::CredentialUnavailable {
            what: self.describe(),
            detail: detail.into(),
        }
    }

    async fn value(&self, secret: &Secret, key: &str) -> Result<SecretString, thalassa::Error> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| self.unavailable(format!("the Secret has no key {key}")))?;
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| self.unavailable(format!("key {key} is not UTF-8 text")))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(self.unavailable(format!("key {key} is empty")));
        }
        Ok(SecretString::from(trimmed))
    }
}

impl CredentialSource for SecretKeys {
    fn read(&self) -> BoxFuture<'_, Result<Credentials, thalassa::Error>> {
        async move {
            let secret = match self.api.get_opt(&self.name).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    return Err(self.unavailable(format!(
                        "the Secret does not exist; create it in namespace {}",
                        self.namespace
                    )));
                }
                Err(e) => {
                    return Err(self.unavailable(format!(
                        "the operator cannot read it ({})",
                        kube_summary(&e)
                    )));
                }
            };
            match &self.keys {
                SecretKeysKind::Token { key } => {
                    Ok(Credentials::BearerToken(self.value(&secret, key).await?))
                }
                SecretKeysKind::ClientCredentials { id_key, secret_key } => {
                    let id = self.value(&secret, id_key).await?;
                    Ok(Credentials::ClientCredentials {
                        client_id: id.expose().to_string(),
                        client_secret: self.value(&secret, secret_key).await?,
                        scopes: Vec::new(),
                    })
                }
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        let keys = match &self.keys {
            SecretKeysKind::Token { key } => format!("key {key}"),
            SecretKeysKind::ClientCredentials { id_key, secret_key } => {
                format!("keys {id_key}, {secret_key}")
            }
        };
        format!("Secret {}/{} {keys}", self.namespace, self.name)
    }
}

/// Workload identity: a short-lived token of a ServiceAccount from the TokenRequest API, held
/// only in memory, exchanged for a Thalassa token.
struct ServiceAccountToken {
    api: Api<ServiceAccount>,
    namespace: String,
    service_account: String,
    audience: String,
    thalassa_service_account_id: String,
}

impl CredentialSource for ServiceAccountToken {
    fn read(&self) -> BoxFuture<'_, Result<Credentials, thalassa::Error>> {
        async move {
            let request = TokenRequest {
                metadata: ObjectMeta::default(),
                spec: Some(TokenRequestSpec {
                    audiences: Some(vec![self.audience.clone()]),
                    expiration_seconds: Some(SUBJECT_TOKEN_SECONDS),
                    ..Default::default()
                }),
                status: None,
            };
            let issued = self
                .api
                .create_token_request(&self.service_account, &PostParams::default(), &request)
                .await
                .map_err(|e| thalassa::Error::CredentialUnavailable {
                    what: self.describe(),
                    detail: token_request_failure(&e, &self.namespace, &self.service_account),
                })?;
            let token = issued.status.and_then(|s| s.token).unwrap_or_default();
            Ok(Credentials::TokenExchangeJwt {
                subject_token: SecretString::from(token),
                service_account_id: self.thalassa_service_account_id.clone(),
                access_token_lifetime: None,
            })
        }
        .boxed()
    }

    fn describe(&self) -> String {
        format!(
            "ServiceAccount {}/{} (workload identity)",
            self.namespace, self.service_account
        )
    }
}

/// Why a TokenRequest failed, with the fix.
fn token_request_failure(error: &kube::Error, namespace: &str, service_account: &str) -> String {
    match error {
        kube::Error::Api(status) if status.code == 404 => format!(
            "the ServiceAccount does not exist; create ServiceAccount {service_account} in namespace {namespace}"
        ),
        kube::Error::Api(status) if status.code == 403 => format!(
            "the operator may not request tokens for it: its RBAC allows tokens only for one ServiceAccount name (chart value stores.serviceAccountName, default thalassa-secrets; kustomize: the resourceNames of the serviceaccounts/token rule); use a ServiceAccount of that name in workloadIdentity.serviceAccountName, or ask the platform team to change the allowed name ({})",
            kube_summary(error)
        ),
        other => format!("TokenRequest failed ({})", kube_summary(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn cluster_store(yaml: &str) -> ClusterThalassaSecretStore {
        serde_yaml::from_str(&format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: shared}}\nspec:\n  organisation: org\n  credentialsNamespace: platform\n  auth: {{tokenSecretRef: {{name: t}}}}\n{yaml}"
        ))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_cluster_store_allows_nobody_unless_it_says_so() {
        let store = cluster_store("");
        assert!(!cluster_store_allows(
            &store,
            "team-a",
            labels(&[("team", "a")])
        ));
        let listed = cluster_store("  namespaces: [team-a]\n");
        assert!(cluster_store_allows(&listed, "team-a", None));
        assert!(!cluster_store_allows(&listed, "team-b", None));
        let selected = cluster_store("  namespaceSelector: {matchLabels: {thalassa: allowed}}\n");
        assert!(cluster_store_allows(
            &selected,
            "x",
            labels(&[("thalassa", "allowed")])
        ));
        assert!(!cluster_store_allows(
            &selected,
            "x",
            labels(&[("thalassa", "no")])
        ));
        assert!(
            !cluster_store_allows(&selected, "x", None),
            "unknown labels: no"
        );
        let everyone = cluster_store("  namespaceSelector: {}\n");
        assert!(
            cluster_store_allows(&everyone, "x", None),
            "{{}} selects all"
        );
    }

    #[test]
    fn selector_expressions_follow_kubernetes_semantics() {
        let expr = |operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_labels: None,
        };
        let prod = labels(&[("tier", "prod")]).unwrap();
        let none = BTreeMap::new();
        assert!(selector_matches(&expr("In", &["prod", "dev"]), &prod));
        assert!(!selector_matches(&expr("In", &["dev"]), &prod));
        assert!(!selector_matches(&expr("In", &["prod"]), &none));
        assert!(selector_matches(&expr("NotIn", &["dev"]), &prod));
        assert!(selector_matches(&expr("NotIn", &["dev"]), &none));
        assert!(selector_matches(&expr("Exists", &[]), &prod));
        assert!(!selector_matches(&expr("DoesNotExist", &[]), &prod));
        assert!(
            !selector_matches(&expr("Bogus", &[]), &prod),
            "unknown operator: no"
        );
    }

    #[test]
    fn a_refused_token_request_names_the_fix() {
        let refused = |code: u16, reason: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                message: "serviceaccounts \"x\" is forbidden: QUOTED".into(),
                ..Default::default()
            }))
        };
        let forbidden = token_request_failure(&refused(403, "Forbidden"), "team-a", "ci-bot");
        assert!(
            forbidden.contains("chart value stores.serviceAccountName")
                && forbidden.contains("workloadIdentity.serviceAccountName")
                && forbidden.contains("403 Forbidden"),
            "{forbidden}"
        );
        assert!(
            !forbidden.contains("QUOTED"),
            "never the apiserver's message"
        );
        let missing = token_request_failure(&refused(404, "NotFound"), "team-a", "ci-bot");
        assert!(
            missing.contains("create ServiceAccount ci-bot in namespace team-a"),
            "{missing}"
        );
    }
}
