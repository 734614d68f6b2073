//! Figure 8: other PostgreSQL job queues on the same kind of job (one HTTP POST per row),
//! beside our send throughput. With `--anchors` the anchors' own script (`run-all.sh`:
//! graphile-worker, pgqueuer, the pgbench ceiling, the HTTP sink alone) runs after our
//! runs, with this invocation's N and C, and its results file is read; it takes the same
//! two cores for about two minutes, so it never runs beside a measurement of ours. Without
//! `--anchors`, the reference figures measured on 2026-11-21 are shown, labelled as such.
//!
//! The anchors are not part of this repository: `--anchors` needs their folder, named by
//! `--anchors-dir` or `ALTINN_OUTBOX_ANCHORS_DIR`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use serde::Serialize;
use tokio::process::Command;

/// The anchors' figures measured on the build machine on 2026-11-21 (N=20,000, C=32, medians
/// of 8 passes), shown when this run did not measure them itself.
const REFERENCE_ANCHORS: [(&str, f64); 5] = [
    ("graphile-worker 0.17.3 batched, HTTP jobs", 4206.0),
    ("graphile-worker 0.17.3 default, HTTP jobs", 1184.0),
    ("pgqueuer 1.6.0, HTTP jobs", 1486.0),
    ("pgbench ceiling, 32-row claims", 17508.0),
    ("pgbench ceiling, one row at a time", 1786.0),
];
const REFERENCE_SOURCE: &str = "reference, 2026-11-21 (not this run)";
/// The line of `run-all.sh`'s output that names its results file.
const RESULTS_LINE: &str = "Results file: ";

/// A figure of another queue on the same kind of job, to set ours beside.
#[derive(Clone, Debug, Serialize)]
pub struct Anchor {
    pub name: String,
    pub rows_per_s: f64,
    /// Where the figure comes from (this run, or the reference measurement).
    pub source: String,
}

/// The reference figures (2026-11-21), for a run without `--anchors`.
pub fn reference() -> Vec<Anchor> {
    REFERENCE_ANCHORS
        .iter()
        .map(|&(name, rows_per_s)| Anchor { name: name.into(), rows_per_s, source: REFERENCE_SOURCE.into() })
        .collect()
}

/// One line of the anchors' results file.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultLine {
    pub system: String,
    pub workload: String,
    pub n: u64,
    /// Jobs in flight (the workers) or clients (pgbench, wrk).
    pub concurrency: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub notes: String,
}

/// Parses the results file: tab-separated system, workload, N, conc, seconds, rows/sec and
/// notes, one line per part and pass, no header.
pub fn parse_results(tsv: &str) -> anyhow::Result<Vec<ResultLine>> {
    let mut lines = Vec::new();
    for (i, line) in tsv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parse = || -> Option<ResultLine> {
            let mut f = line.split('\t');
            Some(ResultLine {
                system: f.next()?.to_string(),
                workload: f.next()?.to_string(),
                n: f.next()?.trim().parse().ok()?,
                concurrency: f.next()?.trim().parse().ok()?,
                seconds: f.next()?.trim().parse().ok()?,
                rows_per_s: f.next()?.trim().parse().ok()?,
                notes: f.collect::<Vec<_>>().join("\t"),
            })
        };
        lines.push(parse().with_context(|| format!("anchors' results, line {}: {line:?}", i + 1))?);
    }
    Ok(lines)
}

/// One anchor per system, workload and concurrency, in the file's order; the median when the
/// script made several passes.
pub fn summarise(lines: &[ResultLine]) -> Vec<Anchor> {
    let mut groups: Vec<(&ResultLine, Vec<f64>)> = Vec::new();
    for line in lines {
        let same = |(g, _): &&mut (&ResultLine, Vec<f64>)| {
            (&g.system, &g.workload, g.concurrency) == (&line.system, &line.workload, line.concurrency)
        };
        match groups.iter_mut().find(same) {
            Some((_, values)) => values.push(line.rows_per_s),
            None => groups.push((line, vec![line.rows_per_s])),
        }
    }
    groups
        .into_iter()
        .map(|(first, mut values)| {
            values.sort_by(f64::total_cmp);
            let passes = values.len();
            Anchor {
                name: format!("{} {}, C={}", first.system, first.workload, first.concurrency),
                rows_per_s: super::report::percentile(&values, 50.0),
                source: format!("this run: N={}, {passes} pass(es)", first.n),
            }
        })
        .collect()
}

/// Runs `run-all.sh` from `dir` with N=`rows` and C=`concurrency` on the bench's server, and
/// reads its results. Its log goes to stderr, its table is echoed there too.
pub async fn measure(dir: &Path, rows: u32, concurrency: usize, server: &str) -> anyhow::Result<Vec<Anchor>> {
    let script = dir.join("run-all.sh");
    anyhow::ensure!(script.is_file(), "--anchors: no {} (see --anchors-dir)", script.display());
    eprintln!("anchors: {} with N={rows} C={concurrency} (about two minutes)", script.display());
    let output = Command::new(&script)
        .env("N", rows.to_string())
        .env("C", concurrency.to_string())
        .envs(libpq_env(server)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("starting {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprint!("{stdout}");
    anyhow::ensure!(output.status.success(), "{} failed: {}", script.display(), output.status);
    let path = results_path(&stdout).with_context(|| format!("no {RESULTS_LINE:?} line from {}", script.display()))?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lines = parse_results(&text)?;
    anyhow::ensure!(!lines.is_empty(), "{} has no results: every part failed (see the log above)", path.display());
    Ok(summarise(&lines))
}

fn results_path(stdout: &str) -> Option<PathBuf> {
    stdout.lines().find_map(|l| l.strip_prefix(RESULTS_LINE)).map(|p| PathBuf::from(p.trim()))
}

/// The anchors' scripts reach PostgreSQL through libpq's variables: the bench's server. A
/// password is not passed on (it would need decoding from the URL): libpq finds its own, in
/// `PGPASSWORD` or `~/.pgpass`, as the scripts expect.
fn libpq_env(server: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let url = url::Url::parse(server).with_context(|| "--database-url is not a URL")?;
    let mut vars = Vec::new();
    if let Some(host) = url.host_str() {
        vars.push(("PGHOST", host.to_string()));
    }
    if let Some(port) = url.port() {
        vars.push(("PGPORT", port.to_string()));
    }
    if !url.username().is_empty() {
        vars.push(("PGUSER", url.username().to_string()));
    }
    Ok(vars)
}
