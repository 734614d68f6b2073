//! A pushed CloudEvent, read leniently: attributes in any order, unknown attributes and types
//! kept out of the way rather than refused, `data` ignored. Only `id` and `type` are needed;
//! what is kept is bounded, and the subject (a recipient, possibly a person) is never read.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::outbox::events::Event;

/// The type of the handshake Altinn sends when a subscription is made; answered 2xx at once.
pub const VALIDATION_TYPE: &str = "platform.events.validatesubscription";

/// Longest id, type, resource and instance kept (the database holds no more).
const MAX_ID: usize = 200;
const MAX_RESOURCE: usize = 300;

/// Why a body is not an event.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("`{0}` is missing, not a string, empty or too long")]
    Attribute(&'static str),
}

/// The attributes the daemon uses, borrowed from the parsed body.
#[derive(Debug)]
pub struct Pushed {
    object: Map<String, Value>,
}

impl Pushed {
    pub fn parse(body: &[u8]) -> Result<Pushed, Malformed> {
        Pushed::from_value(serde_json::from_slice::<Value>(body).map_err(|_| Malformed::NotAnObject)?)
    }

    /// One event of the pull API's array, read as a push is.
    pub fn from_value(value: Value) -> Result<Pushed, Malformed> {
        match value {
            Value::Object(object) => {
                let pushed = Pushed { object };
                pushed.required("id", MAX_ID)?;
                pushed.required("type", MAX_ID)?;
                Ok(pushed)
            }
            _ => Err(Malformed::NotAnObject),
        }
    }

    fn required(&self, name: &'static str, max: usize) -> Result<&str, Malformed> {
        self.optional(name, max).ok_or(Malformed::Attribute(name))
    }

    /// A string attribute; one that is not a string, or too long, counts as absent.
    fn optional(&self, name: &str, max: usize) -> Option<&str> {
        self.object.get(name).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= max)
    }

    pub fn is_validation(&self) -> bool {
        self.object.get("type").and_then(Value::as_str) == Some(VALIDATION_TYPE)
    }

    pub fn event(&self) -> Event<'_> {
        Event {
            id: self.optional("id", MAX_ID).unwrap_or_default(),
            event_type: self.optional("type", MAX_ID).unwrap_or_default(),
            resource: self.optional("resource", MAX_RESOURCE),
            resource_instance: self.optional("resourceinstance", MAX_ID),
            time: self
                .optional("time", 64)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_read_whatever_the_order_and_extra_attributes() {
        let body = br#"{"resourceinstance":"0198f3b2-7c1e-7a55-9d44-2b7c1e0a9f11","time":"2026-08-20T08:00:03.438039Z",
            "specversion":"1.0","type":"no.altinn.correspondence.correspondencepublished","novel":{"x":1},
            "subject":"urn:altinn:person:identifier-no:13896396174","resource":"urn:altinn:resource:r",
            "id":"1faa107f-3c0a-4fa6-9fce-7cee8838e258","data":null}"#;
        let pushed = Pushed::parse(body).unwrap();
        assert!(!pushed.is_validation());
        let e = pushed.event();
        assert_eq!(e.id, "1faa107f-3c0a-4fa6-9fce-7cee8838e258");
        assert_eq!(e.event_type, "no.altinn.correspondence.correspondencepublished");
        assert_eq!(e.resource, Some("urn:altinn:resource:r"));
        assert_eq!(e.resource_instance, Some("0198f3b2-7c1e-7a55-9d44-2b7c1e0a9f11"));
        assert_eq!(e.time.unwrap().to_rfc3339(), "2026-08-20T08:00:03.438039+00:00");
    }

    #[test]
    fn the_handshake_is_recognised() {
        let body = br#"{"specversion":"1.0","id":"694caa35-8b25-4cd7-b800-f6eeb93c56ed",
            "source":"https://platform.altinn.no/events/api/v1/subscriptions/1619","type":"platform.events.validatesubscription"}"#;
        assert!(Pushed::parse(body).unwrap().is_validation());
    }

    #[test]
    fn garbage_is_refused_naming_what_is_wrong() {
        assert_eq!(Pushed::parse(b"not json").unwrap_err(), Malformed::NotAnObject);
        assert_eq!(Pushed::parse(b"[1,2]").unwrap_err(), Malformed::NotAnObject);
        assert_eq!(Pushed::parse(br#"{"type":"x"}"#).unwrap_err(), Malformed::Attribute("id"));
        assert_eq!(Pushed::parse(br#"{"id":7,"type":"x"}"#).unwrap_err(), Malformed::Attribute("id"));
        let long = format!(r#"{{"id":"a","type":"{}"}}"#, "t".repeat(201));
        assert_eq!(Pushed::parse(long.as_bytes()).unwrap_err(), Malformed::Attribute("type"));
    }

    #[test]
    fn odd_optional_attributes_are_left_out_not_refused() {
        let body = br#"{"id":"a","type":"b","time":"yesterday","resourceinstance":17}"#;
        let e = Pushed::parse(body).unwrap();
        let e = e.event();
        assert_eq!((e.time, e.resource_instance), (None, None));
    }
}
