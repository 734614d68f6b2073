//! Scenario 10: a hostile producer. Producer A inserts 1,000 valid letters in small batches
//! while producer B, a second application with a login of its own, tries 100 harmful things
//! among them: a recipient written a second way, JSON nested to break the decoder, texts
//! beyond Altinn's limits, ids and times of its own choosing, a file on A's letter, A's
//! resource and reference, and rows that can only fail on their own. The workers run as the
//! worker role of deploy/roles.sql, with the allow list giving each producer its resource.
//! Every valid letter must be delivered within a second of its INSERT, every hostile row
//! refused at INSERT or failed alone naming its field, and neither producer may read the
//! other's rows.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::roles::{visible, Roles, WORKER};
use crate::common::{ORG, RESOURCE};
use crate::harness::{fake, report, unfinished, Cluster};

/// B's own resource: the allow list gives it to B alone, as RESOURCE to A alone.
const B_RESOURCE: &str = "outbox-other-agency-resource";
const VALID: usize = 1_000;
const HOSTILE: usize = 100;
const BATCH: usize = 20;

/// One harmful try of B's: what it sends, and how it must end.
struct Try {
    name: &'static str,
    sql: &'static str,
    /// A JSON document the statement reads as `$1`, with `{reference}` and `{a_message}` filled in.
    doc: Value,
    outcome: Expect,
}

enum Expect {
    /// Refused at INSERT: the SQLSTATE, and a word the error must contain (the column).
    Refused(&'static str, &'static str),
    /// Accepted, then failed on its own row with this code.
    Fails(&'static str),
}

/// B's INSERT of one letter from a JSON row (any column may be overridden).
const INSERT: &str = "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body,
        language, due_date_time, property_list)
    SELECT resource_id, senders_reference, recipients, title, body, coalesce(language, 'nb'), due_date_time,
           property_list
    FROM jsonb_to_record($1) AS x(resource_id text, senders_reference text, recipients text[], title text,
        body text, language text, due_date_time timestamptz, property_list jsonb)";

fn tries() -> Vec<Try> {
    let row = |patch: Value| {
        let mut row = json!({"resource_id": B_RESOURCE, "senders_reference": "{reference}", "recipients": [ORG],
                             "title": "Vedtak", "body": "Tekst"});
        for (k, v) in patch.as_object().unwrap() {
            row[k] = v.clone();
        }
        row
    };
    let nested = (0..200).fold(json!([]), |inner, _| json!([inner]));
    let t = |name, sql, doc, outcome| Try { name, sql, doc, outcome };
    vec![
        t("A's reference and recipient written with a tab", INSERT,
          row(json!({"resource_id": RESOURCE, "senders_reference": "a-{a_next}", "recipients": ["991825827\t"]})),
          Expect::Refused("23514", "recipients")),
        t("property list nested 200 deep", INSERT, row(json!({"property_list": nested})),
          Expect::Refused("23514", "property_list")),
        t("a 1 MB body", INSERT, row(json!({"body": "x".repeat(1 << 20)})), Expect::Refused("23514", "body")),
        t("a title over 255", INSERT, row(json!({"title": "ø".repeat(256)})), Expect::Refused("23514", "title")),
        t("A's resource and next reference", INSERT,
          row(json!({"resource_id": RESOURCE, "senders_reference": "a-{a_next}"})),
          Expect::Refused("42501", "resource")),
        t("an id of its own", "INSERT INTO altinn_outbox.message (id, resource_id, senders_reference, recipients, title, body)
              OVERRIDING SYSTEM VALUE SELECT 9000000 + (random() * 100000)::int, $1->>'resource_id', $1->>'senders_reference',
              ARRAY[$1->>'org'], 't', 'b'",
          json!({"resource_id": B_RESOURCE, "senders_reference": "{reference}", "org": ORG}), Expect::Refused("42501", "")),
        t("created in the future", "INSERT INTO altinn_outbox.message (created_at, resource_id, senders_reference, recipients, title, body)
              SELECT now() + interval '10 years', $1->>'resource_id', $1->>'senders_reference', ARRAY[$1->>'org'], 't', 'b'",
          json!({"resource_id": B_RESOURCE, "senders_reference": "{reference}", "org": ORG}), Expect::Refused("42501", "")),
        t("a file on A's letter", "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
              SELECT ($1->>'a_message')::bigint, 'virus.pdf', 'x', '\\x25504446'::bytea",
          json!({"a_message": "{a_message}"}), Expect::Refused("42501", "")),
        t("an organisation number failing mod 11", INSERT, row(json!({"recipients": ["991825828"]})),
          Expect::Fails("validation:recipients")),
        t("not a party at all", INSERT, row(json!({"recipients": ["someone@example.com"]})),
          Expect::Fails("validation:recipients")),
        t("an unknown language", INSERT, row(json!({"language": "sv"})), Expect::Fails("validation:language")),
        t("a due date in the past", INSERT, row(json!({"due_date_time": "2001-01-01T00:00:00Z"})),
          Expect::Fails("validation:due_date_time")),
    ]
}

/// Fills the placeholders in the top-level strings of a try's document (the rest is kept as
/// it is: JSON nested deeper than a parser takes cannot go through text).
fn fill(doc: &Value, reference: &str, a_next: usize, a_message: i64) -> Value {
    let mut doc = doc.clone();
    for value in doc.as_object_mut().unwrap().values_mut() {
        if let Value::String(text) = value {
            *text = text
                .replace("{reference}", reference)
                .replace("{a_next}", &a_next.to_string())
                .replace("{a_message}", &a_message.to_string());
        }
    }
    doc
}

/// A's batch: `BATCH` valid letters, references a-{first}…
async fn insert_valid(pool: &PgPool, first: usize) -> i64 {
    sqlx::query_scalar(
        "WITH made AS (
            INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
            SELECT $1, 'a-' || i, ARRAY[$2], 'Vedtak ' || i, 'Tekst ' || i FROM generate_series($3, $3 + $4 - 1) AS i
            RETURNING id)
         SELECT max(id) FROM made",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .bind(first as i32)
    .bind(BATCH as i32)
    .fetch_one(pool)
    .await
    .expect("A's letters are accepted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_10_hostile_producer() {
    let mut c = Cluster::start(fake(), |_| {}).await;
    let roles = Roles::apply_with(&c.app, &["agency_a", "agency_b"]).await;
    let (a, b) = (roles.producer("agency_a"), roles.producer("agency_b"));
    sqlx::query("INSERT INTO altinn_outbox.producer_resource (resource_id, role) VALUES ($1, $2), ($3, $4)")
        .bind(RESOURCE)
        .bind(&a)
        .bind(B_RESOURCE)
        .bind(&b)
        .execute(&c.app.pool)
        .await
        .unwrap();
    let (pool_a, pool_b) = (roles.pool_as(&a).await, roles.pool_as(&b).await);
    c.env.push(("ALTINN_OUTBOX_DATABASE__URL".into(), roles.url_as(&roles.login(WORKER))));
    c.spawn(2);

    let tries = tries();
    let (mut refused, mut accepted) = (0, Vec::new());
    let started = Instant::now();
    for batch in 0..VALID / BATCH {
        let a_message = insert_valid(&pool_a, batch * BATCH + 1).await;
        // B's tries, spread evenly among A's batches.
        for k in 0..HOSTILE * (batch + 1) / (VALID / BATCH) - HOSTILE * batch / (VALID / BATCH) {
            let n = HOSTILE * batch / (VALID / BATCH) + k;
            let attempt = &tries[n % tries.len()];
            let doc = fill(&attempt.doc, &format!("b-{n}"), (batch + 1) * BATCH + 1, a_message);
            let result = sqlx::query(attempt.sql).bind(&doc).execute(&pool_b).await;
            match (&attempt.outcome, result) {
                (Expect::Refused(code, word), Err(e)) => {
                    let db = e.as_database_error().unwrap_or_else(|| panic!("{}: {e}", attempt.name));
                    assert_eq!(db.code().as_deref(), Some(*code), "{}: {db}", attempt.name);
                    assert!(db.message().contains(word), "{}: names {word}: {db}", attempt.name);
                    refused += 1;
                }
                (Expect::Fails(code), Ok(_)) => accepted.push((format!("b-{n}"), *code, attempt.name)),
                (_, result) => panic!("{}: unexpected {result:?}", attempt.name),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = c.wait_until_finished(Duration::from_secs(120)).await;
    assert!(c.exited().is_empty(), "no worker exited");

    // Each producer reads its own rows only; the worker reads everything.
    let (seen_a, seen_b) = (visible(&pool_a).await, visible(&pool_b).await);
    assert_eq!(seen_a[0], VALID as i64, "A sees its own messages: {seen_a:?}");
    assert_eq!(seen_b[0], accepted.len() as i64, "B sees its own messages only: {seen_b:?}");
    assert_eq!((seen_a[1], seen_b[1]), (0, 0), "no file went anywhere");
    let b_sees_a: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.delivery_status WHERE resource_id = $1")
        .bind(RESOURCE)
        .fetch_one(&pool_b)
        .await
        .unwrap();
    assert_eq!(b_sees_a, 0);
    c.stop_all().await;
    assert_eq!(unfinished(&c.app.pool).await, 0);
    assert!(!c.logs().contains("panicked"));

    // Every valid letter delivered, none held up by B; every accepted try failed alone.
    let a_delivered = c
        .count(&format!(
            "SELECT count(*) FROM altinn_outbox.delivery WHERE resource_id = '{RESOURCE}' AND state = 'delivered'"
        ))
        .await;
    assert_eq!(a_delivered, VALID as i64);
    let slowest_ms = c
        .count(&format!(
            "SELECT (max(extract(epoch FROM h.at - m.created_at)) * 1000)::bigint
             FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
             JOIN altinn_outbox.message m ON m.id = d.message_id
             WHERE m.resource_id = '{RESOURCE}' AND h.kind = 'state' AND h.new_value = 'awaiting_status'"
        ))
        .await;
    assert!(slowest_ms <= 1_000, "every valid letter sent within a second of its INSERT: {slowest_ms} ms");
    for (reference, code, name) in &accepted {
        let (state, error, attempts): (String, String, i32) = sqlx::query_as(
            "SELECT d.state, coalesce(d.error_code, ''), d.attempts FROM altinn_outbox.delivery d
             JOIN altinn_outbox.message m ON m.id = d.message_id WHERE m.senders_reference = $1",
        )
        .bind(reference)
        .fetch_one(&c.app.pool)
        .await
        .unwrap();
        assert_eq!((state.as_str(), error.as_str(), attempts), ("failed", *code, 1), "{name}");
    }
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, VALID as i64, "only A's letters went out");
    assert_eq!(refused + accepted.len(), HOSTILE);
    report(
        "10 hostile producer",
        &t,
        &format!("{HOSTILE} hostile tries of {} kinds", tries.len()),
        &format!(
            "{refused} refused at INSERT, {} failed alone naming the field; every valid letter sent within \
             {:.2} s of its INSERT; nothing of A's visible to B; all finished {:.1} s after the last INSERT ({:.1} s from the first)",
            accepted.len(),
            slowest_ms as f64 / 1000.0,
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    );
}
