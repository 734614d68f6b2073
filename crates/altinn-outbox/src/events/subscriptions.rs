//! One subscription per resource at Altinn Events: found among our
//! own by listing (same resource filter, endpoint and type filter) or created; re-read until
//! Altinn has validated the endpoint; POSTed again when it stays unvalidated past
//! `events.validation_timeout_ms` (a POST of the same body sends a new handshake), which is
//! reported loudly. A subscription for an old endpoint (the secret changed) is deleted.

use chrono::Utc;
use tracing::{error, info, warn};

use super::manage::Manager;
use crate::altinn::events::{resource_filter, Subscription};
use crate::altinn::ApiError;
use crate::outbox::subscriptions::{self as db, Stored};

/// A validated subscription is read again this rarely, to notice one deleted at Altinn.
const VALIDATED_RECHECK: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Where a resource's subscription stands after a check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensured {
    Validated {
        resource: String,
        id: i64,
    },
    /// Made or found, waiting for the handshake.
    Waiting {
        resource: String,
        id: i64,
    },
    /// Unvalidated past the timeout: reported, and POSTed again.
    Overdue {
        resource: String,
        id: i64,
    },
    /// A call failed (recorded on the row): tried again at the next check.
    Failed {
        resource: String,
        error: String,
        /// Whether the same call may succeed later without a fix ([`ApiError::worth_retrying`]).
        #[serde(skip)]
        worth_retrying: bool,
    },
}

impl Manager {
    /// Ensures the subscription of each resource; sets the gauge of overdue ones.
    pub async fn ensure_all(&self, resources: &[String]) -> Result<Vec<Ensured>, sqlx::Error> {
        let stored = db::subscriptions(&self.ctx.pool, self.endpoint.expose()).await?;
        let mut done = Vec::with_capacity(resources.len());
        for resource in resources {
            let mine = stored.iter().find(|s| &s.resource_id == resource);
            done.push(self.ensure(resource, mine).await?);
        }
        let overdue = done.iter().filter(|e| matches!(e, Ensured::Overdue { .. })).count();
        crate::metrics::event_subscriptions_unvalidated(overdue);
        Ok(done)
    }

    /// Ensures the subscription of one resource; Altinn's failures are recorded, not returned.
    pub async fn ensure(&self, resource: &str, stored: Option<&Stored>) -> Result<Ensured, sqlx::Error> {
        let result = match stored {
            Some(s) if s.current_endpoint && s.type_filter == self.settings.type_filter => self.check(s).await,
            Some(old) => {
                // Made for another endpoint or type: Altinn would push to a path that no longer
                // exists. Deleted (failures only leave it to Altinn's retries), then made anew.
                if let Err(e) = self.ctx.altinn.unsubscribe(old.subscription_id).await {
                    warn!(resource, subscription = old.subscription_id, error = %e, "could not delete an outdated subscription");
                }
                self.find_or_create(resource).await
            }
            None => self.find_or_create(resource).await,
        };
        match result {
            Ok(ensured) => Ok(ensured),
            Err(Failure::Db(e)) => Err(e),
            Err(Failure::Api(e)) => {
                // Said once per error, not at every check while it lasts (the row keeps it).
                if stored.and_then(|s| s.last_error.as_deref()) != Some(e.to_string().as_str()) {
                    warn!(resource, error = %e, "Altinn Events: could not ensure the subscription; trying again at each check");
                }
                db::record_error(&self.ctx.pool, resource, &e.to_string()).await?;
                Ok(Ensured::Failed {
                    resource: resource.to_string(),
                    error: e.to_string(),
                    worth_retrying: e.worth_retrying(),
                })
            }
        }
    }

    /// Our own subscription with the same filters and endpoint, else a new one.
    async fn find_or_create(&self, resource: &str) -> Result<Ensured, Failure> {
        let filter = resource_filter(resource);
        let own = self.ctx.altinn.subscriptions().await?.into_iter().find(|s| {
            s.resource_filter.as_deref() == Some(filter.as_str())
                && s.end_point == self.endpoint.expose()
                && s.type_filter == self.settings.type_filter
        });
        let subscription = match own {
            Some(found) => found,
            None => self.post(resource).await?,
        };
        info!(
            resource,
            subscription = subscription.id,
            validated = subscription.validated,
            "Altinn Events subscription recorded"
        );
        self.record(resource, &subscription).await?;
        Ok(waiting_or_validated(resource, &subscription))
    }

    async fn post(&self, resource: &str) -> Result<Subscription, ApiError> {
        let endpoint = self.endpoint.expose();
        self.ctx.altinn.subscribe(endpoint, resource, self.settings.type_filter.as_deref()).await
    }

    async fn record(&self, resource: &str, s: &Subscription) -> Result<(), sqlx::Error> {
        let endpoint = self.endpoint.expose();
        db::record_posted(&self.ctx.pool, resource, s.id, endpoint, self.settings.type_filter.as_deref(), s.validated)
            .await
    }

    /// Reads a stored subscription again: validated, still waiting, overdue (re-POSTed), or
    /// gone at Altinn (made again).
    async fn check(&self, s: &Stored) -> Result<Ensured, Failure> {
        let resource = s.resource_id.as_str();
        let now = Utc::now();
        if s.validated && now - s.checked_at < VALIDATED_RECHECK {
            return Ok(Ensured::Validated { resource: resource.to_string(), id: s.subscription_id });
        }
        let Some(read) = self.ctx.altinn.subscription(s.subscription_id).await? else {
            warn!(resource, subscription = s.subscription_id, "the subscription is gone at Altinn; making it again");
            db::forget(&self.ctx.pool, resource).await?;
            return self.find_or_create(resource).await;
        };
        db::record_checked(&self.ctx.pool, resource, read.validated).await?;
        if read.validated {
            if !s.validated {
                info!(resource, subscription = s.subscription_id, "Altinn Events validated the subscription");
            }
            return Ok(Ensured::Validated { resource: resource.to_string(), id: s.subscription_id });
        }
        let waited = (now - s.posted_at).to_std().unwrap_or_default();
        if waited < self.settings.validation_timeout {
            let (resource, id) = (resource.to_string(), s.subscription_id);
            // Re-POSTed after the timeout, and waiting again: still reported until validated.
            return Ok(if s.overdue_since.is_some() {
                Ensured::Overdue { resource, id }
            } else {
                Ensured::Waiting { resource, id }
            });
        }
        self.overdue(s, waited).await
    }

    /// Says once (ERROR) that the endpoint is not validated, marks it for readiness, and
    /// POSTs the same subscription again: Altinn answers with the same id and a new handshake.
    async fn overdue(&self, s: &Stored, waited: std::time::Duration) -> Result<Ensured, Failure> {
        let resource = s.resource_id.as_str();
        if s.overdue_since.is_none() {
            error!(
                resource,
                subscription = s.subscription_id,
                waited_s = waited.as_secs(),
                "Altinn Events has not validated the endpoint: no pushes come until it does (letters are \
                 still read by the safety poll and the pull). Check that events.public_url reaches \
                 events.listen through the proxy and answers 2xx; POSTing the subscription again"
            );
        } else {
            warn!(resource, subscription = s.subscription_id, "still not validated; POSTing the subscription again");
        }
        db::mark_overdue(&self.ctx.pool, resource).await?;
        let posted = self.post(resource).await?;
        self.record(resource, &posted).await?;
        Ok(if posted.validated {
            Ensured::Validated { resource: resource.to_string(), id: posted.id }
        } else {
            Ensured::Overdue { resource: resource.to_string(), id: posted.id }
        })
    }
}

fn waiting_or_validated(resource: &str, s: &Subscription) -> Ensured {
    let (resource, id) = (resource.to_string(), s.id);
    if s.validated {
        Ensured::Validated { resource, id }
    } else {
        Ensured::Waiting { resource, id }
    }
}

/// A call to Altinn failed (recorded, tried again) or the database did (the pass stops).
enum Failure {
    Api(ApiError),
    Db(sqlx::Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Db(e)
    }
}
