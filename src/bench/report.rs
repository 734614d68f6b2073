//! The bench's output: one aligned table of figures (median of the runs, with min and max,
//! beside the target), the anchors' figures with our ratio to them, or JSON.

use serde::Serialize;

/// One figure over all runs.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The number for the figure ("1", "3", ...).
    pub number: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
    /// What issue 6 asks for.
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

/// A figure of another queue on the same kind of job, to set ours beside.
#[derive(Clone, Debug, Serialize)]
pub struct Anchor {
    pub name: &'static str,
    pub rows_per_s: f64,
    /// Where the figure comes from (this run, or the measurement).
    pub source: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rows: u32,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub publish_after_ms: u64,
    pub runs: usize,
    pub figures: Vec<Figure>,
    /// Rows delivered in each backlog run, and rows loaded: equal when nothing was lost.
    pub delivered: Vec<i64>,
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
        let loaded = self.rows as i64;
        let delivered = self.delivered.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("\ndelivered per run: {delivered} of {loaded}\n"));
        if let Some(send) = self.figures.first() {
            out.push_str("\nanchors (HTTP jobs or rows per second) beside our send throughput:\n");
            let rows: Vec<[String; 5]> = self
                .anchors
                .iter()
                .map(|a| {
                    let ratio = format!("{:.2}", send.median / a.rows_per_s);
                    [a.name.to_string(), num(a.rows_per_s), ratio, String::new(), a.source.clone()]
                })
                .collect();
            let header = ["anchor".to_string(), "rows/s".into(), "ours ÷ it".into(), String::new(), "source".into()];
            out.push_str(&aligned(&header, &rows));
        }
        out
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
