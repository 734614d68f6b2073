//! The Correspondence API's JSON, as the server reads and writes it (camelCase names,
//! enums as strings). Responses are read leniently: unknown fields are ignored and enums
//! are kept as strings, because Altinn adds statuses over time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Altinn's ReferenceType enum, in order: .NET reads it by name (any case) or by number.
pub const REFERENCE_TYPES: [&str; 7] = [
    "Generic",
    "AltinnAppInstance",
    "AltinnBrokerFileTransfer",
    "DialogportenDialogId",
    "DialogportenProcessId",
    "DialogportenTransmissionId",
    "DialogportenTransmissionType",
];

/// `POST /correspondence`: one recipient per request, because `idempotentKey` is only
/// accepted with exactly one (1047).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeRequest {
    pub correspondence: Correspondence,
    pub recipients: Vec<String>,
    pub existing_attachments: Vec<Uuid>,
    pub idempotent_key: Uuid,
}

/// `correspondence`. The obsolete `sender`, `allowSystemDeleteAfter` and
/// `notification.requestedSendTime` are never sent: the server ignores them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correspondence {
    pub resource_id: String,
    pub senders_reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_sender: Option<String>,
    pub content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_publish_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub property_list: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply_options: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_reservation: Option<bool>,
    pub is_confirmation_needed: bool,
    pub is_confidential: bool,
    pub allow_forwarding: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub language: String,
    pub message_title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_summary: Option<String>,
    pub message_body: String,
    /// New files travel only in the multipart request; the JSON request must send none (1005).
    pub attachments: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub correspondences: Vec<Initialized>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Initialized {
    pub correspondence_id: Uuid,
    pub status: String,
    pub recipient: String,
}

/// `POST /attachment`: a file to upload once and share between correspondences. Not
/// idempotent: every call creates a new attachment.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeAttachment {
    pub resource_id: String,
    pub file_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub senders_reference: String,
    pub is_encrypted: bool,
    /// Lower-case hex MD5: Altinn verifies the upload against it (2008).
    pub checksum: String,
}

/// `GET /attachment/{id}` and the upload's answer, the parts the outbox reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentOverview {
    pub status: String,
    pub status_text: Option<String>,
}

/// `GET /correspondence?…&idempotentKey=…`: lower-case `ids`.
#[derive(Clone, Debug, Deserialize)]
pub struct IdList {
    pub ids: Vec<Uuid>,
}

/// Which letter a correspondence is: the fields overview and details both carry (and keep
/// after publication, when the content is blanked for the sender).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub resource_id: String,
    pub senders_reference: String,
    /// The recipient's URN, lower case.
    pub recipient: String,
}

/// `GET /correspondence/{id}`, the parts a routine status read needs. The overview reads
/// Altinn's own database only, while details also asks Altinn Notifications (and Register,
/// and Dialogporten) on every call and fails with them; so routine reads use this, and
/// details only when something only details has is wanted.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub status: String,
    pub status_text: Option<String>,
    pub status_changed: Option<DateTime<Utc>>,
    pub published: Option<DateTime<Utc>>,
    /// When the recipient first read it.
    pub read: Option<DateTime<Utc>>,
}

/// `GET /correspondence/{id}/details`, the parts the outbox records. Content is blank
/// after publication, so it is not read.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub status: String,
    pub status_text: Option<String>,
    pub status_changed: Option<DateTime<Utc>>,
    pub published: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status_history: Vec<StatusEntry>,
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    pub status: String,
    pub status_text: Option<String>,
    pub status_changed: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(default)]
    pub is_reminder: bool,
    pub notification_channel: Option<String>,
    pub processing_status: Option<SendStatus>,
    pub notification_status_details: Option<NotificationStatusDetails>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatusDetails {
    pub email: Option<RecipientStatus>,
    pub sms: Option<RecipientStatus>,
    #[serde(default)]
    pub emails: Option<Vec<RecipientStatus>>,
    #[serde(default)]
    pub smses: Option<Vec<RecipientStatus>>,
}

/// One notification recipient's outcome. The recipient's address is not read: it is
/// personal data the outbox does not need.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    #[serde(default)]
    pub succeeded: bool,
    pub send_status: Option<SendStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendStatus {
    pub status: String,
    pub last_update: Option<DateTime<Utc>>,
}

/// `CorrespondenceStatusExt` values. Altinn's top-level status is the highest value
/// reached, so comparisons go through this number, never through "latest".
pub fn status_value(name: &str) -> Option<u8> {
    const NAMES: [&str; 14] = [
        "Initialized",
        "ReadyForPublish",
        "Published",
        "Fetched",
        "Read",
        "Replied",
        "Confirmed",
        "PurgedByRecipient",
        "PurgedByAltinn",
        "Archived",
        "Reserved",
        "Failed",
        "AttachmentsDownloaded",
        "Forwarded",
    ];
    NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| i as u8)
}
