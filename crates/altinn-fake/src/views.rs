//! Overview and details bodies as a sender sees them: the highest
//! status, blanked content once published, purged rows hidden from the history, and live
//! notification status derived from the fake clock.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::model::{at, REFERENCE_TYPES};
use super::state::{NotificationOrder, Record, Status};
use super::FakeConfig;

/// The service owner behind every resource the fake knows (Digdir, as in Altinn's samples).
pub(crate) const SENDER_URN: &str = "urn:altinn:organization:identifier-no:991825827";
const ORG_URN: &str = "urn:altinn:organization:identifier-no:";
const PERSON_URN: &str = "urn:altinn:person:identifier-no:";

fn time(t: DateTime<Utc>) -> Value {
    json!(t.to_rfc3339_opts(SecondsFormat::Micros, false))
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, time)
}

fn text(v: &Value, path: &[&str]) -> Value {
    at(v, path).cloned().unwrap_or(Value::Null)
}

/// The sender loses access to the content once it is published.
fn content(record: &Record) -> Value {
    if record.first(Status::Published).is_some() {
        return json!({
            "language": "no", "messageTitle": "", "messageSummary": "", "messageBody": "",
            "attachments": [],
        });
    }
    let c = at(&record.normalized, &["correspondence", "content"]).cloned().unwrap_or_default();
    json!({
        "language": at(&c, &["language"]).cloned().unwrap_or(json!("nb")),
        "messageTitle": text(&c, &["messageTitle"]),
        "messageSummary": text(&c, &["messageSummary"]),
        "messageBody": text(&c, &["messageBody"]),
        "attachments": [],
    })
}

/// Echoes enum values as names, as the real server serialises them.
fn reference_type(v: &Value) -> Value {
    let name = match v {
        Value::Number(n) => n.as_u64().and_then(|n| REFERENCE_TYPES.get(n as usize).copied()),
        Value::String(s) => REFERENCE_TYPES.iter().find(|t| t.eq_ignore_ascii_case(s)).copied(),
        _ => None,
    };
    name.map_or(Value::Null, Value::from)
}

/// The fields overview and details share.
fn common(record: &Record) -> Map<String, Value> {
    let c = at(&record.normalized, &["correspondence"]).cloned().unwrap_or_default();
    let list = |name: &str| at(&c, &[name]).and_then(Value::as_array).cloned().unwrap_or_default();
    let references: Vec<Value> = list("externalReferences")
        .iter()
        .map(|r| json!({ "referenceValue": text(r, &["referenceValue"]), "referenceType": reference_type(&text(r, &["referenceType"])) }))
        .collect();
    let replies: Vec<Value> = list("replyOptions")
        .iter()
        .map(|r| json!({ "linkURL": text(r, &["linkURL"]), "linkText": text(r, &["linkText"]) }))
        .collect();
    let flag = |name: &str| at(&c, &[name]).and_then(Value::as_bool).unwrap_or(false);
    let highest = record.highest();
    let body = json!({
        "resourceId": record.public.resource_id,
        "sender": SENDER_URN,
        "sendersReference": record.public.senders_reference,
        "messageSender": at(&c, &["messageSender"]).cloned().unwrap_or(json!("")),
        "content": content(record),
        "requestedPublishTime": time(record.requested_publish),
        "dueDateTime": text(&c, &["dueDateTime"]),
        "externalReferences": references,
        "propertyList": at(&c, &["propertyList"]).cloned().unwrap_or(json!({})),
        "replyOptions": replies,
        "notification": null,
        "ignoreReservation": at(&c, &["ignoreReservation"]).cloned().unwrap_or(Value::Null),
        "isConfirmationNeeded": flag("isConfirmationNeeded"),
        "isConfidential": flag("isConfidential"),
        "allowForwarding": flag("allowForwarding"),
        "recipient": record.public.recipient,
        "correspondenceId": record.public.id,
        "created": time(record.public.created),
        "status": highest.status.name(),
        "statusText": highest.text,
        "statusChanged": time(highest.at),
        "altinn2CorrespondenceId": null,
        "published": opt_time(record.first(Status::Published)),
        "read": opt_time(record.first(Status::Read)),
    });
    body.as_object().cloned().unwrap_or_default()
}

/// `GET /correspondence/{id}`.
pub(crate) fn overview(record: &Record) -> Value {
    let mut body = common(record);
    let orders: Vec<Value> = match (&record.notification, record.first(Status::Published)) {
        (Some(order), Some(_)) if !order.creation_failed => {
            vec![json!({ "notificationOrderId": order.order_id, "isReminder": false })]
        }
        _ => Vec::new(),
    };
    body.insert("notifications".into(), json!(orders));
    Value::Object(body)
}

/// `GET /correspondence/{id}/details`.
pub(crate) fn details(record: &Record, now: DateTime<Utc>, config: &FakeConfig) -> Value {
    let mut body = common(record);
    let history: Vec<Value> = record
        .history
        .iter()
        .filter(|e| e.status.visible_to_sender())
        .map(|e| json!({ "status": e.status.name(), "statusText": e.text, "statusChanged": time(e.at) }))
        .collect();
    body.insert("statusHistory".into(), json!(history));
    let notifications: Vec<Value> = match (&record.notification, record.first(Status::Published)) {
        (Some(order), Some(published)) if !order.creation_failed => {
            vec![notification(record, order, published, now, config)]
        }
        _ => Vec::new(),
    };
    body.insert("notifications".into(), json!(notifications));
    body.insert("systemLabel".into(), json!("Default"));
    Value::Object(body)
}

/// Who the notification went to, derived from the correspondence recipient.
fn notification_recipient(urn: &str) -> Value {
    let org = urn.strip_prefix(ORG_URN);
    let person = urn.strip_prefix(PERSON_URN);
    json!({
        "emailAddress": null, "mobileNumber": null,
        "organizationNumber": org, "nationalIdentityNumber": person, "isReserved": false,
    })
}

/// Whether a recipient with this send-status suffix counts as sent.
pub(crate) fn outcome_sent(outcome: &str) -> bool {
    matches!(outcome, "Delivered" | "Succeeded" | "Accepted")
}

/// One notification order: sent at publish, delivered `notification_after_ms` later.
fn notification(
    record: &Record,
    order: &NotificationOrder,
    published: DateTime<Utc>,
    now: DateTime<Utc>,
    config: &FakeConfig,
) -> Value {
    let delivered_at = published + Duration::milliseconds(config.notification_after_ms as i64);
    let delivered = now >= delivered_at;
    let changed = if delivered { delivered_at } else { published };
    let detail = |medium: &str, prefix: &str| {
        let outcome = config.outcome_of(medium == "sms");
        // Altinn's `succeeded`: handed over or delivered (NotificationStatusV2).
        let succeeded = delivered && outcome_sent(outcome);
        let status = format!("{prefix}_{}", if delivered { outcome } else { "New" });
        json!({
            // Stable per order and medium, so repeated polls see the same recipient entry.
            "id": Uuid::new_v5(&order.order_id, medium.as_bytes()),
            "succeeded": succeeded,
            "recipient": notification_recipient(&record.public.recipient),
            "sendStatus": { "status": status, "description": null, "lastUpdate": time(changed) },
        })
    };
    let email = order.email.then(|| detail("email", "Email"));
    let sms = order.sms.then(|| detail("sms", "SMS"));
    let n = at(&record.normalized, &["correspondence", "notification"]).cloned().unwrap_or_default();
    json!({
        "id": order.order_id.to_string(),
        "sendersReference": text(&n, &["sendersReference"]),
        "creator": "digdir",
        "created": time(record.public.created),
        "isReminder": false,
        "notificationChannel": order.channel,
        "ignoreReservation": text(&record.normalized, &["correspondence", "ignoreReservation"]),
        "resourceId": record.public.resource_id,
        "processingStatus": {
            "status": if delivered { "Order_Completed" } else { "Order_Processing" },
            "description": null,
            "lastUpdate": time(changed),
        },
        "notificationStatusDetails": {
            "email": email, "sms": sms,
            "emails": email.iter().collect::<Vec<_>>(), "smses": sms.iter().collect::<Vec<_>>(),
        },
    })
}
