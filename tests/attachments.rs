//! Messages with files, against the fake's multipart endpoint.

mod common;

use altinn_outbox::fake::{Endpoint, FaultKind, FaultRule};
use common::{TestApp, ORG};
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
    assert_eq!(by_name("vedtak.pdf").md5, Some(altinn_outbox::fake::md5_hex(&first)));
    let cid: uuid::Uuid = d.get("correspondence_id");
    assert!(by_name("vedtak.pdf").correspondence_ids.contains(&cid));

    app.fake.state().publish_all_now();
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "delivered");
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
