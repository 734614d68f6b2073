//! # altinn-outbox
//!
//! Sends Altinn 3 Correspondence messages that producers insert into PostgreSQL.
//!
//! # Layout
//! - [`identifiers`]: organisation and national identity numbers, recipient URNs.
//! - [`maskinporten`]: the signing key, the Maskinporten grant and the cached Altinn token.
pub mod identifiers;
pub mod maskinporten;
