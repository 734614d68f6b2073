//! Subscriptions and the pull against the fake Altinn Events, with the daemon's receiver on
//! 127.0.0.1 (`events_allow_http`): a subscription per resource, validated by the fake's
//! handshake to the real receiver; one instance at a time; an endpoint that never validates
//! reported and POSTed again; a push that delivers a letter long before the safety poll; the
//! pull that catches up what pushes missed; push and pull storing an event once.

use std::sync::Arc;
use std::time::Duration;

use altinn_fake::{AttemptKind, FakeConfig};
use altinn_outbox::config::{Config, Environment};
use altinn_outbox::events::manage::Manager;
use altinn_outbox::events::receiver::{self, Receiver};
use altinn_outbox::events::subscriptions::Ensured;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{fake_config, TestApp, ORG};

const RESOURCE: &str = "outbox-test-resource";
pub(crate) const PUBLISHED: &str = "no.altinn.correspondence.correspondencepublished";

/// A test app with events on, its receiver listening, and the manager of its subscriptions.
pub(crate) struct Events {
    pub(crate) app: TestApp,
    endpoint: String,
    receiver: CancellationToken,
    manager: Manager,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.receiver.cancel();
    }
}

fn events_fake() -> FakeConfig {
    let mut fake = fake_config();
    fake.clients[0].scopes.push("altinn:events.subscribe".into());
    fake.events_allow_http = true;
    // Retries in milliseconds, and events visible to the pull at once.
    fake.events_time_scale = 0.001;
    fake.events_visibility_delay_ms = 0;
    fake
}

impl Events {
    pub(crate) async fn start(tweak: impl FnOnce(&mut Config)) -> Events {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = TestApp::with(events_fake(), |c| {
            c.environment = Environment::Custom;
            c.events.enabled = true;
            c.events.public_url = format!("http://{addr}/altinn/events");
            c.events.listen = addr.to_string();
            c.events.allow_networks = Some(vec![]);
            // The safety poll an hour away: only an event can make a letter be read soon.
            c.status.first_poll_delay_ms = 3_600_000;
            c.status.max_poll_interval_ms = 3_600_000;
            tweak(c);
        })
        .await;
        let settings = app.config.events().unwrap().unwrap();
        let receiver = Receiver::new(app.pool.clone(), settings.clone()).await.unwrap();
        let endpoint = receiver.endpoint();
        let stop = CancellationToken::new();
        tokio::spawn(receiver::serve(listener, Arc::new(receiver), stop.clone()));
        let manager = Manager::new(app.ctx.clone(), endpoint.clone(), settings);
        Events { app, endpoint: endpoint.expose().to_string(), receiver: stop, manager }
    }

    /// A pass that must be this instance's.
    async fn pass(&self) -> Vec<Ensured> {
        self.manager.pass(false).await.unwrap().expect("this instance holds the lease").subscriptions
    }

    async fn until_validated_at_the_fake(&self, count: usize) {
        let fake = self.app.fake.events();
        until(|| fake.subscriptions().iter().filter(|s| s.validated).count() == count).await;
    }

    async fn stored_subscriptions(&self) -> Vec<(String, i64, bool)> {
        sqlx::query_as(
            "SELECT resource_id, subscription_id, validated FROM altinn_outbox.event_subscription ORDER BY 1",
        )
        .fetch_all(&self.app.pool)
        .await
        .unwrap()
    }

    /// A letter sent (one batch: its send, not the read an event may bring forward at once).
    async fn sent_letter(&self, reference: &str) -> (i64, i64, Uuid) {
        let message = self.app.insert(reference, &[ORG]).await;
        altinn_outbox::worker::process_next_batch(&self.app.ctx).await.unwrap();
        let d = self.app.delivery_of(message).await;
        assert_eq!(d.get::<String, _>("state"), "awaiting_status");
        (message, d.get("id"), d.get("correspondence_id"))
    }

    async fn state(&self, message: i64) -> String {
        self.app.delivery_of(message).await.get("state")
    }

    async fn read_due(&self, delivery: i64) -> bool {
        sqlx::query_scalar("SELECT next_poll_at <= now() FROM altinn_outbox.delivery WHERE id = $1")
            .bind(delivery)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }

    async fn stored_events(&self, via: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.event WHERE via = $1")
            .bind(via)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }
}

/// Waits (up to 10 s) for `done`, which the fake's own tasks make true.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s");
}

#[tokio::test]
async fn a_subscription_is_made_once_per_resource_and_validated_by_the_handshake() {
    let events = Events::start(|c| c.events.resources = vec!["another-resource".into()]).await;
    events.sent_letter("subscribed").await;

    let first = events.pass().await;
    assert_eq!(first.len(), 2, "the letter's resource and the configured one: {first:?}");
    events.until_validated_at_the_fake(2).await;
    let second = events.pass().await;
    assert!(second.iter().all(|e| matches!(e, Ensured::Validated { .. })), "{second:?}");
    events.pass().await;

    let at_fake = events.app.fake.events().subscriptions();
    assert_eq!(at_fake.len(), 2, "one subscription per resource, made once");
    let mut filters: Vec<_> = at_fake.iter().map(|s| s.resource_filter.clone()).collect();
    filters.sort();
    assert_eq!(filters, ["urn:altinn:resource:another-resource", "urn:altinn:resource:outbox-test-resource"]);
    assert!(at_fake.iter().all(|s| s.end_point == events.endpoint && s.type_filter.is_none()));
    let stored = events.stored_subscriptions().await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(_, _, validated)| *validated), "{stored:?}");
    let validations = events.app.fake.events().attempts().iter().filter(|a| a.kind == AttemptKind::Validation).count();
    assert_eq!(validations, 2, "one handshake per subscription");
}

#[tokio::test]
async fn two_instances_ensuring_at_once_make_one_subscription() {
    let events = Events::start(|_| {}).await;
    events.sent_letter("two-instances").await;
    let settings = events.app.config.events().unwrap().unwrap();
    let endpoint = altinn_outbox::config::Secret::new(events.endpoint.clone());
    let other = Manager::new(events.app.second_worker("other"), endpoint, settings);

    let (a, b) = tokio::join!(events.manager.pass(true), other.pass(true));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "one instance holds the lease: {a:?} {b:?}");
    // Whichever won, the other is kept out while the holder renews it.
    let outsider = if a.is_some() { &other } else { &events.manager };
    assert!(outsider.pass(false).await.unwrap().is_none(), "the holder keeps it while it is renewed");
    assert_eq!(events.app.fake.events().subscriptions().len(), 1);
    assert_eq!(events.stored_subscriptions().await.len(), 1);
}

#[tokio::test]
async fn an_endpoint_that_never_validates_is_reported_and_posted_again() {
    let events = Events::start(|c| c.events.validation_timeout_ms = 1).await;
    events.app.fake.events().faults().fail_validation_for(&events.endpoint);
    // One handshake per POST: a second one is the re-POST's.
    events.app.fake.events().set_validation_retry_ms(vec![]);
    events.sent_letter("never-validated").await;

    assert!(matches!(events.pass().await[..], [Ensured::Waiting { .. }]));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(matches!(events.pass().await[..], [Ensured::Overdue { .. }]));
    let readiness = altinn_outbox::health::readiness(&events.app.ctx).await;
    assert_eq!(readiness.unvalidated_subscriptions.len(), 1, "{readiness:?}");
    let shown = &readiness.unvalidated_subscriptions[0];
    assert!(shown.contains(RESOURCE) && !shown.contains(&events.endpoint), "never the endpoint: {shown}");

    let fake = events.app.fake.events();
    assert_eq!(fake.subscriptions().len(), 1, "POSTed again, not made twice");
    until(|| fake.attempts().iter().filter(|a| a.kind == AttemptKind::Validation).count() == 2).await;

    // Fixed: the next handshake succeeds, and the report ends.
    fake.faults().allow_validation_for(&events.endpoint);
    tokio::time::sleep(Duration::from_millis(5)).await;
    events.pass().await;
    events.until_validated_at_the_fake(1).await;
    assert!(matches!(events.pass().await[..], [Ensured::Validated { .. }]));
    assert!(altinn_outbox::health::readiness(&events.app.ctx).await.unvalidated_subscriptions.is_empty());
}

#[tokio::test]
async fn a_pushed_publication_delivers_the_letter_long_before_the_safety_poll() {
    let events = Events::start(|_| {}).await;
    events.app.insert("warm-up", &[ORG]).await; // so that the resource has a letter
    events.pass().await;
    events.until_validated_at_the_fake(1).await;

    let (message, delivery, _) = events.sent_letter("pushed").await;
    // The fake publishes the letter, pushes correspondencepublished, the receiver wakes it.
    for _ in 0..500 {
        if events.read_due(delivery).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(events.read_due(delivery).await, "the push moved the read to now");
    events.app.drain().await;
    assert_eq!(events.state(message).await, "delivered");
    let pushed = events.stored_events("push").await;
    assert!(pushed >= 1);

    // Push and pull: the pull reads the same events and stores none again.
    let read = events.manager.pull(RESOURCE).await.unwrap();
    assert_eq!(read.stored, 0, "{read:?}");
    assert!(read.duplicates >= 1, "{read:?}");
    assert_eq!(events.stored_events("pull").await, 0);
    assert_eq!(events.stored_events("push").await, pushed);
}

#[tokio::test]
async fn the_pull_catches_up_what_pushes_missed() {
    let events = Events::start(|_| {}).await;
    events.app.insert("warm-up", &[ORG]).await;
    events.pass().await;
    events.until_validated_at_the_fake(1).await;
    events.receiver.cancel(); // the receiver (or its proxy) is down

    let (message, delivery, correspondence) = events.sent_letter("pulled").await;
    let fake = events.app.fake.events();
    let id = correspondence.to_string();
    until(|| fake.published().iter().any(|e| e.event_type == PUBLISHED && e.resource_instance == id)).await;
    assert!(!events.read_due(delivery).await, "no push came through");

    let read = events.manager.pull(RESOURCE).await.unwrap();
    assert!(read.stored >= 1, "{read:?}");
    assert!(events.read_due(delivery).await, "the pulled event moved the read to now");
    events.app.drain().await;
    assert_eq!(events.state(message).await, "delivered");

    // The cursor moved: the next pull reads nothing again.
    assert_eq!(events.manager.pull(RESOURCE).await.unwrap(), Default::default());
}

#[tokio::test]
async fn the_events_command_subscribes_lists_and_deletes_without_showing_the_endpoint() {
    use altinn_outbox::admin::{self, EventsAction, Exit, Output};
    let events = Events::start(|_| {}).await;
    events.app.insert("admin", &[ORG]).await;
    let json = Output { json: true };
    let run = |action| admin::execute(&events.app.config, admin::Command::Events { action });

    let subscribed = run(EventsAction::Subscribe { resource: None, output: json }).await.unwrap();
    assert_eq!(subscribed.exit, Exit::Success, "validated within the wait: {subscribed:?}");
    assert_eq!(subscribed.json["subscriptions"][0]["validated"]["resource"], RESOURCE);

    let listed = run(EventsAction::List { output: json }).await.unwrap();
    assert_eq!(listed.exit, Exit::Success);
    assert_eq!(listed.json["stored"][0]["validated"], true);
    assert_eq!(listed.json["altinn"][0]["validated"], true);
    assert_eq!(listed.json["altinn"][0]["current_endpoint"], true);
    let secret = events.endpoint.rsplit('/').next().unwrap();
    assert!(!listed.json.to_string().contains(secret) && !listed.table.contains(secret), "never the secret");
    assert!(listed.table.contains(RESOURCE), "{}", listed.table);

    let deleted = run(EventsAction::Delete { id: None, resource: Some(RESOURCE.into()), output: json }).await.unwrap();
    assert_eq!(deleted.exit, Exit::Success, "{deleted:?}");
    assert!(events.app.fake.events().subscriptions().is_empty());
    assert!(events.stored_subscriptions().await.is_empty());
    let again = run(EventsAction::Delete { id: Some(1), resource: None, output: json }).await.unwrap();
    assert_eq!(again.exit, Exit::NotFound);
}

#[tokio::test]
async fn the_worker_role_manages_subscriptions_and_pulls() {
    let events = Events::start(|_| {}).await;
    let roles = crate::common::roles::Roles::apply(&events.app).await;
    let worker = Arc::new(roles.worker_context(&events.app));
    let settings = events.app.config.events().unwrap().unwrap();
    let endpoint = altinn_outbox::config::Secret::new(events.endpoint.clone());
    let manager = Manager::new(worker.clone(), endpoint, settings);
    events.app.insert("as-worker", &[ORG]).await;

    let first = manager.pass(true).await.expect("the worker may take the lease, read and record");
    assert!(matches!(first.unwrap().subscriptions[..], [Ensured::Waiting { .. } | Ensured::Validated { .. }]));
    events.until_validated_at_the_fake(1).await;
    let later = manager.pass(true).await.unwrap().unwrap();
    assert!(matches!(later.subscriptions[..], [Ensured::Validated { .. }]), "{later:?}");
    manager.pull(RESOURCE).await.expect("the worker may store pulled events and move the cursor");
    assert!(altinn_outbox::outbox::subscriptions::overdue(&worker.pool).await.unwrap().is_empty());
    assert!(altinn_outbox::outbox::subscriptions::forget(&worker.pool, RESOURCE).await.unwrap(), "events delete");
    altinn_outbox::outbox::subscriptions::release_lease(&worker.pool, &worker.settings.instance).await.unwrap();
    worker.pool.close().await;
}

#[tokio::test]
async fn the_loop_subscribes_pulls_and_gives_the_lease_up_at_shutdown() {
    let events = Events::start(|c| c.events.subscription_check_interval_ms = 50).await;
    events.app.insert("loop", &[ORG]).await;
    let settings = events.app.config.events().unwrap().unwrap();
    let endpoint = altinn_outbox::config::Secret::new(events.endpoint.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(altinn_outbox::events::manage::run(
        Manager::new(events.app.ctx.clone(), endpoint, settings),
        shutdown.clone(),
    ));
    events.until_validated_at_the_fake(1).await;
    for _ in 0..250 {
        if events.stored_subscriptions().await.iter().all(|(_, _, validated)| *validated) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events.stored_subscriptions().await.len(), 1);
    assert!(events.stored_subscriptions().await[0].2, "the loop re-read it until validated");
    let pulled: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.event_cursor WHERE pulled_at IS NOT NULL")
        .fetch_one(&events.app.pool)
        .await
        .unwrap();
    assert_eq!(pulled, 1, "pulled at start");

    let settings = events.app.config.events().unwrap().unwrap();
    let endpoint = altinn_outbox::config::Secret::new(events.endpoint.clone());
    let other = Manager::new(events.app.second_worker("other"), endpoint, settings);
    assert!(!other.take_lease().await.unwrap(), "held by the running loop");
    shutdown.cancel();
    running.await.unwrap();
    assert!(other.take_lease().await.unwrap(), "given up at shutdown: another instance takes it at once");
}

#[tokio::test]
async fn check_proves_the_token_may_use_altinn_events() {
    let events = Events::start(|_| {}).await;
    let report = altinn_outbox::check::check(&events.app.config, &[]).await;
    let step = report.steps.iter().find(|s| s.step == "events").expect("an events step with events on");
    assert!(step.ok, "{step:?}");
    assert!(step.detail.contains("0 subscriptions"), "{step:?}");
}
