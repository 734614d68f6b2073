//! The subscription API: every check of a create in the server's order with its body,
//! idempotent create, and GET/DELETE that belong to the creator.

use altinn_fake::FakeServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::receiver::Receiver;
use super::{config, eventually, subscription, token, Events, ALL_SCOPES, EVENTS_SCOPE, RESOURCE_URN, SENDER};

/// A case: its name, the token's scope (None: no token), the body, the status and body.
type Case = (&'static str, Option<&'static str>, Value, StatusCode, Value);

#[tokio::test]
async fn create_runs_the_checks_in_the_servers_order_with_their_bodies() {
    let server = FakeServer::start(altinn_fake::FakeConfig {
        unknown_resources: vec!["gone".into()],
        events_denied_resources: vec!["closed".into()],
        ..config()
    })
    .await;
    let hook = "https://hooks.example.no/altinn/7f3c";
    let no_scope = "altinn:serviceowner altinn:correspondence.write";
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<Case> = vec![
        ("no token", None, json!({}), StatusCode::UNAUTHORIZED, json!("")),
        // 1 comes before everything, even a missing scope and a bad source filter.
        (
            "no endpoint",
            Some(no_scope),
            json!({ "sourceFilter": "http://x" }),
            bad,
            json!("Missing or invalid endpoint to push events towards"),
        ),
        (
            "relative endpoint",
            Some(ALL_SCOPES),
            subscription("altinn/hook", json!({})),
            bad,
            json!("Missing or invalid endpoint to push events towards"),
        ),
        (
            "not https",
            Some(ALL_SCOPES),
            subscription("ftp://hooks.example.no/x", json!({})),
            bad,
            json!("Missing or invalid endpoint to push events towards"),
        ),
        // 2 before the scope check.
        (
            "http source filter",
            Some(no_scope),
            subscription(hook, json!({ "sourceFilter": "http://x.no" })),
            bad,
            json!("SourceFilter must be an absolute URL with the https scheme."),
        ),
        // 3 before the resource checks.
        (
            "no scope",
            Some(no_scope),
            json!({ "endPoint": hook, "resourceFilter": "Bad" }),
            StatusCode::FORBIDDEN,
            json!(""),
        ),
        (
            "upper-case resource",
            Some(ALL_SCOPES),
            json!({ "endPoint": hook, "resourceFilter": "urn:altinn:resource:Mine" }),
            bad,
            json!("Resource filter must be a valid urn"),
        ),
        (
            "empty resource",
            Some(ALL_SCOPES),
            json!({ "endPoint": hook, "resourceFilter": "" }),
            bad,
            json!("Resource filter must be a valid urn"),
        ),
        ("no resource", Some(ALL_SCOPES), json!({ "endPoint": hook }), bad, json!("Resource filter is required.")),
        (
            "source filter",
            Some(ALL_SCOPES),
            subscription(hook, json!({ "sourceFilter": "https://x.no/a/b" })),
            bad,
            json!("Source filter is not supported for subscriptions on this resource."),
        ),
        (
            "alternative subject",
            Some(ALL_SCOPES),
            subscription(
                hook,
                json!({ "alternativeSubjectFilter": "/organisation/313756270", "includeSubunits": true }),
            ),
            bad,
            json!("AlternativeSubject filter is not supported for subscriptions on this resource."),
        ),
        (
            "subunits without subject",
            Some(ALL_SCOPES),
            subscription(hook, json!({ "includeSubunits": true })),
            bad,
            json!("IncludeSubunits requires a subject filter."),
        ),
        (
            "denied resource",
            Some(ALL_SCOPES),
            json!({ "endPoint": hook, "resourceFilter": "urn:altinn:resource:closed" }),
            StatusCode::FORBIDDEN,
            json!("Not authorized to create a subscription for resource urn:altinn:resource:closed."),
        ),
        (
            "unknown resource",
            Some(ALL_SCOPES),
            json!({ "endPoint": hook, "resourceFilter": "urn:altinn:resource:gone" }),
            StatusCode::FORBIDDEN,
            json!("Not authorized to create a subscription for resource urn:altinn:resource:gone."),
        ),
        (
            "organisation without subject",
            Some(EVENTS_SCOPE),
            subscription(hook, json!({})),
            StatusCode::FORBIDDEN,
            json!(format!("Not authorized to create a subscription for resource {RESOURCE_URN}.")),
        ),
    ];
    for (name, scope, body, status, answer) in cases {
        let mut events = Events::new(&server, ALL_SCOPES).await;
        events.token = match scope {
            Some(scope) => Some(token(&server, scope).await),
            None => None,
        };
        let reply = events.create(&body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text);
        let text: Value = if reply.text.is_empty() { json!("") } else { reply.json() };
        assert_eq!(text, answer, "{name}");
        if !reply.text.is_empty() {
            assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"), "{name}");
        }
    }
    assert!(server.events().subscriptions().is_empty(), "nothing refused was stored");
}

#[tokio::test]
async fn binding_failures_are_validation_problems_and_other_media_types_415() {
    let server = FakeServer::start(config()).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let url = format!("{}/subscriptions", events.base);
    let raw = |body: &'static str, content_type: &'static str| {
        events.http.post(&url).header("content-type", content_type).body(body)
    };
    let reply = events.send(raw("{\"endPoint\":", "application/json")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.header("content-type"), Some("application/problem+json; charset=utf-8"));
    let problem = reply.json();
    assert_eq!(problem["title"], "One or more validation errors occurred.");
    assert!(problem["errors"]["$"].is_array(), "{problem}");
    let reply = events.send(raw("{\"includeSubunits\":\"yes\"}", "application/json")).await;
    assert!(reply.json()["errors"]["$.includeSubunits"][0].as_str().unwrap().contains("System.Boolean"));
    let reply = events.send(raw("", "application/json")).await;
    assert_eq!(reply.json()["errors"][""], json!(["A non-empty request body is required."]));
    let reply = events.send(raw("{}", "text/plain")).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.json()["status"], 415);
}

#[tokio::test]
async fn a_raw_maskinporten_token_or_an_expired_one_is_an_empty_401() {
    let server = FakeServer::start(altinn_fake::FakeConfig { altinn_token_lifetime_s: 1, ..config() }).await;
    let (_, body) = super::post_grant(&server, &super::grant(&server, json!({ "scope": ALL_SCOPES }))).await;
    let mut events = Events::new(&server, ALL_SCOPES).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = events.list().await;
    assert_eq!((expired.status, expired.text.as_str()), (StatusCode::UNAUTHORIZED, ""), "zero clock skew");
    events.token = body["access_token"].as_str().map(String::from);
    let raw = events.create(&subscription("https://h.example.no/x", json!({}))).await;
    assert_eq!((raw.status, raw.text.as_str()), (StatusCode::UNAUTHORIZED, ""));
}

#[tokio::test]
async fn a_created_subscription_answers_201_with_its_location_and_camel_case_without_nulls() {
    let server = FakeServer::start(config()).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let reply = events.create(&subscription("https://Hooks.Example.no:443/altinn/7f3c?k=1", json!({}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    let id = body["id"].as_i64().expect("an integer id");
    assert_eq!(reply.header("location"), Some(format!("/events/api/v1/subscription/{id}").as_str()), "singular");
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        vec!["consumer", "created", "createdBy", "endPoint", "id", "includeSubunits", "resourceFilter", "validated"];
    expected.sort();
    assert_eq!(keys, expected, "no nulls, no sourceFilter: {body}");
    assert_eq!(body["endPoint"], "https://hooks.example.no/altinn/7f3c?k=1", "stored as Uri.AbsoluteUri");
    assert_eq!((body["consumer"].as_str(), body["createdBy"].as_str()), (Some("/org/digdir"), Some("/org/digdir")));
    assert_eq!(body["validated"], false, "the handshake has not run (and cannot: no such host)");
    assert!(body["created"].as_str().unwrap().ends_with('Z'), "{body}");

    let filtered = events
        .create(&subscription("https://hooks.example.no/x", json!({ "subjectFilter": SENDER, "typeFilter": "t" })))
        .await
        .json();
    assert_eq!((filtered["subjectFilter"].as_str(), filtered["typeFilter"].as_str()), (Some(SENDER), Some("t")));
    assert_eq!(filtered["id"].as_i64(), Some(id + 1));
}

#[tokio::test]
async fn an_organisation_without_the_service_owner_claim_subscribes_to_itself_only() {
    let server = FakeServer::start(config()).await;
    let events = Events::new(&server, EVENTS_SCOPE).await;
    let reply = events.create(&subscription("https://h.example.no/x", json!({ "subjectFilter": SENDER }))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json()["consumer"], "/organisation/991825827");
    let other = "urn:altinn:organization:identifier-no:313756270";
    let reply = events.create(&subscription("https://h.example.no/x", json!({ "subjectFilter": other }))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn create_is_idempotent_per_tuple_and_each_create_sends_a_new_handshake() {
    let server = FakeServer::start(config()).await;
    let receiver = Receiver::start(200, 200).await;
    let events = Events::new(&server, ALL_SCOPES).await;
    let first = events.subscribe(&server, subscription(&receiver.url, json!({}))).await;
    let again = events.create(&subscription(&receiver.url, json!({}))).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["id"].as_i64(), Some(i64::from(first)), "the same subscription");
    assert_eq!(again.json()["validated"], true, "found as stored");
    eventually("a second handshake", || receiver.validations().len() == 2).await;
    let handshakes = receiver.validations();
    assert_ne!(handshakes[0].body["id"], handshakes[1].body["id"], "a new validation event");
    let typed = events.create(&subscription(&receiver.url, json!({ "typeFilter": "x" }))).await.json();
    assert_ne!(typed["id"].as_i64(), Some(i64::from(first)), "another tuple, another subscription");
    // Another identity with the same tuple gets its own.
    let organisation = Events::new(&server, EVENTS_SCOPE).await;
    let own = organisation.create(&subscription(&receiver.url, json!({ "subjectFilter": SENDER }))).await.json();
    assert_eq!(server.events().subscriptions().len(), 3, "{own}");
}

#[tokio::test]
async fn get_and_delete_belong_to_the_creator_and_the_list_includes_unvalidated_ones() {
    let server = FakeServer::start(config()).await;
    let owner = Events::new(&server, ALL_SCOPES).await;
    let body = owner.create(&subscription("https://h.example.no/x", json!({}))).await.json();
    let id = body["id"].to_string();

    let list = owner.list().await.json();
    assert_eq!(list["count"], 1);
    assert_eq!(list["subscriptions"][0], body, "unvalidated and listed");
    // GET, list and DELETE need no events scope: only create checks it.
    let owner_without_scope = Events::new(&server, "altinn:serviceowner altinn:correspondence.write").await;
    assert_eq!(owner_without_scope.get(&id).await.status, StatusCode::OK);

    let stranger = Events::new(&server, EVENTS_SCOPE).await;
    assert_eq!(stranger.list().await.json(), json!({ "count": 0, "subscriptions": [] }));
    for reply in [stranger.get(&id).await, stranger.delete(&id).await] {
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::FORBIDDEN, ""));
    }
    for reply in [owner.get("999").await, owner.delete("999").await] {
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NOT_FOUND, ""));
    }
    let reply = owner.get("abc").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errors"]["id"], json!(["The value 'abc' is not valid."]));

    let deleted = owner.delete(&id).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (StatusCode::OK, ""));
    assert_eq!(owner.get(&id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(owner.list().await.json()["count"], 0);
}

#[tokio::test]
async fn plain_http_endpoints_are_refused_unless_the_fake_allows_them() {
    let strict = FakeServer::start(altinn_fake::FakeConfig { events_allow_http: false, ..config() }).await;
    let events = Events::new(&strict, ALL_SCOPES).await;
    let reply = events.create(&subscription("http://127.0.0.1:9/hook", json!({}))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json(), json!("Missing or invalid endpoint to push events towards"));
    let allowing = FakeServer::start(config()).await;
    let events = Events::new(&allowing, ALL_SCOPES).await;
    let reply = events.create(&subscription("http://127.0.0.1:9/hook", json!({}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "the one deliberate deviation, for local tests");
}
