//! The statements of Altinn Events: the receiver's secret, and storing an event (which also
//! wakes the deliveries and files it names, in the database's `receive_event`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

crate::statements! {
    RECEIVER_SECRET = "SELECT secret FROM altinn_outbox.event_receiver";
    /// The first instance to start with events on makes the secret; the others read it.
    CREATE_RECEIVER_SECRET = "INSERT INTO altinn_outbox.event_receiver (secret) VALUES ($1) ON CONFLICT DO NOTHING";
    /// Letters just sent whose event came before their correspondence id was written: an
    /// event Altinn pushed within milliseconds of the send named a letter not yet known here.
    WAKE_SENT_WITH_EVENTS = "UPDATE altinn_outbox.delivery d SET next_poll_at = now()
         WHERE d.id = ANY($1) AND d.next_poll_at > now()
           AND EXISTS (SELECT 1 FROM altinn_outbox.event e
                       WHERE e.resource_instance = d.correspondence_id::text AND e.type <> ALL($2))";
    RECEIVE_EVENT = "SELECT stored, deliveries, files
         FROM altinn_outbox.receive_event($1, $2, $3, $4, $5, $6, $7)";
}

/// How an event came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Push,
    Pull,
}

impl Via {
    pub const fn as_str(self) -> &'static str {
        match self {
            Via::Push => "push",
            Via::Pull => "pull",
        }
    }
}

/// What an event names, as received (the subject, which may name a person, is not kept).
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub resource: Option<&'a str>,
    pub resource_instance: Option<&'a str>,
    pub time: Option<DateTime<Utc>>,
}

/// What storing an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Received {
    /// False for an id seen before (Altinn redelivers after a timeout).
    pub stored: bool,
    /// Deliveries whose next status read moved to now.
    pub deliveries: i32,
    /// Files still being scanned whose next read moved to now.
    pub files: i32,
}

/// The receiver's secret, made with `make` if no instance has made one yet.
pub async fn receiver_secret(pool: &PgPool, make: impl FnOnce() -> String) -> Result<String, sqlx::Error> {
    if let Some(secret) = sqlx::query_scalar(RECEIVER_SECRET).fetch_optional(pool).await? {
        return Ok(secret);
    }
    sqlx::query(CREATE_RECEIVER_SECRET).bind(make()).execute(pool).await?;
    // Another instance may have made it first: what is stored is the secret.
    sqlx::query_scalar(RECEIVER_SECRET).fetch_one(pool).await
}

/// The Correspondence events that change nothing a status read would find (a letter or file
/// made, an order made, a due date passed, a reminder sent): recorded, but they wake nothing.
/// Any other type wakes, unknown ones included: a read too many is cheaper than a change missed.
const RECORDED_ONLY: [&str; 7] = [
    "no.altinn.correspondence.correspondenceinitialized",
    "no.altinn.correspondence.attachmentinitialized",
    "no.altinn.correspondence.notificationcreated",
    "no.altinn.correspondence.correspondencereceiverneverread",
    "no.altinn.correspondence.correspondencereceiverneverconfirmed",
    "no.altinn.correspondence.correspondencenotificationreminderdelivered",
    "no.altinn.correspondence.attachmentexpired",
];

/// Whether an event of `event_type` makes the letters or files it names be read at once.
pub fn wakes(event_type: &str) -> bool {
    !RECORDED_ONLY.contains(&event_type)
}

/// Moves the next status read of the deliveries `sent` (just written back as sent) to now when
/// an event that wakes already named their correspondence; returns how many.
pub async fn wake_sent_with_events(pool: &PgPool, sent: &[i64]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(WAKE_SENT_WITH_EVENTS).bind(sent).bind(&RECORDED_ONLY[..]).execute(pool).await?;
    Ok(done.rows_affected())
}

/// Stores one event, once per id, and wakes what it names (the first of its instance and type).
pub async fn receive(pool: &PgPool, event: &Event<'_>, via: Via) -> Result<Received, sqlx::Error> {
    let (stored, deliveries, files): (bool, i32, i32) = sqlx::query_as(RECEIVE_EVENT)
        .bind(event.id)
        .bind(event.event_type)
        .bind(event.resource)
        .bind(event.resource_instance)
        .bind(event.time)
        .bind(via.as_str())
        .bind(wakes(event.event_type))
        .fetch_one(pool)
        .await?;
    Ok(Received { stored, deliveries, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_that_change_what_a_read_finds_wake_and_the_others_are_recorded_only() {
        for woken in [
            "correspondencepublished",
            "correspondencepublishfailed",
            "correspondencereceiverread",
            "correspondencereceiverconfirmed",
            "correspondencepurged",
            "correspondencenotificationdelivered",
            "correspondencenotificationallfailed",
            "attachmentpublished",
            "attachmentuploadfailed",
            "somethingnew",
        ] {
            assert!(wakes(&format!("no.altinn.correspondence.{woken}")), "{woken}");
        }
        for recorded in ["correspondenceinitialized", "attachmentinitialized", "notificationcreated"] {
            assert!(!wakes(&format!("no.altinn.correspondence.{recorded}")), "{recorded}");
        }
    }
}
