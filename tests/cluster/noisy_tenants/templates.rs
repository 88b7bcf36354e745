//! Templates on a shared operator (issue 22, attacks 2, 3 and the template and ConfigMap parts of
//! 7; the DSN example of attack 8 is rendered by `tests/offline/docs.rs`):
//!
//! - a noisy tenant with CPU-burning templates re-rendered in a loop, templates pulling in
//!   megabytes of `templateFrom` ConfigMap items, and ten templates of 1 MB output each, while a
//!   quiet tenant's plain and templated new resources reach Ready and its rotation reaches its
//!   Secret promptly, `/healthz` answers within 1 s throughout, and the operator's peak RSS stays
//!   bounded;
//! - labelled ConfigMaps that no resource uses cost the operator (almost) no memory, at steady
//!   state and at the next start.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use thalassa_operator::crd::ThalassaSecret;

use crate::common::{harness, http_get, secret_data, wait_for};

const TEMPLATE_LABEL: &str = "secrets.thalassa.cloud/template";

async fn apply_config_map(client: &Client, namespace: &str, name: &str, data: &[(String, String)]) {
    let config_map: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {TEMPLATE_LABEL: "true"}},
        "data": data.iter().cloned().collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("ConfigMap applies");
}

async fn apply_resource(client: &Client, namespace: &str, yaml: &str) {
    let mut ts: ThalassaSecret = serde_yaml::from_str(yaml).expect("valid YAML");
    ts.metadata.namespace = Some(namespace.to_string());
    let name = ts.metadata.name.clone().unwrap();
    Api::<ThalassaSecret>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&ts),
        )
        .await
        .expect("ThalassaSecret applies");
}

/// Waits (up to `limit`) until `namespace/name` has Ready=`status` (with `reason`, if given) at
/// its generation; returns how long that took.
async fn wait_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    (status, reason): (&str, Option<&str>),
    limit: Duration,
) -> Duration {
    let api: Api<ThalassaSecret> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    wait_for(
        limit,
        &format!("{namespace}/{name} Ready={status} {reason:?}"),
        || {
            let api = api.clone();
            async move {
                let ts = api.get(name).await.ok()?;
                ts.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .any(|c| {
                        c.type_ == "Ready"
                            && c.status == status
                            && reason.is_none_or(|r| c.reason == r)
                            && c.observed_generation == ts.metadata.generation
                    })
                    .then_some(())
            }
        },
    )
    .await;
    started.elapsed()
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`: peak resident set; `VmRSS`: now).
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Samples `/healthz` every 200 ms until stopped: (slowest answer, samples, failures).
struct HealthProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Duration, usize, usize)>,
}

impl HealthProbe {
    fn start(port: u16) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let url = format!("http://127.0.0.1:{port}/healthz");
            let (mut slowest, mut samples, mut failures) = (Duration::ZERO, 0, 0);
            while !stopped.load(Ordering::SeqCst) {
                let started = Instant::now();
                match tokio::time::timeout(Duration::from_secs(5), http_get(&url)).await {
                    Ok(Some((200, _))) => slowest = slowest.max(started.elapsed()),
                    _ => failures += 1,
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (slowest, samples, failures)
        });
        HealthProbe { stop, task }
    }

    async fn finish(self) -> (Duration, usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// A template that burns CPU with little memory and few instructions: each `replace` copies
/// 4 MB; the sandbox's 5 s of CPU stop it long before it ends.
fn burning_template(edit: usize) -> String {
    format!(
        "{{% set s = 'x' * 4000000 %}}{{% for i in range(3000) %}}{{% set t = s | replace('x', 'y') %}}{{% endfor %}}{{{{ v }}}}{{# edit {edit} #}}"
    )
}

/// 60 KB of template text, dense with expressions (the most compile work per byte).
fn bulky_template(i: usize) -> String {
    format!("{{# {i} #}}") + &"{{ v }}".repeat(60 * 1024 / 7)
}

const NOISY_BURNERS: usize = 20;
const NOISY_BULKY: usize = 4;

#[tokio::test]
async fn a_noisy_tenants_templates_neither_starve_a_quiet_tenant_nor_stall_the_probes() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("quiet").await;
    let noisy_ns = testenv::ControlPlane::shared()
        .temp_namespace("noisy")
        .await;
    let (quiet, noisy) = (h.ns().to_string(), noisy_ns.name().to_string());
    let client = h.client.clone();
    h.create_string("/quiet/plain", "v1");
    h.create_kv("/quiet/db", &[("user", "app"), ("password", "p/ss@w:rd x")]);
    h.create_string("/noisy/v", "noisy");
    let allowed = format!("{quiet},{noisy}");
    let operator = h
        .spawn_operator_watching(
            None,
            &["--default-connection-namespaces", &allowed],
            "operator.log",
        )
        .await;
    let pid = operator.child.id().expect("operator pid");
    let probe = HealthProbe::start(operator.port);
    h.operator = Some(operator);

    // The noisy tenant: CPU-burning templates, edited in a loop so they render again and again;
    // templates pulling in 1.8 MB of ConfigMap items each; ten templates of 1 MB output.
    apply_config_map(
        &client,
        &noisy,
        "burn",
        &[("t".into(), burning_template(0))],
    )
    .await;
    for cm in 0..2 {
        let items: Vec<(String, String)> = (0..15)
            .map(|i| (format!("t{i}"), bulky_template(i)))
            .collect();
        apply_config_map(&client, &noisy, &format!("bulk-{cm}"), &items).await;
    }
    let head = |name: &str| {
        format!(
            "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {{name: {name}}}\nspec:\n  refreshInterval: 10s\n  data: [{{secretKey: v, remoteRef: {{path: /noisy/v}}}}]\n  target:\n    template:\n"
        )
    };
    for i in 0..NOISY_BURNERS {
        let yaml = head(&format!("burn-{i}"))
            + "      templateFrom: [{configMap: {name: burn, items: [{key: t}]}}]\n";
        apply_resource(&client, &noisy, &yaml).await;
    }
    for i in 0..NOISY_BULKY {
        let mut yaml = head(&format!("bulk-{i}")) + "      templateFrom:\n";
        for cm in 0..2 {
            let items: Vec<String> = (0..15)
                .map(|k| format!("{{key: t{k}, secretKey: c{cm}-t{k}}}"))
                .collect();
            yaml += &format!(
                "        - configMap: {{name: bulk-{cm}, items: [{}]}}\n",
                items.join(", ")
            );
        }
        apply_resource(&client, &noisy, &yaml).await;
    }
    let mut yaml = head("huge-output") + "      data:\n";
    for k in 0..10 {
        yaml += &format!("        out{k}: \"{{{{ 'y' * 1000000 }}}}\"\n");
    }
    apply_resource(&client, &noisy, &yaml).await;
    let editing = Arc::new(AtomicBool::new(true));
    let edits = Arc::new(AtomicUsize::new(0));
    let edit_loop = {
        let (client, noisy, editing, edits) = (
            client.clone(),
            noisy.clone(),
            editing.clone(),
            edits.clone(),
        );
        tokio::spawn(async move {
            // Bounded: stops by itself after 150 edits (5 minutes).
            for edit in 1..=150 {
                if !editing.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                apply_config_map(
                    &client,
                    &noisy,
                    "burn",
                    &[("t".into(), burning_template(edit))],
                )
                .await;
                edits.store(edit, Ordering::SeqCst);
            }
        })
    };
    // The noisy renders are under way: a burner failed on the sandbox's limits.
    let noisy_api: Api<ThalassaSecret> = Api::namespaced(client.clone(), &noisy);
    wait_for(Duration::from_secs(90), "a noisy render to fail", || {
        let api = noisy_api.clone();
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .filter(|ts| {
                    ts.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("burn-"))
                })
                .filter_map(|ts| ts.status.as_ref())
                .flat_map(|s| &s.conditions)
                .any(|c| {
                    c.type_ == "Ready"
                        && c.reason == "TemplateError"
                        && c.message.contains("sandbox's limits")
                })
                .then_some(())
        }
    })
    .await;
    let edits_before = edits.load(Ordering::SeqCst);

    // The quiet tenant: a plain new resource, a templated one, and a rotation.
    let plain = "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: plain}\nspec:\n  refreshInterval: 10s\n  data: [{secretKey: password, remoteRef: {path: /quiet/plain}}]\n";
    apply_resource(&client, &quiet, plain).await;
    let plain_ready = wait_ready(
        &client,
        &quiet,
        "plain",
        ("True", None),
        // Long enough to measure a starved resource; the bound is asserted below.
        Duration::from_secs(240),
    )
    .await;
    let templated = "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: dsn}\nspec:\n  refreshInterval: 10s\n  dataFrom: [{path: /quiet/db}]\n  target:\n    template:\n      data:\n        auth: \"{{ user }}:{{ password | b64enc }}\"\n";
    apply_resource(&client, &quiet, templated).await;
    let templated_ready = wait_ready(
        &client,
        &quiet,
        "dsn",
        ("True", None),
        // Long enough to measure a starved resource; the bound is asserted below.
        Duration::from_secs(240),
    )
    .await;
    let rotated_at = Instant::now();
    h.put_string("/quiet/plain", "v2");
    let secrets = h.secrets();
    wait_for(Duration::from_secs(240), "the rotated value", || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get("plain").await.ok()?;
            (secret_data(&secret).get("password")?.as_slice() == b"v2").then_some(())
        }
    })
    .await;
    let rotation = rotated_at.elapsed();
    let auth = secret_data(&h.secrets().get("dsn").await.unwrap())["auth"].clone();
    assert_eq!(String::from_utf8(auth).unwrap(), "app:cC9zc0B3OnJkIHg=");

    // All of that happened while the noisy tenant kept editing and rendering.
    let edits_during = edits.load(Ordering::SeqCst) - edits_before;
    let loop_ran_throughout = !edit_loop.is_finished();
    editing.store(false, Ordering::SeqCst);
    let (slowest, samples, failures) = probe.finish().await;
    let peak_mib = vm_kib(pid, "VmHWM") / 1024;
    let mut reasons = BTreeMap::new();
    for ts in noisy_api.list(&Default::default()).await.unwrap() {
        let name = ts.metadata.name.clone().unwrap_or_default();
        let ready = ts
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
        if name.starts_with("bulk-") {
            // Refused for their size alone, before anything is compiled or revealed.
            let ready = ready.as_ref().expect("a bulky resource has a status");
            assert_eq!(ready.reason, "TemplateError", "{name}: {}", ready.message);
            assert!(
                ready.message.contains("add up to more than 262144 bytes"),
                "{name}: {}",
                ready.message
            );
        }
        let reason = ready.map_or("none".to_string(), |c| c.reason);
        *reasons.entry(reason).or_insert(0) += 1;
    }
    println!(
        "quiet plain Ready after {plain_ready:?}, templated Ready after {templated_ready:?}, rotation {rotation:?}; \
         noisy edits meanwhile {edits_during}, noisy Ready reasons {reasons:?}; \
         /healthz slowest {slowest:?} over {samples} samples ({failures} failed); operator VmHWM {peak_mib} MiB"
    );
    assert!(loop_ran_throughout, "the noisy loop ran throughout");
    assert!(edits_during >= 1, "the noisy tenant was busy meanwhile");
    assert!(
        plain_ready < Duration::from_secs(10),
        "a quiet plain resource took {plain_ready:?}"
    );
    assert!(
        templated_ready < Duration::from_secs(10),
        "a quiet templated resource took {templated_ready:?}"
    );
    assert!(
        rotation < Duration::from_secs(20),
        "a quiet rotation took {rotation:?}"
    );
    assert!(samples >= 20, "{samples} samples");
    assert_eq!(failures, 0, "/healthz failed {failures} of {samples} times");
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );
    assert!(peak_mib < 96, "operator peak RSS {peak_mib} MiB");
}

#[tokio::test]
async fn labelled_configmaps_no_resource_uses_cost_almost_no_memory() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let _one = super::one_at_a_time().await;
    let mut h = harness("cmcache").await;
    let client = h.client.clone();
    let ns = h.ns().to_string();
    h.create_string("/app/cm/v", "value");
    apply_config_map(&client, &ns, "used", &[("t".into(), "{{ v }} 0".into())]).await;
    h.start_operator(&[]).await;
    h.apply_yaml(
        "apiVersion: secrets.thalassa.cloud/v1alpha1\nkind: ThalassaSecret\nmetadata: {name: app}\nspec:\n  refreshInterval: 10s\n  data: [{secretKey: v, remoteRef: {path: /app/cm/v}}]\n  target:\n    template:\n      templateFrom: [{configMap: {name: used, items: [{key: t}]}}]\n",
    )
    .await;
    h.wait_secret("app", "the first render", |d| {
        d.get("t").map(Vec::as_slice) == Some(b"value 0".as_slice())
    })
    .await;
    let pid = h.operator.as_ref().unwrap().child.id().unwrap();
    let before_rss = vm_kib(pid, "VmRSS");
    let before_hwm = vm_kib(pid, "VmHWM");

    // A tenant labels 24 ConfigMaps of about 1 MB that nothing uses.
    const UNUSED: usize = 24;
    for i in 0..UNUSED {
        let items: Vec<(String, String)> = (0..9)
            .map(|k| (format!("k{k}"), format!("{k}").repeat(100_000)))
            .collect();
        apply_config_map(&client, &ns, &format!("unused-{i}"), &items).await;
    }
    // An edit of the used ConfigMap after them: once it is rendered, the operator's watch has
    // delivered every unused one too (one ordered stream).
    apply_config_map(&client, &ns, "used", &[("t".into(), "{{ v }} 1".into())]).await;
    h.wait_secret("app", "the re-render", |d| {
        d.get("t").map(Vec::as_slice) == Some(b"value 1".as_slice())
    })
    .await;
    let after_rss = vm_kib(pid, "VmRSS");
    let after_hwm = vm_kib(pid, "VmHWM");
    // Unchanged templates are not compiled again by periodic checks.
    let compiled = |log: &str| {
        log.matches("compiling the templates in the sandbox")
            .count()
    };
    let compiles = compiled(&h.operator_log());
    assert!(
        compiles >= 2,
        "the first render and the edit compiled: {compiles}"
    );
    h.wait_checks("app", 2).await;
    assert_eq!(
        compiled(&h.operator_log()),
        compiles,
        "a periodic check compiled the templates again"
    );

    // The next start lists them all again.
    h.stop_operator().await;
    h.start_operator(&[]).await;
    h.wait_checks("app", 1).await;
    let restarted = h.operator.as_ref().unwrap().child.id().unwrap();
    let restart_hwm = vm_kib(restarted, "VmHWM");
    println!(
        "{UNUSED} unused labelled ConfigMaps of ~0.9 MB: operator RSS {} -> {} MiB (peak {} -> {} MiB); \
         peak after a restart {} MiB",
        before_rss / 1024,
        after_rss / 1024,
        before_hwm / 1024,
        after_hwm / 1024,
        restart_hwm / 1024
    );
    // Holding their data would add ~21 MiB (and a start would list them whole).
    assert!(
        after_rss.saturating_sub(before_rss) < 8 * 1024,
        "RSS grew from {before_rss} to {after_rss} KiB"
    );
    assert!(
        restart_hwm < before_hwm + 8 * 1024,
        "a start peaked at {restart_hwm} KiB (before {before_hwm} KiB)"
    );
}
