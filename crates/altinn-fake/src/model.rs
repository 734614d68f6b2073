//! Model binding as ASP.NET does it for `POST /correspondence`: case-insensitive member
//! access, typed reads that collect every error as a validation problem (`STD-00000`),
//! and the recipient list with its formats.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::problem::Problem;

/// Altinn's `ReferenceTypeExt`, in numeric order.
pub(crate) const REFERENCE_TYPES: [&str; 7] = [
    "Generic",
    "AltinnAppInstance",
    "AltinnBrokerFileTransfer",
    "DialogportenDialogId",
    "DialogportenProcessId",
    "DialogportenTransmissionId",
    "DialogportenTransmissionType",
];

/// .NET's `string.Length`: UTF-16 code units, which `StringLength` and Altinn's checks count.
pub(crate) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The real server's limit on recipients per request.
const MAX_RECIPIENTS: usize = 500;
const ORG_PREFIXES: [&str; 2] = ["urn:altinn:organization:identifier-no:", "0192:"];
const PERSON_URN: &str = "urn:altinn:person:identifier-no:";
const EMAIL_URN: &str = "urn:altinn:person:idporten-email:";
const SELF_IDENTIFIED_URN: &str = "urn:altinn:person:legacy-selfidentified:";

/// Lower-cases object keys recursively, leaving `propertyList`'s keys as sent.
pub(crate) fn normalize_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    let v = if k == "propertylist" { v } else { normalize_keys(v) };
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
    path.iter().try_fold(value, |v, key| v.get(key.to_ascii_lowercase())).filter(|v| !v.is_null())
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
            Some(_) => self.fail(path, "The JSON value could not be converted to System.String."),
        }
        None
    }

    pub fn string_max(&mut self, v: Option<&Value>, path: &str, required: bool, max: usize) -> Option<String> {
        let s = self.string(v, path, required)?;
        let n = utf16_len(&s);
        // `[Required]` refuses white space as it refuses nothing.
        if required && s.trim().is_empty() {
            self.fail(path, format!("The {} field is required.", leaf(path)));
            return Some(s);
        }
        if n > max {
            // .NET's StringLength messages, with and without a minimum length.
            let message = if required {
                format!(
                    "The field {} must be a string with a minimum length of 1 and a maximum length of {max}.",
                    leaf(path)
                )
            } else {
                format!("The field {} must be a string with a maximum length of {max}.", leaf(path))
            };
            self.fail(path, message);
        }
        Some(s)
    }

    pub fn boolean(&mut self, v: Option<&Value>, path: &str) -> bool {
        match v {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.fail(path, "The JSON value could not be converted to System.Boolean.");
                false
            }
        }
    }

    /// A string member of `parent` named by the last segment of `path`.
    pub fn field(&mut self, parent: &Value, path: &str, required: bool) -> Option<String> {
        self.string(at(parent, &[leaf(path)]), path, required)
    }

    /// Like `field`, with the `StringLength` attribute's limits (1..max when required).
    pub fn bounded(&mut self, parent: &Value, path: &str, required: bool, max: usize) -> String {
        self.string_max(at(parent, &[leaf(path)]), path, required, max).unwrap_or_default()
    }

    pub fn date(&mut self, parent: &Value, path: &str) -> Option<DateTime<Utc>> {
        let s = self.field(parent, path, false)?;
        let parsed = DateTime::parse_from_rfc3339(&s)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.and_utc()));
        if parsed.is_err() {
            self.fail(path, "The JSON value could not be converted to System.DateTimeOffset.");
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
            self.fail(path, format!("The JSON value could not be converted to {}.", leaf(path)));
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
///
/// The forms of the server's recipient list attribute: `0192:` or the organisation URN with
/// 9 digits (a bare organisation number is refused), 11 digits or the person URN (the number
/// must pass both mod-11 checks), the ID-porten e-mail URN and the legacy self-identified URN;
/// each normalised to its lower-case URN. Written from the contract, not shared with the
/// client, so that the two check each other.
fn recipient(raw: &str) -> Result<(String, Option<String>), Option<String>> {
    let lower = raw.trim().to_ascii_lowercase();
    if let Some(digits) = ORG_PREFIXES.iter().find_map(|p| lower.strip_prefix(p)) {
        if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(None);
        }
        let urn = format!("{}{digits}", ORG_PREFIXES[0]);
        return if mod11(digits, &[3, 2, 7, 6, 5, 4, 3, 2]) { Ok((urn, None)) } else { Err(Some(urn)) };
    }
    let person = lower.strip_prefix(PERSON_URN).unwrap_or(&lower);
    if person.len() == 11 && person.bytes().all(|b| b.is_ascii_digit()) {
        let valid =
            mod11(&person[..10], &[3, 7, 6, 1, 8, 9, 4, 5, 2]) && mod11(person, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]);
        return if valid { Ok((format!("{PERSON_URN}{person}"), Some(person.to_string()))) } else { Err(None) };
    }
    if let Some(email) = lower.strip_prefix(EMAIL_URN) {
        return match email.split_once('@') {
            Some((user, domain)) if !user.is_empty() && domain.contains('.') => Ok((lower.clone(), None)),
            _ => Err(None),
        };
    }
    match lower.strip_prefix(SELF_IDENTIFIED_URN) {
        Some(user) if !user.is_empty() => Ok((lower.clone(), None)),
        _ => Err(None),
    }
}

/// Whether the last digit of `digits` is the weighted mod-11 check digit of those before it.
fn mod11(digits: &str, weights: &[u32]) -> bool {
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    let Some((check, body)) = d.split_last() else { return false };
    let sum: u32 = body.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => *check == 0,
        10 => false,
        k => *check == k,
    }
}

/// Model validation of the recipients: list size and formats.
pub(crate) fn recipients(c: &mut Checker, body: &Value) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let (mut parsed, mut unknown) = (Vec::new(), Vec::new());
    let Some(value) = at(body, &["recipients"]) else {
        c.fail("Recipients", "The Recipients field is required.");
        return (parsed, unknown);
    };
    let Some(list) = value.as_array() else {
        c.fail(
            "Recipients",
            "The JSON value could not be converted to System.Collections.Generic.List`1[System.String].",
        );
        return (parsed, unknown);
    };
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        c.fail("Recipients", format!("Recipients must contain between 1 and {MAX_RECIPIENTS} entries."));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_lower_cased_except_inside_the_property_list() {
        let body = normalize_keys(json!({
            "Correspondence": { "PropertyList": { "CaseNo": "1" }, "Content": { "MessageTitle": "t" } },
        }));
        assert_eq!(at(&body, &["correspondence", "propertyList"]), Some(&json!({ "CaseNo": "1" })));
        assert_eq!(at(&body, &["correspondence", "content", "messageTitle"]), Some(&json!("t")));
    }

    #[test]
    fn recipients_are_parsed_as_altinn_does() {
        let org = "urn:altinn:organization:identifier-no:991825827";
        assert_eq!(recipient("0192:991825827"), Ok((org.to_string(), None)));
        assert_eq!(recipient("URN:ALTINN:ORGANIZATION:IDENTIFIER-NO:991825827").unwrap().0, org);
        assert_eq!(recipient("991825827"), Err(None), "bare organisation numbers are rejected");
        assert_eq!(recipient("13896396174").unwrap().1.as_deref(), Some("13896396174"));
        assert_eq!(recipient("13896396175"), Err(None), "person mod 11");
        // Well-formed but not a real organisation: the Register lookup fails (1029).
        let unknown = "urn:altinn:organization:identifier-no:991825828";
        assert_eq!(recipient("0192:991825828"), Err(Some(unknown.to_string())));
    }

    #[test]
    fn idempotency_keys_must_be_guids() {
        assert!(idempotent_key(&json!({ "idempotentkey": "nope" })).is_err());
        assert_eq!(idempotent_key(&json!({ "idempotentkey": null })).unwrap(), None);
        let key = Uuid::new_v4();
        assert_eq!(idempotent_key(&json!({ "idempotentkey": key })).unwrap(), Some(key));
    }
}
