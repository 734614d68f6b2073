//! The token client against a scripted Maskinporten and exchange (`common::token_fake`):
//! one refresh for many callers, the cache and its margin, invalidation, how each failure is
//! classified, and exactly what is sent. Clock skew, cool-downs and the status are in
//! `token_resilience`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use url::Url;

use crate::common::token_fake::{
    assertion_of, client_for, payload, start, start_fake, within_deadline, ExchangeReply, MARGIN_S, MP_TOKEN,
    SUBSCRIPTION_KEY_HEADER,
};

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
        // Answers only long after the deadline: the client's timeout, not a race, decides.
        fake.token_delay_ms.store(3_600_000, Ordering::SeqCst);
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
