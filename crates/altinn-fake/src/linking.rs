//! Which attachments an initialize request brings, and whether it may: new files matched to
//! their metadata by file name, existing attachments looked up by id, and the limits on
//! both (1005, 2004, 2008, 2010–2021, 1007, 1018, 1038, 1069). Both initialize endpoints
//! run these rules; the JSON endpoint simply has no files.

use serde_json::Value;
use uuid::Uuid;

use super::attachment::{metadata_rules, AttachmentRecord, AttachmentStatus, Metadata};
use super::blob::Received;
use super::model::at;
use super::multipart::FilePart;
use super::problem::Problem;

/// Altinn's per-correspondence attachment limit, new and existing together (1038).
const MAX_ATTACHMENTS: usize = 100;
/// The multipart endpoint's per-file limit: decimal 2 GB (trap 23).
const MAX_FILE_BYTES: u64 = 2_000_000_000;
/// `allowForwarding` is refused above this total attachment size (1069).
const MAX_FORWARDABLE_BYTES: u64 = 10_000_000;
/// The form field Altinn binds files from (case-insensitive).
const FILE_FIELD: &str = "attachments";

/// The attachments a valid request links to its correspondences.
#[derive(Debug, Default)]
pub(crate) struct AttachmentPlan {
    /// New files with their metadata, to store as uploaded.
    pub new: Vec<(Metadata, Received)>,
    /// Existing, Published attachments.
    pub existing: Vec<Uuid>,
}

fn mismatch() -> Problem {
    Problem::domain(1005, "Mismatch between uploaded files and attachment metadata")
}

/// Pairs each metadata entry with its file: the i-th file if its name matches, else the one
/// file with that name.
fn match_files(metadata: Vec<Metadata>, files: Vec<FilePart>) -> Result<Vec<(Metadata, Received)>, Problem> {
    let mut files: Vec<Option<FilePart>> =
        files.into_iter().filter(|f| f.name.eq_ignore_ascii_case(FILE_FIELD)).map(Some).collect();
    if files.len() != metadata.len() {
        return Err(mismatch());
    }
    let mut matched = Vec::new();
    for (i, meta) in metadata.into_iter().enumerate() {
        let name = meta.file_name.clone().unwrap_or_default();
        let same = |f: &Option<FilePart>| f.as_ref().is_some_and(|f| f.file_name == name);
        let index = if same(&files[i]) {
            i
        } else {
            let candidates: Vec<usize> = (0..files.len()).filter(|j| same(&files[*j])).collect();
            match candidates.as_slice() {
                [only] => *only,
                _ => return Err(mismatch()),
            }
        };
        let file = files[index].take().ok_or_else(mismatch)?;
        matched.push((meta, file.received));
    }
    Ok(matched)
}

fn existing_ids(body: &Value) -> Result<Vec<Uuid>, Problem> {
    let list = at(body, &["existingAttachments"]).and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| {
                Problem::validation(&format!("ExistingAttachments[{i}]"), format!("The value '{v}' is not valid."))
            })
        })
        .collect()
}

/// Checks the request's attachments against the files sent and the attachments stored.
pub(crate) fn plan(
    body: &Value,
    metadata: Vec<Metadata>,
    files: Vec<FilePart>,
    stored: &[AttachmentRecord],
) -> Result<AttachmentPlan, Problem> {
    let existing = existing_ids(body)?;
    let new = match_files(metadata, files)?;
    if new.iter().any(|(_, r)| r.size == 0 || r.size > MAX_FILE_BYTES) {
        return Err(Problem::domain(2004, "File must have content and has a max file size of 2GB"));
    }
    for (meta, _) in &new {
        metadata_rules(meta)?;
    }
    let mut existing_bytes = 0;
    for id in &existing {
        let Some(a) = stored.iter().find(|a| a.id == *id) else {
            return Err(Problem::domain(1007, "Existing attachment not found"));
        };
        if a.status() != AttachmentStatus::Published {
            return Err(Problem::domain(1018, "Attachment is not published"));
        }
        existing_bytes += a.received.as_ref().map_or(0, |r| r.size);
    }
    if new.len() + existing.len() > MAX_ATTACHMENTS {
        return Err(Problem::domain(1038, "A correspondence cannot contain more than 100 attachments in total"));
    }
    let total: u64 = existing_bytes + new.iter().map(|(_, r)| r.size).sum::<u64>();
    let forwarding = at(body, &["correspondence", "allowForwarding"]).and_then(Value::as_bool) == Some(true);
    if forwarding && total > MAX_FORWARDABLE_BYTES {
        return Err(Problem::domain(
            1069,
            "Correspondence cannot allow forwarding if the total size of attachments exceeds 10 MB",
        ));
    }
    if new.iter().any(|(m, r)| m.checksum.as_ref().is_some_and(|c| *c != r.md5)) {
        return Err(Problem::domain(2008, "Checksum mismatch"));
    }
    Ok(AttachmentPlan { new, existing })
}
