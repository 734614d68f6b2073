//! Turns an outbox message and one recipient into the Altinn initialize request, or into
//! an error that names the field. Everything Altinn would reject for certain is caught
//! here, before any HTTP call, so the operator sees the mistake on the row at once.

pub mod attachment;
mod column;
mod notification;
mod text;

pub use column::Column;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::altinn::wire::{self, Content, Correspondence, InitializeRequest};
use crate::codes;
use crate::identifiers::Recipient;
use crate::outbox::MessageRow;

/// A message that can never be sent as it is. `field` is the outbox column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: Column,
    pub problem: String,
}

impl Invalid {
    /// The code kept on the row, e.g. `validation:title`.
    pub fn code(&self) -> String {
        codes::validation(self.field)
    }
}

fn invalid(field: Column, problem: impl Into<String>) -> Invalid {
    Invalid { field, problem: problem.into() }
}

// Limits from Altinn's validation, in UTF-16 code units (.NET's `string.Length`).
const MAX_RESOURCE_ID: usize = 255;
const MAX_SENDERS_REFERENCE: usize = 4096;
const MAX_TITLE: usize = 255;
const MAX_SUMMARY: usize = 255;
const MAX_BODY: usize = 30_000;
const MAX_MESSAGE_SENDER: usize = 255;
const MAX_EXTERNAL_REFERENCES: usize = 10;
const MAX_PROPERTIES: usize = 10;
const MAX_PROPERTY_KEY: usize = 50;
const MAX_PROPERTY_VALUE: usize = 300;
const MAX_REPLY_URL: usize = 255;
const MAX_ATTACHMENTS: usize = 100;
/// Altinn refuses forwarding of a correspondence whose files exceed this (decimal MB).
const MAX_FORWARDED_BYTES: i64 = 10_000_000;
/// Altinn compares the language lower-cased, and takes a blank one as `nb`.
const LANGUAGES: [&str; 3] = ["nb", "nn", "en"];
/// Altinn's `TransmissionType` names, numbered from 1: the value a `DialogportenTransmissionType`
/// reference must hold.
const TRANSMISSION_TYPES: [&str; 8] =
    ["Information", "Acceptance", "Rejection", "Request", "Alert", "Decision", "Submission", "Correction"];

/// The idempotency key: UUIDv5 in the deployment's namespace over everything that makes
/// one letter to one recipient. JSON encoding keeps the parts unambiguous whatever
/// characters the reference holds.
pub fn idempotency_key(
    namespace: Uuid,
    resource_id: &str,
    senders_reference: &str,
    resend: i32,
    recipient_urn: &str,
) -> Uuid {
    let name = serde_json::json!([resource_id, senders_reference, resend, recipient_urn]).to_string();
    Uuid::new_v5(&namespace, name.as_bytes())
}

/// Builds the request for one recipient, checking every field first.
pub fn initialize_request(
    m: &MessageRow,
    recipient: &str,
    key: Uuid,
    now: DateTime<Utc>,
) -> Result<InitializeRequest, Invalid> {
    let recipient = Recipient::parse(recipient).map_err(|p| invalid(Column::Recipients, format!("a recipient {p}")))?;
    check_message(m, now)?;
    Ok(InitializeRequest {
        correspondence: Correspondence {
            resource_id: m.resource_id.clone(),
            senders_reference: m.senders_reference.clone(),
            message_sender: m.message_sender.clone().filter(|s| !s.is_empty()),
            content: Content {
                language: m.language.clone(),
                message_title: m.title.clone(),
                message_summary: m.summary.clone(),
                message_body: m.body.clone(),
                attachments: Vec::new(),
            },
            requested_publish_time: m.requested_publish_time,
            due_date_time: m.due_date_time,
            external_references: array_or_empty(&m.external_references),
            property_list: m.property_list.as_ref().and_then(Value::as_object).cloned().unwrap_or_default(),
            reply_options: array_or_empty(&m.reply_options),
            notification: m.notification.clone().filter(|n| !n.is_null()),
            ignore_reservation: m.ignore_reservation,
            is_confirmation_needed: m.is_confirmation_needed,
            is_confidential: m.is_confidential,
            allow_forwarding: m.allow_forwarding,
        },
        recipients: vec![recipient.urn()],
        existing_attachments: m.existing_attachments.clone(),
        idempotent_key: key,
    })
}

/// The recipient's URN as this program reads it; invalid recipients are reported by
/// `initialize_request`.
pub fn recipient_urn(recipient: &str) -> Option<String> {
    Recipient::parse(recipient).ok().map(|r| r.urn())
}

/// A delivery goes to the party its reference and idempotency key were made for: the
/// database's normalisation of the recipient (`recipient_key`). Were this program to read
/// the recipient as another party, two deliveries the database holds apart could meet at
/// Altinn under one key; such a row fails instead. Unreadable recipients are left to
/// `initialize_request`, which names what is wrong with them.
pub fn check_identity(recipient: &str, recipient_key: &str) -> Result<(), Invalid> {
    match recipient_urn(recipient) {
        Some(urn) if urn != recipient_key => Err(invalid(
            Column::Recipients,
            "the recipient reads as another party than the database's normalisation of it (recipient_key); \
             write it in canonical form",
        )),
        _ => Ok(()),
    }
}

fn check_message(m: &MessageRow, now: DateTime<Utc>) -> Result<(), Invalid> {
    // Sent exactly as written (it is part of the idempotency key), so no trimming here.
    let resource = m.resource_id.as_str();
    if resource.chars().any(char::is_whitespace) {
        return Err(invalid(Column::ResourceId, "must not contain white space"));
    }
    let bare = resource.strip_prefix("urn:altinn:resource:").unwrap_or(resource);
    if bare.is_empty() || resource.encode_utf16().count() > MAX_RESOURCE_ID || bare.contains(':') {
        return Err(invalid(
            Column::ResourceId,
            "must be 1 to 255 characters, optionally prefixed urn:altinn:resource:, with no other ':'",
        ));
    }
    length(Column::SendersReference, &m.senders_reference, 1, MAX_SENDERS_REFERENCE)?;
    length(Column::Title, &m.title, 1, MAX_TITLE)?;
    length(Column::Summary, m.summary.as_deref().unwrap_or(""), 0, MAX_SUMMARY)?;
    length(Column::Body, &m.body, 1, MAX_BODY)?;
    length(Column::MessageSender, m.message_sender.as_deref().unwrap_or(""), 0, MAX_MESSAGE_SENDER)?;
    if m.title.trim().is_empty() {
        return Err(invalid(Column::Title, "must not be blank"));
    }
    if let Some(problem) = text::not_plain(&m.title) {
        return Err(invalid(Column::Title, format!("must be plain text: it {problem} (Altinn 1002)")));
    }
    if let Some(problem) = m.message_sender.as_deref().and_then(text::not_plain) {
        return Err(invalid(Column::MessageSender, format!("must be plain text: it {problem} (Altinn 1039)")));
    }
    if m.body.trim().is_empty() {
        return Err(invalid(Column::Body, "must not be blank"));
    }
    let language = m.language.trim();
    if !language.is_empty() && !LANGUAGES.iter().any(|l| l.eq_ignore_ascii_case(language)) {
        return Err(invalid(Column::Language, format!("{:?} is not supported: use nb, nn or en", m.language)));
    }
    check_dates(m, now)?;
    check_references(m)?;
    check_reply_options(m)?;
    if let Some(n) = m.notification.as_ref().filter(|n| !n.is_null()) {
        notification::check(n)?;
    }
    if m.allow_forwarding && m.attachment_bytes > MAX_FORWARDED_BYTES {
        return Err(invalid(
            Column::AllowForwarding,
            "forwarding is allowed only with at most 10 MB of files (Altinn 1069)",
        ));
    }
    if m.existing_attachments.len() + m.attachment_count as usize > MAX_ATTACHMENTS {
        return Err(invalid(Column::ExistingAttachments, "a correspondence may carry at most 100 attachments"));
    }
    Ok(())
}

/// Altinn checks .NET string lengths, which count UTF-16 code units: a character outside
/// the Basic Multilingual Plane (an emoji) counts twice there, so it does here.
fn length(field: Column, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = value.encode_utf16().count();
    if n < min || n > max {
        let what = if min == 0 { format!("at most {max} characters") } else { format!("{min} to {max} characters") };
        return Err(invalid(field, format!("must be {what} (has {n})")));
    }
    Ok(())
}

fn check_dates(m: &MessageRow, now: DateTime<Utc>) -> Result<(), Invalid> {
    if let Some(due) = m.due_date_time {
        if due < now {
            return Err(invalid(Column::DueDateTime, "is in the past"));
        }
        if m.requested_publish_time.is_some_and(|p| due < p) {
            return Err(invalid(Column::DueDateTime, "is before requested_publish_time"));
        }
    } else if m.is_confirmation_needed {
        return Err(invalid(Column::DueDateTime, "is required when is_confirmation_needed is true"));
    }
    Ok(())
}

fn check_references(m: &MessageRow) -> Result<(), Invalid> {
    let refs = json_array(&m.external_references, Column::ExternalReferences)?;
    if refs.len() > MAX_EXTERNAL_REFERENCES {
        return Err(invalid(Column::ExternalReferences, "at most 10 entries"));
    }
    let mut transmission_types = 0;
    let mut dialog = false;
    for r in refs {
        let kind = r.get("referenceType").and_then(reference_type);
        if !r.get("referenceValue").is_some_and(Value::is_string) || kind.is_none() {
            return Err(invalid(
                Column::ExternalReferences,
                format!(
                    "each entry needs a string referenceValue and a referenceType of {}",
                    wire::REFERENCE_TYPES.join(", ")
                ),
            ));
        }
        match kind.map(|k| wire::REFERENCE_TYPES[k]) {
            // Altinn's model validation: a transmission is created by Altinn, never named by a sender.
            Some("DialogportenTransmissionId") => {
                return Err(invalid(Column::ExternalReferences, "DialogportenTransmissionId cannot be sent"))
            }
            Some("DialogportenTransmissionType") => {
                transmission_types += 1;
                let value = r.get("referenceValue").and_then(Value::as_str).unwrap_or_default();
                if !is_transmission_type(value) {
                    return Err(invalid(
                        Column::ExternalReferences,
                        format!("a DialogportenTransmissionType must be one of {}", TRANSMISSION_TYPES.join(", ")),
                    ));
                }
            }
            Some("DialogportenDialogId") => dialog = true,
            _ => {}
        }
    }
    if transmission_types > 1 {
        return Err(invalid(Column::ExternalReferences, "at most one DialogportenTransmissionType (Altinn 1052)"));
    }
    if transmission_types == 1 && !dialog {
        return Err(invalid(
            Column::ExternalReferences,
            "a DialogportenTransmissionType needs a DialogportenDialogId (Altinn 1053)",
        ));
    }
    let Some(props) = m.property_list.as_ref().filter(|p| !p.is_null()) else { return Ok(()) };
    let props = props.as_object().ok_or_else(|| invalid(Column::PropertyList, "must be a JSON object of strings"))?;
    if props.len() > MAX_PROPERTIES {
        return Err(invalid(Column::PropertyList, "at most 10 entries"));
    }
    for (k, v) in props {
        let v = v.as_str().ok_or_else(|| invalid(Column::PropertyList, "values must be strings"))?;
        if k.encode_utf16().count() > MAX_PROPERTY_KEY || v.encode_utf16().count() > MAX_PROPERTY_VALUE {
            return Err(invalid(Column::PropertyList, "keys are at most 50 and values at most 300 characters"));
        }
    }
    Ok(())
}

/// A ReferenceType as .NET's JSON reader takes it: a name in any case, or its number.
fn reference_type(v: &Value) -> Option<usize> {
    match v {
        Value::String(name) => wire::REFERENCE_TYPES.iter().position(|t| t.eq_ignore_ascii_case(name)),
        n => n.as_u64().map(|n| n as usize).filter(|n| *n < wire::REFERENCE_TYPES.len()),
    }
}

/// As Altinn parses it (`Enum.TryParse`, ignoring case, then defined): a name or a number.
fn is_transmission_type(value: &str) -> bool {
    let value = value.trim();
    TRANSMISSION_TYPES.iter().any(|t| t.eq_ignore_ascii_case(value))
        || value.parse::<usize>().is_ok_and(|n| (1..=TRANSMISSION_TYPES.len()).contains(&n))
}

fn check_reply_options(m: &MessageRow) -> Result<(), Invalid> {
    for option in json_array(&m.reply_options, Column::ReplyOptions)? {
        let url = option.get("linkURL").and_then(Value::as_str).unwrap_or("");
        let https = url::Url::parse(url).is_ok_and(|u| u.scheme() == "https");
        if !https || url.encode_utf16().count() > MAX_REPLY_URL {
            return Err(invalid(
                Column::ReplyOptions,
                "each linkURL must be an absolute https URL of at most 255 characters",
            ));
        }
    }
    Ok(())
}

fn json_array(value: &Option<Value>, field: Column) -> Result<&[Value], Invalid> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(field, "must be a JSON array")),
    }
}

fn array_or_empty(value: &Option<Value>) -> Vec<Value> {
    value.as_ref().and_then(Value::as_array).cloned().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests;
