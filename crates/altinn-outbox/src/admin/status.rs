//! `status` (the outbox at a glance) and `prune` (deleting what finished long ago).

use std::time::Duration;

use serde_json::{json, Map, Value};
use sqlx::PgPool;

use super::format::{age, or_dash, table, time};
use super::{Answer, Exit};
use crate::outbox::admin::{self, PruneReport, Summary};

pub async fn status(pool: &PgPool) -> anyhow::Result<Answer> {
    let summary = admin::summary(pool).await?;
    Ok(Answer { exit: Exit::Success, table: status_table(&summary), json: status_json(&summary), note: None })
}

fn status_json(s: &Summary) -> Value {
    let states: Map<String, Value> = s.deliveries.iter().map(|(state, n)| (state.clone(), json!(n))).collect();
    let failed: Vec<Value> =
        s.failed_last_24h.iter().map(|(code, n)| json!({ "error_code": code, "deliveries": n })).collect();
    json!({
        "messages": s.messages,
        "deliveries": s.deliveries.iter().map(|(_, n)| n).sum::<i64>(),
        "deliveries_by_state": states,
        "oldest_pending": s.oldest_pending,
        "failed_last_24h": failed,
    })
}

fn status_table(s: &Summary) -> String {
    let total: i64 = s.deliveries.iter().map(|(_, n)| n).sum();
    let mut rows: Vec<Vec<String>> = s.deliveries.iter().map(|(state, n)| vec![state.clone(), n.to_string()]).collect();
    rows.push(vec!["total".into(), total.to_string()]);
    let mut out = format!("messages: {}\n\n", s.messages);
    out += &table(&["STATE", "DELIVERIES"], &rows);
    out += "\noldest pending: ";
    out += &match &s.oldest_pending {
        Some(o) => format!(
            "delivery {} of message {} ({}), created {} ({} ago)\n",
            o.delivery_id,
            o.message_id,
            o.state,
            time(o.created_at),
            age(o.age_s)
        ),
        None => "none\n".into(),
    };
    if s.failed_last_24h.is_empty() {
        out += "failed in the last 24 h: none\n";
    } else {
        out += "\nfailed in the last 24 h:\n";
        let rows: Vec<Vec<String>> =
            s.failed_last_24h.iter().map(|(code, n)| vec![or_dash(code.as_ref()), n.to_string()]).collect();
        out += &table(&["ERROR_CODE", "DELIVERIES"], &rows);
    }
    out
}

pub async fn prune(pool: &PgPool, older_than: Duration, dry_run: bool) -> anyhow::Result<Answer> {
    let report =
        if dry_run { admin::prune_preview(pool, older_than).await? } else { admin::prune(pool, older_than).await? };
    let json = json!({
        "dry_run": dry_run,
        "older_than_s": older_than.as_secs(),
        "cutoff": report.cutoff,
        "messages": report.messages,
        "deliveries": report.deliveries,
        "history": report.history,
    });
    Ok(Answer { exit: Exit::Success, table: prune_text(&report, dry_run), json, note: None })
}

fn prune_text(r: &PruneReport, dry_run: bool) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let cutoff = r.cutoff.map(time).unwrap_or_default();
    format!(
        "{verb} {} messages, {} deliveries and {} history rows (finished before {cutoff})\n",
        r.messages, r.deliveries, r.history
    )
}
