//! Who calls Events and what they may see: the bearer check (an empty 401 for a missing,
//! foreign, raw Maskinporten or expired token), the `altinn:events.subscribe` scope, the
//! caller's identity as `SubscriptionService.GetEntityFromPrincipal` derives it, and
//! the PDP's decision on the action `subscribe`.
//!
//! The PDP is modelled on the fake's one organisation, which owns every resource: a service
//! owner (`/org/<code>`) is permitted every resource whose policy permits `subscribe`; an
//! organisation without the service-owner claim (`/organisation/<orgno>`) only with a
//! `subjectFilter` naming itself; nobody for an unknown resource or one in
//! `events_denied_resources`.

use axum::http::HeaderMap;
use serde_json::Value;

use super::super::auth::{altinn_token_claims, subscription_key_refusal};
use super::super::problem::empty;
use super::super::App;
use super::answers::Refusal;
use super::Knobs;

/// The scope every subscription call and the pull API need.
pub(crate) const SUBSCRIBE_SCOPE: &str = "altinn:events.subscribe";
/// How a `subjectFilter` or an event's subject names an organisation.
const ORG_URN: &str = "urn:altinn:organization:identifier-no:";

/// An authenticated caller.
pub(crate) struct Caller {
    /// `/org/…`, `/user/…`, `/systemuser/…` or `/organisation/…`; None if the token names none.
    pub identity: Option<String>,
    scope: String,
}

impl Caller {
    /// The scope check of `ClaimsPrincipalExtensions.HasRequiredScope`: one item of the
    /// space-separated `scope` claim, compared case-insensitively.
    pub fn may_subscribe(&self) -> bool {
        self.scope.split(' ').any(|s| s.eq_ignore_ascii_case(SUBSCRIBE_SCOPE))
    }
}

/// The gateway and bearer checks; the refusal is the answer to send.
pub(crate) fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, Refusal> {
    if let Some(refusal) = subscription_key_refusal(app, headers) {
        return Err(refusal.into());
    }
    let claims = altinn_token_claims(app, headers).ok_or_else(|| Refusal::from(empty(401)))?;
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let system_user = claims
        .get("authorization_details")
        .and_then(|d| d.get("systemuser_id"))
        .and_then(|ids| ids.get(0))
        .and_then(Value::as_str)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .filter(|id| !id.is_nil());
    let identity = text("urn:altinn:org")
        .map(|org| format!("/org/{org}"))
        .or_else(|| text("urn:altinn:userid").map(|id| format!("/user/{id}")))
        .or_else(|| system_user.map(|id| format!("/systemuser/{id}")))
        .or_else(|| text("urn:altinn:orgNumber").map(|n| format!("/organisation/{n}")));
    Ok(Caller { identity, scope: text("scope").unwrap_or_default() })
}

/// The PDP's answer to `subscribe` for `identity` on `resource` (a `urn:altinn:resource:`
/// URN) with `subject` (the subscription's filter, or an event's subject in the pull API).
pub(crate) fn permits(app: &App, knobs: &Knobs, identity: &str, resource: &str, subject: Option<&str>) -> bool {
    let Some(id) = resource.strip_prefix("urn:altinn:resource:") else {
        return false;
    };
    let unknown = app.config.unknown_resources.iter().any(|r| r.trim_start_matches("urn:altinn:resource:") == id);
    if unknown || knobs.denied_resources.contains(id) {
        return false;
    }
    if identity.starts_with("/org/") {
        return true;
    }
    match identity.strip_prefix("/organisation/") {
        Some(number) => subject.is_some_and(|s| s.strip_prefix(ORG_URN) == Some(number)),
        None => false,
    }
}
