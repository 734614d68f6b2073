//! The statements of managing Altinn Events subscriptions and pulling events: the lease that
//! lets one instance at a time do it, the resources to subscribe to, what was made at Altinn,
//! and the pull's cursor per resource. The endpoint (it holds the secret) is never stored:
//! only its SHA-256, computed here.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

crate::statements! {
    /// Taken when free or expired, renewed by its holder; no row: another instance has it.
    TAKE_LEASE = "UPDATE altinn_outbox.event_receiver
         SET manager = $1, managed_until = now() + make_interval(secs => $2)
         WHERE managed_until IS NULL OR managed_until <= now() OR manager = $1
         RETURNING true";
    RELEASE_LEASE = "UPDATE altinn_outbox.event_receiver SET managed_until = NULL WHERE manager = $1";
    /// Resources with letters not finished: still to be sent, or followed (an awaited status
    /// has `next_poll_at`); delivery.resource_id copies the message's. Written as one test
    /// per partial index of delivery, so that finished rows are never scanned. Plus those
    /// configured.
    RESOURCES = "SELECT DISTINCT d.resource_id FROM altinn_outbox.delivery d
         WHERE d.state = 'pending' OR d.state = 'waiting_files' OR d.state = 'sending' OR d.next_poll_at IS NOT NULL
         UNION SELECT unnest($1::text[])
         ORDER BY 1";
    SUBSCRIPTIONS = "SELECT resource_id, subscription_id,
             endpoint_sha256 = encode(sha256(convert_to($1, 'UTF8')), 'hex') AS current_endpoint,
             type_filter, validated, created_at, posted_at, validated_at, checked_at, overdue_since, last_error
         FROM altinn_outbox.event_subscription ORDER BY resource_id";
    /// What Altinn answered a POST (or a list found): a new subscription id or endpoint
    /// starts over, unvalidated unless Altinn says otherwise.
    RECORD_POSTED = "INSERT INTO altinn_outbox.event_subscription
             (resource_id, subscription_id, endpoint_sha256, type_filter, validated, validated_at)
         VALUES ($1, $2, encode(sha256(convert_to($3, 'UTF8')), 'hex'), $4, $5, CASE WHEN $5 THEN now() END)
         ON CONFLICT (resource_id) DO UPDATE SET subscription_id = EXCLUDED.subscription_id,
             endpoint_sha256 = EXCLUDED.endpoint_sha256, type_filter = EXCLUDED.type_filter,
             validated = EXCLUDED.validated, posted_at = now(), checked_at = now(),
             validated_at = CASE WHEN EXCLUDED.validated THEN coalesce(event_subscription.validated_at, now()) END,
             overdue_since = CASE WHEN EXCLUDED.validated THEN NULL ELSE event_subscription.overdue_since END,
             last_error = NULL";
    /// A read of the subscription: validated or not yet.
    RECORD_CHECKED = "UPDATE altinn_outbox.event_subscription
         SET validated = $2, checked_at = now(), last_error = NULL,
             validated_at = CASE WHEN $2 THEN coalesce(validated_at, now()) END,
             overdue_since = CASE WHEN $2 THEN NULL ELSE overdue_since END
         WHERE resource_id = $1";
    MARK_OVERDUE = "UPDATE altinn_outbox.event_subscription SET overdue_since = coalesce(overdue_since, now())
         WHERE resource_id = $1";
    RECORD_ERROR = "UPDATE altinn_outbox.event_subscription SET last_error = left($2, 2000), checked_at = now()
         WHERE resource_id = $1";
    FORGET = "DELETE FROM altinn_outbox.event_subscription WHERE resource_id = $1";
    FORGET_ID = "DELETE FROM altinn_outbox.event_subscription WHERE subscription_id = $1";
    /// For readiness, from any instance.
    OVERDUE = "SELECT resource_id, subscription_id, posted_at FROM altinn_outbox.event_subscription
         WHERE overdue_since IS NOT NULL AND NOT validated ORDER BY resource_id";
    CURSOR = "SELECT last_event_id, pulled_at FROM altinn_outbox.event_cursor WHERE resource_id = $1";
    /// Moves the cursor after each page, so that a failure later in a backlog keeps what was read.
    ADVANCE_CURSOR = "INSERT INTO altinn_outbox.event_cursor (resource_id, last_event_id) VALUES ($1, $2)
         ON CONFLICT (resource_id) DO UPDATE SET last_event_id = EXCLUDED.last_event_id";
    PULLED = "INSERT INTO altinn_outbox.event_cursor (resource_id, pulled_at, last_error) VALUES ($1, now(), left($2, 2000))
         ON CONFLICT (resource_id) DO UPDATE SET pulled_at = now(), last_error = EXCLUDED.last_error";
}

/// One stored subscription.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct Stored {
    pub resource_id: String,
    pub subscription_id: i64,
    /// Whether it was made for the endpoint the daemon has now.
    pub current_endpoint: bool,
    pub type_filter: Option<String>,
    pub validated: bool,
    pub created_at: DateTime<Utc>,
    pub posted_at: DateTime<Utc>,
    pub validated_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
    pub overdue_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Takes or renews the lease for `instance` for `lease`; false when another instance holds it.
pub async fn take_lease(pool: &PgPool, instance: &str, lease: std::time::Duration) -> Result<bool, sqlx::Error> {
    let taken: Option<bool> =
        sqlx::query_scalar(TAKE_LEASE).bind(instance).bind(lease.as_secs_f64()).fetch_optional(pool).await?;
    Ok(taken.is_some())
}

pub async fn release_lease(pool: &PgPool, instance: &str) -> Result<(), sqlx::Error> {
    sqlx::query(RELEASE_LEASE).bind(instance).execute(pool).await?;
    Ok(())
}

/// The resources to subscribe to and pull: those with letters not finished, and `configured`.
pub async fn resources(pool: &PgPool, configured: &[String]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(RESOURCES).bind(configured).fetch_all(pool).await
}

/// Every stored subscription, each saying whether it was made for `endpoint`.
pub async fn subscriptions(pool: &PgPool, endpoint: &str) -> Result<Vec<Stored>, sqlx::Error> {
    sqlx::query_as(SUBSCRIPTIONS).bind(endpoint).fetch_all(pool).await
}

pub async fn record_posted(
    pool: &PgPool,
    resource_id: &str,
    subscription_id: i64,
    endpoint: &str,
    type_filter: Option<&str>,
    validated: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_POSTED)
        .bind(resource_id)
        .bind(subscription_id)
        .bind(endpoint)
        .bind(type_filter)
        .bind(validated)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn record_checked(pool: &PgPool, resource_id: &str, validated: bool) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_CHECKED).bind(resource_id).bind(validated).execute(pool).await?;
    Ok(())
}

pub async fn mark_overdue(pool: &PgPool, resource_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_OVERDUE).bind(resource_id).execute(pool).await?;
    Ok(())
}

pub async fn record_error(pool: &PgPool, resource_id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_ERROR).bind(resource_id).bind(error).execute(pool).await?;
    Ok(())
}

pub async fn forget(pool: &PgPool, resource_id: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(FORGET).bind(resource_id).execute(pool).await?.rows_affected() > 0)
}

/// Forgets the stored subscription with Altinn's id `subscription_id`; false if none.
pub async fn forget_id(pool: &PgPool, subscription_id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(FORGET_ID).bind(subscription_id).execute(pool).await?.rows_affected() > 0)
}

/// Subscriptions unvalidated past the timeout: (resource, Altinn's id, last POST).
pub async fn overdue(pool: &PgPool) -> Result<Vec<(String, i64, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(OVERDUE).fetch_all(pool).await
}

/// The pull's cursor of a resource (None: from the start) and when it was last pulled.
pub async fn cursor(pool: &PgPool, resource_id: &str) -> Result<(Option<String>, Option<DateTime<Utc>>), sqlx::Error> {
    let row: Option<(Option<String>, Option<DateTime<Utc>>)> =
        sqlx::query_as(CURSOR).bind(resource_id).fetch_optional(pool).await?;
    Ok(row.unwrap_or_default())
}

pub async fn advance_cursor(pool: &PgPool, resource_id: &str, last_event_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(ADVANCE_CURSOR).bind(resource_id).bind(last_event_id).execute(pool).await?;
    Ok(())
}

/// A pull of the resource ended, with `error` if it failed.
pub async fn pulled(pool: &PgPool, resource_id: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(PULLED).bind(resource_id).bind(error).execute(pool).await?;
    Ok(())
}
