//! Scale benchmark (prints numbers; asserts nothing about speed): on the real local control plane
//! with the emulator, measures in one run the floor (a plain kube client server-side-applying N
//! Secrets, 8 at a time), the cold sync of N new resources (until every Secret exists, and until
//! every resource is Ready, both seen through watches rather than by polling lists) as a ratio
//! to that floor, the apiserver requests per first sync (from
//! the apiserver's own `apiserver_request_total`), the operator's RSS idle, with N resources at
//! steady state, and after K unrelated Secrets; the time for M new resources to reach Ready while
//! the N existing ones keep being checked (p50/p99/max); provider calls per minute at steady
//! state; and an operator restart at steady state (reveals made, seconds until every resource was
//! checked again).
//!
//!   cargo bench --bench scale                    # N=1000, M=100, K=1000
//!   BENCH_EXISTING=10000 BENCH_NEW=500 BENCH_UNRELATED=10000 cargo bench --bench scale
//!   BENCH_OPERATOR_ARGS="--thalassa-rate-limit 100 --thalassa-rate-burst 200" cargo bench --bench scale
//!
//! Directory mode (`BENCH_DIRECTORY`, comma-separated sizes): for each size, one directory holding
//! that many secrets and `BENCH_EXISTING` (default 100) resources, each naming one explicit path in
//! it (`BENCH_PATHS` distinct paths, default 50; refreshInterval 1m); prints the steady RSS after
//! `BENCH_CYCLES` (default 3) refresh intervals, provider calls in the last minute, and the ratio of
//! each RSS to the first size's:
//!
//!   BENCH_DIRECTORY=200,3100 cargo bench --bench scale

// The cluster tests' harness; a bench uses a part of it.
#[path = "../tests/cluster/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{Harness, env_usize, harness, wait_for};
use futures::{StreamExt, stream};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use thalassa_operator::crd::ThalassaSecret;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn resource(name: &str, batch: &str, path: &str) -> ThalassaSecret {
    serde_yaml::from_str(&format!(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}, labels: {{bench-batch: {batch}}}}}\nspec:\n  refreshInterval: 1m\n  data: [{{secretKey: value, remoteRef: {{path: {path}}}}}]\n"
    ))
    .unwrap()
}

/// The path resource `i` of `paths` names: one per directory, or all in one directory.
fn bench_path(i: usize, paths: usize, directory: bool) -> String {
    if directory {
        format!("/bench/dir/s{}", i % paths)
    } else {
        format!("/bench/app{}/value", i % paths)
    }
}

/// Server-side-applies one resource per name, 16 at a time; returns when each was created.
async fn create_resources(
    api: &kube::Api<ThalassaSecret>,
    names: &[String],
    batch: &str,
    paths: usize,
    directory: bool,
) -> BTreeMap<String, Instant> {
    let created = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            async move {
                let ts = resource(name, batch, &bench_path(i, paths, directory));
                api.patch(
                    name,
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&ts),
                )
                .await
                .expect("create resource");
                (name.clone(), Instant::now())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect()
}

fn is_ready(ts: &ThalassaSecret) -> bool {
    ts.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == ts.metadata.generation
        })
    })
}

/// Ready resources of one batch (label-selected, so polling the new batch does not load the
/// apiserver with lists of every resource).
async fn ready_names(h: &Harness, batch: &str) -> Vec<String> {
    let params = ListParams::default().labels(&format!("bench-batch={batch}"));
    let list = h.resources().list(&params).await.unwrap();
    list.items
        .iter()
        .filter(|ts| is_ready(ts))
        .filter_map(|ts| ts.metadata.name.clone())
        .collect()
}

/// When each resource of `batch` was first seen Ready, from a watch started before they are
/// created (a watch costs the apiserver one event per change; polling lists of thousands of
/// resources would load the apiserver the benchmark measures). Ends once `expected` are Ready.
fn watch_ready(
    h: &Harness,
    batch: &str,
    expected: usize,
) -> tokio::task::JoinHandle<BTreeMap<String, Instant>> {
    let config = watcher::Config::default().labels(&format!("bench-batch={batch}"));
    let stream = watcher(h.resources(), config);
    tokio::spawn(async move {
        let mut ready_at = BTreeMap::new();
        let mut stream = std::pin::pin!(stream.applied_objects());
        while ready_at.len() < expected {
            match stream.next().await {
                Some(Ok(ts)) if is_ready(&ts) => {
                    ready_at
                        .entry(ts.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
                Some(_) => {}
                None => break,
            }
        }
        ready_at
    })
}

/// When the `expected`-th managed Secret appeared, from a metadata watch started before.
fn watch_secrets(h: &Harness, expected: usize) -> tokio::task::JoinHandle<Instant> {
    let config = watcher::Config::default().labels(thalassa_operator::crd::MANAGED_SELECTOR);
    let secrets: kube::Api<kube::api::PartialObjectMeta<Secret>> =
        kube::Api::namespaced(h.client.clone(), h.ns());
    let stream = watcher(secrets, config);
    tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        let mut stream = std::pin::pin!(stream.applied_objects());
        while seen.len() < expected {
            match stream.next().await {
                Some(Ok(secret)) => {
                    seen.insert(secret.metadata.name.unwrap_or_default());
                }
                Some(Err(_)) => {}
                None => break,
            }
        }
        Instant::now()
    })
}

/// A Secret like the ones the operator writes for the benchmark's resources, without its
/// metadata: what a plain client writes for the floors.
fn plain_secret(name: &str, i: usize) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            [(
                "value".to_string(),
                ByteString(format!("value-{i}").into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The floor: a plain client server-side-applies `n` Secrets, 8 at a time (what the apiserver
/// allows on this machine, without any operator).
async fn floor(h: &Harness, n: usize) -> Duration {
    let secrets = h.secrets();
    let start = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let name = format!("floor-{i}");
                let secret = plain_secret(&name, i);
                secrets
                    .patch(
                        &name,
                        &PatchParams::apply("bench-floor").force(),
                        &Patch::Apply(&secret),
                    )
                    .await
                    .expect("floor Secret");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}

/// The writes floor: a plain client makes, for `n` resources, exactly the writes one first sync
/// needs (create the Secret, then server-side-apply a full Ready status of a ThalassaSecret),
/// 8 at a time, in a namespace no operator watches. A status update of a custom resource costs
/// the apiserver several times a Secret apply, so this is the bound for any operator that
/// reports status per resource. The namespace is returned so that its deletion (at the end of
/// the run) does not load the apiserver during the measurements.
async fn writes_floor(h: &Harness, n: usize, paths: usize) -> (Duration, testenv::TestNamespace) {
    let namespace = testenv::ControlPlane::shared()
        .temp_namespace("benchfloor")
        .await;
    let ns = namespace.name().to_string();
    let resources: kube::Api<ThalassaSecret> = kube::Api::namespaced(h.client.clone(), &ns);
    let secrets: kube::Api<Secret> = kube::Api::namespaced(h.client.clone(), &ns);
    let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    create_resources(&resources, &names, "floor", paths, false).await;
    let start = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (resources, secrets) = (resources.clone(), secrets.clone());
            async move {
                let name = format!("w{i}");
                let secret = plain_secret(&name, i);
                secrets
                    .create(&Default::default(), &secret)
                    .await
                    .expect("floor Secret");
                let status = serde_json::json!({
                    "apiVersion": "secrets.thalassa.cloud/v1alpha1",
                    "kind": "ThalassaSecret",
                    "status": ready_status(&name, i, paths),
                });
                resources
                    .patch_status(
                        &name,
                        &PatchParams::apply("bench-floor").force(),
                        &Patch::Apply(&status),
                    )
                    .await
                    .expect("floor status");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    (start.elapsed(), namespace)
}

/// A status of the shape the operator writes after a first sync (every condition True).
fn ready_status(name: &str, i: usize, paths: usize) -> serde_json::Value {
    let now = "2026-01-01T00:00:00Z";
    let conditions: Vec<serde_json::Value> = thalassa_operator::status::types::ALL
        .iter()
        .map(|type_| {
            serde_json::json!({
                "type": type_, "status": "True", "reason": "Synced", "observedGeneration": 1,
                "message": "the Secret holds the current version of every source",
                "lastTransitionTime": now,
            })
        })
        .collect();
    serde_json::json!({
        "observedGeneration": 1,
        "conditions": conditions,
        "secretName": name,
        "secretUid": format!("00000000-0000-0000-0000-{i:012}"),
        "syncedVersions": {bench_path(i, paths, false): 1},
        "kmsKeyIdentity": "kms-bench",
        "kmsKeyVersion": "1",
        "lastSyncTime": now,
        "lastCheckTime": now,
    })
}

/// The apiserver's request counter, summed by (resource/subresource, verb), for the resources a
/// sync touches.
async fn apiserver_requests(h: &Harness) -> BTreeMap<String, f64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = h.client.request_text(request).await.unwrap_or_default();
    let mut sums = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let (resource, subresource, verb) =
            (label("resource"), label("subresource"), label("verb"));
        if !["secrets", "thalassasecrets", "events"].contains(&resource.as_str())
            || (resource == "thalassasecrets" && subresource.is_empty())
            || ["LIST", "WATCH"].contains(&verb.as_str())
        {
            continue;
        }
        let key = if subresource.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{subresource}")
        };
        *sums.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    sums
}

/// Resources the running operator has checked since it started (its last-check gauge series).
async fn checked_resources(h: &Harness) -> usize {
    let Some(port) = h.operator.as_ref().map(|o| o.port) else {
        return 0;
    };
    common::http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .map_or(0, |(_, body)| {
            body.lines()
                .filter(|l| {
                    l.starts_with("thalassa_operator_last_successful_check_timestamp_seconds{")
                })
                .count()
        })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Starts the operator with the extra flags of `BENCH_OPERATOR_ARGS` (e.g.
/// `--thalassa-rate-limit 100`); returns its pid, its idle RSS and the flags.
async fn start_bench_operator(h: &mut Harness) -> (u32, f64, String) {
    h.operator_log_filter = Some("info".into());
    let operator_args = std::env::var("BENCH_OPERATOR_ARGS").unwrap_or_default();
    let args: Vec<&str> = operator_args.split_whitespace().collect();
    h.start_operator(&args).await;
    let pid = h.operator.as_ref().unwrap().child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    (pid, rss_mib(pid), operator_args)
}

/// Steady state of one directory size in directory mode.
struct DirectoryRun {
    secrets: usize,
    rss_idle: f64,
    rss_steady: f64,
    rss_max: f64,
    calls: u64,
    listings: u64,
    gets: u64,
    reveals: u64,
}

async fn directory_run(
    secrets: usize,
    resources: usize,
    paths: usize,
    cycles: u64,
) -> DirectoryRun {
    let paths = paths.min(secrets);
    let mut h = harness(&format!("benchdir{secrets}")).await;
    for i in 0..secrets {
        h.create_string(&format!("/bench/dir/s{i}"), &format!("value-{i}"));
    }
    let (pid, rss_idle, _) = start_bench_operator(&mut h).await;
    let names: Vec<String> = (0..resources).map(|i| format!("r{i}")).collect();
    create_resources(&h.resources(), &names, "existing", paths, true).await;
    wait_for(Duration::from_secs(600), "resources Ready", || async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (ready_names(&h, "existing").await.len() >= resources).then_some(())
    })
    .await;
    // Several refresh intervals (1m) of steady state; the last one is measured.
    tokio::time::sleep(Duration::from_secs(60 * cycles.saturating_sub(1))).await;
    let control = h.emulator.control();
    control.reset_counters();
    let mut rss_max: f64 = 0.0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rss_max = rss_max.max(rss_mib(pid));
    }
    let counters = control.counters();
    let rss_steady = rss_mib(pid);
    h.stop_operator().await;
    DirectoryRun {
        secrets,
        rss_idle,
        rss_steady,
        rss_max,
        calls: counters.total,
        listings: counters.operation_total("listSecrets"),
        gets: counters.operation_total("getSecret"),
        reveals: counters.operation_total("getSecretValue"),
    }
}

async fn directory_mode(sizes: &str) {
    let resources = env_usize("BENCH_EXISTING", 100);
    let paths = env_usize("BENCH_PATHS", 50);
    let cycles = env_usize("BENCH_CYCLES", 3) as u64;
    let mut runs = Vec::new();
    for size in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        runs.push(directory_run(size, resources, paths, cycles).await);
    }
    println!("\nthalassa-secrets-operator directory benchmark (optimised build of the operator)");
    println!(
        "{resources} resources, each naming one of {paths} explicit paths in one directory (refreshInterval 1m); steady state after {cycles} intervals"
    );
    println!(
        "secrets in dir  RSS idle  RSS steady  RSS max (last min)  vs first  calls/min  listSecrets  getSecret  reveals"
    );
    let first = runs.first().map_or(1.0, |r| r.rss_steady);
    for r in &runs {
        println!(
            "{:>14}  {:>5.1} MiB  {:>7.1} MiB  {:>15.1} MiB  {:>+7.1}%  {:>9}  {:>11}  {:>9}  {:>7}",
            r.secrets,
            r.rss_idle,
            r.rss_steady,
            r.rss_max,
            (r.rss_steady / first - 1.0) * 100.0,
            r.calls,
            r.listings,
            r.gets,
            r.reveals
        );
    }
}

#[tokio::main]
async fn main() {
    if let Ok(sizes) = std::env::var("BENCH_DIRECTORY") {
        directory_mode(&sizes).await;
        return;
    }
    let existing = env_usize("BENCH_EXISTING", 1000);
    let new = env_usize("BENCH_NEW", 100);
    let unrelated = env_usize("BENCH_UNRELATED", 1000);
    let paths = env_usize("BENCH_PATHS", 50);
    let mut h = harness("bench").await;
    for i in 0..paths {
        h.create_string(&format!("/bench/app{i}/value"), &format!("value-{i}"));
    }
    let floor = floor(&h, existing).await;
    let (writes_floor, _floor_namespace) = writes_floor(&h, existing, paths).await;
    let (_, rss_idle, operator_args) = start_bench_operator(&mut h).await;
    h.stop_operator().await;

    // The cold sync: N resources exist (a restore, a new installation, a GitOps apply that ran
    // ahead), the operator starts. Creating them is not the operator's work and is timed apart
    // (while the operator runs, it keeps up with creation: see the new resources below).
    let names: Vec<String> = (0..existing).map(|i| format!("r{i}")).collect();
    let creating = Instant::now();
    create_resources(&h.resources(), &names, "existing", paths, false).await;
    let created_all = creating.elapsed();
    let requests_before = apiserver_requests(&h).await;
    let all_secrets = watch_secrets(&h, existing);
    let all_ready = watch_ready(&h, "existing", existing);
    // Both watches have listed before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let args: Vec<&str> = operator_args.split_whitespace().collect();
    h.start_operator(&args).await;
    let pid = h.operator.as_ref().unwrap().child.id().unwrap();
    let cold_deadline = Duration::from_secs(1800);
    let secrets_present = tokio::time::timeout(cold_deadline, all_secrets)
        .await
        .expect("every Secret within 30 minutes")
        .unwrap()
        .duration_since(start);
    let ready_at = tokio::time::timeout(cold_deadline, all_ready)
        .await
        .expect("every resource Ready within 30 minutes")
        .unwrap();
    assert_eq!(ready_at.len(), existing, "every existing resource Ready");
    let initial_sync = ready_at.values().max().unwrap().duration_since(start);
    let poll = Duration::from_millis(if existing > 2000 { 2000 } else { 500 });
    // Status writes may still be in flight for the last resources seen Ready elsewhere.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let requests_after = apiserver_requests(&h).await;
    let per_sync: Vec<String> = requests_after
        .iter()
        .map(|(k, v)| (k, v - requests_before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(k, d)| format!("{k} {:.2}", d / existing as f64))
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_steady = rss_mib(pid);

    // Steady-state provider calls over one minute.
    let control = h.emulator.control();
    control.reset_counters();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let counters = control.counters();
    let calls_per_minute = counters.total;
    let reveals_per_minute = counters.operation_total("getSecretValue");

    // M new resources while the existing ones keep being checked.
    let new_names: Vec<String> = (0..new).map(|i| format!("new{i}")).collect();
    let new_ready = watch_ready(&h, "new", new);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let created = create_resources(&h.resources(), &new_names, "new", paths, false).await;
    let ready_at = tokio::time::timeout(Duration::from_secs(600), new_ready)
        .await
        .expect("new resources Ready within 10 minutes")
        .unwrap();
    let mut latencies: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.saturating_duration_since(created[name]))
        .collect();
    latencies.sort();

    // K unrelated Secrets: the operator must not watch or cache them.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_before_unrelated = rss_mib(pid);
    let secrets = h.secrets();
    stream::iter(0..unrelated)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(format!("unrelated-{i}")),
                        ..Default::default()
                    },
                    data: Some([("blob".to_string(), ByteString(vec![b'x'; 10 * 1024]))].into()),
                    ..Default::default()
                };
                secrets
                    .patch(
                        &format!("unrelated-{i}"),
                        &PatchParams::apply("bench").force(),
                        &Patch::Apply(&secret),
                    )
                    .await
                    .expect("unrelated secret");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rss_unrelated = rss_mib(pid);

    // An operator restart at steady state: reveals made and seconds until every resource was
    // checked by the new process.
    let total = existing + new;
    control.reset_counters();
    h.stop_operator().await;
    let restarted = Instant::now();
    let (pid, _, _) = start_bench_operator(&mut h).await;
    wait_for(
        Duration::from_secs(1800),
        "every resource checked after the restart",
        || async {
            tokio::time::sleep(poll).await;
            (checked_resources(&h).await >= total).then_some(())
        },
    )
    .await;
    let restart_steady = restarted.elapsed();
    let restart_reveals = control.counters().operation_total("getSecretValue");
    let rss_after_restart = rss_mib(pid);

    println!("\nthalassa-secrets-operator scale benchmark (optimised build of the operator)");
    println!("existing resources            {existing} over {paths} paths (refreshInterval 1m)");
    println!("operator flags                {operator_args}");
    let ratio = |d: Duration| d.as_secs_f64() / floor.as_secs_f64();
    println!(
        "floor: plain client SSA of {existing} Secrets, 8 at a time  {:.1} s",
        floor.as_secs_f64()
    );
    let writes_ratio = |d: Duration| d.as_secs_f64() / writes_floor.as_secs_f64();
    println!(
        "writes floor: plain client creates {existing} Secrets and applies {existing} Ready statuses, 8 at a time  {:.1} s ({:.1}x floor)",
        writes_floor.as_secs_f64(),
        ratio(writes_floor)
    );
    println!(
        "creating the {existing} resources (16 at a time, operator stopped)  {:.1} s ({:.1}x floor)",
        created_all.as_secs_f64(),
        ratio(created_all)
    );
    println!(
        "cold sync from operator start: every Secret exists {:.1} s ({:.1}x floor, {:.1}x writes floor)",
        secrets_present.as_secs_f64(),
        ratio(secrets_present),
        writes_ratio(secrets_present)
    );
    println!(
        "cold sync from operator start: every resource Ready {:.1} s ({:.1}x floor, {:.1}x writes floor)",
        initial_sync.as_secs_f64(),
        ratio(initial_sync),
        writes_ratio(initial_sync)
    );
    println!("apiserver requests per first sync  {}", per_sync.join(", "));
    println!("RSS idle                      {rss_idle:.1} MiB");
    println!("RSS at steady state           {rss_steady:.1} MiB");
    println!("RSS after the new resources   {rss_before_unrelated:.1} MiB");
    println!(
        "RSS after {unrelated} unrelated 10 KiB Secrets  {rss_unrelated:.1} MiB ({:+.1}%)",
        (rss_unrelated / rss_before_unrelated - 1.0) * 100.0
    );
    println!(
        "provider calls per minute     {calls_per_minute} at steady state ({reveals_per_minute} reveals)"
    );
    println!(
        "new resources Ready           {}/{new}: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "operator restart at {total}      {restart_reveals} reveals, every resource checked after {:.1} s, RSS {rss_after_restart:.1} MiB",
        restart_steady.as_secs_f64()
    );
    h.stop_operator().await;
}
