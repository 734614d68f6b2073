//! Scenario 13: the token lacks `altinn:correspondence.write` (the scope was not granted yet)
//! while 500 letters are inserted. Nothing may fail and no attempt may be used: the resource
//! is a configuration fault, said once per worker in an ERROR line, named by `/readyz`, and
//! probed rather than hammered. Once the scope is granted, the next token carries it and
//! every letter goes.

use std::time::{Duration, Instant};

use altinn_fake::FakeConfig;

use crate::auth::readyz_until;
use crate::common::RESOURCE;
use crate::harness::{fake, free_port, report, Cluster};

const WRITE: &str = "altinn:correspondence.write";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_13_missing_scope() {
    let rows = 500;
    let phase = Duration::from_secs(10);
    let fake = FakeConfig { withheld_scopes: vec![WRITE.into()], ..fake() };
    // Probes at most 2 s apart, in the proportions of the rest of the suite (a minute in production).
    let mut c = Cluster::start(fake, |c| c.altinn.config_fault_probe_ms = 2_000).await;
    let port = free_port();
    c.env.push(("ALTINN_OUTBOX_HEALTH__LISTEN".into(), format!("127.0.0.1:{port}")));
    c.spawn(1);
    c.env.clear();
    c.spawn(1);
    c.insert(rows, "scope").await;
    let v = readyz_until(port, "readyz names the missing scope", |status, v| {
        status == 503 && v["config_faults"][0]["fault"] == "missing_scope"
    })
    .await;
    assert_eq!(v["config_faults"][0]["resource"], RESOURCE, "{v}");
    assert_eq!(v["config_faults"][0]["code"], "http:403", "{v}");
    assert!(v["config_faults"][0]["missing"].as_str().unwrap_or_default().contains(WRITE), "{v}");
    assert_eq!((v["database"].as_str(), v["altinn"].as_str()), (Some("ok"), Some("up")), "{v}");
    tokio::time::sleep(phase).await;

    let refused = c.app.initialize_requests();
    let burned = c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE attempts > 0 OR state <> 'pending'").await;
    assert_eq!(burned, 0, "nothing failed or used an attempt while the scope was missing");
    assert!(c.app.fake.state().correspondences().is_empty());
    // Each worker's first batch goes before it knows; then one probe per pause.
    assert!(refused < 2 * 32 + 2 * 20, "probed, not hammered: {refused} initializes refused");
    let logs = c.logs();
    let loud: Vec<&str> =
        logs.lines().filter(|l| l.contains(r#""level":"ERROR""#) && l.contains("missing_scope")).collect();
    assert_eq!(loud.len(), 2, "one ERROR line per worker, not per row:\n{}", loud.join("\n"));
    assert!(loud.iter().all(|l| l.contains(RESOURCE) && l.contains(WRITE)), "{loud:?}");

    let grants_before = c.app.fake.state().grants_accepted();
    let granted = Instant::now();
    c.app.fake.access().grant_scope(WRITE);
    readyz_until(port, "ready once a request for the resource succeeded", |status, v| {
        status == 200 && v["config_faults"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    c.wait_until_finished(Duration::from_secs(120)).await;
    let took = granted.elapsed();
    c.stop_all().await;
    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries, "every letter sent once the scope was granted");
    let most = c.count("SELECT max(attempts)::int8 FROM altinn_outbox.delivery").await;
    assert_eq!(most, 1, "the wait cost no row an attempt");
    let fresh = c.app.fake.state().grants_accepted() - grants_before;
    assert!(c.logs().contains("configuration fault cleared"));
    report(
        "13 missing scope",
        &t,
        &format!("token without {WRITE} for {} s, then granted", phase.as_secs()),
        &format!(
            "0 attempts used; /readyz 503 missing_scope; {} ERROR lines (1 per worker); {refused} initializes \
             refused while faulted; {fresh} new tokens after the grant; all sent {:.1} s after it",
            loud.len(),
            took.as_secs_f64()
        ),
    );
}
