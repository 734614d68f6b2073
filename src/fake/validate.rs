//! Validation of `POST /correspondence` bodies, in the two layers the real server has
//! (contract §4): model validation (400 `STD-00000` with paths, no `errorCode`) and the
//! handler's domain rules (ProblemDetails with `errorCode`).
//!
//! Bodies arrive as JSON and are matched case-insensitively by lower-casing every key,
//! except inside `propertyList`, whose keys are the sender's own data.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::notify::{self, NotificationPlan};
use super::problem::Problem;
use super::FakeConfig;
use crate::identifiers::{is_valid_org_number, Recipient};

/// The limits of §4.1–4.3; each is the real server's, so the fake rejects what it rejects.
const MAX_RECIPIENTS: usize = 500;
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
const REFERENCE_TYPES: [&str; 7] = [
    "Generic",
    "AltinnAppInstance",
    "AltinnBrokerFileTransfer",
    "DialogportenDialogId",
    "DialogportenProcessId",
    "DialogportenTransmissionId",
    "DialogportenTransmissionType",
];
const ORG_PREFIXES: [&str; 2] = ["urn:altinn:organization:identifier-no:", "0192:"];

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
}

/// Lower-cases object keys recursively, leaving `propertyList`'s keys as sent.
pub(crate) fn normalize_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    let v = if k == "propertylist" {
                        v
                    } else {
                        normalize_keys(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

/// Looks a member up by its lower-cased path; JSON null counts as absent.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.get(key.to_ascii_lowercase()))
        .filter(|v| !v.is_null())
}

/// Model-validation errors collected across the whole body, as ASP.NET reports them all.
#[derive(Default)]
pub(crate) struct Checker {
    pub errors: Vec<(String, String)>,
}

impl Checker {
    pub fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push((path.to_string(), message.into()));
    }

    pub fn string(&mut self, v: Option<&Value>, path: &str, required: bool) -> Option<String> {
        match v {
            None if required => self.fail(path, format!("The {} field is required.", leaf(path))),
            None => {}
            Some(Value::String(s)) => return Some(s.clone()),
            Some(_) => self.fail(
                path,
                "The JSON value could not be converted to System.String.",
            ),
        }
        None
    }

    pub fn string_max(
        &mut self,
        v: Option<&Value>,
        path: &str,
        required: bool,
        max: usize,
    ) -> Option<String> {
        let s = self.string(v, path, required)?;
        let n = s.chars().count();
        if n > max || (required && n == 0) {
            let message = format!(
                "The field {} must be a string with a length between 1 and {max}.",
                leaf(path)
            );
            self.fail(path, message);
        }
        Some(s)
    }

    pub fn boolean(&mut self, v: Option<&Value>, path: &str) -> bool {
        match v {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.fail(
                    path,
                    "The JSON value could not be converted to System.Boolean.",
                );
                false
            }
        }
    }

    fn date(&mut self, v: Option<&Value>, path: &str) -> Option<DateTime<Utc>> {
        let s = self.string(v, path, false)?;
        let parsed = DateTime::parse_from_rfc3339(&s)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.and_utc())
            });
        if parsed.is_err() {
            self.fail(
                path,
                "The JSON value could not be converted to System.DateTimeOffset.",
            );
        }
        parsed.ok()
    }

    /// An enum given by name (case-insensitive) or by its integer value.
    pub fn enumeration(&mut self, v: Option<&Value>, path: &str, names: &[&str]) -> Option<usize> {
        let found = match v? {
            Value::String(s) => names.iter().position(|n| n.eq_ignore_ascii_case(s)),
            Value::Number(n) => n.as_u64().map(|n| n as usize).filter(|n| *n < names.len()),
            _ => None,
        };
        if found.is_none() {
            self.fail(
                path,
                format!("The JSON value could not be converted to {}.", leaf(path)),
            );
        }
        found
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Reads `idempotentKey`; a value that is not a GUID fails model binding.
pub(crate) fn idempotent_key(body: &Value) -> Result<Option<Uuid>, Problem> {
    let Some(value) = at(body, &["idempotentKey"]) else {
        return Ok(None);
    };
    match value.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
        Some(key) => Ok(Some(key)),
        None => Err(Problem::validation(
            "IdempotentKey",
            "The JSON value could not be converted to System.Nullable`1[System.Guid].",
        )),
    }
}

/// Parses one recipient; Err(None) is a format error, Err(Some(urn)) a well-formed
/// organisation number the Register cannot know (it fails mod 11).
fn recipient(raw: &str) -> Result<(String, Option<String>), Option<String>> {
    let lower = raw.trim().to_ascii_lowercase();
    // Altinn rejects a bare organisation number, although the outbox's parser accepts it.
    if lower.len() == 9 && lower.bytes().all(|b| b.is_ascii_digit()) {
        return Err(None);
    }
    match Recipient::parse(&lower) {
        Ok(r) => {
            let number = match &r {
                Recipient::Person(n) => Some(n.clone()),
                _ => None,
            };
            Ok((r.urn(), number))
        }
        Err(_) => {
            let org = ORG_PREFIXES.iter().find_map(|p| lower.strip_prefix(p));
            match org {
                Some(d)
                    if d.len() == 9
                        && d.bytes().all(|b| b.is_ascii_digit())
                        && !is_valid_org_number(d) =>
                {
                    Err(Some(format!("{}{d}", ORG_PREFIXES[0])))
                }
                _ => Err(None),
            }
        }
    }
}

/// Model validation of the recipients: list size and formats.
fn recipients(c: &mut Checker, body: &Value) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let (mut parsed, mut unknown) = (Vec::new(), Vec::new());
    let Some(value) = at(body, &["recipients"]) else {
        c.fail("Recipients", "The Recipients field is required.");
        return (parsed, unknown);
    };
    let Some(list) = value.as_array() else {
        c.fail("Recipients", "The JSON value could not be converted to System.Collections.Generic.List`1[System.String].");
        return (parsed, unknown);
    };
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        c.fail(
            "Recipients",
            format!("Recipients must contain between 1 and {MAX_RECIPIENTS} entries."),
        );
    }
    for (i, item) in list.iter().enumerate() {
        match item.as_str().map(recipient) {
            Some(Ok(r)) => parsed.push(r),
            Some(Err(Some(urn))) => unknown.push(urn),
            _ => c.fail(&format!("Recipients[{i}]"), "Recipient is not a valid organization number (0192: or URN prefix), national identity number or Altinn URN."),
        }
    }
    (parsed, unknown)
}

/// Model validation of the optional collections of `correspondence`.
fn collections(c: &mut Checker, corr: &Value) {
    if let Some(refs) = at(corr, &["externalReferences"]) {
        let list = refs.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() > MAX_EXTERNAL_REFERENCES {
            c.fail(
                "Correspondence.ExternalReferences",
                "A correspondence can have at most 10 external references.",
            );
        }
        for (i, r) in list.iter().enumerate() {
            let path = format!("Correspondence.ExternalReferences[{i}]");
            c.string(
                at(r, &["referenceValue"]),
                &format!("{path}.ReferenceValue"),
                true,
            );
            let kind = at(r, &["referenceType"]);
            if kind.is_none() {
                c.fail(
                    &format!("{path}.ReferenceType"),
                    "The ReferenceType field is required.",
                );
            }
            c.enumeration(kind, &format!("{path}.ReferenceType"), &REFERENCE_TYPES);
        }
    }
    if let Some(props) = at(corr, &["propertyList"]) {
        let path = "Correspondence.PropertyList";
        let map = props.as_object().cloned().unwrap_or_else(Map::new);
        let too_long = |(k, v): (&String, &Value)| {
            k.chars().count() > MAX_PROPERTY_KEY_CHARS
                || v.as_str()
                    .is_none_or(|v| v.chars().count() > MAX_PROPERTY_VALUE_CHARS)
        };
        if !props.is_object() || map.len() > MAX_PROPERTIES || map.iter().any(too_long) {
            c.fail(path, "PropertyList can contain at most 10 entries, keys up to 50 and values up to 300 characters.");
        }
    }
    for (i, option) in at(corr, &["replyOptions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        c.string(
            at(option, &["linkURL"]),
            &format!("Correspondence.ReplyOptions[{i}].LinkURL"),
            true,
        );
    }
    if let Some(list) = at(corr, &["content", "attachments"]) {
        if !list.is_array() {
            c.fail(
                "Correspondence.Content.Attachments",
                "The JSON value could not be converted to a list.",
            );
        }
    }
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
    let text = |c: &mut Checker, v: &Value, name: &str, path: &str, required| {
        c.string(at(v, &[name]), path, required)
    };
    let resource_id = c.string_max(
        at(&corr, &["resourceId"]),
        "Correspondence.ResourceId",
        true,
        MAX_RESOURCE_ID_CHARS,
    );
    let senders_reference = c.string_max(
        at(&corr, &["sendersReference"]),
        "Correspondence.SendersReference",
        true,
        MAX_SENDERS_REFERENCE_CHARS,
    );
    c.string_max(
        at(&corr, &["messageSender"]),
        "Correspondence.MessageSender",
        false,
        MAX_MESSAGE_SENDER_CHARS,
    );
    let (recipients, unknown_parties) = recipients(c, body);
    collections(c, &corr);
    Parsed {
        resource_id: resource_id.unwrap_or_default(),
        senders_reference: senders_reference.unwrap_or_default(),
        title: text(
            c,
            &content,
            "messageTitle",
            "Correspondence.Content.MessageTitle",
            true,
        )
        .unwrap_or_default(),
        body: text(
            c,
            &content,
            "messageBody",
            "Correspondence.Content.MessageBody",
            true,
        )
        .unwrap_or_default(),
        summary: text(
            c,
            &content,
            "messageSummary",
            "Correspondence.Content.MessageSummary",
            false,
        ),
        language: text(
            c,
            &content,
            "language",
            "Correspondence.Content.Language",
            false,
        ),
        recipients,
        unknown_parties,
        requested_publish: c.date(
            at(&corr, &["requestedPublishTime"]),
            "Correspondence.RequestedPublishTime",
        ),
        due: c.date(at(&corr, &["dueDateTime"]), "Correspondence.DueDateTime"),
        confirmation_needed: c.boolean(
            at(&corr, &["isConfirmationNeeded"]),
            "Correspondence.IsConfirmationNeeded",
        ),
        ignore_reservation: c.boolean(
            at(&corr, &["ignoreReservation"]),
            "Correspondence.IgnoreReservation",
        ),
    }
}

fn has_html_tag(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

/// The content rules of §4.3.
fn content_rules(p: &Parsed) -> Result<(), Problem> {
    let language = p.language.as_deref().unwrap_or("nb");
    if !LANGUAGES.contains(&language) {
        return Err(Problem::domain(1023, "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and English (en)"));
    }
    if p.title.trim().is_empty() {
        return Err(Problem::domain(1020, "Message title cannot be empty"));
    }
    if p.title.chars().count() > MAX_TITLE_CHARS {
        return Err(Problem::domain(
            1037,
            "Message title cannot exceed 255 characters",
        ));
    }
    if has_html_tag(&p.title) {
        return Err(Problem::domain(1002, "Message title must be plain text"));
    }
    if p.summary
        .as_deref()
        .is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS)
    {
        return Err(Problem::domain(
            1042,
            "Message summary, if not null, must be between 0 and 255 characters long",
        ));
    }
    if p.body.trim().is_empty() {
        return Err(Problem::domain(1021, "Message body cannot be empty"));
    }
    if p.body.chars().count() > MAX_BODY_CHARS {
        return Err(Problem::domain(
            1022,
            "Message body cannot exceed 30000 characters",
        ));
    }
    if has_html_tag(&p.body) {
        return Err(Problem::domain(1003, "Message body must be markdown"));
    }
    Ok(())
}

/// Dates, reply options and attachments (§4.1, §4.2).
fn correspondence_rules(p: &Parsed, body: &Value, now: DateTime<Utc>) -> Result<(), Problem> {
    if let Some(due) = p.due {
        if due < now {
            return Err(Problem::domain(
                1008,
                "DueDateTime cannot be prior to today",
            ));
        }
        if p.requested_publish.is_some_and(|publish| due < publish) {
            return Err(Problem::domain(
                1009,
                "DueDateTime cannot be prior to RequestedPublishTime",
            ));
        }
    } else if p.confirmation_needed {
        return Err(Problem::domain(
            1016,
            "DueDateTime is required when confirmation is needed",
        ));
    }
    let options = at(body, &["correspondence", "replyOptions"]).and_then(Value::as_array);
    for option in options.into_iter().flatten() {
        let link = at(option, &["linkURL"])
            .and_then(Value::as_str)
            .unwrap_or_default();
        let https =
            url::Url::parse(link).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !https || link.chars().count() > MAX_LINK_URL_CHARS {
            return Err(Problem::domain(1035, "Reply options must be well-formed URIs and HTTPS with a max length of 255 characters"));
        }
    }
    let new_files =
        at(body, &["correspondence", "content", "attachments"]).and_then(Value::as_array);
    if new_files.is_some_and(|l| !l.is_empty()) {
        return Err(Problem::domain(
            1005,
            "Mismatch between uploaded files and attachment metadata",
        ));
    }
    // The fake has no attachment store, so no existing attachment can be found.
    if at(body, &["existingAttachments"])
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty())
    {
        return Err(Problem::domain(1007, "Existing attachment not found"));
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
        return Err(Problem::domain(
            1029,
            format!("Could not find partyId for the following recipients: {list}"),
        ));
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
    now: DateTime<Utc>,
) -> Result<Initialize, Problem> {
    if !body.is_object() {
        return Err(Problem::validation(
            "$",
            "The JSON value could not be converted to InitializeCorrespondencesExt.",
        ));
    }
    let mut checker = Checker::default();
    let parsed = model(&mut checker, body);
    let notification = notify::model(&mut checker, body)?;
    if !checker.errors.is_empty() {
        return Err(Problem::Validation(checker.errors));
    }
    let resource = parsed
        .resource_id
        .trim_start_matches("urn:altinn:resource:");
    if resource.contains(':') {
        return Err(Problem::validation(
            "Correspondence.ResourceId",
            "ResourceId may only have the urn:altinn:resource: prefix.",
        ));
    }
    if config
        .unknown_resources
        .iter()
        .any(|r| r.trim_start_matches("urn:altinn:resource:") == resource)
    {
        return Err(Problem::domain(
            1036,
            "ResourceId must match an existing resource in the resource registry",
        ));
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
    })
}
