//! The columns a letter can be refused on before any request: a closed set, the `<column>` of
//! the code `validation:<column>` ([`crate::codes::validation`]).

use std::fmt;

/// A column a letter is refused on: each column a check names, and `message_id` for a message
/// that can no longer be read. All are columns of `altinn_outbox.message` but two: `recipients`
/// (the INSERT's list of recipients; each delivery keeps its own as `recipient`) and
/// `attachment` (a file in `altinn_outbox.attachment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    MessageId,
    Recipients,
    ResourceId,
    SendersReference,
    Title,
    Summary,
    Body,
    MessageSender,
    Language,
    DueDateTime,
    ExternalReferences,
    PropertyList,
    ReplyOptions,
    Notification,
    AllowForwarding,
    ExistingAttachments,
    Attachment,
}

impl Column {
    pub const ALL: [Column; 17] = [
        Column::MessageId,
        Column::Recipients,
        Column::ResourceId,
        Column::SendersReference,
        Column::Title,
        Column::Summary,
        Column::Body,
        Column::MessageSender,
        Column::Language,
        Column::DueDateTime,
        Column::ExternalReferences,
        Column::PropertyList,
        Column::ReplyOptions,
        Column::Notification,
        Column::AllowForwarding,
        Column::ExistingAttachments,
        Column::Attachment,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Column::MessageId => "message_id",
            Column::Recipients => "recipients",
            Column::ResourceId => "resource_id",
            Column::SendersReference => "senders_reference",
            Column::Title => "title",
            Column::Summary => "summary",
            Column::Body => "body",
            Column::MessageSender => "message_sender",
            Column::Language => "language",
            Column::DueDateTime => "due_date_time",
            Column::ExternalReferences => "external_references",
            Column::PropertyList => "property_list",
            Column::ReplyOptions => "reply_options",
            Column::Notification => "notification",
            Column::AllowForwarding => "allow_forwarding",
            Column::ExistingAttachments => "existing_attachments",
            Column::Attachment => "attachment",
        }
    }

    /// The column of that name, if it is one.
    pub fn named(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
