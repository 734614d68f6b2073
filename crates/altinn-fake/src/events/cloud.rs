//! CloudEvents as Altinn Events stores, pushes and lists them: structured-mode JSON as the
//! CloudNative SDK's `JsonEventFormatter` writes it. `specversion` comes first; the SDK gives
//! no order for the rest, so the fake shuffles them on every serialisation, and a client
//! that depends on an order fails here first. Null attributes are dropped and there is never
//! a `data` or `datacontenttype` (Correspondence sends none).

use chrono::{DateTime, Timelike, Utc};
use rand::seq::SliceRandom;
use serde_json::Value;

/// The type of the handshake event (SubscriptionService `_validationType`).
pub(crate) const VALIDATION_TYPE: &str = "platform.events.validatesubscription";
/// Every Correspondence event type starts with this.
pub(crate) const TYPE_PREFIX: &str = "no.altinn.correspondence.";

/// One event registered in the fake Events, as tests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeEvent {
    /// A GUID, new for every publish Correspondence makes (a re-publication has a new one).
    pub id: String,
    /// `<base>/correspondence/api/v1/{correspondence|attachment|notification}`.
    pub source: String,
    /// `no.altinn.correspondence.<name>`.
    pub event_type: String,
    /// RFC 3339 in UTC as the SDK formats it (0, 3, 6 or 7 fractional digits).
    pub time: String,
    /// The party URN of the event (the recipient or the sender, as the contract says per type).
    pub subject: Option<String>,
    /// `/organisation/<9>` or `/person/<11>`; None for e-mail and self-identified parties.
    pub alternative_subject: Option<String>,
    /// `urn:altinn:resource:<id>`.
    pub resource: String,
    /// The correspondence id, the attachment id, or the notification order id.
    pub resource_instance: String,
    /// When Events registered it, on the fake's clock (the pull API's visibility counts
    /// from here).
    pub registered: DateTime<Utc>,
}

impl FakeEvent {
    /// The attributes after `specversion`, as (name, value); absent ones are left out.
    fn attributes(&self) -> Vec<(&'static str, &str)> {
        let mut list = vec![
            ("id", self.id.as_str()),
            ("source", self.source.as_str()),
            ("type", self.event_type.as_str()),
            ("time", self.time.as_str()),
            ("resource", self.resource.as_str()),
            ("resourceinstance", self.resource_instance.as_str()),
        ];
        if let Some(subject) = &self.subject {
            list.push(("subject", subject));
        }
        if let Some(alternative) = &self.alternative_subject {
            list.push(("alternativesubject", alternative));
        }
        list
    }

    /// The structured-mode JSON of the event, attributes after `specversion` shuffled.
    pub fn to_json(&self) -> String {
        structured(self.attributes())
    }
}

/// The 4-attribute handshake event for subscription `id` (CreateValidateEvent): its id and
/// its JSON.
pub(crate) fn validation_event(base_url: &str, subscription_id: i32) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let source = format!("{base_url}/events/api/v1/subscriptions/{subscription_id}");
    let json = structured(vec![("id", &id), ("source", &source), ("type", VALIDATION_TYPE)]);
    (id, json)
}

fn structured(mut attributes: Vec<(&str, &str)>) -> String {
    attributes.shuffle(&mut rand::thread_rng());
    let mut out = String::from("{\"specversion\":\"1.0\"");
    for (name, value) in attributes {
        out.push_str(&format!(",\"{name}\":{}", Value::from(value)));
    }
    out.push('}');
    out
}

/// The SDK's `Timestamps.Format` for a UTC time: .NET ticks (100 ns) and as many fractional
/// digits as they need of 0, 3, 6 or 7.
pub(crate) fn sdk_time(t: DateTime<Utc>) -> String {
    let ticks = t.nanosecond() % 1_000_000_000 / 100;
    let seconds = t.format("%Y-%m-%dT%H:%M:%S");
    match ticks {
        0 => format!("{seconds}Z"),
        x if x % 10_000 == 0 => format!("{seconds}.{:03}Z", x / 10_000),
        x if x % 10 == 0 => format!("{seconds}.{:06}Z", x / 10),
        x => format!("{seconds}.{x:07}Z"),
    }
}

/// How System.Text.Json writes a UTC `DateTime` read from PostgreSQL (microseconds, trailing
/// zeros of the fraction dropped): the `created` of a subscription.
pub(crate) fn dotnet_time(t: DateTime<Utc>) -> String {
    let micros = t.nanosecond() % 1_000_000_000 / 1000;
    let seconds = t.format("%Y-%m-%dT%H:%M:%S");
    if micros == 0 {
        return format!("{seconds}Z");
    }
    let fraction = format!("{micros:06}");
    format!("{seconds}.{}Z", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 8, 20, 8, 0, 3).single().and_then(|t| t.with_nanosecond(nanos)).expect("valid")
    }

    #[test]
    fn times_have_as_many_digits_as_the_sdk_writes() {
        assert_eq!(sdk_time(at(0)), "2026-08-20T08:00:03Z");
        assert_eq!(sdk_time(at(438_000_000)), "2026-08-20T08:00:03.438Z");
        assert_eq!(sdk_time(at(438_039_000)), "2026-08-20T08:00:03.438039Z");
        assert_eq!(sdk_time(at(438_039_100)), "2026-08-20T08:00:03.4380391Z");
        assert_eq!(sdk_time(at(438_039_155)), "2026-08-20T08:00:03.4380391Z", "below a tick is cut");
        assert_eq!(dotnet_time(at(123_450_000)), "2026-08-20T08:00:03.12345Z");
        assert_eq!(dotnet_time(at(0)), "2026-08-20T08:00:03Z");
    }

    #[test]
    fn specversion_comes_first_and_absent_attributes_are_left_out() {
        let event = FakeEvent {
            id: "1".into(),
            source: "s".into(),
            event_type: "t".into(),
            time: "x".into(),
            subject: None,
            alternative_subject: None,
            resource: "r".into(),
            resource_instance: "i".into(),
            registered: Utc::now(),
        };
        let json = event.to_json();
        assert!(json.starts_with("{\"specversion\":\"1.0\","), "{json}");
        let parsed: serde_json::Map<String, Value> = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed.len(), 7);
        assert!(!parsed.contains_key("subject") && !parsed.contains_key("data"));
        let validation: serde_json::Map<String, Value> =
            serde_json::from_str(&validation_event("https://f", 7).1).expect("JSON");
        assert_eq!(validation.len(), 4);
        assert_eq!(validation["source"], "https://f/events/api/v1/subscriptions/7");
    }
}
