//! The bench's SQL, checked as the daemon's is (`tests/it/common/sql_check.rs` at the top of
//! the repository): every statement prepares against a scratch database the bench's own way
//! (`sql::create_database`, the daemon's migrations), binds as many values as it has
//! parameters, and none runs without being registered.

use std::path::Path;

use altinn_outbox::outbox;
use outbox_bench::sql;
use sqlx::{Connection as _, PgConnection, PgPool};

use crate::server_url;
use crate::sql_check::{self, Registered};

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

fn registered() -> Vec<Registered> {
    sql::statements().map(|(s, text)| Registered::new(s.file, s.name, text)).collect()
}

#[tokio::test]
async fn every_statement_prepares_against_the_migrated_schema() {
    let admin = PgPool::connect(&format!("{}/postgres", server_url())).await.unwrap();
    let name = format!("altinn_outbox_bench_sql_{}", uuid::Uuid::new_v4().simple());
    sql::create_database(&admin, &name).await.unwrap();
    let mut conn = PgConnection::connect(&format!("{}/{name}", server_url())).await.unwrap();
    outbox::MIGRATOR.run(&mut conn).await.unwrap();
    let registered = registered();
    let problems = sql_check::prepare(&mut conn, &sql_check::scan(src()), &registered).await;
    conn.close().await.unwrap();
    sql::drop_database(&admin, &name).await.unwrap();
    assert!(problems.is_empty(), "{}", sql_check::report("the bench's SQL", &problems));
    assert!(registered.len() >= 15, "only {} statements registered", registered.len());
}

#[test]
fn no_statement_runs_outside_the_registry() {
    let problems = sql_check::registry(&sql_check::scan(src()), &registered());
    assert!(problems.is_empty(), "{}", sql_check::report("the bench's SQL", &problems));
}
