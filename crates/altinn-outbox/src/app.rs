//! Start-up: turns a validated [`Config`] into the worker's [`Context`]. The key is loaded
//! here, so a bad key stops the daemon before any row is touched.

use std::time::Duration;

use crate::altinn::AltinnClient;
use crate::backoff::Doubling;
use crate::config::Config;
use crate::maskinporten::{key_file, KeySource, OpenKeyFile, SigningKey, TokenClient, TokenSettings};
use crate::outbox;
use crate::worker::policy::{RetryPolicy, ScanPolicy, StatusPolicy};
use crate::worker::{Context, Settings};

/// Idle connections are kept this long: the worker talks to one host all day.
const HTTP_POOL_IDLE: Duration = Duration::from_secs(90);
/// Start-up's first re-check of the database: PostgreSQL started alongside is usually up
/// within a moment.
const START_WAIT_FIRST: Duration = Duration::from_millis(200);
/// Start-up re-checks the database at least this often while waiting for it.
const START_WAIT_CAP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Key(#[from] crate::maskinporten::KeyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{setting}: {problem}")]
    Invalid { setting: &'static str, problem: String },
}

pub fn key_source(config: &Config) -> KeySource {
    let m = &config.maskinporten;
    if let Some(b64) = &m.key_jwk_base64 {
        KeySource::JwkBase64(b64.to_secret_string())
    } else if let Some(path) = &m.key_jwk_file {
        KeySource::JwkFile(path.clone())
    } else {
        let path = m.key_pem_file.clone().unwrap_or_default();
        KeySource::PemFile { path, kid: m.key_id.clone().unwrap_or_default() }
    }
}

/// Whether the key file, if the key comes from one, is private to its owner: `check` refuses
/// it otherwise and `run` warns. Under systemd the key is a credential, and systemd names the
/// directory it put it in (`$CREDENTIALS_DIRECTORY`), where its ACL shows as group read.
pub fn key_file_permissions(config: &Config) -> Result<(), OpenKeyFile> {
    let source = key_source(config);
    let Some(path) = source.file() else {
        return Ok(());
    };
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    key_file::check_permissions(path, credentials.as_deref())
}

/// One HTTP client for everything: connection reuse (keep-alive) and named timeouts.
pub fn http_client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("altinn-outbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_millis(config.altinn.connect_timeout_ms))
        .timeout(Duration::from_millis(config.altinn.request_timeout_ms))
        .pool_idle_timeout(HTTP_POOL_IDLE)
        .pool_max_idle_per_host(config.worker.concurrency)
        .build()
}

pub fn token_client(config: &Config, key: SigningKey, http: reqwest::Client) -> Result<TokenClient, StartError> {
    let endpoints = config.endpoints()?;
    let parse = |setting: &'static str, u: &str| {
        url::Url::parse(u).map_err(|e| StartError::Invalid { setting, problem: e.to_string() })
    };
    let settings = TokenSettings {
        token_url: parse("maskinporten.token_url", &endpoints.token_url)?,
        audience: endpoints.issuer.clone(),
        client_id: config.maskinporten.client_id.trim().to_string(),
        scopes: config.token_scopes(),
        exchange_url: parse(
            "altinn.platform_url",
            &format!("{}/authentication/api/v1/exchange/maskinporten", endpoints.platform_url),
        )?,
        subscription_key: config
            .altinn
            .subscription_key
            .as_ref()
            .filter(|k| !k.is_empty())
            .map(super::config::Secret::to_secret_string),
        grant_lifetime_s: config.maskinporten.grant_lifetime_s,
        refresh_margin_s: config.altinn.token_refresh_margin_s,
        failure_backoff_first: Duration::from_millis(config.maskinporten.failure_backoff_first_ms),
        failure_backoff_max: Duration::from_millis(config.maskinporten.failure_backoff_max_ms),
    };
    Ok(TokenClient::new(http, settings, key))
}

pub fn settings(config: &Config) -> Settings {
    let w = &config.worker;
    Settings {
        instance: w.instance_name.clone().unwrap_or_else(default_instance_name),
        namespace: config.outbox.idempotency_namespace,
        concurrency: w.concurrency,
        lease: Duration::from_millis(w.lease_ms),
        upload_lease: Duration::from_millis(w.lease_ms + config.altinn.upload_timeout_ms),
        idle_poll_interval: Duration::from_millis(w.idle_poll_interval_ms),
        sweep_interval: Duration::from_millis(w.sweep_interval_ms),
        shutdown_grace: Duration::from_millis(w.shutdown_grace_ms),
        retry: RetryPolicy::from_config(&config.retry),
        status: StatusPolicy::with_events(&config.status, &config.events),
        scan: ScanPolicy::from_config(&config.retry, &config.status),
    }
}

/// Validates the config, loads the key and builds every client. Connects lazily.
pub fn build_context(config: &Config) -> Result<Context, StartError> {
    config.validate()?;
    let key = SigningKey::load(&key_source(config))?;
    tracing::info!(kid = key.kid(), "maskinporten key loaded");
    let http = http_client(config)?;
    let tokens = token_client(config, key, http.clone())?;
    let endpoints = config.endpoints()?;
    let subscription_key = config.altinn.subscription_key.as_ref().map(super::config::Secret::to_secret_string);
    let upload_timeout = Duration::from_millis(config.altinn.upload_timeout_ms);
    let altinn = AltinnClient::new(http, &endpoints.platform_url, tokens, subscription_key, upload_timeout)
        .with_fault_probe(Duration::from_millis(config.altinn.config_fault_probe_ms));
    let pool = outbox::connect_lazy(
        config.database.url.expose(),
        config.pool_size(),
        Duration::from_millis(config.database.connect_timeout_ms),
    )?;
    Ok(Context { pool, altinn, settings: settings(config), liveness: Default::default(), claims: Default::default() })
}

fn default_instance_name() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "host".into(), |h| h.trim().to_string());
    format!("{host}:{}", std::process::id())
}

/// Start-up waits here until the database is reachable and its schema is current, so that a
/// daemon started before PostgreSQL (or before `migrate` in an upgrade) becomes ready by
/// itself. systemd's status line says what it waits for. False when stopped while waiting.
pub async fn wait_for_database(pool: &sqlx::PgPool, shutdown: &tokio_util::sync::CancellationToken) -> bool {
    let mut wait = Doubling::new(START_WAIT_FIRST, START_WAIT_CAP);
    loop {
        match outbox::migrations_current(pool).await {
            Ok(true) => return true,
            Ok(false) => {
                tracing::error!("the database schema is not current: run `altinn-outbox migrate`; waiting");
                crate::systemd::status("waiting for `altinn-outbox migrate`");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the database is not reachable; waiting");
                crate::systemd::status("waiting for the database");
            }
        }
        if tokio::time::timeout(wait.next_pause(), shutdown.cancelled()).await.is_ok() {
            return false;
        }
    }
}
