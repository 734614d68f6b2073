//! The fake Maskinporten + Altinn server, driven over HTTP with reqwest as a client would.
//! These tests pin down its strictness: every rule the real servers enforce must fail here.

// A panic is how a test fails: tests and their helpers unwrap.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod events;

use altinn_fake::{md5_hex, Endpoint, FakeClient, FakeConfig, FakeServer, FaultKind, FaultRule};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CLIENT_ID: &str = "3f4bd3c4-0e6b-4c34-9d1e-6b0f1ad2c0a1";
const KID: &str = "outbox-test-key-1";
const SCOPES: &str = "altinn:serviceowner altinn:correspondence.write";
const RESOURCE: &str = "outbox-test-resource";
const ORG: &str = "urn:altinn:organization:identifier-no:991825827";
const PERSON: &str = "13896396174";

fn config() -> FakeConfig {
    let jwks =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/test-jwks-public.json"))
            .unwrap();
    FakeConfig {
        clients: vec![FakeClient {
            client_id: CLIENT_ID.into(),
            jwks: serde_json::from_str(&jwks).unwrap(),
            scopes: SCOPES.split(' ').map(String::from).collect(),
        }],
        ..FakeConfig::default()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid grant for `server`; `overrides` replaces claims, a JSON null removes one.
fn grant(server: &FakeServer, overrides: Value) -> String {
    signed_grant(server, overrides, concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/test-key.pem"), KID)
}

fn signed_grant(server: &FakeServer, overrides: Value, pem: &str, kid: &str) -> String {
    let iat = now();
    let mut claims = json!({
        "aud": server.issuer(), "iss": CLIENT_ID, "scope": SCOPES,
        "iat": iat, "exp": iat + 60, "jti": uuid::Uuid::new_v4().to_string(),
    });
    for (k, v) in overrides.as_object().unwrap() {
        match v {
            Value::Null => claims.as_object_mut().unwrap().remove(k),
            v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(pem).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn post_grant(server: &FakeServer, assertion: &str) -> (StatusCode, Value) {
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)];
    let response =
        reqwest::Client::new().post(format!("{}/token", server.base_url())).form(&form).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn maskinporten_token(server: &FakeServer) -> String {
    let (status, body) = post_grant(server, &grant(server, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn exchange(server: &FakeServer, token: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{}/authentication/api/v1/exchange/maskinporten", server.base_url()))
        .bearer_auth(token);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

async fn altinn_token(server: &FakeServer) -> String {
    let token = maskinporten_token(server).await;
    exchange(server, &token, None).await.text().await.unwrap()
}

/// An authenticated client for the Correspondence API of one fake.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(server: &FakeServer) -> Api {
        let base = format!("{}/correspondence/api/v1", server.base_url());
        Api { base, token: altinn_token(server).await, http: reqwest::Client::new() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn initialize(&self, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}/correspondence", self.base)).json(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn purge(&self, id: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}/correspondence/{id}/purge", self.base))).await
    }
}

fn message(recipients: &[&str], key: Option<uuid::Uuid>) -> Value {
    json!({
        "correspondence": {
            "resourceId": RESOURCE,
            "sendersReference": "row-1",
            "content": { "language": "nb", "messageTitle": "Vedtak", "messageBody": "# Vedtak\nTekst" },
        },
        "recipients": recipients,
        "idempotentKey": key,
    })
}

fn error_code(body: &Value) -> Option<i64> {
    body["errorCode"].as_i64()
}

#[tokio::test]
async fn a_valid_grant_gives_a_token_and_the_exchange_a_raw_jwt() {
    let server = FakeServer::start(config()).await;
    let (status, body) = post_grant(&server, &grant(&server, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["scope"], SCOPES);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);

    let response = exchange(&server, token, Some("text/plain")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let altinn = response.text().await.unwrap();
    assert_eq!(altinn.split('.').count(), 3, "a raw JWT, not JSON: {altinn}");

    // ASP.NET quotes the string when only JSON is acceptable.
    let quoted = exchange(&server, token, Some("application/json")).await.text().await.unwrap();
    assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{quoted}");
    assert_eq!(server.state().grants_accepted(), 1);
    assert_eq!(server.state().exchanges(), 2);
}

#[tokio::test]
async fn the_metadata_names_the_issuer_with_its_trailing_slash() {
    let server = FakeServer::start(config()).await;
    let url = format!("{}/.well-known/oauth-authorization-server", server.base_url());
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(body["issuer"], format!("{}/", server.base_url()));
    assert_eq!(body["token_endpoint"], format!("{}/token", server.base_url()));
}

#[tokio::test]
async fn grants_that_break_a_maskinporten_rule_are_rejected() {
    let server = FakeServer::start(config()).await;
    let iat = now();
    let cases = [
        ("aud without trailing slash", json!({ "aud": server.base_url() }), "invalid_grant"),
        ("aud = token url", json!({ "aud": format!("{}/token", server.base_url()) }), "invalid_grant"),
        ("exp - iat = 121", json!({ "iat": iat, "exp": iat + 121 }), "invalid_grant"),
        ("extra claim", json!({ "sub": CLIENT_ID }), "invalid_request"),
        ("iat 30 s behind", json!({ "iat": iat - 30, "exp": iat + 30 }), "invalid_grant"),
        ("iat 30 s ahead", json!({ "iat": iat + 30, "exp": iat + 90 }), "invalid_grant"),
        ("expired", json!({ "iat": iat - 8, "exp": iat - 2 }), "invalid_grant"),
        ("no jti", json!({ "jti": null }), "invalid_grant"),
        ("unknown client", json!({ "iss": "someone-else" }), "invalid_client"),
        ("unregistered scope", json!({ "scope": "altinn:correspondence.write altinn:admin" }), "invalid_scope"),
    ];
    for (name, overrides, error) in cases {
        let (status, body) = post_grant(&server, &grant(&server, overrides)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"], error, "{name}: {body}");
        let description = body["error_description"].as_str().unwrap();
        if name.starts_with("aud") {
            assert!(description.starts_with("MP-110"), "{name}: {description}");
        }
        if name == "extra claim" {
            assert!(description.contains("Invalid assertion"), "{description}");
        }
    }
    let unknown_kid = signed_grant(
        &server,
        json!({}),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/test-key.pem"),
        "other-kid",
    );
    let other_key = signed_grant(
        &server,
        json!({}),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/other-key.pem"),
        KID,
    );
    for (name, assertion) in [("unknown kid", unknown_kid), ("unregistered key", other_key)] {
        let (status, body) = post_grant(&server, &assertion).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{name}: {body}");
    }
    assert_eq!(server.state().grants_accepted(), 0);
    assert_eq!(server.state().grants_rejected(), 12);
}

#[tokio::test]
async fn a_grant_is_single_use() {
    let server = FakeServer::start(config()).await;
    let assertion = grant(&server, json!({}));
    assert_eq!(post_grant(&server, &assertion).await.0, StatusCode::OK);
    let (status, body) = post_grant(&server, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().contains("MP-012"));
}

#[tokio::test]
async fn the_exchange_answers_every_failure_with_an_empty_401() {
    let server = FakeServer::start(config()).await;
    let other = FakeServer::start(config()).await;
    let foreign = maskinporten_token(&other).await;
    for token in ["garbage", "a.b.c", foreign.as_str()] {
        let response = exchange(&server, token, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.text().await.unwrap(), "");
    }
}

#[tokio::test]
async fn the_correspondence_api_checks_token_scope_accept_and_subscription_key() {
    let server = FakeServer::start(FakeConfig { subscription_key: Some("sub-key".into()), ..config() }).await;
    let url = format!("{}/correspondence/api/v1/correspondence/{}", server.base_url(), uuid::Uuid::new_v4());
    let http = reqwest::Client::new();
    let keyed = |r: reqwest::RequestBuilder| r.header("ocp-apim-subscription-key", "sub-key");

    let response = http.get(&url).bearer_auth("whatever").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no subscription key");

    let response = keyed(http.get(&url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(response.text().await.unwrap(), "");

    let mp = maskinporten_token(&server).await;
    let response = keyed(http.get(&url)).bearer_auth(&mp).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "unexchanged Maskinporten token");

    let exchanged = keyed(http.get(format!("{}/authentication/api/v1/exchange/maskinporten", server.base_url())))
        .bearer_auth(&mp)
        .send()
        .await
        .unwrap();
    let altinn = exchanged.text().await.unwrap();
    let response = keyed(http.get(&url)).bearer_auth(&altinn).header("accept", "text/html").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let response =
        keyed(http.get(&url)).bearer_auth(&altinn).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "authorised, and the id is unknown");
}

#[tokio::test]
async fn a_token_without_the_service_owner_scope_is_forbidden() {
    let mut config = config();
    config.clients[0].scopes.push("altinn:correspondence.read".into());
    let server = FakeServer::start(config).await;
    let (_, body) = post_grant(&server, &grant(&server, json!({ "scope": "altinn:correspondence.write" }))).await;
    let token = body["access_token"].as_str().unwrap();
    let altinn = exchange(&server, token, None).await.text().await.unwrap();
    let api = Api { token: altinn, ..Api::new(&server).await };
    let (status, body) = api.get(&format!("/correspondence/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, json!("")));
}

#[tokio::test]
async fn initialize_is_idempotent_by_key_and_the_id_can_be_looked_up() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let key = uuid::Uuid::new_v4();
    let (status, body) = api.initialize(&message(&["0192:991825827"], Some(key))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = &body["correspondences"][0];
    assert_eq!(created["recipient"], ORG);
    assert_eq!(created["status"], "ReadyForPublish");
    assert_eq!(created["notifications"], Value::Null);
    assert_eq!(body["attachmentIds"], json!([]));
    let id = created["correspondenceId"].as_str().unwrap().to_string();

    // A different (even invalid) body with the same key is a conflict without an id.
    let (status, body) = api.initialize(&json!({ "idempotentKey": key, "recipients": [] })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), Some(1034));
    assert_eq!(body["code"], "CORR-01034");
    assert_eq!(body["title"], "Conflict");
    assert!(!body.to_string().contains(&id));

    let path = format!("/correspondence?resourceId={RESOURCE}&role=Sender&idempotentKey={key}");
    let (status, body) = api.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "ids": [id] }));
    let (_, body) = api.get(&format!("/correspondence?resourceId={RESOURCE}&idempotentKey={key}")).await;
    assert_eq!(body, json!({ "ids": [] }), "role defaults to Recipient");
    let (status, _) = api.get(&format!("/correspondence?role=Sender&idempotentKey={key}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "resourceId is required");

    let stored = server.state().correspondences();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].idempotent_key, Some(key));
    assert_eq!(server.state().initialize_calls(), 2);
    assert_eq!(server.state().lookups(), 3);
}

#[tokio::test]
async fn idempotency_keys_are_checked_before_validation() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let (status, body) = api.initialize(&message(&[ORG, PERSON], Some(uuid::Uuid::new_v4()))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(1047)), "{body}");
    let (status, body) = api.initialize(&message(&[ORG], Some(uuid::Uuid::nil()))).await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("STD-00000")), "{body}");
    assert_eq!(error_code(&body), None);
    // Without a key several recipients are fine, one correspondence each.
    let (status, body) = api.initialize(&message(&[ORG, PERSON], None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correspondences"][1]["recipient"], format!("urn:altinn:person:identifier-no:{PERSON}"));
}

#[tokio::test]
async fn validation_problems_have_paths_and_no_error_code() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    for bad in ["991825827", "01010199999", "urn:altinn:person:identifier-no:12345678901"] {
        let (status, body) = api.initialize(&message(&[bad], None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "STD-00000", "{bad}: {body}");
        assert_eq!(body["validationErrors"][0]["paths"][0], "Recipients[0]");
    }
    let mut body = message(&[ORG], None);
    body["correspondence"]["content"].as_object_mut().unwrap().remove("messageBody");
    let (status, body) = api.initialize(&body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "STD-00000");
    assert_eq!(body["status"], 400);
    assert_eq!(error_code(&body), None);
    assert_eq!(body["validationErrors"][0]["paths"][0], "Correspondence/Content/MessageBody");
    assert!(body["errors"]["Correspondence.Content.MessageBody"].is_array(), "{body}");
}

#[tokio::test]
async fn property_names_are_case_insensitive_and_titles_limited_to_255() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let mut body = message(&[ORG], None);
    body["correspondence"]["content"]["messageTitle"] = json!("x".repeat(256));
    let (status, answer) = api.initialize(&body).await;
    // `[StringLength(255)]` on the model answers before the handler's own 1037.
    assert_eq!((status, &answer["code"]), (StatusCode::BAD_REQUEST, &json!("STD-00000")), "{answer}");
    let pascal = json!({
        "Correspondence": {
            "ResourceId": RESOURCE, "SendersReference": "r",
            "Content": { "MessageTitle": "x".repeat(255), "MessageBody": "b" },
        },
        "Recipients": [ORG],
    });
    let (status, answer) = api.initialize(&pascal).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn domain_rules_answer_with_their_error_codes() {
    let server = FakeServer::start(FakeConfig {
        reserved_persons: vec![PERSON.into()],
        unknown_resources: vec!["gone".into()],
        ..config()
    })
    .await;
    let api = Api::new(&server).await;
    let with = |path: &[&str], value: Value| {
        let mut body = message(&[ORG], None);
        let mut target = &mut body["correspondence"];
        for p in &path[..path.len() - 1] {
            target = &mut target[*p];
        }
        target[path[path.len() - 1]] = value;
        body
    };
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let cases = [
        (with(&["resourceId"], json!("gone")), 1036),
        (with(&["content", "language"], json!("sv")), 1023),
        (with(&["dueDateTime"], json!(past)), 1008),
        (with(&["isConfirmationNeeded"], json!(true)), 1016),
        (with(&["replyOptions"], json!([{ "linkURL": "http://example.no" }])), 1035),
        (with(&["notification"], json!({ "notificationChannel": "Sms" })), 3004),
        (with(&["notification"], json!({ "emailSubject": "s" })), 3002),
        (message(&[ORG, ORG], None), 1006),
        (message(&[PERSON], None), 1030),
    ];
    for (body, code) in cases {
        let (_, answer) = api.initialize(&body).await;
        assert_eq!(error_code(&answer), Some(code), "{body}: {answer}");
    }
    let template = with(&["notification"], json!({ "notificationTemplate": 7 }));
    let (status, answer) = api.initialize(&template).await;
    assert_eq!((status, answer), (StatusCode::BAD_REQUEST, json!("Invalid notification template")));
    // Among several recipients a reserved person is created as Reserved.
    let (status, answer) = api.initialize(&message(&[ORG, PERSON], None)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["correspondences"][1]["status"], "Reserved");
}

/// The minimal message with `value` at `path` under `correspondence`.
fn changed(path: &[&str], value: Value) -> Value {
    let mut body = message(&[ORG], None);
    let mut target = &mut body["correspondence"];
    for p in &path[..path.len() - 1] {
        target = &mut target[*p];
    }
    target[path[path.len() - 1]] = value;
    body
}

/// What the answer says: "ok", "STD" for a validation problem, the error code, or the status.
fn verdict(status: StatusCode, body: &Value) -> String {
    match (status, error_code(body), body["code"].as_str()) {
        (StatusCode::OK, _, _) => "ok".into(),
        (_, Some(code), _) => code.to_string(),
        (_, None, Some("STD-00000")) => "STD".into(),
        (status, _, _) => status.as_u16().to_string(),
    }
}

#[tokio::test]
async fn text_limits_and_enums_follow_altinns_rules_on_both_sides() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let emoji = |n: usize| json!("😀".repeat(n));
    let transmission = |value: &str| json!({"referenceValue": value, "referenceType": "DialogportenTransmissionType"});
    let dialog =
        json!({"referenceValue": "0195b4a6-0000-7000-8000-000000000001", "referenceType": "dialogportendialogid"});
    let cases = [
        // Plain text in the title (1002) and the message sender (1039).
        (changed(&["content", "messageTitle"], json!("<h1>test</h1>")), "1002"),
        (changed(&["content", "messageTitle"], json!("# test")), "1002"),
        (changed(&["content", "messageTitle"], json!("Error #404 not found.")), "ok"),
        (changed(&["content", "messageTitle"], json!("This *is not* markdown")), "ok"),
        (changed(&["messageSender"], json!("<b>Etat</b>")), "1039"),
        (changed(&["messageSender"], json!("Etat X")), "ok"),
        // The body is HTML-encoded before Altinn's markdown check: raw HTML passes.
        (changed(&["content", "messageBody"], json!("<h1>Vedtak</h1><p>Tekst</p>")), "ok"),
        (changed(&["content", "messageBody"], json!("")), "STD"),
        // Language: any case, blank is nb, two letters or a model error.
        (changed(&["content", "language"], json!("NB")), "ok"),
        (changed(&["content", "language"], json!("")), "ok"),
        (changed(&["content", "language"], json!("sv")), "1023"),
        (changed(&["content", "language"], json!("nob")), "STD"),
        // Lengths in UTF-16 units: an emoji counts twice.
        (changed(&["content", "messageTitle"], emoji(127)), "ok"),
        (changed(&["content", "messageTitle"], emoji(128)), "STD"),
        (changed(&["content", "messageSummary"], emoji(127)), "ok"),
        (changed(&["content", "messageSummary"], emoji(128)), "STD"),
        (changed(&["messageSender"], emoji(127)), "ok"),
        (changed(&["messageSender"], emoji(128)), "STD"),
        (changed(&["propertyList"], json!({ "😀".repeat(25): "v" })), "ok"),
        (changed(&["propertyList"], json!({ "😀".repeat(26): "v" })), "STD"),
        (changed(&["propertyList"], json!({ "k": "😀".repeat(150) })), "ok"),
        (changed(&["propertyList"], json!({ "k": "😀".repeat(151) })), "STD"),
        // A null property value makes Altinn's validator throw.
        (changed(&["propertyList"], json!({ "k": null })), "500"),
        // Dialogporten references.
        (
            changed(
                &["externalReferences"],
                json!([{"referenceValue": "x", "referenceType": "DialogportenTransmissionId"}]),
            ),
            "STD",
        ),
        (changed(&["externalReferences"], json!([dialog.clone(), transmission("alert")])), "ok"),
        (changed(&["externalReferences"], json!([dialog.clone(), transmission("9")])), "STD"),
        (changed(&["externalReferences"], json!([transmission("Alert")])), "1053"),
        (changed(&["externalReferences"], json!([dialog.clone(), transmission("1"), transmission("2")])), "1052"),
        // Enum names in any case.
        (changed(&["notification"], json!({"notificationChannel": "sms", "smsBody": "x"})), "ok"),
        // Notification texts must not be empty; white space is a text.
        (changed(&["notification"], json!({"emailSubject": " ", "emailBody": "b"})), "ok"),
        (changed(&["notification"], json!({"emailSubject": "", "emailBody": "b"})), "3002"),
    ];
    for (body, expected) in cases {
        let (status, answer) = api.initialize(&body).await;
        assert_eq!(verdict(status, &answer), expected, "{body}: {answer}");
    }
}

#[tokio::test]
async fn custom_recipients_follow_altinns_rules_on_both_sides() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let generic = |extra: Value| {
        let mut n = json!({"notificationTemplate": "GenericAltinnMessage"});
        n.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        changed(&["notification"], n)
    };
    let one = |r: Value| generic(json!({"customRecipients": [r]}));
    let cases = [
        (one(json!({"mobileNumber": "+4799999999"})), "ok"),
        (one(json!({"mobileNumber": "004799999999"})), "ok"),
        (one(json!({"mobileNumber": "99999999"})), "3012"),
        (one(json!({"mobileNumber": "+4712345678"})), "3012"),
        (one(json!({"emailAddress": "kari@example.no"})), "ok"),
        (one(json!({"emailAddress": "kari@example.c"})), "3011"),
        (one(json!({"emailAddress": "kari;ola@example.no"})), "3011"),
        (one(json!({"organizationNumber": "991825827", "emailAddress": ""})), "3011"),
        (one(json!({"organizationNumber": "991825827"})), "ok"),
        (one(json!({"organizationNumber": "991825827", "mobileNumber": "+4799999999"})), "3018"),
        (one(json!({})), "3019"),
        // $recipientName$ cannot be filled in for an address or a number.
        (
            changed(
                &["notification"],
                json!({"emailSubject": "s", "emailBody": "Til $recipientName$",
            "customRecipients": [{"emailAddress": "kari@example.no"}]}),
            ),
            "3015",
        ),
        (
            changed(
                &["notification"],
                json!({"emailSubject": "s", "emailBody": "Til $recipientName$",
            "customRecipients": [{"organizationNumber": "991825827"}]}),
            ),
            "ok",
        ),
        // The obsolete fields count when customRecipients is empty; only the first list of the oldest.
        (generic(json!({"customRecipient": {"mobileNumber": "12"}})), "3012"),
        (
            generic(
                json!({"customRecipients": [{"emailAddress": "a@b.no"}], "customRecipient": {"mobileNumber": "12"}}),
            ),
            "ok",
        ),
        (
            generic(json!({"customNotificationRecipients": [{"recipients": [{"emailAddress": "a@b.no"}]},
            {"recipients": [{"emailAddress": "x"}]}]})),
            "ok",
        ),
        (generic(json!({"customNotificationRecipients": [{"recipients": [{"emailAddress": "x"}]}]})), "3011"),
    ];
    for (body, expected) in cases {
        let (status, answer) = api.initialize(&body).await;
        assert_eq!(verdict(status, &answer), expected, "{body}: {answer}");
    }
}

#[tokio::test]
async fn status_advances_to_published_and_content_is_blanked() {
    let server = FakeServer::start(FakeConfig { publish_after_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let mut body = message(&[ORG], None);
    body["correspondence"]["notification"] =
        json!({ "notificationChannel": "EmailAndSms", "emailSubject": "s", "emailBody": "b", "smsBody": "t" });
    let (_, created) = api.initialize(&body).await;
    let id = created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();

    let (_, overview) = api.get(&format!("/correspondence/{id}")).await;
    assert_eq!(overview["status"], "ReadyForPublish");
    assert_eq!(overview["published"], Value::Null);
    assert_eq!(overview["content"]["messageTitle"], "Vedtak");

    server.state().publish_all_now();
    let (status, details) = api.get(&format!("/correspondence/{id}/details")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(details["status"], "Published");
    assert!(details["published"].is_string());
    assert_eq!(details["content"]["language"], "no");
    assert_eq!(details["content"]["messageTitle"], "");
    let history: Vec<&str> =
        details["statusHistory"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["Initialized", "ReadyForPublish", "Published"]);
    let notification = &details["notifications"][0];
    assert_eq!(notification["notificationStatusDetails"]["email"]["sendStatus"]["status"], "Email_Delivered");
    assert_eq!(notification["notificationStatusDetails"]["sms"]["succeeded"], true);
    assert_eq!(notification["processingStatus"]["status"], "Order_Completed");
    assert_eq!(server.state().details_calls(), 1);
}

#[tokio::test]
async fn notifications_are_new_until_delivered_and_status_is_the_highest_reached() {
    let server = FakeServer::start(FakeConfig { notification_after_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let mut body = message(&[ORG], None);
    body["correspondence"]["notification"] = json!({ "emailSubject": "s", "emailBody": "b" });
    let (_, created) = api.initialize(&body).await;
    let id = created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();
    let (_, details) = api.get(&format!("/correspondence/{id}/details")).await;
    let email = &details["notifications"][0]["notificationStatusDetails"]["email"];
    assert_eq!(email["sendStatus"]["status"], "Email_New");
    assert_eq!(email["succeeded"], false);
    assert_eq!(details["notifications"][0]["notificationStatusDetails"]["sms"], Value::Null);

    let uuid = id.parse().unwrap();
    assert!(server.state().set_status(uuid, "Read"));
    assert!(server.state().set_status(uuid, "Published"));
    let (_, overview) = api.get(&format!("/correspondence/{id}")).await;
    assert_eq!(overview["status"], "Read");
    assert!(overview["read"].is_string());
}

#[tokio::test]
async fn a_sender_can_purge_only_before_publish() {
    let server = FakeServer::start(FakeConfig { publish_after_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let (_, first) = api.initialize(&message(&[ORG], None)).await;
    let (_, second) = api.initialize(&message(&[ORG], None)).await;
    let first = first["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();
    let second = second["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();

    assert_eq!(api.purge(&first).await, (StatusCode::OK, json!(first)));
    let (status, body) = api.purge(&first).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(1014)));
    let (status, body) = api.get(&format!("/correspondence/{first}")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, Some(1001)));
    let (status, body) = api.get(&format!("/correspondence/{first}/details")).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("PurgedByAltinn")));

    server.state().publish_all_now();
    let (status, body) = api.purge(&second).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(1013)));
    let (status, body) = api.purge(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, Some(1001)));
    assert_eq!(server.state().correspondences()[1].status, "Published");
}

#[tokio::test]
async fn purge_follows_the_status_rule_and_needs_a_token() {
    let server = FakeServer::start(FakeConfig { publish_after_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, created) = api.initialize(&message(&[ORG], None)).await;
        ids.push(created["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string());
    }
    let unauthenticated =
        reqwest::Client::new().delete(format!("{}/correspondence/{}/purge", api.base, ids[0])).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unauthenticated.text().await.unwrap(), "");

    // Failed may still be purged; Reserved may not (1013, as for a published one).
    assert!(server.state().set_status(ids[0].parse().unwrap(), "Failed"));
    assert_eq!(api.purge(&ids[0]).await, (StatusCode::OK, json!(ids[0])));
    let (status, body) = api.get(&format!("/correspondence/{}", ids[0])).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, Some(1001)));
    assert!(server.state().set_status(ids[1].parse().unwrap(), "Reserved"));
    let (status, body) = api.purge(&ids[1]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(1013)));
    let (status, body) = api.purge("not-a-guid").await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("STD-00000")));
    assert_eq!(server.state().purge_calls(), 3, "the unauthenticated request never reached the handler");
}

#[tokio::test]
async fn injected_503_and_429_answer_like_a_gateway() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    server.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::Status(503), 1));
    let (status, body) = api.initialize(&message(&[ORG], None)).await;
    assert_eq!((status, &body["status"]), (StatusCode::SERVICE_UNAVAILABLE, &json!(503)));
    assert!(body["traceId"].is_string());
    assert_eq!(server.state().initialize_calls(), 0, "the handler never ran");

    server.faults().add(FaultRule::times(Endpoint::Lookup, FaultKind::TooManyRequests { retry_after_s: 1 }, 1));
    let url = format!("{}/correspondence?resourceId=r&role=Sender", api.base);
    let response = api.http.get(&url).bearer_auth(&api.token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, _) = api.get("/correspondence?resourceId=r&role=Sender").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server.state().requests_before_retry_after(),
        0,
        "within 100 ms of the 429 a request may have been sent before it was read"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    api.get("/correspondence?resourceId=r&role=Sender").await;
    assert_eq!(server.state().requests_before_retry_after(), 1, "came back too early");
    tokio::time::sleep(Duration::from_millis(900)).await;
    api.get("/correspondence?resourceId=r&role=Sender").await;
    assert_eq!(server.state().requests_before_retry_after(), 1);
    assert_eq!(server.faults().injected(), 2);
}

#[tokio::test]
async fn an_injected_problem_answers_like_altinn_and_creates_nothing() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let detail = "Could not retrieve party uuid from lookup in Altinn Register";
    let register = FaultKind::Problem { status: 400, error_code: 4002, detail: detail.into() };
    server.faults().add(FaultRule::times(Endpoint::Initialize, register, 1));
    let key = uuid::Uuid::new_v4();
    let (status, body) = api.initialize(&message(&[ORG], Some(key))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "https://tools.ietf.org/html/rfc9110#section-15.5.1");
    assert_eq!((&body["title"], &body["status"]), (&json!("Bad Request"), &json!(400)));
    assert_eq!((&body["detail"], &body["code"]), (&json!(detail), &json!("CORR-04002")));
    assert_eq!(error_code(&body), Some(4002));
    assert!(body["traceId"].as_str().is_some_and(|t| t.starts_with("00-")), "{body}");
    assert_eq!(server.state().initialize_calls(), 0, "the handler never ran");
    assert!(server.state().correspondences().is_empty(), "nothing was created");

    // The key was not stored: the same request succeeds now.
    let (status, body) = api.initialize(&message(&[ORG], Some(key))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.state().correspondences().len(), 1);

    // Any status, any endpoint: KRR failing shows as 500 with 1032.
    let krr = FaultKind::Problem {
        status: 500,
        error_code: 1032,
        detail: "Contact reservation registry lookup failed".into(),
    };
    server.faults().add(FaultRule::times(Endpoint::Any, krr, 1));
    let (status, body) = api.initialize(&message(&[ORG], None)).await;
    assert_eq!((status, &body["title"]), (StatusCode::INTERNAL_SERVER_ERROR, &json!("Internal Server Error")));
    assert_eq!((error_code(&body), &body["code"]), (Some(1032), &json!("CORR-01032")));
    assert_eq!(server.state().correspondences().len(), 1, "still only the one");
    assert_eq!(server.faults().injected(), 2);
}

#[tokio::test]
async fn a_delay_fault_holds_the_request() {
    let server = FakeServer::start(config()).await;
    server.faults().add(FaultRule::always(Endpoint::Token, FaultKind::Delay(Duration::from_millis(500))));
    let client = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", "x")];
    let error = client.post(format!("{}/token", server.base_url())).form(&form).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    server.faults().clear();
    assert_eq!(post_grant(&server, &grant(&server, json!({}))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn commit_then_drop_creates_the_correspondence_but_loses_the_answer() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    server.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::CommitThenDrop, 1));
    let key = uuid::Uuid::new_v4();
    let url = format!("{}/correspondence", api.base);
    let result = async {
        let response = api.http.post(&url).bearer_auth(&api.token).json(&message(&[ORG], Some(key))).send().await?;
        response.text().await
    }
    .await;
    assert!(result.is_err(), "the client must not get a usable answer: {result:?}");
    let stored = server.state().correspondences();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].idempotent_key, Some(key));
    // The retry with the same key is a conflict, and the lookup recovers the id.
    let (status, _) = api.initialize(&message(&[ORG], Some(key))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, found) = api.get(&format!("/correspondence?resourceId={RESOURCE}&role=Sender&idempotentKey={key}")).await;
    assert_eq!(found["ids"][0], json!(stored[0].id));
    let records = server.state().requests();
    assert!(records.iter().any(|r| r.method == "POST" && r.path.ends_with("/correspondence")));
}

#[tokio::test]
async fn the_fake_clock_offset_applies_to_grants_and_tokens_expire_without_skew() {
    let ahead = FakeServer::start(FakeConfig { clock_offset_s: 60, ..config() }).await;
    let (status, body) = post_grant(&ahead, &grant(&ahead, json!({}))).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");
    let iat = now() + 60;
    let skewed = grant(&ahead, json!({ "iat": iat, "exp": iat + 60 }));
    assert_eq!(post_grant(&ahead, &skewed).await.0, StatusCode::OK);

    // An Altinn token whose exp is now is already expired: zero clock skew.
    let server = FakeServer::start(FakeConfig { altinn_token_lifetime_s: 0, ..config() }).await;
    let api = Api::new(&server).await;
    let (status, body) = api.get(&format!("/correspondence/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!("")));
}

/// Every /token answer states the fake's clock in `Date`, as Maskinporten states its own:
/// refused, injected and successful alike, so clients can learn `clock_offset_s` from it.
#[tokio::test]
async fn token_answers_carry_the_fake_clock_in_date() {
    let behind = FakeServer::start(FakeConfig { clock_offset_s: -30, ..config() }).await;
    let on_host_clock = grant(&behind, json!({}));
    let iat = now() - 30;
    let on_fake_clock = grant(&behind, json!({ "iat": iat, "exp": iat + 60 }));
    behind.faults().add(FaultRule::times(Endpoint::Token, FaultKind::Status(503), 1));
    let form = |assertion: &str| {
        [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()), ("assertion", assertion.into())]
    };
    for (assertion, expected) in [(&on_fake_clock, 503), (&on_host_clock, 400), (&on_fake_clock, 200)] {
        let url = format!("{}/token", behind.base_url());
        let response = reqwest::Client::new().post(url).form(&form(assertion)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected);
        let date = response.headers()["date"].to_str().unwrap().to_string();
        let stated = httpdate::parse_http_date(&date).unwrap();
        let stated = chrono::DateTime::<chrono::Utc>::from(stated).timestamp();
        assert!((stated - (now() - 30)).abs() <= 2, "Date {date} is not the fake's clock ({expected})");
    }
}

#[tokio::test]
async fn an_injected_401_has_an_empty_body() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    server.faults().add(FaultRule::times(Endpoint::Any, FaultKind::Status(401), 1));
    let (status, body) = api.get(&format!("/correspondence/{}/details", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!("")));
    let requests = server.state().requests();
    assert_eq!(requests.last().unwrap().status, 401);
    assert_eq!(server.state().details_calls(), 0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_correspondence() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let body = message(&[ORG], Some(uuid::Uuid::new_v4()));
    let answers = futures::future::join_all((0..8).map(|_| api.initialize(&body))).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let conflicts = answers.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && error_code(b) == Some(1034)).count();
    assert_eq!((ok, conflicts), (1, 7));
    assert_eq!(server.state().correspondences().len(), 1);
}

// ---- Attachments: the multipart initialize and the separate attachment flow ----

const PDF_A: &[u8] = b"%PDF-1.7\nfirst test document\n%%EOF\n";
const PDF_B: &[u8] = b"%PDF-1.7\nsecond test document\n%%EOF\n";
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!H+H*";
/// Long enough that the fake keeps only its size and MD5.
const LARGE_BYTES: usize = 3_000_000;

/// A file part: (file name, content).
type File = (&'static str, &'static [u8]);

/// The text fields of a valid one-recipient multipart initialize with `files` as metadata.
fn form_fields(files: &[&str]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = [
        ("Recipients[0]", "0192:991825827"),
        ("Correspondence.ResourceId", RESOURCE),
        ("Correspondence.SendersReference", "row-1"),
        ("correspondence.content.language", "nb"),
        ("request.Correspondence.Content.MessageTitle", "Vedtak"),
        ("Correspondence.Content.MessageBody", "# Vedtak\nTekst"),
        ("Correspondence.PropertyList.caseNumber", "42"),
        ("Correspondence.ExternalReferences[0].ReferenceType", "Generic"),
        ("Correspondence.ExternalReferences[0].ReferenceValue", "123"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, name) in files.iter().enumerate() {
        fields.push((format!("Correspondence.Content.Attachments[{i}].FileName"), name.to_string()));
        fields.push((format!("Correspondence.Content.Attachments[{i}].SendersReference"), format!("att-{i}")));
    }
    fields
}

fn multipart(fields: &[(String, String)], files: &[(&str, &[u8])]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.clone(), v.clone());
    }
    for (name, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string());
        form = form.part("attachments", part);
    }
    form
}

impl Api {
    async fn upload(&self, form: reqwest::multipart::Form) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}/correspondence/upload", self.base)).multipart(form)).await
    }

    async fn new_attachment(&self, file_name: &str, checksum: Option<String>) -> String {
        let body = json!({
            "resourceId": RESOURCE, "fileName": file_name, "sendersReference": "att", "checksum": checksum,
        });
        let (status, id) = self.send(self.http.post(format!("{}/attachment", self.base)).json(&body)).await;
        assert_eq!(status, StatusCode::OK, "{id}");
        id.as_str().expect("the id as a JSON string").to_string()
    }

    async fn upload_attachment(&self, id: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}/attachment/{id}/upload", self.base))
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.send(request).await
    }
}

fn with_existing(ids: &[&str]) -> Value {
    let mut body = message(&[ORG], None);
    body["existingAttachments"] = json!(ids);
    body
}

#[tokio::test]
async fn a_multipart_initialize_stores_the_files_and_publishes_after_the_scan() {
    let server = FakeServer::start(FakeConfig { malware_scan_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let key = uuid::Uuid::new_v4();
    let mut fields = form_fields(&["a.pdf", "b.pdf"]);
    fields.push(("IdempotentKey".into(), key.to_string()));
    // Files in the other order: each is found by its unique name.
    let (status, body) = api.upload(multipart(&fields, &[("b.pdf", PDF_B), ("a.pdf", PDF_A)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correspondences"][0]["status"], "Initialized");
    assert_eq!(body["correspondences"][0]["recipient"], ORG);
    let ids = body["attachmentIds"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let id = body["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();

    let stored = server.state().attachments();
    assert_eq!(stored.iter().map(|a| a.file_name.as_str()).collect::<Vec<_>>(), ["a.pdf", "b.pdf"]);
    assert_eq!(stored[0].size, PDF_A.len() as u64);
    assert_eq!(stored[0].md5.as_deref(), Some(md5_hex(PDF_A).as_str()));
    assert_eq!(stored[1].bytes.as_deref(), Some(PDF_B));
    assert!(stored
        .iter()
        .all(|a| a.status == "UploadProcessing" && a.correspondence_ids == [uuid::Uuid::parse_str(&id).unwrap()]));
    let correspondence = &server.state().correspondences()[0];
    assert_eq!(correspondence.idempotent_key, Some(key));
    assert_eq!(correspondence.request["correspondence"]["propertylist"]["caseNumber"], "42");
    assert_eq!(correspondence.attachment_ids.len(), 2);
    let (_, overview) = api.get(&format!("/correspondence/{id}")).await;
    assert_eq!(overview["status"], "Initialized");

    server.state().complete_malware_scans_now();
    let (_, details) = api.get(&format!("/correspondence/{id}/details")).await;
    let history: Vec<&str> =
        details["statusHistory"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["Initialized", "ReadyForPublish", "Published"]);
    let (_, attachment) = api.get(&format!("/attachment/{}", ids[0].as_str().unwrap())).await;
    assert_eq!(attachment["status"], "Published");
    assert_eq!(attachment["dataType"], "application/pdf");
    assert_eq!(server.state().multipart_uploads(), 1);
    assert_eq!(server.state().initialize_calls(), 0, "the JSON endpoint was not used");
}

#[tokio::test]
async fn multipart_property_keys_bind_as_aspnet_binds_them() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let with_property = |name: &str| {
        let mut fields = form_fields(&["a.pdf"]);
        fields.retain(|(k, _)| !k.contains("PropertyList"));
        fields.push((name.to_string(), "2026/42".to_string()));
        fields
    };
    // The dotted form ends the key at its first dot; the value finds no field: a 500.
    let (status, body) =
        api.upload(multipart(&with_property("Correspondence.PropertyList.case.no"), &[("a.pdf", PDF_A)])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(server.state().correspondences().is_empty());
    // In brackets the whole key binds.
    let (status, body) =
        api.upload(multipart(&with_property("Correspondence.PropertyList[case.no]"), &[("a.pdf", PDF_A)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = server.state().correspondences();
    assert_eq!(stored[0].request["correspondence"]["propertylist"], json!({"case.no": "2026/42"}));
}

#[tokio::test]
async fn multipart_rules_answer_with_their_error_codes() {
    // (what is wrong, text fields, file parts, expected errorCode)
    type Case = (&'static str, Vec<(String, String)>, Vec<File>, i64);
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let other_md5 = md5_hex(b"something else");
    let mut bad_checksum = form_fields(&["a.pdf"]);
    bad_checksum.push(("Correspondence.Content.Attachments[0].Checksum".into(), other_md5));
    let cases: Vec<Case> = vec![
        ("one file for two entries", form_fields(&["a.pdf", "b.pdf"]), vec![("a.pdf", PDF_A)], 1005),
        ("file without metadata", form_fields(&[]), vec![("a.pdf", PDF_A)], 1005),
        ("file name differs", form_fields(&["a.pdf"]), vec![("c.pdf", PDF_A)], 1005),
        ("empty file", form_fields(&["a.pdf"]), vec![("a.pdf", b"")], 2004),
        ("bad extension", form_fields(&["run.exe"]), vec![("run.exe", PDF_A)], 2013),
        ("reserved name", form_fields(&["CON.txt"]), vec![("CON.txt", PDF_A)], 2021),
        ("invalid character", form_fields(&["a|b.pdf"]), vec![("a|b.pdf", PDF_A)], 2012),
        ("checksum mismatch", bad_checksum, vec![("a.pdf", PDF_A)], 2008),
    ];
    for (name, fields, files, code) in cases {
        let (status, body) = api.upload(multipart(&fields, &files)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(code)), "{name}: {body}");
    }
    let mut no_reference = form_fields(&["a.pdf"]);
    no_reference.retain(|(k, _)| !k.ends_with("].SendersReference"));
    let (status, body) = api.upload(multipart(&no_reference, &[("a.pdf", PDF_A)])).await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("STD-00000")), "{body}");
    let path = &body["validationErrors"][0]["paths"][0];
    assert_eq!(path, "Correspondence/Content/Attachments[0]/SendersReference");
    // The JSON endpoint cannot carry files at all.
    let mut json_body = message(&[ORG], None);
    json_body["correspondence"]["content"]["attachments"] = json!([{ "fileName": "a.pdf", "sendersReference": "r" }]);
    let (_, body) = api.initialize(&json_body).await;
    assert_eq!(error_code(&body), Some(1005), "{body}");
    assert!(server.state().attachments().is_empty());
    assert!(server.state().correspondences().is_empty());
}

#[tokio::test]
async fn a_reused_key_on_multipart_is_a_conflict_and_uploads_nothing() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let mut fields = form_fields(&["a.pdf"]);
    fields.push(("IdempotentKey".into(), uuid::Uuid::new_v4().to_string()));
    let (status, body) = api.upload(multipart(&fields, &[("a.pdf", PDF_A)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Even an otherwise invalid request is a conflict: the key is checked first.
    let (status, body) = api.upload(multipart(&fields, &[("other.exe", PDF_B)])).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, Some(1034)), "{body}");
    assert_eq!(server.state().attachments().len(), 1);
    assert_eq!(server.state().correspondences().len(), 1);
    assert_eq!(server.state().multipart_uploads(), 2);
}

#[tokio::test]
async fn a_scan_can_be_made_endless_for_one_file_name_or_for_all() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    server.state().set_malware_scan_ms_for("stuck.pdf", Some(u64::MAX));
    let stuck = api.new_attachment("stuck.pdf", None).await;
    let fine = api.new_attachment("fine.pdf", None).await;
    for id in [&stuck, &fine] {
        assert_eq!(api.upload_attachment(id, PDF_A.to_vec()).await.0, StatusCode::OK);
    }
    let status = |body: Value| body["status"].as_str().unwrap().to_string();
    assert_eq!(status(api.get(&format!("/attachment/{stuck}")).await.1), "UploadProcessing", "never scanned");
    assert_eq!(status(api.get(&format!("/attachment/{fine}")).await.1), "Published", "scanned at the first look");
    let (_, body) = api.initialize(&with_existing(&[&stuck])).await;
    assert_eq!(error_code(&body), Some(1018), "an unscanned file cannot be sent: {body}");

    // Lifted, the next upload of that name scans as usual; the one made before stays stuck.
    server.state().set_malware_scan_ms_for("stuck.pdf", None);
    let again = api.new_attachment("stuck.pdf", None).await;
    assert_eq!(api.upload_attachment(&again, PDF_A.to_vec()).await.0, StatusCode::OK);
    assert_eq!(status(api.get(&format!("/attachment/{again}")).await.1), "Published");
    assert_eq!(status(api.get(&format!("/attachment/{stuck}")).await.1), "UploadProcessing");
    server.state().complete_malware_scans_now();
    assert_eq!(status(api.get(&format!("/attachment/{stuck}/details")).await.1), "Published", "a test may end it");

    // For every file: u64::MAX is taken as never, not wrapped into a scan already done.
    let endless = FakeServer::start(FakeConfig { malware_scan_ms: u64::MAX, ..config() }).await;
    let api = Api::new(&endless).await;
    let id = api.new_attachment("any.pdf", None).await;
    let (code, overview) = api.upload_attachment(&id, PDF_A.to_vec()).await;
    assert_eq!((code, status(overview)), (StatusCode::OK, "UploadProcessing".to_string()));
    assert_eq!(status(api.get(&format!("/attachment/{id}")).await.1), "UploadProcessing");
}

#[tokio::test]
async fn an_uploaded_attachment_is_used_once_published() {
    let server = FakeServer::start(FakeConfig { malware_scan_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let id = api.new_attachment("report.pdf", Some(md5_hex(PDF_A))).await;
    let (_, overview) = api.get(&format!("/attachment/{id}")).await;
    assert_eq!(overview["status"], "Initialized");

    let (status, overview) = api.upload_attachment(&id, PDF_A.to_vec()).await;
    assert_eq!((status, &overview["status"]), (StatusCode::OK, &json!("UploadProcessing")), "{overview}");
    let (status, body) = api.upload_attachment(&id, PDF_A.to_vec()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(2005)), "one-shot");
    let (_, body) = api.initialize(&with_existing(&[&id])).await;
    assert_eq!(error_code(&body), Some(1018), "not yet scanned: {body}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let (_, body) = api.initialize(&with_existing(&[&unknown])).await;
    assert_eq!(error_code(&body), Some(1007), "{body}");

    server.state().complete_malware_scans_now();
    let (_, details) = api.get(&format!("/attachment/{id}/details")).await;
    assert_eq!(details["status"], "Published");
    let history: Vec<&str> =
        details["statusHistory"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["Initialized", "UploadProcessing", "Published"]);
    let (status, body) = api.initialize(&with_existing(&[&id])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correspondences"][0]["status"], "ReadyForPublish");
    assert_eq!(body["attachmentIds"], json!([id]));
    let correspondence = body["correspondences"][0]["correspondenceId"].clone();
    let (_, overview) = api.get(&format!("/attachment/{id}")).await;
    assert_eq!(overview["correspondenceIds"], json!([correspondence]));

    let request = api.http.delete(format!("{}/attachment/{id}", api.base));
    let (status, body) = api.send(request).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(2007)), "{body}");
    let unlinked = api.new_attachment("notes.txt", None).await;
    let (status, body) = api.send(api.http.delete(format!("{}/attachment/{unlinked}", api.base))).await;
    assert_eq!((status, body), (StatusCode::OK, Value::Null));
    let stored = server.state().attachments();
    assert_eq!((stored[0].upload_attempts, stored[1].status.as_str()), (2, "Purged"));
    assert_eq!((server.state().attachment_inits(), server.state().attachment_uploads()), (2, 2));
}

#[tokio::test]
async fn uploads_are_streamed_and_checked() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    let large: Vec<u8> = (0..LARGE_BYTES).map(|i| (i % 251) as u8).collect();
    let id = api.new_attachment("large.zip", None).await;
    let (status, body) = api.upload_attachment(&id, large.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = &server.state().attachments()[0];
    assert_eq!((stored.size, stored.md5.clone()), (LARGE_BYTES as u64, Some(md5_hex(&large))));
    assert_eq!(stored.bytes, None, "only small files are kept");

    let wrong = api.new_attachment("a.pdf", Some(md5_hex(b"other"))).await;
    let (status, body) = api.upload_attachment(&wrong, PDF_A.to_vec()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(2008)), "{body}");
    let (_, overview) = api.get(&format!("/attachment/{wrong}")).await;
    assert_eq!(overview["status"], "Failed");
    let empty = api.new_attachment("b.pdf", None).await;
    let (status, body) = api.upload_attachment(&empty, Vec::new()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(2004)), "{body}");
    let (status, body) = api.upload_attachment(&uuid::Uuid::new_v4().to_string(), PDF_A.to_vec()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, Some(2001)), "{body}");
    let body = json!({ "resourceId": RESOURCE, "fileName": "NUL.pdf", "sendersReference": "att" });
    let (_, answer) = api.send(api.http.post(format!("{}/attachment", api.base)).json(&body)).await;
    assert_eq!(error_code(&answer), Some(2021), "{answer}");
}

#[tokio::test]
async fn an_infected_file_fails_its_attachment_and_the_correspondence_using_it() {
    let server = FakeServer::start(FakeConfig { malware_scan_ms: 3_600_000, ..config() }).await;
    let api = Api::new(&server).await;
    let infected = format!("header {EICAR} trailer").into_bytes();
    let id = api.new_attachment("virus.txt", None).await;
    let (status, _) = api.upload_attachment(&id, infected.clone()).await;
    assert_eq!(status, StatusCode::OK, "the scan is asynchronous");
    let (status, body) = api.upload(multipart(&form_fields(&["virus.txt"]), &[("virus.txt", &infected)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let correspondence = body["correspondences"][0]["correspondenceId"].as_str().unwrap().to_string();

    server.state().complete_malware_scans_now();
    let (_, overview) = api.get(&format!("/attachment/{id}")).await;
    assert_eq!(overview["status"], "Failed");
    assert!(overview["statusText"].as_str().unwrap().starts_with("Malware scan failed: "), "{overview}");
    let (_, body) = api.initialize(&with_existing(&[&id])).await;
    assert_eq!(error_code(&body), Some(1018));
    let (_, overview) = api.get(&format!("/correspondence/{correspondence}")).await;
    assert_eq!(overview["status"], "Failed");
    assert!(overview["statusText"].as_str().unwrap().starts_with("Malware scan failed: "), "{overview}");
    assert!(server.state().attachments().iter().all(|a| a.status == "Failed"));
}

#[tokio::test]
async fn faults_can_be_injected_on_the_attachment_endpoints() {
    let server = FakeServer::start(config()).await;
    let api = Api::new(&server).await;
    server.faults().add(FaultRule::times(Endpoint::Upload, FaultKind::Status(503), 1));
    let (status, _) = api.upload(multipart(&form_fields(&["a.pdf"]), &[("a.pdf", PDF_A)])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.state().multipart_uploads(), 0, "the handler never ran");

    server.faults().add(FaultRule::times(Endpoint::AttachmentInit, FaultKind::Status(500), 1));
    let (status, _) = api.send(api.http.post(format!("{}/attachment", api.base)).json(&json!({}))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let id = api.new_attachment("a.pdf", None).await;
    server.faults().add(FaultRule::times(Endpoint::AttachmentUpload, FaultKind::CommitThenDrop, 1));
    let url = format!("{}/attachment/{id}/upload", api.base);
    let result = async {
        let request = api.http.post(&url).bearer_auth(&api.token).header("content-type", "application/octet-stream");
        request.body(PDF_A.to_vec()).send().await?.text().await
    }
    .await;
    assert!(result.is_err(), "{result:?}");
    let (status, body) = api.upload_attachment(&id, PDF_A.to_vec()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, Some(2005)), "the lost upload counted");

    server.faults().add(FaultRule::times(
        Endpoint::AttachmentStatus,
        FaultKind::TooManyRequests { retry_after_s: 1 },
        1,
    ));
    let (status, _) = api.get(&format!("/attachment/{id}/details")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (_, overview) = api.get(&format!("/attachment/{id}")).await;
    assert_eq!(overview["status"], "Published");
    assert_eq!(server.faults().injected(), 4);
}

#[tokio::test]
async fn a_denied_resource_is_refused_with_4001_on_initialize_and_on_the_search_until_allowed() {
    let server = FakeServer::start(FakeConfig { unknown_resources: vec!["ghost".into()], ..config() }).await;
    let api = Api::new(&server).await;
    let search = |resource: &str| format!("/correspondence?resourceId={resource}&role=Sender");
    let (status, body) = api.get(&search(RESOURCE)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "ids": [] })));

    server.access().deny_resource(&format!("urn:altinn:resource:{RESOURCE}"));
    let (status, body) = api.initialize(&message(&[ORG], None)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, Some(4001)), "{body}");
    assert_eq!(body["code"], "CORR-04001");
    assert!(body["detail"].as_str().unwrap().contains("access to the resource"), "{body}");
    // Altinn Authorization is asked before the content rules: a bad title changes nothing.
    let mut bad = message(&[ORG], None);
    bad["correspondence"]["content"]["messageTitle"] = json!("<b>x</b>");
    assert_eq!(error_code(&api.initialize(&bad).await.1), Some(4001));
    for role in ["Sender", "Recipient"] {
        let (status, body) = api.get(&format!("/correspondence?resourceId={RESOURCE}&role={role}")).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, Some(4001)), "{role}: {body}");
    }
    // An unknown resource: 1036 on initialize, but the search's access check finds no owner.
    let mut ghost = message(&[ORG], None);
    ghost["correspondence"]["resourceId"] = json!("ghost");
    assert_eq!(error_code(&api.initialize(&ghost).await.1), Some(1036));
    assert_eq!(error_code(&api.get(&search("ghost")).await.1), Some(4001));
    assert!(server.state().correspondences().is_empty(), "nothing was created");

    server.access().allow_resource(RESOURCE);
    let (status, body) = api.initialize(&message(&[ORG], None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get(&search(RESOURCE)).await;
    assert_eq!((status, body["ids"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn the_resource_registry_answers_a_public_read_of_each_resource() {
    let server = FakeServer::start(FakeConfig { unknown_resources: vec!["ghost".into()], ..config() }).await;
    let url = |id: &str| format!("{}/resourceregistry/api/v1/resource/{id}", server.base_url());
    let known = reqwest::get(url(RESOURCE)).await.unwrap();
    assert_eq!(known.status(), StatusCode::OK, "no token needed");
    let body: Value = known.json().await.unwrap();
    assert_eq!(
        (body["identifier"].as_str(), body["resourceType"].as_str()),
        (Some(RESOURCE), Some("CorrespondenceService"))
    );
    assert_eq!(reqwest::get(url("ghost")).await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_withheld_scope_is_missing_from_every_token_until_granted_and_then_carried_by_new_ones() {
    let write = "altinn:correspondence.write";
    let server = FakeServer::start(FakeConfig { withheld_scopes: vec![write.into()], ..config() }).await;
    let (status, body) = post_grant(&server, &grant(&server, json!({}))).await;
    assert_eq!((status, body["scope"].as_str()), (StatusCode::OK, Some("altinn:serviceowner")), "{body}");
    let old = Api::new(&server).await;
    let (status, body) = old.initialize(&message(&[ORG], None)).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, json!("")), "the scope policy's empty 403");

    server.access().grant_scope(write);
    assert_eq!(old.initialize(&message(&[ORG], None)).await.0, StatusCode::FORBIDDEN, "a token issued before");
    let new = Api::new(&server).await;
    let (status, body) = new.initialize(&message(&[ORG], None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.access().withhold_scope(write);
    assert_eq!(Api::new(&server).await.initialize(&message(&[ORG], None)).await.0, StatusCode::FORBIDDEN);
}
