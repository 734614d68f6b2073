//! A strict fake of Maskinporten and Altinn (token exchange, Correspondence API, Events) on
//! one port.
//!
//! Integration tests and the local demo point the outbox at this server instead of the real
//! services. It is deliberately as strict as the real servers: a fake that accepts anything
//! proves nothing. It parses requests as plain JSON and never shares wire
//! types with the client, so a client bug cannot be mirrored by a matching fake bug.
//!
//! - `maskinporten`: `POST /token` (JWT-bearer grants) and the RFC 8414 metadata.
//! - `auth`: the Altinn token exchange and the bearer check in front of the Correspondence API.
//! - `access`: resources Altinn Authorization denies and scopes tokens lack, changeable at
//!   run time; the resource registry's read of a resource.
//! - `correspondence`: the Correspondence endpoints; `model`, `validate`, `notify` and
//!   `plain`: model binding and validation of initialize requests.
//! - `upload`, `multipart`, `form`: the multipart initialize (streamed form reading, C#
//!   property-path binding); `attachment`, `attachment_api`: the attachment store and its
//!   endpoints; `linking`: the attachment rules of initialize; `blob`: MD5, sizes and the
//!   malware verdict of uploaded bytes.
//! - `views`: overview and details bodies. `problem`: error bodies.
//! - `state`: what the fake remembers, for assertions. `faults`: fault injection.
//! - `events`: Altinn Events under `/events/api/v1` (subscriptions, the endpoint handshake,
//!   pushes with retries and dead letters, the pull API, event faults) and the events clock
//!   through which the fake Correspondence publishes the events of its status changes.

mod access;
mod attachment;
mod attachment_api;
mod auth;
mod blob;
mod correspondence;
mod events;
mod faults;
mod form;
mod linking;
mod maskinporten;
mod model;
mod multipart;
mod notify;
mod plain;
mod problem;
mod state;
mod upload;
mod validate;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use access::Access;
pub use attachment::FakeAttachment;
pub use blob::md5_hex;
pub use events::{
    AttemptKind, DeadLetter, DeliveryAttempt, EventFault, EventFaultRule, EventFaults, Events, FakeEvent,
    FakeSubscription,
};
pub use faults::{Endpoint, FaultKind, FaultRule, Faults};
pub use state::{FakeCorrespondence, FakeState, RequestRecord};

/// One Maskinporten client the fake knows, as registered in Digdir's self-service portal.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FakeClient {
    /// The client id, which grants carry as `iss`.
    pub client_id: String,
    /// The client's public keys, `{"keys":[{"kid","n","e",...}]}`; grants must name one by `kid`.
    pub jwks: serde_json::Value,
    /// The scopes the client may request; any other scope in a grant is `invalid_scope`.
    pub scopes: Vec<String>,
}

/// How the fake behaves. Every duration carries its unit in its name.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default)]
pub struct FakeConfig {
    /// The Maskinporten clients the fake knows; a grant from any other `iss` is `invalid_client`.
    pub clients: Vec<FakeClient>,
    /// ReadyForPublish -> Published, counted from creation (or from `requestedPublishTime` if
    /// later, as the real publish job does). Default 0: published at the first look.
    pub publish_after_ms: u64,
    /// Published -> Read, counted from creation. None: the recipient never reads.
    pub read_after_ms: Option<u64>,
    /// -> Confirmed, counted from creation, only when `isConfirmationNeeded`. None: never.
    pub confirm_after_ms: Option<u64>,
    /// Upload -> end of the malware scan (attachment `Published` or `Failed`), counted from
    /// the upload. Default 0: scanned at the first look. `u64::MAX`: the scan never ends (the
    /// attachment stays `UploadProcessing`). `FakeState::set_malware_scan_ms_for` sets it for
    /// the files of one name.
    pub malware_scan_ms: u64,
    /// After publish, notifications go from `*_New` to their outcome after this long.
    pub notification_after_ms: u64,
    /// The outcome every notification recipient reaches, as the suffix of Altinn's send status
    /// (`Email_<it>`, `SMS_<it>`): `Delivered` by default; `Failed_TTL` (no receipt in time),
    /// `Failed_Bounced`, `Succeeded`… for tests of the other outcomes.
    pub notification_outcome: String,
    /// The outcome of the SMS recipients when it differs from the e-mail ones: the simplest
    /// faithful model of a partly failed order. With `EmailAndSms` (one e-mail and one SMS
    /// recipient) and one of the two failing, the order has a sent and a failed recipient and
    /// publishes both `correspondencenotificationdelivered` and
    /// `correspondencenotificationfailed`; with SMS alone it decides the whole order. None
    /// (default): SMS recipients reach `notification_outcome` like e-mail ones.
    pub notification_sms_outcome: Option<String>,
    /// The notification order cannot be created (no contact information, Notifications
    /// down): `correspondencenotificationcreationfailed` at publish instead of
    /// `notificationcreated`, then no result events and no reminder; the views show no
    /// order. Default false.
    pub notification_order_fails: bool,
    /// The reminder order, counted from publication, for letters whose notification has
    /// `sendReminder: true` and that are not Read by then (7 days in production, 1 h in the
    /// test environments). Its recipients reach the main order's outcomes after
    /// `notification_after_ms`: at least one sent publishes
    /// `correspondencenotificationreminderdelivered`, at least one failed
    /// `correspondencenotificationfailed` (the reminder is never "the main order", so never
    /// `…allfailed`). Only the events show the reminder, not the views. None (default): no reminder.
    pub reminder_after_ms: Option<u64>,
    /// An attachment expires this long after its publication (malware scan clean) and
    /// publishes `attachmentexpired` then. Only the event: the attachment's status stays
    /// `Published` in the views. None (default): attachments never expire.
    pub attachment_expires_after_ms: Option<u64>,
    /// Lifetime of Maskinporten tokens; 120 s is Maskinporten's default client setting.
    pub maskinporten_token_lifetime_s: i64,
    /// Lifetime of Altinn tokens; 30 min is `JwtValidityMinutes` in altinn-authentication.
    pub altinn_token_lifetime_s: i64,
    /// The fake's clock minus the host clock, for clock-skew tests; every answer states the
    /// fake's clock in `Date`, as Maskinporten states its own. Default 0.
    pub clock_offset_s: i64,
    /// When set, every Altinn call must carry it as `Ocp-Apim-Subscription-Key` (401 otherwise).
    pub subscription_key: Option<String>,
    /// 11-digit national identity numbers reserved in KRR.
    pub reserved_persons: Vec<String>,
    /// Resource ids the Resource Registry does not know (initialize answers 400/1036, the
    /// search 401/4001, the registry 404).
    pub unknown_resources: Vec<String>,
    /// Resource ids Altinn Authorization denies the fake's organisation at start (401/4001 on
    /// initialize and the search); [`FakeServer::access`] changes them at run time.
    pub denied_resources: Vec<String>,
    /// Scopes left out of every token issued, at start (Correspondence answers an empty 403
    /// without the write scope); [`FakeServer::access`] grants them at run time.
    pub withheld_scopes: Vec<String>,
    /// The base URL clients use, when it differs from the listening address (port mapping,
    /// a host name). Default `http://<listening address>`, with 0.0.0.0 shown as 127.0.0.1.
    pub public_base_url: Option<String>,
    /// Events: accept `http` endpoints as well as `https`. The fake's one deliberate departure
    /// from Altinn Events (which answers 400 for anything but https), so tests can receive
    /// pushes on a plain local listener. Default false.
    pub events_allow_http: bool,
    /// Events: every retry delay (handshake and push) is multiplied by this; 1.0 is real time,
    /// 0.001 makes the 35 hours of the push schedule 2 minutes. Timeouts and the visibility
    /// delay are not scaled. Default 1.0.
    pub events_time_scale: f64,
    /// Events: the delays between handshake attempts, in ms; N delays make N + 1 attempts,
    /// then the subscription stays unvalidated for ever. Default the Service Bus policy: 1 s,
    /// 5 s, 10 s in the lock, then 30 s, 1 min, 2 min, 2 min, 2 min (9 attempts).
    pub events_validation_retry_ms: Vec<u64>,
    /// Events: the delays between push attempts of one event to one subscription, in ms; N
    /// delays make N + 1 attempts, then a dead letter. Default the Service Bus policy: 10 s,
    /// 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 12 h (12 attempts, ≈35 h).
    pub events_delivery_retry_ms: Vec<u64>,
    /// Events: how long a handshake or push waits for the endpoint's answer, in ms; 45 s is
    /// `EventsOutboundSettings.RequestTimeout` on the Service Bus path.
    pub events_push_timeout_ms: u64,
    /// Events: how long after registration the pull API first lists an event, in ms; 30 s
    /// is the `registeredtime <= now() - interval '30 second'` of `getevents_v2`.
    pub events_visibility_delay_ms: u64,
    /// Events: how often the events clock looks for status changes to publish, in ms. Events
    /// are published within one tick of the change; 25 ms keeps tests quick and costs little.
    pub events_tick_ms: u64,
    /// Events: resource ids whose policy does not permit `subscribe` at start (403 with the
    /// text of check 9; left out of the pull API); `Events::deny_subscribe` changes them.
    pub events_denied_resources: Vec<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            clients: Vec::new(),
            publish_after_ms: 0,
            read_after_ms: None,
            confirm_after_ms: None,
            malware_scan_ms: 0,
            notification_after_ms: 0,
            notification_outcome: "Delivered".into(),
            notification_sms_outcome: None,
            notification_order_fails: false,
            reminder_after_ms: None,
            attachment_expires_after_ms: None,
            maskinporten_token_lifetime_s: 120,
            altinn_token_lifetime_s: 1800,
            clock_offset_s: 0,
            subscription_key: None,
            reserved_persons: Vec::new(),
            unknown_resources: Vec::new(),
            denied_resources: Vec::new(),
            withheld_scopes: Vec::new(),
            public_base_url: None,
            events_allow_http: false,
            events_time_scale: 1.0,
            events_validation_retry_ms: vec![1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 120_000, 120_000],
            events_delivery_retry_ms: vec![
                10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
                43_200_000,
            ],
            events_push_timeout_ms: 45_000,
            events_visibility_delay_ms: 30_000,
            events_tick_ms: 25,
            events_denied_resources: Vec::new(),
        }
    }
}

impl FakeConfig {
    /// The outcome a notification recipient reaches: SMS ones `notification_sms_outcome` if
    /// set, all others `notification_outcome`.
    pub(crate) fn outcome_of(&self, sms: bool) -> &str {
        match (&self.notification_sms_outcome, sms) {
            (Some(outcome), true) => outcome,
            _ => &self.notification_outcome,
        }
    }
}

/// Everything the handlers share. Tokens are HS256 with a per-process random secret: the
/// client must treat them as opaque, so only the fake itself ever verifies them.
pub(crate) struct App {
    pub config: FakeConfig,
    pub base_url: String,
    pub secret: [u8; 32],
    pub state: Arc<FakeState>,
    pub faults: Arc<Faults>,
    pub access: Arc<access::Access>,
    pub events: Arc<Events>,
    /// The last Altinn token whose signature and issuer were checked, with its claims.
    pub checked_token: auth::CheckedToken,
}

impl App {
    /// `shutdown` also stops the handshakes and pushes under way.
    fn new(config: FakeConfig, base_url: String, shutdown: CancellationToken) -> App {
        App {
            state: Arc::new(FakeState::new(config.clone())),
            access: Arc::new(access::Access::new(&config)),
            events: Arc::new(Events::new(&config, &base_url, shutdown)),
            config,
            base_url,
            secret: rand::random(),
            faults: Arc::new(Faults::default()),
            checked_token: auth::CheckedToken::default(),
        }
    }

    /// Maskinporten's issuer, which is also the only valid grant audience.
    pub fn issuer(&self) -> String {
        format!("{}/", self.base_url)
    }

    /// The issuer of exchanged Altinn tokens, as altinn-authentication sets it.
    pub fn altinn_issuer(&self) -> String {
        format!("{}/authentication/api/v1/openid/", self.base_url)
    }

    /// The fake's clock: the host clock plus `clock_offset_s`.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.now()
    }
}

fn base_url_for(config: &FakeConfig, addr: SocketAddr) -> String {
    if let Some(url) = &config.public_base_url {
        return url.trim_end_matches('/').to_string();
    }
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/token", post(maskinporten::token))
        .route("/.well-known/oauth-authorization-server", get(maskinporten::well_known))
        .route("/authentication/api/v1/exchange/{provider}", get(auth::exchange))
        .route("/resourceregistry/api/v1/resource/{id}", get(access::resource))
        .nest("/correspondence/api/v1", correspondence::router(app.clone()))
        .nest("/events/api/v1", events::router())
        // Layers run outside-in from the last one: the record sees the final status,
        // faults run before any handler or auth check, like a gateway in front.
        .layer(from_fn_with_state(app.clone(), faults::middleware))
        .layer(from_fn_with_state(app.clone(), state::record_middleware))
        .layer(from_fn_with_state(app.clone(), date_middleware))
        .with_state(app)
}

/// Sets `Date` from the fake's clock on every answer, faulted ones included, as the real
/// servers state their own clocks; otherwise hyper would add the host's time and
/// `clock_offset_s` would be invisible to clients that learn the offset from `Date`.
async fn date_middleware(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let date = httpdate::fmt_http_date(SystemTime::from(app.now()));
    if let Ok(value) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// Serves the fake on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: FakeConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let base_url = base_url_for(&config, listener.local_addr()?);
    serve_app(Arc::new(App::new(config, base_url, shutdown.clone())), listener, shutdown).await
}

async fn serve_app(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(base_url = %app.base_url, "fake Maskinporten and Altinn listening");
    tokio::spawn(events::publisher::run(app.clone(), shutdown.clone()));
    axum::serve(listener, router(app)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// A fake running in the background on 127.0.0.1 and a free port, for tests.
/// Dropping it stops the server.
pub struct FakeServer {
    app: Arc<App>,
    shutdown: CancellationToken,
}

impl FakeServer {
    /// Binds 127.0.0.1:0 and serves in a spawned task.
    pub async fn start(config: FakeConfig) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0 for the fake");
        let addr = listener.local_addr().expect("local address of the fake");
        let shutdown = CancellationToken::new();
        let app = Arc::new(App::new(config.clone(), base_url_for(&config, addr), shutdown.clone()));
        let task = serve_app(app.clone(), listener, shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "fake server stopped");
            }
        });
        FakeServer { app, shutdown }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.app.base_url.clone()
    }

    /// The Maskinporten issuer (`base_url` + "/"), which grants must use as `aud`.
    pub fn issuer(&self) -> String {
        self.app.issuer()
    }

    pub fn state(&self) -> &FakeState {
        &self.app.state
    }

    pub fn faults(&self) -> &Faults {
        &self.app.faults
    }

    /// Denied resources and withheld scopes, to change while the daemon runs.
    pub fn access(&self) -> &Access {
        &self.app.access
    }

    /// The fake Altinn Events: subscriptions, events published, delivery attempts, dead
    /// letters, event faults and the settings that may change at run time.
    pub fn events(&self) -> &Events {
        &self.app.events
    }

    /// Runs the events clock once now, without waiting for its next tick (which would find
    /// the same changes a few milliseconds later). Call it inside the tokio runtime: the
    /// pushes it starts are tasks.
    pub fn publish_events_now(&self) {
        events::publisher::tick(&self.app);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
