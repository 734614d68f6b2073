//! `outbox-bench`: measures the worker. Each run makes a fresh database, migrates,
//! loads rows, starts the fake Maskinporten and Altinn and the daemon's own loop in this
//! process, and reads the figures back from the tables the worker wrote and the requests the
//! fake saw. Figure 5 (memory) runs the daemon as a process of its own instead.
//! Every figure is the median of `--runs` runs, with min and max.
//!
//! - `env`: one run's database, fake and worker context. `scenario`: the in-process runs (a
//!   bulk backlog, with or without finished rows loaded first; rows inserted one at a time).
//!   `memory`: the worker process's peak memory. `anchors`: other queues' figures.
//!   `figures`: which figures, and how each is computed. `report`: the table and JSON.

pub mod anchors;
mod env;
mod figures;
mod memory;
mod report;
mod scenario;
#[doc(hidden)]
pub mod sql;

use std::path::PathBuf;
use std::time::Duration;

use env::{BenchKey, RunSettings};
use figures::{Measured, Scale, Selection, LITTLE_CONCURRENCY, LITTLE_FIRST_POLL_MS, LITTLE_LATENCY_MS};
use memory::Load;
use report::Report;
use scenario::Until;

/// Figure 5's files at most: PostgreSQL holds at most 1 GiB in a value; half that is plenty.
const MAX_RSS_FILE_KIB: u32 = 512 * 1024;

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
    #[arg(long, default_value_t = altinn_outbox::config::StatusConfig::default().first_poll_delay_ms)]
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
    /// The figures to measure, by number: 1 send throughput, 2 end to end, 3 pickup latency,
    /// 4 Little's law, 5 peak RSS, 6 scale, 7 economy, 8 anchors. With 1 but neither 2 nor 7,
    /// the backlog runs only until every row is sent.
    #[arg(long, value_delimiter = ',', default_values_t = figures::ALL)]
    #[arg(value_parser = clap::value_parser!(u8).range(1..=8))]
    pub figures: Vec<u8>,
    /// Figure 5: rows of the backlog the worker process works off.
    #[arg(long, default_value_t = 100_000)]
    pub rss_rows: u32,
    /// Figure 5: rows with one file each (sent in multipart requests); 0 leaves them out.
    #[arg(long, default_value_t = 2_000)]
    pub rss_file_rows: u32,
    /// Figure 5: the size of each of those files, in KiB.
    #[arg(long, default_value_t = 1_024)]
    pub rss_file_kib: u32,
    /// Figure 6: finished rows loaded into the tables before the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_rows: u32,
    /// Figure 8: run the anchors' `run-all.sh` with --rows and --concurrency after our runs
    /// (about two minutes; needs Node, npm, Python and PyPI) instead of showing the reference
    /// figures. Needs --anchors-dir (or ALTINN_OUTBOX_ANCHORS_DIR).
    #[arg(long)]
    pub anchors: bool,
    /// The anchors' folder, holding run-all.sh (not shipped with altinn-outbox); required by
    /// --anchors.
    #[arg(long, env = "ALTINN_OUTBOX_ANCHORS_DIR")]
    pub anchors_dir: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Figure 5: the daemon binary to run [default: `altinn-outbox` beside this binary].
    #[arg(long, env = "OUTBOX_BENCH_DAEMON")]
    pub daemon: Option<PathBuf>,
}

impl Args {
    /// The daemon figure 5 runs as a process of its own.
    fn daemon(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.daemon {
            return Ok(path.clone());
        }
        let beside = std::env::current_exe()?.with_file_name("altinn-outbox");
        anyhow::ensure!(
            beside.is_file(),
            "figure 5 runs the daemon, and there is no {}: build it (cargo build --release -p altinn-outbox) or give --daemon",
            beside.display()
        );
        Ok(beside)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0 && args.rows > 0, "--runs and --rows must be at least 1");
    anyhow::ensure!(
        (1..=MAX_RSS_FILE_KIB).contains(&args.rss_file_kib),
        "--rss-file-kib must be between 1 and {MAX_RSS_FILE_KIB}"
    );
    let selection = Selection::new(&args.figures);
    anyhow::ensure!(!args.anchors || selection.has(8), "--anchors measures figure 8: add 8 to --figures");
    let anchors_dir = match (&args.anchors_dir, args.anchors) {
        (Some(dir), true) => Some(dir.as_path()),
        (None, true) => anyhow::bail!(
            "--anchors needs the anchors' folder (the one holding run-all.sh): \
             give --anchors-dir or set ALTINN_OUTBOX_ANCHORS_DIR"
        ),
        (_, false) => None,
    };
    let key = BenchKey::generate()?;
    let server = args.database_url.trim_end_matches('/').to_string();
    let main = RunSettings {
        concurrency: args.concurrency,
        latency: Duration::from_millis(args.latency_ms),
        publish_after_ms: args.publish_after_ms,
        first_poll_delay_ms: args.first_poll_delay_ms,
    };
    let setup = Setup { args: &args, selection: &selection, server: &server, key: &key, main };
    let mut measured = Measured::default();
    for i in 1..=args.runs {
        setup.measure_run(&format!("run {i}/{}", args.runs), &mut measured).await?;
    }
    let anchors = match (selection.has(8), anchors_dir) {
        (false, _) => Vec::new(),
        (true, None) => anchors::reference(),
        (true, Some(dir)) => anchors::measure(dir, args.rows, args.concurrency, &server).await?,
    };
    let report = assemble(&args, &selection, &measured, anchors);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// What every run shares.
struct Setup<'a> {
    args: &'a Args,
    selection: &'a Selection,
    server: &'a str,
    key: &'a BenchKey,
    main: RunSettings,
}

impl Setup<'_> {
    /// One run of each selected measurement, one after another (never two at once: they
    /// share the machine), with progress on stderr.
    async fn measure_run(&self, run: &str, m: &mut Measured) -> anyhow::Result<()> {
        let (args, server, key, main) = (self.args, self.server, self.key, self.main);
        if let Some(until) = self.selection.backlog() {
            let b = scenario::backlog(server, key, main, args.rows, 0, until).await?;
            let (sent, delivered) = (b.sent, b.delivered);
            eprintln!("{run}: backlog: send {:.0} rows/s, sent {sent}, delivered {delivered}", b.send_rows_per_s);
            m.backlogs.push(b);
        }
        if self.selection.has(3) {
            let p = scenario::pickup(server, key, main, args.pickup_rate, args.pickup_seconds).await?;
            eprintln!("{run}: pickup: {} rows", p.len());
            m.pickups.push(p);
        }
        if self.selection.has(4) {
            // Sends only: status reads coming due after 5 s would take up to half of the 64
            // slots for the rest of the run, and figure 4 is about keeping sends in flight.
            let little = RunSettings {
                concurrency: LITTLE_CONCURRENCY,
                latency: Duration::from_millis(LITTLE_LATENCY_MS),
                first_poll_delay_ms: LITTLE_FIRST_POLL_MS,
                ..main
            };
            let l = scenario::backlog(server, key, little, args.little_rows, 0, Until::Sent).await?;
            eprintln!("{run}: Little's law: send {:.0} rows/s", l.send_rows_per_s);
            m.littles.push(l);
        }
        if self.selection.has(5) {
            self.measure_memory(run, m).await?;
        }
        if self.selection.has(6) {
            self.measure_scale(run, m).await?;
        }
        Ok(())
    }

    /// Figure 5: the worker process on a plain backlog, then on rows with files.
    async fn measure_memory(&self, run: &str, m: &mut Measured) -> anyhow::Result<()> {
        let (args, server, key, main) = (self.args, self.server, self.key, self.main);
        let plain = memory::measure(&args.daemon()?, server, key, main, args.rss_rows, Load::Plain).await?;
        eprintln!("{run}: memory: {} rows, worker process peak RSS {:.1} MiB", plain.rows, plain.peak_mib());
        m.memory.push(plain);
        if args.rss_file_rows > 0 {
            let load = Load::Files { bytes: args.rss_file_kib * 1024 };
            eprintln!("{run}: memory: loading {} rows with a {} KiB file each", args.rss_file_rows, args.rss_file_kib);
            let files = memory::measure(&args.daemon()?, server, key, main, args.rss_file_rows, load).await?;
            eprintln!(
                "{run}: memory: {} rows with files, worker process peak RSS {:.1} MiB",
                files.rows,
                files.peak_mib()
            );
            m.memory.push(files);
        }
        Ok(())
    }

    /// Figure 6: the same backlog with the finished rows loaded first, against empty tables.
    async fn measure_scale(&self, run: &str, m: &mut Measured) -> anyhow::Result<()> {
        let (args, server, key, main) = (self.args, self.server, self.key, self.main);
        let empty = match m.backlogs.last() {
            // This run's backlog run went only until sent on empty tables: the same run.
            Some(b) if self.selection.backlog() == Some(Until::Sent) => b.send_rows_per_s,
            _ => scenario::backlog(server, key, main, args.rows, 0, Until::Sent).await?.send_rows_per_s,
        };
        eprintln!("{run}: scale: send {empty:.0} rows/s on empty tables; loading {} finished rows", args.scale_rows);
        let preloaded = scenario::backlog(server, key, main, args.rows, args.scale_rows, Until::Sent).await?;
        eprintln!("{run}: scale: send {:.0} rows/s with them", preloaded.send_rows_per_s);
        m.scales.push(Scale { empty_rows_per_s: empty, preloaded_rows_per_s: preloaded.send_rows_per_s });
        Ok(())
    }
}

fn assemble(args: &Args, selection: &Selection, m: &Measured, anchors: Vec<anchors::Anchor>) -> Report {
    Report {
        rows: args.rows,
        concurrency: args.concurrency,
        latency_ms: args.latency_ms,
        publish_after_ms: args.publish_after_ms,
        runs: args.runs,
        selected: selection.numbers().to_vec(),
        figures: figures::figures(args, selection, m),
        backlog_until: selection.backlog(),
        sent: m.backlogs.iter().map(|b| b.sent).collect(),
        delivered: m.backlogs.iter().map(|b| b.delivered).collect(),
        memory: m.memory.clone(),
        anchors,
    }
}
