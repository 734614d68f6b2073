//! The fake Correspondence as publisher: which change publishes which type,
//! with which subject, `resourceinstance` and source, and what stays silent.

use std::time::Duration;

use altinn_fake::{FakeConfig, FakeEvent, FakeServer};
use reqwest::StatusCode;
use serde_json::json;

use super::{config, eventually, published, send_letter, RESOURCE_URN, SENDER, TYPE};
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

/// Initializes one letter to `recipient` with `notification`; its id.
async fn letter_with(api: &Api, recipient: &str, notification: serde_json::Value) -> String {
    let mut body = message(&[recipient], None);
    body["correspondence"]["notification"] = notification;
    let (status, created) = api.initialize(&body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string()
}

/// The event's (resourceinstance, subject, source path) for compact assertions.
fn shape(server: &FakeServer, event: &FakeEvent) -> (String, Option<String>, String) {
    let prefix = format!("{}/correspondence/api/v1/", server.base_url());
    (event.resource_instance.clone(), event.subject.clone(), event.source.trim_start_matches(&prefix).to_string())
}

fn sender_event(id: &str, path: &str) -> (String, Option<String>, String) {
    (id.to_string(), Some(SENDER.to_string()), path.to_string())
}

#[tokio::test]
async fn an_order_that_cannot_be_created_publishes_creation_failed_and_no_order_or_result_events() {
    let server = FakeServer::start(FakeConfig {
        notification_order_fails: true,
        notification_after_ms: 50,
        reminder_after_ms: Some(100),
        ..config()
    })
    .await;
    let api = Api::new(&server).await;
    let notification = json!({
        "emailSubject": "s", "emailBody": "b", "sendReminder": true,
        "reminderEmailSubject": "rs", "reminderEmailBody": "rb",
    });
    let id = letter_with(&api, PERSON, notification).await;
    eventually("creation failed", || published(&server, "correspondencenotificationcreationfailed").len() == 1).await;
    let failed = one(&server, "correspondencenotificationcreationfailed");
    assert_eq!(shape(&server, &failed), sender_event(&id, "correspondence"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        names(&server),
        ["correspondenceinitialized", "correspondencepublished", "correspondencenotificationcreationfailed"],
        "no order, no result, no reminder"
    );
    // The views agree: there is no order.
    let (_, overview) = api.get(&format!("/correspondence/{id}")).await;
    assert_eq!(overview["notifications"], json!([]));
    let (_, details) = api.get(&format!("/correspondence/{id}/details")).await;
    assert_eq!(details["notifications"], json!([]));
}

#[tokio::test]
async fn an_order_with_a_failed_and_a_sent_recipient_publishes_both_failed_and_delivered_but_not_all_failed() {
    let server = FakeServer::start(FakeConfig {
        notification_sms_outcome: Some("Failed_TTL".into()),
        notification_after_ms: 50,
        ..config()
    })
    .await;
    let api = Api::new(&server).await;
    let both = json!({ "notificationChannel": "EmailAndSms", "emailSubject": "s", "emailBody": "b", "smsBody": "t" });
    let partly = letter_with(&api, ORG, both).await;
    let sms_only = letter_with(&api, PERSON, json!({ "notificationChannel": "Sms", "smsBody": "t" })).await;
    eventually("the results", || {
        published(&server, "correspondencenotificationdelivered").len() == 1
            && published(&server, "correspondencenotificationallfailed").len() == 1
    })
    .await;
    let failed = one(&server, "correspondencenotificationfailed");
    assert_eq!(shape(&server, &failed), sender_event(&partly, "correspondence"));
    let delivered = one(&server, "correspondencenotificationdelivered");
    assert_eq!(shape(&server, &delivered), sender_event(&partly, "correspondence"));
    // SMS alone: every recipient of the main order failed, so allfailed and nothing else.
    let all_failed = one(&server, "correspondencenotificationallfailed");
    assert_eq!(shape(&server, &all_failed), sender_event(&sms_only, "correspondence"));
    // The details agree: e-mail sent, SMS failed.
    let (_, details) = api.get(&format!("/correspondence/{partly}/details")).await;
    let status = &details["notifications"][0]["notificationStatusDetails"];
    assert_eq!(status["email"]["sendStatus"]["status"], "Email_Delivered");
    assert_eq!(status["email"]["succeeded"], true);
    assert_eq!(status["sms"]["sendStatus"]["status"], "SMS_Failed_TTL");
    assert_eq!(status["sms"]["succeeded"], false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(published(&server, "correspondencenotificationfailed").len(), 1, "announced once");
    assert!(published(&server, "correspondencenotificationreminderdelivered").is_empty(), "no reminder knob");
}

#[tokio::test]
async fn an_unread_letter_with_a_reminder_publishes_reminder_delivered_and_a_read_one_or_one_without_none() {
    let server = FakeServer::start(FakeConfig { reminder_after_ms: Some(1_500), ..config() }).await;
    let api = Api::new(&server).await;
    let with_reminder = json!({
        "emailSubject": "s", "emailBody": "b", "sendReminder": true,
        "reminderEmailSubject": "rs", "reminderEmailBody": "rb",
    });
    let unread = letter_with(&api, PERSON, with_reminder.clone()).await;
    let read = letter_with(&api, ORG, with_reminder).await;
    let without = letter_with(&api, ORG, json!({ "emailSubject": "s", "emailBody": "b" })).await;
    eventually("published", || published(&server, "correspondencepublished").len() == 3).await;
    assert!(server.state().set_status(read.parse().unwrap(), "Read"));
    eventually("the reminder", || !published(&server, "correspondencenotificationreminderdelivered").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reminder = one(&server, "correspondencenotificationreminderdelivered");
    assert_eq!(shape(&server, &reminder), sender_event(&unread, "correspondence"));
    let delivered: Vec<String> =
        published(&server, "correspondencenotificationdelivered").into_iter().map(|e| e.resource_instance).collect();
    assert_eq!(delivered.len(), 3, "every main order delivered once");
    assert!(delivered.contains(&without));
    assert!(published(&server, "correspondencenotificationfailed").is_empty());
    let names = names(&server);
    assert_eq!(names.last().map(String::as_str), Some("correspondencenotificationreminderdelivered"), "{names:?}");
}

#[tokio::test]
async fn a_published_attachment_publishes_expired_at_its_expiry_and_a_failed_one_does_not() {
    let server = FakeServer::start(FakeConfig { attachment_expires_after_ms: Some(1_000), ..config() }).await;
    let api = Api::new(&server).await;
    let clean = api.new_attachment("clean.pdf", None).await;
    let infected = api.new_attachment("virus.txt", None).await;
    assert_eq!(api.upload_attachment(&clean, b"%PDF-1.7".to_vec()).await.0, StatusCode::OK);
    assert_eq!(api.upload_attachment(&infected, format!("x {EICAR}").into_bytes()).await.0, StatusCode::OK);
    eventually("the scans", || published(&server, "attachmentuploadfailed").len() == 1).await;
    assert!(published(&server, "attachmentexpired").is_empty(), "not before its expiry");
    eventually("the expiry", || !published(&server, "attachmentexpired").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let expired = one(&server, "attachmentexpired");
    assert_eq!(shape(&server, &expired), sender_event(&clean, "attachment"));
    assert_eq!(expired.resource, RESOURCE_URN);
    let names = names(&server);
    assert_eq!(names.last().map(String::as_str), Some("attachmentexpired"), "{names:?}");
}
