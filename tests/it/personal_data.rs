//! Personal data kept out of what is stored: Altinn's refusal of a reserved person quotes the
//! person's national identity number, and neither the row nor its history may keep it; the
//! migration that scrubs rows stored before applies the daemon's own rule.

use crate::common::TestApp;
use altinn_fake::FakeConfig;
use altinn_outbox::identifiers::scrub;
use altinn_outbox::outbox::MIGRATOR;
use sqlx::Row;

/// A valid national identity number (mod 11), reserved in the fake's KRR.
const PERSON: &str = "31129956715";
/// Version of the migration that scrubs stored texts.
const SCRUB_MIGRATION: i64 = 20261204000012;

/// Every text the migration stored may hold, as the daemon's and the migration's rule must
/// treat them alike: Altinn's texts, the edges of each pattern, and texts with nothing to hide.
const SAMPLES: &[&str] = &[
    "Recipient 31129956715 has reserved themselves from public correspondences. Can be overridden using the 'IgnoreReservation' flag.",
    "Could not find partyId for the following recipients: URN:ALTINN:PERSON:IDENTIFIER-NO:31129956715, urn:Altinn:Person:identifier-no:13896396174",
    "urn:altinn:person:identifier-no:0101019999 and urn:altinn:person:identifier-no:311299567150",
    "urn:altinn:person:identifier-no: without a number, urn:altinn:person:identifier-no:1",
    "31129956715",
    "31129956715,13896396174;41018510187",
    "fnr31129956715x and 12345678901urn:altinn:person:idporten-email:a@b.no",
    "twelve 311299567150, ten 3112995671, nine 991825827, urn:altinn:organization:identifier-no:991825827",
    "recipient urn:altinn:person:idporten-email:Kari.Nordmann+x@example.no, then",
    "{\"recipient\":\"URN:altinn:person:IDPORTEN-EMAIL:kari@example.no\"}",
    "(urn:altinn:person:legacy-selfidentified:kari_31129956715) [urn:altinn:person:legacy-selfidentified:]",
    "urn:altinn:person:idporten-email:x\ty urn:altinn:person:idporten-email:z[w] <urn:altinn:person:idporten-email:q>",
    "urn:altinn:person:legacy-selfidentified:urn:altinn:person:identifier-no:31129956715 tail",
    "urn:altinn:person:idporten-email:urn:altinn:person:legacy-selfidentified:k'x",
    "Mottaker «31129956715» har reservert seg – ø 13896396174",
    "correspondence 0199c8a4-26a7-7b2e-8e4a-2f6c3a3a9b10, attempt 3 by worker-1:4242",
    "",
];

#[tokio::test]
async fn the_migrations_rule_agrees_with_the_daemons() {
    let app = TestApp::start().await;
    for sample in SAMPLES {
        let sql: String = sqlx::query_scalar("SELECT altinn_outbox.scrub_personal_data($1)")
            .bind(sample)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(sql, scrub(sample), "for {sample:?}");
        assert_eq!(scrub(&sql), sql, "nothing is left to hide in {sql:?}");
    }
}

#[tokio::test]
async fn a_reserved_persons_number_is_stored_nowhere() {
    let fake = FakeConfig { reserved_persons: vec![PERSON.into()], ..crate::common::fake_config() };
    let app = TestApp::with(fake, |_| {}).await;
    let id = app.insert("reserved", &[PERSON]).await;

    assert_eq!(app.drain().await, 1);
    let d = app.delivery_of(id).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("failed".into(), "altinn:1030".into())
    );
    let message: String = d.get("error_message");
    assert!(message.starts_with("Recipient *********15 has reserved themselves"), "{message}");
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM altinn_outbox.history WHERE delivery_id = $1 AND detail LIKE 'altinn:%'",
    )
    .bind(d.get::<i64, _>("id"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(details, [format!("altinn:1030: {message}")]);
    assert_eq!(stored_birth_dates(&app).await, 0);
    assert_eq!(app.initialize_requests(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn the_migration_scrubs_what_was_stored_before_and_history_stays_append_only() {
    let app = TestApp::start().await;
    let id = app.insert("old", &[PERSON]).await;
    app.add_file(id).await;
    let raw = format!("Recipient {PERSON} has reserved themselves from public correspondences.");
    // As an earlier version stored Altinn's texts; the trigger copies the delivery's to history.
    sqlx::query("UPDATE altinn_outbox.delivery SET state = 'failed', error_code = 'altinn:1030', error_message = $2 WHERE message_id = $1")
        .bind(id)
        .bind(&raw)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE altinn_outbox.attachment SET error_code = 'altinn:1029', error_message = $2 WHERE message_id = $1",
    )
    .bind(id)
    .bind(format!("unknown urn:altinn:person:identifier-no:{PERSON}"))
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored_birth_dates(&app).await, 3, "delivery, attachment and history hold the number");
    let history_rows = history_count(&app).await;

    // The migration as the binary embeds it, applied again as `migrate` applies it.
    let migration = MIGRATOR.iter().find(|m| m.version == SCRUB_MIGRATION).expect("the scrub migration is embedded");
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::raw_sql(&migration.sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(stored_birth_dates(&app).await, 0);
    let scrubbed = scrub(&raw).into_owned();
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("error_message"), scrubbed);
    let attachment: String =
        sqlx::query_scalar("SELECT error_message FROM altinn_outbox.attachment WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(attachment, "unknown *********15");
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM altinn_outbox.history WHERE delivery_id = $1 AND detail LIKE 'altinn:%'",
    )
    .bind(d.get::<i64, _>("id"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(detail, format!("altinn:1030: {scrubbed}"));
    assert_eq!(history_count(&app).await, history_rows, "scrubbing a delivery records no change");

    let refused = sqlx::query("UPDATE altinn_outbox.history SET detail = 'x'").execute(&app.pool).await.unwrap_err();
    assert!(refused.to_string().contains("append-only"), "the guard is back: {refused}");
}

/// Stored texts that still hold the reserved person's birth date.
async fn stored_birth_dates(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM altinn_outbox.delivery WHERE error_message LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM altinn_outbox.attachment WHERE error_message LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM altinn_outbox.history WHERE detail LIKE '%' || $1 || '%')",
    )
    .bind(&PERSON[..6])
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn history_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.history").fetch_one(&app.pool).await.unwrap()
}
