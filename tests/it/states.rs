//! The closed sets of `outbox::states` against the migrated database: each set's `ALL` is
//! exactly what its column's CHECK constraint accepts, every value is written and read back
//! through the enum (alone and in the `unnest($n::text[])` arrays of the write-back), the
//! history trigger writes only kinds the code can read, and the outbox module's SQL compares
//! these columns only with values of their enums.

use std::collections::BTreeSet;

use crate::common::{TestApp, ORG};
use altinn_outbox::outbox::admin;
use altinn_outbox::outbox::{DeliveryState, HistoryKind, NotificationOutcome, RunOutcome, UploadState};
use sqlx::PgPool;

/// The quoted values of a constraint such as `CHECK (state IN ('a', 'b'))`, as PostgreSQL
/// prints it back (`state = ANY (ARRAY['a'::text, 'b'::text])`).
async fn constraint_values(pool: &PgPool, name: &str) -> BTreeSet<String> {
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conname = $1 AND connamespace = 'altinn_outbox'::regnamespace",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("constraint {name}: {e}"));
    definition.split('\'').skip(1).step_by(2).map(str::to_string).collect()
}

fn names<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> BTreeSet<String> {
    all.iter().map(|v| as_str(*v).to_string()).collect()
}

/// Writes `value` with `statement` ($1 the value, $2 the row's id) in a transaction that is
/// rolled back, and reads the column back through the enum. Err: the database refused it.
async fn write_and_read<T>(pool: &PgPool, statement: &str, read: &str, id: i64, value: T) -> Result<T, sqlx::Error>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + for<'r> sqlx::Decode<'r, sqlx::Postgres>,
    T: sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let mut tx = pool.begin().await?;
    sqlx::query(statement).bind(value).bind(id).execute(&mut *tx).await?;
    let back = sqlx::query_scalar(read).bind(id).fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    Ok(back)
}

fn refused_by(result: Result<impl std::fmt::Debug, sqlx::Error>, constraint: &str) {
    match result {
        Err(sqlx::Error::Database(e)) => assert_eq!(e.constraint(), Some(constraint), "{e}"),
        other => panic!("expected {constraint} to refuse the value, got {other:?}"),
    }
}

#[tokio::test]
async fn every_delivery_state_and_no_other_is_accepted_by_the_table() {
    let app = TestApp::start().await;
    let pool = &app.pool;
    assert_eq!(
        constraint_values(pool, "delivery_state_known").await,
        names(&DeliveryState::ALL, DeliveryState::as_str)
    );
    let message = app.insert("states", &[ORG]).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM altinn_outbox.delivery WHERE message_id = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .unwrap();
    let write = "UPDATE altinn_outbox.delivery SET state = $1 WHERE id = $2";
    let read = "SELECT state FROM altinn_outbox.delivery WHERE id = $1";
    for state in DeliveryState::ALL {
        assert_eq!(write_and_read(pool, write, read, id, state).await.unwrap(), state);
        let text: String = sqlx::query_scalar("SELECT $1::text").bind(state).fetch_one(pool).await.unwrap();
        assert_eq!(text, state.as_str(), "sqlx writes the text as_str gives");
    }
    refused_by(write_and_read(pool, write, read, id, "awaiting".to_string()).await, "delivery_state_known");
}

#[tokio::test]
async fn every_upload_state_and_no_other_is_accepted_by_the_table() {
    let app = TestApp::start().await;
    let pool = &app.pool;
    let known = constraint_values(pool, "attachment_upload_state_known").await;
    assert_eq!(known, names(&UploadState::ALL, UploadState::as_str));
    let message = app.insert("upload-states", &[ORG, "13896396174"]).await;
    app.add_file(message).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM altinn_outbox.attachment WHERE message_id = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .unwrap();
    // `processing` needs the time of its upload (attachment_processing_since).
    let write = "UPDATE altinn_outbox.attachment SET upload_state = $1, uploaded_at = now() WHERE id = $2";
    let read = "SELECT upload_state FROM altinn_outbox.attachment WHERE id = $1";
    for state in UploadState::ALL {
        assert_eq!(write_and_read(pool, write, read, id, state).await.unwrap(), state);
    }
    refused_by(write_and_read(pool, write, read, id, "scanning".to_string()).await, "attachment_upload_state_known");
}

#[tokio::test]
async fn every_run_outcome_and_no_other_is_accepted_by_the_table() {
    let app = TestApp::start().await;
    let pool = &app.pool;
    assert_eq!(
        constraint_values(pool, "schedule_run_outcome_known").await,
        names(&RunOutcome::ALL, RunOutcome::as_str)
    );
    sqlx::query("INSERT INTO altinn_outbox.schedule (name, last_slot) VALUES ('sweep', now())")
        .execute(pool)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.schedule_run (name, slot, instance) VALUES ('sweep', now(), 'test') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let write = "UPDATE altinn_outbox.schedule_run SET outcome = $1 WHERE id = $2";
    let read = "SELECT outcome FROM altinn_outbox.schedule_run WHERE id = $1";
    for outcome in RunOutcome::ALL {
        assert_eq!(write_and_read(pool, write, read, id, outcome).await.unwrap(), outcome);
    }
    refused_by(write_and_read(pool, write, read, id, "done".to_string()).await, "schedule_run_outcome_known");
}

/// Each notification outcome is written and read back, and the history those writes leave
/// holds every kind, read through the enum; the constraints take exactly the enums' values.
#[tokio::test]
async fn notification_outcomes_and_history_kinds_read_back_through_their_enums() {
    let app = TestApp::start().await;
    let pool = &app.pool;
    assert_eq!(
        constraint_values(pool, "delivery_notification_known").await,
        names(&NotificationOutcome::ALL, NotificationOutcome::as_str)
    );
    assert_eq!(constraint_values(pool, "history_kind_known").await, names(&HistoryKind::ALL, HistoryKind::as_str));
    let message = app.insert("notifications", &[ORG]).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM altinn_outbox.delivery WHERE message_id = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .unwrap();
    for outcome in NotificationOutcome::ALL {
        sqlx::query("UPDATE altinn_outbox.delivery SET notification = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        let deliveries = admin::deliveries(pool, message).await.unwrap();
        assert_eq!(deliveries[0].notification, Some(outcome));
    }
    let correspondence = uuid::Uuid::new_v4();
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET state = 'awaiting_status', altinn_status = 'Published',
         correspondence_id = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(correspondence)
    .execute(pool)
    .await
    .unwrap();
    let instance = correspondence.to_string();
    let event = altinn_outbox::outbox::events::Event {
        id: "e-1",
        event_type: "no.altinn.correspondence.correspondencepublished",
        resource: None,
        resource_instance: Some(&instance),
        time: None,
    };
    altinn_outbox::outbox::events::receive(pool, &event, altinn_outbox::outbox::events::Via::Push).await.unwrap();
    let kinds: BTreeSet<String> =
        admin::history(pool, message).await.unwrap().iter().map(|h| h.kind.as_str().to_string()).collect();
    assert_eq!(kinds, names(&HistoryKind::ALL, HistoryKind::as_str));
    let bad = sqlx::query("UPDATE altinn_outbox.delivery SET notification = 'lost' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await;
    refused_by(bad, "delivery_notification_known");
}

/// The write-back binds whole columns as `unnest($n::text[])`, with NULLs among them.
#[tokio::test]
async fn arrays_of_values_bind_as_text_arrays() {
    let app = TestApp::start().await;
    let pool = &app.pool;
    let states: Vec<DeliveryState> =
        sqlx::query_scalar("SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n")
            .bind(DeliveryState::ALL.to_vec())
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(states, DeliveryState::ALL);
    let outcomes: Vec<Option<NotificationOutcome>> = vec![None, Some(NotificationOutcome::NoRecipients)];
    let back: Vec<Option<NotificationOutcome>> =
        sqlx::query_scalar("SELECT o FROM unnest($1::text[]) WITH ORDINALITY AS u(o, n) ORDER BY n")
            .bind(&outcomes)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(back, outcomes);
}

/// The quoted values a column is compared with in `sql`: `col = 'x'`, `col <> 'x'` and
/// `col IN ('x', 'y')`, for `col` a whole word (or a qualified `d.col`).
fn compared_values(sql: &str, column: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in sql.match_indices(column) {
        let before = sql[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = sql[at + column.len()..].trim_start();
        let values = if let Some(rest) = rest.strip_prefix("IN (") {
            &rest[..rest.find(')').unwrap_or(rest.len())]
        } else if let Some(rest) = rest.strip_prefix('=').or_else(|| rest.strip_prefix("<>")) {
            let rest = rest.trim_start();
            if !rest.starts_with('\'') {
                continue;
            }
            &rest[..rest[1..].find('\'').map_or(rest.len(), |end| end + 2)]
        } else {
            continue;
        };
        found.extend(values.split('\'').skip(1).step_by(2).map(str::to_string));
    }
    found
}

/// SQL statements keep their literals (`WHERE state = 'pending'`); a literal the constraint
/// would refuse is caught when written, but not in a comparison, so every comparison in the
/// outbox module's SQL is checked against the enums here.
#[test]
fn the_sql_compares_columns_only_with_values_of_their_enums() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/outbox");
    let delivery = names(&DeliveryState::ALL, DeliveryState::as_str);
    let upload = names(&UploadState::ALL, UploadState::as_str);
    let kind = names(&HistoryKind::ALL, HistoryKind::as_str);
    let sample = "WHERE d.state IN ('pending', 'sending') AND upload_state <> 'none' AND kind = 'state'";
    assert_eq!(compared_values(sample, "state"), ["pending", "sending"]);
    assert_eq!(compared_values(sample, "upload_state"), ["none"]);
    assert_eq!(compared_values(sample, "kind"), ["state"]);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for (column, known) in [("state", &delivery), ("upload_state", &upload), ("kind", &kind)] {
            for value in compared_values(&source, column) {
                let file = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&path).display();
                assert!(known.contains(&value), "{file}: {column} compared with '{value}'");
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "the scan finds the statements' comparisons ({checked})");
}
