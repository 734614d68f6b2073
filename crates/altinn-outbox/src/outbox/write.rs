//! Writing results back: one fenced, set-based statement per batch, whatever the mix of
//! outcomes in it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::states::{DeliveryState, NotificationOutcome};

crate::statements! {
    WRITE_BACK = "WITH durability AS (SELECT set_config('synchronous_commit', 'off', true))
         UPDATE altinn_outbox.delivery d SET
            state = u.state,
            attempts = d.attempts - u.refund,
            next_attempt_at = coalesce(u.next_attempt_at, d.next_attempt_at),
            correspondence_id = coalesce(u.correspondence_id, d.correspondence_id),
            sent_at = CASE WHEN u.sent THEN coalesce(d.sent_at, now()) ELSE d.sent_at END,
            polls = d.polls + u.polled,
            status_seen_at = CASE WHEN u.polled > 0 THEN now() ELSE d.status_seen_at END,
            altinn_status = coalesce(u.altinn_status, d.altinn_status),
            altinn_status_at = coalesce(u.altinn_status_at, d.altinn_status_at),
            published_at = coalesce(d.published_at, u.published_at),
            read_at = coalesce(d.read_at, u.read_at),
            confirmed_at = coalesce(d.confirmed_at, u.confirmed_at),
            notification = coalesce(u.notification, d.notification),
            notification_detail = coalesce(u.notification_detail::jsonb, d.notification_detail),
            next_poll_at = u.next_poll_at,
            finished_at = CASE WHEN u.state IN ('delivered', 'unconfirmed', 'failed', 'cancelled')
                               THEN coalesce(d.finished_at, now()) END,
            error_code = u.error_code,
            error_message = u.error_message,
            locked_by = NULL, locked_until = NULL, updated_at = now()
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::timestamptz[], $6::uuid[],
                     $7::bool[], $8::int[], $9::text[], $10::timestamptz[], $11::timestamptz[],
                     $12::timestamptz[], $13::timestamptz[], $14::text[], $15::text[], $16::timestamptz[],
                     $17::text[], $18::text[])
           AS u(id, lease_no, state, refund, next_attempt_at, correspondence_id, sent, polled, altinn_status,
                altinn_status_at, published_at, read_at, confirmed_at, notification, notification_detail,
                next_poll_at, error_code, error_message),
              durability
         WHERE d.id = u.id AND d.lease_no = u.lease_no";
}

/// The state a delivery moves to, with what each needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Altinn has the correspondence; read its status from `next_poll_at`.
    Sent {
        correspondence_id: Uuid,
        altinn_status: Option<String>,
        notification: NotificationOutcome,
        next_poll_at: DateTime<Utc>,
    },
    /// Try again at `at`. `refund` gives the attempt back (the failure was not the row's).
    Retry { at: DateTime<Utc>, code: String, message: String, refund: bool },
    /// Ends the delivery: `failed` or `cancelled`.
    Finished { state: DeliveryState, code: String, message: String },
    /// A status read: the new state and what Altinn said.
    Polled(Box<PollUpdate>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PollUpdate {
    pub state: DeliveryState,
    pub altinn_status: Option<String>,
    pub altinn_status_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub notification: Option<NotificationOutcome>,
    pub notification_detail: Option<serde_json::Value>,
    /// None: stop reading the status.
    pub next_poll_at: Option<DateTime<Utc>>,
    pub error: Option<(String, String)>,
}

impl PollUpdate {
    /// A move to `state` alone: nothing new learnt, no error, and no further status read.
    pub fn new(state: DeliveryState) -> PollUpdate {
        PollUpdate {
            state,
            altinn_status: None,
            altinn_status_at: None,
            published_at: None,
            read_at: None,
            confirmed_at: None,
            notification: None,
            notification_detail: None,
            next_poll_at: None,
            error: None,
        }
    }
}

/// One result, fenced by the lease it was claimed under.
#[derive(Clone, Debug)]
pub struct WriteBack {
    pub delivery_id: i64,
    pub lease_no: i64,
    pub outcome: Outcome,
}

/// Column arrays for the one UPDATE; `None` keeps what the row has.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    lease_no: Vec<i64>,
    state: Vec<DeliveryState>,
    refund: Vec<i32>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    correspondence_id: Vec<Option<Uuid>>,
    sent: Vec<bool>,
    polled: Vec<i32>,
    altinn_status: Vec<Option<String>>,
    altinn_status_at: Vec<Option<DateTime<Utc>>>,
    published_at: Vec<Option<DateTime<Utc>>>,
    read_at: Vec<Option<DateTime<Utc>>>,
    confirmed_at: Vec<Option<DateTime<Utc>>>,
    notification: Vec<Option<NotificationOutcome>>,
    notification_detail: Vec<Option<String>>,
    next_poll_at: Vec<Option<DateTime<Utc>>>,
    error_code: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, w: &WriteBack) {
        self.id.push(w.delivery_id);
        self.lease_no.push(w.lease_no);
        let (mut refund, mut next_attempt_at, mut cid, mut sent, mut polled) = (0, None, None, false, 0);
        let p = match &w.outcome {
            Outcome::Sent { correspondence_id, altinn_status, notification, next_poll_at } => {
                cid = Some(*correspondence_id);
                sent = true;
                PollUpdate {
                    altinn_status: altinn_status.clone(),
                    notification: Some(*notification),
                    next_poll_at: Some(*next_poll_at),
                    ..PollUpdate::new(DeliveryState::AwaitingStatus)
                }
            }
            Outcome::Retry { at, code, message, refund: r } => {
                next_attempt_at = Some(*at);
                refund = i32::from(*r);
                PollUpdate { error: Some((code.clone(), message.clone())), ..PollUpdate::new(DeliveryState::Pending) }
            }
            Outcome::Finished { state, code, message } => {
                PollUpdate { error: Some((code.clone(), message.clone())), ..PollUpdate::new(*state) }
            }
            Outcome::Polled(update) => {
                polled = 1;
                (**update).clone()
            }
        };
        self.state.push(p.state);
        self.refund.push(refund);
        self.next_attempt_at.push(next_attempt_at);
        self.correspondence_id.push(cid);
        self.sent.push(sent);
        self.polled.push(polled);
        self.altinn_status.push(p.altinn_status);
        self.altinn_status_at.push(p.altinn_status_at);
        self.published_at.push(p.published_at);
        self.read_at.push(p.read_at);
        self.confirmed_at.push(p.confirmed_at);
        self.notification.push(p.notification);
        self.notification_detail.push(p.notification_detail.map(|v| v.to_string()));
        self.next_poll_at.push(p.next_poll_at);
        let (code, message) = p.error.unzip();
        self.error_code.push(code);
        self.error_message.push(message);
    }
}

/// Writes a batch of results. Returns how many were written: the others lost their lease
/// (another worker owns the row now) and are deliberately dropped.
///
/// The commit does not wait for the WAL flush (`synchronous_commit = off` for this one
/// transaction, set inside the statement so that it stays one round trip). A write-back is
/// the one write whose loss is harmless: should the database server crash in the fraction
/// of a second before the flush, the row is found `sending` with its lease, the lease
/// expires, and the send is repeated with the stored idempotency key (Altinn answers 1034
/// and the worker looks the correspondence up), or the status is read again. Claims, which
/// store the keys, keep the server's durable commit.
pub async fn write_back(pool: &PgPool, batch: &[WriteBack]) -> Result<u64, sqlx::Error> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::default();
    batch.iter().for_each(|w| c.push(w));
    let done = sqlx::query(WRITE_BACK)
        .bind(&c.id)
        .bind(&c.lease_no)
        .bind(&c.state)
        .bind(&c.refund)
        .bind(&c.next_attempt_at)
        .bind(&c.correspondence_id)
        .bind(&c.sent)
        .bind(&c.polled)
        .bind(&c.altinn_status)
        .bind(&c.altinn_status_at)
        .bind(&c.published_at)
        .bind(&c.read_at)
        .bind(&c.confirmed_at)
        .bind(&c.notification)
        .bind(&c.notification_detail)
        .bind(&c.next_poll_at)
        .bind(&c.error_code)
        .bind(&c.error_message)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
