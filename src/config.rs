//! Operator configuration: every flag also reads an environment variable (set by the Helm chart).
//! `Args` is parsed once in `main` and validated into [`Config`]; nothing else reads the
//! environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::thalassa;

/// Command line of `thalassa-secrets-operator`.
#[derive(Parser, Debug)]
#[command(
    name = "thalassa-secrets-operator",
    version,
    about = "Syncs secrets from Thalassa Cloud Secrets Manager into Kubernetes Secrets"
)]
pub struct Cli {
    /// What to do (default: run the controller).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Connection and controller settings.
    #[command(flatten)]
    pub args: Args,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (the default).
    Run,
    /// Check the Thalassa connection link by link (credentials, feature gates, regional KMS, a
    /// key, reveal permission on a path) and print what to fix. Needs no Kubernetes access;
    /// exits with status 1 when a check fails. Never prints a secret value.
    Check {
        /// Region to check. Default: --region.
        #[arg(id = "check_region", value_name = "REGION")]
        region: Option<String>,
        /// KMS key (identity or slug) that must exist, be active and be symmetric.
        #[arg(long)]
        key: Option<String>,
        /// Secret path to read and reveal with getSecretValue (the value is never printed).
        #[arg(long)]
        path: Option<String>,
    },
}

impl Cli {
    /// Parses the process arguments like [`Parser::parse`], but with every shared flag global,
    /// so connection flags may also follow the subcommand (`check --organisation o …`).
    pub fn parse_args() -> Self {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_args`] for an explicit argument list (the first item is the program name).
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut matches = Self::command()
            .mut_args(|arg| arg.global(true))
            .try_get_matches_from(args)?;
        Self::from_arg_matches_mut(&mut matches)
    }
}

/// The Lease of an operator that is not one of several shards.
const DEFAULT_LEASE_NAME: &str = "thalassa-secrets-operator";

/// Flags shared by all subcommands.
#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Base URL of the Thalassa API.
    #[arg(
        long,
        env = "THALASSA_API_URL",
        default_value = "https://api.thalassa.cloud"
    )]
    pub(crate) thalassa_url: String,

    /// Thalassa organisation (identity or slug), sent as X-Organisation-Identity.
    #[arg(long, env = "THALASSA_ORGANISATION_ID")]
    pub organisation: Option<String>,

    /// Thalassa project, sent as X-Project-Identity when set.
    #[arg(long, env = "THALASSA_PROJECT_ID")]
    pub(crate) project: Option<String>,

    /// Region used by ThalassaSecrets that do not set spec.region.
    #[arg(long, env = "THALASSA_REGION", default_value = "nl-01")]
    pub region: String,

    /// File holding a pre-issued bearer access token (re-read when it changes).
    #[arg(long, env = "THALASSA_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,

    /// File holding a personal access token (sent with the `Token` scheme).
    #[arg(long, env = "THALASSA_PERSONAL_ACCESS_TOKEN_FILE")]
    pub(crate) personal_access_token_file: Option<PathBuf>,

    /// OIDC client id (service-account access credential) for the client-credentials grant.
    #[arg(long, env = "THALASSA_CLIENT_ID")]
    pub(crate) client_id: Option<String>,

    /// File holding the OIDC client secret.
    #[arg(long, env = "THALASSA_CLIENT_SECRET_FILE")]
    pub(crate) client_secret_file: Option<PathBuf>,

    /// File holding a projected service-account token to exchange (workload identity).
    #[arg(long, env = "THALASSA_SUBJECT_TOKEN_FILE")]
    pub(crate) subject_token_file: Option<PathBuf>,

    /// Thalassa service account to act as when exchanging the subject token.
    #[arg(long, env = "THALASSA_SERVICE_ACCOUNT_ID")]
    pub(crate) service_account_id: Option<String>,

    /// Refresh interval for ThalassaSecrets that do not set spec.refreshInterval.
    #[arg(long, env = "DEFAULT_REFRESH_INTERVAL", default_value = "1m", value_parser = parse_duration_arg)]
    pub(crate) default_refresh_interval: Duration,

    /// Maximum number of ThalassaSecrets reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub(crate) concurrency: u16,

    /// Ceiling of Thalassa API requests per second (token bucket shared by every connection): a
    /// hard quota the adaptive rate never passes.
    #[arg(long, env = "THALASSA_RATE_LIMIT", default_value_t = 1000.0)]
    pub(crate) thalassa_rate_limit: f64,

    /// Where each connection's adaptive Thalassa request rate starts, requests per second; it
    /// grows while Thalassa answers and halves on 429 and 503 (AIMD).
    #[arg(long, env = "THALASSA_RATE_START", default_value_t = 50.0)]
    pub(crate) thalassa_rate_start: f64,

    /// Token bucket burst for Thalassa API requests.
    #[arg(long, env = "THALASSA_RATE_BURST", default_value_t = 40)]
    pub(crate) thalassa_rate_burst: u32,

    /// Longest time of one Thalassa call including its retries, backoff and rate-limit waits
    /// (at least the 30s request timeout); past it the call fails as a timeout.
    #[arg(long, env = "THALASSA_CALL_DEADLINE", default_value = "45s", value_parser = parse_duration_arg)]
    pub(crate) thalassa_call_deadline: Duration,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub(crate) metrics_addr: SocketAddr,

    /// Namespace the operator runs in (holds the data-hash key Secret).
    #[arg(long, env = "POD_NAMESPACE", default_value = "thalassa-system")]
    pub(crate) operator_namespace: String,

    /// Name of the Secret (in the operator namespace) holding the key for data hashes; created
    /// when missing.
    #[arg(
        long,
        env = "HASH_KEY_SECRET",
        default_value = "thalassa-secrets-operator-hash-key"
    )]
    pub(crate) hash_key_secret: String,

    /// Only watch ThalassaSecrets in this namespace (namespaced mode). Default: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub(crate) watch_namespace: Option<String>,

    /// Shard: only ThalassaSecrets whose labels match this label selector are reconciled, and
    /// only stores whose labels match it get their status written (`shard=a`,
    /// `shard notin (a)`). Releases with disjoint selectors split a cluster; each needs its own
    /// Lease. Default: every ThalassaSecret.
    #[arg(long, env = "SELECTOR")]
    pub(crate) selector: Option<String>,

    /// Namespaces whose ThalassaSecrets without `storeRef` may use the operator's own connection
    /// (comma-separated). Nobody else may (deny by default); in namespaced mode the watched
    /// namespace always may.
    #[arg(long, env = "DEFAULT_CONNECTION_NAMESPACES", value_delimiter = ',')]
    pub(crate) default_connection_namespaces: Vec<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,

    /// Run several replicas with one active writer, elected through a Lease in the operator
    /// namespace.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub(crate) leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub(crate) lease_name: String,

    /// How long a lease is valid without renewal; a crashed leader is replaced after this.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration_arg)]
    pub(crate) lease_duration: Duration,

    /// This replica's identity in the Lease (the pod name in Kubernetes).
    #[arg(long, env = "POD_NAME")]
    pub(crate) pod_name: Option<String>,

    /// MiB of Thalassa response bodies the whole process holds at once (every connection
    /// shares it; at least 32, the largest body read); a body that would pass it waits.
    #[arg(long, env = "THALASSA_BODY_BUDGET_MIB", default_value_t = 64)]
    pub(crate) thalassa_body_budget_mib: u32,

    /// A force-sync annotation is honoured at most once per this interval per ThalassaSecret;
    /// new values set within it are coalesced into one forced sync at its end.
    #[arg(long, env = "FORCE_SYNC_MIN_INTERVAL", default_value = "1m", value_parser = parse_duration_arg)]
    pub(crate) force_sync_min_interval: Duration,

    /// At most this many rollout restarts of one workload per --restart-window, whatever the
    /// data does; a restart past it waits until the window allows it.
    #[arg(long, env = "RESTART_LIMIT", default_value_t = 3)]
    pub(crate) restart_limit: u32,

    /// The sliding window of --restart-limit.
    #[arg(long, env = "RESTART_WINDOW", default_value = "15m", value_parser = parse_duration_arg)]
    pub(crate) restart_window: Duration,

    /// Restart only workloads that opt in with the annotation
    /// `secrets.thalassa.cloud/allow-rollout-restart-by` (naming the ThalassaSecret, or `*`).
    #[arg(long, env = "RESTART_REQUIRES_OPT_IN", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) restart_requires_opt_in: bool,

    /// Thalassa API URLs a store's `url` may use (comma-separated `http(s)` URLs): a store URL
    /// is allowed when scheme, host and port equal an entry's and its path is the entry's path
    /// or below it. `--thalassa-url` is always allowed. Default: the public Thalassa API only.
    #[arg(long, env = "ALLOWED_API_URLS", value_delimiter = ',')]
    pub(crate) allowed_api_urls: Vec<String>,

    /// How soon a store is checked again after its first failure that passes by itself (5xx,
    /// 429, timeout); each further failure doubles the delay (with jitter), up to
    /// --store-check-interval.
    #[arg(long, env = "STORE_RETRY_INTERVAL", default_value = "30s", value_parser = parse_duration_arg)]
    pub(crate) store_retry_interval: Duration,

    /// How often a store that ThalassaSecrets use is checked when nothing changes, and the
    /// longest backoff between checks of a failing one.
    #[arg(long, env = "STORE_CHECK_INTERVAL", default_value = "10m", value_parser = parse_duration_arg)]
    pub(crate) store_check_interval: Duration,

    /// How often a store that no ThalassaSecret (of this shard) uses is checked, failing or not;
    /// it is also checked when its spec changes.
    #[arg(long, env = "UNUSED_STORE_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration_arg)]
    pub(crate) unused_store_check_interval: Duration,
}

/// Validated operator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Thalassa client settings: the default connection's (credentials included; they redact
    /// themselves), and the template of every store's client (URL, timeouts, retries, limits).
    pub thalassa: thalassa::ClientConfig,
    /// Whether `thalassa` names a usable connection (organisation and credentials were given).
    pub has_default_connection: bool,
    /// Region for resources without spec.region.
    pub default_region: String,
    /// Refresh interval for resources without spec.refreshInterval.
    pub(crate) default_refresh_interval: Duration,
    /// Reconcile concurrency.
    pub(crate) concurrency: u16,
    /// HTTP server address.
    pub metrics_addr: SocketAddr,
    /// Operator namespace.
    pub operator_namespace: String,
    /// Name of the hash-key Secret.
    pub hash_key_secret: String,
    /// Namespace filter, if any.
    pub watch_namespace: Option<String>,
    /// Label selector of this shard's ThalassaSecrets and stores, if any.
    pub selector: Option<String>,
    /// Namespaces allowed to use the default connection (besides the watched one).
    pub(crate) default_connection_namespaces: Vec<String>,
    /// Leader election, when enabled.
    pub leader_election: Option<LeaderElection>,
    /// Rollout restart and force-sync bounds.
    pub(crate) bounds: Bounds,
    /// Thalassa API URLs stores may use (`--thalassa-url` included).
    pub(crate) allowed_api_urls: crate::endpoints::AllowedUrls,
    /// Store checks: first retry, healthy interval (and backoff cap), interval of unused stores.
    pub(crate) store_checks: StoreChecks,
}

/// Bounds on what a ThalassaSecret's author can make the operator do to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// A force-sync is honoured at most once per this interval per resource.
    pub(crate) force_sync_min_interval: Duration,
    /// At most this many rollout restarts of one workload per `restart_window`.
    pub(crate) restart_limit: u32,
    /// The sliding window of `restart_limit`.
    pub(crate) restart_window: Duration,
    /// Workloads must opt in to restarts by a ThalassaSecret.
    pub(crate) restart_requires_opt_in: bool,
}

/// How often stores are checked (`--store-retry-interval`, `--store-check-interval`,
/// `--unused-store-check-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreChecks {
    /// First delay after a failure that passes by itself; doubles per failure.
    pub(crate) retry: Duration,
    /// Interval of a used, healthy store, and the backoff cap.
    pub(crate) interval: Duration,
    /// Interval of a store no resource uses.
    pub(crate) unused: Duration,
}

impl Default for StoreChecks {
    fn default() -> Self {
        StoreChecks {
            retry: Duration::from_secs(30),
            interval: Duration::from_secs(600),
            unused: Duration::from_secs(3600),
        }
    }
}

/// Leader-election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Lease name (in the operator namespace).
    pub(crate) lease_name: String,
    /// Lease duration.
    pub(crate) lease_duration: Duration,
    /// This replica's identity.
    pub(crate) identity: String,
}

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Args {
    /// Validates the flags into a [`Config`], with a clear error for each mistake.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        // The operator's own connection is optional: without it, every ThalassaSecret names a
        // store. With it, both the organisation and exactly one credential are needed.
        let organisation = self.organisation.clone().filter(|o| !o.trim().is_empty());
        let any_credential = self.token_file.is_some()
            || self.personal_access_token_file.is_some()
            || self.client_id.is_some()
            || self.client_secret_file.is_some()
            || self.subject_token_file.is_some()
            || self.service_account_id.is_some();
        let (organisation, credentials, has_default_connection) =
            match (organisation, any_credential) {
                (None, false) => (
                    String::new(),
                    // Never used: no client is built from the template without a connection.
                    thalassa::Credentials::BearerToken(thalassa::SecretString::from("")),
                    false,
                ),
                (None, true) => {
                    return Err(ConfigError(
                        "--organisation (THALASSA_ORGANISATION_ID) is required with credentials"
                            .into(),
                    ));
                }
                (Some(organisation), _) => (organisation, self.credentials()?, true),
            };
        if !(self.thalassa_url.starts_with("https://") || self.thalassa_url.starts_with("http://"))
        {
            return Err(ConfigError(format!(
                "--thalassa-url must be an http(s) URL, got {:?}",
                self.thalassa_url
            )));
        }
        if self.default_refresh_interval < Duration::from_secs(10) {
            return Err(ConfigError(
                "--default-refresh-interval must be at least 10s".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError("--concurrency must be at least 1".into()));
        }
        let positive = |rate: f64| rate.is_finite() && rate > 0.0;
        if !positive(self.thalassa_rate_limit)
            || !positive(self.thalassa_rate_start)
            || self.thalassa_rate_burst == 0
        {
            return Err(ConfigError(
                "--thalassa-rate-limit, --thalassa-rate-start and --thalassa-rate-burst must be positive".into(),
            ));
        }
        let selector = self
            .selector
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let leader_election = if self.leader_election {
            if self.lease_duration < Duration::from_secs(5) {
                return Err(ConfigError("--lease-duration must be at least 5s".into()));
            }
            // Shards sharing a Lease would elect one leader among them: the others' resources
            // would never sync.
            if selector.is_some() && self.lease_name == DEFAULT_LEASE_NAME {
                return Err(ConfigError(
                    "--selector with --leader-election needs a --lease-name (LEASE_NAME) of this shard's own"
                        .into(),
                ));
            }
            Some(LeaderElection {
                lease_name: self.lease_name,
                lease_duration: self.lease_duration,
                identity: self.pod_name.filter(|p| !p.is_empty()).unwrap_or_else(|| {
                    format!("thalassa-secrets-operator-{:08x}", rand::random::<u32>())
                }),
            })
        } else {
            None
        };
        if self.restart_limit == 0 {
            return Err(ConfigError("--restart-limit must be at least 1".into()));
        }
        if self.restart_window.is_zero() {
            return Err(ConfigError("--restart-window must be positive".into()));
        }
        let bounds = Bounds {
            force_sync_min_interval: self.force_sync_min_interval,
            restart_limit: self.restart_limit,
            restart_window: self.restart_window,
            restart_requires_opt_in: self.restart_requires_opt_in,
        };
        let allowed: Vec<&str> = if self.allowed_api_urls.iter().all(|u| u.trim().is_empty()) {
            vec![crate::endpoints::PUBLIC_API_URL]
        } else {
            self.allowed_api_urls.iter().map(String::as_str).collect()
        };
        let allowed_api_urls = crate::endpoints::AllowedUrls::new(
            allowed.into_iter().chain([self.thalassa_url.as_str()]),
        )
        .map_err(|e| ConfigError(format!("--allowed-api-urls: {e}")))?;
        if self.store_retry_interval < Duration::from_secs(1)
            || self.store_check_interval < self.store_retry_interval
            || self.unused_store_check_interval < self.store_retry_interval
        {
            return Err(ConfigError(
                "--store-retry-interval must be at least 1s, and --store-check-interval and --unused-store-check-interval at least --store-retry-interval".into(),
            ));
        }
        let store_checks = StoreChecks {
            retry: self.store_retry_interval,
            interval: self.store_check_interval,
            unused: self.unused_store_check_interval,
        };
        let mut thalassa =
            thalassa::ClientConfig::new(self.thalassa_url, organisation, credentials);
        if self.thalassa_call_deadline < thalassa.request_timeout {
            return Err(ConfigError(format!(
                "--thalassa-call-deadline must be at least the request timeout ({}s)",
                thalassa.request_timeout.as_secs()
            )));
        }
        thalassa.project = self.project.filter(|p| !p.trim().is_empty());
        thalassa.rate_limit_per_second = self.thalassa_rate_limit;
        thalassa.rate_limit_start = self.thalassa_rate_start;
        thalassa.rate_limit_burst = self.thalassa_rate_burst;
        thalassa.call_deadline = self.thalassa_call_deadline;
        let body_budget = usize::try_from(self.thalassa_body_budget_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024 * 1024);
        if body_budget < thalassa::MAX_LISTING_RESPONSE_BYTES {
            return Err(ConfigError(format!(
                "--thalassa-body-budget-mib must be at least {} (the largest response body read)",
                thalassa::MAX_LISTING_RESPONSE_BYTES / (1024 * 1024)
            )));
        }
        thalassa.body_budget_bytes = body_budget;
        Ok(Config {
            thalassa,
            has_default_connection,
            default_region: self.region,
            default_refresh_interval: self.default_refresh_interval,
            concurrency: self.concurrency,
            metrics_addr: self.metrics_addr,
            operator_namespace: self.operator_namespace,
            hash_key_secret: self.hash_key_secret,
            watch_namespace: self.watch_namespace,
            selector,
            default_connection_namespaces: self
                .default_connection_namespaces
                .into_iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            leader_election,
            bounds,
            allowed_api_urls,
            store_checks,
        })
    }

    fn credentials(&self) -> Result<thalassa::Credentials, ConfigError> {
        let mut chosen = Vec::new();
        if let Some(file) = &self.token_file {
            chosen.push((
                "--token-file",
                thalassa::Credentials::BearerTokenFile(file.clone()),
            ));
        }
        if let Some(file) = &self.personal_access_token_file {
            chosen.push((
                "--personal-access-token-file",
                thalassa::Credentials::PersonalAccessTokenFile(file.clone()),
            ));
        }
        match (&self.client_id, &self.client_secret_file) {
            (Some(id), Some(secret)) => chosen.push((
                "--client-id",
                thalassa::Credentials::ClientCredentialsFile {
                    client_id: id.clone(),
                    client_secret_file: secret.clone(),
                    scopes: Vec::new(),
                },
            )),
            (None, None) => {}
            _ => {
                return Err(ConfigError(
                    "--client-id and --client-secret-file must be given together".into(),
                ));
            }
        }
        match (&self.subject_token_file, &self.service_account_id) {
            (Some(file), Some(sa)) => chosen.push((
                "--subject-token-file",
                thalassa::Credentials::TokenExchange {
                    subject_token_file: file.clone(),
                    service_account_id: sa.clone(),
                    access_token_lifetime: None,
                },
            )),
            (None, None) => {}
            _ => {
                return Err(ConfigError(
                    "--subject-token-file and --service-account-id must be given together".into(),
                ));
            }
        }
        match chosen.len() {
            0 => Err(ConfigError(
                "no Thalassa credentials: give one of --token-file, --personal-access-token-file, --client-id with --client-secret-file, or --subject-token-file with --service-account-id".into(),
            )),
            1 => Ok(chosen.pop().expect("one element").1),
            _ => Err(ConfigError(format!(
                "give exactly one kind of Thalassa credentials, got {}",
                chosen.iter().map(|(flag, _)| *flag).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// Longest duration accepted: Go's `time.Duration` limit (about 292 years), which the CRD's CEL
/// rule `duration(self)` enforces too.
const MAX_DURATION_NANOS: u64 = i64::MAX as u64;

/// Parses a duration in the CRD's grammar for `spec.refreshInterval`,
/// `([0-9]+(\.[0-9]+)?(ms|s|m|h))+` (`90s`, `1m`, `1h30m`, `500ms`, `1.5s`), with the arithmetic
/// of Go's `time.ParseDuration` that the CRD's CEL rule uses (nanoseconds, fractions rounded the
/// same way, the same upper limit), so a value is accepted here exactly when admission accepts it.
/// No surrounding whitespace, signs, other units or bare numbers.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("duration {text:?} is not of the form 30s, 1m, 1h30m, 500ms or 1.5s");
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        // [0-9]+, exactly as Go's leadingInt (overflow is an error).
        let start = i;
        let mut int: u64 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            if int > (1 << 63) / 10 {
                return Err(format!("duration {text:?} is too long"));
            }
            int = int * 10 + u64::from(bytes[i] - b'0');
            if int > 1 << 63 {
                return Err(format!("duration {text:?} is too long"));
            }
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        // (\.[0-9]+)?, as Go's leadingFraction: digits past what fits are ignored.
        let (mut frac, mut scale) = (0u64, 1f64);
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            let mut overflow = false;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                if !overflow {
                    if frac > (i64::MAX as u64) / 10 {
                        overflow = true;
                    } else {
                        let next = frac * 10 + u64::from(bytes[i] - b'0');
                        if next > 1 << 63 {
                            overflow = true;
                        } else {
                            frac = next;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            if i == frac_start {
                return Err(invalid());
            }
        }
        let rest = &text[i..];
        let (unit, unit_len): (u64, usize) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with('s') {
            (1_000_000_000, 1)
        } else if rest.starts_with('m') {
            (60_000_000_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000_000_000, 1)
        } else if rest.is_empty() {
            return Err(format!("duration {text:?} is missing a unit (ms, s, m, h)"));
        } else {
            return Err(format!(
                "duration {text:?} has an unknown unit; use ms, s, m or h"
            ));
        };
        i += unit_len;
        let too_long = || format!("duration {text:?} is too long");
        if int > (1 << 63) / unit {
            return Err(too_long());
        }
        let mut part = int * unit;
        if frac > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale)); the cast truncates.
            part += (frac as f64 * (unit as f64 / scale)) as u64;
            if part > 1 << 63 {
                return Err(too_long());
            }
        }
        total = total.checked_add(part).ok_or_else(too_long)?;
        if total > 1 << 63 {
            return Err(too_long());
        }
    }
    if total > MAX_DURATION_NANOS {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(total))
}

/// Flags and environment variables may carry surrounding whitespace.
fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("30s", 30_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1.5m", 90_000),
            ("2h", 7_200_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(millis),
                "{text}"
            );
        }
        for bad in ["", "10", "m", "5d", "1m30", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    fn args(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["op"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .args
            .into_config()
    }

    #[test]
    fn requires_organisation_and_exactly_one_credential() {
        let err = args(&["--token-file", "/t"]).unwrap_err();
        assert!(err.to_string().contains("--organisation"), "{err}");
        let none = args(&[]).expect("no default connection at all is valid");
        assert!(!none.has_default_connection);
        let err = args(&["--organisation", "o"]).unwrap_err();
        assert!(err.to_string().contains("no Thalassa credentials"), "{err}");
        let err = args(&[
            "--organisation",
            "o",
            "--token-file",
            "/t",
            "--client-id",
            "c",
            "--client-secret-file",
            "/s",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("exactly one kind"), "{err}");
        let err = args(&["--organisation", "o", "--client-id", "c"]).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
        let ok = args(&[
            "--organisation",
            "o",
            "--token-file",
            "/t",
            "--project",
            "p",
        ])
        .unwrap();
        assert!(ok.has_default_connection);
        assert_eq!(ok.default_region, "nl-01");
        assert_eq!(ok.default_refresh_interval, Duration::from_secs(60));
        assert_eq!(ok.thalassa.call_deadline, Duration::from_secs(45));
    }

    #[test]
    fn a_shard_with_leader_election_needs_its_own_lease() {
        let err = args(&["--selector", "shard=a", "--leader-election"]).unwrap_err();
        assert!(err.to_string().contains("--lease-name"), "{err}");
        let shard = args(&[
            "--selector",
            " shard=a ",
            "--leader-election",
            "--lease-name",
            "tso-a",
        ])
        .unwrap();
        assert_eq!(shard.selector.as_deref(), Some("shard=a"));
        assert_eq!(shard.leader_election.unwrap().lease_name, "tso-a");
        let one = args(&["--selector", "", "--leader-election"]).unwrap();
        assert_eq!(one.selector, None, "an empty selector is no shard");
        assert!(
            args(&["--selector", "shard=a"]).is_ok(),
            "no election, no Lease"
        );
    }

    #[test]
    fn call_deadline_flag() {
        let base = ["--organisation", "o", "--token-file", "/t"];
        let with = |deadline: &str| {
            let mut argv = base.to_vec();
            argv.extend(["--thalassa-call-deadline", deadline]);
            args(&argv)
        };
        assert_eq!(
            with("2m").unwrap().thalassa.call_deadline,
            Duration::from_secs(120)
        );
        assert_eq!(
            with("30s").unwrap().thalassa.call_deadline,
            Duration::from_secs(30)
        );
        let err = with("10s").unwrap_err();
        assert!(
            err.to_string().contains("--thalassa-call-deadline"),
            "{err}"
        );
    }

    #[test]
    fn rejects_short_refresh_and_bad_url() {
        let err = args(&[
            "--organisation",
            "o",
            "--token-file",
            "/t",
            "--default-refresh-interval",
            "1s",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("at least 10s"), "{err}");
        let err = args(&[
            "--organisation",
            "o",
            "--token-file",
            "/t",
            "--thalassa-url",
            "ftp://x",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("http(s) URL"), "{err}");
    }
}
