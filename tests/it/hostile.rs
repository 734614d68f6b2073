//! Rows written to do harm, or by mistake, against the real PostgreSQL and the fake: a
//! recipient written two ways, a key Altinn holds for another letter, JSON nested to break
//! the decoder, texts beyond Altinn's limits. Each is refused at INSERT naming the column, or
//! fails its own delivery naming the field; no other letter is lost, taken over or held up.

use crate::common::{TestApp, ORG, RESOURCE};
use altinn_outbox::altinn::Created;
use altinn_outbox::outbox::{self, ClaimedSend};
use altinn_outbox::worker::{self, Job};
use altinn_outbox::{compose, health};
use sqlx::postgres::PgDatabaseError;
use sqlx::Row;
use uuid::Uuid;

const ORG_URN: &str = "urn:altinn:organization:identifier-no:991825827";

/// What the database said when it refused an INSERT: (column, message).
fn refusal(e: sqlx::Error) -> (String, String) {
    let db = e.as_database_error().expect("refused by the database");
    let pg = db.try_downcast_ref::<PgDatabaseError>().expect("a PostgreSQL error");
    (pg.column().unwrap_or_default().to_string(), pg.message().to_string())
}

/// Inserts one message with `column` set to the SQL expression `value`; the refusal, if any.
async fn insert_with(app: &TestApp, reference: &str, column: &str, value: &str) -> Result<i64, (String, String)> {
    let mut fields = vec![
        ("resource_id", format!("'{RESOURCE}'")),
        ("senders_reference", format!("'{reference}'")),
        ("recipients", format!("ARRAY['{ORG}']")),
        ("title", "'Vedtak'".to_string()),
        ("body", "'Tekst'".to_string()),
    ];
    match fields.iter_mut().find(|(name, _)| *name == column) {
        Some(field) => field.1 = value.to_string(),
        None => fields.push((column, value.to_string())),
    }
    let (names, values): (Vec<&str>, Vec<String>) = fields.into_iter().unzip();
    let sql =
        format!("INSERT INTO altinn_outbox.message ({}) VALUES ({}) RETURNING id", names.join(", "), values.join(", "));
    sqlx::query_scalar(&sql).fetch_one(&app.pool).await.map_err(refusal)
}

async fn insert_recipient(app: &TestApp, reference: &str, recipient: &str) -> Result<i64, sqlx::Error> {
    insert_letter(app, reference, recipient, "Vedtak").await
}

async fn insert_letter(app: &TestApp, reference: &str, recipient: &str, title: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, $2, ARRAY[$3], $4, 'Tekst') RETURNING id",
    )
    .bind(RESOURCE)
    .bind(reference)
    .bind(recipient)
    .bind(title)
    .fetch_one(&app.pool)
    .await
}

/// The key the worker gives a delivery of `reference` to the test organisation.
fn key_of(app: &TestApp, reference: &str) -> Uuid {
    compose::idempotency_key(app.config.outbox.idempotency_namespace, RESOURCE, reference, 0, ORG_URN)
}

#[tokio::test]
async fn a_recipient_with_white_space_or_anything_but_printable_ascii_is_refused_at_insert() {
    let app = TestApp::start().await;
    for (i, bad) in
        ["991825827\t", " 991825827", "991825827\n", "9918\u{200b}25827", "９９１８２５８２７", "991825827\u{a0}"]
            .iter()
            .enumerate()
    {
        let e = insert_recipient(&app, &format!("bad-{i}"), bad).await.expect_err(bad);
        let (column, message) = refusal(e);
        assert_eq!(column, "recipients", "{bad:?}: {message}");
        assert!(message.starts_with("altinn_outbox.message.recipients: recipient 1 of 1"), "{bad:?}: {message}");
        assert!(!message.contains("991825827"), "the value is not echoed: {message}");
    }
    assert_eq!(app.count_in("pending").await, 0);
}

/// Another letter under a reference already used for the same party, in any of its forms,
/// is refused (the same letter again is a producer's retry, which message_reference_unique
/// lets it absorb with ON CONFLICT DO NOTHING).
#[tokio::test]
async fn every_form_of_one_recipient_is_one_reference() {
    let app = TestApp::start().await;
    insert_recipient(&app, "case-1", ORG).await.unwrap();
    for form in ["0192:991825827", ORG_URN, "URN:ALTINN:ORGANIZATION:IDENTIFIER-NO:991825827"] {
        let e = insert_letter(&app, "case-1", form, &format!("Another letter to {form}")).await.expect_err(form);
        let db = e.as_database_error().unwrap();
        assert_eq!(db.constraint(), Some("delivery_reference_unique"), "{form}: {db}");
        let e = insert_recipient(&app, "case-1", form).await.expect_err(form);
        assert_eq!(e.as_database_error().unwrap().constraint(), Some("message_reference_unique"), "{form}");
    }
    // A person in both forms, and the letter case of a person URN.
    insert_recipient(&app, "case-2", "13896396174").await.unwrap();
    for form in ["urn:altinn:person:identifier-no:13896396174", "Urn:Altinn:Person:Identifier-No:13896396174"] {
        let e = insert_letter(&app, "case-2", form, "Another letter").await.expect_err(form);
        assert_eq!(e.as_database_error().unwrap().constraint(), Some("delivery_reference_unique"), "{form}");
    }
    assert_eq!(app.count_in("pending").await, 2);
}

/// Reproduction: producer B wrote the recipient with a trailing tab, producer A the same
/// reference plainly. B's letter used to be accepted and sent, and A's then "found" under the
/// shared key and marked delivered without ever being sent.
#[tokio::test]
async fn a_letter_is_never_marked_delivered_under_another_letters_key() {
    let app = TestApp::start().await;
    assert!(insert_recipient(&app, "case-9", "991825827\t").await.is_err(), "B's form is refused");
    let a = insert_recipient(&app, "case-9", ORG).await.expect("A's letter is accepted");
    app.drain().await;
    let d = app.delivery_of(a).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 1, "A's letter was sent, once");
    assert_eq!(Some(sent[0].id), d.get::<Option<Uuid>, _>("correspondence_id"));
    assert_eq!(sent[0].request["correspondence"]["sendersReference"], "case-9");
}

/// Creates message `id`'s letter at Altinn under `key`, as an earlier attempt (or someone
/// else) would have; returns the correspondence id.
async fn plant(app: &TestApp, id: i64, key: Uuid) -> Uuid {
    let content = outbox::message_content(&app.pool, id).await.unwrap().unwrap();
    let request = compose::initialize_request(&content, ORG, key, chrono::Utc::now()).unwrap();
    match app.ctx.altinn.initialize(&request).await.unwrap() {
        Created::New { correspondence_id, .. } => correspondence_id,
        other @ Created::AlreadyExists => panic!("created, not {other:?}"),
    }
}

/// Altinn holds this delivery's key for a correspondence with another reference (made by a
/// key derived twice, or by someone else): 409/1034, and the lookup finds it. The delivery
/// fails with a code of its own; nothing is marked delivered.
#[tokio::test]
async fn a_key_altinn_holds_for_another_letter_fails_the_delivery() {
    let app = TestApp::start().await;
    // Someone else's correspondence under the key "mine" will have.
    let other = insert_recipient(&app, "someone-else", ORG).await.unwrap();
    plant(&app, other, key_of(&app, "mine")).await;
    sqlx::query("DELETE FROM altinn_outbox.message WHERE id = $1").bind(other).execute(&app.pool).await.unwrap();

    let mine = insert_recipient(&app, "mine", ORG).await.unwrap();
    app.drain().await;
    let d = app.delivery_of(mine).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<String, _>("error_code"), "idempotency_key_foreign");
    let message: String = d.get("error_message");
    assert!(message.contains("sender's reference") && !message.contains("recipient,"), "{message}");
    assert_eq!(d.get::<Option<Uuid>, _>("correspondence_id"), None, "nothing taken over");
    assert_eq!(app.fake.state().correspondences().len(), 1, "no second correspondence");
    assert_eq!(app.initialize_requests(), 2, "the planted one, and ours answered 409");
}

/// A lost answer is still found: the key's correspondence is this very letter.
#[tokio::test]
async fn a_key_altinn_holds_for_this_letter_is_taken_as_sent() {
    let app = TestApp::start().await;
    let mine = insert_recipient(&app, "mine", ORG).await.unwrap();
    let correspondence_id = plant(&app, mine, key_of(&app, "mine")).await;
    app.drain().await;
    let d = app.delivery_of(mine).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    assert_eq!(d.get::<Option<Uuid>, _>("correspondence_id"), Some(correspondence_id));
    assert_eq!(app.fake.state().correspondences().len(), 1);
}

/// A key already held by another delivery (here planted by hand) is never sent: its delivery
/// fails at the claim, with no request, and the claim goes on with the others.
#[tokio::test]
async fn a_key_another_delivery_holds_fails_its_delivery_at_the_claim() {
    let app = TestApp::start().await;
    let mine = insert_recipient(&app, "mine", ORG).await.unwrap();
    let other = insert_recipient(&app, "other", ORG).await.unwrap();
    sqlx::query("INSERT INTO altinn_outbox.delivery_key (idempotency_key, delivery_id) VALUES ($1, 424242)")
        .bind(key_of(&app, "mine"))
        .execute(&app.pool)
        .await
        .unwrap();
    app.drain().await;
    let d = app.delivery_of(mine).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("failed".into(), "idempotency_key_taken".into())
    );
    assert_eq!(d.get::<Option<Uuid>, _>("idempotency_key"), None, "the key stays with its holder");
    assert_eq!(app.delivery_of(other).await.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.initialize_requests(), 1, "only the other letter was sent");
}

#[tokio::test]
async fn the_database_refuses_a_second_delivery_with_a_stored_key() {
    let app = TestApp::start().await;
    let a = insert_recipient(&app, "a", ORG).await.unwrap();
    app.drain().await;
    let key: Uuid = app.delivery_of(a).await.get("idempotency_key");
    // A second delivery, never claimed, given the same key by hand (the worker never would).
    let b = insert_recipient(&app, "b", ORG).await.unwrap();
    let e = sqlx::query("UPDATE altinn_outbox.delivery SET idempotency_key = $2 WHERE message_id = $1")
        .bind(b)
        .bind(key)
        .execute(&app.pool)
        .await
        .expect_err("a key belongs to one delivery");
    assert_eq!(e.as_database_error().unwrap().constraint(), Some("delivery_key_unique"));
}

fn nested(depth: usize) -> String {
    format!("'{}{}'::jsonb", "[".repeat(depth), "]".repeat(depth))
}

/// Reproduction: 200 nested arrays in `property_list` made every claim fail to decode, so
/// no letter of anyone's went out. Now refused at INSERT; a row stored before the check
/// fails alone, naming the column, and the others are sent.
#[tokio::test]
async fn json_nested_too_deep_is_refused_at_insert_and_a_stored_one_fails_alone() {
    let app = TestApp::start().await;
    for column in ["property_list", "notification", "external_references", "reply_options"] {
        let (col, message) = insert_with(&app, "deep", column, &nested(200)).await.expect_err(column);
        assert_eq!(col, column, "{message}");
        assert!(message.starts_with(&format!("altinn_outbox.message.{column}: ")), "{message}");
    }
    // As if stored before this check existed (or by the owner with the check off).
    sqlx::query("ALTER TABLE altinn_outbox.message DISABLE TRIGGER message_check").execute(&app.pool).await.unwrap();
    let poison = insert_with(&app, "poison", "property_list", &nested(200)).await.unwrap();
    sqlx::query("ALTER TABLE altinn_outbox.message ENABLE TRIGGER message_check").execute(&app.pool).await.unwrap();
    app.insert_many(20).await;
    app.drain().await;
    let d = app.delivery_of(poison).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("failed".into(), "validation:property_list".into())
    );
    assert_eq!(app.count_in("awaiting_status").await, 20, "every other letter was sent");
    assert_eq!(health::readiness(&app.ctx).await.claims, "ok");
}

#[tokio::test]
async fn claims_that_keep_failing_make_the_instance_not_ready_naming_the_reason() {
    let app = TestApp::start().await;
    app.insert("one", &[ORG]).await;
    // Claims of a new key read delivery_key: without it every claim fails.
    sqlx::query("ALTER TABLE altinn_outbox.delivery_key RENAME TO delivery_key_away").execute(&app.pool).await.unwrap();
    for _ in 0..3 {
        assert!(worker::claim(&app.ctx, 4).await.is_err());
    }
    let readiness = health::readiness(&app.ctx).await;
    assert!(!readiness.ready);
    assert!(readiness.claims.starts_with("3 claims in a row failed"), "{}", readiness.claims);
    assert!(readiness.claims.contains("delivery_key"), "the reason: {}", readiness.claims);
    sqlx::query("ALTER TABLE altinn_outbox.delivery_key_away RENAME TO delivery_key").execute(&app.pool).await.unwrap();
    assert_eq!(app.drain().await, 1);
    let readiness = health::readiness(&app.ctx).await;
    assert!(readiness.ready, "{readiness:?}");
}

/// Every text and JSON column is held to Altinn's limit at INSERT (lengths in UTF-16 units,
/// as .NET counts), and the refusal names the column.
#[tokio::test]
async fn every_column_is_held_to_altinns_limits_at_insert() {
    let app = TestApp::start().await;
    let refused = [
        ("title", "repeat('ø', 256)"),
        ("title", "repeat('😀', 128)"),
        ("summary", "repeat('x', 256)"),
        ("body", "repeat('x', 30001)"),
        ("body", "repeat('x', 16 * 1024 * 1024)"),
        ("message_sender", "repeat('x', 256)"),
        ("senders_reference", "repeat('x', 4097)"),
        ("resource_id", "repeat('x', 256)"),
        ("language", "repeat('x', 17)"),
        ("existing_attachments", "array_fill(gen_random_uuid(), ARRAY[101])"),
        ("property_list", "'{\"case\": 17}'"),
        ("property_list", "'[\"a\"]'"),
        ("property_list", "(SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 11) i)"),
        ("property_list", "jsonb_build_object(repeat('k', 51), 'v')"),
        ("property_list", "jsonb_build_object('k', repeat('v', 301))"),
        ("external_references", "'{\"a\": 1}'"),
        (
            "external_references",
            "(SELECT jsonb_agg(jsonb_build_object('referenceValue', i)) FROM generate_series(1, 11) i)",
        ),
        ("reply_options", "jsonb_build_array(jsonb_build_object('linkURL', jsonb_build_array('https://x')))"),
        ("notification", "'\"e-mail please\"'"),
        ("notification", "jsonb_build_object('emailBody', repeat('x', 200000))"),
    ];
    for (i, (column, value)) in refused.iter().enumerate() {
        let (col, message) =
            insert_with(&app, &format!("r{i}"), column, value).await.expect_err(&format!("{column} = {value}"));
        assert_eq!(&col, column, "{value}: {message}");
        assert!(message.starts_with(&format!("altinn_outbox.message.{column}: ")), "{message}");
    }
    let accepted = [
        ("title", "repeat('ø', 255)"),
        ("title", "repeat('😀', 127) || 'x'"),
        ("body", "repeat('x', 30000)"),
        ("property_list", "(SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 10) i)"),
        ("external_references", "'[{\"referenceValue\": \"1\", \"referenceType\": \"Generic\"}]'"),
        ("notification", "'{\"notificationTemplate\": \"GenericAltinnMessage\", \"customRecipients\": [{\"emailAddress\": \"a@b.no\"}]}'"),
        ("property_list", "'null'"),
    ];
    for (i, (column, value)) in accepted.iter().enumerate() {
        insert_with(&app, &format!("a{i}"), column, value)
            .await
            .unwrap_or_else(|e| panic!("{column} = {value}: {e:?}"));
    }
}

#[tokio::test]
async fn files_are_held_to_altinns_limits_at_insert() {
    let app = TestApp::start().await;
    let id = app.insert("files", &[ORG]).await;
    let file = |name: String| {
        sqlx::query(
            "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
             VALUES ($1, $2, 'f', 'x')",
        )
        .bind(id)
        .bind(name)
    };
    let (col, message) = refusal(file(format!("{}.pdf", "x".repeat(252))).execute(&app.pool).await.unwrap_err());
    assert_eq!(col, "file_name", "{message}");
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
         SELECT $1, 'f' || i || '.pdf', 'f', 'x' FROM generate_series(1, 100) i",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .expect("100 files are Altinn's limit");
    let (col, message) = refusal(file("one-more.pdf".into()).execute(&app.pool).await.unwrap_err());
    assert_eq!(col, "message_id", "{message}");
    assert!(message.contains(&format!("message {id} would have more than 100 files")), "{message}");
}

/// Reproduction: a 16 MB body to 64 recipients took the daemon past a gigabyte, because each
/// claimed delivery carried its own copy of the body. The body is now bounded at INSERT, and
/// a claim reads each message's content once, shared by all of its deliveries.
#[tokio::test]
async fn a_claim_holds_one_copy_of_a_message_whatever_its_recipient_count() {
    let app = TestApp::start().await;
    let recipients: Vec<String> =
        (0..64).map(|i| format!("urn:altinn:person:idporten-email:p{i}@example.no")).collect();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, 'big', $2, 'Vedtak', repeat('x', 30000)) RETURNING id",
    )
    .bind(RESOURCE)
    .bind(&recipients)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let jobs = worker::claim(&app.ctx, 64).await.unwrap();
    let sends: Vec<&ClaimedSend> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Send(s, _) => Some(s.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 64);
    assert!(sends.iter().all(|s| s.message_id == id));
    let first = sends[0].content.clone().expect("the claim read the content");
    assert_eq!(first.as_ref().as_ref().unwrap().body.len(), 30_000);
    assert!(
        sends.iter().all(|s| s.content.as_ref().is_some_and(|c| std::sync::Arc::ptr_eq(c, &first))),
        "64 deliveries, one copy of the message"
    );
    let held: usize = sends
        .iter()
        .map(|s| s.recipient.len() + s.recipient_key.len() + s.resource_id.len() + s.senders_reference.len())
        .sum();
    assert!(held < 30_000, "beside it, 64 claimed deliveries hold {held} bytes of text, less than one body");
}
