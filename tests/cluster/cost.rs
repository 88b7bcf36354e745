//! Provider cost, counted by the emulator: zero reveals at steady state, reveals only for changed
//! versions, and metadata calls that do not grow with the number of resources reading one prefix.

use std::time::Duration;

use crate::common::{Harness, harness, wait_for};
use kube::api::ListParams;

const SOURCES: usize = 5;
const WINDOW: Duration = Duration::from_secs(30);

async fn ready_count(h: &Harness) -> usize {
    let list = h.resources().list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter(|ts| {
            ts.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == ts.metadata.generation
                })
            })
        })
        .count()
}

struct Measured {
    resources: usize,
    listings: u64,
    gets: u64,
    summaries: u64,
    reveals_idle: u64,
    reveals_after_change: u64,
    readers_of_changed: usize,
}

async fn measure(resources: usize) -> Measured {
    let mut h = harness(&format!("cost{resources}")).await;
    for i in 0..SOURCES {
        h.create_string(&format!("/app/cost/s{i}"), &format!("value-{i}"));
    }
    h.start_operator(&[]).await;
    for i in 0..resources {
        h.apply_yaml(&format!(
            r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: r{i}}}
spec:
  refreshInterval: 10s
  data:
    - secretKey: value
      remoteRef: {{path: /app/cost/s{}}}
"#,
            i % SOURCES
        ))
        .await;
    }
    wait_for(Duration::from_secs(120), "all resources Ready", || async {
        (ready_count(&h).await == resources).then_some(())
    })
    .await;
    let control = h.emulator.control();
    // Steady state: nothing changes in Thalassa for three refresh intervals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    control.reset_counters();
    tokio::time::sleep(WINDOW).await;
    let idle = control.counters();
    // One version changes: every resource reading it picks it up.
    control.reset_counters();
    h.put_string("/app/cost/s0", "value-0-new");
    let readers = resources.div_ceil(SOURCES).min(resources);
    let secrets = h.secrets();
    wait_for(
        Duration::from_secs(60),
        "new version synced everywhere",
        || {
            let secrets = secrets.clone();
            async move {
                for i in (0..resources).step_by(SOURCES) {
                    let s = secrets.get(&format!("r{i}")).await.ok()?;
                    if s.data?.get("value")?.0 != b"value-0-new" {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let changed = control.counters();
    h.stop_operator().await;
    Measured {
        resources,
        listings: idle.operation_total("listSecrets"),
        gets: idle.operation_total("getSecret"),
        summaries: idle.operation_total("kmsSummary"),
        reveals_idle: idle.operation_total("getSecretValue"),
        reveals_after_change: changed.operation_total("getSecretValue"),
        readers_of_changed: readers,
    }
}

#[tokio::test]
async fn provider_calls_grow_with_changes_not_with_resources() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut rows = Vec::new();
    for resources in [1, 10, 100] {
        rows.push(measure(resources).await);
    }
    println!(
        "\nprovider calls in {WINDOW:?} of steady state (refresh interval 10s), {SOURCES} paths under one prefix:"
    );
    println!(
        "resources  listSecrets  getSecret  kmsSummary  reveals(idle)  reveals(1 change)  readers"
    );
    for m in &rows {
        println!(
            "{:>9}  {:>11}  {:>9}  {:>10}  {:>13}  {:>17}  {:>7}",
            m.resources,
            m.listings,
            m.gets,
            m.summaries,
            m.reveals_idle,
            m.reveals_after_change,
            m.readers_of_changed
        );
    }
    for m in &rows {
        assert_eq!(
            m.reveals_idle, 0,
            "{} resources: reveals at steady state",
            m.resources
        );
        assert_eq!(
            m.gets, 0,
            "{} resources: per-path metadata calls at steady state",
            m.resources
        );
        assert!(
            m.reveals_after_change >= 1,
            "{} resources: the change was read",
            m.resources
        );
        assert!(
            m.reveals_after_change <= m.readers_of_changed as u64,
            "{} resources: at most one reveal per resource reading the changed path",
            m.resources
        );
    }
    assert_eq!(
        rows[0].reveals_after_change, 1,
        "one resource: exactly one reveal per changed version"
    );
    // Metadata calls are shared: 100 resources cost about what one costs.
    let one = rows[0].listings.max(1);
    for m in &rows[1..] {
        assert!(
            m.listings <= one * 2 + 2,
            "{} resources made {} listings vs {} for one",
            m.resources,
            m.listings,
            one
        );
    }
}

/// Two resources naming two explicit paths in a directory of 64 secrets: after the first listing
/// showed the directory's size, the paths are checked one by one (no relisting of the directory),
/// shared by both resources, and a new version still arrives within one refresh interval.
#[tokio::test]
async fn few_paths_in_a_large_directory_are_checked_per_path() {
    let _turn = crate::common::area_turn(module_path!()).await;
    const DIRECTORY: usize = 64;
    let mut h = harness("costdir").await;
    for i in 0..DIRECTORY {
        h.create_string(&format!("/app/big/s{i}"), &format!("value-{i}"));
    }
    h.start_operator(&[]).await;
    for (name, path) in [("a", "s0"), ("b", "s1"), ("c", "s0")] {
        h.apply_yaml(&format!(
            r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: {name}}}
spec:
  refreshInterval: 10s
  data:
    - secretKey: value
      remoteRef: {{path: /app/big/{path}}}
"#
        ))
        .await;
    }
    wait_for(Duration::from_secs(120), "all resources Ready", || async {
        (ready_count(&h).await == 3).then_some(())
    })
    .await;
    let control = h.emulator.control();
    tokio::time::sleep(Duration::from_secs(10)).await;
    control.reset_counters();
    tokio::time::sleep(WINDOW).await;
    let idle = control.counters();
    let listings = idle.operation_total("listSecrets");
    let gets = idle.operation_total("getSecret");
    println!(
        "\n2 paths in a directory of {DIRECTORY}, {WINDOW:?} at steady state (refresh 10s): {listings} listSecrets, {gets} getSecret"
    );
    assert_eq!(listings, 0, "the large directory is not relisted");
    // Two paths, each checked at most once per half interval (5 s) and shared by its readers.
    let checks = WINDOW.as_secs() / 5 + 1;
    assert!(gets >= 2, "both paths are checked: {gets}");
    assert!(
        gets <= 2 * checks,
        "{gets} checks for 2 paths in {WINDOW:?}"
    );
    assert_eq!(idle.operation_total("getSecretValue"), 0);
    let changed_at = std::time::Instant::now();
    h.put_string("/app/big/s0", "value-0-new");
    let secrets = h.secrets();
    wait_for(Duration::from_secs(60), "new version synced", || {
        let secrets = secrets.clone();
        async move {
            for name in ["a", "c"] {
                let s = secrets.get(name).await.ok()?;
                if s.data?.get("value")?.0 != b"value-0-new" {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    // One refresh interval (10 s), plus the half interval a shared check may be old, plus slack.
    let took = changed_at.elapsed();
    println!("new version synced in {took:?}");
    assert!(
        took <= Duration::from_secs(20),
        "the new version took {took:?}"
    );
    h.stop_operator().await;
}
