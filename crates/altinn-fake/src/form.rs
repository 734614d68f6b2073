//! ASP.NET form model binding for the upload endpoint: text fields
//! named by C# property path (`Correspondence.Content.Attachments[0].FileName`),
//! case-insensitive, with an optional `request.` prefix, become the JSON shape that
//! `POST /correspondence` validates, so both endpoints share one validator.
//!
//! Form values are strings; the binder converts them by the property's type, so booleans,
//! integers and enums given as numbers are converted here by member name.
//!
//! The dictionary (`Correspondence.PropertyList`) binds as ASP.NET's dictionary binder does:
//! it lists the keys under the prefix, a key ending at the first `.` or `[` after
//! `PropertyList.`, or at the first `]` after `PropertyList[`, then reads each key's value
//! from the field of exactly that name. So `PropertyList[case.no]` binds the key `case.no`,
//! while `PropertyList.case.no` binds the key `case` with no value (null), which the real
//! server's property-list validator then dereferences: a 500.

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
/// Its path from the model's root: fields under it bind through [`dictionary`].
const DICTIONARY_PATH: &str = "correspondence.propertylist";

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
        let (name, mut rest) = part.split_once('[').map_or((part, None), |(n, r)| (n, Some(r)));
        if !name.is_empty() {
            out.push(Segment::Name(name.to_ascii_lowercase()));
        }
        while let Some(r) = rest {
            let (inside, after) = r.split_once(']')?;
            out.push(match inside.parse() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(inside.to_string()),
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
        // ConvertEmptyStringToNull: an empty or white-space form value binds as absent.
        if v.trim().is_empty() {
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

/// The dictionary's key in `field` and the field name that carries its value, or None when
/// `field` is not under the dictionary (ASP.NET's `PrefixContainer.GetKeysFromPrefix`).
fn dictionary_key(field: &str) -> Option<(&str, &str)> {
    let head = field.get(..DICTIONARY_PATH.len()).filter(|h| h.eq_ignore_ascii_case(DICTIONARY_PATH))?;
    let rest = &field[head.len()..];
    let end = match rest.chars().next()? {
        // `prefix.key`, `prefix.key.more`, `prefix.key[more]`: the key stops at `.` or `[`.
        '.' => 1 + rest[1..].find(['.', '[']).unwrap_or(rest.len() - 1),
        // `prefix[key]`, `prefix[key].more`: the key stops at the first `]`.
        '[' => rest.find(']')? + 1,
        _ => return None,
    };
    let key = if rest.starts_with('.') { &rest[1..end] } else { &rest[1..end - 1] };
    Some((key, &field[..head.len() + end]))
}

/// Binds the dictionary from the fields under it: keys in order of first appearance (keys
/// that differ only in case are one key, the first spelling wins), each value read from the
/// field named exactly as the key's full name, else from the other notation. A key whose
/// value is missing or blank is kept with a null value.
fn dictionary(fields: &[(&str, &str)]) -> Option<Map<String, Value>> {
    let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    let value_of = |name: &str| fields.iter().find(|(f, _)| same(f, name)).map(|(_, v)| *v);
    let mut map = Map::new();
    for (key, full) in fields.iter().filter_map(|(f, _)| dictionary_key(f)) {
        if map.keys().any(|k| same(k, key)) {
            continue;
        }
        let other = if full.ends_with(']') {
            format!("{}.{key}", &full[..DICTIONARY_PATH.len()])
        } else {
            format!("{}[{key}]", &full[..DICTIONARY_PATH.len()])
        };
        let value = value_of(full).or_else(|| value_of(&other)).filter(|v| !v.trim().is_empty());
        map.insert(key.to_string(), value.map_or(Value::Null, |v| Value::String(v.to_string())));
    }
    (!map.is_empty()).then_some(map)
}

/// Binds the text fields to an initialize body with lower-cased member names.
pub(crate) fn bind(fields: &[(String, String)]) -> Result<Value, Problem> {
    let mut root = Node::default();
    let mut under_dictionary = Vec::new();
    for (field, value) in fields {
        let field = match field.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("request.") => &field[8..],
            _ => field,
        };
        if dictionary_key(field).is_some() {
            under_dictionary.push((field, value.as_str()));
            continue;
        }
        // Names the binder cannot parse bind to nothing, as in ASP.NET.
        if let Some(path) = segments(field) {
            insert(&mut root, &path, field, value.clone());
        }
    }
    let mut errors = Vec::new();
    let mut body = to_json("", root, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::Validation(errors));
    }
    if let Some(map) = dictionary(&under_dictionary) {
        if body.is_null() {
            body = Value::Object(Map::new());
        }
        if let Value::Object(top) = &mut body {
            let correspondence = top.entry("correspondence").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(c) = correspondence {
                c.insert(DICTIONARY.to_string(), Value::Object(map));
            }
        }
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
    fn dictionary_keys_with_dots_bind_only_in_the_bracket_form() {
        let body = bind(&fields(&[
            ("Correspondence.PropertyList[case.no]", "42"),
            ("Correspondence.PropertyList[a[b]", "x"),
            ("Correspondence.PropertyList[0]", "zero"),
            ("Correspondence.PropertyList.plain", "p"),
            ("Correspondence.PropertyList[Plain]", "second spelling of the same key"),
        ]))
        .unwrap();
        let expected = json!({ "case.no": "42", "a[b": "x", "0": "zero", "plain": "p" });
        assert_eq!(body["correspondence"]["propertylist"], expected);
        // The dotted form ends the key at the first dot and finds no field of that name.
        let body = bind(&fields(&[("Correspondence.PropertyList.case.no", "42")])).unwrap();
        assert_eq!(body["correspondence"]["propertylist"], json!({ "case": null }));
        // A key that ends at `]` in the bracket form: `[a]b]` is the key `a`, with no value.
        let body =
            bind(&fields(&[("Correspondence.PropertyList[a]b]", "x"), ("request.Correspondence.PropertyList.k", " ")]));
        assert_eq!(body.unwrap()["correspondence"]["propertylist"], json!({ "a": null, "k": null }));
        // A value under the other notation is found: ASP.NET tries both.
        let fields_in_both =
            fields(&[("Correspondence.PropertyList.k[x]", "ignored"), ("Correspondence.PropertyList[k]", "v")]);
        assert_eq!(bind(&fields_in_both).unwrap()["correspondence"]["propertylist"], json!({ "k": "v" }));
    }

    #[test]
    fn lists_stop_at_a_gap_and_bad_booleans_fail_binding() {
        let body = bind(&fields(&[("Recipients[0]", "a"), ("Recipients[2]", "c"), ("ExistingAttachments", "x")]));
        assert_eq!(body.unwrap(), json!({ "recipients": ["a"], "existingattachments": ["x"] }));
        let bad = bind(&fields(&[("Correspondence.IsConfidential", "yes")]));
        assert!(matches!(bad, Err(Problem::Validation(e)) if e[0].0 == "Correspondence.IsConfidential"));
    }
}
