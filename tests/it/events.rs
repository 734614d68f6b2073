//! The Altinn Events receiver over HTTP, against the real PostgreSQL: a push moves the named
//! letter's next status read to now and is recorded once; the handshake is answered; forged,
//! garbage, oversized and duplicate pushes change nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use altinn_outbox::config::{Config, Environment};
use altinn_outbox::events::receiver::{self, Receiver};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{TestApp, ORG};

const PUBLISHED: &str = "no.altinn.correspondence.correspondencepublished";

/// A running receiver of `app`'s database, with `tweak` applied to its settings.
struct Pushes {
    endpoint: String,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Pushes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Pushes {
    async fn start(app: &TestApp, tweak: impl FnOnce(&mut Config)) -> Pushes {
        let mut config = app.config.clone();
        config.environment = Environment::Custom;
        config.events.enabled = true;
        config.events.public_url = "https://outbox.example.no/altinn/events".into();
        config.events.listen = "127.0.0.1:0".into();
        tweak(&mut config);
        let settings = config.events().unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let receiver = Receiver::new(app.pool.clone(), settings).await.unwrap();
        let public = receiver.endpoint().expose().to_string();
        let path = public.strip_prefix("https://outbox.example.no").unwrap().to_string();
        let stop = CancellationToken::new();
        tokio::spawn(receiver::serve(listener, Arc::new(receiver), stop.clone()));
        let base = format!("http://{addr}");
        Pushes { endpoint: format!("{base}{path}"), base, http: reqwest::Client::new(), stop }
    }

    async fn push(&self, body: &Value) -> StatusCode {
        self.post(&self.endpoint, body.to_string()).await
    }

    async fn post(&self, url: &str, body: String) -> StatusCode {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        response.status()
    }
}

/// An event as Altinn pushes it (attributes in its order; no `data`).
fn event(id: &str, kind: &str, instance: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "https://platform.tt02.altinn.no/correspondence/api/v1/correspondence",
        "type": kind, "subject": "urn:altinn:organization:identifier-no:991825827",
        "time": "2026-12-05T08:00:03.438039Z", "resource": "urn:altinn:resource:outbox-test-resource",
        "resourceinstance": instance, "alternativesubject": "/organisation/991825827"
    })
}

/// A letter sent and awaiting its first status read an hour from now.
async fn sent_letter(app: &TestApp) -> (i64, Uuid) {
    let message = app.insert("event-letter", &[ORG]).await;
    app.drain().await;
    let d = app.delivery_of(message).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    (d.get("id"), d.get("correspondence_id"))
}

async fn app_reading_late() -> TestApp {
    TestApp::with(crate::common::fake_config(), |c| {
        c.status.first_poll_delay_ms = 3_600_000;
        c.status.max_poll_interval_ms = 3_600_000;
    })
    .await
}

async fn seconds_to_next_read(app: &TestApp, delivery: i64) -> f64 {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM next_poll_at - now())::float8 FROM altinn_outbox.delivery WHERE id = $1",
    )
    .bind(delivery)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn event_history(app: &TestApp, delivery: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT new_value, detail FROM altinn_outbox.history WHERE delivery_id = $1 AND kind = 'event' ORDER BY id",
    )
    .bind(delivery)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn stored_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.event").fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_push_makes_the_letter_be_read_at_once_and_the_read_decides() {
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    assert!(seconds_to_next_read(&app, delivery).await > 3_000.0);
    let pushes = Pushes::start(&app, |_| {}).await;

    let status = pushes.push(&event(&Uuid::new_v4().to_string(), PUBLISHED, &correspondence.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(seconds_to_next_read(&app, delivery).await <= 0.0, "the next read moved to now");
    assert_eq!(event_history(&app, delivery).await, [(PUBLISHED.to_string(), "push".to_string())]);

    // The read decides: the fake has published it, so the letter is delivered.
    app.drain().await;
    let d = app.delivery_of_any(delivery_message(&app, delivery).await).await;
    assert_eq!(d.get::<String, _>("state"), "delivered");
}

async fn delivery_message(app: &TestApp, delivery: i64) -> i64 {
    sqlx::query_scalar("SELECT message_id FROM altinn_outbox.delivery WHERE id = $1")
        .bind(delivery)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn duplicates_and_re_publications_are_recorded_once() {
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    let pushes = Pushes::start(&app, |_| {}).await;
    let id = Uuid::new_v4().to_string();
    let first = event(&id, PUBLISHED, &correspondence.to_string());
    assert_eq!(pushes.push(&first).await, StatusCode::OK);
    // The read is pushed back to later, as a read that found it unpublished would.
    sqlx::query("UPDATE altinn_outbox.delivery SET next_poll_at = now() + interval '1 hour' WHERE id = $1")
        .bind(delivery)
        .execute(&app.pool)
        .await
        .unwrap();
    // Altinn redelivers after a timeout (same id) and Correspondence re-publishes (new id).
    assert_eq!(pushes.push(&first).await, StatusCode::OK);
    let republished = event(&Uuid::new_v4().to_string(), PUBLISHED, &correspondence.to_string());
    assert_eq!(pushes.push(&republished).await, StatusCode::OK);

    assert_eq!(event_history(&app, delivery).await.len(), 1, "one history row for one change");
    assert!(seconds_to_next_read(&app, delivery).await > 3_000.0, "no second read was asked for");
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT id, first_of_kind FROM altinn_outbox.event ORDER BY received_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "the redelivery is not stored again: {rows:?}");
    assert_eq!(rows[0], (id, true));
    assert!(!rows[1].1, "the re-publication is kept but marked");

    // Another type of event about the same letter is news.
    let read = event(
        &Uuid::new_v4().to_string(),
        "no.altinn.correspondence.correspondencereceiverread",
        &correspondence.to_string(),
    );
    assert_eq!(pushes.push(&read).await, StatusCode::OK);
    assert_eq!(event_history(&app, delivery).await.len(), 2);
}

#[tokio::test]
async fn the_handshake_and_unknown_events_are_answered_and_harm_nothing() {
    let app = app_reading_late().await;
    let (delivery, _) = sent_letter(&app).await;
    let pushes = Pushes::start(&app, |_| {}).await;
    let handshake = json!({"specversion": "1.0", "id": Uuid::new_v4().to_string(),
        "source": "https://platform.tt02.altinn.no/events/api/v1/subscriptions/1619",
        "type": "platform.events.validatesubscription"});
    assert_eq!(pushes.push(&handshake).await, StatusCode::OK);
    assert_eq!(stored_events(&app).await, 0, "the handshake is not an event about a letter");

    let novel = json!({"id": "x-1", "type": "no.altinn.correspondence.somethingnew", "resourceinstance": "not-a-uuid",
        "extension": {"nested": [1, 2]}, "data": {"big": "x"}});
    assert_eq!(pushes.push(&novel).await, StatusCode::OK, "unknown types are kept, never an error");
    assert_eq!(stored_events(&app).await, 1);
    let notification = event("n-1", "no.altinn.correspondence.notificationcreated", &Uuid::new_v4().to_string());
    assert_eq!(pushes.push(&notification).await, StatusCode::OK, "an order id names no letter: recorded only");
    assert!(event_history(&app, delivery).await.is_empty());
    assert!(seconds_to_next_read(&app, delivery).await > 3_000.0);
}

#[tokio::test]
async fn forged_garbage_and_oversized_pushes_are_refused_and_change_nothing() {
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    let pushes = Pushes::start(&app, |c| c.events.max_body_bytes = 4096).await;
    let real = event(&Uuid::new_v4().to_string(), PUBLISHED, &correspondence.to_string());

    // A wrong, shortened or lengthened secret; another path; another method.
    let secret = pushes.endpoint.rsplit('/').next().unwrap().to_string();
    let mut wrong = secret.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    for path in [
        format!("/altinn/events/{wrong}"),
        format!("/altinn/events/{}", &secret[..secret.len() - 1]),
        format!("/altinn/events/{secret}x"),
        format!("/other/{secret}"),
        "/altinn/events/".to_string(),
        format!("/altinn/events/{secret}/more"),
    ] {
        let status = pushes.post(&format!("{}{path}", pushes.base), real.to_string()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let get = pushes.http.get(&pushes.endpoint).send().await.unwrap().status();
    assert_eq!(get, StatusCode::FORBIDDEN);

    // Garbage with the right secret.
    for body in ["", "not json", "[]", "{\"type\":\"x\"}", "{\"id\":\"\",\"type\":\"x\"}", "{\"id\":{},\"type\":\"x\"}"]
    {
        assert_eq!(pushes.post(&pushes.endpoint, body.into()).await, StatusCode::BAD_REQUEST, "{body:?}");
    }
    // Larger than the limit.
    let mut big = real.clone();
    big["padding"] = json!("x".repeat(5000));
    assert_eq!(pushes.push(&big).await, StatusCode::PAYLOAD_TOO_LARGE);

    // Many forged pushes at once: all refused, none stored.
    let forged = format!("{}/altinn/events/{wrong}", pushes.base);
    let tries = futures::future::join_all((0..2_000).map(|_| pushes.post(&forged, real.to_string()))).await;
    assert!(tries.iter().all(|s| *s == StatusCode::FORBIDDEN));

    assert_eq!(stored_events(&app).await, 0);
    assert!(event_history(&app, delivery).await.is_empty());
    assert!(seconds_to_next_read(&app, delivery).await > 3_000.0, "nothing was woken");
}

#[tokio::test]
async fn a_push_from_outside_the_allowed_networks_is_refused_even_through_the_proxy() {
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    // Altinn's range only; the test's 127.0.0.1 is the (trusted) proxy.
    let pushes = Pushes::start(&app, |c| c.events.allow_networks = Some(vec!["20.100.24.41/32".into()])).await;
    let real = event(&Uuid::new_v4().to_string(), PUBLISHED, &correspondence.to_string());
    assert_eq!(pushes.push(&real).await, StatusCode::FORBIDDEN, "the proxy itself is not Altinn");
    let through = |from: &'static str| {
        pushes.http.post(&pushes.endpoint).header("x-forwarded-for", from).body(real.to_string()).send()
    };
    assert_eq!(through("198.51.100.7").await.unwrap().status(), StatusCode::FORBIDDEN);
    // The client may write its own X-Forwarded-For: only what the proxy appended counts.
    assert_eq!(through("20.100.24.41, 198.51.100.7").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(stored_events(&app).await, 0);
    assert_eq!(through("20.100.24.41").await.unwrap().status(), StatusCode::OK);
    assert_eq!(event_history(&app, delivery).await.len(), 1);
}

#[tokio::test]
async fn every_instance_shares_one_secret_made_once() {
    let app = app_reading_late().await;
    let first = Pushes::start(&app, |_| {}).await;
    let second = Pushes::start(&app, |_| {}).await;
    let secret = |p: &Pushes| p.endpoint.rsplit('/').next().unwrap().to_string();
    assert_eq!(secret(&first), secret(&second));
    assert!(secret(&first).len() >= 43, "256 bits in URL-safe base64");
    let stored: String =
        sqlx::query("SELECT secret FROM altinn_outbox.event_receiver").fetch_one(&app.pool).await.unwrap().get(0);
    assert_eq!(stored, secret(&first));
}

/// As deploy/roles.sql sets them up: the worker makes the secret and stores events only
/// through the database's function; a producer can do neither, nor read what came.
#[tokio::test]
async fn the_worker_role_receives_events_and_a_producer_cannot_touch_them() {
    use crate::common::roles::{assert_denied, Roles, PRODUCER, WORKER};
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    let roles = Roles::apply(&app).await;
    let worker = roles.pool(WORKER).await;
    let secret =
        altinn_outbox::outbox::events::receiver_secret(&worker, altinn_outbox::events::new_secret).await.unwrap();
    assert!(secret.len() >= 43);
    let instance = correspondence.to_string();
    let event = altinn_outbox::outbox::events::Event {
        id: "w-1",
        event_type: PUBLISHED,
        resource: None,
        resource_instance: Some(&instance),
        time: None,
    };
    let received = altinn_outbox::outbox::events::receive(&worker, &event, altinn_outbox::outbox::events::Via::Push)
        .await
        .unwrap();
    assert!(received.stored);
    assert_eq!(received.deliveries, 1);
    assert_eq!(event_history(&app, delivery).await.len(), 1);
    assert_denied(
        &worker,
        "INSERT INTO altinn_outbox.event (id, type, via, first_of_kind) VALUES ('f', 't', 'push', true)",
    )
    .await;
    let producer = roles.pool(PRODUCER).await;
    assert_denied(&producer, "SELECT secret FROM altinn_outbox.event_receiver").await;
    assert_denied(&producer, "SELECT count(*) FROM altinn_outbox.event").await;
    assert_denied(&producer, "SELECT altinn_outbox.receive_event('p', 't', NULL, NULL, NULL, 'push', true)").await;
}

/// The receiver's own TLS, from PEM files: a push over HTTPS is taken, plain HTTP to the same
/// port gets no answer, and a certificate file that is not one stops the start naming it.
#[tokio::test]
async fn the_receiver_serves_tls_from_pem_files() {
    use altinn_outbox::events::tls::{acceptor, TlsListener};
    let app = app_reading_late().await;
    let (delivery, correspondence) = sent_letter(&app).await;
    let (cert, key) = (crate::common::fixture("events-tls-cert.pem"), crate::common::fixture("events-tls-key.pem"));
    let mut config = app.config.clone();
    config.environment = Environment::Custom;
    config.events.enabled = true;
    config.events.public_url = "https://localhost/altinn/events".into();
    config.events.tls_cert_file = Some(cert.clone());
    config.events.tls_key_file = Some(key.clone());
    let settings = config.events().unwrap().unwrap();
    let (cert_file, key_file) = settings.tls.clone().expect("both files set");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener::new(tcp, acceptor(&cert_file, &key_file).unwrap()).unwrap();
    let receiver = Receiver::new(app.pool.clone(), settings).await.unwrap();
    let path = receiver.endpoint().expose().strip_prefix("https://localhost").unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(receiver::serve(listener, Arc::new(receiver), stop.clone()));

    let trusted = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(trusted).build().unwrap();
    let push = event(&Uuid::new_v4().to_string(), PUBLISHED, &correspondence.to_string());
    let answer = https.post(format!("https://localhost:{port}{path}")).body(push.to_string()).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(event_history(&app, delivery).await.len(), 1);
    let plain =
        reqwest::Client::new().post(format!("http://127.0.0.1:{port}{path}")).body(push.to_string()).send().await;
    assert!(plain.is_err(), "plain HTTP to the TLS port gets no HTTP answer");
    stop.cancel();

    let err = acceptor(&key, &key).err().expect("a key is not a certificate");
    assert!(err.contains("events.tls_cert_file"), "{err}");
    config.events.tls_key_file = None;
    let err = config.events().unwrap_err().to_string();
    assert!(err.contains("events.tls_cert_file") && err.contains("both"), "{err}");
}
