//! The token client when things go wrong: a host clock off Maskinporten's, refreshes that
//! fail (cool-down, status) and what is logged about it.

use std::path::Path;
use std::time::Duration;

use altinn_fake::{FakeClient, FakeConfig, FakeServer};
use altinn_outbox::maskinporten::{AuthStatus, TokenClient, TokenSettings};
use chrono::Utc;
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Level;
use url::Url;

use crate::common::logs::{CaptureGuard, Captured, Format};
use crate::common::token_fake::{
    assertion_of, client_for, client_with, payload, settings, start, start_fake, within_deadline, MP_TOKEN,
};

const MP_130_IAT: &str = r#"{"error":"invalid_grant","error_description":"MP-130 Invalid JWT claim iat"}"#;

/// The text this thread logs from DEBUG up while the guard lives (the tests run on a
/// current-thread runtime, so the client's tasks log on it too).
fn capture_logs() -> (Captured, CaptureGuard) {
    let captured = Captured::default();
    let guard = captured.on_this_thread(Format::Text, Level::DEBUG);
    (captured, guard)
}

/// The crate's strict fake, knowing our client and key, with its clock `clock_offset_s` off.
async fn strict_fake(clock_offset_s: i64) -> (FakeServer, TokenClient) {
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/test-jwks-public.json");
    let client = FakeClient {
        client_id: "client-1".into(),
        jwks: serde_json::from_str(&std::fs::read_to_string(jwks).unwrap()).unwrap(),
        scopes: vec!["altinn:serviceowner".into(), "altinn:correspondence.write".into()],
    };
    let server = FakeServer::start(FakeConfig { clients: vec![client], clock_offset_s, ..FakeConfig::default() }).await;
    let base = Url::parse(&format!("{}/", server.base_url())).unwrap();
    let settings = TokenSettings { audience: server.issuer(), ..settings(&base, None) };
    (server, client_with(settings, Duration::from_secs(2)))
}

/// A token endpoint that answers every request with `status` and `body` and no `Date`
/// header, which hyper would always add.
async fn dateless_server(status: &str, body: &'static str) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                // Read the whole request first, so the client sees an answer and not a reset.
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while !request_complete(&request) {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

fn request_complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    body.len() >= length
}

#[tokio::test]
async fn a_host_clock_30_s_ahead_still_gets_a_token() {
    within_deadline(async {
        let (logs, _guard) = capture_logs();
        let (server, client) = strict_fake(-30).await;
        let first = client.token().await.unwrap();
        assert_eq!(client.grants_issued(), 2, "one grant refused as skewed, one with the corrected iat");
        assert_eq!((server.state().grants_rejected(), server.state().grants_accepted()), (1, 1));
        // The next refresh signs on Maskinporten's clock from the start.
        client.invalidate(&first);
        let second = client.token().await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(client.grants_issued(), 3);
        assert_eq!((server.state().grants_rejected(), server.state().grants_accepted()), (1, 2));
        assert!(matches!(client.status(), AuthStatus::Ok { .. }), "{:?}", client.status());
        let text = logs.text();
        assert_eq!(text.matches("host clock is 30 s ahead of Maskinporten's").count(), 1, "{text}");
        assert!(text.contains("NTP"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_skew_refusal_without_a_date_header_names_clock_skew() {
    within_deadline(async {
        let base = dateless_server("400 Bad Request", MP_130_IAT).await;
        let client = client_for(&base, None, Duration::from_secs(2));
        let error = client.token().await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains("clock skew") && text.contains("no Date header"), "{text}");
        assert_eq!(error.code(), "maskinporten:invalid_grant");
        assert_eq!(client.grants_issued(), 1, "no offset learned, so nothing to retry with");
    })
    .await;
}

#[tokio::test]
async fn a_grant_still_refused_after_the_correction_names_the_measured_offset() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        *fake.date_offset_s.lock().unwrap() = Some(-30);
        fake.set_token_reply(400, MP_130_IAT);
        let error = client.token().await.unwrap_err();
        assert_eq!(fake.token_calls(), 2, "one retry within the refresh, not more");
        let text = error.to_string();
        assert!(text.contains("clock skew") && text.contains("30 s ahead of"), "{text}");
        let forms = fake.forms.lock().unwrap().clone();
        let iats: Vec<i64> = forms
            .iter()
            .map(|form| {
                let assertion = assertion_of(form);
                payload(&assertion)["iat"].as_i64().unwrap()
            })
            .collect();
        assert!((iats[0] - iats[1] - 30).abs() <= 2, "the retry is signed 30 s earlier: {iats:?}");
    })
    .await;
}

#[tokio::test]
async fn other_grant_refusals_are_not_retried_or_blamed_on_the_clock() {
    within_deadline(async {
        let (fake, client) = start(None).await;
        fake.set_token_reply(400, r#"{"error":"invalid_grant","error_description":"MP-121 Expired key"}"#);
        let error = client.token().await.unwrap_err();
        assert_eq!(fake.token_calls(), 1);
        assert!(!error.to_string().contains("clock skew"), "{error}");
    })
    .await;
}

fn with_backoff(base: &Url, first: Duration, max: Duration) -> TokenClient {
    let settings = TokenSettings { failure_backoff_first: first, failure_backoff_max: max, ..settings(base, None) };
    client_with(settings, Duration::from_secs(2))
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs `f`, which talks to a server, on the running clock within the test's deadline, then
/// stops the clock again. A paused clock cannot carry network I/O: a runtime waiting for a
/// socket with its clock paused jumps ahead to its next timer, the request's timeout.
async fn live<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::resume();
    let output = within_deadline(f).await;
    tokio::time::pause();
    output
}

/// The cool-down left is `full`, less the moment between the failure (on the running clock)
/// and `live` stopping the clock: far below a second.
fn assert_cooling(client: &TokenClient, full: Duration) {
    let left = client.cooling_down_for();
    let range = full - secs(1)..=full;
    assert!(range.contains(&left) && left > *range.start(), "cooling down for {left:?}, expected {range:?}");
}

/// The clock is paused between requests: the cool-downs are tokio instants, so the test
/// moves time on with `advance` and asserts what is left exactly, instead of sleeping.
#[tokio::test(start_paused = true)]
async fn after_a_failure_callers_cool_down_doubling_to_the_cap() {
    let (fake, base) = live(start_fake()).await;
    let client = with_backoff(&base, secs(60), secs(150));
    assert_eq!(client.cooling_down_for(), Duration::ZERO);
    fake.set_token_reply(503, "");
    assert_eq!(live(client.token()).await.unwrap_err().code(), "maskinporten:503");
    assert_cooling(&client, secs(60));
    let waiting = join_all((0..5).map(|_| client.token())).await;
    assert!(waiting.iter().all(|r| r.as_ref().unwrap_err().code() == "maskinporten:503"));
    assert_eq!(fake.token_calls(), 1, "no grant inside the cool-down");
    tokio::time::advance(secs(58)).await;
    assert_eq!(client.token().await.unwrap_err().code(), "maskinporten:503");
    assert_eq!(fake.token_calls(), 1, "no grant until the cool-down is over");

    tokio::time::advance(secs(12)).await;
    live(client.token()).await.unwrap_err();
    assert_eq!(fake.token_calls(), 2, "a grant after the cool-down");
    assert_cooling(&client, secs(120));
    tokio::time::advance(secs(130)).await;
    live(client.token()).await.unwrap_err();
    assert_eq!(fake.token_calls(), 3);
    assert_cooling(&client, secs(150));

    fake.set_token_reply(200, &format!(r#"{{"access_token":"{MP_TOKEN}"}}"#));
    tokio::time::advance(secs(160)).await;
    let token = live(client.token()).await.unwrap();
    assert_eq!((fake.token_calls(), client.cooling_down_for()), (4, Duration::ZERO));
    // A success resets the cool-down to its first value.
    fake.set_token_reply(503, "");
    client.invalidate(&token);
    live(client.token()).await.unwrap_err();
    assert_cooling(&client, secs(60));
}

#[tokio::test]
async fn a_zero_cool_down_means_none() {
    within_deadline(async {
        let (fake, base) = start_fake().await;
        let client = with_backoff(&base, Duration::ZERO, Duration::ZERO);
        fake.set_token_reply(503, "");
        for calls in 1..=3 {
            client.token().await.unwrap_err();
            assert_eq!((fake.token_calls(), client.cooling_down_for()), (calls, Duration::ZERO));
        }
    })
    .await;
}

#[tokio::test]
async fn status_follows_the_refreshes_and_a_config_error_is_logged_once() {
    within_deadline(async {
        let (logs, _guard) = capture_logs();
        let (fake, client) = start(None).await;
        assert_eq!(client.status(), AuthStatus::Unknown);

        fake.set_token_reply(400, r#"{"error":"invalid_client","error_description":"MP-100 Client not found"}"#);
        let before = Utc::now();
        for _ in 0..3 {
            client.token().await.unwrap_err();
        }
        let AuthStatus::Misconfigured { code, message, since } = client.status() else {
            panic!("expected misconfigured, got {:?}", client.status())
        };
        assert_eq!(code, "maskinporten:invalid_client");
        assert!(message.contains("MP-100"), "{message}");
        assert!(since >= before && since <= Utc::now());
        assert_eq!(logs.text().matches("rejected our grant").count(), 1, "logged once, not per call");

        fake.set_token_reply(200, &format!(r#"{{"access_token":"{MP_TOKEN}"}}"#));
        let token = client.token().await.unwrap();
        assert_eq!(client.status(), AuthStatus::Ok { expires_at: token.expires_at() });

        client.invalidate(&token);
        fake.set_token_reply(503, "");
        client.token().await.unwrap_err();
        let first_since = match client.status() {
            AuthStatus::Unavailable { code, since, .. } if code == "maskinporten:503" => since,
            other => panic!("expected unavailable, got {other:?}"),
        };
        client.token().await.unwrap_err();
        assert!(matches!(client.status(), AuthStatus::Unavailable { since, .. } if since == first_since));
        let text = logs.text();
        assert_eq!(text.matches("no altinn token for now").count(), 1, "one warning per run of failures");

        let forms = fake.forms.lock().unwrap().clone();
        let assertion = assertion_of(&forms[0]);
        let status = serde_json::to_string(&client.status()).unwrap();
        for shown in [&text, &status] {
            assert!(!shown.contains(&assertion[..40]), "a grant was shown");
            assert!(!shown.contains(MP_TOKEN), "a token was shown");
            assert!(!shown.contains(token.expose()), "a token was shown");
        }
    })
    .await;
}
