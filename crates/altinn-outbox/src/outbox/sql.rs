//! The registry of the daemon's SQL: every statement is a `const` defined through
//! [`statements!`](crate::statements), which also lists it in its file's `STATEMENTS`;
//! [`statements`] gathers every file's list. `tests/it/sql.rs` prepares each one against a
//! freshly migrated database, and scans the sources so that a statement written inline in a
//! call, outside the registry, fails the test too.

/// One registered SQL statement: where it is defined, its name there, and its text.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Statement {
    /// The source file that defines it (`file!()`), for the test's messages and its scan.
    pub file: &'static str,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Defines a file's SQL statements as `const`s and registers them in the file's
/// `STATEMENTS`, so that a statement is written once and the test still reaches it.
/// Doc comments and other attributes go on the consts.
#[doc(hidden)]
#[macro_export]
macro_rules! statements {
    ($($(#[$attr:meta])* $name:ident = $sql:expr;)+) => {
        $($(#[$attr])* const $name: &str = $sql;)+

        /// This file's statements, for the SQL test.
        pub(crate) const STATEMENTS: &[$crate::outbox::Statement] =
            &[$($crate::outbox::Statement { file: file!(), name: stringify!($name), sql: $name }),+];
    };
}

/// Every file's statements. A file left out here is caught by the test's scan: its calls
/// name statements the registry does not know.
const ALL: &[&[Statement]] = &[
    super::STATEMENTS,
    super::admin::STATEMENTS,
    super::claim::STATEMENTS,
    super::counts::STATEMENTS,
    super::events::STATEMENTS,
    super::files::STATEMENTS,
    super::schedule::STATEMENTS,
    super::subscriptions::STATEMENTS,
    super::uploads::STATEMENTS,
    super::write::STATEMENTS,
];

/// Every SQL statement of the daemon, for `tests/it/sql.rs`.
#[doc(hidden)]
pub fn statements() -> impl Iterator<Item = &'static Statement> {
    ALL.iter().flat_map(|file| file.iter())
}
