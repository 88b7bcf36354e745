//! Prometheus metrics (prefix `thalassa_operator_`). Labels are bounded: operation names, HTTP
//! status codes, condition types and documented reasons. The per-object metrics are the
//! last-successful-check timestamp of each ThalassaSecret, labelled by namespace and name, for
//! staleness alerts, and the conditions of each store (stores are few: one per team or
//! platform connection). No paths, error texts or values ever become labels.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::thalassa::RequestObserver;

/// Label: a reason from the closed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    /// The reason.
    pub(crate) reason: String,
}

/// Labels of a Thalassa API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Operation name (`getSecretValue`, `listSecrets`, …).
    pub(crate) operation: String,
    /// HTTP status code, or `error` when no response arrived.
    pub(crate) status: String,
}

/// Label: a Thalassa operation name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    /// Operation name.
    pub(crate) operation: String,
}

/// Labels of the resources-by-condition gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConditionLabels {
    /// Condition type.
    pub(crate) condition: String,
    /// `True`, `False` or `Unknown`.
    pub(crate) status: String,
    /// Condition reason.
    pub(crate) reason: String,
}

/// Labels of the per-resource staleness gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResourceLabels {
    /// Namespace.
    pub(crate) namespace: String,
    /// Name.
    pub(crate) name: String,
}

/// Label: a Thalassa organisation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OrganisationLabels {
    /// Organisation identity.
    pub(crate) organisation: String,
}

/// Labels of the rollout restart counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RestartLabels {
    /// Namespace of the ThalassaSecret.
    pub(crate) namespace: String,
    /// Name of the ThalassaSecret.
    pub(crate) name: String,
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub(crate) kind: String,
}

/// Labels of the per-store condition gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreConditionLabels {
    /// `ThalassaSecretStore` or `ClusterThalassaSecretStore`.
    pub(crate) kind: String,
    /// Namespace (empty for a cluster store).
    pub(crate) namespace: String,
    /// Name.
    pub(crate) name: String,
    /// Condition type.
    pub(crate) condition: String,
    /// `True`, `False` or `Unknown`.
    pub(crate) status: String,
    /// Condition reason.
    pub(crate) reason: String,
}

type ResourceKey = (String, String);
/// A store: kind, namespace (empty for a cluster store), name.
type StoreKey = (String, String, String);

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    reconcile_runs: Counter,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    reconciles_deferred: Counter,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OperationLabels, Histogram>,
    reveals: Counter,
    metadata_requests: Counter,
    rate_limit_wait: Counter<f64, AtomicU64>,
    resources: Family<ConditionLabels, Gauge>,
    last_check: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    push_last_check: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    leader: Gauge,
    store_conditions: Family<StoreConditionLabels, Gauge>,
    rollout_restarts: Family<RestartLabels, Counter>,
    request_rate: Family<OrganisationLabels, Gauge<f64, AtomicU64>>,
    /// Conditions each resource currently counts under, so the gauge is updated incrementally.
    counted: Mutex<HashMap<ResourceKey, Vec<ConditionLabels>>>,
    /// The series each store currently has, so old ones are removed.
    stores: Mutex<HashMap<StoreKey, Vec<StoreConditionLabels>>>,
    /// The ThalassaPushSecrets with a check series, so those deleted are removed.
    pushes: Mutex<HashSet<ResourceKey>>,
}

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("thalassa_operator");
        let reconcile_runs = Counter::default();
        registry.register(
            "reconcile_runs",
            "Reconciles of ThalassaSecrets",
            reconcile_runs.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason (the Ready=False reason)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let reconciles_deferred = Counter::default();
        registry.register(
            "reconciles_deferred",
            "Reconciles turned away because their namespace held its share of the reconcile slots (queued, woken when a slot frees)",
            reconciles_deferred.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "thalassa_requests",
            "Thalassa API requests (each attempt) by operation and HTTP status",
            requests.clone(),
        );
        let request_duration = Family::<OperationLabels, Histogram>::new_with_constructor(
            request_histogram as fn() -> Histogram,
        );
        registry.register(
            "thalassa_request_duration_seconds",
            "Latency of Thalassa API requests by operation",
            request_duration.clone(),
        );
        let reveals = Counter::default();
        registry.register(
            "thalassa_reveals",
            "getSecretValue requests (decrypting reveals)",
            reveals.clone(),
        );
        let metadata_requests = Counter::default();
        registry.register(
            "thalassa_metadata_requests",
            "Metadata requests used for change detection (listSecrets, getSecret, browseSecrets, kmsSummary)",
            metadata_requests.clone(),
        );
        let rate_limit_wait = Counter::<f64, AtomicU64>::default();
        registry.register(
            "thalassa_rate_limit_wait_seconds",
            "Time spent waiting on the client-side Thalassa rate limit",
            rate_limit_wait.clone(),
        );
        let resources = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "resources",
            "ThalassaSecrets by condition type, status and reason",
            resources.clone(),
        );
        let last_check = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_successful_check_timestamp_seconds",
            "Unix time of the last successful version check of each ThalassaSecret",
            last_check.clone(),
        );
        let push_last_check = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "push_last_successful_check_timestamp_seconds",
            "Unix time of the last successful check of each ThalassaPushSecret",
            push_last_check.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica holds the leader lease",
            leader.clone(),
        );
        let store_conditions = Family::<StoreConditionLabels, Gauge>::default();
        registry.register(
            "store_condition",
            "Conditions of each ThalassaSecretStore and ClusterThalassaSecretStore: 1 for the current status and reason of each condition type",
            store_conditions.clone(),
        );
        let rollout_restarts = Family::<RestartLabels, Counter>::default();
        registry.register(
            "rollout_restarts",
            "Rollout restarts of spec.rolloutRestartTargets, by ThalassaSecret and workload kind",
            rollout_restarts.clone(),
        );
        let request_rate = Family::<OrganisationLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "thalassa_request_rate_per_second",
            "Adaptive Thalassa request rate (AIMD) of the connections to each organisation, requests per second",
            request_rate.clone(),
        );
        Metrics {
            request_rate,
            rollout_restarts,
            registry,
            reconcile_runs,
            reconcile_errors,
            reconcile_duration,
            reconciles_deferred,
            requests,
            request_duration,
            reveals,
            metadata_requests,
            rate_limit_wait,
            resources,
            last_check,
            push_last_check,
            leader,
            store_conditions,
            counted: Mutex::default(),
            stores: Mutex::default(),
            pushes: Mutex::default(),
        }
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Records a reconcile turned away because its namespace held its share of the slots.
    pub(crate) fn reconcile_deferred(&self) {
        self.reconciles_deferred.inc();
    }

    /// Records one reconcile.
    pub(crate) fn reconciled(&self, elapsed: Duration, error_reason: Option<&str>) {
        self.reconcile_runs.inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = error_reason {
            self.reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Records the conditions a resource now has (type, status, reason).
    pub(crate) fn set_conditions<'a>(
        &self,
        namespace: &str,
        name: &str,
        conditions: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        let labels: Vec<ConditionLabels> = conditions
            .into_iter()
            .map(|(condition, status, reason)| ConditionLabels {
                condition: condition.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        let mut counted = self.counted.lock().expect("metrics lock");
        let key = (namespace.to_string(), name.to_string());
        if counted.get(&key) == Some(&labels) {
            return;
        }
        for old in counted.remove(&key).unwrap_or_default() {
            self.resources.get_or_create(&old).dec();
        }
        for new in &labels {
            self.resources.get_or_create(new).inc();
        }
        counted.insert(key, labels);
    }

    /// Records a successful version check of a resource now.
    pub(crate) fn checked(&self, namespace: &str, name: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_check
            .get_or_create(&ResourceLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .set(now);
    }

    /// Records a successful check of a ThalassaPushSecret now.
    pub(crate) fn push_checked(&self, namespace: &str, name: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.push_last_check
            .get_or_create(&ResourceLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .set(now);
        self.pushes
            .lock()
            .expect("metrics lock")
            .insert((namespace.to_string(), name.to_string()));
    }

    /// Forgets the ThalassaPushSecrets that no longer exist (`keep` says which still do).
    pub(crate) fn retain_pushes(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut pushes = self.pushes.lock().expect("metrics lock");
        pushes.retain(|(namespace, name)| {
            let kept = keep(namespace, name);
            if !kept {
                self.push_last_check.remove(&ResourceLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                });
            }
            kept
        });
    }

    /// Counts one rollout restart of a workload of `kind` for the resource.
    pub(crate) fn rollout_restarted(&self, namespace: &str, name: &str, kind: &str) {
        self.rollout_restarts
            .get_or_create(&RestartLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Forgets resources that no longer exist (`keep` says which still do).
    pub(crate) fn retain_resources(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut counted = self.counted.lock().expect("metrics lock");
        let gone: Vec<ResourceKey> = counted
            .keys()
            .filter(|(ns, n)| !keep(ns, n))
            .cloned()
            .collect();
        for key in gone {
            for old in counted.remove(&key).unwrap_or_default() {
                self.resources.get_or_create(&old).dec();
            }
            for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
                self.rollout_restarts.remove(&RestartLabels {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    kind: kind.into(),
                });
            }
            self.last_check.remove(&ResourceLabels {
                namespace: key.0,
                name: key.1,
            });
        }
    }

    /// Records the conditions a store now has (type, status, reason): one series with value 1
    /// per condition type; the series of its previous statuses and reasons are removed.
    pub(crate) fn set_store_conditions<'a>(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        conditions: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        let labels: Vec<StoreConditionLabels> = conditions
            .into_iter()
            .map(|(condition, status, reason)| StoreConditionLabels {
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                condition: condition.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        let mut stores = self.stores.lock().expect("metrics lock");
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if stores.get(&key) == Some(&labels) {
            return;
        }
        for old in stores.remove(&key).unwrap_or_default() {
            self.store_conditions.remove(&old);
        }
        for new in &labels {
            self.store_conditions.get_or_create(new).set(1);
        }
        stores.insert(key, labels);
    }

    /// Forgets stores that no longer exist (`keep(kind, namespace, name)` says which still do).
    pub(crate) fn retain_stores(&self, keep: impl Fn(&str, &str, &str) -> bool) {
        let mut stores = self.stores.lock().expect("metrics lock");
        stores.retain(|(kind, namespace, name), series| {
            let kept = keep(kind, namespace, name);
            if !kept {
                for old in series.iter() {
                    self.store_conditions.remove(old);
                }
            }
            kept
        });
    }

    /// Sets the leader gauge.
    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

const METADATA_OPERATIONS: [&str; 4] = ["listSecrets", "getSecret", "browseSecrets", "kmsSummary"];

impl RequestObserver for Metrics {
    fn observe(&self, operation: &'static str, status: Option<u16>, elapsed: Duration) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_string(),
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        if operation == "getSecretValue" {
            self.reveals.inc();
        } else if METADATA_OPERATIONS.contains(&operation) {
            self.metadata_requests.inc();
        }
    }

    fn observe_rate_limit_wait(&self, _operation: &'static str, waited: Duration) {
        self.rate_limit_wait.inc_by(waited.as_secs_f64());
    }

    fn observe_rate(&self, organisation: &str, per_second: f64) {
        self.request_rate
            .get_or_create(&OrganisationLabels {
                organisation: organisation.to_string(),
            })
            .set(per_second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_and_bounded_labels() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(5), None);
        m.reconciled(Duration::from_millis(5), Some("RateLimited"));
        m.observe("getSecretValue", Some(200), Duration::from_millis(3));
        m.observe("listSecrets", Some(200), Duration::from_millis(1));
        m.observe("listSecrets", None, Duration::from_millis(1));
        m.observe_rate_limit_wait("listSecrets", Duration::from_millis(250));
        m.set_conditions("shop", "db", [("Ready", "True", "Synced")]);
        m.checked("shop", "db");
        m.rollout_restarted("shop", "db", "Deployment");
        m.observe_rate("org-1", 75.0);
        m.set_leader(true);
        m.set_store_conditions(
            "ThalassaSecretStore",
            "shop",
            "thalassa",
            [("Ready", "True", "Verified")],
        );
        let text = m.encode();
        for needle in [
            "thalassa_operator_reconcile_runs_total 2",
            "thalassa_operator_reconcile_errors_total{reason=\"RateLimited\"} 1",
            "thalassa_operator_reconcile_duration_seconds_bucket",
            "thalassa_operator_thalassa_requests_total{operation=\"listSecrets\",status=\"error\"} 1",
            "thalassa_operator_thalassa_request_duration_seconds_bucket{le=",
            "thalassa_operator_thalassa_reveals_total 1",
            "thalassa_operator_thalassa_metadata_requests_total 2",
            "thalassa_operator_thalassa_rate_limit_wait_seconds_total 0.25",
            "thalassa_operator_resources{condition=\"Ready\",status=\"True\",reason=\"Synced\"} 1",
            "thalassa_operator_last_successful_check_timestamp_seconds{namespace=\"shop\",name=\"db\"}",
            "thalassa_operator_leader 1",
            "thalassa_operator_thalassa_request_rate_per_second{organisation=\"org-1\"} 75.0",
            "thalassa_operator_rollout_restarts_total{namespace=\"shop\",name=\"db\",kind=\"Deployment\"} 1",
            "thalassa_operator_store_condition{kind=\"ThalassaSecretStore\",namespace=\"shop\",name=\"thalassa\",condition=\"Ready\",status=\"True\",reason=\"Verified\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn condition_gauge_moves_resources_between_reasons_and_forgets_deleted_ones() {
        let m = Metrics::new();
        m.set_conditions("a", "x", [("Ready", "True", "Synced")]);
        m.set_conditions("a", "y", [("Ready", "True", "Synced")]);
        m.set_conditions("a", "y", [("Ready", "False", "RateLimited")]);
        let text = m.encode();
        assert!(text.contains("reason=\"Synced\"} 1"), "{text}");
        assert!(text.contains("reason=\"RateLimited\"} 1"), "{text}");
        m.checked("a", "y");
        m.retain_resources(|_, name| name != "y");
        let text = m.encode();
        assert!(text.contains("reason=\"RateLimited\"} 0"), "{text}");
        assert!(!text.contains("name=\"y\""), "{text}");
    }

    #[test]
    fn store_conditions_have_one_series_per_type_and_go_with_the_store() {
        let m = Metrics::new();
        let series = |text: &str, needle: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with("thalassa_operator_store_condition{") && l.contains(needle)
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        m.set_store_conditions(
            "ThalassaSecretStore",
            "team-a",
            "thalassa",
            [
                ("Ready", "False", "CheckFailed"),
                ("Stalled", "True", "CheckFailed"),
            ],
        );
        m.set_store_conditions(
            "ClusterThalassaSecretStore",
            "",
            "shared",
            [("Ready", "True", "Verified")],
        );
        m.set_store_conditions(
            "ThalassaSecretStore",
            "team-a",
            "thalassa",
            [
                ("Ready", "True", "Verified"),
                ("Stalled", "False", "Verified"),
            ],
        );
        let text = m.encode();
        let mut current = series(&text, "name=\"thalassa\"");
        current.sort();
        assert_eq!(
            current,
            [
                "thalassa_operator_store_condition{kind=\"ThalassaSecretStore\",namespace=\"team-a\",name=\"thalassa\",condition=\"Ready\",status=\"True\",reason=\"Verified\"} 1",
                "thalassa_operator_store_condition{kind=\"ThalassaSecretStore\",namespace=\"team-a\",name=\"thalassa\",condition=\"Stalled\",status=\"False\",reason=\"Verified\"} 1",
            ],
            "the old statuses' series are gone: {text}"
        );
        m.retain_stores(|kind, _, _| kind != "ThalassaSecretStore");
        let text = m.encode();
        assert!(series(&text, "name=\"thalassa\"").is_empty(), "{text}");
        assert_eq!(series(&text, "name=\"shared\"").len(), 1, "{text}");
    }
}
