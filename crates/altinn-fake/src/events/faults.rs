//! Fault injection for the events path, as it fails in production:
//! Correspondence's publish to Events lost (a non-2xx is only logged) or retried with a new
//! id, Events redelivering an event with the same id, events arriving out of order, and an
//! endpoint whose validation never succeeds. Dead letters need no rule: a short
//! `Events::set_delivery_retry_ms` schedule gives one after as many failures as wanted.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// What a rule does to an event it applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum EventFault {
    /// Correspondence's `POST /events` failed: the event is never registered (kept in
    /// `Events::lost`), so neither pushes nor the pull API ever show it.
    Drop,
    /// Correspondence retried its publish after an exception: the event is registered twice,
    /// the second time with a new id.
    Republish,
    /// Events delivers the event twice to each subscription, with the same id (a redelivery
    /// after a timeout the receiver had in fact committed).
    Redeliver,
    /// The event's pushes wait this long before their first attempt, so later events overtake
    /// it.
    HoldBack(Duration),
}

/// A fault for the events of one type (or any), a number of times or with a probability.
#[derive(Clone, Debug)]
pub struct EventFaultRule {
    pub fault: EventFault,
    /// The full type (`no.altinn.correspondence.correspondencepublished`); None: any event.
    pub event_type: Option<String>,
    /// How many events the rule applies to; None until `EventFaults::clear`.
    pub times: Option<u32>,
    /// Chance of applying to a matching event; 1.0 = always.
    pub probability: f64,
}

impl EventFaultRule {
    /// A rule for the next `times` events of any type.
    pub fn times(fault: EventFault, times: u32) -> EventFaultRule {
        EventFaultRule { fault, event_type: None, times: Some(times), probability: 1.0 }
    }

    /// A rule for a share of all events until cleared (`probability` 0.0 to 1.0).
    pub fn fraction(fault: EventFault, probability: f64) -> EventFaultRule {
        EventFaultRule { fault, event_type: None, times: None, probability }
    }

    /// Restricts the rule to events of one full type.
    pub fn of_type(mut self, event_type: &str) -> EventFaultRule {
        self.event_type = Some(event_type.to_string());
        self
    }
}

/// The active event fault rules and the endpoints whose validation is made to fail.
#[derive(Default)]
pub struct EventFaults {
    rules: Mutex<Vec<EventFaultRule>>,
    failing_validation: Mutex<HashSet<String>>,
}

impl EventFaults {
    pub fn add(&self, rule: EventFaultRule) {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(rule);
    }

    /// Removes every rule; endpoints made to fail validation stay so.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Every validation attempt towards `endpoint` (as given in the subscription request)
    /// fails as a TLS error would, whatever the endpoint would answer; nothing is sent.
    pub fn fail_validation_for(&self, endpoint: &str) {
        let normalized = super::subscriptions::normalize_endpoint(endpoint);
        self.failing_validation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(normalized);
    }

    /// Undoes `fail_validation_for`; a later (re-)validation can succeed again.
    pub fn allow_validation_for(&self, endpoint: &str) {
        let normalized = super::subscriptions::normalize_endpoint(endpoint);
        self.failing_validation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&normalized);
    }

    pub(crate) fn validation_fails(&self, endpoint: &str) -> bool {
        self.failing_validation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(endpoint)
    }

    /// Every fault that applies to one event of `event_type`, consuming one of each rule's
    /// `times` (one event can be both held back and redelivered).
    pub(crate) fn take(&self, event_type: &str) -> Vec<EventFault> {
        let mut rules = self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut taken = Vec::new();
        for rule in rules.iter_mut() {
            let matches = rule.event_type.as_deref().is_none_or(|t| t == event_type);
            let lucky = rule.probability >= 1.0 || rand::random::<f64>() < rule.probability;
            if matches && rule.times != Some(0) && lucky {
                if let Some(n) = rule.times.as_mut() {
                    *n -= 1;
                }
                taken.push(rule.fault.clone());
            }
        }
        rules.retain(|r| r.times != Some(0));
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_used_up_and_filtered_by_type() {
        let faults = EventFaults::default();
        faults.add(EventFaultRule::times(EventFault::Drop, 1).of_type("a"));
        faults.add(EventFaultRule::times(EventFault::Redeliver, 2));
        assert_eq!(faults.take("b"), vec![EventFault::Redeliver]);
        assert_eq!(faults.take("a"), vec![EventFault::Drop, EventFault::Redeliver]);
        assert!(faults.take("a").is_empty());
        faults.add(EventFaultRule::fraction(EventFault::Drop, 0.0));
        assert!(faults.take("a").is_empty(), "probability 0 never applies");
    }
}
