//! `retry ID` and `retry --failed [--code N]`: failed deliveries go back to work. What
//! goes where, and why a retry never makes a second correspondence, is said at
//! [`crate::outbox::admin::retry`].

use serde_json::{json, Value};
use sqlx::PgPool;

use super::format::{or_dash, table};
use super::{Answer, Exit};
use crate::outbox::admin::{self, Retried, RetryScope};
use crate::outbox::DeliveryState;

/// What happened to one delivery; the JSON's `outcome`, and the summary's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RetryOutcome {
    /// Never sent: back in the queue (or waiting for its files again).
    Requeued,
    /// Altinn has it: its status is read again.
    StatusReread,
    /// Altinn failed it itself: left as it is.
    Refused,
    /// Not failed: left as it is.
    NotFailed,
}

impl RetryOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RetryOutcome::Requeued => "requeued",
            RetryOutcome::StatusReread => "status_reread",
            RetryOutcome::Refused => "refused",
            RetryOutcome::NotFailed => "not_failed",
        }
    }
}

fn outcome(r: &Retried) -> RetryOutcome {
    use DeliveryState as S;
    match (r.old_state, r.new_state) {
        (S::Failed, S::Pending | S::WaitingFiles) => RetryOutcome::Requeued,
        (S::Failed | S::Unconfirmed, S::AwaitingStatus) => RetryOutcome::StatusReread,
        (S::Failed, _) => RetryOutcome::Refused,
        _ => RetryOutcome::NotFailed,
    }
}

fn detail(r: &Retried) -> String {
    match outcome(r) {
        RetryOutcome::Requeued if r.new_state == DeliveryState::WaitingFiles => {
            "sent again after its message's files are uploaded again".into()
        }
        RetryOutcome::Requeued => "sent again with the same idempotency key".into(),
        RetryOutcome::StatusReread => "Altinn has the correspondence: its status is read again".into(),
        RetryOutcome::Refused => format!(
            "Altinn itself failed the correspondence (status {}); to send the letter again, insert it with a higher resend",
            or_dash(r.altinn_status.as_ref())
        ),
        RetryOutcome::NotFailed => format!("not failed ({})", r.old_state),
    }
}

pub async fn retry(pool: &PgPool, scope: &RetryScope) -> anyhow::Result<Answer> {
    let rows = admin::retry(pool, scope).await?;
    if let (RetryScope::Message(id), true) = (scope, rows.is_empty()) {
        return Ok(Answer::not_found(*id));
    }
    let count = |o: RetryOutcome| rows.iter().filter(|r| outcome(r) == o).count();
    let (requeued, reread, refused) =
        (count(RetryOutcome::Requeued), count(RetryOutcome::StatusReread), count(RetryOutcome::Refused));
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
                "delivery_id": r.delivery_id, "message_id": r.message_id, "outcome": outcome(r).as_str(),
                "old_state": r.old_state, "new_state": r.new_state, "error_code": r.error_code,
                "correspondence_id": r.correspondence_id, "altinn_status": r.altinn_status,
            })
        })
        .collect();
    let json = json!({
        "requeued": requeued, "status_reread": reread, "refused": refused,
        "not_failed": count(RetryOutcome::NotFailed), "deliveries": listed,
    });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = r.delivery_id.to_string();
            vec![id, r.message_id.to_string(), outcome(r).as_str().into(), or_dash(r.error_code.as_ref()), detail(r)]
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
