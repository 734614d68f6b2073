//! Norwegian party identifiers and the recipient forms Altinn Correspondence accepts.
//!
//! Producers may write a recipient as a bare organisation number (9 digits), `0192:<9>`,
//! a national identity number (11 digits), or any Altinn URN. Altinn itself rejects a bare
//! 9-digit organisation number and checks only the person number's mod-11 digits, so we
//! check both numbers here (an organisation number failing mod 11 can never be delivered)
//! and always send the lower-case URN form the server returns.

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
/// national identity number as its first 6 digits (the birth date) and `*****`, e-mail and
/// user names not at all. A form that cannot be parsed keeps its first 6 characters only,
/// as it may be a mistyped identity number.
pub fn masked(recipient: &str) -> String {
    match Recipient::parse(recipient) {
        Ok(Recipient::Organisation(n)) => n,
        Ok(Recipient::Person(n)) => format!("{}*****", &n[..6]),
        Ok(Recipient::IdportenEmail(_)) => format!("{IDPORTEN_EMAIL_URN}***"),
        Ok(Recipient::SelfIdentified(_)) => format!("{SELF_IDENTIFIED_URN}***"),
        Err(_) => {
            let shown: String = recipient.trim().chars().take(6).collect();
            let hidden = recipient.trim().chars().count().saturating_sub(6);
            shown + &"*".repeat(hidden.min(30))
        }
    }
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
        assert_eq!(masked("13896396174"), "138963*****");
        assert_eq!(masked("urn:altinn:person:identifier-no:13896396174"), "138963*****");
        assert_eq!(masked("urn:altinn:person:idporten-email:a@b.no"), "urn:altinn:person:idporten-email:***");
        assert_eq!(masked("1389639617"), "138963****", "a mistyped number is hidden too");
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
