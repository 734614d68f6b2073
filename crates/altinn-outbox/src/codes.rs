//! The catalogue of error codes: every value the daemon writes to `error_code` (of a delivery
//! or a shared file, and so to the history), in one place. A code is either one of the
//! daemon's own fixed codes ([`Code`]) or a member of a [`Family`]: a fixed prefix and a value
//! from elsewhere (Altinn's error code, an HTTP status, the outbox column a check names, a
//! token refresh's reason), made by this module's functions and nowhere else.
//!
//! Codes are stable: rows in existing databases carry them, operators filter and alert on
//! them, and `docs/troubleshooting.md` explains each one. `tests/it/docs.rs` holds the three
//! together: every code and family here is in the troubleshooting guide, and every code the
//! SQL (registered statements and migrations) and the sources write is in this catalogue.

use std::fmt::Display;

use crate::altinn::codes as altinn_codes;
use crate::compose::Column;
use crate::maskinporten::Step;

/// Writes a closed set of codes (an enum), its `ALL` and its `as_str` from one list, so that a
/// value cannot be added without being in `ALL` (and so in the guide's test).
macro_rules! own_codes {
    ($(#[$enum_meta:meta])* pub enum $name:ident { $($(#[$meta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$enum_meta])*
        pub enum $name {
            $($(#[$meta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

own_codes! {
    /// The daemon's own fixed codes. SQL statements write some of them as literals
    /// (`error_code = 'lease_expired'`); the test named above ties those literals to this list.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Code {
        /// No answer in time: the request timed out, or the row's lease ran out first.
        Timeout => "timeout",
        /// The connection to Altinn failed (refused, reset, DNS, TLS).
        Network => "network",
        /// Held back without a request: Altinn asked us to wait (429 with Retry-After).
        Throttled => "throttled",
        /// Held back without a request: Altinn looks down and is being probed.
        AltinnDown => "altinn_down",
        /// Claimed but not started before half of its lease was gone (the worker was too busy).
        NotStarted => "not_started",
        /// The message or its files could not be read from the database for the send.
        Database => "database",
        /// The request could not be written as JSON (a bug: nothing was sent).
        Serialize => "serialize",
        /// The configured platform URL cannot be made into a request URL.
        Url => "url",
        /// Altinn answered 200 to initialize without a correspondence. Under Altinn's prefix:
        /// the answer came from Altinn, only it could not be used.
        EmptyResponse => "altinn:empty_response",
        /// Altinn answered 200 with a body that could not be read.
        BadResponse => "altinn:bad_response",
        /// Altinn says the idempotency key is taken, but no correspondence of the resource has it.
        IdempotencyConflict => "idempotency_conflict",
        /// The correspondence holding the idempotency key at Altinn is another letter.
        IdempotencyKeyForeign => "idempotency_key_foreign",
        /// Another delivery already holds the idempotency key (SQL: the claim).
        IdempotencyKeyTaken => "idempotency_key_taken",
        /// A worker stopped with the row leased; the lease expired (SQL: the sweep).
        LeaseExpired => "lease_expired",
        /// Not published within `status.max_follow_age_h`; no longer followed.
        StatusTimeout => "status_timeout",
        /// A shared file's malware scan outlasted `status.max_scan_wait_ms`: the daemon's own, as
        /// Altinn never said anything was wrong.
        ScanTimeout => "scan_timeout",
        /// Put back by `altinn-outbox retry` (SQL).
        AdminRetry => "admin_retry",
        /// Cancelled by `altinn-outbox cancel` before it was sent (SQL).
        AdminCancelled => "admin_cancelled",
        /// Purged at Altinn by `altinn-outbox cancel` before publication (SQL).
        AdminPurged => "admin_purged",
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.as_str().to_string()
    }
}

own_codes! {
    /// A correspondence status that ends a delivery without publication: `altinn:<status>`,
    /// the status as Altinn names it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CorrespondenceEnd {
        /// Altinn could not publish it (the delivery fails).
        Failed => "Failed",
        /// The recipient has reserved themselves against digital mail in KRR (the delivery fails).
        Reserved => "Reserved",
        /// Purged before publication by someone other than this outbox (the delivery is cancelled).
        PurgedByAltinn => "PurgedByAltinn",
    }
}

impl CorrespondenceEnd {
    pub fn code(self) -> String {
        format!("altinn:{}", self.as_str())
    }
}

own_codes! {
    /// An attachment status that ends a shared file's upload: `altinn:attachment_<status>`,
    /// the status as Altinn names it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum AttachmentEnd {
        /// The malware scan or Altinn's processing failed the file.
        Failed => "Failed",
        Purged => "Purged",
        Expired => "Expired",
    }
}

impl AttachmentEnd {
    /// The ending status Altinn's `status` names, if it is one (exactly as Altinn spells it).
    pub fn parse(status: &str) -> Option<AttachmentEnd> {
        AttachmentEnd::ALL.iter().copied().find(|end| end.as_str() == status)
    }

    pub fn code(self) -> String {
        format!("altinn:attachment_{}", self.as_str())
    }
}

/// The token client's own reasons after the step (`maskinporten:unavailable`); the others
/// are Maskinporten's OAuth error codes and HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenReason {
    /// No answer, or an answer without a token: an outage as far as we can tell.
    Unavailable,
    /// The grant could not be signed with the configured key.
    SigningFailed,
    /// `altinn.subscription_key` cannot be sent as an HTTP header.
    InvalidSubscriptionKey,
}

impl TokenReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenReason::Unavailable => "unavailable",
            TokenReason::SigningFailed => "signing_failed",
            TokenReason::InvalidSubscriptionKey => "invalid_subscription_key",
        }
    }
}

/// The error codes of RFC 6749 (section 5.2) with which Maskinporten refuses a grant:
/// `maskinporten:<error>`. Its `temporarily_unavailable` and `server_error` are outages
/// (`maskinporten:<status>`).
pub const OAUTH_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// A family of codes: a fixed prefix and a value the daemon takes from elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `altinn:<errorCode>`: Altinn's numeric code. Those [`altinn_codes`] classifies are
    /// known; a code Altinn adds later is written as it comes and follows its HTTP status.
    AltinnError,
    /// `altinn:<code>`: Altinn's textual code where its answer had no number (`STD-00000`,
    /// a validation problem).
    AltinnProblem,
    /// `altinn:<status>`: closed, [`CorrespondenceEnd`].
    CorrespondenceStatus,
    /// `altinn:attachment_<status>`: closed, [`AttachmentEnd`].
    AttachmentStatus,
    /// `http:<status>`: a refusal whose body had no code of Altinn's.
    Http,
    /// `validation:<column>`: closed, [`Column`].
    Validation,
    /// `<step>:<reason>`: a token refresh failed; the step is `grant`, `maskinporten` or
    /// `exchange` ([`Step`]), the reason a [`TokenReason`], an [`OAUTH_ERRORS`] code,
    /// `http_<status>` (a refusal without an OAuth body) or `<status>` (an outage).
    Token,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::AltinnError,
        Family::AltinnProblem,
        Family::CorrespondenceStatus,
        Family::AttachmentStatus,
        Family::Http,
        Family::Validation,
        Family::Token,
    ];

    /// The family as the documentation writes it.
    pub const fn pattern(self) -> &'static str {
        match self {
            Family::AltinnError => "altinn:<errorCode>",
            Family::AltinnProblem => "altinn:<code>",
            Family::CorrespondenceStatus => "altinn:<status>",
            Family::AttachmentStatus => "altinn:attachment_<status>",
            Family::Http => "http:<status>",
            Family::Validation => "validation:<column>",
            Family::Token => "<step>:<reason>",
        }
    }

    /// The members known in advance: every member of a closed family, the known ones of an
    /// open family (none for `http:<status>`, whose every status is possible).
    pub fn members(self) -> Vec<String> {
        match self {
            Family::AltinnError => altinn_codes::known().map(altinn).collect(),
            Family::AltinnProblem => vec![altinn_problem("STD-00000")],
            Family::CorrespondenceStatus => CorrespondenceEnd::ALL.iter().map(|end| end.code()).collect(),
            Family::AttachmentStatus => AttachmentEnd::ALL.iter().map(|end| end.code()).collect(),
            Family::Http => Vec::new(),
            Family::Validation => Column::ALL.map(validation).to_vec(),
            Family::Token => {
                let own = [
                    token(Step::Grant, TokenReason::SigningFailed.as_str()),
                    token(Step::Maskinporten, TokenReason::Unavailable.as_str()),
                    token(Step::Exchange, TokenReason::Unavailable.as_str()),
                    token(Step::Exchange, TokenReason::InvalidSubscriptionKey.as_str()),
                    // The exchange's empty 401, its answer to every refusal.
                    token(Step::Exchange, 401),
                ];
                own.into_iter().chain(OAUTH_ERRORS.map(|e| token(Step::Maskinporten, e))).collect()
            }
        }
    }

    /// Whether [`Family::members`] is every code the family has.
    pub const fn is_closed(self) -> bool {
        matches!(self, Family::CorrespondenceStatus | Family::AttachmentStatus | Family::Validation)
    }
}

/// Altinn's numeric error code: `altinn:1036`.
pub fn altinn(error_code: i64) -> String {
    format!("altinn:{error_code}")
}

/// Altinn's textual code, where its answer had no number: `altinn:STD-00000`.
pub fn altinn_problem(code: &str) -> String {
    format!("altinn:{}", outside_value(code))
}

/// An HTTP status without a code of Altinn's: `http:503`.
pub fn http(status: u16) -> String {
    format!("http:{status}")
}

/// The outbox column a check refused: `validation:title`.
pub fn validation(column: Column) -> String {
    format!("validation:{}", column.as_str())
}

/// A token refresh's failure: `maskinporten:invalid_grant`, `exchange:401`.
pub fn token(step: Step, reason: impl Display) -> String {
    format!("{step}:{}", outside_value(&reason.to_string()))
}

/// A value another server chose, as part of a code: codes are short identifiers that
/// operators filter and alert on and metrics carry as labels, so a value that is not one
/// (too long, spaces, markup) is kept only as far as it is one. Altinn's and the OAuth
/// standard's codes pass unchanged.
fn outside_value(value: &str) -> String {
    const MAX: usize = 64;
    let kept: String =
        value.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(MAX).collect();
    if kept.is_empty() {
        "unreadable".to_string()
    } else {
        kept
    }
}

/// The number of an `altinn:<errorCode>` code.
pub fn altinn_number(code: &str) -> Option<i64> {
    code.strip_prefix("altinn:")?.parse().ok()
}

/// The status of an `http:<status>` code.
pub fn http_status(code: &str) -> Option<u16> {
    code.strip_prefix("http:")?.parse().ok()
}

/// Every code whose whole text is known in advance: the fixed codes and the known members of
/// every family.
pub fn known() -> Vec<String> {
    let fixed = Code::ALL.iter().copied().map(String::from);
    fixed.chain(Family::ALL.into_iter().flat_map(Family::members)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_another_server_chose_is_cut_to_an_identifier() {
        assert_eq!(altinn_problem("STD-00000"), "altinn:STD-00000");
        assert_eq!(token(Step::Maskinporten, "invalid_grant"), "maskinporten:invalid_grant");
        assert_eq!(altinn_problem("<script>x</script> 1"), "altinn:scriptxscript1");
        assert_eq!(altinn_problem(&"A".repeat(500)).len(), "altinn:".len() + 64);
        assert_eq!(token(Step::Exchange, "  "), "exchange:unreadable");
    }

    #[test]
    fn every_known_code_is_listed_once() {
        let known = known();
        let mut unique = known.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), known.len(), "a code in two places");
        assert!(known.contains(&"altinn:1036".to_string()) && known.contains(&"validation:title".to_string()));
        for family in Family::ALL.into_iter().filter(|f| f.is_closed()) {
            assert!(!family.members().is_empty(), "a closed family lists its members: {family:?}");
        }
    }

    #[test]
    fn family_codes_read_back() {
        assert_eq!((altinn_number(&altinn(1034)), altinn_number("altinn:STD-00000")), (Some(1034), None));
        assert_eq!((http_status(&http(404)), http_status("altinn:404")), (Some(404), None));
        assert_eq!(AttachmentEnd::parse("Expired").map(AttachmentEnd::code), Some("altinn:attachment_Expired".into()));
        assert_eq!(AttachmentEnd::parse("Published"), None);
    }
}
