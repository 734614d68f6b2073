//! Scenario 11: Altinn Register hiccups. A tenth of all initializes are answered 400 with
//! Altinn's 4002 ("Could not retrieve party uuid from lookup in Altinn Register"): Register
//! failed to find the sender, and Altinn created nothing. That is a dependency's failure, not
//! the row's, though it comes as a 400: every delivery must end delivered and none failed,
//! each 4002 must cost one attempt and be retried with the row's own key, and Altinn must
//! never look down because of it.

use std::collections::HashSet;
use std::time::Duration;

use altinn_fake::{Endpoint, FaultKind, FaultRule};

use crate::harness::{fake, long, report, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_11_register_hiccups() {
    let rows = if long() { 10_000 } else { 2_000 };
    let mut c = Cluster::start(fake(), |_| {}).await;
    let register = FaultKind::Problem {
        status: 400,
        error_code: 4002,
        detail: "Could not retrieve party uuid from lookup in Altinn Register".into(),
    };
    c.app.fake.faults().add(FaultRule { probability: 0.1, ..FaultRule::always(Endpoint::Initialize, register) });
    c.insert(rows, "register").await;
    c.spawn(2);
    let took = c.wait_until_finished(Duration::from_secs(240)).await;
    c.stop_all().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.failed, 0, "no delivery failed for Register's trouble");
    assert_eq!(t.delivered, t.deliveries, "every delivery delivered");
    let answered = c.app.fake.faults().injected() as i64;
    assert!(answered > 0, "some initializes were answered 4002");
    let attempts = c.count("SELECT sum(attempts)::int8 FROM altinn_outbox.delivery").await;
    assert_eq!(attempts - t.deliveries, answered, "each 4002 cost one attempt, and nothing else cost any");
    let arrivals = c.app.fake.state().initialize_arrivals();
    let keys: HashSet<uuid::Uuid> =
        arrivals.iter().map(|(key, _)| key.expect("every initialize carries a key")).collect();
    assert_eq!(arrivals.len() as i64, t.deliveries + answered);
    assert_eq!(keys.len() as i64, t.deliveries, "a retry carries its row's key, never a new one");
    assert!(!c.logs().contains("Altinn looks down"), "a 4002 is a real answer: the gate never closed");
    let retried = c.count("SELECT count(*) FROM altinn_outbox.delivery WHERE attempts > 1").await;
    let most = c.count("SELECT max(attempts)::int8 FROM altinn_outbox.delivery").await;
    report(
        "11 Register hiccups",
        &t,
        &format!("{answered} × 400/4002 (10 % of initializes)"),
        &format!(
            "{answered} extra attempts on {retried} deliveries (at most {most} attempts); gate never closed; {:.1} s",
            took.as_secs_f64()
        ),
    );
}
