//! `events list|subscribe|delete`: the Altinn Events subscriptions, as stored and as Altinn
//! has them. `subscribe` does now what the daemon does at each check (and waits briefly for
//! the handshake); `delete` removes one at Altinn and from the table (the daemon makes it
//! again at its next check if the resource still has letters or is configured).
//! The endpoint holds the receiver's secret: it is never printed, only whether it is current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::format::{opt_time, or_dash, table};
use super::{Answer, Exit, Output};
use crate::config::Config;
use crate::events::manage::Manager;
use crate::events::receiver::Receiver;
use crate::events::subscriptions::Ensured;
use crate::outbox::subscriptions as db;
use crate::worker::Context;

/// How long `subscribe` waits for Altinn's handshake to validate the endpoint.
const VALIDATION_WAIT: Duration = Duration::from_secs(10);
/// Pause between reads of the subscription while waiting.
const VALIDATION_POLL: Duration = Duration::from_millis(500);

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Action {
    /// The subscriptions stored by the daemon and those Altinn has for this client, with
    /// whether Altinn has validated the endpoint.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Ensure the subscription of every resource (or one) now, and wait briefly until Altinn
    /// has validated the endpoint.
    Subscribe {
        /// Only this resource id (default: resources with letters not finished, and
        /// events.resources).
        #[arg(long, value_name = "ID")]
        resource: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a subscription at Altinn and from the table.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "resource"])))]
    Delete {
        /// Altinn's subscription id.
        #[arg(long)]
        id: Option<i64>,
        /// The resource whose stored subscription to delete.
        #[arg(long, value_name = "ID")]
        resource: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

impl Action {
    pub fn output(&self) -> Output {
        match self {
            Action::List { output } | Action::Subscribe { output, .. } | Action::Delete { output, .. } => *output,
        }
    }
}

pub async fn run(config: &Config, ctx: Context, action: Action) -> anyhow::Result<Answer> {
    let Some(settings) = config.events()? else {
        anyhow::bail!("configuration: events.enabled is false: Altinn Events is not in use");
    };
    let ctx = Arc::new(ctx);
    let receiver = Receiver::new(ctx.pool.clone(), settings.clone()).await?;
    let manager = Manager::new(ctx.clone(), receiver.endpoint(), settings);
    match action {
        Action::List { .. } => list(&ctx, &manager).await,
        Action::Subscribe { resource, .. } => subscribe(config, &ctx, &manager, resource).await,
        Action::Delete { id, resource, .. } => delete(&ctx, id, resource).await,
    }
}

async fn list(ctx: &Context, manager: &Manager) -> anyhow::Result<Answer> {
    let stored = db::subscriptions(&ctx.pool, manager.endpoint()).await?;
    let (altinn, exit, note) = match ctx.altinn.subscriptions().await {
        Ok(list) => (list, Exit::Success, None),
        Err(e) => {
            (Vec::new(), Exit::of_failure(e.worth_retrying()), Some(format!("Altinn's list could not be read: {e}")))
        }
    };
    let mut rows: Vec<Vec<String>> = stored
        .iter()
        .map(|s| {
            let at_altinn = if note.is_some() {
                "?"
            } else if altinn.iter().any(|a| a.id == s.subscription_id) {
                "yes"
            } else {
                "no"
            };
            vec![
                s.resource_id.clone(),
                s.subscription_id.to_string(),
                s.validated.to_string(),
                "yes".into(),
                at_altinn.into(),
                s.current_endpoint.to_string(),
                or_dash(opt_time(s.validated_at)),
                or_dash(s.last_error.as_deref()),
            ]
        })
        .collect();
    for a in altinn.iter().filter(|a| !stored.iter().any(|s| s.subscription_id == a.id)) {
        let resource = a.resource_filter.as_deref().unwrap_or_default();
        let resource = resource.strip_prefix(crate::altinn::events::RESOURCE_URN).unwrap_or(resource);
        let current = a.end_point == manager.endpoint();
        let cells =
            [resource, &a.id.to_string(), &a.validated.to_string(), "no", "yes", &current.to_string(), "-", "-"];
        rows.push(cells.map(String::from).to_vec());
    }
    let headers =
        ["RESOURCE", "ID", "VALIDATED", "STORED", "AT ALTINN", "CURRENT ENDPOINT", "VALIDATED AT", "LAST ERROR"];
    let altinn_json: Vec<Value> = altinn
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["current_endpoint"] = json!(a.end_point == manager.endpoint());
            v
        })
        .collect();
    let json = json!({ "stored": stored, "altinn": altinn_json });
    Ok(Answer { exit, table: table(&headers, &rows), json, note })
}

async fn subscribe(config: &Config, ctx: &Context, manager: &Manager, only: Option<String>) -> anyhow::Result<Answer> {
    let resources = match only {
        Some(resource) => vec![resource],
        None => db::resources(&ctx.pool, &config.events.resources).await?,
    };
    let deadline = Instant::now() + VALIDATION_WAIT;
    let mut done = manager.ensure_all(&resources).await?;
    while done.iter().any(|e| matches!(e, Ensured::Waiting { .. })) && Instant::now() < deadline {
        tokio::time::sleep(VALIDATION_POLL).await;
        done = manager.ensure_all(&resources).await?;
    }
    let rows: Vec<Vec<String>> = done.iter().map(row).collect();
    let exit = done.iter().map(|e| match e {
        Ensured::Validated { .. } => Exit::Success,
        Ensured::Waiting { .. } | Ensured::Overdue { .. } => Exit::TryAgain,
        Ensured::Failed { worth_retrying, .. } => Exit::of_failure(*worth_retrying),
    });
    let exit = exit.max().unwrap_or(Exit::Success);
    let note = match exit {
        Exit::Success if done.is_empty() => {
            Some("no resource to subscribe to (no letters, and events.resources is empty)".into())
        }
        Exit::Success => None,
        _ => Some("not every subscription is validated: see the table (the daemon keeps trying)".into()),
    };
    let json = json!({ "subscriptions": done });
    Ok(Answer { exit, table: table(&["RESOURCE", "ID", "OUTCOME", "DETAIL"], &rows), json, note })
}

fn row(e: &Ensured) -> Vec<String> {
    let (resource, id, outcome, detail) = match e {
        Ensured::Validated { resource, id } => (resource, Some(*id), "validated", String::new()),
        Ensured::Waiting { resource, id } => {
            (resource, Some(*id), "waiting", "the handshake has not succeeded yet".into())
        }
        Ensured::Overdue { resource, id } => {
            (resource, Some(*id), "not_validated", "unvalidated past events.validation_timeout_ms; POSTed again".into())
        }
        Ensured::Failed { resource, error, .. } => (resource, None, "error", error.clone()),
    };
    vec![resource.clone(), or_dash(id), outcome.into(), detail]
}

async fn delete(ctx: &Context, id: Option<i64>, resource: Option<String>) -> anyhow::Result<Answer> {
    let id = match (id, &resource) {
        (Some(id), _) => id,
        (None, Some(resource)) => {
            let stored = db::subscriptions(&ctx.pool, "").await?;
            match stored.into_iter().find(|s| &s.resource_id == resource) {
                Some(s) => s.subscription_id,
                None => return Ok(nothing(format!("no stored subscription for resource {resource}"))),
            }
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let at_altinn = match ctx.altinn.unsubscribe(id).await {
        Ok(found) => found,
        Err(e) => {
            let note = Some(format!("Altinn did not delete subscription {id}: {e}"));
            return Ok(Answer {
                exit: Exit::of_failure(e.worth_retrying()),
                table: String::new(),
                json: json!({"id": id, "error": e.to_string()}),
                note,
            });
        }
    };
    let stored = db::forget_id(&ctx.pool, id).await?;
    if !at_altinn && !stored {
        return Ok(nothing(format!("no subscription {id} at Altinn or stored")));
    }
    tracing::info!(subscription = id, "Altinn Events subscription deleted");
    let table = table(
        &["ID", "DELETED AT ALTINN", "FORGOTTEN"],
        &[vec![id.to_string(), at_altinn.to_string(), stored.to_string()]],
    );
    let note = Some(
        "the daemon makes it again at its next check if the resource still has letters or is in events.resources"
            .into(),
    );
    Ok(Answer {
        exit: Exit::Success,
        table,
        json: json!({"id": id, "deleted_at_altinn": at_altinn, "forgotten": stored}),
        note,
    })
}

fn nothing(note: String) -> Answer {
    Answer { exit: Exit::NotFound, table: String::new(), json: Value::Null, note: Some(note) }
}
