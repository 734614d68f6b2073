//! `retry ID` and `retry --failed [--code N]`: failed deliveries go back to work. What
//! goes where, and why a retry never makes a second correspondence, is said at
//! [`crate::outbox::admin::retry`].

use serde_json::{json, Value};
use sqlx::PgPool;

use super::format::{or_dash, table};
use super::{Answer, Exit};
use crate::outbox::admin::{self, Retried, RetryScope};

/// What happened to one delivery; the JSON's `outcome`.
fn outcome(r: &Retried) -> &'static str {
    match (r.old_state.as_str(), r.new_state.as_str()) {
        ("failed", "pending" | "waiting_files") => "requeued",
        ("failed" | "unconfirmed", "awaiting_status") => "status_reread",
        ("failed", _) => "refused",
        _ => "not_failed",
    }
}

fn detail(r: &Retried) -> String {
    match outcome(r) {
        "requeued" if r.new_state == "waiting_files" => "sent again after its message's files are uploaded again".into(),
        "requeued" => "sent again with the same idempotency key".into(),
        "status_reread" => "Altinn has the correspondence: its status is read again".into(),
        "refused" => format!(
            "Altinn itself failed the correspondence (status {}); to send the letter again, insert it with a higher resend",
            or_dash(r.altinn_status.as_ref())
        ),
        _ => format!("not failed ({})", r.old_state),
    }
}

pub async fn retry(pool: &PgPool, scope: &RetryScope) -> anyhow::Result<Answer> {
    let rows = admin::retry(pool, scope).await?;
    if let (RetryScope::Message(id), true) = (scope, rows.is_empty()) {
        return Ok(Answer::not_found(*id));
    }
    let count = |o: &str| rows.iter().filter(|r| outcome(r) == o).count();
    let (requeued, reread, refused) = (count("requeued"), count("status_reread"), count("refused"));
    let (exit, note) = if refused > 0 {
        (Exit::Refused, Some(format!("{refused} failed deliveries cannot be retried: Altinn failed them itself")))
    } else if matches!(scope, RetryScope::Message(_)) && requeued + reread == 0 {
        (Exit::Refused, Some("the message has no failed delivery".to_string()))
    } else {
        (Exit::Success, None)
    };
    let listed: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "delivery_id": r.delivery_id, "message_id": r.message_id, "outcome": outcome(r),
                "old_state": r.old_state, "new_state": r.new_state, "error_code": r.error_code,
                "correspondence_id": r.correspondence_id, "altinn_status": r.altinn_status,
            })
        })
        .collect();
    let json = json!({
        "requeued": requeued, "status_reread": reread, "refused": refused,
        "not_failed": count("not_failed"), "deliveries": listed,
    });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = r.delivery_id.to_string();
            vec![id, r.message_id.to_string(), outcome(r).into(), or_dash(r.error_code.as_ref()), detail(r)]
        })
        .collect();
    let mut text = if rows.is_empty() {
        String::new()
    } else {
        table(&["DELIVERY", "MESSAGE", "OUTCOME", "LAST ERROR", "DETAIL"], &cells)
    };
    text += &format!(
        "{} put back: {requeued} to be sent again, {reread} to have the status read again; {refused} refused\n",
        requeued + reread
    );
    Ok(Answer { exit, table: text, json, note })
}
