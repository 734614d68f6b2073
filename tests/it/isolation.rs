//! Producers isolated from each other, and a record the worker cannot destroy (migration
//! 20261204000011 and deploy/roles.sql), against the real PostgreSQL: two producer
//! applications (login roles A and B) and the worker, each with its own pool.

use std::time::Duration;

use crate::common::roles::{assert_denied, error_of, insert_with_file, value, visible, Roles, PRODUCER};
use crate::common::{TestApp, ORG, RESOURCE};
use altinn_outbox::outbox::admin;
use altinn_outbox::worker::{self, Context};
use sqlx::postgres::PgPool;

const SECOND_ORG: &str = "910753614";
const OTHER_RESOURCE: &str = "another-resource";

/// The worker's context and the pools of producers A and B. Fields drop in this order: the
/// roles while their database still exists (see `Roles`), the database last.
struct World {
    roles: Roles,
    ctx: Context,
    a: PgPool,
    b: PgPool,
    app: TestApp,
}

impl World {
    async fn start() -> World {
        let app = TestApp::start().await;
        let roles = Roles::apply_with(&app, &["b"]).await;
        let ctx = roles.worker_context(&app);
        let a = roles.pool(PRODUCER).await;
        let b = roles.pool_as(&roles.producer("b")).await;
        World { roles, ctx, a, b, app }
    }

    /// Sends everything due and reads every status until nothing is left to do.
    async fn deliver_all(&self) {
        for _ in 0..3 {
            worker::drain_until_empty(&self.ctx).await.expect("the worker drains");
            self.app.fake.state().complete_malware_scans_now();
            self.app.fake.state().publish_all_now();
            self.app.make_all_due().await;
        }
        worker::drain_until_empty(&self.ctx).await.expect("the worker drains");
    }

    async fn close(self) {
        for pool in [&self.a, &self.b, &self.ctx.pool] {
            pool.close().await;
        }
    }
}

/// A single-recipient letter on `resource`, as `pool`'s role.
async fn insert_on(pool: &PgPool, resource: &str, reference: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, $2, ARRAY[$3], 'Vedtak', 'Innvilget.') RETURNING id",
    )
    .bind(resource)
    .bind(reference)
    .bind(ORG)
    .fetch_one(pool)
    .await
}

/// A small file `name` for the message, as the role of `db` (a pool or an open transaction).
async fn add_file<'e>(db: impl sqlx::PgExecutor<'e>, message_id: i64, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
         VALUES ($1, $2, $2, '%PDF-1.7 bilag')",
    )
    .bind(message_id)
    .bind(name)
    .execute(db)
    .await
    .map(drop)
}

/// The SQLSTATE and text of a failed statement.
fn code_and_text(err: sqlx::Error) -> (String, String) {
    let code = err
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default();
    (code, err.to_string())
}

#[tokio::test]
async fn a_producer_sees_only_its_own_letters_files_deliveries_and_history() {
    let w = World::start().await;
    let theirs = insert_with_file(&w.a, "a-1", &[ORG, SECOND_ORG]).await;
    w.deliver_all().await;
    assert_eq!(w.app.count_in("delivered").await, 2, "{:?}", w.app.states().await);
    // Written by the owner (as rows from before the migration are attributed): no producer's.
    let owners = w.app.insert("owner-1", &[ORG]).await;

    let history: i64 = value(&w.app.pool, "SELECT count(*) FROM altinn_outbox.history", 0).await;
    assert!(history >= 6, "sent and delivered, per recipient: {history}");
    // Message, file, deliveries, history, the per-recipient and the per-message view.
    assert_eq!(visible(&w.a).await, [1, 1, 2, history, 2, 1]);
    assert_eq!(visible(&w.b).await, [0, 0, 0, 0, 0, 0], "B sees nothing of A's or the owner's");
    let by_id: Option<String> = sqlx::query_scalar("SELECT title FROM altinn_outbox.message WHERE id = $1")
        .bind(theirs)
        .fetch_optional(&w.b)
        .await
        .unwrap();
    assert_eq!(by_id, None, "not even by its id");

    let mine = insert_on(&w.b, RESOURCE, "b-1").await.expect("B inserts its own letter");
    let seen: Vec<i64> =
        sqlx::query_scalar("SELECT message_id FROM altinn_outbox.message_status").fetch_all(&w.b).await.unwrap();
    assert_eq!(seen, [mine]);
    let producer: String = value(&w.app.pool, "SELECT producer FROM altinn_outbox.message WHERE id = $1", mine).await;
    assert_eq!(producer, w.roles.producer("b"), "the database recorded the inserting login role");
    assert_eq!(visible(&w.a).await[0], 1, "A does not see B's");
    // The worker (and the admin commands, which run as it) sees every producer's.
    assert_eq!(visible(&w.ctx.pool).await[..3], [3, 1, 4]);
    assert_eq!(admin::summary(&w.ctx.pool).await.unwrap().messages, 3);
    assert!(admin::message(&w.ctx.pool, owners).await.unwrap().is_some());

    // B's copy of A's very letter is no retry of B's own: ON CONFLICT DO NOTHING does not
    // swallow it, and the reference A took first refuses it.
    let copy = sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, 'a-1', ARRAY[$2, $3], 'Vedtak', 'Se vedlagt.') ON CONFLICT DO NOTHING",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .bind(SECOND_ORG)
    .execute(&w.b)
    .await
    .expect_err("another producer's reference");
    let (code, text) = code_and_text(copy);
    assert_eq!(code, "23505", "{text}");
    assert!(text.contains("delivery_reference_unique"), "{text}");
    w.close().await;
}

#[tokio::test]
async fn a_file_joins_only_the_producers_own_message_while_it_is_unclaimed() {
    let w = World::start().await;
    let message = insert_on(&w.a, RESOURCE, "a-files").await.unwrap();

    let (code, text) = code_and_text(add_file(&w.b, message, "b.pdf").await.expect_err("B adds to A's message"));
    assert_eq!(code, "42501", "{text}");
    assert!(text.contains(&format!("message {message} is not a message of role")), "{text}");

    // Later than the message, but before any claim: accepted, and sent with the letter.
    add_file(&w.a, message, "later.pdf").await.expect("A adds a file to its unclaimed message");
    // A file inserted while a claim runs: the claim skips the locked delivery until the file's
    // transaction ends, and then sends the letter with both files.
    let mut tx = w.a.begin().await.unwrap();
    add_file(&mut *tx, message, "during-claim.pdf").await.expect("a second file");
    assert_eq!(worker::drain_until_empty(&w.ctx).await.unwrap(), 0, "the claim skipped the locked delivery");
    assert_eq!(w.app.initialize_requests(), 0);
    tx.commit().await.unwrap();
    w.deliver_all().await;
    assert_eq!(w.app.count_in("delivered").await, 1, "{:?}", w.app.states().await);
    assert_eq!(w.app.fake.state().multipart_uploads(), 1);
    let sent = w.app.fake.state().correspondences();
    assert_eq!(sent.iter().map(|c| c.attachment_ids.len()).collect::<Vec<_>>(), [2], "one letter, both files");
    let files: i64 = value(&w.a, "SELECT count(*) FROM altinn_outbox.attachment WHERE message_id = $1", message).await;
    assert_eq!(files, 2);

    // Once a delivery is claimed (or done), no file joins it.
    let (code, text) = code_and_text(add_file(&w.a, message, "too-late.pdf").await.expect_err("after the claim"));
    assert_eq!(code, "55000", "{text}");
    assert!(text.contains(&format!("message {message} has a delivery the worker has already taken up")), "{text}");
    let files: i64 =
        value(&w.app.pool, "SELECT count(*) FROM altinn_outbox.attachment WHERE message_id = $1", message).await;
    assert_eq!(files, 2, "the refused file was not stored");
    w.close().await;
}

#[tokio::test]
async fn producers_cannot_choose_ids_times_producers_or_states() {
    let w = World::start().await;
    let own = insert_on(&w.a, RESOURCE, "a-own").await.unwrap();
    let columns = "resource_id, senders_reference, recipients, title, body";
    let values = format!("'{RESOURCE}', 'forged', ARRAY['{ORG}'], 't', 'b'");
    for sql in [
        format!("INSERT INTO altinn_outbox.message (id, {columns}) OVERRIDING SYSTEM VALUE VALUES (424242, {values})"),
        format!("INSERT INTO altinn_outbox.message (created_at, {columns}) VALUES ('2999-01-01', {values})"),
        format!("INSERT INTO altinn_outbox.message (producer, {columns}) VALUES ('someone_else', {values})"),
        format!(
            "INSERT INTO altinn_outbox.attachment (id, message_id, file_name, senders_reference, content)
             OVERRIDING SYSTEM VALUE VALUES (424242, {own}, 'f.pdf', 'f', '\\x00')"
        ),
        format!(
            "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content, producer)
             VALUES ({own}, 'f.pdf', 'f', '\\x00', 'someone_else')"
        ),
        format!(
            "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content, altinn_attachment_id)
             VALUES ({own}, 'f.pdf', 'f', '\\x00', gen_random_uuid())"
        ),
        "UPDATE altinn_outbox.delivery SET state = 'cancelled'".to_string(),
        "UPDATE altinn_outbox.message SET created_at = now() + interval '100 years'".to_string(),
        "SELECT * FROM altinn_outbox.prune_messages(now(), 10)".to_string(),
        "SELECT count(*) FROM altinn_outbox.producer_resource".to_string(),
        "SELECT count(*) FROM altinn_outbox.delivery_reference".to_string(),
    ] {
        assert_denied(&w.a, &sql).await;
    }
    // insert_request still works, and gets the database's values too.
    let request: i64 = sqlx::query_scalar(
        "SELECT altinn_outbox.insert_request(jsonb_build_object('correspondence', jsonb_build_object(
             'resourceId', $1::text, 'sendersReference', 'a-request',
             'content', jsonb_build_object('messageTitle', 'Vedtak', 'messageBody', 'Innvilget.')),
           'recipients', jsonb_build_array($2::text)))",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .fetch_one(&w.a)
    .await
    .expect("insert_request");
    let (producer, recent): (String, bool) = sqlx::query_as(
        "SELECT producer, created_at > now() - interval '1 minute' FROM altinn_outbox.message WHERE id = $1",
    )
    .bind(request)
    .fetch_one(&w.app.pool)
    .await
    .unwrap();
    assert_eq!((producer, recent), (w.roles.login(PRODUCER), true));
    let messages: i64 = value(&w.app.pool, "SELECT count(*) FROM altinn_outbox.message WHERE id <> $1", request).await;
    assert_eq!(messages, 1, "nothing refused was inserted");
    w.close().await;
}

#[tokio::test]
async fn the_allow_list_refuses_unlisted_resources_and_allows_listed_ones() {
    let w = World::start().await;
    // Empty: every producer on every resource, as before.
    insert_on(&w.a, RESOURCE, "open-a").await.expect("no list: allowed");
    insert_on(&w.b, OTHER_RESOURCE, "open-b").await.expect("no list: allowed");

    // RESOURCE for A's login role alone; OTHER_RESOURCE for every member of the producer group.
    sqlx::query("INSERT INTO altinn_outbox.producer_resource (resource_id, role) VALUES ($1, $2), ($3, $4)")
        .bind(RESOURCE)
        .bind(w.roles.login(PRODUCER))
        .bind(OTHER_RESOURCE)
        .bind(w.roles.group(PRODUCER))
        .execute(&w.app.pool)
        .await
        .unwrap();
    insert_on(&w.a, RESOURCE, "listed-a").await.expect("A is listed for the resource");
    insert_on(&w.b, OTHER_RESOURCE, "listed-b").await.expect("B is a member of the listed group");
    let refused = insert_on(&w.b, RESOURCE, "unlisted-b").await.expect_err("B is not listed for it");
    let (code, text) = code_and_text(refused);
    assert_eq!(code, "42501", "{text}");
    assert!(
        text.contains(&format!("resource '{RESOURCE}' is not allowed for role {}", w.roles.producer("b"))),
        "{text}"
    );
    let (code, text) = code_and_text(insert_on(&w.a, "unlisted-resource", "nowhere").await.unwrap_err());
    assert_eq!(code, "42501", "a resource without a row is refused to all: {text}");
    assert!(text.contains("resource 'unlisted-resource' is not allowed"), "{text}");
    let (code, text) = error_of(
        &w.b,
        &format!(
            "SELECT altinn_outbox.insert_request('{{\"correspondence\": {{\"resourceId\": \"{RESOURCE}\",
               \"sendersReference\": \"by-request\", \"content\": {{\"messageTitle\": \"t\", \"messageBody\": \"b\"}}}},
               \"recipients\": [\"{ORG}\"]}}')"
        ),
    )
    .await;
    assert_eq!(code, "42501", "insert_request is checked the same way: {text}");
    let references: Vec<String> = sqlx::query_scalar("SELECT senders_reference FROM altinn_outbox.message ORDER BY id")
        .fetch_all(&w.app.pool)
        .await
        .unwrap();
    assert_eq!(references, ["open-a", "open-b", "listed-a", "listed-b"], "nothing refused was inserted");

    sqlx::query("DELETE FROM altinn_outbox.producer_resource").execute(&w.app.pool).await.unwrap();
    insert_on(&w.b, RESOURCE, "open-again").await.expect("the list emptied: allowed again");
    w.close().await;
}

#[tokio::test]
async fn the_worker_cannot_delete_a_message_and_prunes_only_by_the_rule() {
    let w = World::start().await;
    let finished = insert_on(&w.a, RESOURCE, "finished").await.unwrap();
    w.deliver_all().await;
    let pending = insert_on(&w.a, RESOURCE, "pending").await.unwrap();
    for sql in [
        format!("DELETE FROM altinn_outbox.message WHERE id = {pending}"),
        format!("DELETE FROM altinn_outbox.delivery WHERE message_id = {pending}"),
        "TRUNCATE altinn_outbox.message CASCADE".to_string(),
    ] {
        assert_denied(&w.ctx.pool, &sql).await;
    }
    // Even with a cutoff far in the future, an unsent message is no candidate.
    let (messages, deliveries): (i64, i64) = sqlx::query_as(
        "SELECT messages, deliveries FROM altinn_outbox.prune_messages(now() + interval '100 years', 100)",
    )
    .fetch_one(&w.ctx.pool)
    .await
    .expect("the worker may call the prune function");
    assert_eq!((messages, deliveries), (1, 1));
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM altinn_outbox.message ORDER BY id").fetch_all(&w.app.pool).await.unwrap();
    assert_eq!(left, [pending], "the finished message went, the pending one stayed (not {finished})");
    let (code, text) = error_of(&w.ctx.pool, "SELECT * FROM altinn_outbox.prune_messages(now(), 0)").await;
    assert_eq!(code, "22023", "{text}");

    // The library's prune, as the worker: nothing old enough yet, then the message once finished.
    assert_eq!(admin::prune(&w.ctx.pool, Duration::from_secs(3600)).await.unwrap().messages, 0);
    w.deliver_all().await;
    let report = admin::prune(&w.ctx.pool, Duration::ZERO).await.expect("prune as the worker");
    assert_eq!((report.messages, report.deliveries), (1, 1), "{report:?}");
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.history").fetch_one(&w.app.pool).await.unwrap();
    assert_eq!(history, 0, "the history went with the messages");
    w.close().await;
}

#[tokio::test]
async fn the_ids_that_tie_a_row_to_altinn_cannot_be_changed_once_set() {
    let w = World::start().await;
    let sent = insert_on(&w.a, RESOURCE, "sent").await.unwrap();
    let shared = insert_with_file(&w.a, "shared", &[ORG, SECOND_ORG]).await;
    w.deliver_all().await;
    let waiting = insert_on(&w.a, RESOURCE, "waiting").await.unwrap();
    let refused = [
        format!("UPDATE altinn_outbox.delivery SET idempotency_key = gen_random_uuid() WHERE message_id = {sent}"),
        format!("UPDATE altinn_outbox.delivery SET idempotency_key = NULL WHERE message_id = {sent}"),
        format!("UPDATE altinn_outbox.delivery SET correspondence_id = gen_random_uuid() WHERE message_id = {sent}"),
        format!("UPDATE altinn_outbox.delivery SET correspondence_id = NULL WHERE message_id = {sent}"),
        format!(
            "UPDATE altinn_outbox.attachment SET altinn_attachment_id = gen_random_uuid() WHERE message_id = {shared}"
        ),
        // A published file's id is what the sent correspondences refer to: never cleared.
        format!(
            "UPDATE altinn_outbox.attachment SET altinn_attachment_id = NULL, upload_state = 'pending'
             WHERE message_id = {shared}"
        ),
    ];
    for sql in &refused {
        let (code, text) = error_of(&w.ctx.pool, sql).await;
        assert_eq!(code, "23514", "{sql}: {text}");
        assert!(text.contains("cannot be changed"), "{text}");
    }
    let (key, id): (Option<uuid::Uuid>, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT idempotency_key, correspondence_id FROM altinn_outbox.delivery WHERE message_id = $1")
            .bind(sent)
            .fetch_one(&w.app.pool)
            .await
            .unwrap();
    assert!(key.is_some() && id.is_some(), "both still as the worker wrote them");

    // Setting them from NULL is how the worker records them.
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET idempotency_key = gen_random_uuid(), correspondence_id = gen_random_uuid()
         WHERE message_id = $1",
    )
    .bind(waiting)
    .execute(&w.ctx.pool)
    .await
    .expect("set from NULL");
    // A file whose one-shot attachment was spent mid-upload starts over without its id, then
    // gets a new one; the daemon's own sweep does the same for an upload whose worker died.
    let file: i64 = value(&w.app.pool, "SELECT id FROM altinn_outbox.attachment WHERE message_id = $1", shared).await;
    sqlx::query("UPDATE altinn_outbox.attachment SET upload_state = 'uploading' WHERE id = $1")
        .bind(file)
        .execute(&w.app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE altinn_outbox.attachment SET upload_state = 'pending', altinn_attachment_id = NULL WHERE id = $1",
    )
    .bind(file)
    .execute(&w.ctx.pool)
    .await
    .expect("cleared when starting over");
    sqlx::query("UPDATE altinn_outbox.attachment SET altinn_attachment_id = gen_random_uuid() WHERE id = $1")
        .bind(file)
        .execute(&w.ctx.pool)
        .await
        .expect("a new id set from NULL");
    w.close().await;
}
