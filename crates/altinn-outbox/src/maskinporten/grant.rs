//! The JWT-bearer grant that authenticates us to Maskinporten.
//!
//! Building the claims is a pure function of the settings, the clock and a grant id, so
//! the rules Maskinporten enforces can be tested without a clock or a network.

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use uuid::Uuid;

use super::key::SigningKey;

/// Maskinporten rejects a grant whose `exp - iat` exceeds 120 s.
pub const MAX_GRANT_LIFETIME_S: i64 = 120;

/// The claims of one grant: exactly these six, because Maskinporten answers any
/// undocumented claim with 400 "Invalid assertion".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantClaims {
    pub aud: String,
    pub iss: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Builds the claims of a grant issued at `now_unix`.
///
/// - `aud` is Maskinporten's issuer identifier exactly, which always ends in `/`
///   (`https://test.maskinporten.no/`); the token URL or a slash-less issuer is rejected
///   (MP-110), so a missing trailing slash is added here.
/// - `iss` is our client id: the signed assertion is the only client authentication.
/// - `scope` is the space-separated scope list; every scope must be registered on the
///   client, and `altinn:serviceowner` must be among them for the exchange to add
///   `urn:altinn:org`.
/// - `iat` is `now_unix`, which the caller passes as Maskinporten's clock, not blindly the
///   host's: Maskinporten accepts `iat` only within ±10 s of its own clock, so the token
///   client adds the offset it learned from Maskinporten's `Date` header (see
///   [`super::clock`]). That keeps sends going while the host's NTP is being fixed.
/// - `exp` is `iat + lifetime_s`, with the lifetime clamped to `1..=120` s because
///   Maskinporten rejects longer grants and a grant is only used once, immediately.
/// - `jti` is fresh for every request: Maskinporten refuses a reused grant (MP-012), so
///   a retry must build a new grant, never resend an old one.
pub fn grant_claims(
    client_id: &str,
    audience: &str,
    scopes: &str,
    now_unix: i64,
    lifetime_s: i64,
    jti: Uuid,
) -> GrantClaims {
    let aud = if audience.ends_with('/') { audience.to_string() } else { format!("{audience}/") };
    GrantClaims {
        aud,
        iss: client_id.to_string(),
        scope: scopes.to_string(),
        iat: now_unix,
        exp: now_unix + lifetime_s.clamp(1, MAX_GRANT_LIFETIME_S),
        jti,
    }
}

/// The grant could not be signed (practically only with a key jsonwebtoken cannot use).
#[derive(Debug, thiserror::Error)]
#[error("signing the maskinporten grant with key {kid}: {source}")]
pub struct SignError {
    kid: String,
    source: jsonwebtoken::errors::Error,
}

/// Signs the claims with RS256 and a header carrying the key's `kid`, which is how
/// Maskinporten finds the public key registered on the client. `typ: JWT` is what the
/// official .NET clients send.
pub fn sign_grant(key: &SigningKey, claims: &GrantClaims) -> Result<String, SignError> {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".to_string());
    header.kid = Some(key.kid().to_string());
    jsonwebtoken::encode(&header, claims, key.encoding_key())
        .map_err(|source| SignError { kid: key.kid().to_string(), source })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::maskinporten::key::KeySource;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::{Map, Value};
    use std::collections::BTreeSet;
    use std::path::Path;

    const AUD: &str = "https://test.maskinporten.no/";

    pub(crate) fn fixture_key() -> SigningKey {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/test-jwk.json");
        SigningKey::load(&KeySource::JwkFile(path)).unwrap()
    }

    pub(crate) fn fixture_public_key() -> DecodingKey {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/test-jwks-public.json");
        let jwks: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let k = &jwks["keys"][0];
        DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap()).unwrap()
    }

    pub(crate) fn payload(jwt: &str) -> Map<String, Value> {
        let segment = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    fn claims(now: i64, lifetime: i64) -> GrantClaims {
        grant_claims("client-1", AUD, "altinn:serviceowner altinn:correspondence.write", now, lifetime, Uuid::nil())
    }

    #[test]
    fn the_grant_carries_exactly_the_six_documented_claims() {
        let jwt = sign_grant(&fixture_key(), &claims(1_700_000_000, 120)).unwrap();
        let payload = payload(&jwt);
        let keys: BTreeSet<&str> = payload.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["aud", "iss", "scope", "iat", "exp", "jti"]));
        assert_eq!(payload["aud"], AUD);
        assert_eq!(payload["iss"], "client-1");
        assert_eq!(payload["scope"], "altinn:serviceowner altinn:correspondence.write");
        assert_eq!(payload["iat"], 1_700_000_000);
        assert_eq!(payload["exp"], 1_700_000_120);
    }

    #[test]
    fn header_names_the_algorithm_and_the_registered_kid() {
        let jwt = sign_grant(&fixture_key(), &claims(1_700_000_000, 60)).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("outbox-test-key-1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn lifetime_is_clamped_to_maskinportens_limit() {
        for (asked, got) in [(120, 120), (600, 120), (0, 1), (-5, 1), (30, 30)] {
            let c = claims(1_000, asked);
            assert_eq!(c.exp - c.iat, got, "lifetime {asked}");
        }
    }

    #[test]
    fn audience_gets_its_trailing_slash() {
        let c = grant_claims("c", "https://maskinporten.no", "s", 0, 60, Uuid::nil());
        assert_eq!(c.aud, "https://maskinporten.no/");
    }

    #[test]
    fn signature_verifies_with_the_registered_public_key() {
        let now = chrono::Utc::now().timestamp();
        let jwt = sign_grant(&fixture_key(), &claims(now, 120)).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUD]);
        validation.set_issuer(&["client-1"]);
        let decoded = jsonwebtoken::decode::<Value>(&jwt, &fixture_public_key(), &validation).unwrap();
        assert_eq!(decoded.claims["jti"], Uuid::nil().to_string());
    }
}
