//! Scenario 1 (crash loop) and 9 (shutdown under load).

use std::time::{Duration, Instant};

use altinn_fake::{Endpoint, FaultKind, FaultRule};
use rand::Rng;

use crate::harness::{fake, long, report, unfinished, Cluster};

/// The lease and sweep interval of `reliability_config`: the longest a dead worker's row
/// may wait is one lease plus one sweep (and a moment to write).
const LEASE: Duration = Duration::from_millis(4_000);
const SWEEP: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_crash_loop() {
    let rows = if long() { 20_000 } else { 5_000 };
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(rows, "crash").await;
    c.spawn(3);
    let started = Instant::now();
    let mut kills = 0;
    while unfinished(&c.app.pool).await > 0 {
        let limit = Duration::from_secs(if long() { 900 } else { 300 });
        assert!(started.elapsed() < limit, "not finished in {limit:?}");
        let pause = rand::thread_rng().gen_range(1_000..3_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if unfinished(&c.app.pool).await == 0 {
            break;
        }
        let victim = rand::thread_rng().gen_range(0..c.worker_count());
        c.kill(victim);
        c.restart(victim);
        kills += 1;
    }
    let elapsed = started.elapsed();
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "every delivery delivered");
    assert!(kills >= 2, "the run was long enough to kill workers ({kills})");
    assert!(
        t.max_sending <= LEASE + SWEEP + Duration::from_millis(1_500),
        "a dead worker's row waited {:?} in sending; the lease is {LEASE:?}",
        t.max_sending
    );
    let reclaimed = c.count("SELECT count(*) FROM altinn_outbox.history WHERE detail LIKE 'lease_expired%'").await;
    let lookups = c.app.fake.state().lookups();
    report(
        "1 crash loop",
        &t,
        &format!("{kills} SIGKILL of 3 workers"),
        &format!(
            "{:.1} s in all; {reclaimed} leases reclaimed; {lookups} lookups by key after lost results",
            elapsed.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_9_shutdown_under_load() {
    let rows = if long() { 10_000 } else { 2_000 };
    let mut c = Cluster::start(fake(), |_| {}).await;
    // Answers take 300 ms, so that SIGTERM finds requests in flight.
    c.app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Delay(Duration::from_millis(300))));
    c.insert(rows, "shutdown").await;
    c.spawn(2);
    let app = &c.app;
    c.wait_until("sending under way", Duration::from_secs(30), || async { app.initialize_requests() >= 200 }).await;

    let (status, took) = c.terminate(0).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    let grace = Duration::from_millis(3_000);
    assert!(took < grace + Duration::from_secs(2), "exited within the grace period ({took:?})");
    // Right after the exit: nothing is left leased to the stopped worker.
    let held = c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE locked_by LIKE 'w1.%'").await;
    assert_eq!(held, 0, "the stopped worker's rows were written back or released");
    let logs = c.logs();
    let in_flight = field_of(&logs, "stopping: no new claims", "in_flight");

    c.app.fake.faults().clear();
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    assert!(t.max_sending < LEASE, "no row waited for a lease to expire: {:?}", t.max_sending);
    report(
        "9 SIGTERM under load",
        &t,
        "SIGTERM to 1 of 2 workers",
        &format!("exit 0 in {:.2} s with {in_flight} requests in flight", took.as_secs_f64()),
    );
}

/// A numeric field of the first JSON log line whose message contains `message`.
pub fn field_of(logs: &str, message: &str, field: &str) -> String {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains(message)))
        .map_or_else(|| "?".into(), |v| v[field].to_string())
}
