//! The Altinn 3 Correspondence API client (and, in [`events`], the Events API on the same
//! token). HTTP statuses are matched here and nowhere else:
//! every failure leaves as an [`ApiError`] with its [`ErrorClass`]. Altinn's free texts (error
//! details, status texts) are scrubbed of personal data before they leave this module.
//! Requests that name a resource pass its [`Faults`] first: a resource whose configuration is
//! faulted is probed, not hammered.

pub mod codes;
mod error;
pub mod events;
pub mod faults;
mod form;
mod gate;
mod resource_check;
pub mod wire;

pub use error::{ApiError, ErrorClass, Problem};
use faults::Faults;
pub use faults::{Fault, FaultReport};
pub use form::dictionary_key_binds;
use gate::{Closed, Gates, Health, Kind};

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::codes::Code;
use crate::identifiers::scrub;
use crate::maskinporten::{AltinnToken, TokenClient};
use crate::metrics::{self, System};
use crate::outbox::FileContent;
use wire::{
    AttachmentOverview, Details, IdList, Identity, InitializeAttachment, InitializeRequest, InitializeResponse,
    Overview,
};

/// Base path of the Correspondence API under the platform URL.
const API_PATH: &str = "/correspondence/api/v1";

// Endpoint names for the request duration metric: a fixed list, so the label stays bounded.
const INITIALIZE: &str = "initialize";
const INITIALIZE_WITH_FILES: &str = "initialize_with_files";
const CREATE_ATTACHMENT: &str = "create_attachment";
const UPLOAD_ATTACHMENT: &str = "upload_attachment";
const ATTACHMENT_STATUS: &str = "attachment_status";
const FIND_BY_KEY: &str = "find_by_key";
const OVERVIEW: &str = "overview";
const DETAILS: &str = "details";
const PURGE: &str = "purge";
const SEARCH: &str = "search";
const RESOURCE_REGISTRY: &str = "resource_registry";

#[derive(Clone)]
pub struct AltinnClient {
    http: reqwest::Client,
    api: String,
    /// The Events API (`…/events/api/v1`): subscriptions and the pull.
    events_api: String,
    /// The resource registry's read of a resource (`…/resource/{id}`), without the id.
    registry: String,
    tokens: TokenClient,
    /// Sent as `Ocp-Apim-Subscription-Key` when set.
    subscription_key: Option<SecretString>,
    /// Whole-request timeout of a request that carries files (the client's own is for the rest).
    upload_timeout: Duration,
    /// Hold requests back while Altinn throttles us (every request: a 429's wait applies to
    /// every row, not only the one that was told) or looks down (per kind: sends, reads).
    gates: Gates,
    /// Configuration faults by resource: said once, shown to readiness, probed.
    faults: Faults,
    /// When a token refused for a missing scope was last dropped ([`Faults::renewal_pause`]).
    scope_renewed: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

/// One file of the multipart request; its name matches the metadata's `fileName`.
pub struct FilePart {
    pub file_name: String,
    pub content: FileContent,
}

/// What `POST /correspondence` answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    New {
        correspondence_id: Uuid,
        status: String,
    },
    /// 409 / 1034: a correspondence with this key exists; look its id up by key.
    AlreadyExists,
}

/// What `DELETE /correspondence/{id}/purge` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purged {
    /// 200: purged now; its status is PurgedByAltinn.
    Now,
    /// 400 / 1014: purged before (by an earlier cancel whose answer was lost, say).
    Already,
    /// 400 / 1013: published (or Reserved); the sender may no longer purge it.
    Published,
}

impl AltinnClient {
    pub fn new(
        http: reqwest::Client,
        platform_url: &str,
        tokens: TokenClient,
        subscription_key: Option<SecretString>,
        upload_timeout: Duration,
    ) -> Self {
        AltinnClient {
            http,
            api: format!("{}{API_PATH}", platform_url.trim_end_matches('/')),
            events_api: format!("{}{}", platform_url.trim_end_matches('/'), events::EVENTS_PATH),
            registry: format!("{}{}", platform_url.trim_end_matches('/'), resource_check::REGISTRY_PATH),
            tokens,
            subscription_key: subscription_key.filter(|k| !k.expose_secret().trim().is_empty()),
            upload_timeout,
            gates: Gates::default(),
            faults: Faults::default(),
            scope_renewed: Default::default(),
        }
    }

    /// Holds back the requests of a resource with a configuration fault, letting one through
    /// (a probe) after pauses that double up to `max_pause`; zero holds nothing back.
    pub fn with_fault_probe(mut self, max_pause: Duration) -> Self {
        self.faults = Faults::new(max_pause);
        self
    }

    pub fn tokens(&self) -> &TokenClient {
        &self.tokens
    }

    /// Initializes one correspondence. Success is 200 with one element per recipient.
    pub async fn initialize(&self, request: &InitializeRequest) -> Result<Created, ApiError> {
        let url = format!("{}/correspondence", self.api);
        let resource = Some(request.correspondence.resource_id.as_str());
        created(self.send(INITIALIZE, resource, |http| http.post(&url).json(request)).await)
    }

    /// Initializes one correspondence and uploads its files in the same multipart request,
    /// atomic with the idempotency key. Files are streamed from the database, chunk by chunk.
    pub async fn initialize_with_files(
        &self,
        request: &InitializeRequest,
        files: &[FilePart],
    ) -> Result<Created, ApiError> {
        let url = format!("{}/correspondence/upload", self.api);
        let json = serde_json::to_value(request).map_err(|e| ApiError::permanent(Code::Serialize, e.to_string()))?;
        let fields = form::fields(&json);
        let build = |http: &reqwest::Client| {
            // File names go as plain UTF-8: they must equal the metadata's FileName, and
            // percent-encoding them would make them differ (1005).
            let mut multipart = Form::new().percent_encode_noop();
            for (name, value) in &fields {
                multipart = multipart.text(name.clone(), value.clone());
            }
            for f in files {
                let body = reqwest::Body::wrap_stream(f.content.stream());
                let part = Part::stream_with_length(body, f.content.len()).file_name(f.file_name.clone());
                multipart = multipart.part("attachments", part);
            }
            http.post(&url).multipart(multipart).timeout(self.upload_timeout)
        };
        let resource = Some(request.correspondence.resource_id.as_str());
        created(self.send(INITIALIZE_WITH_FILES, resource, build).await)
    }

    /// Creates an attachment to upload into; its id is the JSON string answered.
    pub async fn create_attachment(&self, request: &InitializeAttachment) -> Result<Uuid, ApiError> {
        let url = format!("{}/attachment", self.api);
        let resource = Some(request.resource_id.as_str());
        let body = self.send(CREATE_ATTACHMENT, resource, |http| http.post(&url).json(request)).await?;
        parse(&body)
    }

    /// Uploads the file into a created attachment. One shot: after any attempt, even a failed
    /// one, Altinn refuses another upload into it (2005).
    pub async fn upload_attachment(&self, id: Uuid, content: &FileContent) -> Result<AttachmentOverview, ApiError> {
        let url = format!("{}/attachment/{id}/upload", self.api);
        let body = self
            .send(UPLOAD_ATTACHMENT, None, |http| {
                http.post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, content.len())
                    .body(reqwest::Body::wrap_stream(content.stream()))
                    .timeout(self.upload_timeout)
            })
            .await?;
        parse(&body).map(scrub_attachment)
    }

    /// An attachment's status: `Published` once the malware scan passed.
    pub async fn attachment_status(&self, id: Uuid) -> Result<AttachmentOverview, ApiError> {
        let url = format!("{}/attachment/{id}", self.api);
        let body = self.send(ATTACHMENT_STATUS, None, |http| http.get(&url)).await?;
        parse(&body).map(scrub_attachment)
    }

    /// Finds the correspondence created with `key` (the 409 carries no id).
    pub async fn find_by_key(&self, resource_id: &str, key: Uuid) -> Result<Option<Uuid>, ApiError> {
        let url = format!("{}/correspondence", self.api);
        let query =
            [("resourceId", resource_id.to_string()), ("role", "Sender".into()), ("idempotentKey", key.to_string())];
        let body = self.send(FIND_BY_KEY, Some(resource_id), |http| http.get(&url).query(&query)).await?;
        let ids: IdList = parse(&body)?;
        Ok(ids.ids.into_iter().next())
    }

    /// Which letter a correspondence is (resource, sender's reference, recipient), from the
    /// overview; from the details when the overview no longer shows it (404/1001 after a
    /// purge, while details still does).
    pub async fn identity(&self, id: Uuid) -> Result<Identity, ApiError> {
        let url = format!("{}/correspondence/{id}", self.api);
        match self.send(OVERVIEW, None, |http| http.get(&url)).await {
            Ok(body) => parse(&body),
            Err(e) if e.is_not_found() => {
                let url = format!("{url}/details");
                parse(&self.send(DETAILS, None, |http| http.get(&url)).await?)
            }
            Err(e) => Err(e),
        }
    }

    /// The status of one correspondence, from Altinn's own database (the routine read).
    pub async fn overview(&self, id: Uuid) -> Result<Overview, ApiError> {
        let url = format!("{}/correspondence/{id}", self.api);
        parse(&self.send(OVERVIEW, None, |http| http.get(&url)).await?).map(scrub_overview)
    }

    /// Status history and notification outcome of one correspondence.
    pub async fn details(&self, id: Uuid) -> Result<Details, ApiError> {
        let url = format!("{}/correspondence/{id}/details", self.api);
        let body = self.send(DETAILS, None, |http| http.get(&url)).await?;
        parse(&body).map(scrub_details)
    }

    /// Purges (cancels) a correspondence that is not yet published. Altinn allows it only
    /// while the status is Initialized, ReadyForPublish or Failed.
    pub async fn purge(&self, id: Uuid) -> Result<Purged, ApiError> {
        let url = format!("{}/correspondence/{id}/purge", self.api);
        purged(self.send(PURGE, None, |http| http.delete(&url)).await)
    }

    /// Sends with a token; an empty 401 drops the cached token and retries once with a fresh
    /// one, because Altinn validates token lifetime with zero clock skew. A request for
    /// `resource` passes its configuration faults first, and its answer is recorded there.
    async fn send(
        &self,
        endpoint: &'static str,
        resource: Option<&str>,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<bytes::Bytes, ApiError> {
        let pass = self.gates.of(kind_of(endpoint)).enter(Instant::now()).map_err(closed)?;
        if let Some(resource) = resource {
            self.faults.enter(resource, Instant::now()).map_err(|(fault, code)| held(resource, fault, code))?;
        }
        let (status, retry_after, body) = match self.answer(endpoint, &build).await {
            Ok(answer) => answer,
            // Nothing was sent: says nothing about Altinn (a probe's pass is freed on drop).
            Err(NoAnswer::NoToken(e)) => return Err(e),
            Err(NoAnswer::Lost(e)) => {
                pass.record(Health::Down);
                return Err(e);
            }
        };
        let mut error =
            (status != StatusCode::OK).then(|| ApiError::from_response(status.as_u16(), retry_after, &body));
        let health = health(status, retry_after, error.as_ref());
        if let Health::Throttled(wait) = health {
            self.gates.throttle(wait, Instant::now());
        }
        pass.record(health);
        if let Some(resource) = resource {
            self.learn(resource, error.as_mut());
        }
        error.map_or(Ok(body), Err)
    }

    /// What an answer for `resource` says about its configuration: a success clears its
    /// fault; a configuration fault is recorded, and the error names the resource. Any other
    /// answer proves nothing either way (the next probe decides).
    fn learn(&self, resource: &str, error: Option<&mut ApiError>) {
        match error {
            None => self.faults.succeeded(resource),
            Some(e) => {
                if let Some(fault) = e.fault() {
                    self.faults.refused(resource, fault, &e.code, Instant::now());
                    e.resource = Some(resource.to_string());
                }
            }
        }
    }

    /// One request with a token (two after an empty 401), its body read completely.
    async fn answer(
        &self,
        endpoint: &'static str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<(StatusCode, Option<Duration>, bytes::Bytes), NoAnswer> {
        let mut token = self.token().await.map_err(NoAnswer::NoToken)?;
        let mut answer = self.attempt(endpoint, build, &token).await?;
        // An empty 401 is the bearer check (an expired token, say); one with Altinn's code is
        // Altinn Authorization's answer about the resource, which a new token does not change.
        if answer.0 == StatusCode::UNAUTHORIZED && Problem::parse(&answer.2).error_code.is_none() {
            self.tokens.invalidate(&token);
            token = self.token().await.map_err(NoAnswer::NoToken)?;
            answer = self.attempt(endpoint, build, &token).await?;
        }
        if answer.0 == StatusCode::FORBIDDEN && answer.2.trim_ascii().is_empty() {
            self.renew_after_scope_refusal(&token);
        }
        Ok(answer)
    }

    /// A token the scope policy refused is refused until it is replaced: drop it, so that the
    /// next request fetches one that carries the scope as soon as it is granted. Without
    /// this the grant would take effect only when the token expires (half an hour). Not
    /// again within the first probe pause, though: requests that name no resource (status
    /// reads) are not held back by [`Faults`], and must not turn a missing scope into a grant
    /// at Maskinporten per request.
    fn renew_after_scope_refusal(&self, refused: &AltinnToken) {
        let mut renewed = self.scope_renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if renewed.is_none_or(|at| now.duration_since(at) >= self.faults.renewal_pause()) {
            *renewed = Some(now);
            self.tokens.invalidate(refused);
        }
    }

    /// One request, timed for [`metrics`] under the endpoint's name, its body read completely:
    /// a body that cannot be read is a lost answer, whatever the status said.
    async fn attempt(
        &self,
        endpoint: &'static str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        token: &AltinnToken,
    ) -> Result<(StatusCode, Option<Duration>, bytes::Bytes), NoAnswer> {
        let mut request = build(&self.http).bearer_auth(token.expose()).header(ACCEPT, "application/json");
        if let Some(key) = &self.subscription_key {
            request = request.header("Ocp-Apim-Subscription-Key", key.expose_secret());
        }
        let started = Instant::now();
        let result = request.send().await;
        metrics::request_done(System::Altinn, endpoint, started, &result);
        let response = result.map_err(|e| NoAnswer::Lost(ApiError::from_transport(&e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(|e| NoAnswer::Lost(ApiError::from_transport(&e)))?;
        Ok((status, retry_after, body))
    }

    async fn token(&self) -> Result<AltinnToken, ApiError> {
        self.tokens.token().await.map_err(|e| ApiError::no_token(&e))
    }

    /// How long before any request may go (a 429's Retry-After, a pause while both kinds
    /// of request look down, or no token until the token client's cool-down ends); zero
    /// when some may go.
    pub fn throttled_for(&self) -> Duration {
        self.gates.wait(Instant::now()).max(self.tokens.cooling_down_for())
    }

    /// How long before a send (or a read) may go; zero when one may go now.
    pub fn sends_held_for(&self) -> Duration {
        self.gates.of(Kind::Send).wait(Instant::now())
    }

    pub fn reads_held_for(&self) -> Duration {
        self.gates.of(Kind::Read).wait(Instant::now())
    }

    /// True while a gate holds requests back (a 429's wait, or a pause of an outage).
    pub fn held_back(&self) -> bool {
        !self.gates.wait(Instant::now()).is_zero()
    }

    /// How many requests may start now: one at a time while both kinds look down.
    pub fn room(&self) -> usize {
        self.gates.room()
    }

    /// How many sends may start now: one at a time while sends look down.
    pub fn send_room(&self) -> usize {
        self.gates.of(Kind::Send).room()
    }

    /// True while Altinn looks down: both sends and reads had no real answer several times
    /// in a row.
    pub fn looks_down(&self) -> bool {
        self.gates.of(Kind::Send).outage() && self.gates.of(Kind::Read).outage()
    }

    /// The resources whose configuration is faulted now, for readiness.
    pub fn config_faults(&self) -> Vec<FaultReport> {
        self.faults.current(Instant::now())
    }

    /// How Altinn looks from here, for readiness: `up`, `throttled`, `looks down`, or one kind
    /// of request failing while the others work (`sends look down`, `reads look down`,
    /// `details look down`).
    pub fn health(&self) -> &'static str {
        let down = |kind| self.gates.of(kind).outage();
        match (down(Kind::Send), down(Kind::Read)) {
            (true, true) => "looks down",
            (true, false) => "sends look down",
            (false, true) => "reads look down",
            (false, false) if self.held_back() => "throttled",
            (false, false) if down(Kind::Details) => "details look down",
            (false, false) => "up",
        }
    }
}

/// The gate of an endpoint: what creates or changes something is a send; details, which
/// depend on Altinn's own dependencies, are apart from the other reads.
fn kind_of(endpoint: &'static str) -> Kind {
    match endpoint {
        INITIALIZE | INITIALIZE_WITH_FILES | CREATE_ATTACHMENT | UPLOAD_ATTACHMENT | PURGE => Kind::Send,
        DETAILS => Kind::Details,
        _ => Kind::Read,
    }
}

/// What an answer says about Altinn's health, for the gate.
///
/// A 5xx whose body carries one of Altinn's codes for a failed dependency (1032: the contact
/// reservation registry, 500; 2002: storage, 502) was written by Correspondence itself: it is
/// up, and requests that do not need that dependency (an organisation needs no KRR lookup, a
/// letter without files no storage) still succeed. Counting it toward "Altinn looks down"
/// would hold all of them back for one dependency's trouble; the row retries on its own
/// backoff instead. A code in a 4xx (4002, Register) is a real answer like any other 4xx.
fn health(status: StatusCode, retry_after: Option<Duration>, error: Option<&ApiError>) -> Health {
    match status {
        s if s.is_server_error() && !error.is_some_and(ApiError::is_dependency_failure) => Health::Down,
        StatusCode::TOO_MANY_REQUESTS => Health::Throttled(retry_after.unwrap_or(Duration::from_secs(1))),
        _ => Health::Up,
    }
}

/// Why a request has no answer: no token (nothing was sent), or the answer was lost.
enum NoAnswer {
    NoToken(ApiError),
    Lost(ApiError),
}

/// A request held back by the gate was never sent: the row waits without using an attempt.
fn closed(why: Closed) -> ApiError {
    let (wait, mut e) = match why {
        Closed::Throttled(wait) => (
            wait,
            ApiError::deferred(Code::Throttled, "Altinn asked us to wait (429 Retry-After); no request was made"),
        ),
        Closed::Outage(wait) => {
            (wait, ApiError::deferred(Code::AltinnDown, "Altinn looks down; held back while it is probed"))
        }
    };
    e.retry_after = Some(wait);
    e
}

/// A request held back by its resource's configuration fault was never sent: the row waits
/// as if it had been refused, without using an attempt.
fn held(resource: &str, fault: Fault, code: String) -> ApiError {
    let message = format!(
        "{}; held back until it is fixed (the resource is probed now and then), no request was made",
        fault.missing()
    );
    ApiError::misconfigured(fault, code, message, resource)
}

/// 200 with the first correspondence, or 409/1034 "already created".
fn created(answer: Result<bytes::Bytes, ApiError>) -> Result<Created, ApiError> {
    match answer {
        Ok(body) => {
            let parsed: InitializeResponse = parse(&body)?;
            let first = parsed.correspondences.into_iter().next().ok_or_else(|| {
                ApiError::transient(Code::EmptyResponse, "initialize answered 200 without a correspondence")
            })?;
            Ok(Created::New { correspondence_id: first.correspondence_id, status: first.status })
        }
        Err(e) if e.is_already_created() => Ok(Created::AlreadyExists),
        Err(e) => Err(e),
    }
}

/// 200 with the id, or the two refusals that are answers rather than failures.
fn purged(answer: Result<bytes::Bytes, ApiError>) -> Result<Purged, ApiError> {
    match answer {
        Ok(body) => parse::<Uuid>(&body).map(|_| Purged::Now),
        Err(e) if e.altinn_code() == Some(1014) => Ok(Purged::Already),
        Err(e) if e.altinn_code() == Some(1013) => Ok(Purged::Published),
        Err(e) => Err(e),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // A 200 whose body does not parse is treated as a lost response: the key makes the retry safe.
    // serde's message may quote the value it could not read, and that may be a recipient.
    serde_json::from_slice(body).map_err(|e| {
        ApiError::transient(Code::BadResponse, format!("unreadable 200 response: {}", scrub(&e.to_string())))
    })
}

/// Status texts become a failed delivery's error_message: they may name the recipient too.
fn scrub_overview(mut overview: Overview) -> Overview {
    scrub_text(&mut overview.status_text);
    overview
}

fn scrub_details(mut details: Details) -> Details {
    scrub_text(&mut details.status_text);
    for entry in &mut details.status_history {
        scrub_text(&mut entry.status_text);
    }
    details
}

fn scrub_attachment(mut overview: AttachmentOverview) -> AttachmentOverview {
    scrub_text(&mut overview.status_text);
    overview
}

fn scrub_text(text: &mut Option<String>) {
    if let Some(t) = text {
        if let std::borrow::Cow::Owned(scrubbed) = scrub(t) {
            *t = scrubbed;
        }
    }
}

/// A Retry-After's wait: whole seconds, or an HTTP date (RFC 9110's IMF-fixdate or the two
/// obsolete forms) counted from now; a date already past means no wait. The same parser reads
/// Maskinporten's `Date`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_failure_in_a_5xx_is_a_real_answer_for_the_gate() {
        let answer = |status: u16, body: &[u8]| {
            let status = StatusCode::from_u16(status).unwrap();
            let error = ApiError::from_response(status.as_u16(), None, body);
            health(status, None, Some(&error))
        };
        assert_eq!(answer(500, br#"{"status":500,"errorCode":1032,"code":"CORR-01032"}"#), Health::Up);
        assert_eq!(answer(502, br#"{"status":502,"errorCode":2002,"code":"CORR-02002"}"#), Health::Up);
        assert_eq!(answer(400, br#"{"status":400,"errorCode":4002,"code":"CORR-04002"}"#), Health::Up);
        assert_eq!(answer(500, br#"{"status":500,"title":"Internal Server Error","detail":""}"#), Health::Down);
        assert_eq!(answer(503, b""), Health::Down);
        assert_eq!(answer(500, br#"{"status":500,"errorCode":9999}"#), Health::Down, "an unknown code proves nothing");
        assert_eq!(health(StatusCode::OK, None, None), Health::Up);
        let wait = Some(Duration::from_secs(3));
        assert_eq!(health(StatusCode::TOO_MANY_REQUESTS, wait, None), Health::Throttled(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(with("7"), Some(Duration::from_secs(7)));
        let in_two_minutes = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let wait = with(&in_two_minutes).unwrap();
        assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120), "{wait:?}");
        assert_eq!(with("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "past: no wait");
        assert_eq!(with("Sunday, 06-Nov-94 08:49:37 GMT"), Some(Duration::ZERO), "RFC 850 form");
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn status_texts_and_unreadable_answers_lose_the_recipients_number() {
        let body = br#"{"status":"Reserved","statusText":"Recipient 31129956715 is reserved",
            "statusHistory":[{"status":"Reserved","statusText":"urn:altinn:person:identifier-no:31129956715"}]}"#;
        let details = parse::<Details>(body).map(scrub_details).unwrap();
        assert_eq!(details.status_text.as_deref(), Some("Recipient *********15 is reserved"));
        assert_eq!(details.status_history[0].status_text.as_deref(), Some("*********15"));
        let overview = parse(br#"{"status":"Failed","statusText":"31129956715"}"#).map(scrub_attachment).unwrap();
        assert_eq!(overview.status_text.as_deref(), Some("*********15"));

        let e = parse::<IdList>(br#"{"ids":[31129956715]}"#).unwrap_err();
        assert_eq!(e.code, "altinn:bad_response");
        assert!(e.message.contains("*********15") && !e.message.contains("311299"), "{}", e.message);
    }
}
