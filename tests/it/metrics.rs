//! `/metrics`, `/healthz` and `/readyz` over HTTP, against the real PostgreSQL and the fake.
//!
//! Each test records into a recorder of its own, set as its thread's local recorder: a
//! `#[tokio::test]` runs everything (worker, clients, listener) on that one thread, so
//! tests running side by side never see each other's counts. One test installs the
//! process-wide recorder the daemon uses.

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::{TestApp, ORG};
use altinn_fake::{Endpoint, FakeConfig, FaultKind, FaultRule};
use altinn_outbox::config::Secret;
use altinn_outbox::outbox::DeliveryState;
use altinn_outbox::worker::{self, Context};
use altinn_outbox::{app, health};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

/// One sample of a scrape: its labels and value.
struct Sample {
    labels: HashMap<String, String>,
    value: f64,
}

/// A parsed scrape: samples by series name.
struct Scrape {
    samples: HashMap<String, Vec<Sample>>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples: HashMap<String, Vec<Sample>> = HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels_of(rest.strip_suffix('}').expect("labels close"))),
                None => (series, HashMap::new()),
            };
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            samples.entry(name.to_string()).or_default().push(Sample { labels, value });
        }
        Scrape { samples, text }
    }

    /// The sum over the series of `name` that carry every label given (0 when none does).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matches = |s: &&Sample| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v));
        self.samples.get(name).map_or(0.0, |all| all.iter().filter(matches).map(|s| s.value).sum())
    }

    fn has(&self, name: &str) -> bool {
        self.samples.contains_key(name)
    }
}

/// `k="v",k2="v2"` (our values have no commas or quotes).
fn labels_of(text: &str) -> HashMap<String, String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// The health listener on a free port, as the daemon runs it; stops when the token drops.
struct Listener {
    port: u16,
    _stop: tokio_util::sync::DropGuard,
}

impl Listener {
    async fn start(ctx: Arc<Context>, handle: PrometheusHandle) -> Listener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        tokio::spawn(health::serve(listener, ctx, handle, stop.clone()));
        Listener { port, _stop: stop.drop_guard() }
    }

    /// `GET` a path: status, content type and body.
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port)).await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn scrape(&self) -> Scrape {
        let (status, content_type, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Scrape::parse(body)
    }
}

/// A recorder of the test's own, set for its thread (leaked: the guard borrows it).
fn local_recorder() -> (metrics::LocalRecorderGuard<'static>, PrometheusHandle) {
    let recorder: &'static PrometheusRecorder = Box::leak(Box::new(altinn_outbox::metrics::build()));
    let guard = metrics::set_default_local_recorder(recorder);
    altinn_outbox::metrics::describe();
    (guard, recorder.handle())
}

/// Deliveries per state, straight from the table.
async fn database_counts(app: &TestApp) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, count(*) FROM altinn_outbox.delivery GROUP BY state")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    rows.into_iter().collect()
}

const SENDS: &str = "altinn_outbox_sends_total";
const POLLS: &str = "altinn_outbox_status_polls_total";
const REFRESHES: &str = "altinn_outbox_token_refreshes_total";
const RECLAIMED: &str = "altinn_outbox_leases_reclaimed_total";
const DURATION_COUNT: &str = "altinn_outbox_request_duration_seconds_count";

#[tokio::test]
async fn sends_polls_requests_and_the_outbox_gauges_match_what_happened() {
    let (_local, handle) = local_recorder();
    let fake = FakeConfig { unknown_resources: vec!["no-such-resource".into()], ..crate::common::fake_config() };
    let app = TestApp::with(fake, |_| {}).await;
    let listener = Listener::start(app.ctx.clone(), handle).await;

    for reference in ["m-1", "m-2", "m-3"] {
        app.insert(reference, &[ORG]).await;
    }
    // Altinn refuses an unknown resource with 400 / errorCode 1036.
    sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ('no-such-resource', 'refused', ARRAY['991825827'], 't', 'b')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.drain().await;
    app.fake.state().publish_all_now();
    app.make_all_due().await;
    app.drain().await;
    // Two more wait unsent; one of them was inserted an hour ago.
    let waiting = app.insert("waiting", &[ORG]).await;
    app.insert("waiting-too", &[ORG]).await;
    sqlx::query("UPDATE altinn_outbox.message SET created_at = now() - interval '1 hour' WHERE id = $1")
        .bind(waiting)
        .execute(&app.pool)
        .await
        .unwrap();

    // A file for two recipients is uploaded once, before either is sent: it waits for that.
    let shared = app.insert("shared-file", &[ORG, "13896396174"]).await;
    app.add_file(shared).await;

    let s = listener.scrape().await;
    assert_eq!(s.sum("altinn_outbox_database_up", &[]), 1.0);
    let counts = database_counts(&app).await;
    let count = |state: &str| counts.get(state).copied().unwrap_or(0);
    assert_eq!((count("delivered"), count("failed"), count("pending"), count("waiting_files")), (3, 1, 2, 2));
    for state in DeliveryState::ALL.map(DeliveryState::as_str) {
        let expected = counts.get(state).copied().unwrap_or(0) as f64;
        assert_eq!(s.sum("altinn_outbox_deliveries", &[("state", state)]), expected, "{state}");
    }
    assert_eq!(s.sum("altinn_outbox_attachment_uploads", &[("state", "pending")]), 1.0);
    assert_eq!(s.sum("altinn_outbox_attachment_uploads", &[]), 1.0, "one file, one upload");
    let age = s.sum("altinn_outbox_oldest_pending_age_seconds", &[]);
    assert!((3600.0..3600.0 + 600.0).contains(&age), "the hour-old row's age: {age}");

    let sent = app.fake.state().correspondences().len() as f64;
    assert_eq!(sent, 3.0);
    assert_eq!(s.sum(SENDS, &[("outcome", "sent"), ("error_code", "")]), sent);
    assert_eq!(s.sum(SENDS, &[("outcome", "failed"), ("error_code", "altinn:1036")]), 1.0);
    assert_eq!(s.sum(SENDS, &[]), 4.0, "one per send processed");
    assert_eq!(s.sum(POLLS, &[("outcome", "ok")]), 3.0);

    let altinn = |endpoint| s.sum(DURATION_COUNT, &[("system", "altinn"), ("endpoint", endpoint)]);
    assert_eq!(altinn("initialize"), app.initialize_requests() as f64);
    assert_eq!(s.sum(DURATION_COUNT, &[("endpoint", "initialize"), ("status", "4xx")]), 1.0, "the refused one");
    assert_eq!(s.sum(DURATION_COUNT, &[("endpoint", "initialize"), ("status", "2xx")]), 3.0);
    assert_eq!(altinn("overview"), 3.0, "routine reads use the overview");
    assert_eq!(altinn("details"), 0.0, "no notification to learn of");
    assert_eq!(altinn("token_exchange"), app.fake.state().exchanges() as f64);
    let grants = s.sum(DURATION_COUNT, &[("system", "maskinporten"), ("endpoint", "token")]);
    assert_eq!(grants, app.fake.state().grants_accepted() as f64);
    assert_eq!(grants, 1.0, "one token for everything");
    let buckets = &s.samples["altinn_outbox_request_duration_seconds_bucket"];
    assert!(buckets.iter().any(|b| b.labels["le"] == "300"), "buckets reach the upload timeout");
    assert_eq!(s.sum(REFRESHES, &[("outcome", "ok")]), 1.0);
    assert_eq!(s.sum(REFRESHES, &[("outcome", "rejected")]), 0.0, "present at zero before any failure");
    assert!(s.text.contains("# HELP altinn_outbox_sends_total"), "{}", s.text);
    assert!(!s.text.contains(ORG), "no recipient in any label");
}

#[tokio::test]
async fn failed_token_refreshes_retries_and_reclaimed_leases_are_counted() {
    let (_local, handle) = local_recorder();
    let app = TestApp::start().await;
    let listener = Listener::start(app.ctx.clone(), handle).await;

    // Maskinporten is down once: the send waits without using an attempt, then goes.
    app.fake.faults().add(FaultRule::times(Endpoint::Token, FaultKind::Status(503), 1));
    app.insert("token-trouble", &[ORG]).await;
    app.drain().await;
    // Altinn fails once with a 500: a retry that uses an attempt.
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::Status(500), 1));
    app.make_all_due().await;
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.count_in("awaiting_status").await, 1);
    // A status read that fails is read again later.
    app.fake.faults().add(FaultRule::times(Endpoint::Overview, FaultKind::Status(503), 1));
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.count_in("awaiting_status").await, 1);

    let s = listener.scrape().await;
    assert_eq!(s.sum(REFRESHES, &[("outcome", "unavailable")]), 1.0);
    assert_eq!(s.sum(REFRESHES, &[("outcome", "ok")]), 1.0);
    assert_eq!(s.sum(SENDS, &[("outcome", "deferred"), ("error_code", "maskinporten:503")]), 1.0);
    assert_eq!(s.sum(SENDS, &[("outcome", "retry"), ("error_code", "http:500")]), 1.0);
    assert_eq!(s.sum(SENDS, &[("outcome", "sent")]), 1.0);
    assert_eq!(s.sum(POLLS, &[("outcome", "retry"), ("error_code", "http:503")]), 1.0);
    assert_eq!(s.sum(POLLS, &[]), 1.0);
    assert_eq!(s.sum(DURATION_COUNT, &[("endpoint", "token"), ("status", "5xx")]), 1.0);
    assert_eq!(s.sum(DURATION_COUNT, &[("endpoint", "initialize"), ("status", "5xx")]), 1.0);
    assert_eq!(s.sum(RECLAIMED, &[("kind", "delivery")]), 0.0);

    // A worker claims and dies; its lease runs out; the sweep takes the row back.
    app.insert("orphan", &[ORG]).await;
    assert_eq!(worker::claim(&app.ctx, 10).await.unwrap().len(), 1);
    sqlx::query("UPDATE altinn_outbox.delivery SET locked_until = now() - interval '1 second' WHERE state = 'sending'")
        .execute(&app.pool)
        .await
        .unwrap();
    worker::reclaim(&app.ctx).await;
    let s = listener.scrape().await;
    assert_eq!(s.sum(RECLAIMED, &[("kind", "delivery")]), 1.0);
    assert_eq!(s.sum(RECLAIMED, &[("kind", "upload")]), 0.0);
    assert_eq!(s.sum("altinn_outbox_deliveries", &[("state", "pending")]), 1.0, "the orphan waits again");
}

#[tokio::test]
async fn with_the_database_down_metrics_still_answer_and_readiness_says_why() {
    let (_local, handle) = local_recorder();
    let app = TestApp::start().await;
    let mut config = app.config.clone();
    // Nothing listens on port 1: every connection is refused at once.
    config.database.url = Secret::new("postgres://postgres@127.0.0.1:1/altinn_outbox");
    config.database.connect_timeout_ms = 500;
    let ctx = Arc::new(app::build_context(&config).unwrap());
    let listener = Listener::start(ctx, handle).await;

    let s = listener.scrape().await;
    assert_eq!(s.sum("altinn_outbox_database_up", &[]), 0.0);
    assert!(!s.has("altinn_outbox_deliveries") && !s.has("altinn_outbox_oldest_pending_age_seconds"), "{}", s.text);
    assert!(s.has(REFRESHES), "the counted metrics are still there");

    let (status, _, body) = listener.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let readiness: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readiness["ready"], false);
    assert!(readiness["database"].as_str().unwrap().starts_with("unreachable"), "{body}");
    assert_eq!(listener.get("/healthz").await.2, "ok\n", "alive, though not ready");
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_the_same_listener() {
    let (_local, handle) = local_recorder();
    let app = TestApp::start().await;
    let listener = Listener::start(app.ctx.clone(), handle).await;
    assert_eq!(listener.get("/healthz").await, (200, "text/plain; charset=utf-8".into(), "ok\n".into()));
    let (status, _, body) = listener.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let readiness: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((readiness["ready"].as_bool(), readiness["database"].as_str()), (Some(true), Some("ok")));
    assert_eq!(readiness["altinn"], "up");
    assert_eq!(listener.get("/nothing").await.0, 404);
}

#[test]
fn the_daemon_recorder_installs_once_per_process() {
    // No local recorder here: this thread records into the global one.
    let handle = altinn_outbox::metrics::install().expect("the first install");
    altinn_outbox::metrics::send_done("sent", "");
    altinn_outbox::metrics::send_done("failed", "a code with spaces and an id 13896396174");
    let s = Scrape::parse(handle.render());
    assert_eq!(s.sum(SENDS, &[("outcome", "sent")]), 1.0);
    assert_eq!(s.sum(SENDS, &[("outcome", "failed"), ("error_code", "other")]), 1.0, "text is never a label");
    assert_eq!(s.sum(REFRESHES, &[]), 0.0);
    assert!(s.has(REFRESHES), "described and present at zero");
    assert!(altinn_outbox::metrics::install().is_err(), "a second recorder is refused");
}
