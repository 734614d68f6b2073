//! Configuration: defaults, then `worker.toml`, then `ALTINN_OUTBOX_*` environment variables
//! (sections separated by `__`, e.g. `ALTINN_OUTBOX_DATABASE__URL`).
//!
//! Every field carries its unit in its name. [`Config::validate`] checks the combinations at
//! start-up and names the setting that is wrong, so a bad deployment stops before it claims
//! a single row.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// The packaged location, used when `--config` is not given (never the working directory,
/// which is `/` under systemd).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/altinn-outbox/worker.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {setting}: {problem}")]
    Invalid { setting: &'static str, problem: String },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, problem: problem.into() }
}

/// A configured secret (database URL with password, inline key, API key): never printed,
/// never serialized (a [`Config`] written out leaves its secrets out), zeroed when dropped,
/// and exposed only where it is used.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.expose().trim().is_empty()
    }
    /// For a client that keeps the secret as a [`SecretString`].
    pub fn to_secret_string(&self) -> SecretString {
        self.0.clone()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Which Maskinporten and Altinn platform to talk to; `custom` takes every URL from config.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Tt02,
    Prod,
    Custom,
}

/// Serialized without its secrets: figment's layer of defaults, and a config file written for
/// another process (which gets its secrets from the environment).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `tt02` (Altinn's test environment with test Maskinporten), `prod`, or `custom`.
    pub environment: Environment,
    pub database: DatabaseConfig,
    pub maskinporten: MaskinportenConfig,
    pub altinn: AltinnConfig,
    pub outbox: OutboxConfig,
    pub worker: WorkerConfig,
    pub retry: RetryConfig,
    pub status: StatusConfig,
    pub log: LogConfig,
    pub health: HealthConfig,
    pub schedules: SchedulesConfig,
    pub events: EventsConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. Secret because it may carry a password.
    #[serde(skip_serializing)]
    pub url: Secret,
    /// Pool size; 0 sizes it from the worker's concurrency (claims, write-backs and LISTEN).
    pub max_connections: u32,
    /// How long to wait for a connection before the attempt counts as failed.
    pub connect_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskinportenConfig {
    /// The Maskinporten client id (a UUID from Digdir's self-service portal).
    pub client_id: String,
    /// Space-separated scopes. `altinn:serviceowner` makes the exchanged token carry the
    /// service-owner org claim; `altinn:correspondence.write` lets it send. With `[events]
    /// enabled`, `altinn:events.subscribe` is added to what is requested if it is missing.
    pub scopes: String,
    /// The private key as a JWK, standard-base64 encoded (the form Altinn's settings use).
    #[serde(skip_serializing)]
    pub key_jwk_base64: Option<Secret>,
    /// The private key as a JWK file.
    pub key_jwk_file: Option<PathBuf>,
    /// The private key as a PEM file (PKCS#8 or PKCS#1); needs `key_id`.
    pub key_pem_file: Option<PathBuf>,
    /// The `kid` registered for the PEM key in the self-service portal.
    pub key_id: Option<String>,
    /// Override of the issuer, which is also the grant's `aud` (with its trailing slash).
    pub issuer: Option<String>,
    /// Override of the token endpoint.
    pub token_url: Option<String>,
    /// `exp - iat` of the grant; Maskinporten accepts at most 120 s.
    pub grant_lifetime_s: i64,
    /// Milliseconds after a failed token refresh during which callers get its error without
    /// a request, so an outage or a misconfiguration does not have every send spend a grant.
    /// Doubles per further consecutive failure, up to `failure_backoff_max_ms`; a success
    /// resets it. Default 1000; 0 turns the cool-down off.
    pub failure_backoff_first_ms: u64,
    /// Milliseconds the cool-down grows to at most. Default 60000: a wrong client id is tried
    /// once a minute, and a recovered Maskinporten is noticed within a minute.
    pub failure_backoff_max_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AltinnConfig {
    /// Override of the platform base URL (exchange and Correspondence API live under it).
    pub platform_url: Option<String>,
    /// `Ocp-Apim-Subscription-Key`, sent only when set (Altinn no longer requires it).
    #[serde(skip_serializing)]
    pub subscription_key: Option<Secret>,
    /// Whole-request timeout of one API call.
    pub request_timeout_ms: u64,
    /// Whole-request timeout of a request that uploads files (they may be large).
    pub upload_timeout_ms: u64,
    /// TCP + TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Refresh the Altinn token this long before its `exp`: Correspondence validates token
    /// lifetime with zero clock skew.
    pub token_refresh_margin_s: i64,
    /// Milliseconds between probes of a resource with a configuration fault, at most: one of
    /// its rows is tried after a second, then after pauses that double up to this, while the
    /// others wait without a request. Also the longest an operator's fix waits to be noticed.
    /// Default 60000: a minute is quick enough after a fix and costs Altinn nothing. 0 sends
    /// every row's request as it comes.
    pub config_fault_probe_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// UUIDv5 namespace of idempotency keys, one per deployment. Altinn keeps keys forever
    /// and shares them across all senders: test and production must never share this value.
    pub idempotency_namespace: Uuid,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Name of this instance in `locked_by` (default: host name and process id).
    pub instance_name: Option<String>,
    /// Altinn requests in flight at most (sends and status polls together).
    pub concurrency: usize,
    /// How long a claimed row is ours; after that another instance may take it over. Longer
    /// than a request's timeout (plus a token refresh), so a live worker never loses one.
    pub lease_ms: u64,
    /// How often an idle worker looks for work without a notification (a lost NOTIFY then
    /// costs at most this much latency).
    pub idle_poll_interval_ms: u64,
    /// How often expired leases are returned to the queue.
    pub sweep_interval_ms: u64,
    /// After SIGTERM, how long requests in flight may take before the process exits.
    pub shutdown_grace_ms: u64,
}

/// Backoff between send attempts after a transient failure.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included; then the delivery fails.
    pub max_attempts: i32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub multiplier: f64,
    /// Fraction of each delay that is randomised (0 = none, 1 = anywhere from 0 to the delay),
    /// so that rows failed together by an outage do not return together.
    pub jitter: f64,
    /// Seconds, counted from a row's INSERT, that it waits for an operator to fix a
    /// configuration fault of its resource (a scope the token lacks, no access in Altinn
    /// Authorization) before it fails with the fault's code. Meanwhile it uses no attempts and
    /// is tried on a growing wait. Default 86400 (24 h): a working day's notice for the people
    /// who grant access, while a letter a day late is still worth sending.
    pub config_fault_max_age_s: u64,
}

/// When a delivery counts as done and how often its status is read.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FollowUntil {
    Published,
    Read,
    Confirmed,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// First status read after a send (or after the requested publish time): Altinn publishes
    /// within seconds, so an earlier read is mostly wasted.
    pub first_poll_delay_ms: u64,
    /// Growth of the interval between reads, up to `max_poll_interval_ms`.
    pub poll_multiplier: f64,
    pub max_poll_interval_ms: u64,
    /// Keep reading after publication until the recipient has read or confirmed it.
    pub follow_until: FollowUntil,
    /// Also keep reading after publication until the notification has an outcome.
    pub follow_notifications: bool,
    /// Stop reading a correspondence this long after it was sent.
    pub max_follow_age_h: u64,
    /// Milliseconds a file uploaded for several recipients is read while Altinn's malware
    /// scan runs, counted from the end of the upload; then the file's upload ends `failed`
    /// with `scan_timeout`, and so do the message's deliveries. Default one hour: Altinn's
    /// scans take seconds to minutes, so a scan still running after an hour has most likely
    /// lost its result, and the letters should not wait unseen for ever. The reads in
    /// between are spaced like `[retry]`, growing with the wait.
    pub max_scan_wait_ms: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise (journald, log shippers).
    Auto,
    Text,
    Json,
}

/// The HTTP listener for health probes and metrics; off unless `listen` is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Address of the `/healthz`, `/readyz` and `/metrics` listener; `127.0.0.1:9187` is the
    /// documented choice. Unset (the default): no listener.
    pub listen: Option<String>,
    /// Allow a `listen` address other than loopback. Off by default: the listener has no
    /// authentication, and readiness and metrics reveal operational detail (configuration
    /// problems, error codes, volumes). Put a proxy with access control in front instead,
    /// or set this when the network itself is the control.
    pub allow_remote: bool,
}

/// Altinn Events: Altinn pushes to the daemon's receiver when a letter is published, read or
/// confirmed, or a notification is delivered or fails; the daemon then reads that letter's
/// status at once. A push is only a hint: the status read decides, and nothing in a push is
/// trusted. Off by default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Run the receiver.
    pub enabled: bool,
    /// The public HTTPS address Altinn pushes to, without the secret, e.g.
    /// `https://outbox.example.no/altinn/events`: a reverse proxy terminates TLS there and
    /// passes the path on unchanged to `listen`. Altinn is given `<public_url>/<secret>`.
    pub public_url: String,
    /// The receiver's own plain-HTTP listener (separate from `health.listen`).
    pub listen: String,
    /// Networks pushes may come from (CIDR). Unset: Altinn's published egress ranges of the
    /// environment (old and new; none for `custom`); `[]`: no check.
    pub allow_networks: Option<Vec<String>>,
    /// Peers whose `X-Forwarded-For` is believed (the reverse proxy). A push through one of
    /// them is checked by the address the proxy saw.
    pub trusted_proxies: Vec<String>,
    /// Largest push body read, in bytes; Altinn's events are well under 2 KiB.
    pub max_body_bytes: usize,
    /// Pushes handled at once; more are answered 503 (Altinn retries them).
    pub max_in_flight: usize,
    /// With events on, milliseconds from a send (or its requested publish time) to its first
    /// status read, and between routine reads after it: the safety net for lost events.
    pub safety_poll_interval_ms: u64,
    /// Resources to subscribe to and pull besides those with letters not yet finished (which
    /// are always included), e.g. before the first letter of a new resource is sent. Lower-case
    /// (Events refuses upper-case resource filters).
    pub resources: Vec<String>,
    /// One event type to subscribe to (Events' `typeFilter`, exact, e.g.
    /// `no.altinn.correspondence.correspondencepublished`); unset: every type (recommended:
    /// reads, confirmations and notification outcomes also wake the status read).
    pub type_filter: Option<String>,
    /// Milliseconds between the managing instance's checks of the subscriptions (one
    /// instance at a time, decided by the database); an unvalidated one is re-read at each.
    /// Default 60000.
    pub subscription_check_interval_ms: u64,
    /// Milliseconds a subscription may stay unvalidated after its POST before it is reported
    /// (an ERROR line, `/readyz`, a gauge) and POSTed again, which makes Altinn send a new
    /// handshake. Default 900000 (15 min; Altinn gives up validating after about 8).
    pub validation_timeout_ms: u64,
    /// Milliseconds between pulls of each resource's events from the pull API, which catch
    /// up what pushes missed (receiver or proxy down, dead-lettered events). Also at start.
    /// Default 300000 (5 min; Altinn shows an event to the pull 30 s after it is registered).
    pub pull_interval_ms: u64,
    /// The receiver's own TLS, when no reverse proxy terminates it: the certificate chain
    /// (leaf first) and its private key, as PEM files. Both or neither.
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: false,
            public_url: String::new(),
            listen: "127.0.0.1:8090".into(),
            allow_networks: None,
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            max_body_bytes: 64 * 1024,
            max_in_flight: 64,
            safety_poll_interval_ms: 3_600_000,
            resources: Vec::new(),
            type_filter: None,
            subscription_check_interval_ms: 60_000,
            validation_timeout_ms: 900_000,
            pull_interval_ms: 300_000,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// Altinn's published addresses for outgoing traffic (Events' pushes), old and new: both are
/// to be allowed until Altinn says otherwise.
const ALTINN_EGRESS_TT02: [&str; 3] = ["20.100.24.41/32", "20.100.48.118/31", "20.100.48.120/31"];
const ALTINN_EGRESS_PROD: [&str; 3] = ["20.100.46.139/32", "51.13.20.208/31", "51.13.20.210/31"];

/// The receiver's settings, checked.
#[derive(Clone, Debug)]
pub struct EventsSettings {
    pub public_url: url::Url,
    pub listen: std::net::SocketAddr,
    /// Empty: any source.
    pub allow_networks: Vec<ipnet::IpNet>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    /// Resources subscribed to besides those with letters not finished.
    pub resources: Vec<String>,
    pub type_filter: Option<String>,
    pub check_interval: std::time::Duration,
    pub validation_timeout: std::time::Duration,
    pub pull_interval: std::time::Duration,
    /// The certificate chain and key files of the receiver's own TLS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The scope the Events API needs ([`Config::token_scopes`]).
pub const EVENTS_SCOPE: &str = "altinn:events.subscribe";

impl Config {
    /// The scopes the token is requested with: `maskinporten.scopes`, plus the Events scope
    /// when events are on (one token serves Correspondence and Events).
    pub fn token_scopes(&self) -> String {
        let scopes = self.maskinporten.scopes.trim();
        let has = scopes.split_whitespace().any(|s| s.eq_ignore_ascii_case(EVENTS_SCOPE));
        if self.events.enabled && !has {
            format!("{scopes} {EVENTS_SCOPE}").trim().to_string()
        } else {
            scopes.to_string()
        }
    }

    /// The receiver's settings, or None when events are off.
    pub fn events(&self) -> Result<Option<EventsSettings>, ConfigError> {
        let e = &self.events;
        if !e.enabled {
            return Ok(None);
        }
        let public_url = url::Url::parse(e.public_url.trim_end_matches('/'))
            .map_err(|err| invalid("events.public_url", format!("required, an absolute URL: {err}")))?;
        if public_url.scheme() != "https" && self.environment != Environment::Custom {
            return Err(invalid("events.public_url", "must be https: Altinn pushes only to HTTPS endpoints"));
        }
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid(
                "events.public_url",
                "must have no query or fragment (the secret is appended to its path)",
            ));
        }
        let listen = e.listen.parse().map_err(|err| invalid("events.listen", format!("{:?}: {err}", e.listen)))?;
        let networks = |setting: &'static str, list: &[String]| {
            list.iter()
                .map(|n| n.trim().parse::<ipnet::IpNet>().map_err(|err| invalid(setting, format!("{n:?}: {err}"))))
                .collect::<Result<Vec<_>, _>>()
        };
        let allow_networks = match (&e.allow_networks, self.environment) {
            (Some(list), _) => networks("events.allow_networks", list)?,
            (None, Environment::Tt02) => networks("events.allow_networks", &ALTINN_EGRESS_TT02.map(String::from))?,
            (None, Environment::Prod) => networks("events.allow_networks", &ALTINN_EGRESS_PROD.map(String::from))?,
            (None, Environment::Custom) => Vec::new(),
        };
        if !(256..=1024 * 1024).contains(&e.max_body_bytes) {
            return Err(invalid("events.max_body_bytes", "must be 256 to 1048576"));
        }
        if e.max_in_flight == 0 {
            return Err(invalid("events.max_in_flight", "must be at least 1"));
        }
        if e.safety_poll_interval_ms == 0 {
            return Err(invalid("events.safety_poll_interval_ms", "must be at least 1"));
        }
        for (setting, ms) in [
            ("events.subscription_check_interval_ms", e.subscription_check_interval_ms),
            ("events.validation_timeout_ms", e.validation_timeout_ms),
            ("events.pull_interval_ms", e.pull_interval_ms),
        ] {
            if ms == 0 {
                return Err(invalid(setting, "must be at least 1"));
            }
        }
        if let Some(bad) = e.resources.iter().find(|r| !valid_resource_id(r)) {
            return Err(invalid(
                "events.resources",
                format!("{bad:?} is not a resource id Events accepts (lower-case letters, digits, - and _)"),
            ));
        }
        if e.type_filter.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(
                "events.type_filter",
                "must not be empty (an empty filter matches nothing); leave it out",
            ));
        }
        Ok(Some(EventsSettings {
            public_url,
            listen,
            allow_networks,
            trusted_proxies: networks("events.trusted_proxies", &e.trusted_proxies)?,
            max_body_bytes: e.max_body_bytes,
            max_in_flight: e.max_in_flight,
            resources: e.resources.clone(),
            type_filter: e.type_filter.clone(),
            check_interval: std::time::Duration::from_millis(e.subscription_check_interval_ms),
            validation_timeout: std::time::Duration::from_millis(e.validation_timeout_ms),
            pull_interval: std::time::Duration::from_millis(e.pull_interval_ms),
            tls: match (&e.tls_cert_file, &e.tls_key_file) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                (None, None) => None,
                _ => {
                    return Err(invalid("events.tls_cert_file", "set both tls_cert_file and tls_key_file, or neither"))
                }
            },
        }))
    }
}

/// A resource id as Events' resource filter accepts it (a URN segment, lower-case only).
fn valid_resource_id(id: &str) -> bool {
    (1..=100).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Housekeeping the daemon runs itself, once per scheduled time across all instances. Cron
/// expressions have six fields (second minute hour day-of-month month day-of-week) and are
/// read in the host's local time; an empty string turns a schedule off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// Deletes finished messages (every delivery delivered, failed or cancelled, and no
    /// longer followed) older than `retention_days`, with their history. Default 03:30 daily.
    pub prune: String,
    /// Days finished messages are kept; default 90.
    pub retention_days: u32,
    /// Reclaims expired leases and reports rows stuck longer than `stuck_after_min`.
    /// Default every 5 minutes.
    pub sweep: String,
    /// Minutes a row may be overdue (due but not taken, status read late) before it is
    /// reported as stuck; default 60.
    pub stuck_after_min: u32,
    /// One log line that sums up the outbox (rows by state, failures of the last day).
    /// Default 07:00 daily.
    pub summary: String,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        SchedulesConfig {
            prune: "0 30 3 * * *".into(),
            retention_days: 90,
            sweep: "0 */5 * * * *".into(),
            stuck_after_min: 60,
            summary: "0 0 7 * * *".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `altinn_outbox=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::Tt02,
            database: DatabaseConfig::default(),
            maskinporten: MaskinportenConfig::default(),
            altinn: AltinnConfig::default(),
            outbox: OutboxConfig::default(),
            worker: WorkerConfig::default(),
            retry: RetryConfig::default(),
            status: StatusConfig::default(),
            log: LogConfig::default(),
            health: HealthConfig::default(),
            schedules: SchedulesConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: Secret::default(), max_connections: 0, connect_timeout_ms: 5_000 }
    }
}

impl Default for MaskinportenConfig {
    fn default() -> Self {
        MaskinportenConfig {
            client_id: String::new(),
            scopes: "altinn:serviceowner altinn:correspondence.write".into(),
            key_jwk_base64: None,
            key_jwk_file: None,
            key_pem_file: None,
            key_id: None,
            issuer: None,
            token_url: None,
            // Half of Maskinporten's limit leaves room for clock differences either way.
            grant_lifetime_s: 60,
            failure_backoff_first_ms: 1_000,
            failure_backoff_max_ms: 60_000,
        }
    }
}

impl Default for AltinnConfig {
    fn default() -> Self {
        AltinnConfig {
            platform_url: None,
            subscription_key: None,
            request_timeout_ms: 30_000,
            upload_timeout_ms: 300_000,
            connect_timeout_ms: 5_000,
            token_refresh_margin_s: 60,
            config_fault_probe_ms: 60_000,
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { idempotency_namespace: Uuid::nil() }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            instance_name: None,
            concurrency: 32,
            lease_ms: 120_000,
            idle_poll_interval_ms: 1_000,
            sweep_interval_ms: 5_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        // 1 s doubling to 5 min over 12 attempts spans about half an hour of outage.
        RetryConfig {
            max_attempts: 12,
            initial_delay_ms: 1_000,
            max_delay_ms: 300_000,
            multiplier: 2.0,
            jitter: 0.3,
            config_fault_max_age_s: 24 * 3600,
        }
    }
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            first_poll_delay_ms: 5_000,
            poll_multiplier: 2.0,
            max_poll_interval_ms: 3_600_000,
            follow_until: FollowUntil::Published,
            follow_notifications: true,
            max_follow_age_h: 24 * 14,
            max_scan_wait_ms: 3_600_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Auto, level: "info".into() }
    }
}

/// Maskinporten and platform URLs, resolved from the environment preset and overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The Maskinporten issuer, with its trailing slash: the grant's `aud`.
    pub issuer: String,
    pub token_url: String,
    pub platform_url: String,
}

impl Config {
    /// Defaults, then the TOML file (if it exists), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), Path::to_path_buf);
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.exists() {
            figment = figment.merge(Toml::file_exact(&path));
        }
        // ALTINN_OUTBOX_CONFIG names the file (the command line's --config); it is not a setting.
        figment = figment.merge(Env::prefixed("ALTINN_OUTBOX_").ignore(&["config"]).split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        Ok(config)
    }

    pub fn endpoints(&self) -> Result<Endpoints, ConfigError> {
        let (issuer, platform) = match self.environment {
            Environment::Tt02 => (Some("https://test.maskinporten.no/"), Some("https://platform.tt02.altinn.no")),
            Environment::Prod => (Some("https://maskinporten.no/"), Some("https://platform.altinn.no")),
            Environment::Custom => (None, None),
        };
        let issuer = self
            .maskinporten
            .issuer
            .as_deref()
            .or(issuer)
            .ok_or_else(|| invalid("maskinporten.issuer", "required when environment = \"custom\""))?;
        if !issuer.ends_with('/') {
            return Err(invalid(
                "maskinporten.issuer",
                "must end with '/': it is the grant's aud, exactly as Maskinporten's issuer",
            ));
        }
        let token_url = self.maskinporten.token_url.clone().unwrap_or_else(|| format!("{issuer}token"));
        let platform_url = self
            .altinn
            .platform_url
            .as_deref()
            .or(platform)
            .ok_or_else(|| invalid("altinn.platform_url", "required when environment = \"custom\""))?;
        for (setting, u) in [
            ("maskinporten.issuer", issuer),
            ("maskinporten.token_url", &token_url),
            ("altinn.platform_url", platform_url),
        ] {
            url::Url::parse(u).map_err(|e| invalid(setting, format!("not a URL: {e}")))?;
        }
        Ok(Endpoints {
            issuer: issuer.to_string(),
            token_url,
            platform_url: platform_url.trim_end_matches('/').to_string(),
        })
    }

    /// Checks what the types cannot: required values and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database.url.is_empty() {
            return Err(invalid("database.url", "required"));
        }
        if self.maskinporten.client_id.trim().is_empty() {
            return Err(invalid("maskinporten.client_id", "required"));
        }
        let m = &self.maskinporten;
        let sources = [m.key_jwk_base64.is_some(), m.key_jwk_file.is_some(), m.key_pem_file.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(invalid("maskinporten.key_*", "set exactly one of key_jwk_base64, key_jwk_file, key_pem_file"));
        }
        if m.key_pem_file.is_some() && m.key_id.as_deref().is_none_or(|k| k.trim().is_empty()) {
            return Err(invalid("maskinporten.key_id", "required with key_pem_file (the kid registered for the key)"));
        }
        if !(1..=120).contains(&m.grant_lifetime_s) {
            return Err(invalid("maskinporten.grant_lifetime_s", "must be 1 to 120 (Maskinporten's limit)"));
        }
        if m.failure_backoff_first_ms > m.failure_backoff_max_ms {
            return Err(invalid(
                "maskinporten.failure_backoff_first_ms",
                "must not exceed maskinporten.failure_backoff_max_ms",
            ));
        }
        if self.outbox.idempotency_namespace.is_nil() {
            return Err(invalid(
                "outbox.idempotency_namespace",
                "required: a UUID of its own for each deployment (generate one with `uuidgen`)",
            ));
        }
        self.validate_worker()?;
        self.validate_schedules()?;
        if let Some(listen) = &self.health.listen {
            let addr: std::net::SocketAddr =
                listen.parse().map_err(|e| invalid("health.listen", format!("{listen:?}: {e}")))?;
            if !addr.ip().is_loopback() && !self.health.allow_remote {
                let why = "is not a loopback address, and the listener has no authentication";
                return Err(invalid(
                    "health.listen",
                    format!("{listen} {why}: set health.allow_remote = true to allow it"),
                ));
            }
        }
        self.events()?;
        self.endpoints().map(|_| ())
    }

    fn validate_schedules(&self) -> Result<(), ConfigError> {
        let s = &self.schedules;
        for (setting, expression) in
            [("schedules.prune", &s.prune), ("schedules.sweep", &s.sweep), ("schedules.summary", &s.summary)]
        {
            if !expression.trim().is_empty() {
                expression.parse::<cron::Schedule>().map_err(|e| invalid(setting, format!("{expression:?}: {e}")))?;
            }
        }
        if s.retention_days == 0 {
            return Err(invalid("schedules.retention_days", "must be at least 1"));
        }
        if s.stuck_after_min == 0 {
            return Err(invalid("schedules.stuck_after_min", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_worker(&self) -> Result<(), ConfigError> {
        let w = &self.worker;
        if w.concurrency == 0 || w.concurrency > 1024 {
            return Err(invalid("worker.concurrency", "must be 1 to 1024"));
        }
        if w.lease_ms <= self.altinn.request_timeout_ms * 2 {
            return Err(invalid(
                "worker.lease_ms",
                "must exceed twice altinn.request_timeout_ms, so a live worker never loses its lease mid-request",
            ));
        }
        let r = &self.retry;
        if r.max_attempts < 1 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        if r.multiplier < 1.0 || !(0.0..=1.0).contains(&r.jitter) || r.max_delay_ms < r.initial_delay_ms {
            return Err(invalid("retry", "need multiplier >= 1, 0 <= jitter <= 1, max_delay_ms >= initial_delay_ms"));
        }
        if self.status.poll_multiplier < 1.0 || self.status.max_poll_interval_ms == 0 {
            return Err(invalid("status", "need poll_multiplier >= 1 and max_poll_interval_ms > 0"));
        }
        if self.status.max_scan_wait_ms == 0 {
            return Err(invalid(
                "status.max_scan_wait_ms",
                "must be at least 1: with 0 every shared file would fail at its first scan read",
            ));
        }
        Ok(())
    }

    /// Pool size: every lane's claim and write-back plus LISTEN and the sweeper.
    pub fn pool_size(&self) -> u32 {
        if self.database.max_connections > 0 {
            self.database.max_connections
        } else {
            (self.worker.concurrency as u32 / 8).clamp(2, 16) + 3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_worker_toml_parses_and_only_lacks_deployment_values() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../worker.toml");
        let config = Config::load(Some(&path)).expect("worker.toml parses");
        assert_eq!(config.environment, Environment::Tt02);
        let m = &config.maskinporten;
        assert_eq!((m.failure_backoff_first_ms, m.failure_backoff_max_ms), (1_000, 60_000));
        assert_eq!(config.retry.config_fault_max_age_s, 86_400);
        assert_eq!(config.status.max_scan_wait_ms, 3_600_000, "the shipped file says the default");
        let events = EventsConfig::default();
        assert_eq!(
            (config.events.enabled, &config.events.listen, config.events.max_body_bytes, config.events.max_in_flight),
            (events.enabled, &events.listen, events.max_body_bytes, events.max_in_flight),
            "the shipped file says the defaults"
        );
        assert_eq!(config.events.trusted_proxies, events.trusted_proxies);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.url") || err.contains("client_id"), "{err}");
    }

    #[test]
    fn events_subscription_settings_are_checked_naming_the_setting() {
        let mut c = Config { environment: Environment::Custom, ..Config::default() };
        c.events.enabled = true;
        c.events.public_url = "https://outbox.example.no/altinn/events".into();
        let s = c.events().unwrap().unwrap();
        assert_eq!(s.validation_timeout, std::time::Duration::from_secs(900));
        assert_eq!(s.pull_interval, std::time::Duration::from_secs(300));
        c.events.resources = vec!["my-corr_resource2".into(), "My-Resource".into()];
        let err = c.events().unwrap_err().to_string();
        assert!(err.contains("events.resources") && err.contains("My-Resource"), "{err}");
        c.events.resources = vec![];
        c.events.type_filter = Some(" ".into());
        assert!(c.events().unwrap_err().to_string().contains("events.type_filter"));
        c.events.type_filter = None;
        c.events.pull_interval_ms = 0;
        assert!(c.events().unwrap_err().to_string().contains("events.pull_interval_ms"));
    }

    #[test]
    fn events_add_their_scope_to_the_token_once() {
        let mut c = Config::default();
        assert_eq!(c.token_scopes(), "altinn:serviceowner altinn:correspondence.write");
        c.events.enabled = true;
        assert_eq!(c.token_scopes(), "altinn:serviceowner altinn:correspondence.write altinn:events.subscribe");
        c.maskinporten.scopes = "altinn:events.subscribe altinn:serviceowner".into();
        assert_eq!(c.token_scopes(), "altinn:events.subscribe altinn:serviceowner");
    }

    #[test]
    fn events_need_a_public_https_url_and_default_to_altinns_networks() {
        let mut c = Config::default();
        assert!(c.events().unwrap().is_none(), "off by default");
        c.events.enabled = true;
        let err = c.events().unwrap_err().to_string();
        assert!(err.contains("events.public_url"), "{err}");
        c.events.public_url = "http://outbox.example.no/altinn/events".into();
        let err = c.events().unwrap_err().to_string();
        assert!(err.contains("https"), "{err}");
        c.events.public_url = "https://outbox.example.no/altinn/events/".into();
        let settings = c.events().unwrap().unwrap();
        assert_eq!(settings.public_url.path(), "/altinn/events");
        let tt02: Vec<String> = settings.allow_networks.iter().map(ToString::to_string).collect();
        assert_eq!(tt02, ALTINN_EGRESS_TT02);
        c.environment = Environment::Prod;
        assert_eq!(c.events().unwrap().unwrap().allow_networks.len(), ALTINN_EGRESS_PROD.len());
        c.events.allow_networks = Some(vec![]);
        assert!(c.events().unwrap().unwrap().allow_networks.is_empty(), "[] turns the check off");
        c.events.allow_networks = Some(vec!["20.100.24.41/33".into()]);
        let err = c.events().unwrap_err().to_string();
        assert!(err.contains("events.allow_networks") && err.contains("20.100.24.41/33"), "{err}");
        c.events.allow_networks = None;
        c.events.max_body_bytes = 10;
        assert!(c.events().unwrap_err().to_string().contains("events.max_body_bytes"));
    }

    #[test]
    fn presets_carry_the_issuer_with_its_trailing_slash() {
        let mut c = Config::default();
        let e = c.endpoints().unwrap();
        assert_eq!(e.issuer, "https://test.maskinporten.no/");
        assert_eq!(e.token_url, "https://test.maskinporten.no/token");
        assert_eq!(e.platform_url, "https://platform.tt02.altinn.no");
        c.environment = Environment::Prod;
        assert_eq!(c.endpoints().unwrap().issuer, "https://maskinporten.no/");
        c.environment = Environment::Custom;
        assert!(c.endpoints().unwrap_err().to_string().contains("maskinporten.issuer"));
        c.maskinporten.issuer = Some("http://127.0.0.1:1".into());
        assert!(c.endpoints().unwrap_err().to_string().contains("trailing") || c.endpoints().is_err());
    }

    #[test]
    fn combinations_are_checked_and_named() {
        let mut c = Config::default();
        c.database.url = Secret::new("postgres://x");
        c.maskinporten.client_id = "id".into();
        c.maskinporten.key_jwk_file = Some("k.json".into());
        assert!(c.validate().unwrap_err().to_string().contains("outbox.idempotency_namespace"));
        c.outbox.idempotency_namespace = Uuid::from_u128(7);
        c.validate().unwrap();
        c.maskinporten.key_pem_file = Some("k.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("key_*"));
        c.maskinporten.key_jwk_file = None;
        assert!(c.validate().unwrap_err().to_string().contains("maskinporten.key_id"));
        c.maskinporten.key_id = Some("kid".into());
        c.maskinporten.failure_backoff_first_ms = 60_001;
        assert!(c.validate().unwrap_err().to_string().contains("maskinporten.failure_backoff_first_ms"));
        c.maskinporten.failure_backoff_first_ms = 0;
        c.maskinporten.failure_backoff_max_ms = 0;
        c.validate().unwrap();
        c.health.listen = Some("0.0.0.0:9187".into());
        assert!(c.validate().unwrap_err().to_string().contains("health.listen"));
        c.health.allow_remote = true;
        c.validate().unwrap();
        c.health.listen = Some("[::1]:9187".into());
        c.health.allow_remote = false;
        c.validate().unwrap();
        c.status.max_scan_wait_ms = 0;
        assert!(c.validate().unwrap_err().to_string().contains("status.max_scan_wait_ms"));
        c.status.max_scan_wait_ms = 1;
        c.validate().unwrap();
        c.worker.lease_ms = 1_000;
        assert!(c.validate().unwrap_err().to_string().contains("worker.lease_ms"));
        assert_eq!(format!("{:?}", Secret::new("postgres://u:pw@h")), "***");
    }

    #[test]
    fn secrets_are_read_but_never_printed_or_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.toml");
        let toml = "[database]\nurl = \"postgres://u:pw@h/db\"\n[altinn]\nsubscription_key = \"sub-key\"\n\
                    [maskinporten]\nkey_jwk_base64 = \"eyJrdHkiOiJSU0EifQ==\"\n";
        std::fs::write(&path, toml).unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.database.url.expose(), "postgres://u:pw@h/db");
        assert_eq!(c.altinn.subscription_key.as_ref().map(Secret::expose), Some("sub-key"));
        let shown = format!("{c:?}");
        let written = toml::to_string(&c).unwrap();
        for secret in ["pw@h", "sub-key", "eyJrdHkiOiJSU0EifQ"] {
            assert!(!shown.contains(secret) && !written.contains(secret), "{secret}");
        }
        assert!(written.contains("[database]") && !written.lines().any(|l| l.starts_with("url")), "{written}");
    }
}
