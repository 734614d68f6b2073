//! `altinn-outbox bench`: measures the worker (issue 6). Each run makes a fresh database,
//! migrates, loads rows, starts the fake Maskinporten and Altinn and the daemon's own loop
//! in this process, and reads the figures back from the tables the worker wrote and the
//! requests the fake saw. Every figure is the median of `--runs` runs, with min and max.
//!
//! - `env`: one run's database, fake and worker context. `scenario`: the runs (a bulk
//!   backlog; rows inserted one at a time). `report`: the table and JSON.

mod env;
mod report;
mod scenario;

use std::time::Duration;

use env::{BenchKey, RunSettings};
use report::{Anchor, Figure, Report};
use scenario::{BacklogRun, Until};

/// Figure 4's set-up, from the issue: 100 ms per request and 64 in flight allow 640 rows/s.
const LITTLE_LATENCY_MS: u64 = 100;
const LITTLE_CONCURRENCY: usize = 64;
/// The anchors' figures measured for issue 6 on 2026-11-21 (N=20,000, C=32, medians of 8
/// passes), shown when this run did not measure them itself.
const ISSUE_ANCHORS: [(&str, f64); 5] = [
    ("graphile-worker 0.17.3 batched, HTTP jobs", 4206.0),
    ("graphile-worker 0.17.3 default, HTTP jobs", 1184.0),
    ("pgqueuer 1.6.0, HTTP jobs", 1486.0),
    ("pgbench ceiling, 32-row claims", 17508.0),
    ("pgbench ceiling, one row at a time", 1786.0),
];

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Rows loaded in bulk for the throughput runs (one recipient, no attachment each).
    #[arg(long, default_value_t = 20_000)]
    pub rows: u32,
    /// Requests in flight at most (the worker's `concurrency`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Added by the fake to every Correspondence API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// The fake publishes each correspondence this many milliseconds after creating it.
    #[arg(long, default_value_t = 1_000)]
    pub publish_after_ms: u64,
    /// The worker's first status read after a send, in milliseconds (its `status.first_poll_delay_ms`).
    #[arg(long, default_value_t = crate::config::StatusConfig::default().first_poll_delay_ms)]
    pub first_poll_delay_ms: u64,
    /// Runs of each measurement; the table shows their median, min and max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// PostgreSQL server (no database name): each run creates a database there and drops it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub database_url: String,
    /// Pickup latency: rows inserted per second, one at a time.
    #[arg(long, default_value_t = 50)]
    pub pickup_rate: u32,
    /// Pickup latency: for this many seconds.
    #[arg(long, default_value_t = 10)]
    pub pickup_seconds: u32,
    /// Rows of the Little's-law runs (100 ms, concurrency 64); 6,400 is 10 s at the limit.
    #[arg(long, default_value_t = 6_400)]
    pub little_rows: u32,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0 && args.rows > 0, "--runs and --rows must be at least 1");
    let key = BenchKey::generate()?;
    let server = args.database_url.trim_end_matches('/').to_string();
    let main = RunSettings {
        concurrency: args.concurrency,
        latency: Duration::from_millis(args.latency_ms),
        publish_after_ms: args.publish_after_ms,
        first_poll_delay_ms: args.first_poll_delay_ms,
    };
    let mut backlogs = Vec::new();
    let mut pickups = Vec::new();
    let mut littles = Vec::new();
    for i in 1..=args.runs {
        let b = scenario::backlog(&server, &key, main, args.rows, 0, Until::Delivered).await?;
        eprintln!("run {i}/{}: backlog: send {:.0} rows/s, delivered {}", args.runs, b.send_rows_per_s, b.delivered);
        backlogs.push(b);
        let p = scenario::pickup(&server, &key, main, args.pickup_rate, args.pickup_seconds).await?;
        eprintln!("run {i}/{}: pickup: {} rows", args.runs, p.len());
        pickups.push(p);
        let little =
            RunSettings { concurrency: LITTLE_CONCURRENCY, latency: Duration::from_millis(LITTLE_LATENCY_MS), ..main };
        let l = scenario::backlog(&server, &key, little, args.little_rows, 0, Until::Sent).await?;
        eprintln!("run {i}/{}: Little's law: send {:.0} rows/s", args.runs, l.send_rows_per_s);
        littles.push(l);
    }
    let report = assemble(&args, &backlogs, &pickups, &littles);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn assemble(args: &Args, backlogs: &[BacklogRun], pickups: &[Vec<f64>], littles: &[BacklogRun]) -> Report {
    let of = |f: fn(&BacklogRun) -> f64| backlogs.iter().map(f).collect::<Vec<f64>>();
    let pickup = |p: f64| {
        pickups
            .iter()
            .map(|l| {
                let mut sorted = l.clone();
                sorted.sort_by(f64::total_cmp);
                report::percentile(&sorted, p)
            })
            .collect()
    };
    let limit = (LITTLE_CONCURRENCY as f64) * 1000.0 / LITTLE_LATENCY_MS as f64;
    let figures = vec![
        Figure::new(
            "1",
            "send throughput",
            "rows/s",
            of(|b| b.send_rows_per_s),
            "≥ 8412 (2 × graphile batched), ≥ 8754 (50 % pgbench-32)",
        ),
        Figure::new("2", "end-to-end throughput", "rows/s", of(|b| b.end_to_end_rows_per_s.unwrap_or(f64::NAN)), "-"),
        Figure::new("3", "pickup latency p50", "ms", pickup(50.0), "< 10"),
        Figure::new("3", "pickup latency p99", "ms", pickup(99.0), "< 50"),
        Figure::new(
            "4",
            format!("Little's law (100 ms, C=64, {} rows)", args.little_rows),
            "% of 640/s",
            littles.iter().map(|l| 100.0 * l.send_rows_per_s / limit).collect(),
            "≥ 90",
        ),
        Figure::new(
            "7",
            "status requests per delivered",
            "req/row",
            of(|b| b.status_requests as f64 / b.delivered.max(1) as f64),
            "≤ 1.5 (publish within 5 s)",
        ),
        Figure::new(
            "7",
            "worker transactions per row",
            "xact/row",
            of(|b| b.worker_transactions as f64 / b.rows as f64),
            "-",
        ),
    ];
    let anchors = ISSUE_ANCHORS
        .iter()
        .map(|&(name, rows_per_s)| Anchor { name, rows_per_s, source: "issue 6, 2026-11-21 (not this run)".into() })
        .collect();
    Report {
        rows: args.rows,
        concurrency: args.concurrency,
        latency_ms: args.latency_ms,
        publish_after_ms: args.publish_after_ms,
        runs: args.runs,
        figures,
        delivered: backlogs.iter().map(|b| b.delivered).collect(),
        anchors,
    }
}
