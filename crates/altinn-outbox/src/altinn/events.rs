//! The Altinn Events API: subscriptions and the pull of past events, with
//! the same Altinn token as Correspondence (its scope must hold `altinn:events.subscribe`).
//! Statuses are matched here and leave as an [`ApiError`], classified as the Correspondence
//! client classifies them. Events has gates of its own in neither direction: its requests
//! are few (one per resource and period) and must not hold back the sends.

use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};

use super::{parse, AltinnClient, ApiError, NoAnswer};

/// Base path of the Events API under the platform URL.
pub const EVENTS_PATH: &str = "/events/api/v1";

/// The URN prefix of a resource in `resourceFilter` and in the pull's `resource`.
pub const RESOURCE_URN: &str = "urn:altinn:resource:";

/// Events pulled per page: Events' own maximum (1000), so a backlog takes few requests.
const PULL_PAGE_SIZE: u32 = 1000;

// Endpoint names for the request duration metric.
const SUBSCRIBE: &str = "events_subscribe";
const SUBSCRIPTIONS: &str = "events_subscriptions";
const SUBSCRIPTION: &str = "events_subscription";
const UNSUBSCRIBE: &str = "events_unsubscribe";
const PULL: &str = "events_pull";

/// A subscription as Events answers it (camelCase; unset filters are omitted). Neither its
/// Debug nor its Serialize shows the endpoint.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: i64,
    /// Holds the receiver's secret: never log it.
    #[serde(skip_serializing)]
    pub end_point: String,
    pub resource_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_filter: Option<String>,
    #[serde(default)]
    pub validated: bool,
    #[serde(default)]
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("end_point", &"***")
            .field("resource_filter", &self.resource_filter)
            .field("type_filter", &self.type_filter)
            .field("validated", &self.validated)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// `POST /subscriptions`: the endpoint and the resource; the type only for a one-type one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewSubscription<'a> {
    end_point: &'a str,
    resource_filter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_filter: Option<&'a str>,
}

#[derive(Deserialize)]
struct SubscriptionList {
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

/// The `resourceFilter` of a resource id (Events wants it lower-case).
pub fn resource_filter(resource_id: &str) -> String {
    format!("{RESOURCE_URN}{resource_id}")
}

impl AltinnClient {
    /// Creates the subscription of `resource_id` to `endpoint`, or (Events is idempotent per
    /// filter, consumer and endpoint) answers the existing one; either way Events sends the
    /// endpoint a new handshake.
    pub async fn subscribe(
        &self,
        endpoint: &str,
        resource_id: &str,
        type_filter: Option<&str>,
    ) -> Result<Subscription, ApiError> {
        let url = format!("{}/subscriptions", self.events_api);
        let body = NewSubscription { end_point: endpoint, resource_filter: resource_filter(resource_id), type_filter };
        parse(&self.events_send(SUBSCRIBE, |http| http.post(&url).json(&body)).await?)
    }

    /// Every subscription this client made (Events lists the caller's own, validated or not).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        let url = format!("{}/subscriptions", self.events_api);
        let list: SubscriptionList = parse(&self.events_send(SUBSCRIPTIONS, |http| http.get(&url)).await?)?;
        Ok(list.subscriptions)
    }

    /// One subscription, to see whether it is validated yet; None when Events has none by that id.
    pub async fn subscription(&self, id: i64) -> Result<Option<Subscription>, ApiError> {
        let url = format!("{}/subscriptions/{id}", self.events_api);
        match self.events_send(SUBSCRIPTION, |http| http.get(&url)).await {
            Ok(body) => parse(&body).map(Some),
            Err(e) if e.bare_status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a subscription; false when Events had none by that id.
    pub async fn unsubscribe(&self, id: i64) -> Result<bool, ApiError> {
        let url = format!("{}/subscriptions/{id}", self.events_api);
        match self.events_send(UNSUBSCRIBE, |http| http.delete(&url)).await {
            Ok(_) => Ok(true),
            Err(e) if e.bare_status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One page of the events of `resource_id` registered after the event `after` ("0": from
    /// the start), oldest first, as JSON objects (read leniently by the caller).
    pub async fn pull(&self, resource_id: &str, after: &str) -> Result<Vec<serde_json::Value>, ApiError> {
        let url = format!("{}/events", self.events_api);
        let query = [
            ("resource", resource_filter(resource_id)),
            ("after", after.to_string()),
            ("size", PULL_PAGE_SIZE.to_string()),
        ];
        parse(&self.events_send(PULL, |http| http.get(&url).query(&query)).await?)
    }

    /// One request with the Altinn token (a fresh one after an empty 401); any 2xx is success
    /// (create answers 201), anything else is classified once, here.
    async fn events_send(
        &self,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<bytes::Bytes, ApiError> {
        let (status, retry_after, body) = self.answer(endpoint, &build).await.map_err(|e| match e {
            NoAnswer::NoToken(e) | NoAnswer::Lost(e) => e,
        })?;
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(body);
        }
        Err(ApiError::from_response(status.as_u16(), retry_after, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_reads_as_events_writes_it_and_never_shows_the_endpoint() {
        let body = br#"{"id":1619,"endPoint":"https://hooks.example.no/altinn/s3cr3t",
            "resourceFilter":"urn:altinn:resource:my-corr-resource","consumer":"/org/ttd","createdBy":"/org/ttd",
            "created":"2026-08-20T10:57:56.123456Z","validated":false,"includeSubunits":false}"#;
        let s: Subscription = parse(body).unwrap();
        assert_eq!((s.id, s.validated, s.type_filter.as_deref()), (1619, false, None));
        assert_eq!(s.resource_filter.as_deref(), Some("urn:altinn:resource:my-corr-resource"));
        let shown = serde_json::to_string(&s).unwrap();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let debugged = format!("{s:?}");
        assert!(!debugged.contains("s3cr3t") && debugged.contains("1619"), "{debugged}");
    }

    #[test]
    fn a_new_subscription_names_only_what_is_set() {
        let body =
            NewSubscription { end_point: "https://x/e/s", resource_filter: resource_filter("r"), type_filter: None };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"endPoint":"https://x/e/s","resourceFilter":"urn:altinn:resource:r"})
        );
    }
}
