//! Fair shares of the reconcile slots: a namespace whose resources all wait on a tarpit (a
//! server that accepts requests and never answers) holds at most its share of the slots, and
//! another namespace's new resource is served at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::{io::AsyncReadExt, net::TcpListener, task::JoinSet};

use crate::common::{harness, kubectl_apply, wait_for};

/// A loopback server that accepts connections and never answers. Counts connections accepted
/// and connections the client gave up on (closed).
struct Tarpit {
    url: String,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Tarpit {
    async fn start() -> Tarpit {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (accepted_count, closed_count) = (accepted.clone(), closed.clone());
        let server = tokio::spawn(async move {
            // Dropped with the server task: every held connection closes with it.
            let mut held = JoinSet::new();
            // Bounded: a test never needs more connections than this.
            while accepted_count.load(Ordering::SeqCst) < 256 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    break;
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let closed = closed_count.clone();
                held.spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
            // Keep holding what was accepted until the test ends.
            while held.join_next().await.is_some() {}
        });
        Tarpit {
            url,
            accepted,
            closed,
            server,
        }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const SELECTOR: &str = "noisy-tenants=lanes";
const NOISY_RESOURCES: usize = 24;

fn resource(name: &str, path: &str, store: Option<&str>) -> String {
    let store_ref = store
        .map(|s| format!("  storeRef: {{name: {s}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}, labels: {{noisy-tenants: lanes}}}}\nspec:\n{store_ref}  data: [{{secretKey: value, remoteRef: {{path: {path}}}}}]\n"
    )
}

async fn apply(namespace: &str, yaml: &str) {
    if let Err(out) = kubectl_apply(namespace, yaml).await {
        panic!("kubectl apply: {out}");
    }
}

#[tokio::test]
async fn a_namespace_stuck_on_a_tarpit_holds_only_its_share_of_the_reconcile_slots() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let h = harness("lanes-quiet").await;
    h.create_string("/quiet/db", "quiet-value-1");
    let tarpit = Tarpit::start().await;
    let noisy = testenv::ControlPlane::shared()
        .temp_namespace("lanes-noisy")
        .await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), noisy.name());
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("thalassa".into()),
                    ..Default::default()
                },
                data: Some([("token".to_string(), ByteString(b"noisy-token".to_vec()))].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    apply(
        noisy.name(),
        &format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: tarpit}}\nspec:\n  url: {}\n  organisation: org-local\n  auth: {{tokenSecretRef: {{name: thalassa}}}}\n",
            tarpit.url
        ),
    )
    .await;
    for i in 0..NOISY_RESOURCES {
        // Each in its own directory: distinct listings, no coalescing into one request.
        apply(
            noisy.name(),
            &resource(
                &format!("n{i}"),
                &format!("/noisy/{i}/value"),
                Some("tarpit"),
            ),
        )
        .await;
    }

    // Cluster mode (two namespaces), limited to this test's resources.
    let operator = h
        .spawn_operator_watching(
            None,
            &[
                "--selector",
                SELECTOR,
                "--default-connection-namespaces",
                h.ns(),
                "--allowed-api-urls",
                &tarpit.url,
            ],
            "operator.log",
        )
        .await;

    // The noisy namespace fills its share and has more waiting: its lane turns reconciles away.
    wait_for(
        Duration::from_secs(60),
        "the noisy namespace's reconciles to be deferred",
        || async {
            let (_, metrics) = operator.get("/metrics").await?;
            let deferred: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("thalassa_operator_reconciles_deferred_total "))?
                .trim()
                .parse()
                .ok()?;
            (deferred > 0.0 && tarpit.accepted.load(Ordering::SeqCst) > 0).then_some(())
        },
    )
    .await;

    // Another team's new resource, created while every noisy reconcile still waits on the
    // tarpit, is served without waiting for any of them to give up.
    apply(h.ns(), &resource("quiet", "/quiet/db", None)).await;
    h.wait_condition("quiet", "Ready", "True", Some("Synced"))
        .await;
    h.wait_secret("quiet", "the quiet Secret", |data| {
        data.get("value").map(Vec::as_slice) == Some(b"quiet-value-1".as_slice())
    })
    .await;
    assert_eq!(
        tarpit.closed.load(Ordering::SeqCst),
        0,
        "the quiet resource became Ready only after a noisy request gave up (30 s request timeout): it waited behind the noisy namespace"
    );
    drop(operator);
}
