//! Scenario 7: poison and garbage. Half the rows are invalid in every way their columns
//! allow once the database has let them in; each must end failed with its error naming the
//! field, while the valid half is delivered as if the garbage were not there. The ways the
//! database refuses at INSERT (oversized texts, JSON of the wrong shape, a recipient with
//! white space) are tried too: each must be refused naming its column.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{ORG, RESOURCE};
use crate::harness::{fake, long, report, unfinished, Cluster};

/// One way to be invalid: what to change in a valid row, and the field the error must name.
struct Variant {
    name: &'static str,
    patch: Value,
    /// A file to attach in the same transaction (file name, content).
    file: Option<(&'static str, &'static [u8])>,
    field: &'static str,
    /// Refused at INSERT (naming `field`) rather than failed on the row.
    refused: bool,
}

fn variants() -> Vec<Variant> {
    let v = |name, patch, field| Variant { name, patch, file: None, field, refused: false };
    let r = |name, patch, field| Variant { name, patch, file: None, field, refused: true };
    let long_text = |n: usize| "ø".repeat(n);
    vec![
        v("bad organisation number", json!({"recipients": ["991825828"]}), "recipients"),
        r("recipient with a tab", json!({"recipients": ["991825827\t"]}), "recipients"),
        r("properties nested 200 deep", json!({"property_list": nested(200)}), "property_list"),
        v("bad national identity number", json!({"recipients": ["01010112345"]}), "recipients"),
        v("not a party at all", json!({"recipients": ["someone@example.com"]}), "recipients"),
        r("empty recipient", json!({"recipients": [""]}), "recipients"),
        v("empty resource", json!({"resource_id": ""}), "resource_id"),
        v("resource with spaces", json!({"resource_id": "my resource"}), "resource_id"),
        v("empty title", json!({"title": ""}), "title"),
        v("blank title", json!({"title": "  \n "}), "title"),
        r("oversized title", json!({"title": long_text(256)}), "title"),
        r("oversized summary", json!({"summary": long_text(256)}), "summary"),
        v("empty body", json!({"body": ""}), "body"),
        r("oversized body", json!({"body": long_text(30_001)}), "body"),
        r("oversized message sender", json!({"message_sender": long_text(257)}), "message_sender"),
        v("unknown language", json!({"language": "sv"}), "language"),
        v("due date in the past", json!({"due_date_time": "2001-01-01T00:00:00Z"}), "due_date_time"),
        v(
            "due before publish",
            json!({"requested_publish_time": "2099-02-01T00:00:00Z", "due_date_time": "2099-01-01T00:00:00Z"}),
            "due_date_time",
        ),
        v("confirmation without due date", json!({"is_confirmation_needed": true}), "due_date_time"),
        r("references not an array", json!({"external_references": {"a": 1}}), "external_references"),
        v(
            "unknown reference type",
            json!({"external_references": [{"referenceValue": "1", "referenceType": "Nope"}]}),
            "external_references",
        ),
        r("properties not strings", json!({"property_list": {"case": 17}}), "property_list"),
        r("properties an array", json!({"property_list": ["a"]}), "property_list"),
        v("reply option not https", json!({"reply_options": [{"linkURL": "http://example.com"}]}), "reply_options"),
        r("notification a string", json!({"notification": "e-mail please"}), "notification"),
        v("unknown notification template", json!({"notification": {"notificationTemplate": "Nope"}}), "notification"),
        v(
            "unknown notification channel",
            json!({"notification": {"notificationTemplate": "GenericAltinnMessage", "notificationChannel": "Pigeon"}}),
            "notification",
        ),
        v(
            "missing existing attachment",
            json!({"existing_attachments": ["6b2f7f0e-0000-4000-8000-000000000404"]}),
            "attachment",
        ),
        Variant {
            name: "forbidden file type",
            patch: json!({}),
            file: Some(("payload.exe", b"MZ")),
            field: "attachment",
            refused: false,
        },
        Variant {
            name: "empty file",
            patch: json!({}),
            file: Some(("empty.pdf", b"")),
            field: "attachment",
            refused: false,
        },
    ]
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!([]), |inner, _| json!([inner]))
}

fn valid_row(reference: String) -> Value {
    json!({"resource_id": RESOURCE, "senders_reference": reference, "recipients": [ORG],
           "title": "Vedtak", "body": "# Vedtak\nTekst", "language": "nb"})
}

/// Inserts `n` rows, even ones valid and odd ones invalid (cycling through the variants the
/// database lets in), with their files, in one transaction.
async fn insert_garbage(c: &Cluster, n: usize) {
    let variants: Vec<Variant> = variants().into_iter().filter(|v| !v.refused).collect();
    let mut rows = Vec::with_capacity(n);
    let mut files = Vec::new();
    for i in 0..n {
        let mut row = valid_row(format!("garbage-{i}"));
        if i % 2 == 1 {
            let variant = &variants[(i / 2) % variants.len()];
            for (k, v) in variant.patch.as_object().unwrap() {
                row[k] = v.clone();
            }
            if let Some((name, content)) = variant.file {
                files.push((format!("garbage-{i}"), name, content.to_vec()));
            }
        }
        rows.push(row);
    }
    let mut tx = c.app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, summary, body, language,
             message_sender, requested_publish_time, due_date_time, external_references, property_list,
             reply_options, notification, is_confirmation_needed, existing_attachments)
         SELECT resource_id, senders_reference, recipients, title, summary, body, language, message_sender,
                requested_publish_time, due_date_time, external_references, property_list, reply_options,
                notification, coalesce(is_confirmation_needed, false), coalesce(existing_attachments, '{}')
         FROM jsonb_to_recordset($1) AS x(resource_id text, senders_reference text, recipients text[], title text,
             summary text, body text, language text, message_sender text, requested_publish_time timestamptz,
             due_date_time timestamptz, external_references jsonb, property_list jsonb, reply_options jsonb,
             notification jsonb, is_confirmation_needed boolean, existing_attachments uuid[])",
    )
    .bind(Value::Array(rows))
    .execute(&mut *tx)
    .await
    .expect("every generated row fits its columns");
    insert_files(&mut tx, files).await;
    tx.commit().await.unwrap();
}

const INSERT_ONE: &str =
    "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, summary, body,
        language, message_sender, external_references, property_list, notification)
    SELECT resource_id, senders_reference, recipients, title, summary, body, language, message_sender,
           external_references, property_list, notification
    FROM jsonb_to_record($1) AS x(resource_id text, senders_reference text, recipients text[], title text,
        summary text, body text, language text, message_sender text, external_references jsonb,
        property_list jsonb, notification jsonb)";

/// Tries each variant the database refuses `times` times, each as an INSERT of its own; every
/// one must be refused naming its column. Returns how many were tried.
async fn insert_refused(c: &Cluster, times: usize) -> usize {
    let mut tried = 0;
    for variant in variants().iter().filter(|v| v.refused) {
        for i in 0..times {
            let mut row = valid_row(format!("refused-{tried}-{i}"));
            for (k, v) in variant.patch.as_object().unwrap() {
                row[k] = v.clone();
            }
            let e = sqlx::query(INSERT_ONE).bind(&row).execute(&c.app.pool).await.expect_err(variant.name);
            let message = e.as_database_error().map(|d| d.message().to_string()).unwrap_or_default();
            let named = format!("altinn_outbox.message.{}: ", variant.field);
            assert!(message.starts_with(&named), "{}: refused naming {}: {message}", variant.name, variant.field);
            tried += 1;
        }
    }
    tried
}

async fn insert_files(tx: &mut sqlx::PgConnection, files: Vec<(String, &'static str, Vec<u8>)>) {
    for (reference, name, content) in files {
        sqlx::query(
            "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
             SELECT id, $2, 'file', $3 FROM altinn_outbox.message WHERE senders_reference = $1",
        )
        .bind(reference)
        .bind(name)
        .bind(content)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_7_poison_and_garbage() {
    let n = if long() { 50_000 } else { 10_000 };
    let mut c = Cluster::start(fake(), |_| {}).await;
    let refused = insert_refused(&c, 10).await;
    insert_garbage(&c, n).await;
    let started = Instant::now();
    c.spawn(2);
    let took = c.wait_until_finished(Duration::from_secs(if long() { 900 } else { 300 })).await;
    assert!(c.exited().is_empty(), "no worker exited");
    c.stop_all().await;
    assert_eq!(unfinished(&c.app.pool).await, 0);
    let logs = c.logs();
    assert!(!logs.contains("panicked"), "no panic in any worker");
    // Every worker started once: the daemon never restarted.
    assert_eq!(logs.matches("worker started").count(), 2);

    let refused_kinds = variants().iter().filter(|v| v.refused).count();
    let variants: Vec<Variant> = variants().into_iter().filter(|v| !v.refused).collect();
    let outcomes: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT m.senders_reference, d.state, coalesce(d.error_code, '') || ' ' || coalesce(d.error_message, ''),
                d.attempts
         FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id",
    )
    .fetch_all(&c.app.pool)
    .await
    .unwrap();
    let mut codes = vec![String::new(); variants.len()];
    for (reference, state, error, attempts) in &outcomes {
        let i: usize = reference.strip_prefix("garbage-").and_then(|i| i.parse().ok()).expect("generated reference");
        if i.is_multiple_of(2) {
            assert_eq!(state, "delivered", "valid row {i}: {error}");
            continue;
        }
        let (k, variant) = ((i / 2) % variants.len(), &variants[(i / 2) % variants.len()]);
        assert_eq!(state, "failed", "{}: failed, not {state}: {error}", variant.name);
        assert!(error.contains(variant.field), "{}: the error names {}: {error}", variant.name, variant.field);
        assert_eq!(*attempts, 1, "{}: failed at once, no retries: {error}", variant.name);
        codes[k] = error.split(' ').next().unwrap_or_default().to_string();
    }
    let summary: Vec<String> = variants.iter().zip(&codes).map(|(v, code)| format!("{} → {code}", v.name)).collect();
    let t = c.tally().await;
    t.assert_exactly_once();
    let valid = (n as i64 + 1) / 2;
    assert_eq!(t.delivered, valid, "every valid row delivered");
    assert_eq!(t.failed, t.deliveries - valid, "every invalid row failed");
    // The garbage cost no requests (but for the one Altinn alone can judge: a missing
    // attachment): the valid rows had the workers to themselves.
    let requests = c.app.initialize_requests() as i64;
    let altinn_judged = (n as i64 / 2) / variants.len() as i64 + 1;
    assert!(requests <= valid + altinn_judged, "{requests} initialize requests for {valid} valid rows");
    let slowest_valid = c
        .count(
            "SELECT (max(extract(epoch FROM h.at - m.created_at)) * 1000)::bigint
             FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
             JOIN altinn_outbox.message m ON m.id = d.message_id
             WHERE h.kind = 'state' AND h.new_value = 'awaiting_status'",
        )
        .await;
    println!("garbage variants and their codes:\n  {}", summary.join("\n  "));
    report(
        "7 poison and garbage",
        &t,
        &format!(
            "{} invalid rows of {} kinds; {refused} refused at INSERT ({refused_kinds} kinds)",
            n / 2,
            variants.len()
        ),
        &format!(
            "all failed at the first attempt naming the field; valid rows all sent within {:.1} s of insert; \
             done in {:.1} s ({:.1} s from start)",
            slowest_valid as f64 / 1000.0,
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    );
}
