//! The closed sets of values the outbox tables keep in `text` columns, each mapped to its
//! column once: `sqlx` encodes and decodes them as `text` (snake_case, as the CHECK
//! constraints spell them), `serde` writes them the same way in the admin commands' JSON,
//! and [`as_str`](DeliveryState::as_str) gives the same text to metrics labels and logs.
//!
//! The derive names the type (`text`) rather than its OID, so sqlx looks the OID up once per
//! connection the first time such a value is bound (and once more for `text[]`), then caches
//! it: two small queries in a connection's life, none per statement.
//!
//! SQL statements keep their own literals (`WHERE state = 'pending'`). The integration test
//! `tests/it/states.rs` ties them together: each `ALL` below is exactly what its table's
//! constraint accepts, every value round-trips through the database, and the outbox's SQL
//! compares these columns only with values listed here.

use std::fmt;

use serde::Serialize;

/// Where a delivery is (`delivery.state`, constraint `delivery_state_known`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent (`next_attempt_at`).
    Pending,
    /// Its message's shared files are being uploaded.
    WaitingFiles,
    /// Leased by a worker that is sending it.
    Sending,
    /// Altinn has it; its status is read until publication (`next_poll_at`).
    AwaitingStatus,
    /// Published.
    Delivered,
    /// Altinn has it, but publication was not confirmed within the follow period.
    Unconfirmed,
    Failed,
    Cancelled,
}

impl DeliveryState {
    /// Every state, in the order the metrics and the admin summary list them.
    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Pending,
        DeliveryState::WaitingFiles,
        DeliveryState::Sending,
        DeliveryState::AwaitingStatus,
        DeliveryState::Delivered,
        DeliveryState::Unconfirmed,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::WaitingFiles => "waiting_files",
            DeliveryState::Sending => "sending",
            DeliveryState::AwaitingStatus => "awaiting_status",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Unconfirmed => "unconfirmed",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }
}

/// How far a file's shared upload is (`attachment.upload_state`, constraint
/// `attachment_upload_state_known`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// No shared upload: the file travels inside each delivery's multipart request.
    None,
    /// No Altinn attachment yet.
    Pending,
    /// Attachment created, nothing uploaded.
    Initialized,
    /// Upload started: the one-shot attachment is spent if it fails.
    Uploading,
    /// Uploaded; Altinn's malware scan is running.
    Processing,
    Published,
    Failed,
}

impl UploadState {
    /// Every state, `none` first.
    pub const ALL: [UploadState; 7] = [
        UploadState::None,
        UploadState::Pending,
        UploadState::Initialized,
        UploadState::Uploading,
        UploadState::Processing,
        UploadState::Published,
        UploadState::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            UploadState::None => "none",
            UploadState::Pending => "pending",
            UploadState::Initialized => "initialized",
            UploadState::Uploading => "uploading",
            UploadState::Processing => "processing",
            UploadState::Published => "published",
            UploadState::Failed => "failed",
        }
    }
}

/// What a history row records a change of (`history.kind`, written by the history trigger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The delivery's [`DeliveryState`].
    State,
    /// Altinn's status of the correspondence.
    AltinnStatus,
    /// The [`NotificationOutcome`].
    Notification,
    /// An Altinn event about the correspondence came (its type in `new_value`, `push` or
    /// `pull` in `detail`): a hint that made the next status read come at once.
    Event,
}

impl HistoryKind {
    pub const ALL: [HistoryKind; 4] =
        [HistoryKind::State, HistoryKind::AltinnStatus, HistoryKind::Notification, HistoryKind::Event];

    pub const fn as_str(self) -> &'static str {
        match self {
            HistoryKind::State => "state",
            HistoryKind::AltinnStatus => "altinn_status",
            HistoryKind::Notification => "notification",
            HistoryKind::Event => "event",
        }
    }
}

/// What became of the notification Altinn sends about a letter (`delivery.notification`).
/// All but `pending` and a `sent` whose order has not completed are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum NotificationOutcome {
    /// No notification was ordered.
    None,
    Pending,
    /// Handed to the e-mail or SMS provider.
    Sent,
    Delivered,
    /// Altinn's `*_Failed_TTL`: the provider never reported back within its time to live, so
    /// delivery is neither confirmed nor failed.
    Unconfirmed,
    Failed,
    /// The order completed without anyone to notify (no contact details, say).
    NoRecipients,
    /// The send condition was not met (the letter was already read).
    NotNeeded,
    Cancelled,
}

impl NotificationOutcome {
    pub const ALL: [NotificationOutcome; 9] = [
        NotificationOutcome::None,
        NotificationOutcome::Pending,
        NotificationOutcome::Sent,
        NotificationOutcome::Delivered,
        NotificationOutcome::Unconfirmed,
        NotificationOutcome::Failed,
        NotificationOutcome::NoRecipients,
        NotificationOutcome::NotNeeded,
        NotificationOutcome::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::None => "none",
            NotificationOutcome::Pending => "pending",
            NotificationOutcome::Sent => "sent",
            NotificationOutcome::Delivered => "delivered",
            NotificationOutcome::Unconfirmed => "unconfirmed",
            NotificationOutcome::Failed => "failed",
            NotificationOutcome::NoRecipients => "no_recipients",
            NotificationOutcome::NotNeeded => "not_needed",
            NotificationOutcome::Cancelled => "cancelled",
        }
    }
}

/// How a housekeeping run ended (`schedule_run.outcome`, constraint `schedule_run_outcome_known`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Ok,
    Failed,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 2] = [RunOutcome::Ok, RunOutcome::Failed];

    pub const fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
        }
    }
}

macro_rules! display_as_str {
    ($($set:ty),+) => {$(
        impl fmt::Display for $set {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}
display_as_str!(DeliveryState, UploadState, HistoryKind, NotificationOutcome, RunOutcome);

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` and serde agree (sqlx's agreement is checked against the database).
    fn agrees<T: Serialize + fmt::Display + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
        for value in all {
            assert_eq!(serde_json::to_value(value).unwrap(), as_str(*value), "{value}");
            assert_eq!(value.to_string(), as_str(*value));
        }
        let mut names: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "ALL lists each value once");
    }

    #[test]
    fn as_str_display_and_serde_spell_each_value_alike() {
        agrees(&DeliveryState::ALL, DeliveryState::as_str);
        agrees(&UploadState::ALL, UploadState::as_str);
        agrees(&HistoryKind::ALL, HistoryKind::as_str);
        agrees(&NotificationOutcome::ALL, NotificationOutcome::as_str);
        agrees(&RunOutcome::ALL, RunOutcome::as_str);
    }
}
