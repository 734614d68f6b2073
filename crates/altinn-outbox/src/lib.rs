//! # altinn-outbox
//!
//! Sends Altinn 3 Correspondence messages that producers insert into PostgreSQL, exactly
//! once each, and writes every result back to the outbox tables.
//!
//! This crate is the daemon and the one binary that ships. The workspace's other crates are
//! the fake Maskinporten and Altinn (`altinn-fake`, independent of this crate) and the
//! benchmark (`outbox-bench`); `docs/architecture.md` shows the whole house on one page.
//!
//! # Layout
//! - [`config`]: the typed configuration (defaults, `worker.toml`, environment).
//! - [`app`]: start-up: builds the worker's context from the configuration.
//! - [`backoff`]: the doubling pause of every in-process retry.
//! - [`telemetry`]: logging set-up.
//! - [`outbox`]: the outbox tables; all SQL lives here, and the enums of the values their
//!   `text` columns hold (delivery and upload states, history kinds, notification outcomes).
//! - [`identifiers`]: organisation and national identity numbers, recipient URNs, their mask
//!   and the scrub that keeps personal data out of stored and logged texts.
//! - [`codes`]: the catalogue of error codes a row can get: the daemon's own and the families
//!   made of Altinn's codes, HTTP statuses, outbox columns and token failures.
//! - [`compose`]: a message and a recipient become an initialize request, or a field error.
//! - [`maskinporten`]: the signing key, the JWT grant and the cached Altinn token.
//! - [`altinn`]: the Correspondence API client, its wire types and error classes, and the
//!   Events API (subscriptions, pull) on the same token.
//! - [`worker`]: claiming, sending, status polling and the daemon loop.
//! - [`events`]: the Altinn Events receiver (a push makes the letter it names be read at
//!   once), the subscriptions one instance keeps, and the pull that catches up missed events.
//! - [`housekeeping`]: scheduled pruning, stuck-row sweep and daily summary, once across instances.
//! - [`systemd`]: readiness and watchdog notifications.
//! - [`health`]: the `/healthz`, `/readyz` and `/metrics` listener.
//! - [`metrics`]: the Prometheus metrics: what is counted, and the scrape.
//! - [`admin`]: the admin commands (status, show, retry, cancel, prune) and their output.
//! - [`check`]: `altinn-outbox check`: the set-up, and whether Altinn accepts us per resource.

pub mod admin;
pub mod altinn;
pub mod app;
pub mod backoff;
pub mod check;
pub mod codes;
pub mod compose;
pub mod config;
pub mod events;
pub mod health;
pub mod housekeeping;
pub mod identifiers;
pub mod maskinporten;
pub mod metrics;
pub mod outbox;
pub mod systemd;
pub mod telemetry;
pub mod worker;
