//! Configuration faults: a token without the write scope, a resource Altinn Authorization
//! denies. Nothing fails and no attempt is used while an operator can still fix it; the
//! fault is said once per resource, in `/readyz` and in the metric; other resources keep
//! going; rows fail with the fault's code only past the age limit. And `check --resource`,
//! run as the real binary, names each fault.

use std::process::{Command, Output};

use crate::common::logs::{CaptureGuard, Captured, Format};
use crate::common::{TestApp, RESOURCE};
use altinn_fake::FakeConfig;
use altinn_outbox::altinn::Fault;
use altinn_outbox::health;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use sqlx::Row;
use tracing::Level;

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");
const WRITE: &str = "altinn:correspondence.write";
/// A resource Altinn Authorization denies in these tests.
const LOCKED: &str = "locked-resource";

/// Every request goes as it comes (no probe pause): the tests move the rows' clock with
/// `make_all_due`, and the client's own clock cannot be moved from here. The hold itself is
/// tested on the registry, with explicit instants, and in reliability scenario 13.
async fn app(fake: FakeConfig, tweak: impl FnOnce(&mut altinn_outbox::config::Config)) -> TestApp {
    TestApp::with(fake, |c| {
        c.altinn.config_fault_probe_ms = 0;
        tweak(c);
    })
    .await
}

/// The log lines of this thread (the test's runtime runs the worker on it), as JSON; see
/// `common::logs` for why other tests logging the same events meanwhile do not disturb it.
#[derive(Clone, Default)]
struct Log(Captured);

impl Log {
    fn capture(&self) -> CaptureGuard {
        self.0.on_this_thread(Format::Json, Level::INFO)
    }

    fn errors(&self) -> Vec<Value> {
        let text = self.0.text();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|l| l["level"] == "ERROR").collect()
    }

    fn contains(&self, text: &str) -> bool {
        self.0.text().contains(text)
    }
}

/// A recorder of the test's own, set for its thread (leaked: the guard borrows it).
fn local_recorder() -> (metrics::LocalRecorderGuard<'static>, PrometheusHandle) {
    let recorder = Box::leak(Box::new(altinn_outbox::metrics::build()));
    (metrics::set_default_local_recorder(recorder), recorder.handle())
}

/// The value of `altinn_outbox_config_faults{resource, fault}`, if the series exists.
fn fault_gauge(handle: &PrometheusHandle, resource: &str, fault: &str) -> Option<f64> {
    let series = format!("altinn_outbox_config_faults{{fault=\"{fault}\",resource=\"{resource}\"}} ");
    let alternative = format!("altinn_outbox_config_faults{{resource=\"{resource}\",fault=\"{fault}\"}} ");
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&series).or_else(|| l.strip_prefix(&alternative)).map(|v| v.parse().unwrap()))
}

/// (state, attempts, error_code) of the one delivery of a message.
async fn row(app: &TestApp, message_id: i64) -> (String, i32, Option<String>) {
    let d = app.delivery_of(message_id).await;
    (d.get("state"), d.get("attempts"), d.get("error_code"))
}

fn waiting(code: &str) -> (String, i32, Option<String>) {
    ("pending".into(), 0, Some(code.into()))
}

#[tokio::test]
async fn a_missing_scope_fails_nothing_uses_no_attempt_says_so_once_and_the_grant_lets_the_rows_go() {
    let log = Log::default();
    let _log = log.capture();
    let (_metrics, handle) = local_recorder();
    let fake = FakeConfig { withheld_scopes: vec![WRITE.into()], ..crate::common::fake_config() };
    let app = app(fake, |_| {}).await;
    let mut ids = Vec::new();
    for reference in ["s-1", "s-2", "s-3"] {
        ids.push(app.insert_on(RESOURCE, reference).await);
    }

    for round in 0..3 {
        app.drain().await;
        for id in &ids {
            assert_eq!(row(&app, *id).await, waiting("http:403"), "round {round}");
        }
        app.make_all_due().await;
    }
    assert_eq!(app.initialize_requests(), 9, "three rounds of three requests, each refused once");
    assert_eq!(app.count_in("failed").await, 0);
    let message: String = app.delivery_of(ids[0]).await.get("error_message");
    assert!(message.contains(WRITE), "{message}");

    let readiness = health::readiness(&app.ctx).await;
    assert!(!readiness.ready, "{readiness:?}");
    assert_eq!(readiness.database, "ok");
    let faults: Vec<(&str, Fault, &str)> =
        readiness.config_faults.iter().map(|f| (f.resource.as_str(), f.fault, f.code.as_str())).collect();
    assert_eq!(faults, [(RESOURCE, Fault::MissingScope, "http:403")]);
    assert!(readiness.config_faults[0].missing.contains(WRITE));
    let json = serde_json::to_value(&readiness).unwrap();
    assert_eq!(json["config_faults"][0]["fault"], "missing_scope", "{json}");
    assert_eq!(app.ctx.altinn.health(), "up", "a 403 is a real answer: the gates stay open");

    let errors = log.errors();
    assert_eq!(errors.len(), 1, "one ERROR line for the resource, not one per row or round: {errors:?}");
    assert_eq!(errors[0]["fields"]["resource"], RESOURCE);
    assert_eq!(errors[0]["fields"]["fault"], "missing_scope");
    assert!(errors[0]["fields"]["missing"].as_str().unwrap().contains(WRITE), "{}", errors[0]);
    assert_eq!(fault_gauge(&handle, RESOURCE, "missing_scope"), Some(1.0));

    // The scope is granted at Maskinporten. A token fetched before the grant (the readiness
    // probe fetched one) lacks it: refused once more and dropped; the next carries the scope.
    let grants_before = app.fake.state().grants_accepted();
    app.fake.access().grant_scope(WRITE);
    for _ in 0..2 {
        app.make_all_due().await;
        app.drain().await;
    }
    for id in &ids {
        let (state, attempts, _) = row(&app, *id).await;
        assert!(["awaiting_status", "delivered"].contains(&state.as_str()), "sent: {state}");
        assert_eq!(attempts, 1, "the waits used no attempt");
    }
    assert!(app.initialize_requests() <= 15, "at most one more refusal per row");
    assert_eq!(app.fake.state().correspondences().len(), 3);
    let fresh = app.fake.state().grants_accepted() - grants_before;
    assert!((1..=3).contains(&fresh), "fresh tokens after the grant, not one per request: {fresh}");
    assert!(health::readiness(&app.ctx).await.config_faults.is_empty());
    assert_eq!(fault_gauge(&handle, RESOURCE, "missing_scope"), Some(0.0));
    assert!(log.contains("configuration fault cleared"));
    assert_eq!(log.errors().len(), 1);
}

#[tokio::test]
async fn no_access_to_one_resource_holds_its_rows_while_another_resource_sends() {
    let log = Log::default();
    let _log = log.capture();
    let fake = FakeConfig { denied_resources: vec![LOCKED.into()], ..crate::common::fake_config() };
    let app = app(fake, |_| {}).await;
    let locked = [app.insert_on(LOCKED, "a-1").await, app.insert_on(LOCKED, "a-2").await];
    let open = [app.insert_on(RESOURCE, "b-1").await, app.insert_on(RESOURCE, "b-2").await];
    app.drain().await;
    for id in locked {
        assert_eq!(row(&app, id).await, waiting("altinn:4001"));
    }
    for id in open {
        assert_eq!(row(&app, id).await.0, "awaiting_status", "the other resource sends");
    }
    assert_eq!(app.initialize_requests(), 4, "a 401 with 4001 is not retried with a fresh token");
    assert_eq!(app.fake.state().grants_accepted(), 1);
    assert_eq!((app.ctx.altinn.health(), app.ctx.altinn.sends_held_for()), ("up", std::time::Duration::ZERO));
    let readiness = health::readiness(&app.ctx).await;
    let faults: Vec<(&str, Fault)> = readiness.config_faults.iter().map(|f| (f.resource.as_str(), f.fault)).collect();
    assert_eq!(faults, [(LOCKED, Fault::NoAccess)]);
    let errors = log.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0]["fields"]["resource"].as_str(), errors[0]["fields"]["code"].as_str()),
        (Some(LOCKED), Some("altinn:4001"))
    );

    // A new row of the open resource goes on while the locked one stays faulted.
    let later = app.insert_on(RESOURCE, "b-3").await;
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(row(&app, later).await.0, "awaiting_status");
    assert_eq!(row(&app, locked[0]).await, waiting("altinn:4001"));

    // The owner grants access: the rows go, with their first attempt.
    app.fake.access().allow_resource(LOCKED);
    app.make_all_due().await;
    app.drain().await;
    for id in locked {
        assert_eq!(row(&app, id).await.0, "awaiting_status");
        assert_eq!(row(&app, id).await.1, 1);
    }
    assert!(health::readiness(&app.ctx).await.ready);
    assert_eq!(log.errors().len(), 1);
}

#[tokio::test]
async fn rows_older_than_the_age_limit_fail_with_the_faults_code() {
    let fake = FakeConfig { denied_resources: vec![LOCKED.into()], ..crate::common::fake_config() };
    let app = app(fake, |c| c.retry.config_fault_max_age_s = 60).await;
    let old = app.insert_on(LOCKED, "old").await;
    let young = app.insert_on(LOCKED, "young").await;
    app.drain().await;
    assert_eq!(row(&app, old).await, waiting("altinn:4001"));
    let next: chrono::DateTime<chrono::Utc> = app.delivery_of(old).await.get("next_attempt_at");
    assert!(next <= chrono::Utc::now() + chrono::Duration::seconds(60), "never past the limit: {next}");

    // The old row was inserted two minutes ago, past the one-minute limit.
    sqlx::query("UPDATE altinn_outbox.message SET created_at = now() - interval '2 minutes' WHERE id = $1")
        .bind(old)
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_all_due().await;
    app.drain().await;
    let (state, _, code) = row(&app, old).await;
    assert_eq!((state.as_str(), code.as_deref()), ("failed", Some("altinn:4001")));
    let message: String = app.delivery_of(old).await.get("error_message");
    assert!(message.starts_with("gave up after") && message.contains("config_fault_max_age_s"), "{message}");
    assert_eq!(row(&app, young).await, waiting("altinn:4001"), "a young row keeps waiting");
    assert_eq!(app.count_in("failed").await, 1);
}

/// Runs `check` with the app's config; off the runtime, which also serves the fake.
async fn check(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_file(dir.path());
    let args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("check")
            .args(&args)
            .envs(env)
            .env_remove("RUST_LOG")
            .env("ALTINN_OUTBOX_LOG__FORMAT", "json")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn check_proves_each_resource_and_names_its_fault() {
    let fake = FakeConfig {
        unknown_resources: vec!["ghost-resource".into()],
        denied_resources: vec![LOCKED.into()],
        ..crate::common::fake_config()
    };
    let app = app(fake, |_| {}).await;

    let out = check(&app, &["--resource", RESOURCE], &[]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let line = format!("ok   resource {RESOURCE}: Altinn accepts the token");
    assert!(text.contains(&line) && text.contains("ok   scopes"), "{text}");
    assert_eq!(app.fake.state().lookups(), 1, "one sender search");
    assert!(app.fake.state().correspondences().is_empty(), "the check changed nothing");

    let out = check(&app, &["--resource", RESOURCE, "--resource", LOCKED, "--resource", "ghost-resource"], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("ok   resource {RESOURCE}:")), "{text}");
    assert!(text.contains(&format!("FAIL resource {LOCKED}: no_access: Altinn Authorization")), "{text}");
    assert!(text.contains("FAIL resource ghost-resource: unknown_resource: the resource registry has no"), "{text}");

    let out = check(&app, &["--json", "--resource", LOCKED, "--resource", "ghost-resource"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["ok"], false);
    let faults: Vec<(&str, &str, &str)> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["resource"].as_str().unwrap(), r["fault"].as_str().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(faults, [(LOCKED, "no_access", "altinn:4001"), ("ghost-resource", "unknown_resource", "altinn:4001")]);
    assert!(report["resources"][0]["remedy"].as_str().unwrap().contains("write access"), "{report}");
    assert!(report["steps"].as_array().unwrap().iter().all(|s| s["ok"] == true), "{report}");
}

#[tokio::test]
async fn check_names_a_missing_scope_from_the_answer_and_from_the_configuration() {
    let mut fake = FakeConfig { withheld_scopes: vec![WRITE.into()], ..crate::common::fake_config() };
    fake.clients[0].scopes.push("altinn:correspondence.read".into());
    let app = app(fake, |_| {}).await;
    let out = check(&app, &["--resource", RESOURCE], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAIL resource {RESOURCE}: missing_scope: the Altinn token lacks the scope {WRITE}")),
        "{text}"
    );

    // The search also admits the read scope: a token without write passes it, so the
    // configured scopes decide.
    app.fake.access().grant_scope(WRITE);
    let read_only = [("ALTINN_OUTBOX_MASKINPORTEN__SCOPES", "altinn:serviceowner altinn:correspondence.read")];
    let out = check(&app, &["--resource", RESOURCE], &read_only).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("FAIL scopes: maskinporten.scopes lacks {WRITE}")), "{text}");
    assert!(text.contains(&format!("FAIL resource {RESOURCE}: missing_scope: the search answered")), "{text}");
}

/// A shared file of a resource the client may not use: the upload waits like a send, without
/// using attempts, and past the age limit fails with the fault's code, with its deliveries.
#[tokio::test]
async fn a_shared_upload_waits_for_the_fix_and_fails_past_the_age_limit() {
    let fake = FakeConfig { denied_resources: vec![LOCKED.into()], ..crate::common::fake_config() };
    let app = app(fake, |c| c.retry.config_fault_max_age_s = 60).await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, 'shared', ARRAY['991825827', '974760223'], 'Vedtak', 'Tekst') RETURNING id",
    )
    .bind(LOCKED)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.add_file(id).await;
    app.drain().await;
    let (state, attempts, code): (String, i32, Option<String>) = sqlx::query_as(
        "SELECT upload_state, upload_attempts, error_code FROM altinn_outbox.attachment WHERE message_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), attempts, code.as_deref()), ("pending", 0, Some("altinn:4001")), "waits, no attempt");

    sqlx::query("UPDATE altinn_outbox.message SET created_at = now() - interval '2 minutes' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_all_due().await;
    app.drain().await;
    let upload: String = sqlx::query_scalar("SELECT upload_state FROM altinn_outbox.attachment WHERE message_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(upload, "failed");
    let failed: Vec<(String, String)> =
        sqlx::query_as("SELECT state, error_code FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|(s, c)| s == "failed" && c.ends_with("altinn:4001")), "{failed:?}");
}
