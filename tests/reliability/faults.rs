//! Scenarios 2 (lost responses), 3 (Altinn down; a 429 storm) and 6 (Altinn slower than
//! the lease).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use altinn_fake::{Endpoint, FaultKind, FaultRule};

use crate::harness::{fake, long, report, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_lost_responses() {
    let rows = if long() { 10_000 } else { 2_000 };
    let mut c = Cluster::start(fake(), |_| {}).await;
    // Every endpoint: Altinn commits, then the connection breaks before the answer.
    c.app
        .fake
        .faults()
        .add(FaultRule { probability: 0.2, ..FaultRule::always(Endpoint::Any, FaultKind::CommitThenDrop) });
    c.insert(rows, "lost").await;
    c.spawn(2);
    let took = c.wait_until_finished(Duration::from_secs(240)).await;
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "every delivery delivered");
    let state = c.app.fake.state();
    let lookups = state.lookups();
    assert!(lookups > 0, "lost answers to initialize were recovered by the lookup by key");
    report(
        "2 lost responses",
        &t,
        &format!("{} answers lost (20 %)", c.app.fake.faults().injected()),
        &format!("{lookups} lookups by key; {:.1} s", took.as_secs_f64()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_altinn_down() {
    let rows = if long() { 10_000 } else { 3_000 };
    let outage = Duration::from_secs(if long() { 300 } else { 60 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(rows, "down").await;
    c.spawn(2);
    let app = &c.app;
    c.wait_until("sending under way", Duration::from_secs(30), || async { app.initialize_requests() >= 300 }).await;

    let before = app.fake.state().requests().len();
    for endpoint in [Endpoint::Initialize, Endpoint::Lookup, Endpoint::Overview, Endpoint::Details, Endpoint::Exchange]
    {
        app.fake.faults().add(FaultRule::always(endpoint, FaultKind::Status(503)));
    }
    tokio::time::sleep(outage).await;
    app.fake.faults().clear();
    let during = app.fake.state().requests().len() - before;
    let recovered = Instant::now();
    let sent_at_recovery = app.initialize_requests();
    let resumed = c
        .wait_until("sending resumed after recovery", Duration::from_secs(60), || async {
            app.initialize_requests() > sent_at_recovery
        })
        .await;
    c.wait_until_finished(Duration::from_secs(180)).await;
    let finished = recovered.elapsed();
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.failed, 0, "the retry budget spans the outage, so no row failed because of it");
    assert_eq!(t.delivered, t.deliveries);
    let rate = during as f64 / outage.as_secs_f64();
    // Without the gate every pending row would retry on its own schedule: thousands of
    // requests a minute. With it: the requests in flight, then one probe per pause.
    assert!(rate < 5.0, "{during} requests during a {outage:?} outage ({rate:.2}/s)");
    assert!(resumed < Duration::from_secs(20), "sending resumed {resumed:?} after recovery");
    report(
        "3 Altinn down",
        &t,
        &format!("503 for {} s", outage.as_secs()),
        &format!(
            "{during} requests during the outage ({rate:.2}/s, 2 workers); resumed {:.1} s and done {:.1} s after recovery",
            resumed.as_secs_f64(),
            finished.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_429_storm() {
    let rows = if long() { 5_000 } else { 1_000 };
    let storm = Duration::from_secs(if long() { 60 } else { 10 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(rows, "storm").await;
    // One worker: Retry-After binds the process that was told; another learns it from its own 429.
    c.spawn(1);
    let app = &c.app;
    c.wait_until("sending under way", Duration::from_secs(30), || async { app.initialize_requests() >= 100 }).await;
    app.fake.faults().add(FaultRule::always(Endpoint::Any, FaultKind::TooManyRequests { retry_after_s: 2 }));
    tokio::time::sleep(storm).await;
    app.fake.faults().clear();
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    let early = c.app.fake.state().requests_before_retry_after();
    assert_eq!(early, 0, "no request came before the time Retry-After gave");
    let answered = c.app.fake.faults().injected();
    report(
        "3 429 storm",
        &t,
        &format!("{answered} × 429 Retry-After: 2 s for {} s", storm.as_secs()),
        &format!("{early} requests before the time given"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_6_slower_than_the_lease() {
    let rows = if long() { 1_000 } else { 200 };
    let slow = Duration::from_secs(if long() { 60 } else { 15 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    // Answers take 5 s: longer than the request timeout (1.5 s) and the lease (4 s).
    c.app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Delay(Duration::from_secs(5))));
    c.insert(rows, "slow").await;
    c.spawn(2);
    tokio::time::sleep(slow).await;
    c.app.fake.faults().clear();
    c.wait_until_finished(Duration::from_secs(180)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    // The client gives up after the request timeout, well inside the lease; a request for
    // the same key arriving later than that cannot overlap a wait for the earlier one.
    let timeout = Duration::from_millis(1_500);
    let mut by_key: HashMap<uuid::Uuid, Vec<Instant>> = HashMap::new();
    for (key, at) in c.app.fake.state().initialize_arrivals() {
        by_key.entry(key.expect("every initialize carries a key")).or_default().push(at);
    }
    let resent = by_key.values().filter(|a| a.len() > 1).count();
    let closest = by_key
        .values_mut()
        .filter_map(|arrivals| {
            arrivals.sort();
            arrivals.windows(2).map(|w| w[1] - w[0]).min()
        })
        .min();
    if let Some(closest) = closest {
        assert!(closest >= timeout, "two requests with one key {closest:?} apart: the first could still be waiting");
    }
    assert!(resent > 0, "some rows were sent again after a slow answer");
    let closest = closest.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    report(
        "6 slower than the lease",
        &t,
        &format!("5 s answers for {} s", slow.as_secs()),
        &format!("{resent} rows sent again; closest two sends of one key {closest} apart (timeout 1.5 s, lease 4 s)"),
    );
}
