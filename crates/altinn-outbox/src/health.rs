//! The health listener: `/healthz` says the process is alive; `/readyz` says whether it
//! can do its work (the database answers, a token can be had, and Altinn accepts it for the
//! resources it was used for), and if not, why, in words an operator can act on; `/metrics` is for Prometheus ([`crate::metrics`]). Off
//! unless `health.listen` is set, and on localhost unless `health.allow_remote`: there is no
//! authentication, and readiness and metrics tell how the service and its setup are doing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::altinn::FaultReport;
use crate::maskinporten::AuthStatus;
use crate::worker::Context;

/// A probe is answered within this even when the database hangs: a slow answer is a "no".
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or what went wrong.
    pub database: String,
    /// The token client's state; `misconfigured` names what to fix.
    pub token: AuthStatus,
    /// `up`, `throttled` (a 429 wait), `looks down` (requests held back and probed), or
    /// `sends look down` / `reads look down` (one kind held back, the other going).
    pub altinn: &'static str,
    /// `ok`, or why claiming work keeps failing (letters wait meanwhile).
    pub claims: String,
    /// Resources Altinn refuses us for (a scope the token lacks, no access in Altinn
    /// Authorization): their rows wait without using attempts until an operator fixes it.
    /// Empty when none; each names the resource, the fault, the code its rows get, what is
    /// missing, what to do, and since when.
    pub config_faults: Vec<FaultReport>,
    /// Altinn Events subscriptions Altinn has not validated `events.validation_timeout_ms`
    /// after their POST: no pushes come for those resources (letters are still read by the
    /// safety poll and the pull, later). Empty when none or events are off. Not counted
    /// against `ready`: sending goes on.
    pub unvalidated_subscriptions: Vec<String>,
}

/// The exposition format's content type, which Prometheus negotiates by.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Probes {
    ctx: Arc<Context>,
    metrics: PrometheusHandle,
}

/// Serves the probes and the metrics of `metrics` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::spawn(crate::metrics::upkeep(metrics.clone(), shutdown.clone()));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(Probes { ctx, metrics });
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, Json<Readiness>) {
    let readiness = readiness(&probes.ctx).await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

/// Always 200: a database that does not answer shows as `altinn_outbox_database_up 0`.
async fn scrape(State(probes): State<Probes>) -> ([(header::HeaderName, &'static str); 1], String) {
    let text = crate::metrics::render(&probes.metrics, &probes.ctx.pool).await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text)
}

/// Ready when the database answers, a token can be had (from the cache, or one refresh;
/// during a failure cool-down the last error is reported without a request), claims of
/// work are not failing again and again, and no resource has a configuration fault.
pub async fn readiness(ctx: &Context) -> Readiness {
    let database = match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, crate::outbox::ping(&ctx.pool)).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => format!("no answer within {} s", DATABASE_CHECK_TIMEOUT.as_secs()),
    };
    let tokens = ctx.altinn.tokens();
    let token_ok = tokens.token().await.is_ok();
    let altinn = ctx.altinn.health();
    let claims = ctx.claims.problem().unwrap_or_else(|| "ok".to_string());
    let config_faults = ctx.altinn.config_faults();
    let ready = database == "ok" && token_ok && claims == "ok" && config_faults.is_empty();
    let unvalidated_subscriptions = unvalidated_subscriptions(ctx).await;
    Readiness { ready, database, token: tokens.status(), altinn, claims, config_faults, unvalidated_subscriptions }
}

/// From the database, so that every instance shows what the managing one found.
async fn unvalidated_subscriptions(ctx: &Context) -> Vec<String> {
    let read = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, crate::outbox::subscriptions::overdue(&ctx.pool)).await;
    let Ok(Ok(overdue)) = read else { return Vec::new() };
    overdue
        .into_iter()
        .map(|(resource, id, posted_at)| {
            format!(
                "resource {resource}: Altinn Events subscription {id} not validated (last POST {posted_at}); \
                 check that events.public_url reaches events.listen and answers 2xx"
            )
        })
        .collect()
}
