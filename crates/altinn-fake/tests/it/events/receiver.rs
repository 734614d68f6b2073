//! A stand-in for the daemon's webhook: records every request and answers as told (one
//! status for handshakes, one for pushes, optional per-request overrides and a delay).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub raw: String,
    pub body: Value,
}

impl Seen {
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    pub fn is_validation(&self) -> bool {
        self.event_type() == "platform.events.validatesubscription"
    }
}

/// How the receiver answers.
pub struct Plan {
    pub validation: u16,
    pub push: u16,
    /// Statuses for the next pushes, before `push` applies again.
    pub next_pushes: VecDeque<u16>,
    pub delay: Duration,
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    plan: Arc<Mutex<Plan>>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
    stop: CancellationToken,
}

async fn receive(State(shared): State<Shared>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let raw = String::from_utf8_lossy(&body).to_string();
    let seen = Seen { path: uri.to_string(), headers, body: serde_json::from_str(&raw).unwrap_or(Value::Null), raw };
    let (status, delay) = {
        let mut plan = shared.plan.lock().unwrap();
        let status = if seen.is_validation() {
            plan.validation
        } else {
            let push = plan.push;
            plan.next_pushes.pop_front().unwrap_or(push)
        };
        (status, plan.delay)
    };
    shared.seen.lock().unwrap().push(seen);
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// Listens on 127.0.0.1 and a free port; `/hook/<secret>` is its endpoint.
    pub async fn start(validation: u16, push: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/7f3c", listener.local_addr().unwrap());
        let plan = Plan { validation, push, next_pushes: VecDeque::new(), delay: Duration::ZERO };
        let shared = Shared { seen: Arc::default(), plan: Arc::new(Mutex::new(plan)) };
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await }).await.unwrap();
        });
        Receiver { url, shared, stop }
    }

    pub fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.shared.plan.lock().unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The pushes received (handshakes left out), in arrival order.
    pub fn pushes(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| !s.is_validation()).collect()
    }

    pub fn validations(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_validation).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
