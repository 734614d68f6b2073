//! The Altinn token exchange and the checks in front of every Correspondence call.
//!
//! Failure shapes follow the real servers exactly: the exchange answers every failure with an
//! empty 401; Correspondence answers a bad or expired token (zero clock skew) with an empty
//! 401 and `WWW-Authenticate: Bearer`, a token without the scope of the endpoint's policy or
//! without the service-owner org claim with an empty 403. The policies are the real ones: Sender (initialize, attachments) wants the write
//! scope; SenderOrRecipient (search, overview, details, purge) the write or the read scope.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

use super::problem::{empty, json_response};
use super::state::bump;
use super::App;

/// altinn-authentication validates Maskinporten tokens with 10 s of clock skew.
const EXCHANGE_SKEW_S: i64 = 10;
const WRITE_SCOPE: &str = "altinn:correspondence.write";
const READ_SCOPE: &str = "altinn:correspondence.read";
const SERVICE_OWNER_SCOPE: &str = "altinn:serviceowner";
/// The service-owner code of [`super::maskinporten::CONSUMER_ORG`].
const ORG_CODE: &str = "digdir";
const SUBSCRIPTION_HEADER: &str = "ocp-apim-subscription-key";

/// Signs claims with the fake's secret (HS256): clients treat tokens as opaque.
/// Every token issued is kept, so tests can prove none of them reaches a log.
pub(crate) fn sign(app: &App, claims: &Value) -> String {
    let key = EncodingKey::from_secret(&app.secret);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .expect("HS256 signing of a JSON object cannot fail");
    app.state.lock().secrets.push(token.clone());
    token
}

/// Checks a token's signature and issuer; lifetime is left to the caller's clock rules.
fn verify(app: &App, token: &str, issuer: &str) -> Option<Map<String, Value>> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let key = DecodingKey::from_secret(&app.secret);
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).ok()?.claims;
    (claims.get("iss").and_then(Value::as_str) == Some(issuer)).then_some(claims)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The API-Management gateway's answer when the subscription key is missing or wrong.
pub(crate) fn subscription_key_refusal(app: &App, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &app.config.subscription_key else {
        return None;
    };
    let message = match headers.get(SUBSCRIPTION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(given) if given == expected => return None,
        Some(_) => "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
        None => "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
    };
    let body = json!({ "statusCode": 401, "message": message });
    Some(json_response(401, &body))
}

fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .any(|v| v == wanted)
}

fn has_accept(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| !v.as_bytes().trim_ascii().is_empty())
}

/// `GET /authentication/api/v1/exchange/{provider}`: Maskinporten token in, Altinn token out.
pub(crate) async fn exchange(
    State(app): State<Arc<App>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
) -> Response {
    bump(&app.state.exchanges);
    if let Some(response) = subscription_key_refusal(&app, &headers) {
        return response;
    }
    if !provider.eq_ignore_ascii_case("maskinporten") {
        return (StatusCode::BAD_REQUEST, "Invalid token provider").into_response();
    }
    let Some(token) = exchanged_token(&app, &headers) else {
        tracing::info!("exchange rejected");
        return empty(401);
    };
    // ASP.NET content negotiation for a string: JSON-quoted only when JSON alone is asked for.
    let json_only =
        accepts(&headers, "application/json") && !accepts(&headers, "text/plain") && !accepts(&headers, "*/*");
    if json_only {
        return json_response(200, &json!(token));
    }
    let mut response = token.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Verifies the Maskinporten token and builds the Altinn token, as altinn-authentication does.
fn exchanged_token(app: &App, headers: &HeaderMap) -> Option<String> {
    let mut claims = verify(app, bearer(headers)?, &app.issuer())?;
    let now = app.now().timestamp();
    if claims.get("exp").and_then(Value::as_i64)? + EXCHANGE_SKEW_S < now {
        return None;
    }
    let consumer = claims.get("consumer")?.get("ID")?.as_str()?;
    let org_number = consumer.split_once(':')?.1.to_string();
    for removed in ["aud", "iss", "client_amr", "sid"] {
        claims.remove(removed);
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or_default();
    // A substring match, exactly like the real exchange.
    if scope.contains(SERVICE_OWNER_SCOPE) {
        claims.insert("urn:altinn:org".into(), json!(ORG_CODE));
    }
    let added = json!({
        "urn:altinn:orgNumber": org_number,
        "urn:altinn:authenticatemethod": "maskinporten",
        "urn:altinn:authlevel": 3,
        "iss": app.altinn_issuer(),
        "sid": uuid::Uuid::new_v4().to_string(),
        "iat": now,
        "exp": now + app.config.altinn_token_lifetime_s,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    claims.extend(added.as_object()?.clone());
    Some(sign(app, &Value::Object(claims)))
}

/// Gateway, Accept and bearer checks in front of every Correspondence endpoint.
pub(crate) async fn require_altinn_token(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(response) = subscription_key_refusal(&app, headers) {
        return response;
    }
    let acceptable =
        !has_accept(headers) || ["application/json", "application/*", "*/*"].iter().any(|t| accepts(headers, t));
    if !acceptable {
        let text = "Not Acceptable: this endpoint produces application/json";
        return (StatusCode::NOT_ACCEPTABLE, text).into_response();
    }
    // Everything but a POST and the attachment endpoints is SenderOrRecipient.
    let path = request.uri().path();
    let sender_only = request.method() == axum::http::Method::POST || path.contains("/attachment");
    let scopes: &[&str] = if sender_only { &[WRITE_SCOPE] } else { &[WRITE_SCOPE, READ_SCOPE] };
    if let Err(refusal) = check_altinn_token(&app, headers, scopes) {
        tracing::info!("correspondence call refused by the bearer check");
        return refusal.into_response();
    }
    next.run(request).await
}

/// Why the bearer check refused a Correspondence call.
enum Refusal {
    /// 401, empty body, `WWW-Authenticate: Bearer`.
    Unauthenticated,
    /// 403, empty body: valid token without the write scope or the org claim.
    Forbidden,
    /// 403 ProblemDetails: a Maskinporten token that was never exchanged.
    RawMaskinportenToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated => {
                let mut response = empty(401);
                let bearer = HeaderValue::from_static("Bearer");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, bearer);
                response
            }
            Refusal::Forbidden => empty(403),
            Refusal::RawMaskinportenToken => raw_maskinporten_token(),
        }
    }
}

/// The worker sends one token on every call until it nears expiry, so the fake remembers the
/// last token it verified: the signature check (HMAC, base64, a JSON parse) per call was a
/// visible share of the benchmark's CPU, which the fake shares with the worker. Lifetime,
/// scope and org are still checked on every call.
#[derive(Default)]
pub(crate) struct CheckedToken(std::sync::Mutex<Option<(String, Claims)>>);

pub(crate) type Claims = Arc<Map<String, Value>>;

impl CheckedToken {
    fn claims(&self, app: &App, token: &str) -> Result<Claims, Refusal> {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, claims)) = last.as_ref().filter(|(known, _)| known == token) {
            return Ok(claims.clone());
        }
        let Some(claims) = verify(app, token, &app.altinn_issuer()) else {
            if verify(app, token, &app.issuer()).is_some() {
                return Err(Refusal::RawMaskinportenToken);
            }
            return Err(Refusal::Unauthenticated);
        };
        let claims = Arc::new(claims);
        *last = Some((token.to_string(), claims.clone()));
        Ok(claims)
    }
}

/// The bearer check: a valid, unexpired Altinn token with one of `scopes` and the org claim.
fn check_altinn_token(app: &App, headers: &HeaderMap, scopes: &[&str]) -> Result<(), Refusal> {
    let token = bearer(headers).ok_or(Refusal::Unauthenticated)?;
    let claims = app.checked_token.claims(app, token)?;
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(Refusal::Unauthenticated)?;
    // Zero clock skew, as the Correspondence API validates lifetimes outside Development.
    if exp <= app.now().timestamp() {
        return Err(Refusal::Unauthenticated);
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or_default();
    let has_scope = scope.split_whitespace().any(|s| scopes.contains(&s));
    if !has_scope || claims.get("urn:altinn:org").is_none() {
        return Err(Refusal::Forbidden);
    }
    Ok(())
}

/// The claims of a valid, unexpired Altinn token, as Altinn Events' JwtCookie scheme checks
/// it: the signature (which a raw Maskinporten token fails, signed by another key; here told
/// apart by its issuer) and the lifetime with zero clock skew. Scope and claims are left to
/// the caller. None: Events answers an empty 401.
pub(crate) fn altinn_token_claims(app: &App, headers: &HeaderMap) -> Option<Claims> {
    let claims = app.checked_token.claims(app, bearer(headers)?).ok()?;
    let exp = claims.get("exp").and_then(Value::as_i64)?;
    (exp > app.now().timestamp()).then_some(claims)
}

/// The real API's answer to an unexchanged Maskinporten token (AltinnTokenEventsHelper.cs):
/// the fake's issuer is not `maskinporten.no`, so the issuer check fails as it would there.
fn raw_maskinporten_token() -> Response {
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.4",
        "title": "IDX10205: Issuer validation failed",
        "status": 403,
        "detail": "Maskinporten token is not valid. Exchange to Altinn token and try again.",
    });
    let mut response = json_response(403, &body);
    let problem = HeaderValue::from_static("application/problem+json");
    response.headers_mut().insert(header::CONTENT_TYPE, problem);
    response
}
