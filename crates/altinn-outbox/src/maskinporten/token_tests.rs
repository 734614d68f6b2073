//! Tests of the token client against a local fake of Maskinporten and the exchange.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;

use super::*;
use crate::maskinporten::altinn_token::{jwt_exp, FALLBACK_TOKEN_LIFETIME_S};
use crate::maskinporten::grant::tests::{fixture_key, payload};

/// Every test finishes well within this; it only stops a broken test from hanging.
const TEST_DEADLINE: Duration = Duration::from_secs(5);
const MARGIN_S: i64 = 60;
const MP_TOKEN: &str = "maskinporten-access-token";

#[derive(Clone, Copy)]
enum ExchangeReply {
    Jwt { lifetime_s: i64, quoted: bool },
    Status(u16),
}

/// Plays Maskinporten and the exchange, recording what it was sent.
struct Fake {
    token_calls: AtomicUsize,
    exchange_calls: AtomicUsize,
    forms: Mutex<Vec<String>>,
    exchange_headers: Mutex<Vec<HeaderMap>>,
    token_reply: Mutex<(u16, String)>,
    exchange_reply: Mutex<ExchangeReply>,
    token_delay_ms: AtomicU64,
    /// When set, token answers state this clock (host clock plus the offset) in `Date`.
    date_offset_s: Mutex<Option<i64>>,
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
    fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }
    fn exchange_calls(&self) -> usize {
        self.exchange_calls.load(Ordering::SeqCst)
    }
    fn set_token_reply(&self, status: u16, body: &str) {
        *self.token_reply.lock().unwrap() = (status, body.to_string());
    }
    fn set_exchange_reply(&self, reply: ExchangeReply) {
        *self.exchange_reply.lock().unwrap() = reply;
    }
}

/// A JWT-shaped token whose payload says which exchange issued it and when it expires.
fn fake_jwt(n: usize, exp: i64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"n":{n},"exp":{exp}}}"#));
    format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
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

fn settings(base: &Url, subscription_key: Option<&str>) -> TokenSettings {
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

fn client_for(base: &Url, subscription_key: Option<&str>, timeout: Duration) -> TokenClient {
    client_with(settings(base, subscription_key), timeout)
}

fn client_with(settings: TokenSettings, timeout: Duration) -> TokenClient {
    // no_proxy: a proxy from the environment must not intercept loopback test traffic.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    TokenClient::with_request_timeout(http, settings, fixture_key(), timeout)
}

async fn start_fake() -> (Arc<Fake>, Url) {
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

async fn start(subscription_key: Option<&str>) -> (Arc<Fake>, TokenClient) {
    let (fake, base) = start_fake().await;
    (fake, client_for(&base, subscription_key, Duration::from_secs(2)))
}

async fn within_deadline<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, f).await.expect("test exceeded its deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_refresh() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.token_delay_ms.store(50, Ordering::SeqCst);
        let tokens = join_all((0..20).map(|_| {
            let client = client.clone();
            async move { client.token().await.unwrap() }
        }))
        .await;
        assert_eq!((fake.token_calls(), fake.exchange_calls()), (1, 1));
        assert_eq!((client.grants_issued(), client.exchanges()), (1, 1));
        assert!(tokens.iter().all(|t| t.expose() == tokens[0].expose()));
        client.token().await.unwrap();
        assert_eq!(fake.exchange_calls(), 1, "a fresh token is served from the cache");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failure() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.token_delay_ms.store(50, Ordering::SeqCst);
        fake.set_token_reply(503, "");
        let results = join_all((0..10).map(|_| {
            let client = client.clone();
            async move { client.token().await }
        }))
        .await;
        assert_eq!(fake.token_calls(), 1);
        assert!(results.iter().all(|r| r.as_ref().unwrap_err().code() == "maskinporten:503"));
        // A later caller tries again rather than inheriting a stale failure.
        fake.set_token_reply(200, &format!(r#"{{"access_token":"{MP_TOKEN}"}}"#));
        client.token().await.unwrap();
        assert_eq!(fake.token_calls(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_token_within_the_margin_is_refreshed() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.set_exchange_reply(ExchangeReply::Jwt { lifetime_s: MARGIN_S - 10, quoted: false });
        let first = client.token().await.unwrap();
        assert!(!first.is_fresh(Utc::now(), MARGIN_S));
        let second = client.token().await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!((fake.token_calls(), fake.exchange_calls()), (2, 2));
    })
    .await;
}

#[tokio::test]
async fn invalidate_drops_the_rejected_token_once() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        let first = client.token().await.unwrap();
        for _ in 0..50 {
            client.invalidate(&first);
        }
        let second = client.token().await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(fake.exchange_calls(), 2);
        // A late 401 for the old token must not throw away its replacement.
        client.invalidate(&first);
        let third = client.token().await.unwrap();
        assert_eq!(third.expose(), second.expose());
        assert_eq!((fake.token_calls(), fake.exchange_calls()), (2, 2));
    })
    .await;
}

#[tokio::test]
async fn a_quoted_exchange_body_is_unquoted_and_its_exp_cached() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.set_exchange_reply(ExchangeReply::Jwt { lifetime_s: 1800, quoted: true });
        let token = client.token().await.unwrap();
        assert!(!token.expose().contains('"') && !token.expose().ends_with('\n'));
        let exp = payload(token.expose())["exp"].as_i64().unwrap();
        assert_eq!(token.expires_at().timestamp(), exp);
        assert_eq!(format!("{token:?}"), "AltinnToken(***)");
    })
    .await;
}

#[tokio::test]
async fn maskinporten_oauth_errors_are_config_errors() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.set_token_reply(400, r#"{"error":"invalid_grant","error_description":"MP-121 Expired key"}"#);
        let error = client.token().await.unwrap_err();
        assert!(error.is_config_error());
        assert_eq!(error.code(), "maskinporten:invalid_grant");
        assert!(error.to_string().contains("MP-121 Expired key"));
        let form = fake.forms.lock().unwrap()[0].clone();
        let assertion = assertion_of(&form);
        assert!(!format!("{error} {error:?}").contains(&assertion[..40]), "error leaks the grant");
        assert_eq!(fake.exchange_calls(), 0);
    })
    .await;
}

#[tokio::test]
async fn unavailability_is_retryable() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        for (status, code) in [(503, "exchange:503"), (401, "exchange:401"), (429, "exchange:429")] {
            fake.set_exchange_reply(ExchangeReply::Status(status));
            let error = client.token().await.unwrap_err();
            assert!(!error.is_config_error(), "{code}");
            assert_eq!(error.code(), code);
            assert!(!error.to_string().contains(MP_TOKEN), "error leaks the maskinporten token");
        }
        fake.set_exchange_reply(ExchangeReply::Status(403));
        assert_eq!(client.token().await.unwrap_err().code(), "exchange:http_403");
        fake.set_token_reply(502, "<html>bad gateway</html>");
        assert_eq!(client.token().await.unwrap_err().code(), "maskinporten:502");
    })
    .await;
}

#[tokio::test]
async fn network_errors_and_timeouts_are_unavailable() {
    within_deadline(async {
        let (fake, base) = start_fake().await;
        fake.token_delay_ms.store(300, Ordering::SeqCst);
        let impatient = client_for(&base, None, Duration::from_millis(100));
        let error = impatient.token().await.unwrap_err();
        assert_eq!(error.code(), "maskinporten:unavailable");
        assert!(error.to_string().contains("timed out"), "{error}");

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let error = client_for(&dead, None, Duration::from_secs(1)).token().await.unwrap_err();
        assert_eq!(error.code(), "maskinporten:unavailable");
        assert!(!error.is_config_error());
    })
    .await;
}

#[tokio::test]
async fn the_form_has_exactly_grant_type_and_assertion() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        let token = client.token().await.unwrap();
        client.invalidate(&token);
        client.token().await.unwrap();
        let forms = fake.forms.lock().unwrap().clone();
        let mut jtis = BTreeSet::new();
        for form in &forms {
            let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ["grant_type", "assertion"]);
            assert_eq!(fields[0].1, "urn:ietf:params:oauth:grant-type:jwt-bearer");
            jtis.insert(payload(&fields[1].1)["jti"].as_str().unwrap().to_string());
        }
        assert_eq!(jtis.len(), 2, "every grant has a fresh jti");

        let headers = fake.exchange_headers.lock().unwrap()[0].clone();
        assert_eq!(headers["authorization"], format!("Bearer {MP_TOKEN}").as_str());
        assert_eq!(headers["accept"], "text/plain");
        assert!(!headers.contains_key(SUBSCRIPTION_KEY_HEADER));
    })
    .await;
}

#[tokio::test]
async fn the_subscription_key_is_sent_only_when_configured() {
    within_deadline(async {
        let (fake, client) = start(Some("  ")).await;
        client.token().await.unwrap();
        assert!(!fake.exchange_headers.lock().unwrap()[0].contains_key(SUBSCRIPTION_KEY_HEADER));

        let (fake, client) = start(Some("apim-key")).await;
        client.token().await.unwrap();
        assert_eq!(fake.exchange_headers.lock().unwrap()[0][SUBSCRIPTION_KEY_HEADER], "apim-key");
    })
    .await;
}

#[test]
fn each_grant_gets_a_new_jti() {
    let client = client_for(&Url::parse("http://127.0.0.1:9/").unwrap(), None, Duration::from_secs(1));
    let now = Utc::now();
    let a = payload(&client.build_grant(now).unwrap());
    let b = payload(&client.build_grant(now).unwrap());
    assert_ne!(a["jti"], b["jti"]);
    assert_eq!(a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(), 120);
}

#[test]
fn exchanged_tokens_fall_back_to_a_minute_without_exp() {
    let now = Utc::now();
    let opaque = exchanged_token("  opaque-token \n", now).unwrap();
    assert_eq!(opaque.expose(), "opaque-token");
    assert_eq!(opaque.expires_at(), now + TimeDelta::seconds(FALLBACK_TOKEN_LIFETIME_S));
    assert!(exchanged_token(" \"\" ", now).is_none());
    assert_eq!(jwt_exp(&fake_jwt(1, 1_900_000_000)), Some(1_900_000_000));
    assert_eq!(jwt_exp("not-a-jwt"), None);
}

/// Clock skew, the cool-down after failures and the status, in a file of their own.
/// The grant a token request carried.
fn assertion_of(form: &str) -> String {
    url::form_urlencoded::parse(form.as_bytes()).find(|(k, _)| k == "assertion").unwrap().1.into_owned()
}

#[path = "token_resilience_tests.rs"]
mod resilience;
