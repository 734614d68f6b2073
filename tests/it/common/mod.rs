//! TestApp: a fresh PostgreSQL database (migrated), the fake Maskinporten and Altinn, and a
//! worker context pointed at both. Every test gets its own database and fake.
//!
//! - [`logs`]: capturing what a test logs, beside every other test of the binary.
//! - [`roles`]: `deploy/roles.sql` applied under role names of the test's own.
//! - [`token_fake`]: a scripted Maskinporten and token exchange for the token client.

pub mod logs;
pub mod roles;
pub mod sql_check;
pub mod token_fake;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use altinn_fake::{FakeClient, FakeConfig, FakeServer};
use altinn_outbox::config::{Config, Environment, Secret};
use altinn_outbox::worker::{self, Context};
use altinn_outbox::{app, outbox};
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub const CLIENT_ID: &str = "2b6a3a36-7d1b-4c8e-9a57-0c1f2d3e4f50";
pub const ORG: &str = "991825827";
pub const RESOURCE: &str = "outbox-test-resource";

/// The server tests create their databases on; `OUTBOX_TEST_DATABASE_URL` overrides.
pub fn server_url() -> String {
    std::env::var("OUTBOX_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(name)
}

pub fn fake_config() -> FakeConfig {
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("test-jwks-public.json")).unwrap()).unwrap();
    FakeConfig {
        clients: vec![FakeClient {
            client_id: CLIENT_ID.into(),
            jwks,
            scopes: vec!["altinn:serviceowner".into(), "altinn:correspondence.write".into()],
        }],
        ..FakeConfig::default()
    }
}

pub struct TestApp {
    pub db_name: String,
    pub pool: PgPool,
    pub fake: FakeServer,
    pub config: Config,
    pub ctx: Arc<Context>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::with(fake_config(), |_| {}).await
    }

    pub async fn with(fake: FakeConfig, tweak: impl FnOnce(&mut Config)) -> TestApp {
        // Before the worker logs anything, so that a capture in any test sees its events.
        logs::install();
        let db_name = format!("altinn_outbox_test_{}", Uuid::new_v4().simple());
        let admin = PgPool::connect(&format!("{}/postgres", server_url())).await.expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(&admin).await.unwrap();
        admin.close().await;
        let db_url = format!("{}/{db_name}", server_url());
        let fake = FakeServer::start(fake).await;
        let mut config = test_config(&db_url, &fake);
        tweak(&mut config);
        let ctx = app::build_context(&config).expect("context");
        outbox::migrate(&ctx.pool).await.expect("migrations apply to an empty database");
        let pool = ctx.pool.clone();
        TestApp { db_name, pool, fake, config, ctx: Arc::new(ctx) }
    }

    /// A second worker instance on the same database and fake.
    pub fn second_worker(&self, name: &str) -> Arc<Context> {
        let mut config = self.config.clone();
        config.worker.instance_name = Some(name.into());
        Arc::new(app::build_context(&config).unwrap())
    }

    pub async fn insert(&self, reference: &str, recipients: &[&str]) -> i64 {
        let recipients: Vec<String> = recipients.iter().map(std::string::ToString::to_string).collect();
        sqlx::query_scalar(
            "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, summary, body)
             VALUES ($1, $2, $3, 'Vedtak', 'Kort oppsummering', '# Vedtak\nTekst i **markdown**') RETURNING id",
        )
        .bind(RESOURCE)
        .bind(reference)
        .bind(&recipients)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// One letter to the test organisation on `resource`.
    pub async fn insert_on(&self, resource: &str, reference: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
             VALUES ($1, $2, ARRAY[$3], 'Vedtak', 'Tekst') RETURNING id",
        )
        .bind(resource)
        .bind(reference)
        .bind(ORG)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn insert_many(&self, n: usize) {
        self.insert_many_from(1, n).await;
    }

    /// `n` single-recipient messages with references bulk-`first` onwards.
    pub async fn insert_many_from(&self, first: usize, n: usize) {
        sqlx::query(
            "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
             SELECT $1, 'bulk-' || i, ARRAY[$2], 'Title ' || i, 'Body ' || i FROM generate_series($4, $4 + $3 - 1) AS i",
        )
        .bind(RESOURCE)
        .bind(ORG)
        .bind(n as i32)
        .bind(first as i32)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// One small file; for a message to several recipients, its deliveries wait in waiting_files.
    pub async fn add_file(&self, message_id: i64) {
        sqlx::query(
            "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
             VALUES ($1, 'vedtak.pdf', 'file-1', '%PDF-1.7 x')",
        )
        .bind(message_id)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Every initialize request the fake received, faulted ones included.
    pub fn initialize_requests(&self) -> usize {
        self.requests_to("POST", "/correspondence/api/v1/correspondence")
    }

    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        self.fake.state().requests().iter().filter(|r| r.method == method && r.path == path).count()
    }

    pub async fn drain(&self) -> usize {
        worker::drain_until_empty(&self.ctx).await.expect("drain")
    }

    /// Makes every waiting retry and status read due now (instead of sleeping).
    pub async fn make_all_due(&self) {
        sqlx::query(
            "UPDATE altinn_outbox.delivery SET next_attempt_at = least(next_attempt_at, now()),
                    next_poll_at = CASE WHEN next_poll_at IS NULL THEN NULL ELSE least(next_poll_at, now()) END",
        )
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE altinn_outbox.attachment SET next_attempt_at = least(next_attempt_at, now())")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    pub async fn states(&self) -> Vec<(i64, String)> {
        sqlx::query("SELECT id, state FROM altinn_outbox.delivery ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    pub async fn count_in(&self, state: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.delivery WHERE state = $1")
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The only delivery of a message.
    pub async fn delivery_of(&self, message_id: i64) -> sqlx::postgres::PgRow {
        sqlx::query("SELECT * FROM altinn_outbox.delivery WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// One delivery of a message (any).
    pub async fn delivery_of_any(&self, message_id: i64) -> sqlx::postgres::PgRow {
        sqlx::query("SELECT * FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id LIMIT 1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Writes the config (for running the binary) to a temporary file, naming a copy of the
    /// key that only its owner may read, as `check` demands (a checked-out fixture is 0644).
    pub fn config_file(&self, dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let mut config = self.config.clone();
        if let Some(key) = &config.maskinporten.key_jwk_file {
            let private = dir.join("maskinporten.jwk.json");
            std::fs::copy(key, &private).unwrap();
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
            config.maskinporten.key_jwk_file = Some(private);
        }
        let path = dir.join("worker.toml");
        std::fs::write(&path, config_toml(&config)).unwrap();
        path
    }
}

/// `config` as a `worker.toml` for the binary, its secrets included: the config serializes
/// without them, so they are written here, explicitly and only in tests.
pub fn config_toml(config: &Config) -> String {
    let mut file = toml::Table::try_from(config).unwrap();
    let mut put = |section: &str, key: &str, secret: Option<&Secret>| {
        if let Some(secret) = secret {
            let table = file[section].as_table_mut().unwrap();
            table.insert(key.into(), secret.expose().into());
        }
    };
    put("database", "url", Some(&config.database.url));
    put("maskinporten", "key_jwk_base64", config.maskinporten.key_jwk_base64.as_ref());
    put("altinn", "subscription_key", config.altinn.subscription_key.as_ref());
    toml::to_string(&file).unwrap()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Best effort; a fresh name per test means a leftover never disturbs another run.
        let (name, url) = (self.db_name.clone(), server_url());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(&format!("{url}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

pub fn test_config(db_url: &str, fake: &FakeServer) -> Config {
    let mut c = Config { environment: Environment::Custom, ..Config::default() };
    c.database.url = Secret::new(db_url);
    c.maskinporten.client_id = CLIENT_ID.into();
    c.maskinporten.key_jwk_file = Some(fixture("test-jwk.json"));
    c.maskinporten.issuer = Some(fake.issuer());
    c.altinn.platform_url = Some(fake.base_url());
    c.altinn.request_timeout_ms = 5_000;
    // No cool-down after a failed token refresh: tests inject a few token faults and retry
    // at once, and expect the retry to reach the fake.
    c.maskinporten.failure_backoff_first_ms = 0;
    c.maskinporten.failure_backoff_max_ms = 0;
    c.outbox.idempotency_namespace = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);
    c.worker.concurrency = 16;
    c.worker.lease_ms = 30_000;
    c.worker.idle_poll_interval_ms = 100;
    c.worker.sweep_interval_ms = 200;
    c.worker.shutdown_grace_ms = 5_000;
    // Long waits, so that nothing comes due by itself while a test looks: tests move time
    // forward with `make_all_due` instead of sleeping.
    c.retry.initial_delay_ms = 10_000;
    c.retry.max_delay_ms = 20_000;
    c.retry.max_attempts = 4;
    c.status.first_poll_delay_ms = 10_000;
    c.status.max_poll_interval_ms = 20_000;
    c
}

/// Polls the database until `done` (the worker runs in the background meanwhile).
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
