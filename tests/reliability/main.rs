//! The reliability suite: the real binary as separate worker processes, the real PostgreSQL
//! and the fake Altinn, under crashes, outages, lost responses, slow answers, bad rows and
//! clock trouble. Every scenario asserts the promises (nothing lost, nothing sent twice) and
//! prints one line of figures; `scripts/reliability` runs them and prints the table.
//!
//! Scenario tests are named `scenario_*` so that `scripts/test` can run them after the rest
//! (they run one at a time, see `harness::ONE_AT_A_TIME`).

// A panic is how a test fails: tests and their helpers unwrap.
#![allow(clippy::unwrap_used)]

// The reliability suite uses only part of the integration tests' harness.
#[allow(dead_code)]
#[path = "../it/common/mod.rs"]
mod common;
mod harness;

mod auth;
mod crash;
mod database;
mod details;
mod events;
mod faults;
mod garbage;
mod hostile;
mod register;
mod scope;
