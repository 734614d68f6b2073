//! Reading a message's files for sending.

use sqlx::PgPool;

use crate::compose::attachment::FileMeta;

/// One file with its content, in insertion order (the order of the file parts).
pub struct File {
    pub meta: FileMeta,
    pub content: bytes::Bytes,
}

/// The files of a message. The MD5 and size are computed by PostgreSQL, next to the data.
pub async fn message_files(pool: &PgPool, message_id: i64) -> Result<Vec<File>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, String, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT file_name, display_name, senders_reference, octet_length(content)::bigint, md5(content), content
         FROM altinn_outbox.attachment WHERE message_id = $1 ORDER BY id",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(file_name, display_name, senders_reference, size, md5, content)| File {
            meta: FileMeta { file_name, display_name, senders_reference, size, md5 },
            content: bytes::Bytes::from(content),
        })
        .collect())
}
