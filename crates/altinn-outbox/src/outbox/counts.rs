//! What the outbox holds right now, for the `/metrics` gauges: deliveries by state, shared
//! uploads by state, and how long the oldest unsent delivery has waited. Read when a scrape
//! asks, so the numbers are as fresh as the scrape and cost nothing between scrapes.

use sqlx::PgPool;

use super::states::{DeliveryState, UploadState};

crate::statements! {
    COUNTS = "SELECT 'delivery', state, count(*), 0::float8 FROM altinn_outbox.delivery GROUP BY state
         UNION ALL
         SELECT 'upload', upload_state, count(*), 0 FROM altinn_outbox.attachment
         WHERE upload_state <> 'none' GROUP BY upload_state
         UNION ALL
         SELECT 'age', '', 0, coalesce(extract(epoch FROM now() - min(m.created_at)), 0)::float8
         FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id
         WHERE d.state IN ('pending', 'waiting_files', 'sending')";
}

/// Every state a delivery can be in ([`DeliveryState::ALL`]): each is reported, with zero
/// when no row is in it, so a state that empties reads 0 instead of vanishing from the scrape.
pub fn delivery_states() -> impl Iterator<Item = &'static str> {
    DeliveryState::ALL.into_iter().map(DeliveryState::as_str)
}

/// The states of a shared upload ([`UploadState::ALL`] less `none`: files sent inside their
/// multipart request have no upload of their own).
pub fn upload_states() -> impl Iterator<Item = &'static str> {
    UploadState::ALL.into_iter().filter(|s| *s != UploadState::None).map(UploadState::as_str)
}

/// One reading of the outbox.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Rows per delivery state, in [`DeliveryState::ALL`] order, then any state the constraint
    /// gained after this binary was built (kept as text for that reason).
    pub deliveries: Vec<(String, i64)>,
    /// Shared uploads per state, in [`UploadState::ALL`] order.
    pub uploads: Vec<(String, i64)>,
    /// Seconds since the oldest delivery that Altinn does not have yet (pending, waiting for
    /// its files, or being sent) was inserted; 0 when there is none.
    pub oldest_unsent_age_s: f64,
}

/// Reads the counts in one round trip. Grouping scans the delivery table: fine for the
/// millions of rows a year of sending makes, at one scrape every few seconds.
pub async fn counts(pool: &PgPool) -> Result<Counts, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(COUNTS).fetch_all(pool).await?;
    let of = |kind: &str| -> Vec<(String, i64)> {
        rows.iter().filter(|r| r.0 == kind).map(|r| (r.1.clone(), r.2)).collect()
    };
    let oldest_unsent_age_s = rows.iter().find(|r| r.0 == "age").map_or(0.0, |r| r.3.max(0.0));
    Ok(Counts {
        deliveries: with_zeros(delivery_states(), of("delivery")),
        uploads: with_zeros(upload_states(), of("upload")),
        oldest_unsent_age_s,
    })
}

/// Every known state in its order (zero if absent), then the unknown ones found.
pub(crate) fn with_zeros(
    known: impl IntoIterator<Item = &'static str>,
    found: Vec<(String, i64)>,
) -> Vec<(String, i64)> {
    let known: Vec<&str> = known.into_iter().collect();
    let count = |state: &str| found.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let mut all: Vec<(String, i64)> = known.iter().map(|s| (s.to_string(), count(s))).collect();
    all.extend(found.iter().filter(|(s, _)| !known.contains(&s.as_str())).cloned());
    all
}
