//! The bench's output: one aligned table of figures (median of the runs, with min and max,
//! beside its target), the anchors' figures with our ratio to them, or JSON.

use serde::Serialize;

use super::anchors::Anchor;
use super::memory::MemoryRun;
use super::scenario::Until;

/// One figure over all runs.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The figure's number ("1", "3", ...).
    pub number: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
    /// What the figure should reach (docs/performance.md).
    pub target: String,
}

impl Figure {
    pub fn new(
        number: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        runs: Vec<f64>,
        target: &str,
    ) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        Figure {
            number,
            name: name.into(),
            unit,
            median: percentile(&sorted, 50.0),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs,
            target: target.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rows: u32,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub publish_after_ms: u64,
    pub runs: usize,
    /// The figures measured (`--figures`).
    pub selected: Vec<u8>,
    pub figures: Vec<Figure>,
    /// How far each backlog run went: delivered, or sent when only figure 1 needed it; none
    /// when no figure needed the backlog run.
    pub backlog_until: Option<Until>,
    /// Rows sent and delivered in each backlog run, beside `rows` loaded: equal when nothing was lost.
    pub sent: Vec<i64>,
    pub delivered: Vec<i64>,
    /// Figure 5's worker processes, every run.
    pub memory: Vec<MemoryRun>,
    pub anchors: Vec<Anchor>,
}

impl Report {
    /// The aligned table, then the anchors with our send throughput's ratio to each.
    pub fn table(&self) -> String {
        let mut out = format!(
            "altinn-outbox bench: {} rows, concurrency {}, added latency {} ms, publish after {} ms, \
             {} run(s): median (min .. max)\n\n",
            self.rows, self.concurrency, self.latency_ms, self.publish_after_ms, self.runs
        );
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    format!("{} {}", f.number, f.name),
                    num(f.median),
                    format!("({} .. {})", num(f.min), num(f.max)),
                    f.unit.to_string(),
                    f.target.clone(),
                ]
            })
            .collect();
        let header = ["figure".to_string(), "median".into(), "(min .. max)".into(), "unit".into(), "target".into()];
        out.push_str(&aligned(&header, &rows));
        out.push_str(&self.counts());
        out.push_str(&self.anchor_table());
        out
    }

    /// What each run got through: the backlog runs' rows, figure 5's worker processes.
    fn counts(&self) -> String {
        let mut out = String::new();
        let joined = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let per_run = match self.backlog_until {
            Some(Until::Delivered) => Some(("delivered", joined(&self.delivered))),
            Some(Until::Sent) => Some(("sent", joined(&self.sent))),
            None => None,
        };
        if let Some((what, counts)) = per_run {
            out.push_str(&format!("\n{what} per run: {counts} of {}\n", self.rows));
        }
        if !self.memory.is_empty() {
            out.push('\n');
        }
        for m in &self.memory {
            let file =
                if m.file_bytes > 0 { format!(" with a {} KiB file each", m.file_bytes / 1024) } else { String::new() };
            out.push_str(&format!(
                "worker process {} ({} rows{file}): sent {}, peak RSS {} KiB, exit code {}\n",
                m.pid,
                m.rows,
                m.sent,
                m.peak_rss_kib,
                m.exit_code.map_or("-".into(), |c| c.to_string())
            ));
        }
        out
    }

    /// The anchors with our send throughput's (figure 1's median) ratio to each.
    fn anchor_table(&self) -> String {
        if self.anchors.is_empty() {
            return String::new();
        }
        let send = self.figures.iter().find(|f| f.number == "1").map(|f| f.median);
        let rows: Vec<[String; 5]> = self
            .anchors
            .iter()
            .map(|a| {
                let ratio = send.map_or("-".into(), |s| format!("{:.2}", s / a.rows_per_s));
                [a.name.clone(), num(a.rows_per_s), ratio, String::new(), a.source.clone()]
            })
            .collect();
        let header = ["anchor".to_string(), "rows/s".into(), "ours ÷ it".into(), String::new(), "source".into()];
        "\nanchors (HTTP jobs or rows per second) beside our send throughput:\n".to_string() + &aligned(&header, &rows)
    }
}

/// Linear-interpolated percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Columns padded to their widest cell; numbers (columns 1 and 2) right-aligned.
fn aligned(header: &[String; 5], rows: &[[String; 5]]) -> String {
    let mut widths = header.iter().map(|h| h.chars().count()).collect::<Vec<_>>();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i == 1 || i == 2 {
                s.push_str(&format!("{pad}{cell}  "));
            } else {
                s.push_str(&format!("{cell}{pad}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    rows.iter().for_each(|r| out.push_str(&line(r)));
    out
}
