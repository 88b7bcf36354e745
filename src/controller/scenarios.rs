//! Scenario tests of the reconcile driver: [`reconcile`](super::reconcile) against a mock
//! apiserver (tower-test) that keeps one ThalassaSecret and one Secret, and an in-process
//! Thalassa emulator. Each scenario asserts on the requests the apiserver saw, on what the
//! reconcile returned and on how many values Thalassa revealed.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::PartialObjectMeta,
    client::Body,
    core::PartialObjectMetaExt,
    runtime::{controller::Action, events::Reporter, reflector, watcher},
};
use thalassa_emulator::{Emulator, EmulatorConfig, SeedValue};

use super::{Caches, Context, Services, reconcile};
use crate::{
    controller::fixtures,
    crd::{FORCE_SYNC_ANNOTATION, ThalassaSecret},
    error::{Error, Reason},
    metrics::Metrics,
    thalassa,
};

const REGION: &str = "nl-01";
const SECRETS: &str = "/api/v1/namespaces/team/secrets";
const SECRET: &str = "/api/v1/namespaces/team/secrets/app";
const STATUS: &str =
    "/apis/secrets.thalassa.cloud/v1alpha1/namespaces/team/thalassasecrets/app/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team/events";

/// What the mock apiserver holds and saw.
struct ServerState {
    /// The server's copy of the resource (its status as last applied).
    resource: ThalassaSecret,
    /// The Secret `team/app`, if any.
    secret: Option<Secret>,
    /// The last resourceVersion handed out.
    revision: u64,
    /// "METHOD path" of every request, in order.
    requests: Vec<String>,
    /// Refusals for the next requests that match ("METHOD path", code, reason, cause).
    refusals: VecDeque<(String, u16, &'static str, Option<&'static str>)>,
}

impl ServerState {
    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    /// The answer to one request: a refusal queued for it, or what a real apiserver would say.
    fn answer(&mut self, method: &str, path: &str, body: serde_json::Value) -> (u16, String) {
        let request = format!("{method} {path}");
        self.requests.push(request.clone());
        if self.refusals.front().is_some_and(|r| r.0 == request) {
            let (_, code, reason, cause) = self.refusals.pop_front().unwrap();
            return refusal(code, reason, cause);
        }
        match (method, path) {
            ("GET", SECRET) => match &self.secret {
                Some(secret) => (200, json(secret)),
                None => refusal(404, "NotFound", None),
            },
            ("POST", SECRETS) if self.secret.is_some() => refusal(409, "AlreadyExists", None),
            ("POST", SECRETS) | ("PATCH", SECRET) => {
                let mut secret: Secret = serde_json::from_value(body).unwrap();
                secret.metadata.namespace = Some("team".into());
                secret.metadata.uid = Some("secret-uid".into());
                secret.metadata.resource_version = Some(self.next_revision());
                self.secret = Some(secret.clone());
                (if method == "POST" { 201 } else { 200 }, json(&secret))
            }
            ("PATCH", STATUS) => {
                self.resource.status =
                    Some(serde_json::from_value(body["status"].clone()).unwrap());
                self.resource.metadata.resource_version = Some(self.next_revision());
                (200, json(&self.resource))
            }
            ("POST", EVENTS) => (201, body.to_string()),
            _ => refusal(404, "NotFound", None),
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// A Kubernetes `Status` refusing a request.
fn refusal(code: u16, reason: &str, cause: Option<&str>) -> (u16, String) {
    let details = cause.map(|c| serde_json::json!({"causes": [{"reason": c, "message": "x"}]}));
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "refused", "reason": reason, "code": code, "details": details,
    });
    (code, status.to_string())
}

/// The driver's world: a context over the mock apiserver and an emulator holding `/a/b`.
struct World {
    ctx: Arc<Context>,
    server: Arc<Mutex<ServerState>>,
    secrets: reflector::store::Writer<PartialObjectMeta<Secret>>,
    emulator: Emulator,
}

impl World {
    async fn new() -> World {
        thalassa::install_crypto_provider();
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let key = emulator
            .control()
            .create_key(REGION, "app-key", "aes256-gcm96")
            .expect("key created");
        emulator
            .control()
            .create_secret(REGION, "/a/b", &key, SeedValue::String("s3cret".into()))
            .expect("secret created");
        let mut resource = fixtures::base("Owner", "Opaque");
        resource.metadata.resource_version = Some("1".into());
        let server = Arc::new(Mutex::new(ServerState {
            resource,
            secret: None,
            revision: 1,
            requests: Vec::new(),
            refusals: VecDeque::new(),
        }));
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let body = request.into_body().collect_bytes().await.unwrap();
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let (code, answer) = state.lock().unwrap().answer(&method, &path, body);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(answer.into_bytes()))
                        .unwrap(),
                );
            }
        });
        let client = kube::Client::new(service, "team");
        let mut config = fixtures::config();
        config.watch_namespace = Some("team".into());
        config.default_region = REGION.into();
        let mut client_config = thalassa::ClientConfig::new(
            emulator.base_url(),
            emulator.organisation(),
            thalassa::Credentials::BearerToken(emulator.token().to_string().into()),
        );
        client_config.max_retries = 0;
        let thalassa = thalassa::Client::new(client_config).expect("client builds");
        let (secret_store, secrets) = reflector::store();
        let caches = Caches {
            secrets: secret_store,
            stores: reflector::store().0,
            cluster_stores: reflector::store().0,
            namespaces: None,
            template_config_maps: reflector::store().0,
            resources: reflector::store().0,
        };
        let reporter = Reporter {
            controller: "scenarios".into(),
            instance: None,
        };
        let metrics = Arc::new(Metrics::new());
        let services = Services {
            hash_key: fixtures::key(),
            reporter,
            metrics,
        };
        let ctx = Context::new(client, config, Some(thalassa), caches, services);
        ctx.caches_synced.send_replace(true);
        World {
            ctx: Arc::new(ctx),
            server,
            secrets,
            emulator,
        }
    }

    /// Reconciles `resource`; returns what the reconcile returned and the requests it sent.
    async fn reconcile(
        &self,
        resource: ThalassaSecret,
    ) -> (Result<Action, Arc<Error>>, Vec<String>) {
        let before = self.server.lock().unwrap().requests.len();
        let result = reconcile(Arc::new(resource), self.ctx.clone()).await;
        let requests = self.server.lock().unwrap().requests[before..].to_vec();
        (result, requests)
    }

    /// The server's copy of the resource, as the watch would deliver it next.
    fn resource(&self) -> ThalassaSecret {
        self.server.lock().unwrap().resource.clone()
    }

    /// Puts the server's Secret into the managed-Secret cache, as the watch would.
    fn cache_secret(&mut self) {
        let secret = self
            .server
            .lock()
            .unwrap()
            .secret
            .clone()
            .expect("a Secret");
        let meta = secret.metadata.into_response_partial::<Secret>();
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(meta));
    }

    /// Refuses the next `method path` request with `code`.
    fn refuse(&self, request: &str, code: u16, reason: &'static str, cause: Option<&'static str>) {
        self.server
            .lock()
            .unwrap()
            .refusals
            .push_back((request.to_string(), code, reason, cause));
    }

    /// Values Thalassa revealed so far.
    fn reveals(&self) -> u64 {
        let counters = self.emulator.control().counters();
        counters
            .operations
            .get("getSecretValue")
            .map(|by_status| by_status.values().sum())
            .unwrap_or(0)
    }
}

fn to_secrets(requests: &[String]) -> Vec<&str> {
    requests
        .iter()
        .map(String::as_str)
        .filter(|r| {
            r.split_once(' ')
                .is_some_and(|(_, path)| path.starts_with(SECRETS))
        })
        .collect()
}

/// The delay of a requeue (`Action` keeps it private; its Debug form shows it).
fn requeue_after(action: &Action) -> Option<Duration> {
    let debug = format!("{action:?}");
    let delay = debug
        .strip_prefix("Action { requeue_after: Some(")?
        .strip_suffix(") }")?;
    let (number, unit) = delay.split_at(delay.find(|c: char| c.is_alphabetic() || c == 'µ')?);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// True for the periodic check of a synced resource: half its refresh interval, plus up to 10%.
fn periodic(action: &Action) -> bool {
    let half = fixtures::config().default_refresh_interval / 2;
    requeue_after(action).is_some_and(|d| d >= half && d <= half.mul_f64(1.1))
}

#[tokio::test]
async fn a_current_secret_is_not_read_or_written_again() {
    let mut world = World::new().await;
    let (result, requests) = world.reconcile(world.resource()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        requests,
        [format!("POST {SECRETS}"), format!("PATCH {STATUS}")],
        "an owned Secret missing from the cache is created without a read (no Event for a first create)"
    );
    assert_eq!(world.reveals(), 1);
    world.cache_secret();
    let (result, requests) = world.reconcile(world.resource()).await;
    assert!(result.as_ref().is_ok_and(periodic), "{result:?}");
    assert_eq!(
        requests,
        Vec::<String>::new(),
        "nothing read, nothing written"
    );
    assert_eq!(world.reveals(), 1, "nothing revealed");
}

#[tokio::test]
async fn a_repeated_failure_is_reported_again_without_a_reveal() {
    let world = World::new().await;
    world.refuse(&format!("POST {SECRETS}"), 422, "Invalid", None);
    let (first, requests) = world.reconcile(world.resource()).await;
    let first = first.expect_err("the apiserver refused the Secret");
    assert_eq!(first.reason(), Reason::KubernetesError);
    assert_eq!(
        to_secrets(&requests),
        [format!("POST {SECRETS}")],
        "created without a read"
    );
    assert!(
        requests.contains(&format!("PATCH {STATUS}")),
        "{requests:?}"
    );
    assert_eq!(world.reveals(), 1);
    let (again, requests) = world.reconcile(world.resource()).await;
    let again = again.expect_err("the same failure");
    assert_eq!(again.reason(), first.reason());
    assert_eq!(again.to_string(), first.to_string());
    assert_eq!(
        to_secrets(&requests),
        Vec::<&str>::new(),
        "the Secret is not written again"
    );
    assert!(
        !requests.contains(&format!("PATCH {STATUS}")),
        "the status already says so: {requests:?}"
    );
    assert_eq!(world.reveals(), 1, "same inputs: nothing revealed again");
}

#[tokio::test]
async fn a_write_that_loses_a_race_reads_the_secret_and_plans_again() {
    let mut world = World::new().await;
    let (result, _) = world.reconcile(world.resource()).await;
    assert!(result.is_ok(), "{result:?}");
    world.cache_secret();
    world
        .emulator
        .control()
        .put_secret_value(REGION, "/a/b", SeedValue::String("n3w".into()))
        .expect("version stored");
    let mut forced = world.resource();
    forced
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(FORCE_SYNC_ANNOTATION.into(), "1".into());
    world.refuse(&format!("PATCH {SECRET}"), 409, "Conflict", None);
    let (result, requests) = world.reconcile(forced).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        to_secrets(&requests),
        [
            format!("GET {SECRET}"),
            format!("PATCH {SECRET}"),
            format!("GET {SECRET}"),
            format!("PATCH {SECRET}")
        ],
        "409: read, plan and write once more"
    );
    let written = world.server.lock().unwrap().secret.clone().unwrap();
    let value = &written.data.unwrap()["password"].0;
    assert_eq!(value, b"n3w", "the new version is written");
}

#[tokio::test]
async fn a_name_found_taken_is_read_first_from_then_on() {
    let world = World::new().await;
    // A Secret of that name that is not ours (so not in the managed-Secret cache).
    world.server.lock().unwrap().secret = Some(fixtures::secret("Opaque", None, "other", &["k"]));
    let (result, requests) = world.reconcile(world.resource()).await;
    let error = result.expect_err("the name is taken");
    assert_eq!(error.reason(), Reason::TargetConflict);
    assert_eq!(
        to_secrets(&requests),
        [format!("POST {SECRETS}"), format!("GET {SECRET}")],
        "the create finds the name taken, then reads it"
    );
    assert_eq!(world.reveals(), 1);
    let (result, requests) = world.reconcile(world.resource()).await;
    assert_eq!(
        result.expect_err("still taken").reason(),
        Reason::TargetConflict
    );
    assert_eq!(
        to_secrets(&requests),
        [format!("GET {SECRET}")],
        "read first: no create"
    );
    assert_eq!(world.reveals(), 1, "refused before anything is revealed");
}

#[tokio::test]
async fn a_terminating_namespace_ends_the_reconcile_quietly() {
    let world = World::new().await;
    world.refuse(
        &format!("POST {SECRETS}"),
        403,
        "Forbidden",
        Some("NamespaceTerminating"),
    );
    let (result, requests) = world.reconcile(world.resource()).await;
    assert_eq!(result.expect("no retry"), Action::await_change());
    assert_eq!(
        requests,
        [format!("POST {SECRETS}")],
        "no status write, no Warning Event"
    );
}

#[tokio::test]
async fn a_copy_older_than_our_status_write_is_not_planned_from() {
    let world = World::new().await;
    let old = world.resource();
    let (result, _) = world.reconcile(old.clone()).await;
    assert!(result.is_ok(), "{result:?}");
    let reveals = world.reveals();
    let (result, requests) = world.reconcile(old).await;
    assert_eq!(
        result.expect("requeued"),
        Action::requeue(Duration::from_millis(500))
    );
    assert_eq!(requests, Vec::<String>::new(), "nothing read or written");
    assert_eq!(world.reveals(), reveals);
}
