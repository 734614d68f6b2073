//! The handshake and the pushes: their exact HTTP shape, retries on the (time-scaled)
//! schedule, timeouts, dead letters, matching, and nothing pushed before validation.

use std::time::Duration;

use altinn_fake::{AttemptKind, FakeServer};
use serde_json::{json, Value};

use super::receiver::{Receiver, Seen};
use super::{config, eventually, published, send_letter, subscription, Events, ALL_SCOPES, RESOURCE_URN, SENDER, TYPE};
use crate::{ORG, PERSON};

/// The headers every handshake and push has, and those none has.
fn assert_push_headers(seen: &Seen) {
    assert_eq!(seen.headers["content-type"], "application/json; charset=utf-8");
    for absent in ["authorization", "signature", "x-hub-signature", "ocp-apim-subscription-key"] {
        assert!(!seen.headers.contains_key(absent), "{absent} sent");
    }
    assert!(seen.raw.starts_with("{\"specversion\":\"1.0\","), "specversion first: {}", seen.raw);
}

fn keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_handshake_posts_the_four_attribute_event_and_any_2xx_validates() {
    let server = FakeServer::start(config()).await;
    let receiver = Receiver::start(204, 200).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let id = events.subscribe(&server, subscription(&receiver.url, json!({}))).await;
    let handshake = &receiver.validations()[0];
    assert_push_headers(handshake);
    assert_eq!(handshake.path, "/hook/7f3c", "the endpoint as stored");
    assert_eq!(keys(&handshake.body), ["id", "source", "specversion", "type"]);
    assert_eq!(handshake.body["source"], format!("{}/events/api/v1/subscriptions/{id}", server.base_url()));
    assert_eq!(events.get(&id.to_string()).await.json()["validated"], true);
    let attempts = server.events().attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].kind, attempts[0].status), (AttemptKind::Validation, Some(204)));
}

#[tokio::test]
async fn a_failing_handshake_is_retried_on_its_schedule_then_abandoned_and_nothing_is_pushed() {
    let server = FakeServer::start(altinn_fake::FakeConfig { events_time_scale: 0.001, ..config() }).await;
    let receiver = Receiver::start(500, 200).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let reply = events.create(&subscription(&receiver.url, json!({}))).await;
    let id = reply.json()["id"].to_string();
    // The Service Bus schedule, scaled: nine attempts in about half a second.
    eventually("nine handshakes", || receiver.validations().len() == 9).await;
    send_letter(&server, ORG).await;
    eventually("the letter's events", || published(&server, "correspondencepublished").len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.validations().len(), 9, "given up after the ninth");
    assert!(receiver.pushes().is_empty(), "nothing pushed to an unvalidated subscription");
    assert_eq!(events.get(&id).await.json()["validated"], false, "unvalidated for ever, silently");
    let attempts = server.events().attempts();
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    assert!(attempts.iter().all(|a| a.status == Some(500)));
    let gap = attempts[8].at - attempts[7].at;
    assert!(gap >= chrono::Duration::milliseconds(120), "2 min scaled by 0.001: {gap}");

    // Fixed endpoint, identical body: same id, a new handshake, and pushes from then on.
    receiver.plan().validation = 200;
    let again = events.create(&subscription(&receiver.url, json!({}))).await.json();
    assert_eq!(again["id"].to_string(), id);
    eventually("validated", || server.events().subscriptions()[0].validated).await;
    send_letter(&server, ORG).await;
    eventually("pushes of the second letter", || receiver.pushes().len() == 2).await;
}

#[tokio::test]
async fn a_published_letter_is_pushed_one_event_per_post_in_the_exact_shape() {
    let server = FakeServer::start(config()).await;
    let receiver = Receiver::start(200, 200).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let subscription_id = events.subscribe(&server, subscription(&receiver.url, json!({}))).await;
    let letter = send_letter(&server, ORG).await;
    eventually("two pushes", || receiver.pushes().len() == 2).await;
    let pushes = receiver.pushes();
    let types: Vec<&str> = pushes.iter().map(Seen::event_type).collect();
    let initialized = format!("{TYPE}correspondenceinitialized");
    let published_type = format!("{TYPE}correspondencepublished");
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(sorted, [initialized.as_str(), published_type.as_str()], "one event per POST");
    let push = pushes.iter().find(|p| p.event_type() == published_type).unwrap();
    assert_push_headers(push);
    let body = &push.body;
    assert_eq!(
        keys(body),
        [
            "alternativesubject",
            "id",
            "resource",
            "resourceinstance",
            "source",
            "specversion",
            "subject",
            "time",
            "type"
        ],
        "no data, no datacontenttype: {body}"
    );
    assert_eq!(body["source"], format!("{}/correspondence/api/v1/correspondence", server.base_url()));
    assert_eq!(body["subject"], ORG, "the recipient for correspondencepublished");
    assert_eq!(body["alternativesubject"], "/organisation/991825827");
    assert_eq!(body["resource"], RESOURCE_URN);
    assert_eq!(body["resourceinstance"], letter.as_str());
    let time = body["time"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert!(time.ends_with('Z') && [20, 24, 27, 28].contains(&time.len()), "SDK format: {time}");
    assert!((chrono::Utc::now() - parsed.to_utc()) < chrono::Duration::seconds(5));
    // The fake's record agrees with what was pushed.
    let registered = published(&server, "correspondencepublished");
    assert_eq!(registered.len(), 1);
    assert_eq!(body["id"], registered[0].id.as_str());
    eventually("the attempt recorded", || server.events().attempts_for(&registered[0].id).len() == 1).await;
    let attempt = &server.events().attempts_for(&registered[0].id)[0];
    assert_eq!((attempt.subscription_id, attempt.status), (subscription_id, Some(200)));
    // Initialized was registered before Published: they happened in that order.
    let order: Vec<String> = server.events().published().iter().map(|e| e.event_type.clone()).collect();
    assert_eq!(order, [initialized, published_type]);
}

#[tokio::test]
async fn a_failing_endpoint_gets_the_schedule_then_a_dead_letter_and_stays_subscribed() {
    let server = FakeServer::start(altinn_fake::FakeConfig { events_time_scale: 0.000_01, ..config() }).await;
    let receiver = Receiver::start(200, 503).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let id = events
        .subscribe(
            &server,
            subscription(&receiver.url, json!({ "typeFilter": format!("{TYPE}correspondencepublished") })),
        )
        .await;
    send_letter(&server, ORG).await;
    // Twelve attempts over the 35 hours of the Service Bus schedule, scaled to about 1.3 s.
    eventually("a dead letter", || !server.events().dead_letters().is_empty()).await;
    let dead = &server.events().dead_letters()[0];
    assert_eq!((dead.subscription_id, dead.attempts), (id, 12));
    assert_eq!(dead.event.event_type, format!("{TYPE}correspondencepublished"));
    let attempts = server.events().attempts_for(&dead.event.id);
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    assert!(attempts.iter().all(|a| a.kind == AttemptKind::Push && a.status == Some(503)));
    assert_eq!(receiver.pushes().len(), 12, "each attempt a POST of the same event");
    assert!(receiver.pushes().iter().all(|p| p.body["id"] == dead.event.id.as_str()));
    let last_gap = attempts[11].at - attempts[10].at;
    assert!(last_gap >= chrono::Duration::milliseconds(400), "12 h scaled: {last_gap}");

    // Never auto-disabled: the subscription stays, and the next event comes through.
    assert!(server.events().subscriptions()[0].validated);
    receiver.plan().push = 200;
    send_letter(&server, ORG).await;
    eventually("the next letter pushed", || receiver.pushes().len() == 13).await;
    assert_eq!(server.events().dead_letters().len(), 1);
}

#[tokio::test]
async fn a_retry_after_one_failure_delivers_and_any_non_2xx_or_a_timeout_counts_as_failure() {
    let server = FakeServer::start(altinn_fake::FakeConfig {
        events_time_scale: 0.001,
        events_push_timeout_ms: 200,
        ..config()
    })
    .await;
    let receiver = Receiver::start(200, 200).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    events
        .subscribe(
            &server,
            subscription(&receiver.url, json!({ "typeFilter": format!("{TYPE}correspondencepublished") })),
        )
        .await;
    receiver.plan().next_pushes.extend([404, 301]);
    send_letter(&server, ORG).await;
    eventually("a delivery", || {
        server.events().attempts().iter().any(|a| a.kind == AttemptKind::Push && a.succeeded())
    })
    .await;
    let statuses: Vec<Option<u16>> =
        server.events().attempts().iter().filter(|a| a.kind == AttemptKind::Push).map(|a| a.status).collect();
    assert_eq!(statuses, [Some(404), Some(301), Some(200)], "4xx and 3xx are retried too");

    receiver.plan().delay = Duration::from_millis(400);
    send_letter(&server, ORG).await;
    eventually("a timeout", || server.events().attempts().iter().any(|a| a.error.as_deref() == Some("timeout"))).await;
    receiver.plan().delay = Duration::ZERO;
    eventually("the retry after the timeout", || {
        server.events().attempts().iter().filter(|a| a.kind == AttemptKind::Push && a.succeeded()).count() == 2
    })
    .await;
}

#[tokio::test]
async fn only_matching_validated_subscriptions_get_an_event_and_empty_filters_match_nothing() {
    let server = FakeServer::start(config()).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let published_type = format!("{TYPE}correspondencepublished");
    let cases = [
        ("everything", json!({}), 2),
        ("published only", json!({ "typeFilter": published_type }), 1),
        ("the recipient's", json!({ "subjectFilter": PERSON_URN }), 1),
        ("the sender's", json!({ "subjectFilter": SENDER }), 1),
        ("empty subject", json!({ "subjectFilter": "" }), 0),
        ("empty type", json!({ "typeFilter": "" }), 0),
        ("a wildcard type", json!({ "typeFilter": format!("{TYPE}%") }), 0),
        ("another resource", json!({ "resourceFilter": "urn:altinn:resource:other" }), 0),
    ];
    let mut receivers = Vec::new();
    for (name, extra, _) in &cases {
        let receiver = Receiver::start(200, 200).await;
        events.subscribe(&server, subscription(&receiver.url, extra.clone())).await;
        receivers.push((name, receiver));
    }
    send_letter(&server, PERSON).await;
    eventually("both events registered", || server.events().published().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((name, receiver), (_, _, expected)) in receivers.iter().zip(&cases) {
        assert_eq!(receiver.pushes().len(), *expected, "{name}");
    }
    let recipient_push = &receivers[2].1.pushes()[0];
    assert_eq!(recipient_push.body["type"], published_type.as_str());
    assert_eq!(recipient_push.body["alternativesubject"], format!("/person/{PERSON}"));
}

const PERSON_URN: &str = "urn:altinn:person:identifier-no:13896396174";

#[test]
fn the_person_urn_is_the_test_person() {
    assert_eq!(PERSON_URN, format!("urn:altinn:person:identifier-no:{PERSON}"));
}
