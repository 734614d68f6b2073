//! Messages with files, against the fake's multipart endpoint.

use crate::common::{TestApp, ORG};
use altinn_fake::{Endpoint, FaultKind, FaultRule};
use altinn_outbox::outbox::{DeliveryState, UploadState};
use sqlx::Row;

const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!H+H*";

async fn add_file(app: &TestApp, message_id: i64, name: &str, content: &[u8]) {
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, display_name, senders_reference, content)
         VALUES ($1, $2, 'Vedlegg', $2 || '-ref', $3)",
    )
    .bind(message_id)
    .bind(name)
    .bind(content)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_letter_with_two_pdfs_goes_in_one_multipart_request() {
    let app = TestApp::start().await;
    let id = app.insert("with-files", &[ORG]).await;
    let first = b"%PDF-1.7 first".repeat(1000);
    let second = b"%PDF-1.7 second".repeat(50);
    add_file(&app, id, "vedtak.pdf", &first).await;
    add_file(&app, id, "vilkår.pdf", &second).await;
    app.drain().await;

    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.requests_to("POST", "/correspondence/api/v1/correspondence/upload"), 1, "one request");
    assert_eq!(app.initialize_requests(), 0, "not the JSON endpoint");
    let files = app.fake.state().attachments();
    assert_eq!(files.len(), 2);
    let by_name = |n: &str| files.iter().find(|f| f.file_name == n).unwrap().clone();
    assert_eq!(by_name("vedtak.pdf").size as usize, first.len());
    assert_eq!(by_name("vilkår.pdf").size as usize, second.len());
    // The fake checks the checksum we sent against what arrived (2008 otherwise).
    assert_eq!(by_name("vedtak.pdf").md5, Some(altinn_fake::md5_hex(&first)));
    let cid: uuid::Uuid = d.get("correspondence_id");
    assert!(by_name("vedtak.pdf").correspondence_ids.contains(&cid));

    app.fake.state().publish_all_now();
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "delivered");
}

#[tokio::test]
async fn property_keys_with_dots_survive_the_multipart_form() {
    // ASP.NET's form binder ends a dotted dictionary key at its first dot: sent as
    // `Correspondence.PropertyList.case.no`, the key `case.no` would reach Altinn as `case`
    // without a value (a 500 there). The bracket form carries it whole.
    let app = TestApp::start().await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body, property_list)
         VALUES ($1, 'dotted-keys', ARRAY[$2], 'Vedtak', 'Tekst', $3) RETURNING id",
    )
    .bind(crate::common::RESOURCE)
    .bind(ORG)
    .bind(serde_json::json!({"case.no": "2026/42", "archive.ref.no": "A-1", "plain": "p"}))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7").await;
    app.drain().await;

    let d = app.delivery_of(id).await;
    let error: Option<String> = d.get("error_message");
    assert_eq!(d.get::<String, _>("state"), "awaiting_status", "{error:?}");
    assert_eq!(app.requests_to("POST", "/correspondence/api/v1/correspondence/upload"), 1);
    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].request["correspondence"]["propertylist"],
        serde_json::json!({"case.no": "2026/42", "archive.ref.no": "A-1", "plain": "p"}),
        "every key arrives whole, with its value"
    );
}

#[tokio::test]
async fn a_lost_multipart_response_leads_to_one_correspondence() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Upload, FaultKind::CommitThenDrop, 1));
    let id = app.insert("lost-upload", &[ORG]).await;
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7").await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "pending");
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.fake.state().correspondences().len(), 1);
    assert_eq!(app.fake.state().attachments().len(), 1, "the file was uploaded once: 409 uploads nothing");
    assert_eq!(app.requests_to("POST", "/correspondence/api/v1/correspondence/upload"), 2);
    assert_eq!(app.fake.state().lookups(), 1);
}

#[tokio::test]
async fn an_infected_file_fails_the_row_with_the_reason() {
    let app = TestApp::start().await;
    let id = app.insert("infected", &[ORG]).await;
    add_file(&app, id, "virus.txt", EICAR.as_bytes()).await;
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<String, _>("error_code"), "altinn:Failed");
    assert!(
        d.get::<String, _>("error_message").to_lowercase().contains("malware"),
        "{}",
        d.get::<String, _>("error_message")
    );
    assert_eq!(app.requests_to("POST", "/correspondence/api/v1/correspondence/upload"), 1);
}

/// `n` valid organisation numbers (mod 11), for messages to many recipients.
fn organisations(n: usize) -> Vec<String> {
    (100_000_000u32..)
        .map(|i| i.to_string())
        .filter(|s| altinn_outbox::identifiers::is_valid_org_number(s))
        .take(n)
        .collect()
}

async fn insert_to(app: &TestApp, reference: &str, recipients: &[String]) -> i64 {
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    app.insert(reference, &refs).await
}

/// Runs the worker until nothing more is due, making waits due in between.
async fn run_to_rest(app: &TestApp) {
    for _ in 0..4 {
        app.drain().await;
        app.make_all_due().await;
    }
}

#[tokio::test]
async fn one_upload_serves_fifty_recipients_each_with_its_own_key() {
    let app = TestApp::start().await;
    let recipients = organisations(50);
    let id = insert_to(&app, "decision-50", &recipients).await;
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7 one decision for all").await;
    assert_eq!(app.count_in("waiting_files").await, 50, "nobody is sent before the file is ready");
    run_to_rest(&app).await;

    assert_eq!(app.fake.state().attachment_inits(), 1);
    assert_eq!(app.fake.state().attachment_uploads(), 1);
    assert_eq!(app.fake.state().multipart_uploads(), 0);
    let attachment = app.fake.state().attachments()[0].clone();
    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 50);
    assert!(sent.iter().all(|c| c.attachment_ids == vec![attachment.id]), "every one refers to the one upload");
    let keys: std::collections::HashSet<_> = sent.iter().map(|c| c.idempotent_key).collect();
    assert_eq!(keys.len(), 50);
    assert_eq!(app.initialize_requests(), 50);
    assert_eq!(app.count_in("awaiting_status").await + app.count_in("delivered").await, 50);
    let stored: Option<uuid::Uuid> = sqlx::query_scalar("SELECT altinn_attachment_id FROM altinn_outbox.attachment")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, Some(attachment.id));
}

#[tokio::test]
async fn a_crash_between_attachment_create_and_upload_uploads_into_the_same_attachment() {
    let app = TestApp::start().await;
    let id = insert_to(&app, "crash-after-create", &organisations(2)).await;
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7").await;
    // A worker creates the attachment at Altinn, stores its id, and dies before uploading.
    let claimed =
        altinn_outbox::outbox::uploads::claim_uploads(&app.pool, 1, "doomed", std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
    let request = altinn_outbox::altinn::wire::InitializeAttachment {
        resource_id: claimed.resource_id.clone(),
        file_name: claimed.file_name.clone(),
        display_name: None,
        senders_reference: claimed.senders_reference.clone(),
        is_encrypted: false,
        checksum: claimed.md5.clone(),
    };
    let altinn_id = app.ctx.altinn.create_attachment(&request).await.unwrap();
    let step = altinn_outbox::outbox::uploads::Step {
        state: UploadState::Initialized,
        altinn_id: Some(Some(altinn_id)),
        next_attempt_at: chrono::Utc::now() + chrono::Duration::seconds(60),
        count_attempt: false,
        error: None,
    };
    assert!(altinn_outbox::outbox::uploads::write_step(&app.pool, claimed.id, claimed.lease_no, &step).await.unwrap());
    // Its lease runs out; another worker carries on.
    run_to_rest(&app).await;
    assert_eq!(app.fake.state().attachment_inits(), 1, "no second attachment");
    assert_eq!(app.fake.state().attachment_uploads(), 1);
    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 2, "one correspondence per recipient");
    assert!(sent.iter().all(|c| c.attachment_ids == vec![altinn_id]));
}

#[tokio::test]
async fn a_crash_during_upload_starts_over_with_a_new_attachment() {
    let app = TestApp::start().await;
    // The upload reaches Altinn but the answer is lost, as when the worker dies mid-upload.
    app.fake.faults().add(FaultRule::times(Endpoint::AttachmentUpload, FaultKind::CommitThenDrop, 1));
    let id = insert_to(&app, "crash-in-upload", &organisations(3)).await;
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7").await;
    run_to_rest(&app).await;
    let attachments = app.fake.state().attachments();
    assert_eq!(attachments.len(), 2, "the spent one-shot attachment is replaced");
    assert!(attachments.iter().all(|a| a.upload_attempts == 1), "never a second upload into one attachment");
    let used = attachments[1].id;
    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|c| c.attachment_ids == vec![used]));
}

#[tokio::test]
async fn an_infected_shared_file_fails_every_waiting_delivery_with_the_reason() {
    let app = TestApp::start().await;
    let id = insert_to(&app, "infected-shared", &organisations(3)).await;
    add_file(&app, id, "brev.txt", EICAR.as_bytes()).await;
    run_to_rest(&app).await;
    assert_eq!(app.count_in("failed").await, 3);
    let d = app.delivery_of_any(id).await;
    assert_eq!(d.get::<String, _>("error_code"), "altinn:attachment_Failed");
    let message = d.get::<String, _>("error_message");
    assert!(message.contains("\"brev.txt\"") && message.to_lowercase().contains("malware"), "{message}");
    assert_eq!(app.initialize_requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn an_upload_whose_worker_died_is_started_over_by_the_sweep() {
    use altinn_outbox::outbox::uploads;
    let app = TestApp::start().await;
    let id = insert_to(&app, "died-uploading", &organisations(2)).await;
    add_file(&app, id, "vedtak.pdf", b"%PDF-1.7").await;
    let claimed =
        uploads::claim_uploads(&app.pool, 1, "doomed", std::time::Duration::from_secs(60)).await.unwrap().remove(0);
    let step = uploads::Step {
        state: UploadState::Initialized,
        altinn_id: Some(Some(uuid::Uuid::from_u128(42))),
        next_attempt_at: chrono::Utc::now(),
        count_attempt: false,
        error: None,
    };
    assert!(uploads::write_step(&app.pool, claimed.id, claimed.lease_no, &step).await.unwrap());
    // The upload starts, and its worker dies: the lease (zero here) runs out.
    assert!(uploads::start_upload(&app.pool, claimed.id, claimed.lease_no, std::time::Duration::ZERO).await.unwrap());
    assert_eq!(uploads::reclaim_dead_uploads(&app.pool).await.unwrap(), 1);
    let (state, altinn_id): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT upload_state, altinn_attachment_id FROM altinn_outbox.attachment")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), altinn_id), ("pending", None), "the possibly spent attachment is forgotten");
    run_to_rest(&app).await;
    assert_eq!(app.fake.state().attachment_inits(), 1);
    assert_eq!(app.fake.state().correspondences().len(), 2);
}

#[tokio::test]
async fn a_60_mb_file_is_sent_with_peak_memory_well_below_three_times_its_size() {
    const SIZE: usize = 60_000_000;
    let app = TestApp::start().await;
    let id = app.insert("big-file", &[ORG]).await;
    // Generated in the database, so the test process never holds it either.
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
         SELECT $1, 'scan.pdf', 'big', convert_to(repeat('%PDF-1.7 0123456789abcdef', $2 / 25), 'UTF8')",
    )
    .bind(id)
    .bind(SIZE as i32)
    .execute(&app.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_file(dir.path());
    let child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_altinn-outbox"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let start = std::time::Instant::now();
    while app.delivery_of(id).await.get::<String, _>("state") != "awaiting_status" {
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "not sent in time");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: usize =
        status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    drop(child);
    let peak = peak_kib * 1024;
    println!("peak resident memory {} MB for a {} MB file", peak / 1_000_000, SIZE / 1_000_000);
    assert_eq!(app.fake.state().attachments()[0].size as usize, SIZE / 25 * 25);
    assert!(peak < 3 * SIZE, "peak {peak} bytes is not well below three times {SIZE}");
}

/// A worker process that never outlives its test, even a failing one.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The limit on a scan's wait in the tests below: tiny, and passed by moving the upload's
/// time back rather than by sleeping.
const SCAN_WAIT_MS: u64 = 300;

/// One message to three recipients whose file's scan never ends, and one to two recipients
/// whose file scans as usual, both uploaded and read once.
async fn a_stuck_scan_beside_a_normal_one() -> (TestApp, i64, i64) {
    let app = TestApp::with(crate::common::fake_config(), |c| c.status.max_scan_wait_ms = SCAN_WAIT_MS).await;
    app.fake.state().set_malware_scan_ms_for("stuck.pdf", Some(u64::MAX));
    let recipients = organisations(5);
    let stuck = insert_to(&app, "scan-never-ends", &recipients[..3]).await;
    add_file(&app, stuck, "stuck.pdf", b"%PDF-1.7 stuck").await;
    let normal = insert_to(&app, "scan-ends", &recipients[3..]).await;
    add_file(&app, normal, "fine.pdf", b"%PDF-1.7 fine").await;
    app.drain().await;
    let (state, next, deadline): (String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT upload_state, next_attempt_at, uploaded_at + $2 * interval '1 millisecond'
             FROM altinn_outbox.attachment WHERE message_id = $1",
        )
        .bind(stuck)
        .bind(SCAN_WAIT_MS as f64)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "processing");
    assert!(next <= deadline, "the next read ({next}) comes no later than the end of the wait ({deadline})");
    (app, stuck, normal)
}

/// Time passes by the whole wait for every file uploaded so far.
async fn let_the_scan_wait_pass(app: &TestApp) {
    sqlx::query(
        "UPDATE altinn_outbox.attachment SET uploaded_at = uploaded_at - $1 * interval '1 millisecond'
         WHERE uploaded_at IS NOT NULL",
    )
    .bind(SCAN_WAIT_MS as f64)
    .execute(&app.pool)
    .await
    .unwrap();
    app.make_all_due().await;
}

async fn upload_of(app: &TestApp, message_id: i64) -> sqlx::postgres::PgRow {
    sqlx::query("SELECT * FROM altinn_outbox.attachment WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn states_of(app: &TestApp, message_id: i64) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT state, error_code FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id")
        .bind(message_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_scan_that_never_ends_fails_its_message_after_the_wait_and_no_other() {
    let (app, stuck, normal) = a_stuck_scan_beside_a_normal_one().await;
    let stuck_id: uuid::Uuid = upload_of(&app, stuck).await.get("altinn_attachment_id");
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.fake.state().attachments().iter().find(|a| a.id == stuck_id).unwrap().status, "UploadProcessing");

    let_the_scan_wait_pass(&app).await;
    run_to_rest(&app).await;
    let file = upload_of(&app, stuck).await;
    assert_eq!(file.get::<String, _>("upload_state"), "failed");
    assert_eq!(file.get::<String, _>("error_code"), "scan_timeout");
    let text = file.get::<String, _>("error_message");
    assert!(
        text.contains("still running") && text.contains("0.3 s") && text.contains("Altinn may still finish it"),
        "{text}"
    );
    let failed = vec![("failed".to_string(), Some("scan_timeout".to_string())); 3];
    assert_eq!(states_of(&app, stuck).await, failed, "every delivery of the message, with the file's code");
    let message = app.delivery_of_any(stuck).await.get::<String, _>("error_message");
    assert!(message.starts_with("attachment \"stuck.pdf\": Altinn's malware scan was still running"), "{message}");

    let sent = app.fake.state().correspondences();
    assert_eq!(sent.len(), 2, "only the other message's letters were sent");
    assert!(sent.iter().all(|c| !c.attachment_ids.contains(&stuck_id)), "no correspondence refers to the stuck file");
    assert_eq!(app.initialize_requests(), 2);
    assert!(states_of(&app, normal).await.iter().all(|(s, _)| s == "awaiting_status" || s == "delivered"));
    assert_eq!(upload_of(&app, normal).await.get::<String, _>("upload_state"), "published");
    let stuck_reads = app.requests_to("GET", &format!("/correspondence/api/v1/attachment/{stuck_id}"));
    assert!(stuck_reads >= 1, "given up only after a read found the scan still running");
    app.make_all_due().await;
    app.drain().await;
    let after = app.requests_to("GET", &format!("/correspondence/api/v1/attachment/{stuck_id}"));
    assert_eq!(after, stuck_reads, "a file given up is read no more");
}

#[tokio::test]
async fn retry_after_a_scan_timeout_uploads_the_file_again_and_the_letters_go() {
    let (app, stuck, _) = a_stuck_scan_beside_a_normal_one().await;
    let stuck_id: uuid::Uuid = upload_of(&app, stuck).await.get("altinn_attachment_id");
    let_the_scan_wait_pass(&app).await;
    run_to_rest(&app).await;
    assert_eq!(app.count_in("failed").await, 3);

    // Altinn's scans work again; the operator puts the message back.
    app.fake.state().set_malware_scan_ms_for("stuck.pdf", None);
    let retried =
        altinn_outbox::outbox::admin::retry(&app.pool, &altinn_outbox::outbox::admin::RetryScope::Message(stuck))
            .await
            .unwrap();
    assert_eq!(retried.len(), 3);
    assert!(retried
        .iter()
        .all(|r| r.new_state == DeliveryState::WaitingFiles && r.error_code.as_deref() == Some("scan_timeout")));
    let file = upload_of(&app, stuck).await;
    assert_eq!(file.get::<String, _>("upload_state"), "pending");
    assert_eq!(file.get::<Option<uuid::Uuid>, _>("altinn_attachment_id"), None, "a new attachment, not the stuck one");
    assert_eq!(file.get::<Option<chrono::DateTime<chrono::Utc>>, _>("uploaded_at"), None, "a new wait");

    run_to_rest(&app).await;
    let file = upload_of(&app, stuck).await;
    assert_eq!(file.get::<String, _>("upload_state"), "published");
    let new_id: uuid::Uuid = file.get("altinn_attachment_id");
    assert_ne!(new_id, stuck_id);
    assert_eq!(app.fake.state().attachment_inits(), 3, "the stuck file, the other message's, and the stuck file again");
    assert_eq!(app.fake.state().attachment_uploads(), 3);
    let sent = app.fake.state().correspondences();
    let letters: Vec<_> = sent.iter().filter(|c| c.senders_reference == "scan-never-ends").collect();
    assert_eq!(letters.len(), 3, "one letter per recipient");
    assert!(letters.iter().all(|c| c.attachment_ids == vec![new_id]), "each carries the new upload");
    assert!(states_of(&app, stuck).await.iter().all(|(s, _)| s == "awaiting_status" || s == "delivered"));
    assert_eq!(app.initialize_requests(), 5);
}
