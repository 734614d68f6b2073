//! ASP.NET form model binding for the upload endpoint (contract §5, trap 13): text fields
//! named by C# property path (`Correspondence.Content.Attachments[0].FileName`),
//! case-insensitive, with an optional `request.` prefix, become the JSON shape that
//! `POST /correspondence` validates, so both endpoints share one validator.
//!
//! Form values are strings; the binder converts them by the property's type, so booleans,
//! integers and enums given as numbers are converted here by member name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::problem::Problem;

/// Members of type bool in the initialize model.
const BOOLEANS: [&str; 8] = [
    "ignorereservation",
    "isconfirmationneeded",
    "isconfidential",
    "allowforwarding",
    "sendreminder",
    "isencrypted",
    "overrideregisteredcontactinformation",
    "isreserved",
];
/// Members of an enum type: a number in a form value binds as the enum's integer.
const ENUMS: [&str; 7] = [
    "notificationtemplate",
    "notificationchannel",
    "emailcontenttype",
    "reminderemailcontenttype",
    "remindernotificationchannel",
    "referencetype",
    "datalocationtype",
];
const INTEGERS: [&str; 1] = ["expirationindays"];
/// Collections of strings, which also bind from a repeated key without an index.
const STRING_LISTS: [&str; 2] = ["recipients", "existingattachments"];
/// The dictionary member, whose keys keep their case.
const DICTIONARY: &str = "propertylist";

/// A member path as the binder splits it.
#[derive(Debug, PartialEq)]
enum Segment {
    Name(String),
    Index(usize),
    Key(String),
}

#[derive(Debug, Default)]
struct Node {
    /// (field name as sent, value): the name is the model-state key of a binding error.
    values: Vec<(String, String)>,
    members: BTreeMap<String, Node>,
    items: BTreeMap<usize, Node>,
}

fn segments(field: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (name, mut rest) = part.split_once('[').map(|(n, r)| (n, Some(r))).unwrap_or((part, None));
        let in_dictionary = matches!(out.last(), Some(Segment::Name(n)) if n == DICTIONARY);
        if !name.is_empty() {
            out.push(if in_dictionary { Segment::Key(name.into()) } else { Segment::Name(name.to_ascii_lowercase()) });
        }
        while let Some(r) = rest {
            let (inside, after) = r.split_once(']')?;
            let is_dictionary = matches!(out.last(), Some(Segment::Name(n)) if n == DICTIONARY);
            out.push(match inside.parse() {
                Ok(i) if !is_dictionary => Segment::Index(i),
                _ => Segment::Key(inside.to_string()),
            });
            rest = after.strip_prefix('[');
        }
    }
    Some(out)
}

fn insert(root: &mut Node, path: &[Segment], field: &str, value: String) {
    let mut node = root;
    for segment in path {
        node = match segment {
            Segment::Name(n) | Segment::Key(n) => node.members.entry(n.clone()).or_default(),
            Segment::Index(i) => node.items.entry(*i).or_default(),
        };
    }
    node.values.push((field.to_string(), value));
}

/// Converts a value by the member's type; Err is the binder's message.
fn scalar(name: &str, value: &str) -> Result<Value, String> {
    let trimmed = value.trim();
    if BOOLEANS.contains(&name) {
        return match trimmed.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("The value '{value}' is not valid.")),
        };
    }
    if INTEGERS.contains(&name) {
        return trimmed.parse::<i64>().map(Value::from).map_err(|_| format!("The value '{value}' is not valid."));
    }
    if ENUMS.contains(&name) {
        if let Ok(n) = trimmed.parse::<i64>() {
            return Ok(Value::from(n));
        }
    }
    Ok(Value::String(value.to_string()))
}

fn to_json(name: &str, node: Node, errors: &mut Vec<(String, String)>) -> Value {
    if !node.items.is_empty() {
        // The binder reads indices from 0 and stops at the first gap.
        let mut list = Vec::new();
        for (expected, (i, item)) in node.items.into_iter().enumerate() {
            if i != expected {
                break;
            }
            list.push(to_json("", item, errors));
        }
        return Value::Array(list);
    }
    if !node.members.is_empty() {
        let members = node.members.into_iter().map(|(k, child)| {
            let value = to_json(&k, child, errors);
            (k, value)
        });
        return Value::Object(members.collect::<Map<String, Value>>());
    }
    let mut values: Vec<Value> = Vec::new();
    for (field, v) in node.values {
        // ConvertEmptyStringToNull: an empty form value binds as absent.
        if v.is_empty() {
            continue;
        }
        match scalar(name, &v) {
            Ok(v) => values.push(v),
            Err(message) => errors.push((field, message)),
        }
    }
    if STRING_LISTS.contains(&name) {
        return Value::Array(values);
    }
    values.into_iter().next().unwrap_or(Value::Null)
}

/// Binds the text fields to an initialize body with lower-cased member names.
pub(crate) fn bind(fields: &[(String, String)]) -> Result<Value, Problem> {
    let mut root = Node::default();
    for (field, value) in fields {
        let field = match field.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("request.") => &field[8..],
            _ => field,
        };
        // Names the binder cannot parse bind to nothing, as in ASP.NET.
        if let Some(path) = segments(field) {
            insert(&mut root, &path, field, value.clone());
        }
    }
    let mut errors = Vec::new();
    let body = to_json("", root, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::Validation(errors));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn property_paths_bind_case_insensitively_with_an_optional_prefix() {
        let body = bind(&fields(&[
            ("Recipients[0]", "0192:991825827"),
            ("request.Correspondence.ResourceId", "r"),
            ("correspondence.content.messageTitle", "t"),
            ("Correspondence.Content.Attachments[0].FileName", "a.pdf"),
            ("Correspondence.Content.Attachments[0].IsEncrypted", "True"),
            ("Correspondence.PropertyList.caseNumber", "42"),
            ("Correspondence.PropertyList[Other]", "x"),
            ("Correspondence.ExternalReferences[0].ReferenceType", "0"),
            ("Correspondence.Notification.EmailSubject", ""),
            ("IdempotentKey", "k"),
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "recipients": ["0192:991825827"],
                "correspondence": {
                    "resourceid": "r",
                    "content": { "messagetitle": "t", "attachments": [{ "filename": "a.pdf", "isencrypted": true }] },
                    "propertylist": { "caseNumber": "42", "Other": "x" },
                    "externalreferences": [{ "referencetype": 0 }],
                    "notification": { "emailsubject": null },
                },
                "idempotentkey": "k",
            })
        );
    }

    #[test]
    fn lists_stop_at_a_gap_and_bad_booleans_fail_binding() {
        let body = bind(&fields(&[("Recipients[0]", "a"), ("Recipients[2]", "c"), ("ExistingAttachments", "x")]));
        assert_eq!(body.unwrap(), json!({ "recipients": ["a"], "existingattachments": ["x"] }));
        let bad = bind(&fields(&[("Correspondence.IsConfidential", "yes")]));
        assert!(matches!(bad, Err(Problem::Validation(e)) if e[0].0 == "Correspondence.IsConfidential"));
    }
}
