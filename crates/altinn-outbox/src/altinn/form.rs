//! The multipart request's text fields: ASP.NET binds form fields by C# property path, not
//! by JSON name (`Correspondence.Content.MessageTitle`, `Recipients[0]`), so the JSON
//! request is flattened into those paths.
//!
//! Dictionary keys (`propertyList`) go in brackets, `Correspondence.PropertyList[case.no]`:
//! ASP.NET's dictionary binder ends a key at the first `]` in that form, but at the first
//! `.` or `[` in the dotted one (`Correspondence.PropertyList.case.no` binds the key `case`,
//! without a value). A key with a `]` can only go dotted, and only without `.` or `[`;
//! `compose::attachment` refuses the keys that neither form carries.

use serde_json::Value;

/// Flattens the JSON request into (path, value) pairs. Dictionary keys (`propertyList`)
/// are kept as given, in brackets; every other name gets its C# capital.
pub fn fields(request: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk("", request, false, &mut out);
    out
}

fn walk(path: &str, value: &Value, dictionary: bool, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if dictionary {
                    dictionary_entry(path, key)
                } else if path.is_empty() {
                    pascal(key)
                } else {
                    format!("{path}.{}", pascal(key))
                };
                walk(&child_path, child, !dictionary && key == "propertyList", out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{path}[{i}]"), item, false, out);
            }
        }
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Bool(b) => out.push((path.to_string(), b.to_string())),
        Value::Number(n) => out.push((path.to_string(), n.to_string())),
    }
}

/// `prefix[key]`, or `prefix.key` for a key with a `]` (which would end the bracket form).
fn dictionary_entry(prefix: &str, key: &str) -> String {
    if key.contains(']') {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}[{key}]")
    }
}

/// Whether ASP.NET's form binder reads `key` back from [`dictionary_entry`]'s name.
pub fn dictionary_key_binds(key: &str) -> bool {
    !key.contains(']') || !key.contains(['.', '['])
}

fn pascal(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_names_become_csharp_property_paths() {
        let request = json!({
            "correspondence": {
                "resourceId": "res",
                "content": {"messageTitle": "T", "attachments": [{"fileName": "a.pdf", "checksum": null}]},
                "propertyList": {"caseNumber": "42"},
                "replyOptions": [{"linkURL": "https://x.no", "linkText": "Svar"}],
                "isConfirmationNeeded": false,
                "notification": {"customRecipients": [{"emailAddress": "a@b.no"}]}
            },
            "recipients": ["urn:altinn:organization:identifier-no:991825827"],
            "idempotentKey": "0f8e2a52-6a1b-5c3e-9d44-2b7c1e0a9f11"
        });
        let f = fields(&request);
        let get = |k: &str| f.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Correspondence.ResourceId"), Some("res"));
        assert_eq!(get("Correspondence.Content.MessageTitle"), Some("T"));
        assert_eq!(get("Correspondence.Content.Attachments[0].FileName"), Some("a.pdf"));
        assert_eq!(get("Correspondence.PropertyList[caseNumber]"), Some("42"), "dictionary keys keep their case");
        assert_eq!(get("Correspondence.ReplyOptions[0].LinkURL"), Some("https://x.no"));
        assert_eq!(get("Correspondence.IsConfirmationNeeded"), Some("false"));
        assert_eq!(get("Correspondence.Notification.CustomRecipients[0].EmailAddress"), Some("a@b.no"));
        assert_eq!(get("Recipients[0]"), Some("urn:altinn:organization:identifier-no:991825827"));
        assert_eq!(get("IdempotentKey"), Some("0f8e2a52-6a1b-5c3e-9d44-2b7c1e0a9f11"));
        assert!(get("Correspondence.Content.Attachments[0].Checksum").is_none(), "nulls are left out");
    }

    #[test]
    fn property_keys_go_in_brackets_unless_they_hold_a_closing_bracket() {
        let request = json!({"correspondence": {"propertyList": {
            "case.no": "1", "a[b": "2", "x]y": "3", "propertyList": "4"
        }}});
        let f = fields(&request);
        let names: Vec<&str> = f.iter().map(|(p, _)| p.as_str()).collect();
        assert!(names.contains(&"Correspondence.PropertyList[case.no]"), "{names:?}");
        assert!(names.contains(&"Correspondence.PropertyList[a[b]"), "{names:?}");
        assert!(names.contains(&"Correspondence.PropertyList.x]y"), "{names:?}");
        // A key named like the member is still a key, not a nested dictionary.
        assert!(names.contains(&"Correspondence.PropertyList[propertyList]"), "{names:?}");
        for fine in ["case.no", "a[b", "x]y", "", "plain"] {
            assert!(dictionary_key_binds(fine), "{fine}");
        }
        for unbindable in ["a].b", "a][b"] {
            assert!(!dictionary_key_binds(unbindable), "{unbindable}");
        }
    }
}
