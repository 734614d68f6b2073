//! The pull API: `after`, `next`, `size`, `type` with LIKE, `subject`, the
//! visibility delay, and its refusals.

use std::time::Duration;

use altinn_fake::{FakeConfig, FakeServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{config, eventually, send_letter, token, Events, ALL_SCOPES, EVENTS_SCOPE, RESOURCE_URN, TYPE};
use crate::{ORG, PERSON};

fn ids(body: &Value) -> Vec<String> {
    body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

/// Three letters: six events registered.
async fn three_letters(server: &FakeServer) {
    for recipient in [ORG, PERSON, ORG] {
        send_letter(server, recipient).await;
    }
    eventually("six events", || server.events().published().len() == 6).await;
}

#[tokio::test]
async fn events_come_in_registration_order_after_the_cursor_with_next_and_size() {
    let server = FakeServer::start(config()).await;
    three_letters(&server).await;
    let all: Vec<String> = server.events().published().into_iter().map(|e| e.id).collect();
    let events = Events::new(&server, ALL_SCOPES).await;

    let page = events.pull(&format!("resource={RESOURCE_URN}&after=0")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("application/cloudevents+json; charset=utf-8"));
    assert!(page.text.starts_with("[{\"specversion\":\"1.0\",") && page.text.contains("}, {"), "{}", page.text);
    assert_eq!(ids(&page.json()), all, "an unknown after lists from the start");
    let next = format!("{}/events/api/v1/events?after={}&resource={RESOURCE_URN}", server.base_url(), all[5]);
    assert_eq!(page.header("next"), Some(next.as_str()));

    let first = events.pull(&format!("resource={RESOURCE_URN}&after={}&size=2", all[1])).await;
    assert_eq!(ids(&first.json()), all[2..4]);
    let next = first.header("next").unwrap().to_string();
    assert_eq!(
        next,
        format!("{}/events/api/v1/events?after={}&resource={RESOURCE_URN}&size=2", server.base_url(), all[3])
    );
    let second = events.send(events.http.get(&next)).await;
    assert_eq!(ids(&second.json()), all[4..6]);
    let end = events.send(events.http.get(second.header("next").unwrap())).await;
    assert_eq!(end.text, "[]");
    assert_eq!(end.header("next"), None, "SetNextLink writes next only for a page with events");
}

#[tokio::test]
async fn type_is_matched_with_like_and_subject_exactly() {
    let server = FakeServer::start(config()).await;
    three_letters(&server).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let base = format!("resource={RESOURCE_URN}&after=0");
    let count = |body: Value| body.as_array().unwrap().len();
    let published = format!("{TYPE}correspondencepublished");
    assert_eq!(count(events.pull(&format!("{base}&type=%25published")).await.json()), 3);
    assert_eq!(count(events.pull(&format!("{base}&type={published}")).await.json()), 3);
    assert_eq!(count(events.pull(&format!("{base}&type=no.altinn.correspondence.%25")).await.json()), 6);
    assert_eq!(count(events.pull(&format!("{base}&type=%25published&type=%25initialized")).await.json()), 6);
    assert_eq!(count(events.pull(&format!("{base}&type=%25PUBLISHED")).await.json()), 0, "case-sensitive");
    let person = format!("urn:altinn:person:identifier-no:{PERSON}");
    let mine = events.pull(&format!("{base}&subject={person}")).await.json();
    assert_eq!(count(mine.clone()), 1);
    assert_eq!(mine[0]["type"], published.as_str());
    let alternative = events
        .send(
            events
                .http
                .get(format!("{}/events?{base}", events.base))
                .header("Altinn-AlternativeSubject", format!("/person/{PERSON}")),
        )
        .await;
    assert_eq!(count(alternative.json()), 1);
    assert!(alternative.header("next").unwrap().ends_with(&format!("&subject={person}")), "the subject is added");
}

#[tokio::test]
async fn events_are_visible_only_after_the_delay() {
    let server = FakeServer::start(FakeConfig { events_visibility_delay_ms: 30_000, ..config() }).await;
    send_letter(&server, ORG).await;
    eventually("two events", || server.events().published().len() == 2).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let query = format!("resource={RESOURCE_URN}&after=0");
    assert_eq!(events.pull(&query).await.text, "[]", "30 s by default");
    server.events().set_visibility_delay_ms(200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(events.pull(&query).await.json().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_pull_api_refuses_as_the_controller_does() {
    let server = FakeServer::start(config()).await;
    send_letter(&server, ORG).await;
    let mut events = Events::new(&server, ALL_SCOPES).await;
    let query = format!("resource={RESOURCE_URN}&after=0");
    let detail = |reply: super::Reply| {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        reply.json()["detail"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        detail(events.pull("resource=urn:altinn:x&after=0").await),
        "The 'resource' parameter must begin with `urn:altinn:resource:`"
    );
    assert_eq!(
        detail(events.pull(&format!("resource={RESOURCE_URN}")).await),
        "The 'after' parameter must be defined."
    );
    let both = events
        .http
        .get(format!("{}/events?{query}&subject={ORG}", events.base))
        .header("Altinn-AlternativeSubject", "/organisation/991825827");
    assert_eq!(detail(events.send(both).await), "Only one of 'subject' or 'alternativeSubject' can be defined.");
    let missing = events.pull("after=0&size=big").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let errors = &missing.json()["errors"];
    assert_eq!(errors["resource"], json!(["The resource field is required."]));
    assert_eq!(errors["size"], json!(["The value 'big' is not valid."]));

    events.token = Some(token(&server, "altinn:serviceowner altinn:correspondence.write").await);
    let forbidden = events.pull(&query).await;
    assert_eq!((forbidden.status, forbidden.text.as_str()), (StatusCode::FORBIDDEN, ""), "the scope policy");
    events.token = None;
    let anonymous = events.pull(&query).await;
    assert_eq!((anonymous.status, anonymous.text.as_str()), (StatusCode::UNAUTHORIZED, ""));
}

#[tokio::test]
async fn each_event_is_filtered_by_the_pdp() {
    let server = FakeServer::start(config()).await;
    three_letters(&server).await;
    let query = format!("resource={RESOURCE_URN}&after=0");
    // An organisation without the service-owner claim sees the events about itself only.
    let organisation = Events::new(&server, EVENTS_SCOPE).await;
    let own = organisation.pull(&query).await.json();
    let subjects: Vec<&str> = own.as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, [ORG, ORG, ORG, ORG, ORG], "the person's published event left out: {own}");
    server.events().deny_subscribe(RESOURCE_URN);
    let owner = Events::new(&server, ALL_SCOPES).await;
    assert_eq!(owner.pull(&query).await.text, "[]");
    server.events().allow_subscribe(RESOURCE_URN);
    assert_eq!(owner.pull(&query).await.json().as_array().unwrap().len(), 6);
}
