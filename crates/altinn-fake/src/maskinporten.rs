//! Fake Maskinporten: `POST /token` with the JWT-bearer grant and the RFC 8414 metadata.
//!
//! Every rule Maskinporten sets for a JWT grant is enforced, because each one has bitten
//! real integrations: `aud` is the issuer with its trailing slash, `exp - iat <= 120`, `iat`
//! within ±10 s, single-use `jti`, only documented claims, only registered keys and scopes.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

use super::auth::sign;
use super::problem::json_response;
use super::state::bump;
use super::App;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The claims Maskinporten documents for a grant; anything else is "Invalid assertion".
const ALLOWED_CLAIMS: [&str; 11] = [
    "aud",
    "iss",
    "scope",
    "iat",
    "exp",
    "jti",
    "resource",
    "consumer_org",
    "iss_onbehalfof",
    "pid",
    "authorization_details",
];
/// Maskinporten's limits on a grant's lifetime and on clock difference.
const MAX_GRANT_LIFETIME_S: i64 = 120;
const MAX_IAT_SKEW_S: i64 = 10;
/// The organisation every fake client belongs to (Digdir's number, as in Altinn's examples).
pub(crate) const CONSUMER_ORG: &str = "991825827";

/// An OAuth error answer: 400 `{"error", "error_description"}`.
#[derive(Debug)]
struct OAuthError {
    error: &'static str,
    description: String,
}

fn reject(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError { error, description: description.into() }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        json_response(400, &body)
    }
}

pub(crate) async fn well_known(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "issuer": app.issuer(),
        "token_endpoint": format!("{}/token", app.base_url),
        "grant_types_supported": [JWT_BEARER],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
    }))
}

pub(crate) async fn token(
    State(app): State<Arc<App>>,
    form: Result<Form<Map<String, Value>>, FormRejection>,
) -> Response {
    let result = match form {
        Ok(Form(fields)) => grant(&app, &fields),
        Err(e) => Err(reject("invalid_request", format!("MP-011 Invalid request: {e}"))),
    };
    match result {
        Ok(body) => {
            bump(&app.state.grants_accepted);
            Json(body).into_response()
        }
        Err(e) => {
            tracing::info!(error = e.error, description = %e.description, "grant rejected");
            bump(&app.state.grants_rejected);
            e.into_response()
        }
    }
}

/// Checks a grant request and issues a token.
fn grant(app: &App, fields: &Map<String, Value>) -> Result<Value, OAuthError> {
    let field = |name: &str| fields.get(name).and_then(Value::as_str);
    if field("grant_type") != Some(JWT_BEARER) {
        return Err(reject("unsupported_grant_type", "Invalid grant_type"));
    }
    let assertion = field("assertion").ok_or_else(|| reject("invalid_request", "MP-011 Missing assertion"))?;
    app.state.lock().secrets.push(assertion.to_string());
    let claims = verify_assertion(app, assertion)?;
    let client_id = claims["iss"].as_str().unwrap_or_default().to_string();
    let scope = app.access.issued_scope(&check_claims(app, &claims)?);
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    // Recorded only when a token is issued: a grant rejected for another reason was not used.
    if !app.state.lock().used_jtis.insert(jti) {
        return Err(reject("invalid_grant", "MP-012 Grant is used before"));
    }
    let now = app.now().timestamp();
    let lifetime = app.config.maskinporten_token_lifetime_s;
    let access_token = sign(
        app,
        &json!({
            "iss": app.issuer(),
            "client_amr": "private_key_jwt",
            "token_type": "Bearer",
            "client_id": client_id,
            "consumer": { "authority": "iso6523-actorid-upis", "ID": format!("0192:{CONSUMER_ORG}") },
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
        }),
    );
    Ok(json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope,
    }))
}

/// The errors a grant can get, as (OAuth `error`, `error_description`).
type Rejection = (&'static str, &'static str);
const MALFORMED: Rejection = ("invalid_request", "Invalid assertion");
const BAD_ALG: Rejection = ("invalid_grant", "MP-123 Invalid JWT header alg: RS256, RS384 or RS512 only");
const UNKNOWN_CLIENT: Rejection = ("invalid_client", "MP-100 Invalid assertion. Client not found");
const NO_KID: Rejection = ("invalid_grant", "MP-123 Invalid JWT header: kid or x5c required");
const UNKNOWN_KID: Rejection = ("invalid_grant", "MP-120 Invalid assertion. Unknown kid for client");
const BAD_KEY: Rejection = ("invalid_client", "MP-120 Registered key is not a usable RSA key");
const BAD_SIGNATURE: Rejection = ("invalid_grant", "MP-124 Invalid assertion. Signature validation failed");
const BAD_AUD: Rejection = ("invalid_grant", "MP-110 Invalid JWT claim aud: must be the issuer identifier");
const NO_TIMES: Rejection = ("invalid_grant", "MP-130 Invalid assertion. iat and exp are required numbers");
const TOO_LONG: Rejection = ("invalid_grant", "MP-130 The difference between exp and iat must be max 120 seconds");
const BAD_IAT: Rejection = ("invalid_grant", "MP-130 Invalid JWT claim iat: more than 10 s from Maskinporten's clock");
const EXPIRED: Rejection = ("invalid_grant", "MP-130 Invalid assertion. The grant has expired");
const NO_JTI: Rejection = ("invalid_grant", "MP-011 Invalid assertion. jti is required");
const NO_SCOPE: Rejection = ("invalid_scope", "MP-200 Missing scope");

impl From<Rejection> for OAuthError {
    fn from((error, description): Rejection) -> OAuthError {
        reject(error, description)
    }
}

/// Finds the client and its key and checks the signature; returns the claims.
fn verify_assertion(app: &App, assertion: &str) -> Result<Map<String, Value>, OAuthError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| MALFORMED)?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) {
        return Err(BAD_ALG.into());
    }
    let unverified =
        jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(assertion).map_err(|_| MALFORMED)?.claims;
    let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or_default();
    let client = app.config.clients.iter().find(|c| c.client_id == iss).ok_or(UNKNOWN_CLIENT)?;
    let kid = header.kid.ok_or(NO_KID)?;
    let jwk = client.jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"].as_str() == Some(kid.as_str()))
        .ok_or(UNKNOWN_KID)?;
    let component = |name: &str| jwk[name].as_str().unwrap_or_default().to_string();
    let key = DecodingKey::from_rsa_components(&component("n"), &component("e")).map_err(|_| BAD_KEY)?;
    // Only the signature is checked here; claims are checked with the fake's clock.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let verified = jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation);
    Ok(verified.map_err(|_| BAD_SIGNATURE)?.claims)
}

/// Checks the claim set, audience, times, jti and scopes; returns the scope string.
fn check_claims(app: &App, claims: &Map<String, Value>) -> Result<String, OAuthError> {
    if let Some(extra) = claims.keys().find(|k| !ALLOWED_CLAIMS.contains(&k.as_str())) {
        let description = format!("Invalid assertion. Claim not allowed: {extra}");
        return Err(reject("invalid_request", description));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(app.issuer().as_str()) {
        return Err(BAD_AUD.into());
    }
    check_times(app, claims)?;
    if claims.get("jti").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(NO_JTI.into());
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or_default();
    let iss = claims.get("iss").and_then(Value::as_str);
    let client = app.config.clients.iter().find(|c| Some(c.client_id.as_str()) == iss);
    let registered = client.map(|c| c.scopes.as_slice()).unwrap_or_default();
    if scope.split_whitespace().next().is_none() {
        return Err(NO_SCOPE.into());
    }
    if let Some(bad) = scope.split_whitespace().find(|s| !registered.iter().any(|r| r == s)) {
        let description = format!("MP-200 Invalid scope for client: {bad}");
        return Err(reject("invalid_scope", description));
    }
    Ok(scope.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `exp - iat <= 120`, `iat` within ±10 s of the fake's clock, `exp` in the future.
fn check_times(app: &App, claims: &Map<String, Value>) -> Result<(), Rejection> {
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let (Some(iat), Some(exp)) = (number("iat"), number("exp")) else {
        return Err(NO_TIMES);
    };
    let now = app.now().timestamp();
    if exp - iat > MAX_GRANT_LIFETIME_S {
        Err(TOO_LONG)
    } else if (iat - now).abs() > MAX_IAT_SKEW_S {
        Err(BAD_IAT)
    } else if exp <= now {
        Err(EXPIRED)
    } else {
        Ok(())
    }
}
