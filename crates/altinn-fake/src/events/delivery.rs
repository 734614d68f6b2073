//! Handshakes and pushes as WebhookService sends them: `POST` to the
//! endpoint as stored, one event per request, `Content-Type: application/json;
//! charset=utf-8`, no authorisation and no signature. Any 2xx succeeds; anything else, a
//! timeout or a connection error is retried after the next delay of the schedule (times the
//! time scale), each delivery on its own, with no ordering between them. A push that runs
//! out of attempts becomes a dead letter; a handshake that does gives up silently, and the
//! subscription stays unvalidated for ever. Nothing ever disables a subscription.

use std::sync::Arc;
use std::time::Duration;

use super::cloud::validation_event;
use super::{AttemptKind, DeadLetter, DeliveryAttempt, Events, FakeEvent};

/// `new StringContent(payload, Encoding.UTF8, "application/json")`: not the CloudEvents media type.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// What one POST came to: the status, or why there was none.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
}

/// Where a delivery goes.
#[derive(Clone)]
pub(crate) struct Target {
    pub subscription_id: i32,
    pub endpoint: String,
}

impl Events {
    /// Starts the handshake of subscription `id` in the background.
    pub(crate) fn start_validation(self: &Arc<Self>, subscription_id: i32, endpoint: String) {
        let events = self.clone();
        let target = Target { subscription_id, endpoint };
        self.spawn(async move { events.validate(target).await });
    }

    /// Starts pushing `event` to one subscription in the background, after `hold`.
    pub(crate) fn start_push(self: &Arc<Self>, event: FakeEvent, target: Target, hold: Option<Duration>) {
        let events = self.clone();
        self.spawn(async move {
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            events.push(event, target).await;
        });
    }

    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        });
    }

    async fn validate(&self, target: Target) {
        let (id, body) = validation_event(&self.base_url, target.subscription_id);
        for attempt in 1.. {
            let outcome = if self.faults.validation_fails(&target.endpoint) {
                Outcome { status: None, error: Some("injected: the TLS handshake failed".into()) }
            } else {
                self.post(&target.endpoint, body.clone()).await
            };
            let ok = self.record(AttemptKind::Validation, &id, &target, attempt, outcome);
            if ok {
                self.mark_validated(target.subscription_id);
                return;
            }
            let Some(delay) = self.delay(|k| &k.validation_retry_ms, attempt) else {
                tracing::info!(
                    subscription = target.subscription_id,
                    "validation gave up; the subscription stays unvalidated"
                );
                return;
            };
            tokio::time::sleep(delay).await;
        }
    }

    async fn push(&self, event: FakeEvent, target: Target) {
        for attempt in 1.. {
            let outcome = self.post(&target.endpoint, event.to_json()).await;
            if self.record(AttemptKind::Push, &event.id, &target, attempt, outcome) {
                return;
            }
            let Some(delay) = self.delay(|k| &k.delivery_retry_ms, attempt) else {
                tracing::info!(subscription = target.subscription_id, "push dead-lettered");
                let dead =
                    DeadLetter { event, subscription_id: target.subscription_id, attempts: attempt, at: self.now() };
                self.store().dead.push(dead);
                return;
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// The wait after failed attempt `attempt` (1-based), scaled; None after the last.
    fn delay(&self, schedule: impl Fn(&super::Knobs) -> &Vec<u64>, attempt: u32) -> Option<Duration> {
        let knobs = self.knobs();
        let ms = *schedule(&knobs).get(attempt as usize - 1)?;
        Some(Duration::from_secs_f64(ms as f64 / 1000.0 * knobs.time_scale.max(0.0)))
    }

    async fn post(&self, endpoint: &str, body: String) -> Outcome {
        let timeout = Duration::from_millis(self.knobs().push_timeout_ms);
        let request = self.http.post(endpoint).header("content-type", CONTENT_TYPE).body(body).timeout(timeout);
        match request.send().await {
            Ok(response) => Outcome { status: Some(response.status().as_u16()), error: None },
            Err(e) if e.is_timeout() => Outcome { status: None, error: Some("timeout".into()) },
            Err(e) => Outcome { status: None, error: Some(e.to_string()) },
        }
    }

    /// Keeps the attempt; true if it succeeded.
    fn record(&self, kind: AttemptKind, event_id: &str, target: &Target, attempt: u32, outcome: Outcome) -> bool {
        let entry = DeliveryAttempt {
            kind,
            event_id: event_id.to_string(),
            subscription_id: target.subscription_id,
            endpoint: target.endpoint.clone(),
            attempt,
            status: outcome.status,
            error: outcome.error,
            at: self.now(),
        };
        let ok = entry.succeeded();
        self.store().attempts.push(entry);
        ok
    }

    /// `SetValidSubscription`; a subscription deleted meanwhile stays deleted.
    fn mark_validated(&self, id: i32) {
        if let Some(s) = self.store().subscriptions.iter_mut().find(|s| s.id == id) {
            s.validated = true;
        }
    }
}
