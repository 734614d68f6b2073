//! Which figures an invocation measures (`--figures`, by number), which runs they need, and
//! how each figure is computed from what the runs measured.

use super::memory::MemoryRun;
use super::report::{self, Figure};
use super::scenario::{BacklogRun, Until};
use super::Args;

/// Every figure: 1 send throughput, 2 end to end, 3 pickup latency, 4 Little's law, 5 peak
/// RSS, 6 scale, 7 economy, 8 the anchors.
pub const ALL: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// Figure 4's set-up: 100 ms per request and 64 in flight allow 640 rows/s.
pub const LITTLE_LATENCY_MS: u64 = 100;
pub const LITTLE_CONCURRENCY: usize = 64;
/// Figure 4's first status read: after the run, so that no read competes with the sends.
pub const LITTLE_FIRST_POLL_MS: u64 = 3_600_000;

/// The figures chosen, sorted, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection(Vec<u8>);

impl Selection {
    pub fn new(figures: &[u8]) -> Selection {
        let mut chosen = figures.to_vec();
        chosen.sort_unstable();
        chosen.dedup();
        Selection(chosen)
    }

    pub fn has(&self, figure: u8) -> bool {
        self.0.contains(&figure)
    }

    pub fn numbers(&self) -> &[u8] {
        &self.0
    }

    /// The bulk backlog run serves figures 1, 2 and 7. Figures 2 and 7 need every row
    /// delivered (status reads included); figure 1 alone needs only every row sent, which
    /// is quicker, and what a profile of the send path wants.
    pub fn backlog(&self) -> Option<Until> {
        if self.has(2) || self.has(7) {
            Some(Until::Delivered)
        } else if self.has(1) {
            Some(Until::Sent)
        } else {
            None
        }
    }
}

/// Figure 6 in one run: send throughput of the same backlog on empty tables and with the
/// finished rows loaded first.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub empty_rows_per_s: f64,
    pub preloaded_rows_per_s: f64,
}

/// Everything the runs measured, in run order.
#[derive(Default)]
pub struct Measured {
    pub backlogs: Vec<BacklogRun>,
    pub pickups: Vec<Vec<f64>>,
    pub littles: Vec<BacklogRun>,
    /// Figure 5's worker processes: per run, the backlog and then (if any) the files.
    pub memory: Vec<MemoryRun>,
    pub scales: Vec<Scale>,
}

/// The selected figures, in order of their numbers.
pub fn figures(args: &Args, selection: &Selection, m: &Measured) -> Vec<Figure> {
    let of = |f: fn(&BacklogRun) -> f64| m.backlogs.iter().map(f).collect::<Vec<f64>>();
    let mut out = Vec::new();
    if selection.has(1) {
        let target = "≥ 8412 (2 × graphile batched), ≥ 8754 (50 % pgbench-32)";
        out.push(Figure::new("1", "send throughput", "rows/s", of(|b| b.send_rows_per_s), target));
    }
    if selection.has(2) {
        let runs = of(|b| b.end_to_end_rows_per_s.unwrap_or(f64::NAN));
        out.push(Figure::new("2", "end-to-end throughput", "rows/s", runs, "-"));
    }
    if selection.has(3) {
        out.push(Figure::new("3", "pickup latency p50", "ms", pickup(m, 50.0), "< 10"));
        out.push(Figure::new("3", "pickup latency p99", "ms", pickup(m, 99.0), "< 50"));
    }
    if selection.has(4) {
        let limit = (LITTLE_CONCURRENCY as f64) * 1000.0 / LITTLE_LATENCY_MS as f64;
        let name = format!("Little's law ({LITTLE_LATENCY_MS} ms, C={LITTLE_CONCURRENCY}, {} rows)", args.little_rows);
        let runs = m.littles.iter().map(|l| 100.0 * l.send_rows_per_s / limit).collect();
        out.push(Figure::new("4", name, "% of 640/s", runs, "≥ 90"));
    }
    if selection.has(5) {
        out.extend(memory(args, m));
    }
    if selection.has(6) {
        let name = format!("send throughput, {} finished rows in the tables", args.scale_rows);
        let runs = m.scales.iter().map(|s| 100.0 * s.preloaded_rows_per_s / s.empty_rows_per_s).collect();
        out.push(Figure::new("6", name, "% of empty", runs, "≥ 90"));
    }
    if selection.has(7) {
        let per_delivered = of(|b| b.status_requests as f64 / b.delivered.max(1) as f64);
        out.push(Figure::new(
            "7",
            "status requests per delivered",
            "req/row",
            per_delivered,
            "≤ 1.5 (publish within 5 s)",
        ));
        let per_row = of(|b| b.worker_transactions as f64 / f64::from(b.rows));
        out.push(Figure::new("7", "worker transactions per row", "xact/row", per_row, "-"));
    }
    out
}

/// Each run's pickup latency percentile `p`.
fn pickup(m: &Measured, p: f64) -> Vec<f64> {
    m.pickups
        .iter()
        .map(|latencies| {
            let mut sorted = latencies.clone();
            sorted.sort_by(f64::total_cmp);
            report::percentile(&sorted, p)
        })
        .collect()
}

/// Figure 5: the peaks, and what the files added per request in flight.
fn memory(args: &Args, m: &Measured) -> Vec<Figure> {
    let peaks = |load: &str| m.memory.iter().filter(|r| r.load == load).map(MemoryRun::peak_mib).collect::<Vec<_>>();
    let plain = peaks("backlog");
    let name = format!("peak RSS, {} rows backlog", args.rss_rows);
    let mut out = vec![Figure::new("5", name, "MiB", plain.clone(), "≤ 64")];
    if args.rss_file_rows > 0 {
        let files = peaks("files");
        let name = format!("peak RSS, {} rows with a {} KiB file", args.rss_file_rows, args.rss_file_kib);
        out.push(Figure::new("5", name, "MiB", files.clone(), "-"));
        // Every slot sends a file in the files run (fewer rows than slots fill fewer); the
        // backlog run is the baseline.
        let in_flight = args.concurrency.min(args.rss_file_rows as usize).max(1) as f64;
        let per_request = plain.iter().zip(&files).map(|(p, f)| (f - p) / in_flight).collect();
        out.push(Figure::new("5", "files' added peak per request in flight", "MiB/req", per_request, "-"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_runs_only_as_far_as_its_figures_need() {
        assert_eq!(Selection::new(&[1]).backlog(), Some(Until::Sent));
        assert_eq!(Selection::new(&[1, 5]).backlog(), Some(Until::Sent));
        assert_eq!(Selection::new(&[1, 2]).backlog(), Some(Until::Delivered));
        assert_eq!(Selection::new(&[7]).backlog(), Some(Until::Delivered));
        assert_eq!(Selection::new(&[3, 4, 5, 6, 8]).backlog(), None);
        assert_eq!(Selection::new(&[5, 1, 5]).numbers(), &[1, 5]);
    }
}
