//! One run's world: a fresh database on the server (migrated), the fake Maskinporten and
//! Altinn in-process with the bench's key registered, and a worker context configured with
//! the daemon's defaults except for what the bench varies (concurrency, first poll delay).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use altinn_fake::{Endpoint, FakeClient, FakeConfig, FakeServer, FaultKind, FaultRule};
use altinn_outbox::config::{Config, Environment, Secret};
use altinn_outbox::outbox;
use altinn_outbox::worker::{self, Context};

/// The Maskinporten client id the fake knows the bench by.
const CLIENT_ID: &str = "altinn-outbox-bench";
/// A fixed namespace: keys differ per run anyway, because each run has its own fake.
const NAMESPACE: Uuid = Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0001);

/// The signing key of one bench invocation, generated at start (no test fixture needed).
pub struct BenchKey {
    /// The private JWK (JSON), for a worker process's key file.
    private_jwk: String,
    private_b64: String,
    public_jwks: serde_json::Value,
}

impl BenchKey {
    pub fn generate() -> anyhow::Result<BenchKey> {
        let (private, public) = altinn_outbox::maskinporten::generate_jwk("bench", 2048);
        Ok(BenchKey {
            private_b64: base64::engine::general_purpose::STANDARD.encode(&private),
            private_jwk: private,
            public_jwks: serde_json::from_str(&public)?,
        })
    }

    /// Writes the private JWK to a new file that only this user can read (it is a signing key).
    pub fn write_private(&self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(self.private_jwk.as_bytes())
    }
}

/// What one run varies.
#[derive(Clone, Copy, Debug)]
pub struct RunSettings {
    pub concurrency: usize,
    /// Added to every Correspondence API request by the fake.
    pub latency: Duration,
    pub publish_after_ms: u64,
    pub first_poll_delay_ms: u64,
}

/// How long the backends of a closed pool may take to exit (and report their statistics).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Env {
    pub db_name: String,
    db_url: String,
    pub fake: FakeServer,
    /// The worker's context; its pool connects lazily, so only the worker's own statements
    /// go through it.
    pub ctx: Arc<Context>,
    /// On the server's `postgres` database: creates, drops, and reads the run's counters.
    admin: PgPool,
}

impl Env {
    pub async fn start(server: &str, key: &BenchKey, run: RunSettings) -> anyhow::Result<Env> {
        // Creating and dropping a database is slow by nature: not logged as a slow statement.
        let options: PgConnectOptions = format!("{server}/postgres").parse()?;
        let admin = PgPoolOptions::new().max_connections(1).connect_with(options.disable_statement_logging()).await?;
        let db_name = format!("altinn_outbox_bench_{}", Uuid::new_v4().simple());
        crate::sql::create_database(&admin, &db_name).await?;
        let db_url = format!("{server}/{db_name}");
        let fake = FakeServer::start(fake_config(key, run.publish_after_ms)).await;
        if !run.latency.is_zero() {
            for endpoint in [Endpoint::Initialize, Endpoint::Lookup, Endpoint::Overview, Endpoint::Details] {
                fake.faults().add(FaultRule::always(endpoint, FaultKind::Delay(run.latency)));
            }
        }
        let config = worker_config(&db_url, &fake, key, run);
        let ctx = Arc::new(altinn_outbox::app::build_context(&config)?);
        let env = Env { db_name, db_url, fake, ctx, admin };
        let mut setup = env.connect().await?;
        outbox::MIGRATOR.run(&mut setup).await?;
        setup.close().await?;
        Ok(env)
    }

    /// A connection of the bench's own (loading, progress, measuring), apart from the
    /// worker's pool: every statement on it is one the bench counts.
    /// A plain connection, not a pool: its `close` has ended the session when it returns.
    /// Its bulk loads are slow by design: not logged as slow statements.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let options: PgConnectOptions = self.db_url.parse()?;
        options.disable_statement_logging().connect().await
    }

    /// Transactions ended in the run's database, once every connection to it is closed:
    /// backends report their counts when they exit, but may hold them for up to 10 s while idle.
    pub async fn settled_transactions(&self) -> anyhow::Result<i64> {
        let deadline = std::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let open = crate::sql::backends(&self.admin, &self.db_name).await?;
            if open.is_empty() {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "connections to the run's database stay open: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(crate::sql::transactions(&self.admin, &self.db_name).await?)
    }

    /// The run's database URL, for a worker process's environment.
    pub fn database_url(&self) -> &str {
        &self.db_url
    }

    /// The configuration of a worker in a process of its own: the in-process worker's, but
    /// with the key read from `key_file`, the database URL left to the environment (where
    /// the daemon's secrets belong, see `worker.toml`) and only warnings logged.
    pub fn process_config(&self, key: &BenchKey, run: RunSettings, key_file: &Path) -> Config {
        let mut c = worker_config(&self.db_url, &self.fake, key, run);
        c.database.url = Secret::default();
        c.maskinporten.key_jwk_base64 = None;
        c.maskinporten.key_jwk_file = Some(key_file.to_path_buf());
        c.worker.instance_name = Some("bench-process".into());
        c.log.level = "warn".into();
        c
    }

    /// Starts the daemon's own loop in this process; cancel the token to stop it.
    pub fn start_worker(&self) -> (CancellationToken, JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        (shutdown.clone(), tokio::spawn(worker::run(self.ctx.clone(), shutdown)))
    }

    /// Closes every connection to the run's database (so its backends report their
    /// statistics as they exit) and drops it.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.ctx.pool.close().await;
        crate::sql::drop_database(&self.admin, &self.db_name).await?;
        self.admin.close().await;
        Ok(())
    }
}

fn fake_config(key: &BenchKey, publish_after_ms: u64) -> FakeConfig {
    FakeConfig {
        clients: vec![FakeClient {
            client_id: CLIENT_ID.into(),
            jwks: key.public_jwks.clone(),
            scopes: vec!["altinn:serviceowner".into(), "altinn:correspondence.write".into()],
        }],
        publish_after_ms,
        ..FakeConfig::default()
    }
}

/// The daemon's defaults, pointed at this run's database and fake.
fn worker_config(db_url: &str, fake: &FakeServer, key: &BenchKey, run: RunSettings) -> Config {
    let mut c = Config { environment: Environment::Custom, ..Config::default() };
    c.database.url = Secret::new(db_url);
    c.maskinporten.client_id = CLIENT_ID.into();
    c.maskinporten.key_jwk_base64 = Some(Secret::new(key.private_b64.clone()));
    c.maskinporten.issuer = Some(fake.issuer());
    c.altinn.platform_url = Some(fake.base_url());
    c.outbox.idempotency_namespace = NAMESPACE;
    c.worker.instance_name = Some("bench".into());
    c.worker.concurrency = run.concurrency;
    c.status.first_poll_delay_ms = run.first_poll_delay_ms;
    c
}
