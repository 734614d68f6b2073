//! Scenarios 4 (Maskinporten or the exchange down or rejecting) and 8 (clock trouble), and
//! the proof that no secret reaches a log line, even at trace level.

use std::time::Duration;

use altinn_fake::{Endpoint, FakeConfig, FaultKind, FaultRule};
use serde_json::Value;

use crate::crash::field_of;
use crate::harness::{fake, free_port, long, probe, report, Cluster};

/// Polls `/readyz` until its JSON satisfies `want`; returns that JSON.
pub(crate) async fn readyz_until(port: u16, what: &str, want: impl Fn(u16, &Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    let mut seen = Value::Null;
    while started.elapsed() < Duration::from_secs(30) {
        if let Some((status, body)) = probe(port, "/readyz").await {
            seen = serde_json::from_str(&body).unwrap_or(Value::Null);
            if want(status, &seen) {
                return seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 30 s; last /readyz: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_no_token_rows_wait() {
    let rows = if long() { 5_000 } else { 1_000 };
    let phase = Duration::from_secs(if long() { 60 } else { 12 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(rows, "notoken").await;
    let port = free_port();
    c.env.push(("ALTINN_OUTBOX_HEALTH__LISTEN".into(), format!("127.0.0.1:{port}")));
    // Maskinporten down, then the exchange answering its empty 401.
    c.app.fake.faults().add(FaultRule::always(Endpoint::Token, FaultKind::Status(503)));
    c.spawn(1);
    // The second worker without a health listener (one port, one listener).
    c.env.clear();
    c.spawn(1);
    let down = readyz_until(port, "readyz reports maskinporten unavailable", |status, v| {
        status == 503 && v["token"]["state"] == "unavailable"
    })
    .await;
    assert_eq!(down["database"], "ok");
    tokio::time::sleep(phase).await;
    c.app.fake.faults().clear();
    c.app.fake.faults().add(FaultRule::always(Endpoint::Exchange, FaultKind::Status(401)));
    tokio::time::sleep(phase).await;
    let token_requests = c.app.requests_to("POST", "/token");
    let exchanges = c.app.requests_to("GET", "/authentication/api/v1/exchange/maskinporten");
    assert_eq!(c.app.initialize_requests(), 0, "nothing was sent without a token");
    let burned = c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE attempts > 0 OR state <> 'pending'").await;
    assert_eq!(burned, 0, "rows waited without using attempts");
    // Each worker retries with a cool-down of 0.5 s doubling to 4 s: a handful a minute.
    let per_minute = (token_requests as f64) / (2.0 * phase.as_secs_f64() / 60.0);
    assert!(per_minute < 60.0, "{token_requests} token requests in {:?}", phase * 2);

    c.app.fake.faults().clear();
    readyz_until(port, "ready once the token can be had", |status, v| status == 200 && v["ready"] == true).await;
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    let max_attempts = c.count("SELECT max(attempts)::bigint FROM altinn_outbox.delivery").await;
    assert_eq!(max_attempts, 1, "the outage cost no row an attempt");
    report(
        "4 no token",
        &t,
        &format!("token 503 {} s, exchange 401 {} s", phase.as_secs(), phase.as_secs()),
        &format!(
            "0 attempts used while down; {token_requests} grants + {exchanges} exchanges by 2 workers ({per_minute:.0}/min)"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_misconfiguration_is_loud() {
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(100, "misconfigured").await;
    let port = free_port();
    c.env.push(("ALTINN_OUTBOX_HEALTH__LISTEN".into(), format!("127.0.0.1:{port}")));
    // A client id Maskinporten does not know: invalid_client, a configuration error.
    c.env.push(("ALTINN_OUTBOX_MASKINPORTEN__CLIENT_ID".into(), "0d5a2a1e-0000-4000-8000-00000000dead".into()));
    c.spawn(1);
    let v = readyz_until(port, "readyz reports the misconfiguration", |status, v| {
        status == 503 && v["token"]["state"] == "misconfigured"
    })
    .await;
    assert_eq!(probe(port, "/healthz").await, Some((200, "ok\n".into())), "alive, though not ready");
    let code = v["token"]["code"].as_str().unwrap_or_default().to_string();
    assert!(code.contains("invalid_client"), "{v}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.exited().is_empty(), "the daemon keeps running and reporting");
    let logs = c.logs();
    let loud = logs.lines().filter(|l| l.contains("\"level\":\"ERROR\"") && l.contains("invalid_client")).count();
    assert!(loud >= 1, "the configuration error is logged at error level\n{logs}");
    let burned = c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE attempts > 0 OR state <> 'pending'").await;
    assert_eq!(burned, 0, "no row used an attempt");

    // The operator fixes the client id and restarts: everything goes.
    c.stop_all().await;
    c.env.retain(|(k, _)| k != "ALTINN_OUTBOX_MASKINPORTEN__CLIENT_ID");
    c.restart(0);
    c.wait_until_finished(Duration::from_secs(60)).await;
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    report(
        "4 misconfigured client",
        &t,
        "unknown client id (invalid_client)",
        &format!("/readyz 503 misconfigured; {loud} ERROR lines; 0 attempts used; all sent after the fix"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_8_host_clock_30_s_ahead() {
    let rows = if long() { 2_000 } else { 500 };
    // The fake's clock runs 30 s behind the host's: the host is 30 s ahead of Maskinporten.
    let mut c = Cluster::start(FakeConfig { clock_offset_s: -30, ..fake() }, |_| {}).await;
    c.insert(rows, "clock").await;
    c.spawn(2);
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    let state = c.app.fake.state();
    let (accepted, rejected) = (state.grants_accepted(), state.grants_rejected());
    assert!(rejected <= 2, "one refused grant per worker at most, then the learned offset is used");
    let logs = c.logs();
    let offset = field_of(&logs, "clock", "offset_s");
    report(
        "8 host clock 30 s ahead",
        &t,
        "fake Maskinporten clock -30 s",
        &format!("{rejected} grants refused, {accepted} accepted; offset learned from Date: {offset} s"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_secrets_never_reach_the_log() {
    // Short-lived Altinn tokens (refreshed every few seconds) and a 401 now and then, so
    // that the log covers refreshes and retries too.
    let fake = FakeConfig { altinn_token_lifetime_s: 65, ..fake() };
    let mut c = Cluster::start(fake, |_| {}).await;
    c.app
        .fake
        .faults()
        .add(FaultRule { probability: 0.05, ..FaultRule::always(Endpoint::Initialize, FaultKind::Status(401)) });
    c.insert(300, "secrets").await;
    c.env.push(("ALTINN_OUTBOX_LOG__LEVEL".into(), "trace".into()));
    c.spawn(1);
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;
    let logs = c.logs();
    let lines = logs.lines().count();
    assert!(lines > 1_000, "trace level logs a lot ({lines} lines)");

    let mut secrets = c.app.fake.state().secrets();
    assert!(secrets.len() >= 3, "grants and both kinds of token were issued");
    // Each part of a JWT on its own (the signature especially) must not appear either.
    let parts: Vec<String> = secrets.iter().flat_map(|s| s.split('.').map(String::from).collect::<Vec<_>>()).collect();
    secrets.extend(parts.into_iter().filter(|p| p.len() > 20));
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::common::fixture("test-jwk.json")).unwrap()).unwrap();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        secrets.push(jwk[private].as_str().expect("private JWK member").to_string());
    }
    let pem = std::fs::read_to_string(crate::common::fixture("test-key.pem")).unwrap();
    secrets.extend(pem.lines().filter(|l| !l.starts_with("-----")).map(String::from));
    let hits: Vec<&str> = logs.lines().filter(|line| secrets.iter().any(|s| line.contains(s.as_str()))).collect();
    assert!(hits.is_empty(), "{} log lines hold a secret, e.g. {:.200}", hits.len(), hits[0]);
    let t = c.tally().await;
    t.assert_exactly_once();
    report(
        "secrets at trace level",
        &t,
        "5 % 401 on initialize, 65 s tokens",
        &format!("{lines} log lines searched for {} secrets: 0 hits", secrets.len()),
    );
}
