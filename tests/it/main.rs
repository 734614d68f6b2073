//! The integration tests of altinn-outbox: the real PostgreSQL (each test its own database)
//! and the fake Maskinporten and Altinn (`altinn-fake`, in this process), one module per
//! concern. The reliability suite is a binary of its own (`tests/reliability`).

// A panic is how a test fails: tests and their helpers unwrap.
#![allow(clippy::unwrap_used)]

mod common;

mod admin;
mod admin_docs;
mod attachments;
mod config_faults;
mod daemon;
mod docs;
mod events;
mod events_subscriptions;
mod hostile;
mod housekeeping;
mod isolation;
mod metrics;
mod personal_data;
mod pipeline;
mod roles;
mod sql;
mod states;
mod status;
mod systemd;
mod token;
mod token_resilience;
mod worker_loop;
