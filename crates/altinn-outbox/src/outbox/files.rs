//! Reading a message's files for sending, in chunks: a file is never whole in memory, so
//! memory stays bounded by the requests in flight, whatever the size of the files.

use std::sync::Arc;

use futures::Stream;
use sqlx::PgPool;

use crate::compose::attachment::FileMeta;

crate::statements! {
    CHUNK = "SELECT substring(content FROM $2::int FOR $3::int) FROM altinn_outbox.attachment WHERE id = $1";
    MESSAGE_FILES = "SELECT id, file_name, display_name, senders_reference, octet_length(content)::bigint AS size,
                md5(content) AS md5
         FROM altinn_outbox.attachment WHERE message_id = $1 ORDER BY id";
}

/// Bytes read per query. Large enough that a 60 MB file takes 60 round trips, small enough
/// that 64 uploads in flight hold 64 MB.
const CHUNK_BYTES: i64 = 1024 * 1024;

/// A file's metadata, and a way to read its content as often as a request needs it.
pub struct File {
    pub id: i64,
    pub meta: FileMeta,
    pub content: FileContent,
}

/// Opens a fresh stream over one file's content (each attempt of a request reads anew).
#[derive(Clone)]
pub struct FileContent {
    pool: PgPool,
    id: i64,
    size: i64,
}

impl FileContent {
    pub fn new(pool: PgPool, id: i64, size: i64) -> Self {
        FileContent { pool, id, size }
    }

    pub fn len(&self) -> u64 {
        self.size.max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.size <= 0
    }

    /// The content, chunk by chunk. `content` is stored uncompressed (STORAGE EXTERNAL), so
    /// each `substring` reads only its own part of the value.
    pub fn stream(&self) -> impl Stream<Item = Result<bytes::Bytes, sqlx::Error>> + Send + 'static {
        let this = Arc::new(self.clone());
        futures::stream::try_unfold(0i64, move |offset| {
            let this = this.clone();
            async move {
                if offset >= this.size {
                    return Ok(None);
                }
                let chunk: Vec<u8> = sqlx::query_scalar(CHUNK)
                    .bind(this.id)
                    .bind(offset + 1)
                    .bind(CHUNK_BYTES)
                    .fetch_one(&this.pool)
                    .await?;
                if chunk.is_empty() {
                    // The row changed under us; a short body makes the request fail and retry.
                    return Ok(None);
                }
                let next = offset + chunk.len() as i64;
                Ok(Some((bytes::Bytes::from(chunk), next)))
            }
        })
    }
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: i64,
    file_name: String,
    display_name: Option<String>,
    senders_reference: String,
    size: i64,
    md5: String,
}

/// The files of a message, without their content. The MD5 and size are computed by
/// PostgreSQL, next to the data.
pub async fn message_files(pool: &PgPool, message_id: i64) -> Result<Vec<File>, sqlx::Error> {
    let rows: Vec<FileRow> = sqlx::query_as(MESSAGE_FILES).bind(message_id).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| File {
            id: r.id,
            content: FileContent::new(pool.clone(), r.id, r.size),
            meta: FileMeta {
                file_name: r.file_name,
                display_name: r.display_name,
                senders_reference: r.senders_reference,
                size: r.size,
                md5: r.md5,
            },
        })
        .collect())
}
