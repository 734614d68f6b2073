//! Scenario 12: Altinn Notifications down. The details endpoint asks Altinn Notifications on
//! every call and answers 500 when it fails, while initialize and the overview work. For
//! 25 s every details read fails while letters with notifications keep arriving: the letters
//! inserted meanwhile must go out at once (details are a gate of their own, and routine status
//! reads use the overview), and every letter must end delivered.

use std::time::{Duration, Instant};

use altinn_fake::{Endpoint, FaultKind, FaultRule};

use crate::common::{ORG, RESOURCE};
use crate::harness::{fake, long, report, Cluster};

/// Letters with an e-mail notification (Altinn's generic template), so that once published
/// their notification outcome is read from details.
async fn insert_notified(c: &Cluster, prefix: &str, from: usize, n: usize) {
    sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body, notification)
         SELECT $1, $2 || '-' || i, ARRAY[$3], 'Vedtak ' || i, 'Tekst',
                '{\"notificationTemplate\": \"GenericAltinnMessage\", \"notificationChannel\": \"Email\"}'
         FROM generate_series($4, $4 + $5 - 1) AS i",
    )
    .bind(RESOURCE)
    .bind(prefix)
    .bind(ORG)
    .bind(from as i32)
    .bind(n as i32)
    .execute(&c.app.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_12_details_down() {
    let failing = Duration::from_secs(if long() { 120 } else { 25 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    insert_notified(&c, "before", 1, 300).await;
    c.spawn(2);
    let app = &c.app;
    c.wait_until("the first letters published", Duration::from_secs(30), || async {
        c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE state = 'delivered'").await >= 100
    })
    .await;

    app.fake.faults().add(FaultRule::always(Endpoint::Details, FaultKind::Status(500)));
    let began = Instant::now();
    let mut inserted = 0;
    while began.elapsed() < failing {
        insert_notified(&c, "during", inserted + 1, 20).await;
        inserted += 20;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let details_failed = app.fake.faults().injected();
    app.fake.faults().clear();
    c.wait_until_finished(Duration::from_secs(120)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.failed, 0, "a failing details read fails no letter");
    assert_eq!(t.delivered, t.deliveries);
    let slowest_ms = c
        .count(
            "SELECT (max(extract(epoch FROM d.sent_at - m.created_at)) * 1000)::bigint
             FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id
             WHERE m.senders_reference LIKE 'during-%'",
        )
        .await;
    assert!(slowest_ms <= 5_000, "letters inserted while details failed were sent within 5 s: {slowest_ms} ms");
    assert!(details_failed > 0, "details were read, and failed");
    let logs = c.logs();
    let sends_held = logs.matches("\"requests\":\"sends\"").count();
    assert_eq!(sends_held, 0, "the send gate never closed");
    report(
        "12 details down",
        &t,
        &format!("details 500 for {} s ({details_failed} answers)", failing.as_secs()),
        &format!(
            "{inserted} letters inserted meanwhile, each sent within {:.2} s; send gate never closed; 0 failed",
            slowest_ms as f64 / 1000.0
        ),
    );
}
