//! A scripted Maskinporten token endpoint and Altinn token exchange, for the token client's
//! tests: each answers as the test sets it (status, body, delay, `Date`) and records what it
//! was sent. The strict fake (`altinn-fake`) checks grants the way Maskinporten does; this one
//! lets a test say exactly what comes back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altinn_outbox::maskinporten::{KeySource, SigningKey, TokenClient, TokenSettings};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use super::fixture;

/// Every test finishes well within this; it only stops a broken test from hanging.
pub const TEST_DEADLINE: Duration = Duration::from_secs(5);
/// The client refreshes this many seconds before a token's `exp`.
pub const MARGIN_S: i64 = 60;
/// The access token the scripted Maskinporten hands out.
pub const MP_TOKEN: &str = "maskinporten-access-token";
/// Azure API Management's key header, which the exchange may carry.
pub const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

#[derive(Clone, Copy)]
pub enum ExchangeReply {
    Jwt { lifetime_s: i64, quoted: bool },
    Status(u16),
}

/// Plays Maskinporten and the exchange, recording what it was sent.
pub struct Fake {
    token_calls: AtomicUsize,
    exchange_calls: AtomicUsize,
    pub forms: Mutex<Vec<String>>,
    pub exchange_headers: Mutex<Vec<HeaderMap>>,
    token_reply: Mutex<(u16, String)>,
    exchange_reply: Mutex<ExchangeReply>,
    pub token_delay_ms: AtomicU64,
    /// When set, token answers state this clock (host clock plus the offset) in `Date`.
    pub date_offset_s: Mutex<Option<i64>>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            token_calls: AtomicUsize::new(0),
            exchange_calls: AtomicUsize::new(0),
            forms: Mutex::default(),
            exchange_headers: Mutex::default(),
            token_reply: Mutex::new((200, format!(r#"{{"access_token":"{MP_TOKEN}","expires_in":120}}"#))),
            exchange_reply: Mutex::new(ExchangeReply::Jwt { lifetime_s: 1800, quoted: false }),
            token_delay_ms: AtomicU64::new(0),
            date_offset_s: Mutex::default(),
        }
    }
}

impl Fake {
    pub fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }
    pub fn exchange_calls(&self) -> usize {
        self.exchange_calls.load(Ordering::SeqCst)
    }
    pub fn set_token_reply(&self, status: u16, body: &str) {
        *self.token_reply.lock().unwrap() = (status, body.to_string());
    }
    pub fn set_exchange_reply(&self, reply: ExchangeReply) {
        *self.exchange_reply.lock().unwrap() = reply;
    }
}

/// A JWT-shaped token whose payload says which exchange issued it and when it expires.
pub fn fake_jwt(n: usize, exp: i64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"n":{n},"exp":{exp}}}"#));
    format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
}

/// The claims of a JWT (a grant or a token), read without verification.
pub fn payload(jwt: &str) -> Map<String, Value> {
    let segment = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// The grant a token request carried.
pub fn assertion_of(form: &str) -> String {
    url::form_urlencoded::parse(form.as_bytes()).find(|(k, _)| k == "assertion").unwrap().1.into_owned()
}

async fn token_endpoint(State(fake): State<Arc<Fake>>, body: String) -> Response {
    fake.token_calls.fetch_add(1, Ordering::SeqCst);
    fake.forms.lock().unwrap().push(body);
    let delay = fake.token_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let (status, body) = fake.token_reply.lock().unwrap().clone();
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = (status, [("content-type", "application/json")], body).into_response();
    // hyper adds the host's Date only when the answer has none.
    if let Some(offset) = *fake.date_offset_s.lock().unwrap() {
        let date = httpdate::fmt_http_date((Utc::now() + TimeDelta::seconds(offset)).into());
        response.headers_mut().insert(reqwest::header::DATE, HeaderValue::from_str(&date).unwrap());
    }
    response
}

async fn exchange_endpoint(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let n = fake.exchange_calls.fetch_add(1, Ordering::SeqCst) + 1;
    fake.exchange_headers.lock().unwrap().push(headers);
    let reply = *fake.exchange_reply.lock().unwrap();
    match reply {
        ExchangeReply::Jwt { lifetime_s, quoted } => {
            let jwt = fake_jwt(n, Utc::now().timestamp() + lifetime_s);
            let body = if quoted { format!("\"{jwt}\"\n") } else { jwt };
            (StatusCode::OK, body).into_response()
        }
        ExchangeReply::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
    }
}

/// The test key, the one whose public half the fakes know.
pub fn fixture_key() -> SigningKey {
    SigningKey::load(&KeySource::JwkFile(fixture("test-jwk.json"))).unwrap()
}

pub fn settings(base: &Url, subscription_key: Option<&str>) -> TokenSettings {
    TokenSettings {
        token_url: base.join("token").unwrap(),
        audience: "https://test.maskinporten.no/".to_string(),
        client_id: "client-1".to_string(),
        scopes: "altinn:serviceowner altinn:correspondence.write".to_string(),
        exchange_url: base.join("authentication/api/v1/exchange/maskinporten").unwrap(),
        subscription_key: subscription_key.map(|k| SecretString::from(k.to_string())),
        grant_lifetime_s: 120,
        refresh_margin_s: MARGIN_S,
        // No cool-down unless a test asks for one: most tests retry at once.
        failure_backoff_first: Duration::ZERO,
        failure_backoff_max: Duration::ZERO,
    }
}

pub fn client_for(base: &Url, subscription_key: Option<&str>, timeout: Duration) -> TokenClient {
    client_with(settings(base, subscription_key), timeout)
}

pub fn client_with(settings: TokenSettings, timeout: Duration) -> TokenClient {
    // no_proxy: a proxy from the environment must not intercept loopback test traffic.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    TokenClient::with_request_timeout(http, settings, fixture_key(), timeout)
}

pub async fn start_fake() -> (Arc<Fake>, Url) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/authentication/api/v1/exchange/maskinporten", get(exchange_endpoint))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base)
}

pub async fn start(subscription_key: Option<&str>) -> (Arc<Fake>, TokenClient) {
    let (fake, base) = start_fake().await;
    (fake, client_for(&base, subscription_key, Duration::from_secs(2)))
}

pub async fn within_deadline<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, f).await.expect("test exceeded its deadline")
}
