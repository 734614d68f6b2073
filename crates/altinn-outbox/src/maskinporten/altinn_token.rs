//! The Altinn token value, and reading the answers that carry tokens.
//!
//! Both tokens are officially opaque, so only what the cache needs is read: the
//! `access_token` member of Maskinporten's answer, and the exchanged token's `exp`, read
//! without verification to know when to refresh. The token value is a secret: it is shown
//! only by [`AltinnToken::expose`], for the `Authorization` header.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Cache lifetime for an exchanged token whose `exp` we cannot read. The token is
/// officially opaque; a minute keeps refreshes rare without risking an expired token.
const FALLBACK_TOKEN_LIFETIME_S: i64 = 60;
/// JWT segments are base64url without padding; tolerate padding from odd issuers.
const JWT_SEGMENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An Altinn token: cheap to clone, printed as `AltinnToken(***)`.
#[derive(Clone)]
pub struct AltinnToken(Arc<TokenInner>);

struct TokenInner {
    jwt: SecretString,
    expires_at: DateTime<Utc>,
}

impl AltinnToken {
    pub(super) fn new(jwt: String, expires_at: DateTime<Utc>) -> Self {
        AltinnToken(Arc::new(TokenInner { jwt: jwt.into(), expires_at }))
    }

    /// The bearer value; only for the `Authorization` header.
    pub fn expose(&self) -> &str {
        self.0.jwt.expose_secret()
    }

    /// The token's own `exp`, or a minute after it was fetched when it has none.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    /// Whether the token may still be handed out at `now`, leaving `margin_s` for the
    /// request to reach Altinn, which tolerates no clock skew.
    pub fn is_fresh(&self, now: DateTime<Utc>, margin_s: i64) -> bool {
        now + TimeDelta::seconds(margin_s) < self.0.expires_at
    }

    pub(super) fn same_as(&self, other: &AltinnToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for AltinnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AltinnToken(***)")
    }
}

/// The `access_token` of a token response. The other members (`token_type`,
/// `expires_in`, `scope`) are optional: Maskinporten calls `scope` "for convenience".
pub(super) fn access_token(body: &[u8]) -> Option<SecretString> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let token = value.get("access_token")?.as_str()?.trim();
    (!token.is_empty()).then(|| SecretString::from(token.to_string()))
}

/// The exchanged token from the exchange's body: raw text, or a JSON-quoted string if a
/// proxy negotiated JSON. Expires at its `exp`, or a minute from `now` without one.
pub(super) fn exchanged_token(body: &str, now: DateTime<Utc>) -> Option<AltinnToken> {
    let trimmed = body.trim();
    let unquoted = trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(trimmed).trim();
    if unquoted.is_empty() {
        return None;
    }
    let expires_at = jwt_exp(unquoted)
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .unwrap_or(now + TimeDelta::seconds(FALLBACK_TOKEN_LIFETIME_S));
    Some(AltinnToken::new(unquoted.to_string(), expires_at))
}

/// The `exp` claim of a JWT, read without verification: only to know when to refresh.
fn jwt_exp(jwt: &str) -> Option<i64> {
    let payload = JWT_SEGMENT.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    let exp = claims.get("exp")?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A JWT-shaped token whose payload says when it expires.
    fn jwt_with_exp(exp: i64) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"n":1,"exp":{exp}}}"#));
        format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
    }

    #[test]
    fn exchanged_tokens_fall_back_to_a_minute_without_exp() {
        let now = Utc::now();
        let opaque = exchanged_token("  opaque-token \n", now).unwrap();
        assert_eq!(opaque.expose(), "opaque-token");
        assert_eq!(opaque.expires_at(), now + TimeDelta::seconds(FALLBACK_TOKEN_LIFETIME_S));
        assert!(exchanged_token(" \"\" ", now).is_none());
        assert_eq!(jwt_exp(&jwt_with_exp(1_900_000_000)), Some(1_900_000_000));
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }
}
