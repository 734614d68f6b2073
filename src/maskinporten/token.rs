//! The Altinn token every Correspondence call carries, cached and refreshed one at a time.
//!
//! A refresh signs a fresh grant, trades it at Maskinporten for an access token and
//! trades that at Altinn's exchange endpoint for the Altinn token, which is cached until
//! its own `exp` minus a margin (Correspondence checks lifetimes with zero clock skew).
//! Failures are classified once, in [`super::error`]: [`TokenError::Unavailable`] is worth
//! retrying, [`TokenError::Rejected`] is a configuration problem for an operator. Tokens
//! and grants are secrets: they never appear in errors, logs or `Debug` output.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

pub use super::error::{Step, TokenError};

use super::error::{classify_exchange_failure, classify_maskinporten_failure, transport_error};
use super::grant::{grant_claims, sign_grant};
use super::key::SigningKey;

/// Per-request timeout for both the grant and the exchange. Both answer in well under a
/// second when healthy; ten seconds rides out a slow moment without stalling a batch for
/// long, and a timeout is retried like any other unavailability.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Cache lifetime for an exchanged token whose `exp` we cannot read. The token is
/// officially opaque; a minute keeps refreshes rare without risking an expired token.
const FALLBACK_TOKEN_LIFETIME_S: i64 = 60;
/// The OAuth JWT-bearer grant type (RFC 7523), the only one Maskinporten offers here.
const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Azure API Management's key header; obsolete for service owners, sent only if set.
const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// JWT segments are base64url without padding; tolerate padding from odd issuers.
const JWT_SEGMENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where to get tokens and how; built by the config module.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Maskinporten's token endpoint, e.g. `https://test.maskinporten.no/token`.
    pub token_url: Url,
    /// Maskinporten's issuer identifier, e.g. `https://test.maskinporten.no/`.
    pub audience: String,
    /// The Maskinporten client id (a UUID), sent as the grant's `iss`.
    pub client_id: String,
    /// Space-separated; must include `altinn:serviceowner` for the org claim.
    pub scopes: String,
    /// `{platform}/authentication/api/v1/exchange/maskinporten`.
    pub exchange_url: Url,
    /// Sent as `Ocp-Apim-Subscription-Key` on the exchange only when set and non-empty.
    pub subscription_key: Option<SecretString>,
    /// Grant lifetime in seconds, clamped to 1..=120 (Maskinporten's limit).
    pub grant_lifetime_s: i64,
    /// Refresh this many seconds before the Altinn token's `exp`.
    pub refresh_margin_s: i64,
}

/// An Altinn token: cheap to clone, printed as `AltinnToken(***)`.
#[derive(Clone)]
pub struct AltinnToken(Arc<TokenInner>);

struct TokenInner {
    jwt: SecretString,
    expires_at: DateTime<Utc>,
}

impl AltinnToken {
    fn new(jwt: String, expires_at: DateTime<Utc>) -> Self {
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

    fn same_as(&self, other: &AltinnToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for AltinnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AltinnToken(***)")
    }
}

/// Hands out the cached Altinn token and refreshes it, one refresh at a time.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    settings: TokenSettings,
    key: SigningKey,
    request_timeout: Duration,
    cache: Mutex<Cache>,
    /// Held for the whole refresh, so concurrent callers wait for one refresh instead
    /// of each spending a grant.
    refresh: tokio::sync::Mutex<()>,
    grants_issued: AtomicU64,
    exchanges: AtomicU64,
}

#[derive(Default)]
struct Cache {
    current: Option<AltinnToken>,
    /// Bumped by every refresh attempt, so callers that waited for the refresh lock can
    /// tell that one finished meanwhile and share its outcome.
    generation: u64,
    last_error: Option<TokenError>,
}

impl TokenClient {
    pub fn new(http: reqwest::Client, settings: TokenSettings, key: SigningKey) -> Self {
        Self::with_request_timeout(http, settings, key, DEFAULT_REQUEST_TIMEOUT)
    }

    /// As [`TokenClient::new`] with another per-request timeout (tests use short ones).
    pub fn with_request_timeout(
        http: reqwest::Client,
        settings: TokenSettings,
        key: SigningKey,
        request_timeout: Duration,
    ) -> Self {
        let inner = Inner {
            http,
            settings,
            key,
            request_timeout,
            cache: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
            grants_issued: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
        };
        TokenClient { inner: Arc::new(inner) }
    }

    /// The cached token if it is valid for more than the margin, else a fresh one.
    /// Callers that waited while another refreshed get that refresh's result, token or
    /// error, so a stampede of callers costs one grant.
    pub async fn token(&self) -> Result<AltinnToken, TokenError> {
        let margin = self.inner.settings.refresh_margin_s;
        let seen_generation = {
            let cache = self.lock_cache();
            match &cache.current {
                Some(token) if token.is_fresh(Utc::now(), margin) => return Ok(token.clone()),
                _ => cache.generation,
            }
        };
        let _refreshing = self.inner.refresh.lock().await;
        {
            let cache = self.lock_cache();
            if cache.generation != seen_generation {
                if let Some(error) = &cache.last_error {
                    return Err(error.clone());
                }
            }
            // Even a token inside the margin is fine for a waiter if it was just
            // fetched: refreshing again would return one no fresher.
            if let Some(token) = &cache.current {
                let usable_margin = if cache.generation != seen_generation { 0 } else { margin };
                if token.is_fresh(Utc::now(), usable_margin) {
                    return Ok(token.clone());
                }
            }
        }
        let result = self.refresh().await;
        let mut cache = self.lock_cache();
        cache.generation += 1;
        match &result {
            Ok(token) => {
                cache.current = Some(token.clone());
                cache.last_error = None;
            }
            Err(error) => cache.last_error = Some(error.clone()),
        }
        result
    }

    /// Drops the cached token after Altinn rejected `rejected`, unless it has already
    /// been replaced: fifty requests failing with the same token cause one refresh.
    pub fn invalidate(&self, rejected: &AltinnToken) {
        let mut cache = self.lock_cache();
        if cache.current.as_ref().is_some_and(|current| current.same_as(rejected)) {
            cache.current = None;
            tracing::debug!(kid = %self.inner.key.kid(), "altinn token invalidated after a rejection");
        }
    }

    /// Grants signed so far (each is a Maskinporten token request).
    pub fn grants_issued(&self) -> u64 {
        self.inner.grants_issued.load(Ordering::Relaxed)
    }

    /// Exchange requests sent so far.
    pub fn exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Every write leaves the cache consistent, so a panic elsewhere cannot corrupt it.
        self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn refresh(&self) -> Result<AltinnToken, TokenError> {
        let kid = self.inner.key.kid();
        tracing::debug!(%kid, "refreshing altinn token");
        let maskinporten_token = self.maskinporten_token().await?;
        let token = self.exchange(&maskinporten_token).await?;
        let lifetime_s = (token.expires_at() - Utc::now()).num_seconds();
        if lifetime_s <= self.inner.settings.refresh_margin_s {
            tracing::warn!(%kid, lifetime_s, margin_s = self.inner.settings.refresh_margin_s,
                "altinn token lives no longer than the refresh margin; every call will refresh");
        } else {
            tracing::debug!(%kid, lifetime_s, "altinn token refreshed");
        }
        Ok(token)
    }

    /// Signs a new grant. The `jti` is a fresh v4 UUID because it is a grant id that
    /// Maskinporten refuses to see twice (MP-012), not an idempotency key.
    fn build_grant(&self, now: DateTime<Utc>) -> Result<String, TokenError> {
        let s = &self.inner.settings;
        let claims =
            grant_claims(&s.client_id, &s.audience, &s.scopes, now.timestamp(), s.grant_lifetime_s, Uuid::new_v4());
        sign_grant(&self.inner.key, &claims).map_err(|e| TokenError::Rejected {
            step: Step::Grant,
            error: "signing_failed".to_string(),
            description: e.to_string(),
        })
    }

    async fn maskinporten_token(&self) -> Result<SecretString, TokenError> {
        let grant = self.build_grant(Utc::now())?;
        self.inner.grants_issued.fetch_add(1, Ordering::Relaxed);
        let form = [("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", grant.as_str())];
        let request = self
            .inner
            .http
            .post(self.inner.settings.token_url.clone())
            .timeout(self.inner.request_timeout)
            .header(ACCEPT, "application/json")
            .form(&form);
        let (status, body) = send(request, Step::Maskinporten).await?;
        if !status.is_success() {
            return Err(classify_maskinporten_failure(status, &body));
        }
        access_token(&body).ok_or_else(|| TokenError::Unavailable {
            step: Step::Maskinporten,
            status: None,
            message: "token response has no access_token".to_string(),
        })
    }

    async fn exchange(&self, maskinporten_token: &SecretString) -> Result<AltinnToken, TokenError> {
        self.inner.exchanges.fetch_add(1, Ordering::Relaxed);
        // text/plain: with a JSON Accept header the exchange quotes the token.
        let mut request = self
            .inner
            .http
            .get(self.inner.settings.exchange_url.clone())
            .timeout(self.inner.request_timeout)
            .bearer_auth(maskinporten_token.expose_secret())
            .header(ACCEPT, "text/plain");
        if let Some(key) = self.subscription_key()? {
            request = request.header(SUBSCRIPTION_KEY_HEADER, key);
        }
        let (status, body) = send(request, Step::Exchange).await?;
        if !status.is_success() {
            return Err(classify_exchange_failure(status));
        }
        let text = String::from_utf8_lossy(&body);
        exchanged_token(&text, Utc::now()).ok_or_else(|| TokenError::Unavailable {
            step: Step::Exchange,
            status: None,
            message: "exchange answered with an empty body".to_string(),
        })
    }

    fn subscription_key(&self) -> Result<Option<HeaderValue>, TokenError> {
        let Some(key) = &self.inner.settings.subscription_key else {
            return Ok(None);
        };
        let key = key.expose_secret().trim();
        if key.is_empty() {
            return Ok(None);
        }
        let mut value = HeaderValue::from_str(key).map_err(|_| TokenError::Rejected {
            step: Step::Exchange,
            error: "invalid_subscription_key".to_string(),
            description: "the subscription key is not a valid HTTP header value".to_string(),
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// Sends a request and reads its body; transport failures are always retryable.
async fn send(request: reqwest::RequestBuilder, step: Step) -> Result<(StatusCode, bytes::Bytes), TokenError> {
    let response: Response = request.send().await.map_err(|e| transport_error(step, &e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| transport_error(step, &e))?;
    Ok((status, body))
}

/// The `access_token` of a token response. The other members (`token_type`,
/// `expires_in`, `scope`) are optional: Maskinporten calls `scope` "for convenience".
fn access_token(body: &[u8]) -> Option<SecretString> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let token = value.get("access_token")?.as_str()?.trim();
    (!token.is_empty()).then(|| SecretString::from(token.to_string()))
}

/// The exchanged token from the exchange's body: raw text, or a JSON-quoted string if a
/// proxy negotiated JSON. Expires at its `exp`, or a minute from `now` without one.
fn exchanged_token(body: &str, now: DateTime<Utc>) -> Option<AltinnToken> {
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
#[path = "token_tests.rs"]
mod tests;
