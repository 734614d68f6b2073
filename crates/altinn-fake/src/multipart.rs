//! A streaming `multipart/form-data` reader (RFC 7578) for the upload endpoint: text fields
//! are collected, file parts are fed chunk by chunk into a [`Sink`], so a large file is never
//! held whole.
//!
//! Written here rather than taken from axum's `multipart` feature (the `multer` crate) because
//! the fake must refuse a form where Altinn's ASP.NET form reading does, with its messages, and
//! multer cannot: it buffers a part's headers up to the blank line with no bound, where ASP.NET
//! stops at `MultipartHeadersLengthLimit`, and its errors are its own. (ASP.NET's limit on text
//! values could be counted on top of multer; the limit on headers cannot.)

use axum::body::Body;
use bytes::{Buf, BytesMut};
use futures::StreamExt;

use super::blob::{Received, Sink};

/// ASP.NET `FormOptions.ValueLengthLimit`: a longer text field fails form reading.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// ASP.NET `FormOptions.MultipartHeadersLengthLimit`.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One file part.
#[derive(Debug)]
pub(crate) struct FilePart {
    /// The form field name (`attachments` for files Altinn binds).
    pub name: String,
    pub file_name: String,
    pub received: Received,
}

/// A read form: text fields in order, files in order.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FilePart>,
}

/// The boundary of a `multipart/form-data` content type, or None for any other type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

enum Part {
    Text { name: String, value: Vec<u8> },
    File { name: String, file_name: String, sink: Sink },
}

enum Phase {
    Preamble,
    AfterDelimiter,
    Headers(Vec<String>),
    Content(Part),
    Done,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parameter of a Content-Disposition header, quoted or not.
fn parameter(header: &str, wanted: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        k.trim().eq_ignore_ascii_case(wanted).then(|| v.replace("\\\"", "\"").replace("\\\\", "\\"))
    })
}

fn start_part(headers: &[String]) -> Result<Part, String> {
    let disposition = headers
        .iter()
        .find_map(|h| h.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))
        .map(|(_, v)| v.trim().to_string())
        .ok_or("Multipart section has no Content-Disposition header")?;
    let name = parameter(&disposition, "name").unwrap_or_default();
    Ok(match parameter(&disposition, "filename") {
        Some(file_name) => Part::File { name, file_name, sink: Sink::default() },
        None => Part::Text { name, value: Vec::new() },
    })
}

fn feed(part: &mut Part, data: &[u8]) -> Result<(), String> {
    match part {
        Part::Text { value, .. } => {
            if value.len() + data.len() > MAX_VALUE_BYTES {
                return Err(format!("Form value length limit {MAX_VALUE_BYTES} exceeded."));
            }
            value.extend_from_slice(data);
        }
        Part::File { sink, .. } => sink.push(data),
    }
    Ok(())
}

fn finish(part: Part, form: &mut Form) -> Result<(), String> {
    match part {
        Part::Text { name, value } => {
            let value = String::from_utf8(value).map_err(|_| "A form value is not valid UTF-8")?;
            form.fields.push((name, value));
        }
        Part::File { name, file_name, sink } => form.files.push(FilePart { name, file_name, received: sink.finish() }),
    }
    Ok(())
}

/// Advances through `buf` as far as it allows; returns false when more input is needed.
fn step(phase: Phase, buf: &mut BytesMut, delimiter: &[u8], form: &mut Form) -> Result<(Phase, bool), String> {
    Ok(match phase {
        Phase::Preamble => match find(buf, delimiter) {
            Some(at) => {
                buf.advance(at + delimiter.len());
                (Phase::AfterDelimiter, true)
            }
            None => {
                buf.advance(buf.len().saturating_sub(delimiter.len()));
                (Phase::Preamble, false)
            }
        },
        Phase::AfterDelimiter if buf.len() < 2 => (Phase::AfterDelimiter, false),
        Phase::AfterDelimiter => match &buf[..2] {
            b"--" => (Phase::Done, true),
            b"\r\n" => {
                buf.advance(2);
                (Phase::Headers(Vec::new()), true)
            }
            _ => return Err("Malformed multipart boundary".into()),
        },
        Phase::Headers(mut headers) => match find(buf, b"\r\n") {
            Some(0) => {
                buf.advance(2);
                (Phase::Content(start_part(&headers)?), true)
            }
            Some(at) => {
                headers.push(String::from_utf8_lossy(&buf[..at]).into_owned());
                buf.advance(at + 2);
                if headers.iter().map(String::len).sum::<usize>() > MAX_HEADER_BYTES {
                    return Err(format!("Multipart headers length limit {MAX_HEADER_BYTES} exceeded."));
                }
                (Phase::Headers(headers), true)
            }
            None if buf.len() > MAX_HEADER_BYTES => {
                return Err(format!("Multipart headers length limit {MAX_HEADER_BYTES} exceeded."))
            }
            None => (Phase::Headers(headers), false),
        },
        Phase::Content(mut part) => match find(buf, delimiter) {
            Some(at) => {
                feed(&mut part, &buf[..at])?;
                buf.advance(at + delimiter.len());
                finish(part, form)?;
                (Phase::AfterDelimiter, true)
            }
            None => {
                // Keep what could be the start of a delimiter split across chunks.
                let safe = buf.len().saturating_sub(delimiter.len() - 1);
                feed(&mut part, &buf[..safe])?;
                buf.advance(safe);
                (Phase::Content(part), false)
            }
        },
        Phase::Done => {
            buf.clear();
            (Phase::Done, false)
        }
    })
}

/// Reads the whole form; Err carries ASP.NET's form-reading message.
pub(crate) async fn read(body: Body, boundary: &str) -> Result<Form, String> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let mut buf = BytesMut::new();
    // The first delimiter has no CRLF before it; adding one makes every delimiter alike.
    buf.extend_from_slice(b"\r\n");
    let mut stream = body.into_data_stream();
    let mut form = Form::default();
    let mut phase = Phase::Preamble;
    loop {
        let (next, progressed) = step(phase, &mut buf, &delimiter, &mut form)?;
        phase = next;
        if progressed {
            continue;
        }
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(format!("Failed to read the request form: {e}")),
            None if matches!(phase, Phase::Done) => return Ok(form),
            None => return Err("Unexpected end of Stream, the content may have already been read".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<&'static [u8]>) -> Body {
        Body::from_stream(futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)))
    }

    #[tokio::test]
    async fn fields_and_files_are_read_across_chunk_borders() {
        let raw: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"Recipients[0]\"\r\n\r\n\
0192:991825827\r\n--XyZ\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"a.pdf\"\r\n\
Content-Type: application/pdf\r\n\r\n%PDF\r\n--Xy-not-a-boundary\r\n--XyZ--\r\nepilogue";
        for split in [1, 3, 17, raw.len()] {
            let chunks: Vec<&'static [u8]> = raw.chunks(split).collect();
            let form = read(body(chunks), "XyZ").await.unwrap();
            assert_eq!(form.fields, vec![("Recipients[0]".to_string(), "0192:991825827".to_string())]);
            assert_eq!(form.files.len(), 1);
            assert_eq!((form.files[0].name.as_str(), form.files[0].file_name.as_str()), ("attachments", "a.pdf"));
            let bytes = form.files[0].received.bytes.clone().unwrap();
            assert_eq!(bytes, b"%PDF\r\n--Xy-not-a-boundary");
        }
    }

    #[tokio::test]
    async fn a_truncated_form_is_an_error() {
        let raw: &'static [u8] = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nvalue";
        assert!(read(body(vec![raw]), "b").await.is_err());
        assert_eq!(boundary("multipart/form-data; boundary=\"abc\"").as_deref(), Some("abc"));
        assert_eq!(boundary("application/json"), None);
    }
}
