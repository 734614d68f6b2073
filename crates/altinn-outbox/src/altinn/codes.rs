//! Altinn's own error codes (`errorCode` in its ProblemDetails), each with the class it gives
//! a failed request. The HTTP status alone misleads: Altinn answers 400 with 4002 when
//! Altinn Register fails to find the sender, and nothing about the request is wrong; it
//! answers 500 with 1032 when the contact reservation registry (KRR) fails.
//!
//! The table covers every code a sender can meet on the endpoints this client calls
//! (initialize, initialize with files, attachment create / upload / status, the lookup by
//! key, overview, details, purge), read from the server's error catalogue and the handlers
//! that raise each code. A code is transient when it means that a dependency of Altinn
//! failed (Register, KRR, the resource registry, storage) or that Altinn could not read its
//! own data: the same request may succeed later. It is permanent when the request can never
//! succeed as it is. It is a configuration fault when Altinn refuses who we are rather than
//! what we sent (no access to the resource in Altinn Authorization, a token that names no
//! caller): an operator's fix makes the same request succeed. A code not listed here keeps the
//! rule of its HTTP status.
//! `docs/altinn-errors.md` has the same table; a test holds the two together.

use super::error::ErrorClass::{self, Misconfigured, Permanent, Transient};
use super::faults::Fault::{NoAccess, UnknownCaller};

/// (errorCode, class, why). In code order, each code once (a test checks).
const CODES: &[(i64, ErrorClass, &str)] = &[
    (1001, Permanent, "the correspondence does not exist (or, for the overview, was purged)"),
    (1002, Permanent, "the title is not plain text"),
    (1003, Permanent, "the body is not valid markdown"),
    (1004, Permanent, "the summary is not plain text"),
    (1005, Permanent, "the uploaded files do not match the attachment metadata"),
    (1006, Permanent, "a recipient is listed twice"),
    (1007, Permanent, "an existing attachment is unknown to Altinn"),
    (1008, Permanent, "the due date is in the past"),
    (1009, Permanent, "the due date is before the publish time"),
    (1013, Permanent, "published: the sender may no longer purge it"),
    (1014, Permanent, "already purged"),
    (1015, Transient, "Altinn could not read the correspondence's status history: its own data, not the request"),
    (1016, Permanent, "confirmation needs a due date"),
    (1017, Permanent, "an existing attachment belongs to another sender"),
    (1018, Permanent, "an existing attachment is not published"),
    (1019, Permanent, "the content is missing"),
    (1020, Permanent, "the title is empty"),
    (1021, Permanent, "the body is empty"),
    (1022, Permanent, "the body is longer than 30,000 characters"),
    (1023, Permanent, "the language is not nb, nn or en"),
    (1027, Permanent, "the search's from date is after its to date"),
    (1029, Permanent, "Altinn Register knows no party for a recipient"),
    (1030, Permanent, "the person has reserved themselves in KRR"),
    (1032, Transient, "the contact reservation registry (KRR) lookup failed"),
    (1033, Permanent, "the idempotency key is not a valid GUID"),
    (1034, Permanent, "the idempotency key is taken: the client looks the correspondence up by key"),
    (1035, Permanent, "a reply option is not an https URL of at most 255 characters"),
    (1036, Permanent, "the resource does not exist in the resource registry"),
    (1037, Permanent, "the title is longer than 255 characters"),
    (1038, Permanent, "more than 100 attachments"),
    (1039, Permanent, "the message sender is not plain text"),
    (1042, Permanent, "the summary is longer than 255 characters"),
    (1043, Permanent, "linked to a Dialogporten transmission: it cannot be purged"),
    (1044, Permanent, "a recipient lacks the roles a confidential correspondence needs"),
    (1045, Permanent, "a transmission has more than one recipient"),
    (1046, Permanent, "the recipient is not the party of the transmission's dialog"),
    (1047, Permanent, "an idempotency key with several recipients"),
    (1048, Permanent, "the dialog id is not a valid GUID"),
    (1050, Permanent, "the dialog belongs to another service owner"),
    (1051, Permanent, "a transmission with reply options or confirmation"),
    (1052, Permanent, "more than one transmission type reference"),
    (1053, Permanent, "a transmission type reference without a dialog id"),
    (1054, Permanent, "Dialogporten has no dialog with that id"),
    (1055, Permanent, "an existing attachment expires within hours"),
    (1060, Permanent, "a confidential resource needs the IsConfidential flag"),
    (1061, Permanent, "the IsConfidential flag on a resource that is not confidential"),
    (1068, Permanent, "forwarding allowed on a resource that needs a higher authentication level"),
    (1069, Permanent, "forwarding allowed with more than 10 MB of attachments"),
    (2000, Transient, "the resource registry lookup failed"),
    (2001, Permanent, "the attachment does not exist"),
    (2002, Transient, "storing the file failed or the upload was cut short"),
    (2003, Permanent, "the attachment already belongs to a correspondence"),
    (2004, Permanent, "the file is empty or larger than the limit"),
    (2005, Permanent, "the one-shot attachment was uploaded into before"),
    (2008, Permanent, "the file's MD5 differs from the checksum given"),
    (2009, Transient, "storage gave no location for the file"),
    (2010, Permanent, "the file name is missing"),
    (2011, Permanent, "the file name is too long"),
    (2012, Permanent, "the file name has characters Windows forbids"),
    (2013, Permanent, "the file type is not allowed"),
    (2014, Permanent, "the service owner has no agreement in this environment"),
    (2017, Permanent, "the attachment's expiry is too soon"),
    (2021, Permanent, "the file name is a Windows reserved name"),
    (2022, Transient, "the upload timed out: the data arrived too slowly"),
    (3001, Permanent, "no notification template in that language"),
    (3002, Permanent, "an e-mail notification needs a subject and a body"),
    (3003, Permanent, "an e-mail reminder needs a subject and a body"),
    (3004, Permanent, "an SMS notification needs a body"),
    (3005, Permanent, "an SMS reminder needs a body"),
    (3006, Permanent, "a preferred-channel notification needs e-mail and SMS texts"),
    (3007, Permanent, "a preferred-channel reminder needs e-mail and SMS texts"),
    (3011, Permanent, "a custom recipient's e-mail address is invalid"),
    (3012, Permanent, "a custom recipient's mobile number is not E.164"),
    (3015, Permanent, "an e-mail or mobile override with the recipient name placeholder"),
    (3017, Permanent, "a custom recipient with several recipients"),
    (3018, Permanent, "a custom recipient with several identifiers"),
    (3019, Permanent, "a custom recipient without an identifier"),
    (3022, Permanent, "OverrideRegisteredContactInformation without custom recipients"),
    (3023, Permanent, "the notification template is invalid"),
    (3024, Permanent, "an e-mail and SMS notification needs both texts"),
    (3025, Permanent, "an e-mail and SMS reminder needs both texts"),
    (4001, Misconfigured(NoAccess), "Altinn Authorization gives the organisation no access to the resource"),
    (4002, Transient, "Altinn Register could not find the sender's own party, which exists: Register failed"),
    (4006, Misconfigured(UnknownCaller), "the token names no caller"),
    (4007, Misconfigured(UnknownCaller), "the token names no organisation number"),
    (4009, Permanent, "the resource is not a CorrespondenceService"),
    (4010, Permanent, "the resource is not a CorrespondenceService"),
];

/// The class Altinn's code gives a failed request; None for a code not in the table.
pub fn class_of(code: i64) -> Option<ErrorClass> {
    CODES.iter().find(|(c, _, _)| *c == code).map(|(_, class, _)| *class)
}

/// Every code the table classifies, in order.
pub fn known() -> impl Iterator<Item = i64> {
    CODES.iter().map(|(code, _, _)| *code)
}

/// True when the code says a dependency of Altinn failed, not the request.
pub fn is_transient(code: i64) -> bool {
    class_of(code) == Some(Transient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_failures_are_transient_and_bad_requests_permanent() {
        for code in [4002, 1015, 1032, 2002, 2022] {
            assert_eq!(class_of(code), Some(Transient), "{code}");
        }
        for code in [1002, 1037, 1036, 1030, 2008] {
            assert_eq!(class_of(code), Some(Permanent), "{code}");
        }
        assert_eq!(class_of(4001), Some(Misconfigured(NoAccess)), "an operator's grant makes it go");
        assert_eq!(class_of(4006), Some(Misconfigured(UnknownCaller)));
        assert_eq!(class_of(9999), None, "an unknown code is left to the HTTP status");
        assert!(is_transient(4002) && !is_transient(1037) && !is_transient(9999));
    }

    #[test]
    fn each_code_once_in_order() {
        assert!(CODES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no duplicates");
    }

    /// The documentation's table is the operators' copy of this one: same codes, same
    /// class, same reason.
    #[test]
    fn the_documentation_lists_every_code_with_its_class() {
        let doc = include_str!("../../../../docs/altinn-errors.md");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|l| l.starts_with("| ") && l.as_bytes().get(2).is_some_and(u8::is_ascii_digit))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), CODES.len(), "one row per code");
        for (row, (code, class, why)) in rows.iter().zip(CODES) {
            let class = match class {
                Transient => "transient",
                Misconfigured(_) => "configuration",
                _ => "permanent",
            };
            assert_eq!((row[0], row[2], row[3]), (code.to_string().as_str(), class, *why), "{row:?}");
        }
    }
}
