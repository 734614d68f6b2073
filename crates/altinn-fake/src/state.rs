//! What the fake remembers: correspondences, idempotency keys, used grant ids, counters
//! and a log of every request, shared by the handlers and inspected by tests.
//!
//! Status progression is computed lazily from the fake clock whenever something looks at a
//! correspondence, so tests never wait on a timer they do not control. The events clock
//! (`events::publisher`) is the one background reader: it looks at the correspondences that
//! changed (`Inner::touched`) or have a transition due (`Inner::due`) and announces each new
//! history entry once (`StatusEntry::announced`), so the lazy computation stays the single
//! source of truth for views and events alike.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::attachment::{AttachmentRecord, AttachmentStatus, FakeAttachment};
use super::{App, FakeConfig};

/// Correspondence statuses with the numeric values of `CorrespondenceStatusExt`; the
/// top-level status is the highest value reached, so the order matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Initialized = 0,
    ReadyForPublish = 1,
    Published = 2,
    Fetched = 3,
    Read = 4,
    Replied = 5,
    Confirmed = 6,
    PurgedByRecipient = 7,
    PurgedByAltinn = 8,
    Archived = 9,
    Reserved = 10,
    Failed = 11,
    AttachmentsDownloaded = 12,
    Forwarded = 13,
}

const ALL_STATUSES: [Status; 14] = [
    Status::Initialized,
    Status::ReadyForPublish,
    Status::Published,
    Status::Fetched,
    Status::Read,
    Status::Replied,
    Status::Confirmed,
    Status::PurgedByRecipient,
    Status::PurgedByAltinn,
    Status::Archived,
    Status::Reserved,
    Status::Failed,
    Status::AttachmentsDownloaded,
    Status::Forwarded,
];

impl Status {
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn from_name(name: &str) -> Option<Status> {
        ALL_STATUSES.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Purged and archived rows are hidden from the sender's `statusHistory`.
    pub fn visible_to_sender(self) -> bool {
        !matches!(self, Status::PurgedByRecipient | Status::PurgedByAltinn | Status::Archived)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct StatusEntry {
    pub status: Status,
    pub text: String,
    pub at: DateTime<Utc>,
    /// The events clock has seen this entry (and published its event, if it has one).
    pub announced: bool,
}

/// A correspondence as tests see it.
#[derive(Clone, Debug)]
pub struct FakeCorrespondence {
    pub id: Uuid,
    pub idempotent_key: Option<Uuid>,
    pub resource_id: String,
    pub senders_reference: String,
    /// The normalised lower-case URN.
    pub recipient: String,
    /// Creation time on the fake clock.
    pub created: DateTime<Utc>,
    /// The initialize request body as received.
    pub request: Value,
    /// The current (highest) status name, as overview would show it now.
    pub status: String,
    pub published: Option<DateTime<Utc>>,
    /// Attachments linked at initialize, new and existing.
    pub attachment_ids: Vec<Uuid>,
}

/// The notification order of a correspondence: which channels it uses.
#[derive(Clone, Debug)]
pub(crate) struct NotificationOrder {
    pub order_id: Uuid,
    pub channel: String,
    pub email: bool,
    pub sms: bool,
    /// `sendReminder` was true.
    pub reminder: bool,
    /// The order could not be created (`FakeConfig::notification_order_fails`): no order
    /// exists, the views show none, only `correspondencenotificationcreationfailed` is published.
    pub creation_failed: bool,
}

/// A stored correspondence with everything the views need.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub public: FakeCorrespondence,
    /// The request with lower-cased keys, which the views read.
    pub normalized: Value,
    pub history: Vec<StatusEntry>,
    pub requested_publish: DateTime<Utc>,
    pub confirmation_needed: bool,
    pub notification: Option<NotificationOrder>,
    /// `dueDateTime`, when the request set one.
    pub due: Option<DateTime<Utc>>,
    /// The events announced that no history entry carries.
    pub marks: EventMarks,
}

/// Events of a correspondence that are not status entries, once announced.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventMarks {
    pub notification_created: bool,
    pub notification_result: bool,
    pub reminder_result: bool,
    pub due_date: bool,
}

impl Record {
    pub fn highest(&self) -> &StatusEntry {
        self.history
            .iter()
            .filter(|e| e.status != Status::Fetched)
            .max_by_key(|e| e.status)
            .expect("a correspondence always has a status")
    }

    pub fn first(&self, status: Status) -> Option<DateTime<Utc>> {
        self.history.iter().find(|e| e.status == status).map(|e| e.at)
    }

    pub fn is_purged(&self) -> bool {
        self.first(Status::PurgedByAltinn).is_some() || self.first(Status::PurgedByRecipient).is_some()
    }

    /// Adds an entry, keeping the history in time order.
    pub fn push(&mut self, status: Status, text: &str, at: DateTime<Utc>) {
        self.insert(StatusEntry { status, text: text.to_string(), at, announced: false });
    }

    /// Adds an entry that publishes no event (see `events::catalogue`).
    pub fn push_quiet(&mut self, status: Status, text: &str, at: DateTime<Utc>) {
        self.insert(StatusEntry { status, text: text.to_string(), at, announced: true });
    }

    fn insert(&mut self, entry: StatusEntry) {
        let pos = self.history.partition_point(|e| e.at <= entry.at);
        self.history.insert(pos, entry);
    }

    /// Initialized -> ReadyForPublish once every attachment is Published, or -> Failed with
    /// the text of an attachment that failed (the malware-scan result handler's rule).
    pub fn follow_attachments(&mut self, stored: &[AttachmentRecord]) {
        if self.public.attachment_ids.is_empty() || self.highest().status != Status::Initialized {
            return;
        }
        let mine: Vec<&AttachmentRecord> =
            stored.iter().filter(|a| self.public.attachment_ids.contains(&a.id)).collect();
        if let Some(failed) = mine.iter().find(|a| a.status() == AttachmentStatus::Failed) {
            let (_, text, at) = failed.current().clone();
            // MalwareScanResultHandler fails the correspondences without an event of theirs.
            self.push_quiet(Status::Failed, &text, at);
        } else if mine.iter().all(|a| a.status() == AttachmentStatus::Published) {
            let ready = mine.iter().map(|a| a.current().2).max().unwrap_or(self.public.created);
            self.push(Status::ReadyForPublish, "ReadyForPublish", ready);
        }
    }

    /// Applies every time-based transition that is due at `now`.
    pub fn advance(&mut self, now: DateTime<Utc>, config: &FakeConfig) {
        let created = self.public.created;
        let after = |ms: u64| created + Duration::milliseconds(ms as i64);
        let publish_at = self.publish_at(config);
        if now >= publish_at && !self.is_purged() {
            match self.highest().status {
                Status::ReadyForPublish => self.push(Status::Published, "Published", publish_at),
                // As coded in the publish job: still reserved at publish time means Failed.
                Status::Reserved if self.first(Status::Failed).is_none() => self.push(
                    Status::Failed,
                    "Recipient has reserved themselves from public correspondences",
                    publish_at,
                ),
                _ => {}
            }
        }
        let Some(published) = self.first(Status::Published) else {
            return;
        };
        if self.is_purged() {
            return;
        }
        if let Some(ms) = config.read_after_ms {
            let at = after(ms).max(published);
            if now >= at && self.first(Status::Read).is_none() {
                self.push(Status::Read, "Read", at);
            }
        }
        if let (true, Some(ms)) = (self.confirmation_needed, config.confirm_after_ms) {
            let at = after(ms).max(self.first(Status::Read).unwrap_or(published));
            if now >= at && self.first(Status::Confirmed).is_none() {
                self.push(Status::Confirmed, "Confirmed", at);
            }
        }
    }

    /// When the publish job runs: `publish_after_ms` after creation, not before the requested
    /// publish time, never before the attachments are ready.
    pub fn publish_at(&self, config: &FakeConfig) -> DateTime<Utc> {
        let created = self.public.created;
        let ready = self.first(Status::ReadyForPublish).unwrap_or(created);
        let after = created + Duration::milliseconds(config.publish_after_ms as i64);
        after.max(self.requested_publish).max(ready)
    }

    fn snapshot(&self) -> FakeCorrespondence {
        let mut public = self.public.clone();
        public.status = self.highest().status.name();
        public.published = self.first(Status::Published);
        public
    }
}

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Host clock time the request arrived.
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub records: Vec<Record>,
    /// Position of each correspondence in `records`.
    pub by_id: HashMap<Uuid, usize>,
    pub attachments: Vec<AttachmentRecord>,
    /// Idempotency keys: shared by every sender, never expiring, surviving purge.
    pub keys: HashMap<Uuid, Uuid>,
    pub used_jtis: HashSet<String>,
    pub requests: Vec<RequestRecord>,
    /// Every grant received and token issued (see [`FakeState::secrets`]).
    pub secrets: Vec<String>,
    /// Arrival of every JSON initialize request, with its idempotency key.
    pub initialize_arrivals: Vec<(Option<Uuid>, std::time::Instant)>,
    /// `malware_scan_ms` for files of these names uploaded from now on (see
    /// [`FakeState::set_malware_scan_ms_for`]).
    pub scan_ms_by_file_name: HashMap<String, u64>,
    /// Correspondences changed since the events clock last looked (positions in `records`).
    pub touched: Vec<usize>,
    /// When the events clock must look at a correspondence again: (due, position).
    pub due: BTreeSet<(DateTime<Utc>, usize)>,
}

impl Inner {
    /// How long the malware scan of a file so named takes: its own setting, or `default`.
    pub fn scan_ms(&self, file_name: Option<&str>, default: u64) -> u64 {
        file_name.and_then(|n| self.scan_ms_by_file_name.get(n)).copied().unwrap_or(default)
    }

    /// Tells the events clock that correspondence `i` changed.
    pub fn touch(&mut self, i: usize) {
        self.touched.push(i);
    }

    /// Applies the transitions due at `now` to every attachment, then to the correspondences
    /// at `records` (attachments first: their scans decide what correspondences do).
    pub fn advance(&mut self, now: DateTime<Utc>, config: &FakeConfig, records: impl Iterator<Item = usize>) {
        for attachment in &mut self.attachments {
            attachment.advance(now);
        }
        for i in records {
            let record = &mut self.records[i];
            record.follow_attachments(&self.attachments);
            record.advance(now, config);
            if record.history.iter().any(|e| !e.announced) {
                self.touched.push(i);
            }
        }
    }
}

/// Shared state with counters for test assertions.
pub struct FakeState {
    config: FakeConfig,
    inner: Mutex<Inner>,
    pub(crate) grants_accepted: AtomicU64,
    pub(crate) grants_rejected: AtomicU64,
    pub(crate) exchanges: AtomicU64,
    pub(crate) initialize_calls: AtomicU64,
    pub(crate) lookups: AtomicU64,
    pub(crate) details_calls: AtomicU64,
    pub(crate) purge_calls: AtomicU64,
    pub(crate) early_retries: AtomicU64,
    pub(crate) attachment_inits: AtomicU64,
    pub(crate) attachment_uploads: AtomicU64,
    pub(crate) multipart_uploads: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl FakeState {
    pub(crate) fn new(config: FakeConfig) -> FakeState {
        FakeState {
            config,
            inner: Mutex::default(),
            grants_accepted: AtomicU64::new(0),
            grants_rejected: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
            initialize_calls: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            details_calls: AtomicU64::new(0),
            purge_calls: AtomicU64::new(0),
            early_retries: AtomicU64::new(0),
            attachment_inits: AtomicU64::new(0),
            attachment_uploads: AtomicU64::new(0),
            multipart_uploads: AtomicU64::new(0),
        }
    }

    /// The fake's clock: the host clock plus `clock_offset_s`.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.config.clock_offset_s)
    }

    /// Locks the state; a panic in another handler must not wedge the whole fake.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the state after applying the transitions due now to every attachment and
    /// correspondence (attachments first: their scans decide what correspondences do).
    pub(crate) fn lock_advanced(&self) -> MutexGuard<'_, Inner> {
        let mut guard = self.lock();
        let all = 0..guard.records.len();
        guard.advance(self.now(), &self.config, all);
        guard
    }

    /// As [`FakeState::lock_advanced`] for the attachments only: what the initialize and
    /// attachment endpoints look at. Advancing every correspondence on each request would
    /// make a request's cost grow with the number of correspondences the fake holds.
    pub(crate) fn lock_attachments_advanced(&self) -> MutexGuard<'_, Inner> {
        let mut guard = self.lock();
        guard.advance(self.now(), &self.config, std::iter::empty());
        guard
    }

    /// As [`FakeState::lock_advanced`] for the one correspondence `id` (with its position):
    /// the others advance when they are looked at, so a status read costs the same with a
    /// hundred or a million correspondences. Transitions are stamped with the time they were
    /// due, not the time they were seen, so advancing late changes nothing.
    pub(crate) fn lock_advanced_one(&self, id: Uuid) -> (MutexGuard<'_, Inner>, Option<usize>) {
        let mut guard = self.lock();
        let index = guard.by_id.get(&id).copied();
        guard.advance(self.now(), &self.config, index.into_iter());
        (guard, index)
    }

    /// Grants answered with a token.
    pub fn grants_accepted(&self) -> u64 {
        self.grants_accepted.load(Ordering::Relaxed)
    }
    /// Grants answered with a 400.
    pub fn grants_rejected(&self) -> u64 {
        self.grants_rejected.load(Ordering::Relaxed)
    }
    /// Exchange requests that reached the handler, whatever the answer.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }
    /// `POST /correspondence` requests that reached the handler, whatever the answer.
    pub fn initialize_calls(&self) -> u64 {
        self.initialize_calls.load(Ordering::Relaxed)
    }
    /// Search (`GET /correspondence?...`) requests that reached the handler.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
    /// Details requests that reached the handler.
    pub fn details_calls(&self) -> u64 {
        self.details_calls.load(Ordering::Relaxed)
    }
    /// Purge requests that reached the handler, whatever the answer.
    pub fn purge_calls(&self) -> u64 {
        self.purge_calls.load(Ordering::Relaxed)
    }
    /// Every grant the fake Maskinporten received and every token the fake issued
    /// (Maskinporten and Altinn tokens), for tests that prove none reaches a log.
    pub fn secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }

    /// Arrival times of JSON initialize requests, by idempotency key.
    pub fn initialize_arrivals(&self) -> Vec<(Option<Uuid>, std::time::Instant)> {
        self.lock().initialize_arrivals.clone()
    }

    /// Requests that arrived before the time a 429 told the client to wait for.
    pub fn requests_before_retry_after(&self) -> u64 {
        self.early_retries.load(Ordering::Relaxed)
    }

    /// `POST /attachment` requests that reached the handler.
    pub fn attachment_inits(&self) -> u64 {
        self.attachment_inits.load(Ordering::Relaxed)
    }
    /// `POST /attachment/{id}/upload` requests that reached the handler.
    pub fn attachment_uploads(&self) -> u64 {
        self.attachment_uploads.load(Ordering::Relaxed)
    }
    /// `POST /correspondence/upload` (multipart) requests that reached the handler.
    pub fn multipart_uploads(&self) -> u64 {
        self.multipart_uploads.load(Ordering::Relaxed)
    }

    /// Every attachment stored, in creation order, with its status as of now.
    pub fn attachments(&self) -> Vec<FakeAttachment> {
        self.lock_advanced().attachments.iter().map(AttachmentRecord::snapshot).collect()
    }

    /// Finishes every malware scan in progress now, without waiting for `malware_scan_ms`
    /// (scans that would never end included).
    pub fn complete_malware_scans_now(&self) {
        let now = self.now();
        let mut inner = self.lock();
        for attachment in &mut inner.attachments {
            if attachment.scan_done.is_some() {
                attachment.scan_done = Some(now);
            }
        }
    }

    /// Files named `file_name` uploaded from now on are scanned for `scan_ms` (`u64::MAX`: the
    /// scan never ends) instead of `malware_scan_ms`; None returns them to it. Uploads already
    /// made keep their scan. For tests where one file's scan behaves unlike the others'.
    pub fn set_malware_scan_ms_for(&self, file_name: &str, scan_ms: Option<u64>) {
        let mut inner = self.lock();
        match scan_ms {
            Some(ms) => inner.scan_ms_by_file_name.insert(file_name.to_string(), ms),
            None => inner.scan_ms_by_file_name.remove(file_name),
        };
    }

    /// Every correspondence created, in creation order, with its status as of now.
    pub fn correspondences(&self) -> Vec<FakeCorrespondence> {
        self.lock_advanced().records.iter().map(Record::snapshot).collect()
    }

    /// Every request answered so far, in the order the answers were sent.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Publishes every correspondence waiting for publish, without waiting for the timer.
    pub fn publish_all_now(&self) {
        let now = self.now();
        let mut inner = self.lock_advanced();
        let Inner { records, touched, .. } = &mut *inner;
        for (i, record) in records.iter_mut().enumerate() {
            if !record.is_purged() && record.highest().status == Status::ReadyForPublish {
                record.push(Status::Published, "Published", now);
                touched.push(i);
            }
        }
    }

    /// Records status `name` (e.g. "Read", "Failed") for correspondence `id` now.
    /// Returns false if the id or the status name is unknown.
    pub fn set_status(&self, id: Uuid, name: &str) -> bool {
        let now = self.now();
        let Some(status) = Status::from_name(name) else {
            return false;
        };
        let (mut inner, index) = self.lock_advanced_one(id);
        let Some(i) = index else {
            return false;
        };
        inner.records[i].push(status, &status.name(), now);
        inner.touch(i);
        true
    }
}

/// Logs every request with its final status, outermost so faults are included.
pub(crate) async fn record_middleware(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let at = Utc::now();
    let request = if method == "POST" && path.ends_with("/correspondence/api/v1/correspondence") {
        note_initialize(&app, request).await
    } else {
        request
    };
    let response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "fake answered");
    app.state.lock().requests.push(RequestRecord { method, path, status, at });
    response
}

/// Records when a JSON initialize request arrived and its key (read from a copy of the
/// body), before any fault or handler: tests prove from this that no two requests with one
/// key were ever outstanding together.
async fn note_initialize(app: &App, request: Request) -> Request {
    // Only the key is read: the handler parses the whole body once more for itself.
    #[derive(serde::Deserialize)]
    struct KeyOnly<'a> {
        #[serde(rename = "idempotentKey", borrow)]
        key: Option<std::borrow::Cow<'a, str>>,
    }
    let (parts, body) = request.into_parts();
    let arrived = std::time::Instant::now();
    let bytes = axum::body::to_bytes(body, 32 << 20).await.unwrap_or_default();
    let key = serde_json::from_slice::<KeyOnly>(&bytes).ok().and_then(|k| k.key).and_then(|k| Uuid::parse_str(&k).ok());
    app.state.lock().initialize_arrivals.push((key, arrived));
    Request::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(config: &FakeConfig, created: DateTime<Utc>) -> Record {
        let mut record = Record {
            public: FakeCorrespondence {
                id: Uuid::new_v4(),
                idempotent_key: None,
                resource_id: "r".into(),
                senders_reference: "s".into(),
                recipient: "urn:altinn:organization:identifier-no:991825827".into(),
                created,
                request: Value::Null,
                status: String::new(),
                published: None,
                attachment_ids: Vec::new(),
            },
            normalized: Value::Null,
            history: Vec::new(),
            requested_publish: created,
            confirmation_needed: true,
            notification: None,
            due: None,
            marks: EventMarks::default(),
        };
        record.push(Status::Initialized, "Initialized", created);
        record.push(Status::ReadyForPublish, "ReadyForPublish", created);
        record.advance(created, config);
        record
    }

    #[test]
    fn statuses_follow_the_configured_delays() {
        let config = FakeConfig {
            publish_after_ms: 1000,
            read_after_ms: Some(2000),
            confirm_after_ms: Some(3000),
            ..FakeConfig::default()
        };
        let t0 = Utc::now();
        let mut r = record(&config, t0);
        assert_eq!(r.highest().status, Status::ReadyForPublish);
        r.advance(t0 + Duration::milliseconds(1500), &config);
        assert_eq!(r.highest().status, Status::Published);
        assert_eq!(r.first(Status::Published), Some(t0 + Duration::seconds(1)));
        r.advance(t0 + Duration::seconds(10), &config);
        assert_eq!(r.highest().status, Status::Confirmed);
        let order: Vec<Status> = r.history.iter().map(|e| e.status).collect();
        assert_eq!(order.last(), Some(&Status::Confirmed));
    }

    #[test]
    fn the_highest_status_wins_over_the_latest() {
        let config = FakeConfig { publish_after_ms: 60_000, ..FakeConfig::default() };
        let t0 = Utc::now();
        let mut r = record(&config, t0);
        r.push(Status::Reserved, "Reserved", t0 + Duration::seconds(1));
        r.push(Status::Published, "Published", t0 + Duration::seconds(2));
        assert_eq!(r.highest().status, Status::Reserved);
        r.push(Status::Fetched, "Fetched", t0 + Duration::seconds(3));
        assert_eq!(r.highest().status, Status::Reserved, "Fetched never shows");
        assert_eq!(Status::from_name("purgedbyaltinn"), Some(Status::PurgedByAltinn));
    }

    #[test]
    fn a_purged_correspondence_is_never_published() {
        let config = FakeConfig { publish_after_ms: 1000, ..FakeConfig::default() };
        let t0 = Utc::now();
        let mut r = record(&config, t0);
        r.push(Status::PurgedByAltinn, "PurgedByAltinn", t0);
        r.advance(t0 + Duration::seconds(5), &config);
        assert_eq!(r.first(Status::Published), None);
    }
}
