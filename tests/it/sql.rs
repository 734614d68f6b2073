//! The daemon's SQL, checked (`common::sql_check`): every registered statement prepares
//! against a freshly migrated database, binds as many values as it has parameters, and no
//! statement runs without being registered.

use std::path::Path;

use altinn_outbox::outbox;

use crate::common::sql_check::{self, Registered, Scan};
use crate::common::TestApp;

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

fn registered() -> Vec<Registered> {
    outbox::statements().map(|s| Registered::new(s.file, s.name, s.sql)).collect()
}

#[tokio::test]
async fn every_statement_prepares_against_the_migrated_schema() {
    let app = TestApp::start().await;
    let registered = registered();
    let mut conn = app.pool.acquire().await.unwrap();
    let problems = sql_check::prepare(&mut conn, &sql_check::scan(src()), &registered).await;
    assert!(problems.is_empty(), "{}", sql_check::report("the daemon's SQL", &problems));
    // A registry that lost its statements would pass the loop above.
    assert!(registered.len() >= 40, "only {} statements registered", registered.len());
}

#[test]
fn no_statement_runs_outside_the_registry() {
    let problems = sql_check::registry(&sql_check::scan(src()), &registered());
    assert!(problems.is_empty(), "{}", sql_check::report("the daemon's SQL", &problems));
}

/// The scan's rule on sources written to break it, and on code it must leave alone.
#[test]
fn the_scan_catches_sql_written_inline() {
    let registered = [Registered::new("crates/x/src/a.rs", "PICK", "SELECT 1")];
    let source = r##"
        // sqlx::query("in a comment") is no call
        async fn f(pool: &PgPool, url: &str) {
            sqlx::query(PICK).bind(1).execute(pool).await;
            sqlx::query("SELECT 2").execute(pool).await;
            sqlx::query_scalar::<_, i64>(&format!("SELECT {}", 3)).fetch_one(pool).await;
            sqlx::query_as!(Row, r#"SELECT 4"#).fetch_one(pool).await;
            sqlx::query(OTHER).execute(pool).await;
            pool.execute("SELECT 5").await;
            http.get(url).query(&[("a", "b")]).send().await;
            let s = "sqlx::query(\"in a string\")";
            let c = '"';
        }
        #[cfg(test)]
        mod tests {
            fn g() { sqlx::query("SELECT 6"); }
        }
    "##;
    let mut scan = Scan::default();
    sql_check::scan_source("a.rs", source, &mut scan);
    let calls: Vec<(usize, &str, Option<usize>)> =
        scan.calls.iter().map(|c| (c.line, c.callee.as_str(), c.binds)).collect();
    assert_eq!(
        calls,
        [
            (4, "query", Some(1)),
            (5, "query", Some(0)),
            (6, "query_scalar", Some(0)),
            (7, "query_as!", Some(0)),
            (8, "query", Some(0))
        ]
    );
    let problems = sql_check::registry(&scan, &registered);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for line in [5, 6, 7] {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("src/a.rs:{line}: ")) && p.contains("inline")),
            "{problems:#?}"
        );
    }
    assert!(
        problems.iter().any(|p| p.starts_with("src/a.rs:8: ") && p.contains("names no statement")),
        "{problems:#?}"
    );
    assert!(problems.iter().any(|p| p.starts_with("src/a.rs:9: `.execute`")), "{problems:#?}");
}
