//! The Altinn token every Correspondence call carries, cached and refreshed one at a time.
//!
//! A refresh signs a fresh grant, trades it at Maskinporten for an access token and
//! trades that at Altinn's exchange endpoint for the Altinn token, which is cached until
//! its own `exp` minus a margin (Correspondence checks lifetimes with zero clock skew).
//! Failures are classified once, in [`super::error`]: [`TokenError::Unavailable`] is worth
//! retrying, [`TokenError::Rejected`] is a configuration problem for an operator. After a
//! failure callers get that error without a request for a cool-down ([`super::health`]),
//! and [`TokenClient::status`] reports how refreshes are going. Grants are signed on
//! Maskinporten's clock as learned from its `Date` header ([`super::clock`]), and a grant
//! refused as skewed is re-signed once with the corrected `iat`. Tokens and grants are
//! secrets: they never appear in errors, logs or `Debug` output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

pub use super::altinn_token::AltinnToken;
pub use super::error::{Step, TokenError};

use super::altinn_token::{access_token, exchanged_token};
use super::clock::{blame_skew, measured_offset_s, server_date, suggests_skew, ClockOffset};
use super::error::{classify_exchange_failure, classify_maskinporten_failure, transport_error};
use super::grant::{grant_claims, sign_grant};
use super::health::{AuthStatus, Health};
use super::key::SigningKey;
use crate::backoff::Doubling;
use crate::codes::TokenReason;
use crate::metrics::{self, System};

/// Per-request timeout for both the grant and the exchange. Both answer in well under a
/// second when healthy; ten seconds rides out a slow moment without stalling a batch for
/// long, and a timeout is retried like any other unavailability.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The OAuth JWT-bearer grant type (RFC 7523), the only one Maskinporten offers here.
const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Azure API Management's key header; obsolete for service owners, sent only if set.
const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
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
    /// Cool-down after the first of consecutive failed refreshes; zero for none.
    pub failure_backoff_first: Duration,
    /// The cool-down doubles per further failure up to this.
    pub failure_backoff_max: Duration,
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
    /// Maskinporten's clock minus ours, learned from its answers.
    clock: ClockOffset,
}

#[derive(Default)]
struct Cache {
    current: Option<AltinnToken>,
    /// Bumped by every refresh attempt, so callers that waited for the refresh lock can
    /// tell that one finished meanwhile and share its outcome.
    generation: u64,
    /// The last refresh's error, the cool-down and the status.
    health: Health,
}

/// One answer: its status, its body and the server's clock if it stated one.
struct Reply {
    status: StatusCode,
    body: bytes::Bytes,
    /// Server clock minus host clock when the answer arrived, from its `Date` header.
    measured_offset_s: Option<i64>,
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
            clock: ClockOffset::default(),
        };
        TokenClient { inner: Arc::new(inner) }
    }

    /// The cached token if it is valid for more than the margin, else a fresh one.
    /// Callers that waited while another refreshed get that refresh's result, token or
    /// error, so a stampede of callers costs one grant; within the cool-down after a
    /// failed refresh, callers get its error without any request.
    pub async fn token(&self) -> Result<AltinnToken, TokenError> {
        let margin = self.inner.settings.refresh_margin_s;
        let seen_generation = {
            let cache = self.lock_cache();
            if let Some(token) = cache.current.as_ref().filter(|t| t.is_fresh(self.server_now(), margin)) {
                return Ok(token.clone());
            }
            if let Some(error) = cache.health.cooling_error(Instant::now()) {
                return Err(error.clone());
            }
            cache.generation
        };
        let _refreshing = self.inner.refresh.lock().await;
        if let Some(outcome) = self.outcome_since(seen_generation, margin) {
            return outcome;
        }
        let result = self.refresh().await;
        self.record(&result);
        result
    }

    /// For a caller that waited for the refresh lock: the outcome of a refresh that
    /// finished meanwhile, or a token still fresh enough, if there is one.
    fn outcome_since(&self, seen_generation: u64, margin: i64) -> Option<Result<AltinnToken, TokenError>> {
        let cache = self.lock_cache();
        let refreshed_meanwhile = cache.generation != seen_generation;
        if refreshed_meanwhile {
            if let Some(error) = cache.health.last_error() {
                return Some(Err(error.clone()));
            }
        }
        // Even a token inside the margin is fine for a waiter if it was just fetched:
        // refreshing again would return one no fresher.
        let usable_margin = if refreshed_meanwhile { 0 } else { margin };
        let token = cache.current.as_ref().filter(|t| t.is_fresh(self.server_now(), usable_margin))?;
        Some(Ok(token.clone()))
    }

    /// Stores a refresh's outcome for the callers after it, counts it, and logs what changed.
    fn record(&self, result: &Result<AltinnToken, TokenError>) {
        let s = &self.inner.settings;
        let cool_downs = Doubling::new(s.failure_backoff_first, s.failure_backoff_max);
        metrics::token_refreshed(match result {
            Ok(_) => "ok",
            Err(TokenError::Unavailable { .. }) => "unavailable",
            Err(TokenError::Rejected { .. }) => "rejected",
        });
        let change = {
            let mut cache = self.lock_cache();
            cache.generation += 1;
            match result {
                Ok(token) => {
                    cache.current = Some(token.clone());
                    cache.health.succeeded(token.expires_at())
                }
                Err(error) => cache.health.failed(error, (Utc::now(), Instant::now()), cool_downs),
            }
        };
        if let Some(change) = change {
            change.log(self.inner.key.kid());
        }
    }

    /// How long callers still get the last refresh's error without a request: zero unless
    /// a refresh failed within its cool-down. The daemon's loop claims no rows meanwhile.
    pub fn cooling_down_for(&self) -> Duration {
        self.lock_cache().health.cooling_down_for(Instant::now())
    }

    /// How refreshes are going, for health reporting.
    pub fn status(&self) -> AuthStatus {
        self.lock_cache().health.status()
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
        let lifetime_s = (token.expires_at() - self.server_now()).num_seconds();
        if lifetime_s <= self.inner.settings.refresh_margin_s {
            tracing::warn!(%kid, lifetime_s, margin_s = self.inner.settings.refresh_margin_s,
                "altinn token lives no longer than the refresh margin; every call will refresh");
        } else {
            tracing::debug!(%kid, lifetime_s, "altinn token refreshed");
        }
        Ok(token)
    }

    /// Signs a new grant issued at `now`, which is Maskinporten's clock as far as we know
    /// it ([`TokenClient::server_now`]). The `jti` is a fresh v4 UUID because it is a grant
    /// id that Maskinporten refuses to see twice (MP-012), not an idempotency key.
    fn build_grant(&self, now: DateTime<Utc>) -> Result<String, TokenError> {
        let s = &self.inner.settings;
        let claims =
            grant_claims(&s.client_id, &s.audience, &s.scopes, now.timestamp(), s.grant_lifetime_s, Uuid::new_v4());
        sign_grant(&self.inner.key, &claims).map_err(|e| TokenError::Rejected {
            step: Step::Grant,
            error: TokenReason::SigningFailed.as_str().to_string(),
            description: e.to_string(),
        })
    }

    /// Maskinporten's clock as well as we know it: the host clock plus the learned offset.
    /// Grants are signed on it, and tokens' `exp` (set by the servers) is compared with it.
    fn server_now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::seconds(self.inner.clock.get_s())
    }

    /// A Maskinporten token. A grant refused as skewed is signed again, once, when its
    /// answer taught us a different offset; a refusal that still looks like skew says so.
    async fn maskinporten_token(&self) -> Result<SecretString, TokenError> {
        let offset_used = self.inner.clock.get_s();
        let (result, measured) = self.request_token().await;
        let error = match result {
            Ok(token) => return Ok(token),
            Err(error) if suggests_skew(&error, measured) => error,
            Err(error) => return Err(error),
        };
        let corrected = self.inner.clock.get_s();
        if corrected == offset_used {
            return Err(blame_skew(error, measured));
        }
        tracing::debug!(kid = %self.inner.key.kid(), offset_s = corrected, "grant refused as skewed; signing one with a corrected iat");
        let (result, measured) = self.request_token().await;
        result.map_err(|e| if suggests_skew(&e, measured) { blame_skew(e, measured) } else { e })
    }

    /// One grant at Maskinporten, and the clock offset its answer showed, if any.
    async fn request_token(&self) -> (Result<SecretString, TokenError>, Option<i64>) {
        let grant = match self.build_grant(self.server_now()) {
            Ok(grant) => grant,
            Err(error) => return (Err(error), None),
        };
        self.inner.grants_issued.fetch_add(1, Ordering::Relaxed);
        let form = [("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", grant.as_str())];
        let request = self
            .inner
            .http
            .post(self.inner.settings.token_url.clone())
            .timeout(self.inner.request_timeout)
            .header(ACCEPT, "application/json")
            .form(&form);
        let reply = match send(request, Step::Maskinporten).await {
            Ok(reply) => reply,
            Err(error) => return (Err(error), None),
        };
        let measured = reply.measured_offset_s;
        if let Some(offset_s) = measured {
            self.inner.clock.learn(offset_s);
        }
        if !reply.status.is_success() {
            return (Err(classify_maskinporten_failure(reply.status, &reply.body)), measured);
        }
        let token = access_token(&reply.body).ok_or_else(|| TokenError::Unavailable {
            step: Step::Maskinporten,
            status: None,
            message: "token response has no access_token".to_string(),
        });
        (token, measured)
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
        let reply = send(request, Step::Exchange).await?;
        if !reply.status.is_success() {
            return Err(classify_exchange_failure(reply.status));
        }
        let text = String::from_utf8_lossy(&reply.body);
        exchanged_token(&text, self.server_now()).ok_or_else(|| TokenError::Unavailable {
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
            error: TokenReason::InvalidSubscriptionKey.as_str().to_string(),
            description: "the subscription key is not a valid HTTP header value".to_string(),
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// Sends a request and reads its body; transport failures are always retryable.
async fn send(request: reqwest::RequestBuilder, step: Step) -> Result<Reply, TokenError> {
    // The exchange is Altinn's endpoint; a grant is never sent on its own.
    let (system, endpoint) = match step {
        Step::Exchange => (System::Altinn, "token_exchange"),
        Step::Maskinporten | Step::Grant => (System::Maskinporten, "token"),
    };
    let started = std::time::Instant::now();
    let result = request.send().await;
    metrics::request_done(system, endpoint, started, &result);
    let response: Response = result.map_err(|e| transport_error(step, &e))?;
    // Read the host clock as the answer arrives, the moment closest to the server's Date.
    let measured_offset_s = server_date(response.headers()).map(|date| measured_offset_s(date, Utc::now()));
    let status = response.status();
    let body = response.bytes().await.map_err(|e| transport_error(step, &e))?;
    Ok(Reply { status, body, measured_offset_s })
}

/// The client against servers is tested in the integration tests (`tests/it/token.rs`,
/// `tests/it/token_resilience.rs`); here only what needs the private `build_grant`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::maskinporten::grant::tests::{fixture_key, payload};

    #[test]
    fn each_grant_gets_a_new_jti() {
        let unused = Url::parse("http://127.0.0.1:9/").unwrap();
        let settings = TokenSettings {
            token_url: unused.join("token").unwrap(),
            audience: "https://test.maskinporten.no/".to_string(),
            client_id: "client-1".to_string(),
            scopes: "altinn:serviceowner altinn:correspondence.write".to_string(),
            exchange_url: unused.join("authentication/api/v1/exchange/maskinporten").unwrap(),
            subscription_key: None,
            grant_lifetime_s: 120,
            refresh_margin_s: 60,
            failure_backoff_first: Duration::ZERO,
            failure_backoff_max: Duration::ZERO,
        };
        let client = TokenClient::new(reqwest::Client::new(), settings, fixture_key());
        let now = Utc::now();
        let a = payload(&client.build_grant(now).unwrap());
        let b = payload(&client.build_grant(now).unwrap());
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!(a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(), 120);
    }
}
