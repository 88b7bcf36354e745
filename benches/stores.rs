//! The cost of identity (prints numbers; asserts nothing about speed): on the real local control
//! plane with the emulator, N workload-identity stores (TokenRequest + token exchange against the
//! real apiserver's JWKS), each read by R resources. Prints the first-sync latency through the
//! default connection and through the stores, the token exchanges that took, and the token
//! exchanges and provider calls over two minutes of steady state.
//!
//!   cargo bench --bench stores                        # N=20 stores, R=5 resources each
//!   BENCH_STORES=100 BENCH_PER_STORE=2 cargo bench --bench stores

// The cluster tests' harness; a bench uses a part of it.
#[path = "../tests/cluster/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{Harness, env_usize, harness_with};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use thalassa_emulator::{Access, EmulatorConfig, FederatedIdentitySpec, JwksSource};
use thalassa_operator::crd::ThalassaSecret;

/// Applies `count` resources of `batch` (store `store_of(i)`, or none), returning when each was
/// created.
async fn create(
    h: &Harness,
    batch: &str,
    count: usize,
    store_of: impl Fn(usize) -> Option<String>,
) -> BTreeMap<String, Instant> {
    let api = h.resources();
    let specs: Vec<(String, String)> = (0..count)
        .map(|i| {
            let store = store_of(i)
                .map(|s| format!("  storeRef: {{name: {s}}}\n"))
                .unwrap_or_default();
            let name = format!("{batch}-{i}");
            let yaml = format!(
                "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}, labels: {{bench-batch: {batch}}}}}\nspec:\n  refreshInterval: 1m\n  data: [{{secretKey: value, remoteRef: {{path: /bench/p{}/value}}}}]\n{store}",
                i % 10
            );
            (name, yaml)
        })
        .collect();
    stream::iter(specs)
        .map(|(name, yaml)| {
            let api = api.clone();
            async move {
                let ts: ThalassaSecret = serde_yaml::from_str(&yaml).unwrap();
                api.patch(
                    &name,
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&ts),
                )
                .await
                .expect("create resource");
                (name, Instant::now())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Waits until every resource of `batch` is Ready; returns the sorted create-to-Ready latencies.
async fn latencies(h: &Harness, batch: &str, created: &BTreeMap<String, Instant>) -> Vec<Duration> {
    let mut ready_at: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let params = ListParams::default().labels(&format!("bench-batch={batch}"));
    while ready_at.len() < created.len() && Instant::now() < deadline {
        let list = h.resources().list(&params).await.unwrap();
        let now = Instant::now();
        for ts in list.items {
            let ready = ts.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == ts.metadata.generation
                })
            });
            if ready && let Some(name) = ts.metadata.name {
                ready_at.entry(name).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        ready_at.len(),
        created.len(),
        "{batch}: not all Ready in time"
    );
    let mut latencies: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.saturating_duration_since(created[name]))
        .collect();
    latencies.sort();
    latencies
}

fn show(what: &str, sorted: &[Duration]) {
    let p = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what:<44} p50 {:>6.0} ms   max {:>6.0} ms",
        p(0.5).as_secs_f64() * 1000.0,
        p(1.0).as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let stores = env_usize("BENCH_STORES", 20);
    let per_store = env_usize("BENCH_PER_STORE", 5);
    let cp = testenv::ControlPlane::shared();
    let jwks = cp.service_account_jwks().await.expect("apiserver JWKS");
    let mut h = harness_with(
        "bench-stores",
        EmulatorConfig {
            federated_identities: vec![FederatedIdentitySpec {
                service_account_id: "sa-bench".into(),
                issuer: cp.service_account_issuer().into(),
                audiences: vec!["https://api.thalassa.cloud".into()],
                subject: "system:serviceaccount:bench-stores-*:thalassa-secrets".into(),
                jwks: JwksSource::Inline(jwks.to_string()),
                access: Access::read_only(),
            }],
            ..EmulatorConfig::default()
        },
    )
    .await;
    for i in 0..10 {
        h.create_string(&format!("/bench/p{i}/value"), &format!("value-{i}"));
    }
    let sa: kube::Api<ServiceAccount> = kube::Api::namespaced(h.client.clone(), h.ns());
    sa.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("thalassa-secrets".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let url = h.emulator.base_url();
    for i in 0..stores {
        let yaml = format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecretStore\nmetadata: {{name: store-{i}}}\nspec:\n  url: {url}\n  organisation: org-local\n  auth: {{workloadIdentity: {{serviceAccountName: thalassa-secrets, thalassaServiceAccountId: sa-bench}}}}\n"
        );
        let (ok, out) = h
            .kubectl(&["apply", "-n", h.ns(), "-f", "-"], Some(&yaml))
            .await;
        assert!(ok, "{out}");
    }
    let control = h.emulator.control();
    control.reset_counters();
    h.start_operator(&[]).await;
    let total = stores * per_store;

    // The default connection (a token file): the baseline.
    let created = create(&h, "default", total, |_| None).await;
    let baseline = latencies(&h, "default", &created).await;

    // The same number of resources, spread over the stores, each a new identity (its token may
    // already have been exchanged by the store's status check).
    let created = create(&h, "stores", total, |i| {
        Some(format!("store-{}", i % stores))
    })
    .await;
    let through_stores = latencies(&h, "stores", &created).await;
    let first_exchanges = control.counters().operation_total("token");

    // Steady state: two minutes.
    tokio::time::sleep(Duration::from_secs(15)).await;
    control.reset_counters();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let steady = control.counters();

    println!("\n{stores} workload-identity stores, {per_store} resources each ({total} resources)");
    show("first sync, default connection", &baseline);
    show("first sync, through the stores", &through_stores);
    println!(
        "token exchanges from start to all synced      {first_exchanges} (store checks included)"
    );
    println!(
        "token exchanges in 2 min of steady state      {}",
        steady.operation_total("token")
    );
    println!(
        "provider calls in 2 min of steady state       {} (store checks, listings, summaries)",
        steady.total
    );
    println!(
        "(an access token lives {} s here, so steady state costs one exchange per store per lifetime)",
        3600
    );
    h.stop_operator().await;
}
