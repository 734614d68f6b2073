//! # altinn-outbox
//!
//! Sends Altinn 3 Correspondence messages that producers insert into PostgreSQL.
//!
//! # Layout
//! - [`identifiers`]: organisation and national identity numbers, recipient URNs.
//! - [`fake`]: a strict fake Maskinporten + Altinn server for integration tests and the demo.
pub mod fake;
pub mod identifiers;
