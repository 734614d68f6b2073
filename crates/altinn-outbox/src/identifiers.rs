//! Norwegian party identifiers and the recipient forms Altinn Correspondence accepts.
//!
//! Producers may write a recipient as a bare organisation number (9 digits), `0192:<9>`,
//! a national identity number (11 digits), or any Altinn URN. Altinn itself rejects a bare
//! 9-digit organisation number and checks only the person number's mod-11 digits, so we
//! check both numbers here (an organisation number failing mod 11 can never be delivered)
//! and always send the lower-case URN form the server returns.
//!
//! Persons' identifiers are personal data: [`masked`] is how a recipient is shown, and
//! [`scrub`] hides them in any text (Altinn's error texts quote the recipient) with the same mask.

use std::borrow::Cow;

const ORG_URN: &str = "urn:altinn:organization:identifier-no:";
const PERSON_URN: &str = "urn:altinn:person:identifier-no:";
const IDPORTEN_EMAIL_URN: &str = "urn:altinn:person:idporten-email:";
const SELF_IDENTIFIED_URN: &str = "urn:altinn:person:legacy-selfidentified:";
/// The ISO 6523 prefix of Norwegian organisation numbers, as `consumer` claims carry it.
const ORG_ISO6523: &str = "0192:";

/// Organisation number weights for digits 1 to 8 (Enhetsregisteret).
const ORG_WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
/// National identity number weights for the first and second check digits.
const PID_K1_WEIGHTS: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const PID_K2_WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// A recipient in the form the Correspondence API accepts, normalised to its URN.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Organisation(String),
    Person(String),
    IdportenEmail(String),
    SelfIdentified(String),
}

impl Recipient {
    /// Parses any accepted producer form. The error says what is wrong without repeating
    /// the value, which may be a national identity number (personal data).
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let s = input.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix(ORG_URN).or_else(|| lower.strip_prefix(ORG_ISO6523)) {
            return organisation(rest);
        }
        if let Some(rest) = lower.strip_prefix(PERSON_URN) {
            return person(rest);
        }
        if let Some(rest) = lower.strip_prefix(IDPORTEN_EMAIL_URN) {
            return match rest.split_once('@') {
                Some((user, domain)) if !user.is_empty() && domain.contains('.') => {
                    Ok(Recipient::IdportenEmail(rest.to_string()))
                }
                _ => Err("is not a valid ID-porten e-mail URN"),
            };
        }
        if let Some(rest) = lower.strip_prefix(SELF_IDENTIFIED_URN) {
            return if rest.is_empty() {
                Err("is a self-identified URN without a user name")
            } else {
                Ok(Recipient::SelfIdentified(rest.to_string()))
            };
        }
        match s.len() {
            9 if all_digits(s) => organisation(s),
            11 if all_digits(s) => person(s),
            _ => Err("is neither an organisation number (9 digits), a national identity number (11 digits) nor an Altinn URN"),
        }
    }

    /// The URN sent to Altinn and compared with the `recipient` Altinn returns.
    pub fn urn(&self) -> String {
        match self {
            Recipient::Organisation(n) => format!("{ORG_URN}{n}"),
            Recipient::Person(n) => format!("{PERSON_URN}{n}"),
            Recipient::IdportenEmail(e) => format!("{IDPORTEN_EMAIL_URN}{e}"),
            Recipient::SelfIdentified(u) => format!("{SELF_IDENTIFIED_URN}{u}"),
        }
    }

    pub fn is_person(&self) -> bool {
        !matches!(self, Recipient::Organisation(_))
    }
}

/// Debug never prints a person's number: recipients reach logs through error values.
impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Organisation(n) => write!(f, "Organisation({n})"),
            _ => f.write_str("Person(***)"),
        }
    }
}

/// A recipient as it may be shown to an operator: an organisation number in full, a
/// national identity number as its last two digits only (`*********74`: the first six are
/// the birth date, and the two check digits alone identify nobody), e-mail and user names not
/// at all. A form that cannot be parsed is treated as a possible mistyped identity number:
/// [`scrub`] if that finds anything, else only its last two characters are shown (none
/// of a form shorter than an organisation number).
pub fn masked(recipient: &str) -> String {
    let trimmed = recipient.trim();
    match Recipient::parse(trimmed) {
        Ok(Recipient::Organisation(n)) => n,
        Ok(Recipient::Person(n)) => person_mask(&n),
        Ok(Recipient::IdportenEmail(_)) => format!("{IDPORTEN_EMAIL_URN}{HIDDEN}"),
        Ok(Recipient::SelfIdentified(_)) => format!("{SELF_IDENTIFIED_URN}{HIDDEN}"),
        Err(_) => match scrub(trimmed) {
            Cow::Owned(scrubbed) => scrubbed,
            Cow::Borrowed(_) => {
                let count = trimmed.chars().count();
                let shown = if count >= 9 { SHOWN_DIGITS } else { 0 };
                let tail: String = trimmed.chars().skip(count - shown).collect();
                "*".repeat((count - shown).min(MAX_STARS)) + &tail
            }
        },
    }
}

/// Replaces every piece of personal data Altinn's texts are known to carry with the mask
/// [`masked`] shows: any run of exactly 11 ASCII digits (a national identity number, checked
/// or not: a mistyped one is personal data too) that is not part of a longer run, every
/// person URN (any letter case; a number that is not 11 digits long is hidden entirely), and
/// the address or user name of every ID-porten e-mail or self-identified URN, which ends at
/// ASCII white space or one of `,;"'<>()[]{}`. Organisation numbers (9 digits) stay.
///
/// One pass over the bytes and no allocation when there is nothing to hide, so it runs on
/// every error text. Migration 12 applies the same rule in SQL
/// (`altinn_outbox.scrub_personal_data`); a test keeps the two in agreement.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // Everything before `copied` is in `out` already (or needs no copy while `out` is None).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (end, mask) = match bytes[i] {
            b'0'..=b'9' => {
                // The whole run at once: a number inside a longer run is no identity number.
                let end = i + bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                (end, (end - i == NATIONAL_ID_DIGITS).then(|| person_mask(&text[i..end])))
            }
            b'u' | b'U' => match urn_at(text, i) {
                Some((end, mask)) => (end, Some(mask)),
                None => (i + 1, None),
            },
            _ => (i + 1, None),
        };
        if let Some(mask) = mask {
            // `i` and `end` are at ASCII bytes, so both are character boundaries.
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..i]);
            out.push_str(&mask);
            copied = end;
        }
        i = end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// Digits of a national identity number (fødselsnummer, D- and H-number alike).
const NATIONAL_ID_DIGITS: usize = 11;
/// Digits of an identity number shown: the second check digit and the one before it, enough
/// to tell two deliveries apart in a ticket, and no part of the birth date.
const SHOWN_DIGITS: usize = 2;
/// What stands for an e-mail address or a user name, of whatever length.
const HIDDEN: &str = "***";
/// A mask of a long unparseable form stays one line.
const MAX_STARS: usize = 30;
/// Where an e-mail address or user name in a URN ends: white space and the punctuation that
/// surrounds a value in Altinn's texts and in JSON. Migration 12 lists the same bytes.
const VALUE_ENDS: &[u8] = b" \t\n\r\x0b\x0c,;\"'<>()[]{}";

/// `*********74`: nine stars for the hidden digits, the last two shown.
fn person_mask(number: &str) -> String {
    format!("{}{}", "*".repeat(NATIONAL_ID_DIGITS - SHOWN_DIGITS), &number[number.len() - SHOWN_DIGITS..])
}

/// A person URN starting at byte `at`: where it ends and its mask.
fn urn_at(text: &str, at: usize) -> Option<(usize, String)> {
    let rest = &text.as_bytes()[at..];
    let starts =
        |prefix: &str| rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
    if starts(PERSON_URN) {
        let digits = rest[PERSON_URN.len()..].iter().take_while(|b| b.is_ascii_digit()).count();
        // No number, nothing to hide.
        if digits == 0 {
            return None;
        }
        let end = at + PERSON_URN.len() + digits;
        let mask = if digits == NATIONAL_ID_DIGITS {
            person_mask(&text[end - digits..end])
        } else {
            "*".repeat(NATIONAL_ID_DIGITS)
        };
        return Some((end, mask));
    }
    for prefix in [IDPORTEN_EMAIL_URN, SELF_IDENTIFIED_URN] {
        if starts(prefix) {
            let value = rest[prefix.len()..].iter().take_while(|b| !VALUE_ENDS.contains(b)).count();
            return Some((at + prefix.len() + value, format!("{prefix}{HIDDEN}")));
        }
    }
    None
}

fn organisation(digits: &str) -> Result<Recipient, &'static str> {
    if digits.len() != 9 || !all_digits(digits) {
        return Err("is not a 9-digit organisation number");
    }
    if !is_valid_org_number(digits) {
        return Err("is an organisation number that fails the mod-11 check");
    }
    Ok(Recipient::Organisation(digits.to_string()))
}

fn person(digits: &str) -> Result<Recipient, &'static str> {
    if digits.len() != 11 || !all_digits(digits) {
        return Err("is not an 11-digit national identity number");
    }
    if !is_valid_national_identity_number(digits) {
        return Err("is a national identity number that fails the mod-11 check");
    }
    Ok(Recipient::Person(digits.to_string()))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn digits_of(s: &str) -> Vec<u32> {
    s.bytes().map(|b| u32::from(b - b'0')).collect()
}

/// `11 - (sum mod 11)`, where 11 becomes 0 and 10 means "no valid check digit".
fn mod11_check_digit(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// Organisation number check (9 digits). The first digit is not checked: test
/// environments use synthetic organisations starting with 2 or 3.
pub fn is_valid_org_number(s: &str) -> bool {
    if s.len() != 9 || !all_digits(s) {
        return false;
    }
    let d = digits_of(s);
    mod11_check_digit(&d[..8], &ORG_WEIGHTS) == Some(d[8])
}

/// National identity number check (fødselsnummer, D-, H- and synthetic numbers). The date
/// part is deliberately not checked, as neither Altinn implementation checks it.
pub fn is_valid_national_identity_number(s: &str) -> bool {
    if s.len() != 11 || !all_digits(s) {
        return false;
    }
    let d = digits_of(s);
    mod11_check_digit(&d[..9], &PID_K1_WEIGHTS) == Some(d[9])
        && mod11_check_digit(&d[..10], &PID_K2_WEIGHTS) == Some(d[10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisation_numbers_from_the_contract() {
        for ok in ["991825827", "974760223", "910753614", "213872702", "313756270", "310356875"] {
            assert!(is_valid_org_number(ok), "{ok} should be valid");
        }
        for bad in ["991825828", "123456789", "99182582", "99182582a"] {
            assert!(!is_valid_org_number(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn national_identity_numbers_from_the_contract() {
        for ok in ["13896396174", "31129956715", "41018510187"] {
            assert!(is_valid_national_identity_number(ok), "{ok} should be valid");
        }
        for bad in ["01010199999", "01017012345", "41018512345", "1389639617"] {
            assert!(!is_valid_national_identity_number(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn every_producer_form_becomes_the_urn_altinn_returns() {
        let org = "urn:altinn:organization:identifier-no:991825827";
        for form in ["991825827", "0192:991825827", org, "URN:ALTINN:ORGANIZATION:IDENTIFIER-NO:991825827"] {
            assert_eq!(Recipient::parse(form).unwrap().urn(), org);
        }
        let pid = "urn:altinn:person:identifier-no:13896396174";
        assert_eq!(Recipient::parse("13896396174").unwrap().urn(), pid);
        assert_eq!(Recipient::parse(pid).unwrap().urn(), pid);
        assert_eq!(
            Recipient::parse("urn:altinn:person:idporten-email:a@b.no").unwrap().urn(),
            "urn:altinn:person:idporten-email:a@b.no"
        );
    }

    #[test]
    fn masked_recipients_show_organisations_and_hide_persons() {
        assert_eq!(masked("0192:991825827"), "991825827");
        assert_eq!(masked("13896396174"), "*********74", "no birth date");
        assert_eq!(masked(" urn:altinn:person:identifier-no:13896396174"), "*********74");
        assert_eq!(masked("urn:altinn:person:idporten-email:a@b.no"), "urn:altinn:person:idporten-email:***");
        assert_eq!(
            masked("urn:altinn:person:legacy-selfidentified:kari"),
            "urn:altinn:person:legacy-selfidentified:***"
        );
        assert_eq!(masked("13896396175"), "*********75", "a number failing mod 11 is hidden the same way");
        assert_eq!(masked("1389639617"), "********17", "a mistyped number is hidden too");
        assert_eq!(masked("991825828"), "*******28", "so is an organisation number failing mod 11");
        assert_eq!(masked("138963"), "******");
    }

    #[test]
    fn altinns_reservation_text_keeps_its_words_and_loses_the_number() {
        let text = "Recipient 31129956715 has reserved themselves from public correspondences. \
                    Can be overridden using the 'IgnoreReservation' flag.";
        assert_eq!(
            scrub(text),
            "Recipient *********15 has reserved themselves from public correspondences. \
             Can be overridden using the 'IgnoreReservation' flag."
        );
    }

    #[test]
    fn a_recipient_list_of_urns_in_any_case_is_scrubbed() {
        let text = "Could not find partyId for the following recipients: \
                    URN:ALTINN:PERSON:IDENTIFIER-NO:31129956715, urn:Altinn:Person:Identifier-No:13896396174, \
                    urn:altinn:organization:identifier-no:991825827, urn:altinn:person:identifier-no:0101019999";
        assert_eq!(
            scrub(text),
            "Could not find partyId for the following recipients: \
             *********15, *********74, urn:altinn:organization:identifier-no:991825827, ***********"
        );
    }

    #[test]
    fn numbers_at_either_end_and_next_to_letters_are_found() {
        assert_eq!(scrub("31129956715"), "*********15");
        assert_eq!(scrub("31129956715 reserved"), "*********15 reserved");
        assert_eq!(scrub("reserved: 31129956715"), "reserved: *********15");
        assert_eq!(scrub("fnr31129956715."), "fnr*********15.");
        assert_eq!(
            scrub("Mottaker «31129956715» har reservert seg – ø"),
            "Mottaker «*********15» har reservert seg – ø"
        );
        assert_eq!(scrub("31129956715,13896396174"), "*********15,*********74");
    }

    #[test]
    fn other_numbers_stay() {
        for text in [
            "organisation 991825827 (urn:altinn:organization:identifier-no:991825827, 0192:991825827)",
            "twelve digits 311299567150 and ten 3112995671",
            "correspondence 0199c8a4-26a7-7b2e-8e4a-2f6c3a3a9b10, error 1030, HTTP 422",
            "",
            "urn:altinn:person:identifier-no: with no number",
        ] {
            assert!(matches!(scrub(text), Cow::Borrowed(_)), "{text} is left as it is, without a copy");
        }
    }

    #[test]
    fn e_mail_addresses_and_user_names_in_urns_are_hidden_whole() {
        assert_eq!(
            scrub("recipient urn:altinn:person:idporten-email:kari.nordmann+x@example.no, then"),
            "recipient urn:altinn:person:idporten-email:***, then"
        );
        assert_eq!(
            scrub(r#"{"recipient":"URN:altinn:person:IDPORTEN-EMAIL:Kari@Example.no"}"#),
            r#"{"recipient":"urn:altinn:person:idporten-email:***"}"#
        );
        assert_eq!(
            scrub("(urn:altinn:person:legacy-selfidentified:kari_31129956715)"),
            "(urn:altinn:person:legacy-selfidentified:***)"
        );
    }

    #[test]
    fn scrubbing_twice_changes_nothing_more() {
        let once =
            scrub("31129956715 urn:altinn:person:identifier-no:13896396174 urn:altinn:person:idporten-email:a@b.no")
                .into_owned();
        assert_eq!(once, "*********15 *********74 urn:altinn:person:idporten-email:***");
        assert_eq!(scrub(&once), once);
    }

    #[test]
    fn invalid_recipients_are_named_without_echoing_the_number() {
        let err = Recipient::parse("991825828").unwrap_err();
        assert!(err.contains("mod-11"), "{err}");
        let err = Recipient::parse("01010199999").unwrap_err();
        assert!(err.contains("national identity number") && !err.contains("0101"));
        assert!(Recipient::parse("abc").is_err());
        assert!(Recipient::parse("urn:altinn:person:idporten-email:nope").is_err());
        assert_eq!(format!("{:?}", Recipient::parse("13896396174").unwrap()), "Person(***)");
    }
}
