//! Reading a message's files for sending.

use sqlx::PgPool;

use crate::compose::attachment::FileMeta;

/// One file with its content, in insertion order (the order of the file parts).
pub struct File {
    pub meta: FileMeta,
    pub content: bytes::Bytes,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    file_name: String,
    display_name: Option<String>,
    senders_reference: String,
    size: i64,
    md5: String,
    content: Vec<u8>,
}

/// The files of a message. The MD5 and size are computed by PostgreSQL, next to the data.
pub async fn message_files(pool: &PgPool, message_id: i64) -> Result<Vec<File>, sqlx::Error> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT file_name, display_name, senders_reference, octet_length(content)::bigint AS size,
                md5(content) AS md5, content
         FROM altinn_outbox.attachment WHERE message_id = $1 ORDER BY id",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| File {
            meta: FileMeta {
                file_name: r.file_name,
                display_name: r.display_name,
                senders_reference: r.senders_reference,
                size: r.size,
                md5: r.md5,
            },
            content: bytes::Bytes::from(r.content),
        })
        .collect())
}
