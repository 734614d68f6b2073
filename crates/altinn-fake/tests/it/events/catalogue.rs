//! The fake Correspondence as publisher (events.md §6): which change publishes which type,
//! with which subject, `resourceinstance` and source, and what stays silent.

use std::time::Duration;

use altinn_fake::{FakeConfig, FakeEvent, FakeServer};
use reqwest::StatusCode;
use serde_json::json;

use super::{config, eventually, published, send_letter, SENDER, TYPE};
use crate::{form_fields, message, multipart, Api, EICAR, ORG, PERSON};

fn names(server: &FakeServer) -> Vec<String> {
    server.events().published().iter().map(|e| e.event_type.trim_start_matches(TYPE).to_string()).collect()
}

fn one(server: &FakeServer, name: &str) -> FakeEvent {
    let found = published(server, name);
    assert_eq!(found.len(), 1, "{name}: {:?}", names(server));
    found[0].clone()
}

#[tokio::test]
async fn a_letter_read_and_confirmed_with_a_notification_publishes_each_event_once_in_order() {
    let server = FakeServer::start(FakeConfig {
        publish_after_ms: 100,
        read_after_ms: Some(200),
        confirm_after_ms: Some(300),
        notification_after_ms: 50,
        ..config()
    })
    .await;
    let api = Api::new(&server).await;
    let mut body = message(&[PERSON], None);
    body["correspondence"]["isConfirmationNeeded"] = json!(true);
    let due = chrono::Utc::now() + chrono::Duration::days(1);
    body["correspondence"]["dueDateTime"] = json!(due.to_rfc3339());
    body["correspondence"]["notification"] = json!({ "emailSubject": "s", "emailBody": "b" });
    let (status, created) = api.initialize(&body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();
    eventually("confirmed", || published(&server, "correspondencereceiverconfirmed").len() == 1).await;
    let expected = [
        "correspondenceinitialized",
        "correspondencepublished",
        "notificationcreated",
        "correspondencenotificationdelivered",
        "correspondencereceiverread",
        "correspondencereceiverconfirmed",
    ];
    assert_eq!(names(&server), expected, "in the order they happened");
    let recipient = format!("urn:altinn:person:identifier-no:{PERSON}");
    for name in expected {
        let event = one(&server, name);
        let subject = if name == "correspondencepublished" { recipient.as_str() } else { SENDER };
        assert_eq!(event.subject.as_deref(), Some(subject), "{name}");
        let (path, instance) = match name {
            "notificationcreated" => ("notification", None),
            _ => ("correspondence", Some(id.as_str())),
        };
        assert_eq!(event.source, format!("{}/correspondence/api/v1/{path}", server.base_url()), "{name}");
        if let Some(instance) = instance {
            assert_eq!(event.resource_instance, instance, "{name}");
        }
    }
    // notificationcreated carries the order id, which only the overview maps back.
    let (_, overview) = api.get(&format!("/correspondence/{id}")).await;
    let order = overview["notifications"][0]["notificationOrderId"].as_str().unwrap();
    assert_eq!(one(&server, "notificationcreated").resource_instance, order);
    // Views and events agree: the overview says Confirmed.
    assert_eq!(overview["status"], "Confirmed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.events().published().len(), expected.len(), "nothing announced twice");
}

#[tokio::test]
async fn at_the_due_date_an_unread_unconfirmed_letter_publishes_never_read_and_never_confirmed_to_the_recipient() {
    let server = FakeServer::start(FakeConfig { notification_outcome: "Failed_TTL".into(), ..config() }).await;
    let api = Api::new(&server).await;
    let mut body = message(&[ORG], None);
    let due = chrono::Utc::now() + chrono::Duration::milliseconds(2000);
    body["correspondence"]["dueDateTime"] = json!(due.to_rfc3339());
    body["correspondence"]["isConfirmationNeeded"] = json!(true);
    body["correspondence"]["notification"] = json!({ "emailSubject": "s", "emailBody": "b" });
    let (status, created) = api.initialize(&body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    eventually("the notification result", || published(&server, "correspondencenotificationallfailed").len() == 1)
        .await;
    assert!(published(&server, "correspondencereceiverneverread").is_empty(), "not before the due date");
    eventually("the due-date job", || published(&server, "correspondencereceiverneverconfirmed").len() == 1).await;
    for name in ["correspondencereceiverneverread", "correspondencereceiverneverconfirmed"] {
        assert_eq!(one(&server, name).subject.as_deref(), Some(ORG), "{name}: the recipient");
    }
    assert!(published(&server, "correspondencenotificationdelivered").is_empty());
}

#[tokio::test]
async fn a_reserved_recipient_gets_no_initialized_and_fails_at_publish_and_a_purge_is_published() {
    let server =
        FakeServer::start(FakeConfig { reserved_persons: vec![PERSON.into()], publish_after_ms: 300, ..config() })
            .await;
    let api = Api::new(&server).await;
    let (status, created) = api.initialize(&message(&[PERSON, ORG], None)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let reserved = created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();
    let other = created["correspondences"][1]["correspondenceId"].as_str().unwrap().to_string();
    assert_eq!(created["correspondences"][0]["status"], "Reserved");
    eventually("initialized", || !published(&server, "correspondenceinitialized").is_empty()).await;
    let (status, _) = api.purge(&other).await;
    assert_eq!(status, StatusCode::OK);
    eventually("publish failed", || !published(&server, "correspondencepublishfailed").is_empty()).await;
    assert_eq!(one(&server, "correspondenceinitialized").resource_instance, other, "none for the reserved one");
    let failed = one(&server, "correspondencepublishfailed");
    assert_eq!((failed.resource_instance.as_str(), failed.subject.as_deref()), (reserved.as_str(), Some(SENDER)));
    let purged = one(&server, "correspondencepurged");
    assert_eq!((purged.resource_instance.as_str(), purged.subject.as_deref()), (other.as_str(), Some(SENDER)));
    assert!(published(&server, "correspondencepublished").is_empty());
}

#[tokio::test]
async fn attachments_publish_initialized_published_and_upload_failed_but_a_malware_failure_fails_no_letter_loudly() {
    let server = FakeServer::start(FakeConfig { malware_scan_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let clean = api.new_attachment("clean.pdf", None).await;
    let infected = api.new_attachment("virus.txt", None).await;
    assert_eq!(api.upload_attachment(&clean, b"%PDF-1.7".to_vec()).await.0, StatusCode::OK);
    assert_eq!(api.upload_attachment(&infected, format!("x {EICAR}").into_bytes()).await.0, StatusCode::OK);
    // A multipart initialize: its attachment publishes no attachmentinitialized.
    let virus = format!("x {EICAR}").into_bytes();
    let (status, body) = api.upload(multipart(&form_fields(&["v.txt"]), &[("v.txt", &virus)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("two attachments initialized", || published(&server, "attachmentinitialized").len() == 2).await;
    server.state().complete_malware_scans_now();
    eventually("the scans", || published(&server, "attachmentuploadfailed").len() == 2).await;
    let published_event = one(&server, "attachmentpublished");
    assert_eq!(published_event.resource_instance, clean);
    assert_eq!(published_event.source, format!("{}/correspondence/api/v1/attachment", server.base_url()));
    assert_eq!(published_event.subject.as_deref(), Some(SENDER));
    let initialized: Vec<String> =
        published(&server, "attachmentinitialized").into_iter().map(|e| e.resource_instance).collect();
    assert_eq!(initialized, [clean, infected]);
    // The multipart letter failed with its attachment, and published only its initialized.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state().correspondences()[0].status, "Failed");
    assert_eq!(published(&server, "correspondenceinitialized").len(), 1);
    assert!(published(&server, "correspondencepublishfailed").is_empty(), "no event for the malware failure");
    assert!(published(&server, "correspondencepublished").is_empty());
}

#[tokio::test]
async fn a_status_set_by_a_test_or_published_now_is_published_as_if_it_happened() {
    let server = FakeServer::start(FakeConfig { publish_after_ms: 3_600_000, ..config() }).await;
    let id = send_letter(&server, ORG).await;
    server.publish_events_now();
    assert_eq!(names(&server), ["correspondenceinitialized"], "published on the spot");
    server.state().publish_all_now();
    assert!(server.state().set_status(id.parse().unwrap(), "Read"));
    server.publish_events_now();
    assert_eq!(names(&server), ["correspondenceinitialized", "correspondencepublished", "correspondencereceiverread"]);
}
