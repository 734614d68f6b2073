//! # altinn-outbox
//!
//! Sends Altinn 3 Correspondence messages that producers insert into PostgreSQL.
//!
//! # Layout
//! - [`identifiers`]: organisation and national identity numbers, recipient URNs.
pub mod identifiers;
