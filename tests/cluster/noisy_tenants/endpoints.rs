//! Endpoints are the cluster admin's choice (issue 22, attacks 5 and the "600 stores" part of
//! 7): a store's `url` outside the operator's allow-list is sent nothing and says so, admission
//! refuses it up front, and stores that no resource uses cost one check, not a steady stream of
//! requests, however their server fails.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use thalassa_operator::store::{StoreStatus, ThalassaSecretStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::common::{self, documents, harness, helm, kubectl, wait_for};

const CHART: &str = "charts/thalassa-secrets-operator";
const POLICY_TEMPLATE: &str = "templates/store-url-policy.yaml";

/// How long a test server accepts connections before it stops by itself.
const SERVER_LIFETIME: Duration = Duration::from_secs(240);

/// One request a test server received.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    organisation: String,
    target: String,
}

/// A server on 127.0.0.1 that records every connection and request and answers each request
/// with `status` (keep-alive). It stops by itself after [`SERVER_LIFETIME`], or when dropped.
struct TestServer {
    port: u16,
    connections: Arc<Mutex<usize>>,
    requests: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(status: u16) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            let _ = tokio::time::timeout(SERVER_LIFETIME, async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        return;
                    };
                    *c.lock().unwrap() += 1;
                    let r = r.clone();
                    tokio::spawn(tokio::time::timeout(SERVER_LIFETIME, async move {
                        let mut buffer = Vec::new();
                        let mut chunk = [0u8; 4096];
                        loop {
                            let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n")
                            else {
                                match socket.read(&mut chunk).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) if buffer.len() < 65536 => {
                                        buffer.extend_from_slice(&chunk[..n])
                                    }
                                    Ok(_) => return,
                                }
                                continue;
                            };
                            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                            buffer.drain(..end + 4);
                            let mut lines = head.lines();
                            let target = lines
                                .next()
                                .and_then(|l| l.split_whitespace().nth(1))
                                .unwrap_or_default()
                                .to_string();
                            let organisation = lines
                                .filter_map(|l| l.split_once(':'))
                                .find(|(k, _)| k.eq_ignore_ascii_case("x-organisation-identity"))
                                .map(|(_, v)| v.trim().to_string())
                                .unwrap_or_default();
                            r.lock().unwrap().push(Seen {
                                at: Instant::now(),
                                organisation,
                                target,
                            });
                            let answer = format!(
                                "HTTP/1.1 {status} Test\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                            );
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }));
                }
            })
            .await;
        });
        TestServer {
            port,
            connections,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests of `organisation` whose target contains `part`.
    fn of(&self, organisation: &str, part: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.organisation == organisation && s.target.contains(part))
            .collect()
    }
}

async fn token_secret(client: &Client, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "token".to_string(),
            ByteString(b"tenant-token".to_vec()),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn store_yaml(name: &str, url: &str, organisation: &str, labels: &str) -> String {
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  url: {url}\n  organisation: {organisation}\n  auth: {{tokenSecretRef: {{name: tenant-token}}}}\n"
    )
}

async fn apply_store(client: &Client, namespace: &str, yaml: &str) {
    let store: ThalassaSecretStore = serde_yaml::from_str(yaml).unwrap();
    let api: Api<ThalassaSecretStore> = Api::namespaced(client.clone(), namespace);
    api.patch(
        store.metadata.name.as_deref().unwrap(),
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&store),
    )
    .await
    .expect("store applies");
}

/// The store's status once it has one for its current generation.
async fn store_status(client: &Client, namespace: &str, name: &str) -> Option<StoreStatus> {
    let api: Api<ThalassaSecretStore> = Api::namespaced(client.clone(), namespace);
    let store = api.get(name).await.ok()?;
    let status = store.status?;
    (status.observed_generation == store.metadata.generation).then_some(status)
}

/// Waits until the store's `type_` condition has `status` and `reason`; returns its message.
async fn wait_store(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    wait_for(
        Duration::from_secs(60),
        &format!("store {name}: {type_}={status} {reason}"),
        || async {
            let s = store_status(client, namespace, name).await?;
            let c = s.conditions.into_iter().find(|c| c.type_ == type_)?;
            (c.status == status && c.reason == reason).then_some(c.message)
        },
    )
    .await
}

/// A store whose `url` is outside the allow-list: the operator sends it nothing (not one
/// connection: no token, no exchange), the store says why (`UrlNotAllowed`, Stalled), and a
/// ThalassaSecret using it says so too. A store at an allowed URL still works, so the operator
/// was looking.
#[tokio::test]
async fn a_store_url_outside_the_allow_list_is_sent_nothing() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("ep-url").await;
    let client = h.client.clone();
    let ns = h.ns().to_string();
    let hostile = TestServer::start(200).await;
    h.start_operator(&[]).await;
    token_secret(&client, &ns, "tenant-token").await;

    // The hostile server, a path that only looks below an allowed one, and a host that merely
    // starts like an allowed one.
    let refused = [
        ("hostile", hostile.url()),
        ("hostile-path", format!("{}/v1/../_emulator", hostile.url())),
        (
            "lookalike",
            format!("{}.evil.example", h.emulator.base_url()),
        ),
    ];
    for (name, url) in &refused {
        apply_store(&client, &ns, &store_yaml(name, url, "org-local", "")).await;
    }
    h.apply_single(
        "uses-hostile",
        "/app/password",
        &["storeRef: {name: hostile}"],
    )
    .await;

    for (name, _) in &refused {
        let message = wait_store(&client, &ns, name, "Ready", "False", "UrlNotAllowed").await;
        assert!(
            message.contains("not allowed") && message.contains("--allowed-api-urls"),
            "{name}: {message}"
        );
        assert!(
            !message
                .split([' ', ',', '(', ')', ';'])
                .any(|word| word.starts_with(&hostile.url())),
            "{name}: the status echoes the refused URL: {message}"
        );
        wait_store(&client, &ns, name, "Stalled", "True", "UrlNotAllowed").await;
    }
    let ts = h
        .wait_condition("uses-hostile", "Ready", "False", Some("UrlNotAllowed"))
        .await;
    let message = common::condition(&ts, "Ready").message;
    assert!(message.contains("nothing was sent"), "{message}");
    assert!(
        h.secrets().get_opt("uses-hostile").await.unwrap().is_none(),
        "no Secret for a refused store"
    );

    // A store at the allowed URL works meanwhile.
    let good = store_yaml("good", &h.emulator.base_url(), "org-local", "");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut token = secrets.get("tenant-token").await.unwrap();
    token.data = Some(BTreeMap::from([(
        "token".to_string(),
        ByteString(h.emulator.token().as_bytes().to_vec()),
    )]));
    token.metadata.managed_fields = None;
    secrets
        .replace("tenant-token", &PostParams::default(), &token)
        .await
        .unwrap();
    apply_store(&client, &ns, &good).await;
    wait_store(&client, &ns, "good", "CredentialsValid", "True", "Verified").await;

    assert_eq!(
        hostile.connections(),
        0,
        "the refused URL got connections: {:?}",
        hostile.requests()
    );
    let log = h.operator_log();
    assert!(!log.contains("tenant-token-value"), "no credential in logs");
}

/// The chart's store-URL policy (and config/store-urls, which equals it) refuses a store whose
/// url is not allowed, with a message that says what is allowed; allowed URLs, URLs below an
/// allowed path and stores without a url are admitted. Bound only to this test's objects (the
/// control plane is shared).
#[tokio::test]
async fn admission_refuses_a_store_url_outside_the_allow_list() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let control_plane = testenv::ControlPlane::shared();
    let _logs = control_plane.logs_on_panic();
    common::install_crd(&control_plane.client().await).await;
    let namespace = control_plane.temp_namespace("ep-vap").await;
    let ns = namespace.name();
    let release = format!("epv-{}", &ns[ns.len() - 6..]);
    let (ok, rendered, err) = helm(&[
        "template",
        &release,
        CHART,
        "-s",
        POLICY_TEMPLATE,
        "--set",
        "stores.allowedApiUrls={https://api.thalassa.cloud,https://gw.example:8443/thalassa/}",
    ])
    .await;
    assert!(ok, "helm template: {err}");
    let policy = format!("{release}-thalassa-secrets-operator-store-urls");
    let _uninstall = Uninstall(policy.clone());
    let label = format!("tso-test-{}", &ns[ns.len() - 6..]);
    let mut docs = documents(&rendered);
    for doc in &mut docs {
        if doc["kind"] == "ValidatingAdmissionPolicyBinding" {
            doc["spec"]["matchResources"] = serde_yaml::from_str(&format!(
                "{{objectSelector: {{matchLabels: {{{label}: enforced}}}}}}"
            ))
            .unwrap();
        }
    }
    let manifests = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests)).await;
    assert!(ok, "installing the policy: {out}");

    let store = |name: &str, url: Option<&str>| {
        let url = url.map(|u| format!("  url: {u}\n")).unwrap_or_default();
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{label}: enforced}}}}\nspec:\n{url}  organisation: o\n  auth: {{tokenSecretRef: {{name: t}}}}\n"
        )
    };
    let cluster_store = |name: &str, url: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ClusterThalassaSecretStore\nmetadata: {{name: {name}, labels: {{{label}: enforced}}}}\nspec:\n  url: {url}\n  organisation: o\n  credentialsNamespace: {ns}\n  auth: {{tokenSecretRef: {{name: t}}}}\n"
        )
    };
    let dry_run = |yaml: String| async move {
        kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml)).await
    };
    // The binding takes a moment to reach the admission chain.
    let probe = store("probe", Some("http://127.0.0.1:6443"));
    wait_for(Duration::from_secs(60), "the policy refuses", || {
        let probe = probe.clone();
        async move {
            let (ok, out) = dry_run(probe).await;
            (!ok && out.contains("-store-urls")).then_some(())
        }
    })
    .await;
    for url in [
        "http://127.0.0.1:6443",
        "http://10.0.0.1/v1",
        "https://kubernetes.default.svc",
        "http://api.thalassa.cloud",
        "https://api.thalassa.cloud:8443",
        "https://api.thalassa.cloud.evil.example",
        "https://api.thalassa.cloud@evil.example",
        "https://x.api.thalassa.cloud",
        "https://api.thalassa.cloud/x?y=1",
        "https://gw.example:8443/thalassa2",
        "https://gw.example:8443/thalassa/../admin",
        "https://gw.example:8443/thalassa/%2E%2E/admin",
        "https://gw.example/thalassa",
    ] {
        let (ok, out) = dry_run(store("bad", Some(url))).await;
        assert!(!ok, "{url} should be refused: {out}");
        assert!(
            out.contains("-store-urls")
                && out.contains("is not a Thalassa API URL the cluster admin allows")
                && out.contains("https://gw.example:8443/thalassa/"),
            "{url}: refused, but not readably by the policy: {out}"
        );
    }
    let (ok, out) = dry_run(cluster_store("bad-cluster", "http://127.0.0.1:2379")).await;
    assert!(!ok && out.contains("-store-urls"), "cluster store: {out}");
    for url in [
        Some("https://api.thalassa.cloud"),
        Some("https://API.thalassa.cloud:443/"),
        Some("https://api.thalassa.cloud/v2"),
        Some("https://gw.example:8443/thalassa"),
        Some("https://gw.example:8443/thalassa/v1"),
        None,
    ] {
        let (ok, out) = dry_run(store("good", url)).await;
        assert!(ok, "{url:?} should be admitted: {out}");
    }
    let (ok, out) = dry_run(cluster_store("good-cluster", "https://api.thalassa.cloud")).await;
    assert!(ok, "cluster store: {out}");
    namespace.delete().await.expect("namespace deleted");
}

/// Deletes the cluster-scoped policy and binding when the test ends, passed or not.
struct Uninstall(String);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let kubeconfig = testenv::ControlPlane::shared().kubeconfig_path();
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = std::process::Command::new(common::bin_dir().join("kubectl"))
                .env("KUBECONFIG", kubeconfig)
                .args(["delete", kind, &self.0, "--ignore-not-found"])
                .output();
        }
    }
}

/// config/store-urls is the chart's store-URL policy with default values, and the chart
/// renders the same allow-list into the Deployment (ALLOWED_API_URLS) and the policy.
#[tokio::test]
async fn the_kustomize_store_url_policy_equals_the_chart_policy() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let (ok, chart, err) = helm(&["template", "tso", CHART, "-s", POLICY_TEMPLATE]).await;
    assert!(ok, "{err}");
    let (ok, kustomize) = kubectl(
        &[
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/store-urls"),
        ],
        None,
    )
    .await;
    assert!(ok, "kubectl kustomize config/store-urls: {kustomize}");
    let of_kind = |docs: &[serde_yaml::Value], kind: &str| {
        let found: Vec<serde_yaml::Value> =
            docs.iter().filter(|d| d["kind"] == kind).cloned().collect();
        assert_eq!(found.len(), 1, "one {kind}: {docs:?}");
        found[0].clone()
    };
    let (chart, kustomize) = (documents(&chart), documents(&kustomize));
    assert_eq!(
        of_kind(&kustomize, "ValidatingAdmissionPolicy")["spec"],
        of_kind(&chart, "ValidatingAdmissionPolicy")["spec"],
        "config/store-urls differs from the chart's {POLICY_TEMPLATE}"
    );
    let mut binding = of_kind(&chart, "ValidatingAdmissionPolicyBinding")["spec"].clone();
    binding["policyName"] = "thalassa-secrets-operator-store-urls".into();
    assert_eq!(
        of_kind(&kustomize, "ValidatingAdmissionPolicyBinding")["spec"],
        binding
    );
    // The operator's flag gets the same list the policy checks.
    let (ok, all, err) = helm(&[
        "template",
        "tso",
        CHART,
        "--set",
        "thalassa.apiUrl=https://eu.thalassa.example",
    ])
    .await;
    assert!(ok, "{err}");
    let deployment = documents(&all)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ALLOWED_API_URLS")
        .cloned()
        .expect("ALLOWED_API_URLS set");
    assert_eq!(
        env["value"],
        "https://api.thalassa.cloud,https://eu.thalassa.example"
    );
}

/// Stores that no ThalassaSecret uses, pointing at a server that answers 503, are checked once
/// (when created) and then only at the slow unused interval (1 h), however often the server
/// fails; a used store at the same server is re-checked with exponential backoff. The window is
/// event-based: it lasts until the used store has been checked four times (with a 2 s first
/// retry: about 2 + 4 + 8 s of backoff); before, every failing store was re-checked every 30 s.
/// Also prints the operator's RSS per unused store.
#[tokio::test]
async fn unused_stores_at_a_failing_server_cost_one_check_and_a_used_one_backs_off() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    const UNUSED: usize = 40;
    let mut h = harness("ep-cost").await;
    let client = h.client.clone();
    let ns = h.ns().to_string();
    let failing = TestServer::start(503).await;
    let allowed = format!("{},{}", h.emulator.base_url(), failing.url());
    h.operator_log_filter = Some("info".into());
    h.start_operator(&[
        "--allowed-api-urls",
        &allowed,
        "--store-retry-interval",
        "2s",
        "--store-check-interval",
        "30s",
    ])
    .await;
    token_secret(&client, &ns, "tenant-token").await;
    let pid = h.operator.as_ref().unwrap().child.id().unwrap();
    let rss_before = rss_bytes(pid);

    // The used store: its checks browse region nl-01; its ThalassaSecret reads region xx-99,
    // so the server tells the two apart. The resource comes first, so the store is used from
    // its first check.
    h.apply_single(
        "user",
        "/app/password",
        &["storeRef: {name: used}", "region: xx-99"],
    )
    .await;
    h.wait_condition("user", "Ready", "False", Some("StoreNotFound"))
        .await;
    apply_store(
        &client,
        &ns,
        &store_yaml("used", &failing.url(), "org-used", ""),
    )
    .await;
    futures::future::join_all((0..UNUSED).map(|i| {
        let (client, ns, url) = (client.clone(), ns.clone(), failing.url());
        async move {
            apply_store(
                &client,
                &ns,
                &store_yaml(&format!("unused-{i}"), &url, &format!("org-unused-{i}"), ""),
            )
            .await
        }
    }))
    .await;
    // Every unused store was checked once and said the failure passes by itself.
    for i in 0..UNUSED {
        wait_store(
            &client,
            &ns,
            &format!("unused-{i}"),
            "Reconciling",
            "True",
            "CheckFailed",
        )
        .await;
    }
    let rss_after = rss_bytes(pid);
    let all_checked = Instant::now();
    let before = failing.of("org-used", "/v1/secrets/nl-01/").len();
    // The window: until the used store has been checked three more times (four browse attempts
    // per check: the first and the client's three retries).
    let checks = wait_for(
        Duration::from_secs(60),
        "three more checks of the used store",
        || async {
            let browses = failing.of("org-used", "/v1/secrets/nl-01/");
            (browses.len() >= before.max(4) + 12).then_some(browses)
        },
    )
    .await;
    let starts: Vec<Instant> = checks.iter().step_by(4).map(|s| s.at).collect();
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(
        gaps[2] > gaps[0] + 2.0,
        "the used store's checks back off: gaps {gaps:?}"
    );
    let window = Instant::now() - all_checked;
    let mut total = 0;
    for i in 0..UNUSED {
        let organisation = format!("org-unused-{i}");
        let summary = failing.of(&organisation, "/v1/kms/summary").len();
        let browse = failing.of(&organisation, "/v1/secrets/").len();
        total += summary + browse;
        assert!(
            (1..=4).contains(&summary) && browse <= 4,
            "unused-{i} was checked more than once ({summary} summary and {browse} browse requests)"
        );
    }
    // No unused store sent anything after its first check.
    let late = failing
        .requests()
        .into_iter()
        .filter(|s| s.organisation.starts_with("org-unused-") && s.at > all_checked)
        .count();
    println!(
        "{UNUSED} unused stores at a 503 server: {total} requests in all (one check each), {late} in the {:.1}s window in which the used store was checked 3 more times (gaps between its checks {gaps:?}); operator RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per store",
        window.as_secs_f64(),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / UNUSED as f64,
    );
    assert_eq!(
        late, 0,
        "unused stores were checked again within the window"
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Measurement, not a check (ignored by default): the operator's RSS per idle store and the
/// requests per second N unused stores send to a server that answers 503, over a window.
/// Configured through the environment only, so the same test measures an operator without
/// the store schedule:
///   IDLE_STORES=200 IDLE_WINDOW_SECS=90 cargo test --test cluster -- --ignored --nocapture measure_idle_stores
#[tokio::test]
#[ignore]
async fn measure_idle_stores() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let stores = common::env_usize("IDLE_STORES", 200);
    let window = Duration::from_secs(common::env_usize("IDLE_WINDOW_SECS", 90) as u64);
    let h = harness("ep-measure").await;
    let client = h.client.clone();
    let ns = h.ns().to_string();
    let failing = TestServer::start(503).await;
    let operator = common::OperatorCommand::new(
        testenv::ControlPlane::shared().kubeconfig_path(),
        h.dir.join("measure.log"),
    );
    let metrics_addr = format!("127.0.0.1:{}", operator.port());
    let token = h.dir.join("token");
    let operator = operator
        .env(
            "RUST_LOG",
            std::env::var("OPERATOR_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env(
            "ALLOWED_API_URLS",
            format!("{},{}", h.emulator.base_url(), failing.url()),
        )
        .args([
            "--thalassa-url",
            &h.emulator.base_url(),
            "--organisation",
            h.emulator.organisation(),
            "--token-file",
            token.to_str().unwrap(),
            "--region",
            "nl-01",
            "--operator-namespace",
            &ns,
            "--watch-namespace",
            &ns,
            "--metrics-addr",
            &metrics_addr,
        ])
        .start("operator ready")
        .await;
    token_secret(&client, &ns, "tenant-token").await;
    let pid = operator.child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_bytes(pid);
    let names: Vec<String> = (0..stores).map(|i| format!("idle-{i}")).collect();
    for chunk in names.chunks(20) {
        futures::future::join_all(chunk.iter().map(|name| {
            let (client, ns, url) = (client.clone(), ns.clone(), failing.url());
            async move {
                apply_store(
                    &client,
                    &ns,
                    &store_yaml(name, &url, &format!("org-{name}"), ""),
                )
                .await
            }
        }))
        .await;
    }
    let api: Api<ThalassaSecretStore> = Api::namespaced(client.clone(), &ns);
    wait_for(Duration::from_secs(300), "every store checked", || async {
        let list = api.list(&Default::default()).await.ok()?;
        let checked = list
            .items
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .count();
        (checked == stores).then_some(())
    })
    .await;
    let rss_checked = rss_bytes(pid);
    let start = failing.requests().len();
    let mut rss_max = rss_checked;
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(rss_bytes(pid));
    }
    let late: Vec<Seen> = failing.requests()[start..].to_vec();
    let mut late_orgs: BTreeMap<String, usize> = BTreeMap::new();
    for seen in &late {
        *late_orgs.entry(seen.organisation.clone()).or_default() += 1;
    }
    if !late_orgs.is_empty() {
        println!(
            "{} stores sent requests in the window: {:?}",
            late_orgs.len(),
            late_orgs.iter().take(10).collect::<Vec<_>>()
        );
    }
    let requests = late.len();
    let rss_end = rss_bytes(pid);
    println!(
        "{stores} unused stores at a 503 server: RSS idle {:.1} MiB, after every first check {:.1} MiB, after {}s {:.1} MiB (max {:.1}): {:.1} KiB per store; {requests} requests in {}s after every store was checked = {:.2} requests/s",
        rss_idle as f64 / 1048576.0,
        rss_checked as f64 / 1048576.0,
        window.as_secs(),
        rss_end as f64 / 1048576.0,
        rss_max as f64 / 1048576.0,
        rss_end.saturating_sub(rss_idle) as f64 / 1024.0 / stores as f64,
        window.as_secs(),
        requests as f64 / window.as_secs_f64(),
    );
}
