use std::time::Duration;

use super::{Liveness, Part};

#[tokio::test(start_paused = true)]
async fn a_part_is_stuck_only_while_busy_beyond_the_limit() {
    let liveness = Liveness::default();
    let limit = Duration::from_secs(10);
    assert_eq!(liveness.stuck(limit), None, "idle parts are never stuck");
    {
        let _busy = liveness.busy(Part::Writer);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(liveness.stuck(limit), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        let (part, busy) = liveness.stuck(limit).expect("busy for 11 s");
        assert_eq!(part, Part::Writer);
        assert!(busy >= Duration::from_secs(11));
    }
    assert_eq!(liveness.stuck(limit), None, "done: no longer stuck");
    // Waiting (not busy) for however long is fine.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(liveness.stuck(limit), None);
}

#[tokio::test(start_paused = true)]
async fn each_part_is_timed_on_its_own() {
    let liveness = Liveness::default();
    let _loop = liveness.busy(Part::Loop);
    tokio::time::advance(Duration::from_secs(5)).await;
    let writer = liveness.busy(Part::Writer);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(liveness.stuck(Duration::from_secs(10)).map(|(p, _)| p), Some(Part::Loop));
    drop(writer);
    assert_eq!(liveness.stuck(Duration::from_secs(20)), None);
}
