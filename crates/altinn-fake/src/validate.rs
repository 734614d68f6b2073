//! Validation of `POST /correspondence` bodies, in the two layers the real server has:
//! model validation (400 `STD-00000` with paths, no `errorCode`) and the
//! handler's domain rules (ProblemDetails with `errorCode`).
//!
//! Member access and model binding helpers live in [`super::model`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::access::{no_access, Access};
use super::attachment::{read_metadata, Metadata};
use super::model::{at, recipients, utf16_len, Checker, REFERENCE_TYPES};
use super::notify::{self, NotificationPlan};
use super::plain::is_plain;
use super::problem::Problem;
use super::FakeConfig;

/// The real server's limits, so the fake rejects what it rejects; lengths are .NET's, in
/// UTF-16 code units.
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
/// `TransmissionTypeExt`, numbered from 1.
const TRANSMISSION_TYPES: [&str; 8] =
    ["Information", "Acceptance", "Rejection", "Request", "Alert", "Decision", "Submission", "Correction"];

/// A valid initialize request, reduced to what the fake stores.
#[derive(Debug)]
pub(crate) struct Initialize {
    pub resource_id: String,
    pub senders_reference: String,
    /// (lower-case URN, national identity number for persons).
    pub recipients: Vec<(String, Option<String>)>,
    pub requested_publish: Option<DateTime<Utc>>,
    /// `dueDateTime`: when the due-date job looks for an unread or unconfirmed letter.
    pub due: Option<DateTime<Utc>>,
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
        let mut kinds = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let path = format!("Correspondence.ExternalReferences[{i}]");
            let value = c.string(at(r, &["referenceValue"]), &format!("{path}.ReferenceValue"), true);
            let kind = at(r, &["referenceType"]);
            if kind.is_none() {
                c.fail(&format!("{path}.ReferenceType"), "The ReferenceType field is required.");
            }
            let kind = kind.and_then(|k| c.enumeration(Some(k), &format!("{path}.ReferenceType"), &REFERENCE_TYPES));
            kinds.extend(kind.map(|k| (REFERENCE_TYPES[k], value.unwrap_or_default())));
        }
        // Altinn's ExternalReferences attribute, a model-validation error on the list.
        let path = "Correspondence.ExternalReferences";
        if kinds.iter().any(|(k, _)| *k == "DialogportenTransmissionId") {
            c.fail(path, "Cannot initialize a correspondence with pre-existing transmission defined");
        }
        if let [(_, value)] = kinds.iter().filter(|(k, _)| *k == "DialogportenTransmissionType").collect::<Vec<_>>()[..]
        {
            let v = value.trim();
            let named = TRANSMISSION_TYPES.iter().any(|t| t.eq_ignore_ascii_case(v));
            let numbered = v.parse::<usize>().is_ok_and(|n| (1..=TRANSMISSION_TYPES.len()).contains(&n));
            if !named && !numbered {
                c.fail(path, "DialogportenTransmissionType referenceValue must be a valid transmission type");
            }
        }
    }
    if let Some(props) = at(corr, &["propertyList"]) {
        let path = "Correspondence.PropertyList";
        let map = props.as_object().cloned().unwrap_or_else(Map::new);
        let too_long = |(k, v): (&String, &Value)| {
            utf16_len(k) > MAX_PROPERTY_KEY_CHARS || v.as_str().is_none_or(|v| utf16_len(v) > MAX_PROPERTY_VALUE_CHARS)
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
    message_sender: String,
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
    Parsed {
        message_sender: c.bounded(&corr, "Correspondence.MessageSender", false, MAX_MESSAGE_SENDER_CHARS),
        resource_id: c.bounded(&corr, "Correspondence.ResourceId", true, MAX_RESOURCE_ID_CHARS),
        senders_reference: c.bounded(&corr, "Correspondence.SendersReference", true, MAX_SENDERS_REFERENCE_CHARS),
        // `[Required]` and `[StringLength]` on the content model: blank or over-long texts
        // fail model validation before the handler's own checks (1020, 1037, ...) run.
        title: c.bounded(&content, "Correspondence.Content.MessageTitle", true, MAX_TITLE_CHARS),
        body: c.bounded(&content, "Correspondence.Content.MessageBody", true, MAX_BODY_CHARS),
        summary: c.string_max(
            at(&content, &["messageSummary"]),
            "Correspondence.Content.MessageSummary",
            false,
            MAX_SUMMARY_CHARS,
        ),
        language: language(c, &content),
        recipients,
        unknown_parties,
        requested_publish: c.date(&corr, "Correspondence.RequestedPublishTime"),
        due: c.date(&corr, "Correspondence.DueDateTime"),
        confirmation_needed: c.boolean(at(&corr, &["isConfirmationNeeded"]), "Correspondence.IsConfirmationNeeded"),
        ignore_reservation: c.boolean(at(&corr, &["ignoreReservation"]), "Correspondence.IgnoreReservation"),
        attachments,
    }
}

/// `[ISO6391]` on the content's language: blank passes (the handler makes it nb), anything
/// else must be two characters.
fn language(c: &mut Checker, content: &Value) -> Option<String> {
    let language = c.field(content, "Correspondence.Content.Language", false)?;
    if !language.trim().is_empty() && utf16_len(&language) != 2 {
        c.fail("Correspondence.Content.Language", "The ISO6391 field must be exactly 2 characters long!");
    }
    Some(language)
}

/// The handler's content and sender rules, in its order.
fn content_rules(p: &Parsed) -> Result<(), Problem> {
    if p.title.trim().is_empty() {
        return Err(Problem::domain(1020, "Message title cannot be empty"));
    }
    if !is_plain(&p.title) {
        return Err(Problem::domain(1002, "Message title must be plain text"));
    }
    if utf16_len(&p.title) > MAX_TITLE_CHARS {
        return Err(Problem::domain(1037, "Message title cannot exceed 255 characters"));
    }
    if p.summary.as_deref().is_some_and(|s| utf16_len(s) > MAX_SUMMARY_CHARS) {
        return Err(Problem::domain(1042, "Message summary, if not null, must be between 0 and 255 characters long"));
    }
    // The summary's plain-text check only logs, and the body's markdown check encodes HTML
    // before its round trip: neither refuses anything here.
    if p.body.is_empty() {
        return Err(Problem::domain(1021, "Message body cannot be empty"));
    }
    if utf16_len(&p.body) > MAX_BODY_CHARS {
        return Err(Problem::domain(1022, "Message body cannot exceed 30000 characters"));
    }
    // A blank language is nb; the rest is compared lower-cased.
    let language = p.language.as_deref().map(str::trim).filter(|l| !l.is_empty()).unwrap_or("nb");
    if !LANGUAGES.contains(&language.to_lowercase().as_str()) {
        return Err(Problem::domain(
            1023,
            "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and English (en)",
        ));
    }
    if !p.message_sender.is_empty() && !is_plain(&p.message_sender) {
        return Err(Problem::domain(1039, "Message sender must be plain text"));
    }
    Ok(())
}

/// The handler's rules for Dialogporten references (1052, 1053).
fn reference_rules(body: &Value) -> Result<(), Problem> {
    let refs = at(body, &["correspondence", "externalReferences"]).and_then(Value::as_array);
    let kind_is = |r: &Value, name: &str| match at(r, &["referenceType"]) {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(name),
        Some(n) => n.as_u64().is_some_and(|n| REFERENCE_TYPES.get(n as usize) == Some(&name)),
        None => false,
    };
    let refs: Vec<&Value> = refs.into_iter().flatten().collect();
    let types = refs.iter().filter(|r| kind_is(r, "DialogportenTransmissionType")).count();
    if types > 1 {
        return Err(Problem::domain(1052, "Only one DialogportenTransmissionType external reference is allowed"));
    }
    if types == 1 && !refs.iter().any(|r| kind_is(r, "DialogportenDialogId")) {
        return Err(Problem::domain(
            1053,
            "DialogportenTransmissionType external reference requires a DialogportenDialogId external reference",
        ));
    }
    Ok(())
}

/// Dates and reply options; attachments are [`super::linking`]'s.
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
        if !https || utf16_len(link) > MAX_LINK_URL_CHARS {
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
pub(crate) fn validate(
    body: &Value,
    config: &FakeConfig,
    access: &Access,
    now: DateTime<Utc>,
) -> Result<Initialize, Problem> {
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
    // Altinn Authorization is asked once the resource is found, before any other rule.
    if access.denies(resource) {
        return Err(no_access());
    }
    correspondence_rules(&parsed, body, now)?;
    content_rules(&parsed)?;
    reference_rules(body)?;
    let notification = notify::rules(notification, body, parsed.recipients.len())?;
    recipient_rules(&parsed, config)?;
    Ok(Initialize {
        resource_id: resource.to_string(),
        senders_reference: parsed.senders_reference,
        recipients: parsed.recipients,
        requested_publish: parsed.requested_publish,
        due: parsed.due,
        confirmation_needed: parsed.confirmation_needed,
        ignore_reservation: parsed.ignore_reservation,
        notification,
        attachments: parsed.attachments,
    })
}
