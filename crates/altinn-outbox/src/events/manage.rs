//! The daemon's side of Altinn Events besides the receiver: one subscription per resource
//! ([`super::subscriptions`]) and the pull that catches up what pushes missed
//! ([`super::pull`]). One instance at a time does both: the database decides, by a lease on
//! the receiver's row that the holder renews at each pass; no call is made with a row locked.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{EventsSettings, Secret};
use crate::outbox::subscriptions as db;
use crate::worker::Context;

/// The lease outlives this many passes, so that a holder that stopped is replaced within
/// about three check intervals, and a holder that is only slow keeps it.
const LEASE_PASSES: u32 = 3;
/// A lease no shorter than this: a pass over many resources takes a while.
const MIN_LEASE: Duration = Duration::from_secs(30);

/// What managing needs: the context's pool and Altinn client, the endpoint, the settings.
pub struct Manager {
    pub(super) ctx: Arc<Context>,
    /// `<public_url>/<secret>`: never logged.
    pub(super) endpoint: Secret,
    pub(super) settings: EventsSettings,
}

/// What one pass did, for the log and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub subscriptions: Vec<super::subscriptions::Ensured>,
    /// Resources pulled, and events stored by the pull (new: a push missed them).
    pub pulled: usize,
    pub pulled_new: u64,
}

impl Manager {
    pub fn new(ctx: Arc<Context>, endpoint: Secret, settings: EventsSettings) -> Manager {
        Manager { ctx, endpoint, settings }
    }

    /// The endpoint Altinn pushes to (it holds the secret: never log it).
    pub fn endpoint(&self) -> &str {
        self.endpoint.expose()
    }

    fn lease(&self) -> Duration {
        (self.settings.check_interval * LEASE_PASSES).max(MIN_LEASE)
    }

    /// Whether this instance holds (or now takes) the lease.
    pub async fn take_lease(&self) -> Result<bool, sqlx::Error> {
        db::take_lease(&self.ctx.pool, &self.ctx.settings.instance, self.lease()).await
    }

    /// One pass, if this instance holds the lease (None otherwise): every resource's
    /// subscription is ensured, and the resources due (or all, with `pull_all`) are pulled.
    pub async fn pass(&self, pull_all: bool) -> Result<Option<Pass>, sqlx::Error> {
        if !self.take_lease().await? {
            return Ok(None);
        }
        let resources = db::resources(&self.ctx.pool, &self.settings.resources).await?;
        let subscriptions = self.ensure_all(&resources).await?;
        let (pulled, pulled_new) = self.pull_due(&resources, pull_all).await?;
        Ok(Some(Pass { subscriptions, pulled, pulled_new }))
    }
}

/// Manages subscriptions and pulls every `events.subscription_check_interval_ms` while this
/// instance holds the lease, until `shutdown`; then gives the lease up for another instance.
pub async fn run(manager: Manager, shutdown: CancellationToken) {
    // The first pass this instance makes as holder pulls every resource: after a restart,
    // whatever was pushed while it was down is read at once.
    let mut pull_all = true;
    loop {
        match manager.pass(pull_all).await {
            Ok(Some(pass)) => {
                pull_all = false;
                if pass.pulled_new > 0 {
                    info!(resources = pass.pulled, events = pass.pulled_new, "pulled events that pushes had missed");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not manage the Altinn Events subscriptions; trying again"),
        }
        if tokio::time::timeout(manager.settings.check_interval, shutdown.cancelled()).await.is_ok() {
            break;
        }
    }
    if let Err(e) = db::release_lease(&manager.ctx.pool, &manager.ctx.settings.instance).await {
        warn!(error = %e, "could not give up the Altinn Events lease; it expires by itself");
    }
}
