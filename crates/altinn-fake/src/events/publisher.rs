//! The events clock: the fake Correspondence's background jobs that publish events, and
//! Events' registration and fan-out.
//!
//! Statuses are computed lazily (`state`), so something must look for them to happen on
//! time: every `events_tick_ms` the clock collects what changed since its last tick
//! (`catalogue::collect`), publishes it in the order it happened with `time` = the moment
//! of publishing (as the Hangfire job stamps it), registers each event and starts a push to
//! every validated subscription that matches it. Event faults apply here: a dropped event
//! is never registered, a re-published one is registered twice with two ids, a redelivered
//! one is pushed twice with one id, a held one is pushed late.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::super::App;
use super::catalogue::{collect, Pending};
use super::cloud::{sdk_time, FakeEvent, TYPE_PREFIX};
use super::delivery::Target;
use super::{EventFault, Events};

/// Ticks until `shutdown`; the server starts one clock.
pub(crate) async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_millis(app.config.events_tick_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => tick(&app),
        }
    }
}

/// One look: collect under the state lock, publish outside it.
pub(crate) fn tick(app: &App) {
    let now = app.now();
    let pending = collect(&mut app.state.lock(), now, &app.config);
    for event in pending {
        app.events.publish(event, &app.base_url, now);
    }
}

/// `alternativesubject` as AltinnEventBus derives it: the URN's last part, by its shape
/// alone (nine digits an organisation, eleven a person), whatever the URN's kind.
fn alternative_subject(subject: &str) -> Option<String> {
    let last = subject.rsplit(':').next().unwrap_or_default();
    let digits = last.chars().all(|c| c.is_ascii_digit());
    match (digits, last.len()) {
        (true, 9) => Some(format!("/organisation/{last}")),
        (true, 11) => Some(format!("/person/{last}")),
        _ => None,
    }
}

impl Events {
    /// Correspondence's `Publish` of one event and what Events does with it.
    fn publish(self: &Arc<Self>, pending: Pending, base_url: &str, now: DateTime<Utc>) {
        let faults = self.faults.take(&format!("{TYPE_PREFIX}{}", pending.name));
        let event = FakeEvent {
            id: uuid::Uuid::new_v4().to_string(),
            source: format!("{base_url}/correspondence/api/v1/{}", pending.source),
            event_type: format!("{TYPE_PREFIX}{}", pending.name),
            time: sdk_time(now),
            alternative_subject: alternative_subject(&pending.subject),
            subject: Some(pending.subject),
            resource: format!("urn:altinn:resource:{}", pending.resource_id),
            resource_instance: pending.instance,
            registered: now,
        };
        if faults.contains(&EventFault::Drop) {
            tracing::info!(event_type = %event.event_type, "event lost on its way to Events (injected)");
            self.store().lost.push(event);
            return;
        }
        let copies = if faults.contains(&EventFault::Republish) { 2 } else { 1 };
        let pushes = if faults.contains(&EventFault::Redeliver) { 2 } else { 1 };
        let hold = faults.iter().find_map(|f| match f {
            EventFault::HoldBack(hold) => Some(*hold),
            _ => None,
        });
        for copy in 0..copies {
            let id = if copy == 0 { event.id.clone() } else { uuid::Uuid::new_v4().to_string() };
            let registered = FakeEvent { id, ..event.clone() };
            self.register(registered, pushes, hold);
        }
    }

    /// Stores the event and pushes it to every validated subscription that matches:
    /// `resourceFilter` exactly, `subjectFilter` and `typeFilter` absent or exact (so `""`
    /// matches nothing).
    fn register(self: &Arc<Self>, event: FakeEvent, pushes: u32, hold: Option<Duration>) {
        let targets: Vec<Target> = {
            let mut store = self.store();
            store.events.push(event.clone());
            store
                .subscriptions
                .iter()
                .filter(|s| {
                    s.validated
                        && s.resource_filter == event.resource
                        && s.subject_filter.as_ref().is_none_or(|f| Some(f) == event.subject.as_ref())
                        && s.type_filter.as_ref().is_none_or(|f| *f == event.event_type)
                })
                .map(|s| Target { subscription_id: s.id, endpoint: s.end_point.clone() })
                .collect()
        };
        for target in targets {
            for _ in 0..pushes {
                self.start_push(event.clone(), target.clone(), hold);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alternative_subject_is_the_number_of_an_organisation_or_person() {
        assert_eq!(
            alternative_subject("urn:altinn:organization:identifier-no:313756270").as_deref(),
            Some("/organisation/313756270")
        );
        assert_eq!(
            alternative_subject("urn:altinn:person:identifier-no:13896396174").as_deref(),
            Some("/person/13896396174")
        );
        assert_eq!(alternative_subject("urn:altinn:person:idporten-email:a@b.no"), None);
        assert_eq!(alternative_subject("urn:altinn:person:legacy-selfidentified:someone"), None);
    }
}
