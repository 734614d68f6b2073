//! The fake Altinn Events : the subscription API and the pull API
//! under `/events/api/v1`, the endpoint handshake, pushes with retries and dead letters, and
//! the fake Correspondence as the publisher of its events (the catalogue in `catalogue.rs`).
//!
//! - `caller`: the Altinn token, the caller's identity and the PDP's `subscribe` decision.
//! - `subscriptions`: `POST`/`GET`/`DELETE /subscriptions`, its checks in the server's order.
//! - `catalogue`: which status change publishes which event, with what subject.
//! - `publisher`: the events clock, which finds the transitions since its last tick and
//!   registers their events in the order they happened, then fans them out.
//! - `delivery`: handshakes and pushes, one event per POST, retried on a schedule.
//! - `pull`: `GET /events`. `cloud`: the CloudEvent JSON. `faults`: event faults.
//!
//! One deliberate departure: `FakeConfig::events_allow_http` lets endpoints be plain HTTP, so
//! tests can receive pushes without TLS. Not modelled: app subscriptions (`app_` resources,
//! `sourceFilter` on an apps domain), subunits for `includeSubunits` (matched as the subject
//! alone), the subscription cache lag, and pre-2026 event formats.

mod answers;
mod caller;
pub(crate) mod catalogue;
mod cloud;
mod delivery;
mod faults;
pub(crate) mod publisher;
mod pull;
pub(crate) mod subscriptions;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use cloud::FakeEvent;
pub use faults::{EventFault, EventFaultRule, EventFaults};

use super::{App, FakeConfig};

/// A subscription as the fake Events stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeSubscription {
    pub id: i32,
    /// The endpoint as stored: the request's URL normalised as .NET's `Uri.AbsoluteUri` does.
    pub end_point: String,
    pub resource_filter: String,
    pub subject_filter: Option<String>,
    pub type_filter: Option<String>,
    /// `consumer` and `createdBy`: the identity of the creator.
    pub consumer: String,
    pub created: DateTime<Utc>,
    pub validated: bool,
    pub include_subunits: bool,
}

/// Whether an attempt was a handshake or the push of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    Validation,
    Push,
}

/// One POST the fake Events made (or, for a validation made to fail, pretended to make).
#[derive(Clone, Debug)]
pub struct DeliveryAttempt {
    pub kind: AttemptKind,
    /// The id of the event pushed, or of the validation event.
    pub event_id: String,
    pub subscription_id: i32,
    pub endpoint: String,
    /// 1 for the first attempt of this delivery.
    pub attempt: u32,
    /// The HTTP status answered; None after a timeout or a connection or TLS error.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When the attempt ended, on the fake's clock.
    pub at: DateTime<Utc>,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// An event whose delivery to one subscription ran out of attempts.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub event: FakeEvent,
    pub subscription_id: i32,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

/// The settings a test may change while the fake runs; see the `events_*` fields of
/// [`FakeConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    pub allow_http: bool,
    pub time_scale: f64,
    pub validation_retry_ms: Vec<u64>,
    pub delivery_retry_ms: Vec<u64>,
    pub push_timeout_ms: u64,
    pub visibility_delay_ms: u64,
    /// Bare resource ids whose policy does not permit `subscribe`.
    pub denied_resources: HashSet<String>,
}

/// What Events holds: subscriptions, registered events and what deliveries did.
#[derive(Default)]
pub(crate) struct Store {
    /// In id order; DELETE removes.
    pub subscriptions: Vec<FakeSubscription>,
    pub last_id: i32,
    /// In registration order (the pull API's `sequenceno`).
    pub events: Vec<FakeEvent>,
    pub lost: Vec<FakeEvent>,
    pub attempts: Vec<DeliveryAttempt>,
    pub dead: Vec<DeadLetter>,
}

/// The fake Altinn Events of one server, reached from tests through `FakeServer::events`.
pub struct Events {
    base_url: String,
    /// `FakeConfig::clock_offset_s`: attempts are stamped on the fake's clock.
    clock_offset: chrono::Duration,
    knobs: Mutex<Knobs>,
    store: Mutex<Store>,
    faults: EventFaults,
    /// Built once; each request gets the timeout of the moment (`push_timeout_ms`).
    http: reqwest::Client,
    /// Cancelled with the server: handshakes and pushes in progress stop.
    stop: CancellationToken,
}

fn bare(resource: &str) -> String {
    resource.trim_start_matches("urn:altinn:resource:").to_string()
}

impl Events {
    pub(crate) fn new(config: &FakeConfig, base_url: &str, stop: CancellationToken) -> Events {
        let knobs = Knobs {
            allow_http: config.events_allow_http,
            time_scale: config.events_time_scale,
            validation_retry_ms: config.events_validation_retry_ms.clone(),
            delivery_retry_ms: config.events_delivery_retry_ms.clone(),
            push_timeout_ms: config.events_push_timeout_ms,
            visibility_delay_ms: config.events_visibility_delay_ms,
            denied_resources: config.events_denied_resources.iter().map(|r| bare(r)).collect(),
        };
        Events {
            base_url: base_url.to_string(),
            clock_offset: chrono::Duration::seconds(config.clock_offset_s),
            knobs: Mutex::new(knobs),
            store: Mutex::default(),
            faults: EventFaults::default(),
            http: reqwest::Client::new(),
            stop,
        }
    }

    /// The fake's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub(crate) fn knobs(&self) -> Knobs {
        self.knobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn change(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.knobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every subscription that exists now, in id order.
    pub fn subscriptions(&self) -> Vec<FakeSubscription> {
        self.store().subscriptions.clone()
    }

    /// Every event registered, in registration order.
    pub fn published(&self) -> Vec<FakeEvent> {
        self.store().events.clone()
    }

    /// Events Correspondence failed to register ([`EventFault::Drop`]).
    pub fn lost(&self) -> Vec<FakeEvent> {
        self.store().lost.clone()
    }

    /// Every handshake and push attempt, in the order they ended.
    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.store().attempts.clone()
    }

    /// The attempts to deliver event `event_id` (to any subscription).
    pub fn attempts_for(&self, event_id: &str) -> Vec<DeliveryAttempt> {
        self.store().attempts.iter().filter(|a| a.event_id == event_id).cloned().collect()
    }

    /// Deliveries that ran out of attempts; never retried, never replayed.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.store().dead.clone()
    }

    pub fn faults(&self) -> &EventFaults {
        &self.faults
    }

    /// Multiplies every retry delay from now on (1.0 real time; 0.001 makes hours seconds).
    pub fn set_time_scale(&self, scale: f64) {
        self.change(|k| k.time_scale = scale);
    }

    /// The delays between push attempts; N delays make N + 1 attempts, then a dead letter.
    pub fn set_delivery_retry_ms(&self, delays: Vec<u64>) {
        self.change(|k| k.delivery_retry_ms = delays);
    }

    /// The delays between handshake attempts; after the last one the fake gives up silently.
    pub fn set_validation_retry_ms(&self, delays: Vec<u64>) {
        self.change(|k| k.validation_retry_ms = delays);
    }

    /// How long a handshake or a push waits for the endpoint's answer.
    pub fn set_push_timeout_ms(&self, timeout_ms: u64) {
        self.change(|k| k.push_timeout_ms = timeout_ms);
    }

    /// How long after registration the pull API first lists an event.
    pub fn set_visibility_delay_ms(&self, delay_ms: u64) {
        self.change(|k| k.visibility_delay_ms = delay_ms);
    }

    /// The resource's policy stops permitting `subscribe`: new subscriptions get the 403 of
    /// check 9 and the pull API leaves its events out.
    pub fn deny_subscribe(&self, resource: &str) {
        self.change(|k| {
            k.denied_resources.insert(bare(resource));
        });
    }

    /// Undoes [`Events::deny_subscribe`].
    pub fn allow_subscribe(&self, resource: &str) {
        self.change(|k| {
            k.denied_resources.remove(&bare(resource));
        });
    }
}

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route("/subscriptions/{id}", get(subscriptions::one).delete(subscriptions::delete))
        .route("/events", get(pull::events))
}
