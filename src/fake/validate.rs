//! Validation of `POST /correspondence` bodies, in the two layers the real server has
//! (contract §4): model validation (400 `STD-00000` with paths, no `errorCode`) and the
//! handler's domain rules (ProblemDetails with `errorCode`).
//!
//! Member access and model binding helpers live in [`super::model`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::attachment::{read_metadata, Metadata};
use super::model::{at, recipients, Checker};
use super::notify::{self, NotificationPlan};
use super::problem::Problem;
use super::FakeConfig;

/// The limits of §4.1–4.3; each is the real server's, so the fake rejects what it rejects.
const MAX_TITLE_CHARS: usize = 255;
const MAX_SUMMARY_CHARS: usize = 255;
const MAX_BODY_CHARS: usize = 30_000;
const MAX_RESOURCE_ID_CHARS: usize = 255;
const MAX_SENDERS_REFERENCE_CHARS: usize = 4096;
const MAX_MESSAGE_SENDER_CHARS: usize = 255;
const MAX_EXTERNAL_REFERENCES: usize = 10;
const MAX_PROPERTIES: usize = 10;
const MAX_PROPERTY_KEY_CHARS: usize = 50;
const MAX_PROPERTY_VALUE_CHARS: usize = 300;
const MAX_LINK_URL_CHARS: usize = 255;
const LANGUAGES: [&str; 3] = ["nb", "nn", "en"];

/// A valid initialize request, reduced to what the fake stores.
#[derive(Debug)]
pub(crate) struct Initialize {
    pub resource_id: String,
    pub senders_reference: String,
    /// (lower-case URN, national identity number for persons).
    pub recipients: Vec<(String, Option<String>)>,
    pub requested_publish: Option<DateTime<Utc>>,
    pub confirmation_needed: bool,
    pub ignore_reservation: bool,
    pub notification: Option<NotificationPlan>,
    /// Metadata of the new attachments, for [`super::linking::plan`].
    pub attachments: Vec<Metadata>,
}

/// Model validation of the optional collections of `correspondence`.
fn collections(c: &mut Checker, corr: &Value) {
    if let Some(refs) = at(corr, &["externalReferences"]) {
        let list = refs.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() > MAX_EXTERNAL_REFERENCES {
            c.fail("Correspondence.ExternalReferences", "A correspondence can have at most 10 external references.");
        }
        for (i, r) in list.iter().enumerate() {
            let path = format!("Correspondence.ExternalReferences[{i}]");
            c.string(at(r, &["referenceValue"]), &format!("{path}.ReferenceValue"), true);
            let kind = at(r, &["referenceType"]);
            if kind.is_none() {
                c.fail(&format!("{path}.ReferenceType"), "The ReferenceType field is required.");
            }
            c.enumeration(kind, &format!("{path}.ReferenceType"), &crate::altinn::wire::REFERENCE_TYPES);
        }
    }
    if let Some(props) = at(corr, &["propertyList"]) {
        let path = "Correspondence.PropertyList";
        let map = props.as_object().cloned().unwrap_or_else(Map::new);
        let too_long = |(k, v): (&String, &Value)| {
            k.chars().count() > MAX_PROPERTY_KEY_CHARS
                || v.as_str().is_none_or(|v| v.chars().count() > MAX_PROPERTY_VALUE_CHARS)
        };
        if !props.is_object() || map.len() > MAX_PROPERTIES || map.iter().any(too_long) {
            c.fail(path, "PropertyList can contain at most 10 entries, keys up to 50 and values up to 300 characters.");
        }
    }
    for (i, option) in at(corr, &["replyOptions"]).and_then(Value::as_array).into_iter().flatten().enumerate() {
        c.string(at(option, &["linkURL"]), &format!("Correspondence.ReplyOptions[{i}].LinkURL"), true);
    }
}

/// Model validation of the new attachments' metadata.
fn attachments(c: &mut Checker, corr: &Value) -> Vec<Metadata> {
    let Some(list) = at(corr, &["content", "attachments"]) else {
        return Vec::new();
    };
    let Some(list) = list.as_array() else {
        c.fail("Correspondence.Content.Attachments", "The JSON value could not be converted to a list.");
        return Vec::new();
    };
    let path = |i: usize| format!("Correspondence.Content.Attachments[{i}]");
    list.iter().enumerate().map(|(i, a)| read_metadata(c, a, &path(i))).collect()
}

/// Everything model validation extracts, for the domain checks.
struct Parsed {
    resource_id: String,
    senders_reference: String,
    title: String,
    body: String,
    summary: Option<String>,
    language: Option<String>,
    recipients: Vec<(String, Option<String>)>,
    unknown_parties: Vec<String>,
    requested_publish: Option<DateTime<Utc>>,
    due: Option<DateTime<Utc>>,
    confirmation_needed: bool,
    ignore_reservation: bool,
    attachments: Vec<Metadata>,
}

fn model(c: &mut Checker, body: &Value) -> Parsed {
    let corr = at(body, &["correspondence"]);
    if corr.is_none() {
        c.fail("Correspondence", "The Correspondence field is required.");
    }
    let corr = corr.cloned().unwrap_or(Value::Object(Map::new()));
    let content = at(&corr, &["content"]);
    if corr.is_object() && content.is_none() {
        c.fail("Correspondence.Content", "The Content field is required.");
    }
    let content = content.cloned().unwrap_or(Value::Object(Map::new()));
    let (recipients, unknown_parties) = recipients(c, body);
    collections(c, &corr);
    let attachments = attachments(c, &corr);
    c.bounded(&corr, "Correspondence.MessageSender", false, MAX_MESSAGE_SENDER_CHARS);
    Parsed {
        resource_id: c.bounded(&corr, "Correspondence.ResourceId", true, MAX_RESOURCE_ID_CHARS),
        senders_reference: c.bounded(&corr, "Correspondence.SendersReference", true, MAX_SENDERS_REFERENCE_CHARS),
        // Empty or over-long texts are the handler's domain errors (1020, 1037, ...), not
        // model validation, so only presence and type are checked here.
        title: c.field(&content, "Correspondence.Content.MessageTitle", true).unwrap_or_default(),
        body: c.field(&content, "Correspondence.Content.MessageBody", true).unwrap_or_default(),
        summary: c.field(&content, "Correspondence.Content.MessageSummary", false),
        language: c.field(&content, "Correspondence.Content.Language", false),
        recipients,
        unknown_parties,
        requested_publish: c.date(&corr, "Correspondence.RequestedPublishTime"),
        due: c.date(&corr, "Correspondence.DueDateTime"),
        confirmation_needed: c.boolean(at(&corr, &["isConfirmationNeeded"]), "Correspondence.IsConfirmationNeeded"),
        ignore_reservation: c.boolean(at(&corr, &["ignoreReservation"]), "Correspondence.IgnoreReservation"),
        attachments,
    }
}

fn has_html_tag(s: &str) -> bool {
    s.as_bytes().windows(2).any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

/// The content rules of §4.3.
fn content_rules(p: &Parsed) -> Result<(), Problem> {
    let language = p.language.as_deref().unwrap_or("nb");
    if !LANGUAGES.contains(&language) {
        return Err(Problem::domain(
            1023,
            "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and English (en)",
        ));
    }
    if p.title.trim().is_empty() {
        return Err(Problem::domain(1020, "Message title cannot be empty"));
    }
    if p.title.chars().count() > MAX_TITLE_CHARS {
        return Err(Problem::domain(1037, "Message title cannot exceed 255 characters"));
    }
    if has_html_tag(&p.title) {
        return Err(Problem::domain(1002, "Message title must be plain text"));
    }
    if p.summary.as_deref().is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS) {
        return Err(Problem::domain(1042, "Message summary, if not null, must be between 0 and 255 characters long"));
    }
    if p.body.trim().is_empty() {
        return Err(Problem::domain(1021, "Message body cannot be empty"));
    }
    if p.body.chars().count() > MAX_BODY_CHARS {
        return Err(Problem::domain(1022, "Message body cannot exceed 30000 characters"));
    }
    if has_html_tag(&p.body) {
        return Err(Problem::domain(1003, "Message body must be markdown"));
    }
    Ok(())
}

/// Dates and reply options (§4.2); attachments are [`super::linking`]'s.
fn correspondence_rules(p: &Parsed, body: &Value, now: DateTime<Utc>) -> Result<(), Problem> {
    if let Some(due) = p.due {
        if due < now {
            return Err(Problem::domain(1008, "DueDateTime cannot be prior to today"));
        }
        if p.requested_publish.is_some_and(|publish| due < publish) {
            return Err(Problem::domain(1009, "DueDateTime cannot be prior to RequestedPublishTime"));
        }
    } else if p.confirmation_needed {
        return Err(Problem::domain(1016, "DueDateTime is required when confirmation is needed"));
    }
    let options = at(body, &["correspondence", "replyOptions"]).and_then(Value::as_array);
    for option in options.into_iter().flatten() {
        let link = at(option, &["linkURL"]).and_then(Value::as_str).unwrap_or_default();
        let https = url::Url::parse(link).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !https || link.chars().count() > MAX_LINK_URL_CHARS {
            return Err(Problem::domain(
                1035,
                "Reply options must be well-formed URIs and HTTPS with a max length of 255 characters",
            ));
        }
    }
    Ok(())
}

/// Recipient rules that need the whole list or the registries (1006, 1029, 1030).
fn recipient_rules(p: &Parsed, config: &FakeConfig) -> Result<(), Problem> {
    let mut seen = std::collections::HashSet::new();
    if !p.recipients.iter().all(|(urn, _)| seen.insert(urn.clone())) {
        return Err(Problem::domain(1006, "Recipients must be unique"));
    }
    if !p.unknown_parties.is_empty() {
        let list = p.unknown_parties.join(", ");
        return Err(Problem::domain(1029, format!("Could not find partyId for the following recipients: {list}")));
    }
    if let [(_, Some(number))] = p.recipients.as_slice() {
        if !p.ignore_reservation && config.reserved_persons.contains(number) {
            return Err(Problem::domain(1030, format!(
                "Recipient {number} has reserved themselves from public correspondences. Can be overridden using the 'IgnoreReservation' flag."
            )));
        }
    }
    Ok(())
}

/// Validates a key-normalised body; the idempotency checks have already run.
pub(crate) fn validate(body: &Value, config: &FakeConfig, now: DateTime<Utc>) -> Result<Initialize, Problem> {
    if !body.is_object() {
        return Err(Problem::validation("$", "The JSON value could not be converted to InitializeCorrespondencesExt."));
    }
    // Altinn's property-list attribute reads every value's length; a null value (JSON null,
    // or a form key whose value did not bind) throws there, and ASP.NET answers 500.
    let properties = at(body, &["correspondence", "propertyList"]).and_then(Value::as_object);
    if properties.is_some_and(|p| p.values().any(Value::is_null)) {
        return Err(Problem::Plain { status: 500, detail: String::new() });
    }
    let mut checker = Checker::default();
    let parsed = model(&mut checker, body);
    let notification = notify::model(&mut checker, body)?;
    if !checker.errors.is_empty() {
        return Err(Problem::Validation(checker.errors));
    }
    let resource = parsed.resource_id.trim_start_matches("urn:altinn:resource:");
    if resource.contains(':') {
        return Err(Problem::validation(
            "Correspondence.ResourceId",
            "ResourceId may only have the urn:altinn:resource: prefix.",
        ));
    }
    if config.unknown_resources.iter().any(|r| r.trim_start_matches("urn:altinn:resource:") == resource) {
        return Err(Problem::domain(1036, "ResourceId must match an existing resource in the resource registry"));
    }
    content_rules(&parsed)?;
    correspondence_rules(&parsed, body, now)?;
    let notification = notify::rules(notification, body, parsed.recipients.len())?;
    recipient_rules(&parsed, config)?;
    Ok(Initialize {
        resource_id: resource.to_string(),
        senders_reference: parsed.senders_reference,
        recipients: parsed.recipients,
        requested_publish: parsed.requested_publish,
        confirmation_needed: parsed.confirmation_needed,
        ignore_reservation: parsed.ignore_reservation,
        notification,
        attachments: parsed.attachments,
    })
}
