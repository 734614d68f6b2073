//! `show ID`: one message, each of its deliveries and their history. Recipients are masked
//! (identifiers::masked): the output lands in terminals, tickets and chat. Error texts are
//! scrubbed again (identifiers::scrub): the client scrubs Altinn's texts before they are
//! stored, but rows written by hand, or by a version before that, may still quote a recipient.

use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;

use super::format::{fields, opt_time, or_dash, table, time};
use super::{Answer, Exit};
use crate::identifiers::{masked, scrub};
use crate::outbox::admin::{self, DeliveryInfo, HistoryRow, MessageInfo};
use crate::outbox::DeliveryState;

#[derive(Serialize)]
struct DeliveryView {
    #[serde(flatten)]
    delivery: DeliveryInfo,
    history: Vec<HistoryRow>,
}

pub async fn show(pool: &PgPool, id: i64) -> anyhow::Result<Answer> {
    let Some(message) = admin::message(pool, id).await? else {
        return Ok(Answer::not_found(id));
    };
    let history = admin::history(pool, id).await?;
    let deliveries: Vec<DeliveryView> = admin::deliveries(pool, id)
        .await?
        .into_iter()
        .map(|mut delivery| {
            delivery.recipient = masked(&delivery.recipient);
            scrub_text(&mut delivery.error_message);
            let mut history: Vec<HistoryRow> =
                history.iter().filter(|h| h.delivery_id == delivery.id).cloned().collect();
            history.iter_mut().for_each(|h| scrub_text(&mut h.detail));
            DeliveryView { delivery, history }
        })
        .collect();
    let mut text = message_text(&message);
    for d in &deliveries {
        text += "\n";
        text += &delivery_text(d);
    }
    let json = json!({ "message": message, "deliveries": deliveries });
    Ok(Answer { exit: Exit::Success, table: text, json, note: None })
}

fn scrub_text(text: &mut Option<String>) {
    if let Some(t) = text {
        *t = scrub(t).into_owned();
    }
}

fn message_text(m: &MessageInfo) -> String {
    fields(
        "",
        &[
            ("message", Some(m.id.to_string())),
            ("resource", Some(m.resource_id.clone())),
            ("reference", Some(format!("{} (resend {})", m.senders_reference, m.resend))),
            ("created", Some(time(m.created_at))),
        ],
    )
}

fn delivery_text(view: &DeliveryView) -> String {
    let d = &view.delivery;
    let status = d.altinn_status.as_ref().map(|s| match d.altinn_status_at {
        Some(at) => format!("{s} (since {})", time(at)),
        None => s.clone(),
    });
    let error = d.error_code.as_ref().map(|c| format!("{c}: {}", d.error_message.as_deref().unwrap_or("")));
    let lease = d.locked_until.map(|until| format!("{} until {}", or_dash(d.locked_by.as_ref()), time(until)));
    let next_attempt = (d.state == DeliveryState::Pending).then(|| time(d.next_attempt_at));
    let mut out = format!("delivery {} to {}\n", d.id, d.recipient);
    out += &fields(
        "  ",
        &[
            ("state", Some(format!("{} (attempts {}, status reads {})", d.state, d.attempts, d.polls))),
            ("leased by", lease),
            ("next attempt", next_attempt),
            ("idempotency key", d.idempotency_key.map(|k| k.to_string())),
            ("correspondence", d.correspondence_id.map(|c| c.to_string())),
            ("altinn status", status),
            ("notification", d.notification.map(|n| n.to_string())),
            ("error", error),
            ("sent", opt_time(d.sent_at)),
            ("published", opt_time(d.published_at)),
            ("read", opt_time(d.read_at)),
            ("confirmed", opt_time(d.confirmed_at)),
            ("next status read", opt_time(d.next_poll_at)),
            ("finished", opt_time(d.finished_at)),
            ("updated", Some(time(d.updated_at))),
        ],
    );
    if !view.history.is_empty() {
        let rows: Vec<Vec<String>> = view
            .history
            .iter()
            .map(|h| {
                let change = format!("{} → {}", or_dash(h.old_value.as_ref()), or_dash(h.new_value.as_ref()));
                vec![time(h.at), h.kind.to_string(), change, h.detail.clone().unwrap_or_default()]
            })
            .collect();
        let history = table(&["AT", "KIND", "CHANGE", "DETAIL"], &rows);
        out += "  history\n";
        out += &history.lines().map(|l| format!("    {l}\n")).collect::<String>();
    }
    out
}
