//! Files sent with a message: checked before any request (Altinn's 2004 and 2010 to 2021,
//! 1038), then described in `content.attachments` for the multipart request. That request is
//! read by ASP.NET's form binder, not its JSON reader, so what only the form cannot carry is
//! refused here too (see [`check_form_properties`]).

use serde_json::json;

use super::{invalid, Column, Invalid};
use crate::altinn::dictionary_key_binds;
use crate::altinn::wire::InitializeRequest;

const FIELD: Column = Column::Attachment;
const MAX_FILE_NAME: usize = 255;
const MAX_DISPLAY_NAME: usize = 255;
const MAX_SENDERS_REFERENCE: usize = 4096;
/// Altinn's limit per file in the multipart request: "2 GB", decimal.
pub const MAX_MULTIPART_FILE_BYTES: i64 = 2_000_000_000;
const ALLOWED_EXTENSIONS: [&str; 20] = [
    "doc", "xls", "docx", "xlsx", "ppt", "pps", "zip", "pdf", "html", "txt", "xml", "jpg", "jpeg", "gif", "bmp", "png",
    "json", "csv", "dcm", "dicom",
];
const FORBIDDEN_CHARACTERS: [char; 9] = ['<', '>', ':', '"', '/', '\\', '|', '?', '*'];
const RESERVED_NAMES: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];

/// What the worker knows of a file before sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub file_name: String,
    pub display_name: Option<String>,
    pub senders_reference: String,
    pub size: i64,
    /// Lower-case hex MD5, so that Altinn verifies what it received (2008 on mismatch).
    pub md5: String,
}

/// Checks every file and lists them in the request, in the order the file parts follow.
pub fn add_files(mut request: InitializeRequest, files: &[FileMeta]) -> Result<InitializeRequest, Invalid> {
    files.iter().try_for_each(check_file)?;
    check_form_properties(&request.correspondence.property_list)?;
    request.correspondence.content.attachments = files
        .iter()
        .map(|f| {
            json!({
                "fileName": f.file_name,
                "displayName": f.display_name,
                "sendersReference": f.senders_reference,
                "checksum": f.md5,
            })
        })
        .collect();
    Ok(request)
}

pub fn check_file(f: &FileMeta) -> Result<(), Invalid> {
    let name = f.file_name.as_str();
    let named = |problem: String| invalid(FIELD, format!("{name:?}: {problem}"));
    if name.trim().is_empty() {
        return Err(invalid(FIELD, "a file has no file_name (Altinn 2010)"));
    }
    if name.encode_utf16().count() > MAX_FILE_NAME {
        return Err(named(format!("the file name is longer than {MAX_FILE_NAME} characters (Altinn 2011)")));
    }
    if name.chars().any(|c| c.is_control() || FORBIDDEN_CHARACTERS.contains(&c)) {
        return Err(named(
            "the file name contains one of < > : \" / \\ | ? * or a control character (Altinn 2012)".into(),
        ));
    }
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    if !ALLOWED_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()) {
        return Err(named(format!("files of type .{extension} are not allowed (Altinn 2013)")));
    }
    if is_reserved(stem) {
        return Err(named("the file name is a reserved Windows name (Altinn 2021)".into()));
    }
    if f.display_name.as_deref().is_some_and(|d| d.encode_utf16().count() > MAX_DISPLAY_NAME) {
        return Err(named(format!("display_name is longer than {MAX_DISPLAY_NAME} characters")));
    }
    let reference = f.senders_reference.encode_utf16().count();
    if reference == 0 || reference > MAX_SENDERS_REFERENCE {
        return Err(named(format!("senders_reference must be 1 to {MAX_SENDERS_REFERENCE} characters")));
    }
    if f.size < 1 || f.size > MAX_MULTIPART_FILE_BYTES {
        return Err(named(format!(
            "the file must hold 1 to {MAX_MULTIPART_FILE_BYTES} bytes, not {} (Altinn 2004)",
            f.size
        )));
    }
    Ok(())
}

/// The property list as the form binder reads it back. It binds a blank value as null, and
/// Altinn's property-list check then fails on the null with a 500, so a blank value cannot
/// go in a request with files (it can without). Keys that differ only in case are one key to
/// the binder, and a key with both `]` and `.` or `[` has no field name that binds it.
fn check_form_properties(properties: &serde_json::Map<String, serde_json::Value>) -> Result<(), Invalid> {
    const FIELD: Column = Column::PropertyList;
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in properties {
        if value.as_str().is_none_or(|v| v.trim().is_empty()) {
            return Err(invalid(FIELD, format!("{key:?} is blank, which Altinn cannot take with files")));
        }
        if !dictionary_key_binds(key) {
            return Err(invalid(
                FIELD,
                format!("{key:?} holds `]` and `.` or `[`, which Altinn cannot take with files"),
            ));
        }
        let folded = key.to_lowercase();
        if seen.contains(&folded) {
            return Err(invalid(
                FIELD,
                format!("{key:?} differs from another key only in case, which Altinn cannot take with files"),
            ));
        }
        seen.push(folded);
    }
    Ok(())
}

/// CON, PRN, AUX, NUL, COM1 to COM9 and LPT1 to LPT9, in any case, before the first dot.
fn is_reserved(stem: &str) -> bool {
    let base = stem.split('.').next().unwrap_or(stem).trim_end().to_ascii_uppercase();
    if RESERVED_NAMES.contains(&base.as_str()) {
        return true;
    }
    let numbered = base.strip_prefix("COM").or_else(|| base.strip_prefix("LPT"));
    numbered.is_some_and(|n| n.len() == 1 && matches!(n.as_bytes()[0], b'1'..=b'9'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> FileMeta {
        FileMeta {
            file_name: name.into(),
            display_name: Some("Vedtak".into()),
            senders_reference: "att-1".into(),
            size: 1,
            md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
        }
    }

    #[track_caller]
    fn rejected(f: FileMeta, code: &str) {
        let e = check_file(&f).unwrap_err();
        assert_eq!(e.field, Column::Attachment);
        assert!(e.problem.contains(code), "{e} should cite {code}");
    }

    #[test]
    fn allowed_extensions_in_any_case() {
        for ok in ["vedtak.pdf", "Vedtak.PDF", "a.docx", "scan.dicom", "data.json", "x.y.csv"] {
            check_file(&file(ok)).unwrap();
        }
        rejected(file("virus.exe"), "2013");
        rejected(file("no-extension"), "2013");
        rejected(file(""), "2010");
    }

    #[test]
    fn forbidden_characters_and_reserved_names() {
        for bad in
            ["a<b.pdf", "a:b.pdf", "a\"b.pdf", "a/b.pdf", "a\\b.pdf", "a|b.pdf", "a?b.pdf", "a*b.pdf", "a\tb.pdf"]
        {
            rejected(file(bad), "2012");
        }
        for reserved in ["CON.txt", "nul.pdf", "Com1.doc", "LPT9.pdf", "aux.tar.zip"] {
            rejected(file(reserved), "2021");
        }
        for fine in ["CONTRACT.pdf", "COM10.pdf", "LPT0.pdf", "console.txt"] {
            check_file(&file(fine)).unwrap();
        }
    }

    #[test]
    fn limits_on_both_sides() {
        check_file(&file(&format!("{}.pdf", "a".repeat(251)))).unwrap();
        rejected(file(&format!("{}.pdf", "a".repeat(252))), "2011");
        let sized = |size| FileMeta { size, ..file("a.pdf") };
        check_file(&sized(MAX_MULTIPART_FILE_BYTES)).unwrap();
        rejected(sized(MAX_MULTIPART_FILE_BYTES + 1), "2004");
        rejected(sized(0), "2004");
        check_file(&FileMeta { display_name: Some("d".repeat(255)), ..file("a.pdf") }).unwrap();
        rejected(FileMeta { display_name: Some("d".repeat(256)), ..file("a.pdf") }, "display_name");
        rejected(FileMeta { senders_reference: String::new(), ..file("a.pdf") }, "senders_reference");
        check_file(&FileMeta { senders_reference: "r".repeat(4096), ..file("a.pdf") }).unwrap();
        rejected(FileMeta { senders_reference: "r".repeat(4097), ..file("a.pdf") }, "senders_reference");
    }

    #[test]
    fn properties_the_form_cannot_carry_are_refused_with_files() {
        let request = |props: serde_json::Value| {
            let m = crate::outbox::MessageRow { property_list: Some(props), ..crate::compose::tests::minimal() };
            let key = uuid::Uuid::nil();
            crate::compose::initialize_request(&m, "991825827", key, chrono::Utc::now()).unwrap()
        };
        let files = [file("a.pdf")];
        let fine = json!({"case.no": "42", "a[b": "x", "x]y": "z", "k": "v", "K2": "v"});
        add_files(request(fine), &files).unwrap();
        for bad in [json!({"k": ""}), json!({"k": "  "}), json!({"a].b": "v"}), json!({"Case": "1", "case": "2"})] {
            let e = add_files(request(bad.clone()), &files).unwrap_err();
            assert_eq!(e.field, Column::PropertyList, "{bad}");
        }
        // Without files the JSON request carries all of them.
        crate::compose::initialize_request(
            &crate::outbox::MessageRow { property_list: Some(json!({"k": ""})), ..crate::compose::tests::minimal() },
            "991825827",
            uuid::Uuid::nil(),
            chrono::Utc::now(),
        )
        .unwrap();
    }

    #[test]
    fn the_error_names_the_file() {
        let e = check_file(&file("rapport.exe")).unwrap_err();
        assert!(e.to_string().starts_with("attachment: \"rapport.exe\""), "{e}");
    }
}
