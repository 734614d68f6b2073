//! The pull API as the safety net of pushes: per resource, the events
//! registered after the stored cursor, page by page until a page is empty, each stored through
//! `receive_event` with via `pull`. Storing is once per event id, so an event both pushed and
//! pulled is acted on once. This is how events missed while the receiver, the proxy or the
//! endpoint's validation was down are read, within `events.pull_interval_ms`.

use chrono::Utc;
use tracing::warn;

use super::manage::Manager;
use super::payload::Pushed;
use crate::altinn::ApiError;
use crate::outbox::events::{self as store, Via};
use crate::outbox::subscriptions as db;

/// The `after` of a resource never pulled: from the start (Events keeps 90 days).
const FROM_THE_START: &str = "0";
/// Pages read per resource and pull at most, so that one resource's backlog cannot hold the
/// others back for ever (1000 events a page: a million events).
const MAX_PAGES: usize = 1000;

/// What a pull of one resource read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Events new to the database (a push had missed them).
    pub stored: u64,
    /// Events stored before (pushed, or pulled already).
    pub duplicates: u64,
}

impl Manager {
    /// Pulls the resources whose last pull is older than `events.pull_interval_ms` (all of
    /// them with `all`); a resource whose pull fails is recorded and tried at the next pass.
    /// Returns how many resources were pulled and how many new events were stored.
    pub async fn pull_due(&self, resources: &[String], all: bool) -> Result<(usize, u64), sqlx::Error> {
        let interval = chrono::TimeDelta::from_std(self.settings.pull_interval).unwrap_or(chrono::TimeDelta::MAX);
        let (mut pulled, mut stored) = (0, 0);
        for resource in resources {
            let (cursor, last) = db::cursor(&self.ctx.pool, resource).await?;
            if !all && last.is_some_and(|at| Utc::now() - at < interval) {
                continue;
            }
            pulled += 1;
            match self.pull_after(resource, cursor).await {
                Ok(read) => {
                    stored += read.stored;
                    db::pulled(&self.ctx.pool, resource, None).await?;
                }
                Err(PullError::Api(e)) => {
                    warn!(resource, error = %e, "Altinn Events: could not pull events; trying again at the next pass");
                    db::pulled(&self.ctx.pool, resource, Some(&e.to_string())).await?;
                }
                Err(PullError::Db(e)) => return Err(e),
            }
        }
        Ok((pulled, stored))
    }

    /// Reads the events of `resource` after its cursor until a page is empty, storing each
    /// and moving the cursor after each page.
    pub async fn pull(&self, resource: &str) -> Result<Pulled, PullError> {
        let (cursor, _) = db::cursor(&self.ctx.pool, resource).await?;
        self.pull_after(resource, cursor).await
    }

    /// As [`Manager::pull`], from the cursor already read.
    async fn pull_after(&self, resource: &str, cursor: Option<String>) -> Result<Pulled, PullError> {
        let mut after = cursor.unwrap_or_else(|| FROM_THE_START.to_string());
        let mut read = Pulled::default();
        for _ in 0..MAX_PAGES {
            let page = self.ctx.altinn.pull(resource, &after).await?;
            let Some(last) = page.iter().rev().find_map(|e| e.get("id").and_then(|id| id.as_str())) else {
                break;
            };
            let last = last.to_string();
            for value in page {
                // An event without an id or type cannot be stored; the cursor passes it.
                let Ok(pushed) = Pushed::from_value(value) else { continue };
                if pushed.is_validation() {
                    continue;
                }
                if store::receive(&self.ctx.pool, &pushed.event(), Via::Pull).await?.stored {
                    read.stored += 1;
                } else {
                    read.duplicates += 1;
                }
            }
            db::advance_cursor(&self.ctx.pool, resource, &last).await?;
            after = last;
        }
        crate::metrics::events_pulled("stored", read.stored);
        crate::metrics::events_pulled("duplicate", read.duplicates);
        Ok(read)
    }
}

/// Why a pull stopped: Altinn's answer (recorded on the cursor) or the database.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}
