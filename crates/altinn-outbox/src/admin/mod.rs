//! The admin commands (`status`, `show`, `retry`, `cancel`, `prune`, `events`): what an operator or a
//! script does to the outbox by hand. Each reads or writes the outbox tables through
//! [`crate::outbox::admin`] and answers with an [`Answer`]: a table for a person, one JSON
//! document for a script (`--json`), and an exit code scripts can rely on ([`Exit`]).
//!
//! Only `cancel` and `events` talk to Altinn, so only they need the Maskinporten key; the
//! others need the database settings alone.

mod cancel;
mod events;
pub use events::Action as EventsAction;
mod format;
mod retry;
mod show;
mod status;

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::config::Config;
use crate::{app, outbox};

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES: &str = "Exit codes of the admin commands (status, show, retry, cancel, prune, events):
  0   success (also: nothing left to do, e.g. cancel of a cancelled message)
  1   error: database unreachable, invalid configuration, Altinn refused the request
  2   usage error
  3   not found: no message (or, for events delete, subscription) with that id
  4   refused: nothing in a state that allows it (retry of a message with no failed delivery,
      cancel of a published letter)
  75  temporary: a worker is sending it right now, Altinn did not answer, or (events
      subscribe) Altinn has not validated the endpoint yet; try again
A command acting on several deliveries exits with the worst outcome among them and lists each.";

/// An admin command's outcome, ordered from best to worst: a command acting on several
/// deliveries exits with the worst of theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Success,
    Refused,
    NotFound,
    TryAgain,
    Error,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::NotFound => 3,
            Exit::Refused => 4,
            Exit::TryAgain => 75,
        }
    }

    /// A failed Altinn or Maskinporten call: a refusal (of the request, or of our set-up: a
    /// missing scope, no access, a token refused) is an error an operator must look at; an
    /// outage, throttling or no token for now is worth another try.
    pub fn of_failure(worth_retrying: bool) -> Exit {
        if worth_retrying {
            Exit::TryAgain
        } else {
            Exit::Error
        }
    }
}

/// What a command prints: `table` for a terminal, `json` with `--json`; `note` (if any) goes
/// to stderr, saying why the exit code is not 0.
#[derive(Debug)]
pub struct Answer {
    pub exit: Exit,
    pub table: String,
    pub json: Value,
    pub note: Option<String>,
}

impl Answer {
    fn not_found(message_id: i64) -> Answer {
        Answer {
            exit: Exit::NotFound,
            table: String::new(),
            json: Value::Null,
            note: Some(format!("no message with id {message_id}")),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Summary: deliveries by state, the oldest unsent one, failures of the last 24 hours.
    #[command(after_help = EXIT_CODES)]
    Status(Output),
    /// One message with its deliveries (recipients masked), their Altinn status and history.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The message id (altinn_outbox.message.id).
        id: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Put failed deliveries back, to be sent again or to have their status read again.
    ///
    /// A delivery Altinn has is never sent again: its status is read again instead, and one
    /// Altinn failed itself is refused.
    #[command(after_help = EXIT_CODES)]
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "failed"])))]
    Retry {
        /// The message id whose failed deliveries go back.
        id: Option<i64>,
        /// Every failed delivery instead of one message's.
        #[arg(long)]
        failed: bool,
        /// With --failed: only deliveries with this error_code (`altinn:1036`, or `1036`).
        #[arg(long, conflicts_with = "id")]
        code: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Cancel a message not yet sent; one Altinn has but not yet published is purged there.
    #[command(after_help = EXIT_CODES)]
    Cancel {
        /// The message id.
        id: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Delete messages all of whose deliveries finished long ago, with their history.
    #[command(after_help = EXIT_CODES)]
    Prune {
        /// Age of the finished deliveries, e.g. 90d or 36h.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Altinn Events subscriptions (`[events]` in worker.toml): list, subscribe, delete.
    #[command(after_help = EXIT_CODES)]
    Events {
        #[command(subcommand)]
        action: events::Action,
    },
}

#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Output {
    /// Print one JSON document instead of a table (its fields are described in docs/admin.md).
    #[arg(long)]
    pub json: bool,
}

impl Command {
    fn output(&self) -> Output {
        match self {
            Command::Status(output) => *output,
            Command::Show { output, .. }
            | Command::Retry { output, .. }
            | Command::Cancel { output, .. }
            | Command::Prune { output, .. } => *output,
            Command::Events { action } => action.output(),
        }
    }
}

/// Runs a command, prints its answer and returns the exit code. Errors (the database or
/// Altinn unreachable, a bad configuration) print on stderr and exit 1.
pub async fn run(config: &Config, command: Command) -> u8 {
    let json = command.output().json;
    match execute(config, command).await {
        Ok(answer) => {
            print(&answer, json);
            answer.exit.code()
        }
        Err(e) => {
            eprintln!("altinn-outbox: {e:#}");
            Exit::Error.code()
        }
    }
}

fn print(answer: &Answer, json: bool) {
    if json && !answer.json.is_null() {
        println!("{}", serde_json::to_string_pretty(&answer.json).unwrap_or_default());
    } else if !json && !answer.table.is_empty() {
        print!("{}", answer.table);
    }
    if let Some(note) = &answer.note {
        eprintln!("altinn-outbox: {note}");
    }
}

/// Runs a command without printing: what the binary and the tests share.
pub async fn execute(config: &Config, command: Command) -> anyhow::Result<Answer> {
    if let Command::Cancel { id, .. } = command {
        let ctx = app::build_context(config)?;
        return cancel::cancel(&ctx, id).await;
    }
    if let Command::Events { action } = command {
        let ctx = app::build_context(config)?;
        return events::run(config, ctx, action).await;
    }
    let pool = database(config)?;
    match command {
        Command::Status(_) => status::status(&pool).await,
        Command::Show { id, .. } => show::show(&pool, id).await,
        Command::Retry { id, code, .. } => {
            let scope = match id {
                Some(id) => outbox::admin::RetryScope::Message(id),
                None => outbox::admin::RetryScope::Failed { code },
            };
            retry::retry(&pool, &scope).await
        }
        Command::Prune { older_than, dry_run, .. } => status::prune(&pool, older_than, dry_run).await,
        Command::Cancel { .. } | Command::Events { .. } => unreachable!("handled above with the full context"),
    }
}

/// The database alone: these commands must work where no Maskinporten key is installed.
fn database(config: &Config) -> anyhow::Result<PgPool> {
    if config.database.url.is_empty() {
        anyhow::bail!("configuration: database.url: required");
    }
    let timeout = Duration::from_millis(config.database.connect_timeout_ms);
    Ok(outbox::connect_lazy(config.database.url.expose(), 2, timeout)?)
}

/// `90d` or `36h`: whole days or hours, more than zero.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?}: expected a number of days or hours, e.g. 90d or 36h"))?;
    let hours = match unit {
        "d" => n.checked_mul(24),
        "h" => Some(n),
        _ => return Err(format!("{s:?}: the unit must be d (days) or h (hours), e.g. 90d")),
    };
    match hours.and_then(|h| h.checked_mul(3600)) {
        Some(0) => Err("must be more than zero".into()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("{s:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_days_or_hours() {
        assert_eq!(parse_age("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age("36h"), Ok(Duration::from_secs(36 * 3_600)));
        for bad in ["90", "d", "90m", "-1d", "0d", "1.5d", ""] {
            assert!(parse_age(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn the_worst_outcome_wins() {
        let worst = [Exit::Success, Exit::Refused, Exit::TryAgain, Exit::Success].into_iter().max();
        assert_eq!(worst.map(Exit::code), Some(75));
        assert!(Exit::Error > Exit::TryAgain && Exit::Refused > Exit::Success);
    }

    #[test]
    fn a_refusal_is_an_error_and_an_outage_is_worth_another_try() {
        use crate::altinn::{ApiError, Fault};
        use crate::codes::Code;
        use crate::maskinporten::{Step, TokenError};
        let exit = |e: ApiError| Exit::of_failure(e.worth_retrying());
        assert_eq!(exit(ApiError::transient(Code::Timeout, "slow")), Exit::TryAgain);
        let unavailable =
            TokenError::Unavailable { step: Step::Maskinporten, status: Some(503), message: "down".into() };
        assert_eq!(exit(ApiError::no_token(&unavailable)), Exit::TryAgain, "no token for now");
        let refused = TokenError::Rejected {
            step: Step::Maskinporten,
            error: "invalid_client".into(),
            description: "unknown client".into(),
        };
        assert_eq!(exit(ApiError::no_token(&refused)), Exit::Error, "a refused token waits for a fix");
        assert_eq!(exit(ApiError::permanent(Code::Serialize, "bad")), Exit::Error);
        let fault = ApiError::misconfigured(Fault::MissingScope, "http:403".into(), "no scope", "r");
        assert_eq!(exit(fault), Exit::Error, "our set-up");
    }
}
