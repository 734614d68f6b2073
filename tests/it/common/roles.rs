//! deploy/roles.sql applied to a test database under role names of the test's own. Roles
//! are cluster-wide while each test has a database of its own, so every test applies the
//! script with its group roles renamed, creates login members of them, and drops them all
//! again when it ends.

use std::time::{SystemTime, UNIX_EPOCH};

use altinn_outbox::app;
use altinn_outbox::config::Secret;
use altinn_outbox::worker::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{server_url, TestApp, RESOURCE};

/// Role names in the script, replaced per test.
pub const PRODUCER: &str = "altinn_outbox_producer";
pub const WORKER: &str = "altinn_outbox_worker";
/// Leftovers of runs that crashed before dropping their roles are dropped after this long
/// (their databases are gone, so nothing holds them); a running test is never that old.
const LEFTOVER_AGE_S: u64 = 3600;
const ROLE_PREFIX: &str = "aotest";
const PASSWORD: &str = "roles-test-password";

/// The script's two group roles and a login member of each, named for one test; `extra`
/// are further login members (e.g. a second producer application).
pub struct Roles {
    prefix: String,
    db_name: String,
    extra: Vec<String>,
}

impl Roles {
    pub fn group(&self, role: &str) -> String {
        format!("{}_{}", self.prefix, role.trim_start_matches("altinn_outbox_"))
    }

    /// The first login member of `role`.
    pub fn login(&self, role: &str) -> String {
        format!("{}_login", self.group(role))
    }

    fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.extra.clone();
        all.extend([PRODUCER, WORKER].iter().flat_map(|r| [self.login(r), self.group(r)]));
        all
    }

    /// Applies deploy/roles.sql (twice: it must be re-runnable) and creates the login roles.
    pub async fn apply(app: &TestApp) -> Roles {
        Roles::apply_with(app, &[]).await
    }

    /// As [`Roles::apply`], with a further login member of the producer role per name in
    /// `producers` (see [`Roles::producer`]).
    pub async fn apply_with(app: &TestApp, producers: &[&str]) -> Roles {
        drop_leftovers(&app.pool).await;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let prefix = format!("{ROLE_PREFIX}_{secs}_{}", &Uuid::new_v4().simple().to_string()[..8]);
        let mut roles = Roles { prefix, db_name: app.db_name.clone(), extra: Vec::new() };
        roles.extra = producers.iter().map(|name| roles.producer(name)).collect();
        roles.run_script(&app.pool).await;
        roles.run_script(&app.pool).await;
        let logins = [PRODUCER, WORKER].map(|role| (roles.login(role), roles.group(role)));
        let extra = roles.extra.iter().map(|login| (login.clone(), roles.group(PRODUCER)));
        for (login, group) in logins.into_iter().chain(extra) {
            let sql = format!("CREATE ROLE {login} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}");
            sqlx::query(&sql).execute(&app.pool).await.unwrap();
        }
        roles
    }

    /// The login role of the further producer `name` given to [`Roles::apply_with`].
    pub fn producer(&self, name: &str) -> String {
        format!("{}_{name}", self.group(PRODUCER))
    }

    pub async fn run_script(&self, pool: &PgPool) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/roles.sql");
        let sql = std::fs::read_to_string(path)
            .unwrap()
            .replace(PRODUCER, &self.group(PRODUCER))
            .replace(WORKER, &self.group(WORKER));
        sqlx::raw_sql(&sql).execute(pool).await.expect("deploy/roles.sql applies");
    }

    /// The test database's URL with the login role `login`.
    pub fn url_as(&self, login: &str) -> String {
        let mut url = url::Url::parse(&server_url()).unwrap();
        url.set_username(login).unwrap();
        url.set_password(Some(PASSWORD)).unwrap();
        url.set_path(&self.db_name);
        url.to_string()
    }

    /// The daemon's context as the worker's login role sees it.
    pub fn worker_context(&self, app: &TestApp) -> Context {
        let mut config = app.config.clone();
        config.database.url = Secret::new(self.url_as(&self.login(WORKER)));
        app::build_context(&config).unwrap()
    }

    /// A pool of the first login member of `role`.
    pub async fn pool(&self, role: &str) -> PgPool {
        self.pool_as(&self.login(role)).await
    }

    /// A pool of the login role `login`.
    pub async fn pool_as(&self, login: &str) -> PgPool {
        PgPoolOptions::new().max_connections(4).connect(&self.url_as(login)).await.expect("login role connects")
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        // Runs before TestApp's drop (declared after it), while the database still exists:
        // DROP OWNED revokes the privileges in it, so DROP ROLE can go through.
        let (roles, db) = (self.all().join(", "), format!("{}/{}", server_url(), self.db_name));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(&db).await {
                    let _ = sqlx::raw_sql(&format!("DROP OWNED BY {roles}; DROP ROLE {roles}")).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

/// Drops roles of earlier runs that died before their own cleanup.
async fn drop_leftovers(pool: &PgPool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE rolname LIKE $1 || '\\_%'")
        .bind(ROLE_PREFIX)
        .fetch_all(pool)
        .await
        .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let old = |name: &String| {
        let secs = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        secs.is_some_and(|s| s + LEFTOVER_AGE_S < now)
    };
    for name in names.iter().filter(|n| old(n)) {
        // Best effort: another database may still hold privileges of a role.
        let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}")).execute(pool).await;
    }
}

/// The one value `sql` returns for the message `id`, as `pool`'s role.
pub async fn value<T>(pool: &PgPool, sql: &str, id: i64) -> T
where
    T: Send + Unpin,
    (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_scalar(sql).bind(id).fetch_one(pool).await.unwrap()
}

/// Rows of each outbox table and view that `pool`'s role sees, in this order: message,
/// attachment, delivery, history, delivery_status, message_status.
pub async fn visible(pool: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["message", "attachment", "delivery", "history", "delivery_status", "message_status"] {
        let sql = format!("SELECT count(*) FROM altinn_outbox.{table}");
        counts.push(sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap());
    }
    counts
}

/// The SQLSTATE and text of the error `sql` fails with.
pub async fn error_of(pool: &PgPool, sql: &str) -> (String, String) {
    let err = sqlx::query(sql).execute(pool).await.expect_err(sql);
    let code = err
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default();
    (code, err.to_string())
}

/// `sql` fails with insufficient_privilege (42501), not with any other error.
pub async fn assert_denied(pool: &PgPool, sql: &str) {
    let (code, text) = error_of(pool, sql).await;
    assert_eq!(code, "42501", "{sql}: {text}");
}

/// As `pool`'s role, in one transaction: a letter to `recipients` with one file.
pub async fn insert_with_file(pool: &PgPool, reference: &str, recipients: &[&str]) -> i64 {
    let recipients: Vec<String> = recipients.iter().map(std::string::ToString::to_string).collect();
    let mut tx = pool.begin().await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, $2, $3, 'Vedtak', 'Se vedlagt.') RETURNING id",
    )
    .bind(RESOURCE)
    .bind(reference)
    .bind(&recipients)
    .fetch_one(&mut *tx)
    .await
    .expect("the producer inserts a message");
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, display_name, senders_reference, content)
         VALUES ($1, 'vedtak.pdf', 'Vedtak', $2 || '-file', $3)",
    )
    .bind(id)
    .bind(reference)
    .bind(b"%PDF-1.7 decision".as_slice())
    .execute(&mut *tx)
    .await
    .expect("the producer inserts a file");
    tx.commit().await.unwrap();
    id
}
