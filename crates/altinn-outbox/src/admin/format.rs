//! Plain text for a terminal: aligned columns, times in UTC, ages in days/hours/minutes.

use chrono::{DateTime, Utc};

/// Columns padded to their widest cell, two spaces apart, a header line first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `label  value` lines, labels padded to the longest; rows without a value are left out.
pub fn fields(indent: &str, rows: &[(&str, Option<String>)]) -> String {
    let width = rows.iter().filter(|(_, v)| v.is_some()).map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.iter().filter_map(|(label, value)| value.as_ref().map(|v| format!("{indent}{label:<width$}  {v}\n"))).collect()
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time)
}

/// `3d 4h`, `5h 12m`, `42s`: the two largest units, enough to judge a backlog.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A missing value in a table cell.
pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![vec!["pending".to_string(), "3".to_string()], vec!["delivered".into(), "120".into()]];
        assert_eq!(table(&["STATE", "N"], &rows), "STATE      N\npending    3\ndelivered  120\n");
    }

    #[test]
    fn ages_use_two_units() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(3 * 60 + 5), "3m 5s");
        assert_eq!(age(5 * 3600 + 12 * 60), "5h 12m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn fields_skip_missing_values() {
        let out = fields("  ", &[("state", Some("failed".into())), ("published", None), ("error", Some("x".into()))]);
        assert_eq!(out, "  state  failed\n  error  x\n");
    }
}
