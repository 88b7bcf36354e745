//! Memory and reveal fairness under a hostile tenant (issue 22, attacks 1 and 4): a tenant's
//! store points at a server the tenant runs (here a small server on loopback that answers the
//! Thalassa API shapes the operator calls, forwarding the rest to the test's emulator).
//!
//! - OOM: a prefix whose listing names hundreds of values of 1 MB each (each under the
//!   per-value cap) gets `SecretTooLarge` after a bounded number of reveals, with the operator's
//!   peak RSS bounded and the process never restarted.
//! - Huge listings: tens of MB of entries outside the prefix cost no memory, a listing past the
//!   cap is a clear error in the resource's status.
//! - Tarpit: a server that accepts reveals and never answers holds only its own store's reveal
//!   permits: another team's new resource becomes Ready and its rotation reaches its Secret while
//!   the tarpit still holds its requests.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use thalassa_operator::store::ThalassaSecretStore;

use crate::common::{Harness, REGION, condition, harness, wait_for};

/// Largest peak RSS (VmHWM) the operator may reach in these tests: well under the chart's
/// 512 MiB limit.
const PEAK_RSS_LIMIT_KIB: u64 = 200 * 1024;

/// How a hostile server answers `getSecretValue`.
#[derive(Clone)]
enum Reveals {
    /// Forwarded to the emulator.
    Forward,
    /// A string value of this many bytes (base64-encoded once, served to every path).
    Value(Arc<String>),
    /// Accepted and never answered (until the server is dropped, or 120 s).
    Tarpit,
}

struct Hostile {
    upstream: String,
    key: String,
    /// Listing bodies by `pathPrefix`, streamed in chunks without a `Content-Length`.
    listings: HashMap<String, Bytes>,
    reveals: Reveals,
    http: reqwest::Client,
    /// `getSecretValue` requests answered with a value.
    served: AtomicU64,
    /// `getSecretValue` requests received and not (yet) answered.
    pending: AtomicU64,
}

/// Decrements `pending` however the handler ends (answered, or dropped on disconnect).
struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// A hostile Thalassa endpoint on loopback. Dropping it stops the server (and closes the
/// tarpit's connections).
struct HostileServer {
    url: String,
    state: Arc<Hostile>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileServer {
    async fn start(h: &Harness, listings: HashMap<String, Bytes>, reveals: Reveals) -> Self {
        let state = Arc::new(Hostile {
            upstream: h.emulator.base_url().trim_end_matches('/').to_string(),
            key: h.key.clone(),
            listings,
            reveals,
            http: reqwest::Client::new(),
            served: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HostileServer { url, state, task }
    }

    fn served(&self) -> u64 {
        self.state.served.load(SeqCst)
    }

    fn pending(&self) -> u64 {
        self.state.pending.load(SeqCst)
    }
}

async fn handle(State(state): State<Arc<Hostile>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let secrets = format!("/v1/secrets/{REGION}/");
    if request.method() == "GET" && path == format!("{secrets}secrets") {
        let prefix = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "pathPrefix")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if let Some(body) = state.listings.get(&prefix) {
            let body = body.clone();
            let chunks = (0..body.len()).step_by(64 * 1024).map(move |at| {
                Ok::<_, Infallible>(body.slice(at..(at + 64 * 1024).min(body.len())))
            });
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap();
        }
    }
    if request.method() == "POST"
        && path.starts_with(&format!("{secrets}secret/"))
        && path.ends_with("/value")
    {
        let secret_path = &path[format!("{secrets}secret").len()..path.len() - "/value".len()];
        match &state.reveals {
            Reveals::Forward => {}
            Reveals::Value(encoded) => {
                state.served.fetch_add(1, SeqCst);
                let body = format!(
                    r#"{{"path":"{secret_path}","version":1,"secretString":"{encoded}","kmsKeyIdentity":"{}","kmsKeyVersion":"1"}}"#,
                    state.key
                );
                return ([("content-type", "application/json")], body).into_response();
            }
            Reveals::Tarpit => {
                state.pending.fetch_add(1, SeqCst);
                let _pending = Pending(&state.pending);
                // Bounded: stops by itself, long after the operator's call deadline.
                tokio::time::sleep(Duration::from_secs(120)).await;
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    forward(&state, request).await
}

/// Forwards a request to the emulator, headers that matter and body included.
async fn forward(state: &Hostile, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let url = format!(
        "{}{}",
        state.upstream,
        parts.uri.path_and_query().map_or("", |p| p.as_str())
    );
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for name in [
        "authorization",
        "content-type",
        "accept",
        "x-organisation-identity",
        "x-project-identity",
    ] {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    let Ok(answer) = state
        .http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response.body(Body::from(bytes)).unwrap()
}

/// A listing body: `inside` entries (with the test key) and `outside` minimal entries of paths
/// that are not under the prefix.
fn listing(key: &str, inside: &[String], outside: usize) -> Bytes {
    let mut body = String::from("[");
    for path in inside {
        body.push_str(&format!(
            r#"{{"path":"{path}","currentVersion":1,"kmsKey":{{"identity":"{key}","status":"active"}}}},"#
        ));
    }
    for i in 0..outside {
        body.push_str(&format!(
            r#"{{"path":"/elsewhere/s{i:07}","currentVersion":1}},"#
        ));
    }
    body.pop();
    body.push(']');
    Bytes::from(body)
}

/// A namespaced store named `name` at `url`, authenticating with the emulator's token.
async fn hostile_store(h: &Harness, name: &str, url: &str) {
    let secrets: Api<Secret> = h.secrets();
    let token = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-token")),
            ..Default::default()
        },
        data: Some(
            [(
                "token".to_string(),
                ByteString(h.emulator.token().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let store: ThalassaSecretStore = serde_yaml::from_str(&format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: {name}}}\nspec:\n  url: {url}\n  organisation: {}\n  auth: {{tokenSecretRef: {{name: {name}-token}}}}\n",
        h.emulator.organisation()
    ))
    .unwrap();
    let stores: Api<ThalassaSecretStore> = Api::namespaced(h.client.clone(), h.ns());
    stores
        .patch(
            name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&store),
        )
        .await
        .unwrap();
}

/// The operator's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(h: &Harness) -> u64 {
    let pid = h
        .operator
        .as_ref()
        .and_then(|op| op.child.id())
        .expect("the operator runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The operator process is the one the test started (never exited or restarted) and `/healthz`
/// answers within 1 s.
async fn assert_alive_and_healthy(h: &mut Harness) {
    let operator = h.operator.as_mut().expect("the operator runs");
    assert!(
        operator.child.try_wait().unwrap().is_none(),
        "the operator exited"
    );
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(1), operator.get("/healthz")).await;
    assert!(
        matches!(health, Ok(Some((200, _)))),
        "/healthz did not answer 200 within 1 s ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn values_far_past_the_secret_limit_stop_at_the_limit_with_bounded_memory() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("noisy-oom").await;
    // Issue 22's attack: 640 values of 1 MB each under one prefix (each under the 1 MiB cap).
    let count = crate::common::env_usize("NOISY_OOM_VALUES", 640);
    let value = base64::engine::general_purpose::STANDARD.encode(vec![b'v'; 1_000_000]);
    let paths: Vec<String> = (0..count).map(|i| format!("/big/v{i:04}")).collect();
    let server = HostileServer::start(
        &h,
        [("/big/".to_string(), listing(&h.key, &paths, 0))].into(),
        Reveals::Value(Arc::new(value)),
    )
    .await;
    hostile_store(&h, "hostile", &server.url).await;
    h.start_operator(&["--allowed-api-urls", &server.url]).await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: oom}\nspec:\n  storeRef: {name: hostile}\n  dataFrom: [{pathPrefix: /big/}]\n",
    )
    .await;
    let ts = h
        .wait_condition("oom", "Ready", "False", Some("SecretTooLarge"))
        .await;
    let message = condition(&ts, "Ready").message;
    let served = server.served();
    let peak = peak_rss_kib(&h);
    eprintln!(
        "oom: {served} of {count} values of 1 MB revealed, operator peak RSS {} MiB; {message}",
        peak / 1024
    );
    assert!(message.contains("1048576"), "{message}");
    // The second value passes the limit; at most the reveals in flight with it (8 per resource)
    // were started, not the hundreds listed.
    assert!(
        served <= 2 + 8,
        "{served} values revealed: reveals must stop at the limit"
    );
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "operator peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        h.secrets().get_opt("oom").await.unwrap().is_none(),
        "no Secret is written"
    );
    assert_alive_and_healthy(&mut h).await;

    // A restart tries once more (the refusal is remembered in memory only) and stops at the
    // limit again: no crash loop.
    let refusals = |h: &Harness| h.operator_log().matches(STOPPED_AT_THE_LIMIT).count();
    let before = (served, refusals(&h));
    assert!(before.1 >= 1, "the operator logs where it stopped");
    h.stop_operator().await;
    h.start_operator(&["--allowed-api-urls", &server.url]).await;
    wait_for(
        Duration::from_secs(60),
        "the restarted operator stops at the limit",
        || async { (refusals(&h) > before.1).then_some(()) },
    )
    .await;
    let served_again = server.served() - before.0;
    let peak = peak_rss_kib(&h);
    eprintln!(
        "oom after a restart: {served_again} more values revealed, peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        served_again <= 2 + 8,
        "{served_again} values revealed again"
    );
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "operator peak RSS {} MiB",
        peak / 1024
    );
    h.wait_condition("oom", "Ready", "False", Some("SecretTooLarge"))
        .await;
    assert_alive_and_healthy(&mut h).await;
    // No value anywhere: neither the bytes nor their base64.
    let ts = h.resources().get("oom").await.unwrap();
    let status = serde_json::to_string(&ts.status).unwrap();
    for (what, text) in [("log", h.operator_log()), ("status", status)] {
        assert!(
            !text.contains("vvvvvvvvvvvvvvvv") && !text.contains("dnZ2dnZ2dnZ2dnZ2"),
            "the {what} quotes a value"
        );
    }
}

/// What the operator logs (at debug) when a resource's reveals stop at the Secret's limit.
const STOPPED_AT_THE_LIMIT: &str = "not revealing the rest";

#[tokio::test]
async fn listings_mostly_outside_the_prefix_cost_nothing_and_too_large_ones_are_an_error() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("noisy-listing").await;
    h.create_string("/wide-a/db", "value-a");
    h.create_string("/wide-b/db", "value-b");
    // Two listings of about 30 MB (one entry inside the prefix, 580,000 outside), fetched at
    // once, and one past the listing cap (32 MiB).
    let outside = crate::common::env_usize("NOISY_LISTING_OUTSIDE", 580_000);
    let listings = [
        ("/wide-a/", listing(&h.key, &["/wide-a/db".into()], outside)),
        ("/wide-b/", listing(&h.key, &["/wide-b/db".into()], outside)),
        ("/over/", listing(&h.key, &[], 700_000)),
    ]
    .into_iter()
    .map(|(prefix, body)| (prefix.to_string(), body))
    .collect::<HashMap<_, _>>();
    let sizes: Vec<usize> = ["/wide-a/", "/wide-b/", "/over/"]
        .iter()
        .map(|p| listings[*p].len())
        .collect();
    assert!(sizes[2] > 32 * 1024 * 1024, "{sizes:?}");
    let server = HostileServer::start(&h, listings, Reveals::Forward).await;
    hostile_store(&h, "hostile", &server.url).await;
    h.start_operator(&["--allowed-api-urls", &server.url]).await;
    for (name, path) in [
        ("wide-a", "/wide-a/db"),
        ("wide-b", "/wide-b/db"),
        ("over", "/over/db"),
    ] {
        h.apply_single(name, path, &["storeRef: {name: hostile}"])
            .await;
    }
    h.wait_condition("wide-a", "Ready", "True", Some("Synced"))
        .await;
    h.wait_condition("wide-b", "Ready", "True", Some("Synced"))
        .await;
    let over = h
        .wait_condition("over", "Ready", "False", Some("ProviderError"))
        .await;
    let message = condition(&over, "Ready").message;
    let peak = peak_rss_kib(&h);
    eprintln!(
        "listings of {sizes:?} bytes: operator peak RSS {} MiB; over the cap: {message}",
        peak / 1024
    );
    assert!(message.contains("larger than 33554432 bytes"), "{message}");
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "operator peak RSS {} MiB",
        peak / 1024
    );
    assert_alive_and_healthy(&mut h).await;
}

#[tokio::test]
async fn a_tarpit_store_holds_no_reveal_permit_another_store_needs() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("noisy-tarpit").await;
    // The tarpit tenant reads 16 paths (twice the reveal permits of one store) from a server
    // that accepts reveals and never answers them.
    let tarpit_paths: Vec<String> = (0..16).map(|i| format!("/tarpit/s{i:02}")).collect();
    for path in &tarpit_paths {
        h.create_string(path, "never-revealed");
    }
    h.create_string("/quiet/db", "quiet-v1");
    let server = HostileServer::start(&h, HashMap::new(), Reveals::Tarpit).await;
    hostile_store(&h, "tarpit", &server.url).await;
    h.start_operator(&["--allowed-api-urls", &server.url]).await;
    let mut yaml = "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: stuck}\nspec:\n  storeRef: {name: tarpit}\n  data:\n".to_string();
    for (i, path) in tarpit_paths.iter().enumerate() {
        yaml.push_str(&format!(
            "    - secretKey: k{i}\n      remoteRef: {{path: {path}}}\n"
        ));
    }
    h.apply_yaml(&yaml).await;
    wait_for(
        Duration::from_secs(30),
        "the tarpit holds 8 reveals",
        || async { (server.pending() >= 8).then_some(()) },
    )
    .await;

    // Another team's new resource, on the operator's own connection (the emulator).
    let started = Instant::now();
    h.apply_single("quiet", "/quiet/db", &["refreshInterval: 10s"])
        .await;
    h.wait_condition("quiet", "Ready", "True", Some("Synced"))
        .await;
    let ready_after = started.elapsed();
    let pending = server.pending();
    eprintln!("tarpit: quiet resource Ready after {ready_after:?}; tarpit holds {pending} reveals");
    assert!(
        pending >= 8,
        "the tarpit still holds its requests ({pending})"
    );
    assert!(
        ready_after < Duration::from_secs(15),
        "the quiet resource took {ready_after:?} (the tarpit's calls last 45 s)"
    );
    assert_alive_and_healthy(&mut h).await;

    // Its rotation reaches its Secret while the tarpit still holds its requests.
    h.put_string("/quiet/db", "quiet-v2");
    let rotated = Instant::now();
    h.wait_secret("quiet", "the rotated value", |data| {
        data.get("password").map(Vec::as_slice) == Some(b"quiet-v2".as_slice())
    })
    .await;
    let pending = server.pending();
    eprintln!(
        "tarpit: rotation reached the Secret after {:?}; tarpit holds {pending} reveals",
        rotated.elapsed()
    );
    assert!(
        pending >= 1,
        "the tarpit still holds its requests ({pending})"
    );
    assert_alive_and_healthy(&mut h).await;
    let stuck = h.resources().get("stuck").await.unwrap();
    assert!(
        stuck.status.as_ref().is_none_or(|s| s
            .conditions
            .iter()
            .all(|c| c.type_ != "Ready" || c.status != "True")),
        "the tarpit resource never synced"
    );
}
