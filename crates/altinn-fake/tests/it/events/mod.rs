//! The fake Altinn Events, driven as the daemon will drive it: subscriptions over HTTP with
//! exchanged tokens, a tiny receiver (`receiver`) standing in for the daemon's webhook, and
//! the fake's test API for what it published, attempted and gave up on.

mod catalogue;
mod faults;
mod pull;
mod push;
mod receiver;
mod subscriptions;

use std::time::Duration;

use altinn_fake::{FakeConfig, FakeEvent, FakeServer};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{exchange, grant, post_grant, Api, RESOURCE};

/// Correspondence and Events with one token, as the contract recommends.
const ALL_SCOPES: &str = "altinn:serviceowner altinn:correspondence.write altinn:events.subscribe";
const EVENTS_SCOPE: &str = "altinn:events.subscribe";
const RESOURCE_URN: &str = "urn:altinn:resource:outbox-test-resource";
const SENDER: &str = "urn:altinn:organization:identifier-no:991825827";
const TYPE: &str = "no.altinn.correspondence.";

/// The crate's test config, its client allowed the events scope, plain-HTTP endpoints
/// allowed (the receiver has no TLS) and events visible to the pull API at once.
fn config() -> FakeConfig {
    let mut config = super::config();
    config.clients[0].scopes = ALL_SCOPES.split(' ').map(String::from).collect();
    config.events_allow_http = true;
    config.events_visibility_delay_ms = 0;
    config
}

/// An Altinn token whose Maskinporten grant asked for `scope`.
async fn token(server: &FakeServer, scope: &str) -> String {
    let (status, body) = post_grant(server, &grant(server, json!({ "scope": scope }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let maskinporten = body["access_token"].as_str().unwrap();
    exchange(server, maskinporten, None).await.text().await.unwrap()
}

/// One answer of the fake, kept whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A client of the fake Events with one token.
struct Events {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Events {
    async fn new(server: &FakeServer, scope: &str) -> Events {
        let token = Some(token(server, scope).await);
        Events { base: format!("{}/events/api/v1", server.base_url()), token, http: reqwest::Client::new() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Reply { status, headers, text: response.text().await.unwrap() }
    }

    async fn create(&self, body: &Value) -> Reply {
        self.send(self.http.post(format!("{}/subscriptions", self.base)).json(body)).await
    }

    async fn list(&self) -> Reply {
        self.send(self.http.get(format!("{}/subscriptions", self.base))).await
    }

    async fn get(&self, id: &str) -> Reply {
        self.send(self.http.get(format!("{}/subscriptions/{id}", self.base))).await
    }

    async fn delete(&self, id: &str) -> Reply {
        self.send(self.http.delete(format!("{}/subscriptions/{id}", self.base))).await
    }

    async fn pull(&self, query: &str) -> Reply {
        self.send(self.http.get(format!("{}/events?{query}", self.base))).await
    }

    /// Creates a subscription and waits for its handshake to succeed; its id.
    async fn subscribe(&self, server: &FakeServer, body: Value) -> i32 {
        let reply = self.create(&body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.json()["id"].as_i64().unwrap() as i32;
        eventually("the handshake", || server.events().subscriptions().iter().any(|s| s.id == id && s.validated)).await;
        id
    }
}

/// A subscription body for `endpoint` on the test resource, with `extra` members.
fn subscription(endpoint: &str, extra: Value) -> Value {
    let mut body = json!({ "endPoint": endpoint, "resourceFilter": RESOURCE_URN });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Polls `done` every 10 ms for up to 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The events of `name` (without the type prefix) the fake registered.
fn published(server: &FakeServer, name: &str) -> Vec<FakeEvent> {
    let full = format!("{TYPE}{name}");
    server.events().published().into_iter().filter(|e| e.event_type == full).collect()
}

/// Sends one letter to `recipient` through the Correspondence API; its id.
async fn send_letter(server: &FakeServer, recipient: &str) -> String {
    let api = Api::new(server).await;
    let (status, body) = api.initialize(&super::message(&[recipient], None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string()
}

#[test]
fn the_resource_urn_names_the_test_resource() {
    assert_eq!(RESOURCE_URN, format!("urn:altinn:resource:{RESOURCE}"));
}
