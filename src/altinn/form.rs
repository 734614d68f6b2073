//! The multipart request's text fields: ASP.NET binds form fields by C# property path, not
//! by JSON name (`Correspondence.Content.MessageTitle`, `Recipients[0]`), so the JSON
//! request is flattened into those paths.

use serde_json::Value;

/// Flattens the JSON request into (path, value) pairs. Dictionary keys (`propertyList`)
/// are kept as given; every other name gets its C# capital.
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
                let name = if dictionary { key.clone() } else { pascal(key) };
                let child_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                walk(&child_path, child, name == "PropertyList", out);
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
        assert_eq!(get("Correspondence.PropertyList.caseNumber"), Some("42"), "dictionary keys keep their case");
        assert_eq!(get("Correspondence.ReplyOptions[0].LinkURL"), Some("https://x.no"));
        assert_eq!(get("Correspondence.IsConfirmationNeeded"), Some("false"));
        assert_eq!(get("Correspondence.Notification.CustomRecipients[0].EmailAddress"), Some("a@b.no"));
        assert_eq!(get("Recipients[0]"), Some("urn:altinn:organization:identifier-no:991825827"));
        assert_eq!(get("IdempotentKey"), Some("0f8e2a52-6a1b-5c3e-9d44-2b7c1e0a9f11"));
        assert!(get("Correspondence.Content.Attachments[0].Checksum").is_none(), "nulls are left out");
    }
}
