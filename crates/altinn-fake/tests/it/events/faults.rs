//! Event faults: redelivery with the same id, re-publication with a new id, events lost on
//! their way to Events, events held back (out of order), and a validation that never
//! succeeds.

use std::time::Duration;

use altinn_fake::{AttemptKind, EventFault, EventFaultRule, FakeServer};
use serde_json::json;

use super::receiver::Receiver;
use super::{config, eventually, published, send_letter, subscription, Events, ALL_SCOPES, TYPE};
use crate::ORG;

async fn subscribed(server: &FakeServer) -> Receiver {
    let receiver = Receiver::start(200, 200).await;
    Events::new(server, ALL_SCOPES).await.subscribe(server, subscription(&receiver.url, json!({}))).await;
    receiver
}

#[tokio::test]
async fn a_redelivered_event_arrives_twice_with_the_same_id() {
    let server = FakeServer::start(config()).await;
    let receiver = subscribed(&server).await;
    let published_type = format!("{TYPE}correspondencepublished");
    server.events().faults().add(EventFaultRule::times(EventFault::Redeliver, 1).of_type(&published_type));
    send_letter(&server, ORG).await;
    eventually("three pushes", || receiver.pushes().len() == 3).await;
    let ids: Vec<String> = receiver
        .pushes()
        .iter()
        .filter(|p| p.event_type() == published_type)
        .map(|p| p.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "a duplicate with the same id");
    assert_eq!(server.events().published().len(), 2, "registered once");
}

#[tokio::test]
async fn a_republished_event_is_registered_and_pushed_again_with_a_new_id() {
    let server = FakeServer::start(config()).await;
    let receiver = subscribed(&server).await;
    server
        .events()
        .faults()
        .add(EventFaultRule::times(EventFault::Republish, 1).of_type(&format!("{TYPE}correspondencepublished")));
    let letter = send_letter(&server, ORG).await;
    eventually("three pushes", || receiver.pushes().len() == 3).await;
    let twins = published(&server, "correspondencepublished");
    assert_eq!(twins.len(), 2);
    assert_ne!(twins[0].id, twins[1].id, "a new id: deduplication by id alone misses it");
    assert!(twins.iter().all(|e| e.resource_instance == letter));
}

#[tokio::test]
async fn dropped_events_never_reach_events_neither_pushed_nor_pulled() {
    let server = FakeServer::start(config()).await;
    let receiver = subscribed(&server).await;
    // The next two events lost, then a share of none.
    server.events().faults().add(EventFaultRule::times(EventFault::Drop, 2));
    server.events().faults().add(EventFaultRule::fraction(EventFault::Drop, 0.0));
    send_letter(&server, ORG).await;
    eventually("two lost", || server.events().lost().len() == 2).await;
    send_letter(&server, ORG).await;
    eventually("the second letter pushed", || receiver.pushes().len() == 2).await;
    let lost_ids: Vec<String> = server.events().lost().into_iter().map(|e| e.id).collect();
    assert!(server.events().published().iter().all(|e| !lost_ids.contains(&e.id)));
    let pulled =
        Events::new(&server, ALL_SCOPES).await.pull(&format!("resource={}&after=0", super::RESOURCE_URN)).await;
    assert_eq!(pulled.json().as_array().unwrap().len(), 2, "only the second letter's");

    server.events().faults().clear();
    server
        .events()
        .faults()
        .add(EventFaultRule::fraction(EventFault::Drop, 1.0).of_type(&format!("{TYPE}correspondencepublished")));
    send_letter(&server, ORG).await;
    eventually("the third letter's initialized", || receiver.pushes().len() == 3).await;
    eventually("its published lost", || server.events().lost().len() == 3).await;
}

#[tokio::test]
async fn a_held_back_event_is_overtaken_by_a_later_one() {
    let server = FakeServer::start(config()).await;
    let receiver = subscribed(&server).await;
    let initialized = format!("{TYPE}correspondenceinitialized");
    server
        .events()
        .faults()
        .add(EventFaultRule::times(EventFault::HoldBack(Duration::from_millis(300)), 1).of_type(&initialized));
    send_letter(&server, ORG).await;
    eventually("both pushes", || receiver.pushes().len() == 2).await;
    let order: Vec<String> = receiver.pushes().iter().map(|p| p.event_type().to_string()).collect();
    assert_eq!(order, [format!("{TYPE}correspondencepublished"), initialized], "published arrived first");
    let registered: Vec<String> = server.events().published().into_iter().map(|e| e.event_type).collect();
    assert_eq!(registered[0], format!("{TYPE}correspondenceinitialized"), "registered in order all the same");
}

#[tokio::test]
async fn a_validation_made_to_fail_never_succeeds_and_nothing_is_sent() {
    let server = FakeServer::start(altinn_fake::FakeConfig { events_time_scale: 0.001, ..config() }).await;
    let receiver = Receiver::start(200, 200).await;
    server.events().faults().fail_validation_for(&receiver.url);
    let events = Events::new(&server, ALL_SCOPES).await;
    events.create(&subscription(&receiver.url, json!({}))).await;
    eventually("nine attempts", || server.events().attempts().len() == 9).await;
    let attempts = server.events().attempts();
    assert!(attempts.iter().all(|a| a.kind == AttemptKind::Validation && a.status.is_none() && a.error.is_some()));
    assert!(receiver.seen().is_empty(), "as a TLS failure: no request reached the endpoint");
    send_letter(&server, ORG).await;
    eventually("the letter's events", || server.events().published().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.events().subscriptions()[0].validated);
    assert!(receiver.seen().is_empty());

    server.events().faults().allow_validation_for(&receiver.url);
    events.create(&subscription(&receiver.url, json!({}))).await;
    eventually("validated by the re-POST", || server.events().subscriptions()[0].validated).await;
}
