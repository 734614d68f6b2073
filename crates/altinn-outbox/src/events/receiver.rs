//! The listener Altinn pushes to, and what one push does. Checks run cheapest first and before
//! the body is read: the source network, the secret path, room for one more push; then the
//! body, bounded; then the event is stored and acted on in one database call, and answered
//! within milliseconds (Altinn waits 45 s at most, and retries anything but a 2xx).

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use sqlx::PgPool;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::network;
use super::payload::Pushed;
use super::tls::Peer;
use crate::config::{EventsSettings, Secret};
use crate::metrics;
use crate::outbox::events::{self as store, Via};

/// What the receiver needs, shared by every request.
pub struct Receiver {
    pool: PgPool,
    settings: EventsSettings,
    /// The public URL's path: pushes come to `<path>/<secret>`.
    path: String,
    secret: Secret,
    permits: Arc<Semaphore>,
}

impl Receiver {
    /// The receiver of `settings`, with the stored secret (made now if no instance made it).
    pub async fn new(pool: PgPool, settings: EventsSettings) -> Result<Receiver, sqlx::Error> {
        let secret = Secret::new(store::receiver_secret(&pool, super::new_secret).await?);
        let path = settings.public_url.path().trim_end_matches('/').to_string();
        let permits = Arc::new(Semaphore::new(settings.max_in_flight));
        Ok(Receiver { pool, settings, path, secret, permits })
    }

    /// Whether `path` is `<public path>/<secret>`, the secret compared in constant time.
    fn is_secret_path(&self, path: &str) -> bool {
        let Some(segment) = path.strip_prefix(self.path.as_str()).and_then(|rest| rest.strip_prefix('/')) else {
            return false;
        };
        let segment = segment.strip_suffix('/').unwrap_or(segment);
        bool::from(segment.as_bytes().ct_eq(self.secret.expose().as_bytes()))
    }

    /// The endpoint to give Altinn (it holds the secret: never log it).
    pub fn endpoint(&self) -> Secret {
        Secret::new(super::endpoint(&self.settings.public_url, self.secret.expose()))
    }
}

/// Serves pushes on `listener` until `shutdown`: a `TcpListener` (plain HTTP, behind a
/// TLS-terminating proxy) or a [`TlsListener`] (the receiver's own TLS).
pub async fn serve<L>(listener: L, receiver: Arc<Receiver>, shutdown: CancellationToken) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
    for<'a> Peer: Connected<IncomingStream<'a, L>>,
{
    let app = Router::new().fallback(push).with_state(receiver);
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// What a push came to: the answer, and the metric's outcome.
struct Answer(StatusCode, &'static str);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        metrics::event_received(self.1);
        let body = match self.0 {
            StatusCode::OK => Body::empty(),
            status => Body::from(status.canonical_reason().unwrap_or("refused")),
        };
        let mut response = (self.0, body).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
        }
        response
    }
}

async fn push(State(r): State<Arc<Receiver>>, ConnectInfo(Peer(peer)): ConnectInfo<Peer>, request: Request) -> Answer {
    let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let from = network::client(peer.ip(), forwarded, &r.settings.trusted_proxies);
    if !from.is_some_and(|ip| network::allowed(ip, &r.settings.allow_networks)) {
        return Answer(StatusCode::FORBIDDEN, "network");
    }
    if request.method() != Method::POST || !r.is_secret_path(request.uri().path()) {
        return Answer(StatusCode::FORBIDDEN, "secret");
    }
    let Ok(_permit) = r.permits.clone().try_acquire_owned() else {
        return Answer(StatusCode::SERVICE_UNAVAILABLE, "busy");
    };
    let Ok(body) = to_bytes(request.into_body(), r.settings.max_body_bytes).await else {
        return Answer(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    };
    let pushed = match Pushed::parse(&body) {
        Ok(pushed) => pushed,
        Err(e) => {
            debug!(error = %e, "a push that is not an event was refused");
            return Answer(StatusCode::BAD_REQUEST, "malformed");
        }
    };
    if pushed.is_validation() {
        info!("Altinn Events validated the endpoint (subscription handshake)");
        return Answer(StatusCode::OK, "validation");
    }
    let event = pushed.event();
    match store::receive(&r.pool, &event, Via::Push).await {
        Ok(received) if received.stored => {
            info!(
                event_id = event.id,
                event_type = event.event_type,
                resource_instance = event.resource_instance,
                deliveries = received.deliveries,
                files = received.files,
                "event received"
            );
            Answer(StatusCode::OK, "stored")
        }
        Ok(_) => Answer(StatusCode::OK, "duplicate"),
        Err(e) => {
            warn!(event_id = event.id, error = %e, "could not store an event; Altinn will push it again");
            Answer(StatusCode::SERVICE_UNAVAILABLE, "error")
        }
    }
}
