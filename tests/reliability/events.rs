//! Scenarios 14 to 16: Altinn Events. The daemon subscribes to its resource, the fake pushes
//! to its receiver when it publishes a letter (2 s after creation), and the pushed event makes
//! the letter be read at once. 14: every event arrives: publication to `delivered` in the table
//! within a second at the median, and about one status read per letter. 15: 30 % of events
//! lost at the source: every letter still delivered, by the safety poll. 16: the receiver down
//! (the worker stopped) while letters are published, then back: the pull API catches up.
//! 17: 10,000 forged pushes against the worker process: all refused, nothing changed, memory
//! bounded.

use std::time::Duration;

use altinn_fake::{EventFault, EventFaultRule, FakeConfig};
use altinn_outbox::config::Config;

use crate::harness::{fake, free_port, report, Cluster, Tally};

const LETTERS: usize = 300;
const OVERVIEW_PREFIX: &str = "/correspondence/api/v1/correspondence/";

fn events_fake() -> FakeConfig {
    let mut base = fake();
    base.clients[0].scopes.push("altinn:events.subscribe".into());
    FakeConfig {
        publish_after_ms: 2_000,
        events_allow_http: true,
        events_visibility_delay_ms: 200,
        // The retry schedule in milliseconds instead of seconds and minutes.
        events_time_scale: 0.001,
        ..base
    }
}

/// The receiver on `port`, the safety poll every `safety_ms`, the pull every few seconds.
fn events_on(c: &mut Config, port: u16, safety_ms: u64) {
    c.events.enabled = true;
    c.events.public_url = format!("http://127.0.0.1:{port}/altinn/events");
    c.events.listen = format!("127.0.0.1:{port}");
    c.events.safety_poll_interval_ms = safety_ms;
    c.events.pull_interval_ms = 2_000;
    c.events.subscription_check_interval_ms = 500;
    // Subscribed before the first letter, so that no publication comes before it.
    c.events.resources = vec![crate::common::RESOURCE.into()];
}

/// One worker with events on (the safety poll every `safety_ms`), its subscription validated
/// by the fake's handshake before the first letter; and the receiver's port.
async fn subscribed(safety_ms: u64) -> (Cluster, u16) {
    let port = free_port();
    let mut c = Cluster::start(events_fake(), |cfg| events_on(cfg, port, safety_ms)).await;
    c.spawn(1);
    c.wait_until("the subscription validated", Duration::from_secs(30), || async {
        c.app.fake.events().subscriptions().iter().any(|s| s.validated)
    })
    .await;
    (c, port)
}

/// Publication (Altinn's `published` time) to `delivered` in the table, per letter, in ms.
async fn publication_to_delivered(c: &Cluster) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT (extract(epoch FROM h.at - d.published_at) * 1000)::bigint
         FROM altinn_outbox.delivery d
         JOIN altinn_outbox.history h ON h.delivery_id = d.id AND h.kind = 'state' AND h.new_value = 'delivered'
         ORDER BY 1",
    )
    .fetch_all(&c.app.pool)
    .await
    .unwrap()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Status reads (overview and details) the fake answered, per delivered letter.
fn reads_per_delivered(c: &Cluster, t: &Tally) -> f64 {
    let reads = c
        .app
        .fake
        .state()
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(OVERVIEW_PREFIX) && r.path.len() > OVERVIEW_PREFIX.len())
        .count();
    reads as f64 / t.delivered as f64
}

async fn delivered_by_events(c: &Cluster, via: &str) -> i64 {
    c.count(&format!(
        "SELECT count(DISTINCT delivery_id) FROM altinn_outbox.history WHERE kind = 'event' AND detail = '{via}'"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_14_events_bring_reads_forward() {
    let (mut c, _) = subscribed(60_000).await;
    for i in 0..LETTERS / 30 {
        c.insert(30, &format!("events-{i}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.wait_until_finished(Duration::from_secs(60)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "every letter delivered");
    let latencies = publication_to_delivered(&c).await;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let reads = reads_per_delivered(&c, &t);
    assert!(p50 < 1_000, "publication to delivered p50 {p50} ms");
    assert!(p99 < 5_000, "publication to delivered p99 {p99} ms");
    assert!(reads <= 1.05, "{reads:.3} status reads per delivered letter");
    let pushed = delivered_by_events(&c, "push").await;
    report(
        "14 events",
        &t,
        "none: every event pushed (fake publishes 2 s after creation)",
        &format!(
            "publication → delivered p50 {p50} ms, p99 {p99} ms; {reads:.3} status reads per delivered; \
             {pushed} letters read on a pushed event; safety poll 60 s"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_15_events_lost_at_the_source() {
    let port = free_port();
    let safety_ms = 10_000;
    let mut c = Cluster::start(events_fake(), |cfg| events_on(cfg, port, safety_ms)).await;
    c.app.fake.events().faults().add(EventFaultRule::fraction(EventFault::Drop, 0.3));
    c.spawn(1);
    c.insert(LETTERS, "lossy").await;
    c.wait_until_finished(Duration::from_secs(90)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "every letter delivered, lost events or not");
    let lost = c.app.fake.events().lost().len();
    assert!(lost > 0, "events were lost");
    let latencies = publication_to_delivered(&c).await;
    let (p50, max) = (percentile(&latencies, 0.5), *latencies.last().unwrap());
    assert!(max <= (safety_ms + 5_000) as i64, "the safety poll caught the rest: slowest {max} ms");
    report(
        "15 events lost",
        &t,
        &format!("{lost} events dropped at the source (30 %)"),
        &format!(
            "publication → delivered p50 {p50} ms, slowest {:.1} s (safety poll {} s)",
            max as f64 / 1000.0,
            safety_ms / 1000
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_16_receiver_down_then_pull_catches_up() {
    let (mut c, _) = subscribed(3_600_000).await;
    c.insert(LETTERS, "down").await;
    c.wait_until("every letter sent", Duration::from_secs(30), || async {
        c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE correspondence_id IS NULL").await == 0
    })
    .await;
    // The worker (and with it the receiver) stops before the fake publishes; pushes fail
    // while it is away and the fake gives them up (a dead letter) after its retries.
    c.terminate(0).await;
    c.app.fake.events().set_delivery_retry_ms(vec![100, 100]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let dead = c.app.fake.events().dead_letters().len();
    c.restart(0);
    let caught_up = c.wait_until_finished(Duration::from_secs(60)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "nothing missed");
    assert!(dead > 0, "pushes were given up while the receiver was down");
    let pulled = delivered_by_events(&c, "pull").await;
    assert!(pulled > 0, "the pull read the events the pushes could not bring");
    assert!(caught_up < Duration::from_secs(10), "caught up at the restart, not by the safety poll: {caught_up:?}");
    report(
        "16 receiver down",
        &t,
        &format!("receiver stopped while {LETTERS} letters were published; {dead} pushes dead-lettered"),
        &format!(
            "{pulled} letters read on a pulled event; all delivered {:.1} s after the restart (safety poll 1 h)",
            caught_up.as_secs_f64()
        ),
    );
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in KiB.
fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_17_forged_pushes() {
    const FORGED: usize = 10_000;
    let (mut c, port) = subscribed(3_600_000).await;
    c.insert(100, "forged").await;
    c.wait_until_finished(Duration::from_secs(60)).await;
    let pid = c.pid(0).expect("the worker runs");
    let (before_kib, _) = resident_kib(pid);
    let stored_before = c.count("SELECT count(*) FROM altinn_outbox.event").await;
    let history_before = c.count("SELECT count(*) FROM altinn_outbox.history").await;

    // Wrong secrets, another path, garbage and oversized bodies to the right path cannot be
    // told apart from outside; the right path is Altinn's secret, which a forger lacks.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/altinn/events");
    let instance = sqlx::query_scalar::<_, uuid::Uuid>("SELECT correspondence_id FROM altinn_outbox.delivery LIMIT 1")
        .fetch_one(&c.app.pool)
        .await
        .unwrap()
        .to_string();
    let body = serde_json::json!({"specversion": "1.0", "id": "forged", "type": "no.altinn.correspondence.correspondencepublished",
        "resourceinstance": instance})
    .to_string();
    let big = "x".repeat(1 << 20);
    let began = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for chunk in 0..FORGED / 100 {
        let tries = (0..100).map(|i| {
            let n = chunk * 100 + i;
            let url = match n % 4 {
                0 => format!("{base}/{}", uuid::Uuid::new_v4().simple()),
                1 => format!("http://127.0.0.1:{port}/other/{n}"),
                2 => format!("{base}/"),
                _ => format!("{base}/{}", "A".repeat(43)),
            };
            let payload = if n % 10 == 0 { big.clone() } else { body.clone() };
            http.post(url).body(payload).send()
        });
        for answer in futures::future::join_all(tries).await {
            *statuses.entry(answer.map_or(0, |r| r.status().as_u16())).or_default() += 1;
        }
    }
    let took = began.elapsed();
    let (after_kib, peak_kib) = resident_kib(pid);
    c.stop_all().await;

    // A big body to a refused path may see the connection closed before its 403 is read
    // (status 0 here): refused all the same, and never read.
    let refused = statuses.get(&403).copied().unwrap_or(0) + statuses.get(&0).copied().unwrap_or(0);
    assert_eq!(refused, FORGED, "every forged push refused: {statuses:?}");
    assert_eq!(c.count("SELECT count(*) FROM altinn_outbox.event").await, stored_before, "none stored");
    assert_eq!(c.count("SELECT count(*) FROM altinn_outbox.history").await, history_before, "nothing changed");
    let grown_kib = after_kib.saturating_sub(before_kib);
    assert!(grown_kib < 32 * 1024, "memory bounded: {before_kib} KiB before, {after_kib} KiB after");
    let t = c.tally().await;
    t.assert_exactly_once();
    report(
        "17 forged pushes",
        &t,
        &format!("{FORGED} forged pushes (wrong secret or path; every tenth 1 MiB)"),
        &format!(
            "all refused ({} × 403) in {:.1} s; 0 stored, 0 changed; worker RSS {:.1} → {:.1} MiB (peak {:.1})",
            statuses.get(&403).copied().unwrap_or(0),
            took.as_secs_f64(),
            before_kib as f64 / 1024.0,
            after_kib as f64 / 1024.0,
            peak_kib as f64 / 1024.0
        ),
    );
}
