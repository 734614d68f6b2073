//! Attachments: the metadata rules both upload routes share, the stored
//! attachment with its status history, and its overview and details bodies.
//!
//! As with correspondences, the malware scan is computed lazily from the fake clock: an
//! upload records when the scan will be done and whether the file is infected, and whoever
//! looks next sees `Published` or `Failed`.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::blob::Received;
use super::model::{at, utf16_len, Checker};
use super::problem::Problem;
use super::views::SENDER_URN;

/// `BaseAttachmentExt` limits.
const MAX_FILE_NAME_CHARS: usize = 255;
const MAX_DISPLAY_NAME_CHARS: usize = 255;
const MAX_SENDERS_REFERENCE_CHARS: usize = 4096;
/// `expirationInDays` minimum outside production (2017).
const MIN_EXPIRATION_DAYS: i64 = 1;
/// Extensions Altinn accepts (2013), with the MIME type `dataType` reports.
const FILE_TYPES: [(&str, &str); 20] = [
    ("doc", "application/msword"),
    ("xls", "application/vnd.ms-excel"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("pps", "application/vnd.ms-powerpoint"),
    ("zip", "application/zip"),
    ("pdf", "application/pdf"),
    ("html", "text/html"),
    ("txt", "text/plain"),
    ("xml", "application/xml"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("bmp", "image/bmp"),
    ("png", "image/png"),
    ("json", "application/json"),
    ("csv", "text/csv"),
    ("dcm", "application/dicom"),
    ("dicom", "application/dicom"),
];
/// How the malware scan result handler's status text starts; the only attachment failure
/// that publishes `attachmentuploadfailed`.
pub(crate) const MALWARE_FAILURE: &str = "Malware scan failed: ";
const INVALID_CHARS: [char; 9] = ['<', '>', ':', '"', '/', '\\', '|', '?', '*'];
const RESERVED_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// `AttachmentStatusExt`, by numeric value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachmentStatus {
    Initialized = 0,
    UploadProcessing = 1,
    Published = 2,
    Purged = 3,
    Failed = 4,
}

impl AttachmentStatus {
    pub fn name(self) -> String {
        format!("{self:?}")
    }
}

/// An attachment as tests see it.
#[derive(Clone, Debug)]
pub struct FakeAttachment {
    pub id: Uuid,
    pub file_name: String,
    pub senders_reference: String,
    /// Bytes received; 0 before an upload.
    pub size: u64,
    /// MD5 of the received bytes as lower-case hex; None before an upload.
    pub md5: Option<String>,
    /// The bytes themselves, for files up to 1 MB.
    pub bytes: Option<Vec<u8>>,
    /// The current status name (`Initialized`, `UploadProcessing`, `Published`, `Failed`, `Purged`).
    pub status: String,
    pub status_text: String,
    /// Upload requests that reached the handler for this attachment, rejected ones included
    /// (one-shot: only the first can succeed).
    pub upload_attempts: u32,
    pub correspondence_ids: Vec<Uuid>,
}

/// Metadata of one attachment, after model validation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata {
    pub file_name: Option<String>,
    pub display_name: Option<String>,
    pub is_encrypted: bool,
    pub checksum: Option<String>,
    pub senders_reference: String,
    pub expiration_in_days: Option<i64>,
}

/// Model validation of `BaseAttachmentExt` members under `path` (e.g. `FileName` or
/// `Correspondence.Content.Attachments[0].FileName`).
pub(crate) fn read_metadata(c: &mut Checker, v: &Value, path: &str) -> Metadata {
    let p = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    let checksum = c.string(at(v, &["checksum"]), &p("Checksum"), false);
    let hex = |s: &String| s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if checksum.as_ref().is_some_and(|s| !hex(s)) {
        c.fail(&p("Checksum"), "The checksum must be an MD5 hash of 32 lower-case hexadecimal characters.");
    }
    let expiration = match at(v, &["expirationInDays"]) {
        None => None,
        Some(n) => {
            let days = n.as_i64();
            if days.is_none() {
                c.fail(
                    &p("ExpirationInDays"),
                    "The JSON value could not be converted to System.Nullable`1[System.Int32].",
                );
            }
            days
        }
    };
    Metadata {
        file_name: c.string(at(v, &["fileName"]), &p("FileName"), false),
        display_name: c.string_max(at(v, &["displayName"]), &p("DisplayName"), false, MAX_DISPLAY_NAME_CHARS),
        is_encrypted: c.boolean(at(v, &["isEncrypted"]), &p("IsEncrypted")),
        checksum,
        senders_reference: c
            .string_max(at(v, &["sendersReference"]), &p("SendersReference"), true, MAX_SENDERS_REFERENCE_CHARS)
            .unwrap_or_default(),
        expiration_in_days: expiration,
    }
}

fn extension(file_name: &str) -> Option<String> {
    file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

/// The handler's file-name and expiry rules (2010–2013, 2017, 2021).
pub(crate) fn metadata_rules(m: &Metadata) -> Result<(), Problem> {
    let name = m.file_name.as_deref().unwrap_or_default();
    if name.trim().is_empty() {
        return Err(Problem::domain(2010, "Filename is missing"));
    }
    if utf16_len(name) > MAX_FILE_NAME_CHARS {
        return Err(Problem::domain(2011, "Filename is too long"));
    }
    if name.chars().any(|c| c.is_control() || INVALID_CHARS.contains(&c)) {
        return Err(Problem::domain(
            2012,
            "Filename contains invalid characters. Please avoid characters such as < > : \" / \\ | ? * and control characters.",
        ));
    }
    let stem = name.split('.').next().unwrap_or_default().trim();
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err(Problem::domain(2021, "The filename uses a Windows reserved name, which is not allowed"));
    }
    let known = extension(name).is_some_and(|e| FILE_TYPES.iter().any(|(t, _)| *t == e));
    if !known {
        return Err(Problem::domain(2013, "Filetype not allowed"));
    }
    if m.expiration_in_days.is_some_and(|d| d < MIN_EXPIRATION_DAYS) {
        return Err(Problem::domain(
            2017,
            format!("Attachment expirationTime must be at least {MIN_EXPIRATION_DAYS} days from now"),
        ));
    }
    Ok(())
}

/// A stored attachment.
#[derive(Clone, Debug)]
pub(crate) struct AttachmentRecord {
    pub id: Uuid,
    pub resource_id: String,
    pub metadata: Metadata,
    pub received: Option<Received>,
    pub upload_attempts: u32,
    pub correspondence_ids: Vec<Uuid>,
    pub history: Vec<(AttachmentStatus, String, DateTime<Utc>)>,
    /// When the malware scan of an upload in processing completes.
    pub scan_done: Option<DateTime<Utc>>,
    /// How many entries of `history` the events clock has seen (it is only appended to).
    pub announced: usize,
    /// `attachmentexpired` has been published.
    pub expiry_announced: bool,
}

impl AttachmentRecord {
    pub fn new(resource_id: &str, metadata: Metadata, now: DateTime<Utc>) -> AttachmentRecord {
        AttachmentRecord {
            id: Uuid::new_v4(),
            resource_id: resource_id.to_string(),
            metadata,
            received: None,
            upload_attempts: 0,
            correspondence_ids: Vec::new(),
            history: vec![(AttachmentStatus::Initialized, "Initialized".into(), now)],
            scan_done: None,
            announced: 0,
            expiry_announced: false,
        }
    }

    pub fn current(&self) -> &(AttachmentStatus, String, DateTime<Utc>) {
        self.history.last().expect("an attachment always has a status")
    }

    pub fn status(&self) -> AttachmentStatus {
        self.current().0
    }

    pub fn push(&mut self, status: AttachmentStatus, text: &str, at: DateTime<Utc>) {
        self.history.push((status, text.to_string(), at));
    }

    /// Records a completed upload; the scan finishes `scan_ms` later. A scan that would end
    /// past the calendar's end (`u64::MAX`: a scan whose result never comes) never ends, and
    /// the attachment answers `UploadProcessing` until it is purged or the test finishes it.
    pub fn uploaded(&mut self, received: Received, now: DateTime<Utc>, scan_ms: u64) {
        self.received = Some(received);
        self.push(AttachmentStatus::UploadProcessing, "UploadProcessing", now);
        let end =
            i64::try_from(scan_ms).ok().and_then(Duration::try_milliseconds).and_then(|d| now.checked_add_signed(d));
        self.scan_done = Some(end.unwrap_or(DateTime::<Utc>::MAX_UTC));
    }

    /// Applies the scan result if it is due at `now`.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let Some(done) = self.scan_done.filter(|d| now >= *d) else {
            return;
        };
        self.scan_done = None;
        if self.status() != AttachmentStatus::UploadProcessing {
            return;
        }
        if self.received.as_ref().is_some_and(|r| r.infected) {
            let text = format!("{MALWARE_FAILURE}Virus:DOS/EICAR_Test_File");
            self.push(AttachmentStatus::Failed, &text, done);
        } else {
            self.push(AttachmentStatus::Published, "Published", done);
        }
    }

    pub fn snapshot(&self) -> FakeAttachment {
        let (status, text, _) = self.current();
        FakeAttachment {
            id: self.id,
            file_name: self.metadata.file_name.clone().unwrap_or_default(),
            senders_reference: self.metadata.senders_reference.clone(),
            size: self.received.as_ref().map_or(0, |r| r.size),
            md5: self.received.as_ref().map(|r| r.md5.clone()),
            bytes: self.received.as_ref().and_then(|r| r.bytes.clone()),
            status: status.name(),
            status_text: text.clone(),
            upload_attempts: self.upload_attempts,
            correspondence_ids: self.correspondence_ids.clone(),
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `AttachmentOverviewExt`.
pub(crate) fn overview(a: &AttachmentRecord) -> Value {
    let (status, text, changed) = a.current();
    let m = &a.metadata;
    let name = m.file_name.clone().unwrap_or_default();
    let data_type = extension(&name).and_then(|e| FILE_TYPES.iter().find(|(t, _)| *t == e)).map(|(_, m)| *m);
    json!({
        "resourceId": a.resource_id,
        "sender": SENDER_URN,
        "fileName": name,
        "displayName": m.display_name,
        "isEncrypted": m.is_encrypted,
        "checksum": m.checksum.clone().or_else(|| a.received.as_ref().map(|r| r.md5.clone())),
        "sendersReference": m.senders_reference,
        "expirationInDays": m.expiration_in_days,
        "attachmentId": a.id,
        "status": status.name(),
        "statusText": text,
        "statusChanged": time(*changed),
        "correspondenceIds": a.correspondence_ids,
        "dataType": data_type.unwrap_or("application/octet-stream"),
    })
}

/// `AttachmentDetailsExt`: the overview plus the status history.
pub(crate) fn details(a: &AttachmentRecord) -> Value {
    let mut body = overview(a);
    let history: Vec<Value> = a
        .history
        .iter()
        .map(|(s, text, at)| json!({ "status": s.name(), "statusText": text, "statusChanged": time(*at) }))
        .collect();
    body["statusHistory"] = json!(history);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Metadata {
        Metadata { file_name: Some(name.into()), senders_reference: "r".into(), ..Metadata::default() }
    }

    fn code(name: &str) -> Option<u32> {
        match metadata_rules(&named(name)) {
            Ok(()) => None,
            Err(Problem::Domain { code, .. }) => Some(code),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scan_without_end_answers_upload_processing_for_ever_without_overflow() {
        let now = Utc::now();
        let received = || Received { size: 3, md5: "m".into(), infected: false, bytes: None };
        let mut endless = AttachmentRecord::new("r", named("a.pdf"), now);
        endless.uploaded(received(), now, u64::MAX);
        endless.advance(now + Duration::days(365 * 1000));
        assert_eq!(endless.status(), AttachmentStatus::UploadProcessing);
        let mut scanned = AttachmentRecord::new("r", named("b.pdf"), now);
        scanned.uploaded(received(), now, 1_000);
        scanned.advance(now + Duration::milliseconds(999));
        assert_eq!(scanned.status(), AttachmentStatus::UploadProcessing);
        scanned.advance(now + Duration::seconds(1));
        assert_eq!(scanned.status(), AttachmentStatus::Published, "an ordinary scan still ends on time");
    }

    #[test]
    fn file_names_follow_altinns_rules() {
        assert_eq!(code("report.PDF"), None);
        assert_eq!(code(" "), Some(2010));
        assert_eq!(code(&format!("{}.pdf", "a".repeat(252))), Some(2011));
        assert_eq!(code("a:b.pdf"), Some(2012));
        assert_eq!(code("tab\t.pdf"), Some(2012));
        assert_eq!(code("CON.txt"), Some(2021));
        assert_eq!(code("com1.doc"), Some(2021));
        assert_eq!(code("console.txt"), None);
        assert_eq!(code("run.exe"), Some(2013));
        assert_eq!(code("noextension"), Some(2013));
    }
}
