//! The notification's rules, checked before sending so that the operator sees the mistake
//! on the row: which texts each channel requires (Altinn's 3002 to 3025), their lengths,
//! and the shape of custom recipients (3011 to 3019). Keys are matched case-insensitively,
//! and enum names in any case, as Altinn's JSON reader does.

use serde_json::{Map, Value};

use super::{invalid, Column, Invalid};
use crate::identifiers::{is_valid_national_identity_number, is_valid_org_number};

const FIELD: Column = Column::Notification;
// Lengths from Altinn's model (InitializeCorrespondenceNotificationExt), in UTF-16 units.
const MAX_EMAIL_SUBJECT: usize = 512;
const MAX_EMAIL_BODY: usize = 10_000;
const MAX_SMS_BODY: usize = 2_144;

const TEMPLATES: [&str; 2] = ["CustomMessage", "GenericAltinnMessage"];
const CHANNELS: [&str; 5] = ["Email", "Sms", "EmailPreferred", "SmsPreferred", "EmailAndSms"];
const CONTENT_TYPES: [&str; 2] = ["Plain", "Html"];

/// Which texts a channel needs: (e-mail subject and body, SMS body).
fn needs(channel: &str) -> (bool, bool) {
    match channel {
        "Email" => (true, false),
        "Sms" => (false, true),
        _ => (true, true),
    }
}

/// Altinn's code for a missing text: (main, reminder) per channel.
fn missing_code(channel: &str) -> (u16, u16) {
    match channel {
        "Email" => (3002, 3003),
        "Sms" => (3004, 3005),
        "EmailAndSms" => (3024, 3025),
        _ => (3006, 3007),
    }
}

pub fn check(notification: &Value) -> Result<(), Invalid> {
    let n = lower_keys(notification)?;
    let template = enum_value(&n, "notificationtemplate", &TEMPLATES, "CustomMessage")?;
    let channel = enum_value(&n, "notificationchannel", &CHANNELS, "Email")?;
    enum_value(&n, "emailcontenttype", &CONTENT_TYPES, "Plain")?;
    enum_value(&n, "reminderemailcontenttype", &CONTENT_TYPES, "Plain")?;
    for (key, max) in [
        ("emailsubject", MAX_EMAIL_SUBJECT),
        ("emailbody", MAX_EMAIL_BODY),
        ("smsbody", MAX_SMS_BODY),
        ("reminderemailsubject", MAX_EMAIL_SUBJECT),
        ("reminderemailbody", MAX_EMAIL_BODY),
        ("remindersmsbody", MAX_SMS_BODY),
    ] {
        if text(&n, key).is_some_and(|t| t.encode_utf16().count() > max) {
            return Err(invalid(FIELD, format!("{} is longer than {max} characters", display(key))));
        }
    }
    let reminder = n.get("sendreminder").and_then(Value::as_bool).unwrap_or(false);
    // With Altinn's generic template the texts come from Altinn: nothing is required.
    if template == "CustomMessage" {
        require_texts(&n, channel, "", missing_code(channel).0)?;
        if reminder {
            let reminder_channel = enum_value(&n, "remindernotificationchannel", &CHANNELS, channel)?;
            require_texts(&n, reminder_channel, "reminder", missing_code(reminder_channel).1)?;
        }
    }
    check_custom_recipients(&n)
}

fn require_texts(n: &Map<String, Value>, channel: &str, prefix: &str, code: u16) -> Result<(), Invalid> {
    let (email, sms) = needs(channel);
    let mut missing = Vec::new();
    // Altinn asks only for a non-empty text (`IsNullOrEmpty`): white space is a text.
    let absent = |key: &str| text(n, key).is_none_or(str::is_empty);
    if email {
        for key in ["emailsubject", "emailbody"] {
            let key = format!("{prefix}{key}");
            if absent(&key) {
                missing.push(display(&key));
            }
        }
    }
    if sms && absent(&format!("{prefix}smsbody")) {
        missing.push(display(&format!("{prefix}smsbody")));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let what = if prefix.is_empty() { "channel" } else { "reminder channel" };
    Err(invalid(
        FIELD,
        format!("{} required for {what} {channel} with CustomMessage (Altinn {code})", missing.join(" and ")),
    ))
}

/// The custom recipients Altinn uses: `customRecipients` when it has any, else the obsolete
/// `customRecipient`, else the first list of the obsolete `customNotificationRecipients`.
fn custom_recipients(n: &Map<String, Value>) -> Result<Vec<Value>, Invalid> {
    let list = |v: Option<&Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(invalid(FIELD, format!("{name} must be a JSON array"))),
    };
    let current = list(n.get("customrecipients"), "customRecipients")?;
    if !current.is_empty() {
        return Ok(current);
    }
    if let Some(single) = n.get("customrecipient").filter(|v| !v.is_null()) {
        return Ok(vec![single.clone()]);
    }
    let legacy = list(n.get("customnotificationrecipients"), "customNotificationRecipients")?;
    let first = legacy.first().map(lower_keys).transpose()?;
    list(first.as_ref().and_then(|f| f.get("recipients")), "customNotificationRecipients[0].recipients")
}

fn check_custom_recipients(n: &Map<String, Value>) -> Result<(), Invalid> {
    let recipients = custom_recipients(n)?;
    if recipients.is_empty() && n.get("overrideregisteredcontactinformation").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(FIELD, "overrideRegisteredContactInformation needs customRecipients (Altinn 3022)"));
    }
    recipients.iter().try_for_each(|r| check_custom_recipient(n, r))
}

/// The keyword Altinn will not fill in for an address or number (3015).
const RECIPIENT_NAME: &str = "$recipientname$";
const TEXT_KEYS: [&str; 6] =
    ["emailbody", "smsbody", "emailsubject", "reminderemailbody", "remindersmsbody", "reminderemailsubject"];

fn check_custom_recipient(n: &Map<String, Value>, r: &Value) -> Result<(), Invalid> {
    let r = lower_keys(r)?;
    // An identifier counts when it is not empty (`IsNullOrEmpty`), as Altinn counts them.
    let given: Vec<(&str, &str)> = ["emailaddress", "mobilenumber", "organizationnumber", "nationalidentitynumber"]
        .into_iter()
        .filter_map(|k| text(&r, k).filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
    let (key, value) = match given.as_slice() {
        [one] => *one,
        [] => return Err(invalid(FIELD, "a custom recipient has no identifier (Altinn 3019)")),
        _ => return Err(invalid(FIELD, "a custom recipient has more than one identifier (Altinn 3018)")),
    };
    // Altinn checks an address or number whenever the member is there, even empty beside
    // another identifier, and refuses `$recipientName$` for either.
    let email = text(&r, "emailaddress");
    let mobile = text(&r, "mobilenumber");
    if (email.is_some() || mobile.is_some())
        && TEXT_KEYS.iter().any(|k| text(n, k).is_some_and(|t| t.to_lowercase().contains(RECIPIENT_NAME)))
    {
        return Err(invalid(
            FIELD,
            "$recipientName$ cannot be used with an e-mail or mobile custom recipient (Altinn 3015)",
        ));
    }
    let ok = match key {
        // Altinn passes these to Altinn Notifications as they are, which takes only the bare
        // digits (URN forms fail the order after the letter is sent). The check digit is ours:
        // a number that fails it is a typo that could name someone else.
        "organizationnumber" => is_valid_org_number(value),
        "nationalidentitynumber" => is_valid_national_identity_number(value),
        _ => true,
    };
    let bad = if email.is_some_and(|e| !is_email(e)) {
        Some("emailaddress")
    } else if mobile.is_some_and(|m| !is_mobile_number(m)) {
        Some("mobilenumber")
    } else {
        (!ok).then_some(key)
    };
    if let Some(key) = bad {
        let code = match key {
            "emailaddress" => " (Altinn 3011)",
            "mobilenumber" => ", expected + or 00, country code and number, such as +4799999999 (Altinn 3012)",
            _ => ", it must be the bare digits and pass the mod-11 check",
        };
        // The value itself is personal data: the message names the key only.
        return Err(invalid(FIELD, format!("a custom recipient's {} is not valid{code}", display(key))));
    }
    Ok(())
}

/// Altinn's e-mail pattern: a local part of dot-separated atoms (or a quoted string), then
/// either a domain of up to ten labels whose last is 2 to 14 letters, or an IPv4 address;
/// no `;` anywhere. Letters include æøå.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    if s.contains(';') {
        return false;
    }
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "æøåÆØÅ!#$%&'*+-=?^_`{|}~".contains(c);
    let quoted =
        local.len() > 2 && local.starts_with('"') && local.ends_with('"') && !local[1..local.len() - 1].contains('"');
    let atoms = !local.is_empty() && local.split('.').all(|a| !a.is_empty() && a.chars().all(atom_char));
    (quoted || atoms) && (is_domain(domain) || is_ipv4(domain))
}

fn is_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    let Some((top, rest)) = labels.split_last() else { return false };
    let label_char = |c: char| c.is_ascii_alphanumeric() || "æøåÆØÅ".contains(c);
    let label = |l: &&str| {
        let chars: Vec<char> = l.chars().collect();
        !chars.is_empty()
            && chars.len() <= 63
            && label_char(chars[0])
            && label_char(chars[chars.len() - 1])
            && chars.iter().all(|&c| label_char(c) || c == '-')
    };
    (1..=9).contains(&rest.len())
        && rest.iter().all(label)
        && (2..=14).contains(&top.len())
        && top.chars().all(|c| c.is_ascii_alphabetic())
}

fn is_ipv4(d: &str) -> bool {
    let parts: Vec<&str> = d.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Altinn's rule (its `MobileNumberHelper`): `+` or `00`, then a number that libphonenumber
/// parses without a region and finds valid for its country.
fn is_mobile_number(s: &str) -> bool {
    let international = match s.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None if s.starts_with('+') => s.to_string(),
        None => return false,
    };
    phonenumber::parse(None, &international).is_ok_and(|n| phonenumber::is_valid(&n))
}

fn lower_keys(v: &Value) -> Result<Map<String, Value>, Invalid> {
    let object = v
        .as_object()
        .ok_or_else(|| invalid(FIELD, "must be a JSON object in the shape of Altinn's correspondence.notification"))?;
    Ok(object.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
}

fn text<'a>(n: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    n.get(key).and_then(Value::as_str)
}

/// An enum given by name (any case) or number, as Altinn accepts it; absent gives `default`.
fn enum_value<'a>(n: &Map<String, Value>, key: &str, names: &[&'a str], default: &'a str) -> Result<&'a str, Invalid> {
    let found = match n.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(i)) => i.as_u64().and_then(|i| names.get(i as usize).copied()),
        Some(Value::String(s)) => names.iter().find(|name| name.eq_ignore_ascii_case(s)).copied(),
        Some(_) => None,
    };
    found.ok_or_else(|| invalid(FIELD, format!("{} must be one of {}", display(key), names.join(", "))))
}

/// The camelCase name a producer knows, for messages.
fn display(lower: &str) -> String {
    const NAMES: [&str; 12] = [
        "notificationTemplate",
        "notificationChannel",
        "emailContentType",
        "reminderEmailContentType",
        "reminderNotificationChannel",
        "emailSubject",
        "emailBody",
        "smsBody",
        "reminderEmailSubject",
        "reminderEmailBody",
        "reminderSmsBody",
        "mobileNumber",
    ];
    const MORE: [&str; 3] = ["emailAddress", "organizationNumber", "nationalIdentityNumber"];
    NAMES
        .iter()
        .chain(MORE.iter())
        .find(|n| n.eq_ignore_ascii_case(lower))
        .map_or_else(|| lower.to_string(), std::string::ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn rejected_with(n: Value, fragment: &str) {
        match check(&n) {
            Ok(()) => panic!("{n} should be rejected ({fragment})"),
            Err(e) => {
                assert_eq!(e.field, Column::Notification);
                assert!(e.problem.contains(fragment), "{:?} should mention {fragment}", e.problem);
            }
        }
    }

    #[test]
    fn each_channel_requires_its_texts_with_altinns_code() {
        let email = json!({"emailSubject": "s", "emailBody": "b"});
        check(&email).unwrap(); // channel omitted means Email
        rejected_with(
            json!({"emailSubject": "s"}),
            "emailBody required for channel Email with CustomMessage (Altinn 3002)",
        );
        rejected_with(
            json!({"notificationChannel": "Sms"}),
            "smsBody required for channel Sms with CustomMessage (Altinn 3004)",
        );
        check(&json!({"notificationChannel": 1, "smsBody": "x"})).unwrap();
        for preferred in ["EmailPreferred", "SmsPreferred"] {
            rejected_with(json!({"notificationChannel": preferred, "smsBody": "x"}), "(Altinn 3006)");
            check(&json!({"notificationChannel": preferred, "smsBody": "x", "emailSubject": "s", "emailBody": "b"}))
                .unwrap();
        }
        rejected_with(
            json!({"notificationChannel": "EmailAndSms", "emailSubject": "s", "emailBody": "b"}),
            "(Altinn 3024)",
        );
        rejected_with(json!({"notificationChannel": "Email", "emailSubject": "", "emailBody": "b"}), "emailSubject");
        // Altinn only asks that a text is not empty: white space passes there, so here.
        check(&json!({"notificationChannel": "Email", "emailSubject": " ", "emailBody": "b"})).unwrap();
        // Enum names in any case, as .NET's JSON reader takes them.
        check(&json!({"notificationChannel": "sMS", "smsBody": "x", "notificationTemplate": "custommessage"})).unwrap();
    }

    #[test]
    fn reminders_require_the_texts_of_their_own_channel() {
        let base = json!({"notificationChannel": "Sms", "smsBody": "x", "sendReminder": true});
        rejected_with(
            base.clone(),
            "reminderSmsBody required for reminder channel Sms with CustomMessage (Altinn 3005)",
        );
        let mut with_email_reminder = base.clone();
        with_email_reminder["reminderNotificationChannel"] = json!("Email");
        rejected_with(with_email_reminder.clone(), "(Altinn 3003)");
        with_email_reminder["reminderEmailSubject"] = json!("s");
        with_email_reminder["reminderEmailBody"] = json!("b");
        check(&with_email_reminder).unwrap();
        rejected_with(
            json!({"notificationChannel": "SmsPreferred", "smsBody": "x", "emailSubject": "s", "emailBody": "b",
                             "sendReminder": true, "reminderSmsBody": "r"}),
            "(Altinn 3007)",
        );
        rejected_with(
            json!({"notificationChannel": "EmailAndSms", "smsBody": "x", "emailSubject": "s", "emailBody": "b",
                             "sendReminder": true}),
            "(Altinn 3025)",
        );
        // No reminder, no reminder texts needed.
        check(&json!({"notificationChannel": "Sms", "smsBody": "x", "sendReminder": false})).unwrap();
    }

    #[test]
    fn the_generic_template_needs_no_texts_and_enums_are_checked() {
        check(&json!({"notificationTemplate": "GenericAltinnMessage", "notificationChannel": "EmailAndSms"})).unwrap();
        check(&json!({"NotificationTemplate": 1, "sendReminder": true})).unwrap();
        rejected_with(json!({"notificationTemplate": 7}), "notificationTemplate must be one of");
        rejected_with(json!({"notificationChannel": "Fax"}), "notificationChannel must be one of");
        rejected_with(
            json!({"emailSubject": "s", "emailBody": "b", "emailContentType": "Markdown"}),
            "emailContentType",
        );
    }

    #[test]
    fn text_lengths_are_limited_on_both_sides() {
        let at = |subject: usize, body: usize, sms: usize| {
            json!({"notificationChannel": "EmailAndSms", "emailSubject": "s".repeat(subject),
                   "emailBody": "b".repeat(body), "smsBody": "m".repeat(sms)})
        };
        check(&at(512, 10_000, 2_144)).unwrap();
        rejected_with(at(513, 1, 1), "emailSubject is longer than 512");
        rejected_with(at(1, 10_001, 1), "emailBody is longer than 10000");
        rejected_with(at(1, 1, 2_145), "smsBody is longer than 2144");
    }

    #[test]
    fn custom_recipients_have_exactly_one_valid_identifier() {
        let with = |r: Value| json!({"notificationTemplate": "GenericAltinnMessage", "customRecipients": [r]});
        for ok in [
            json!({"emailAddress": "kari@example.no"}),
            json!({"emailAddress": "kari.nordmann@post.sub.example.museum"}),
            json!({"emailAddress": "kåre@eksempel.no"}),
            json!({"mobileNumber": "+4799999999"}),
            json!({"mobileNumber": "004799999999"}),
            json!({"mobileNumber": "+46701234567"}),
            json!({"organizationNumber": "991825827"}),
            json!({"nationalIdentityNumber": "13896396174"}),
            json!({"organizationNumber": "991825827", "nationalIdentityNumber": ""}),
        ] {
            check(&with(ok)).unwrap();
        }
        rejected_with(with(json!({})), "(Altinn 3019)");
        rejected_with(with(json!({"emailAddress": "a@b.no", "mobileNumber": "+4799999999"})), "(Altinn 3018)");
        // A blank identifier is still an identifier to Altinn (and then not a valid one), and
        // an empty address or number is checked although it does not count.
        rejected_with(with(json!({"emailAddress": "a@b.no", "mobileNumber": " "})), "(Altinn 3018)");
        rejected_with(with(json!({"emailAddress": "kari@example.no", "mobileNumber": ""})), "(Altinn 3012)");
        rejected_with(with(json!({"organizationNumber": "991825827", "emailAddress": ""})), "(Altinn 3011)");
        for bad in ["not-an-address", "a@b.c", "a@b", "a;b@example.no", "a@example.n0", ".a@example.no", "a@-x.no"] {
            rejected_with(with(json!({"emailAddress": bad})), "(Altinn 3011)");
        }
        // Without + or 00 no number is read; with them, it must be a number of its country.
        for bad in ["99999999", "4799999999", "+47999", "+4712345678", "0047123", "+", "00"] {
            rejected_with(with(json!({"mobileNumber": bad})), "(Altinn 3012)");
        }
        let e = check(&with(json!({"nationalIdentityNumber": "01010199999"}))).unwrap_err();
        assert!(e.problem.contains("mod-11") && !e.problem.contains("0101"), "{e}");
        for urn in ["urn:altinn:organization:identifier-no:991825827", "0192:991825827"] {
            rejected_with(with(json!({"organizationNumber": urn})), "bare digits");
        }
        rejected_with(
            json!({"notificationTemplate": 1, "overrideRegisteredContactInformation": true}),
            "(Altinn 3022)",
        );
    }

    #[test]
    fn the_obsolete_custom_recipient_fields_are_read_as_altinn_reads_them() {
        let generic = |extra: Value| {
            let mut n = json!({"notificationTemplate": "GenericAltinnMessage"});
            n.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            n
        };
        rejected_with(generic(json!({"customRecipient": {"mobileNumber": "12"}})), "(Altinn 3012)");
        rejected_with(
            generic(json!({"customNotificationRecipients": [{"recipients": [{"emailAddress": "x"}]}]})),
            "(Altinn 3011)",
        );
        // Only the first list counts, and customRecipients wins over both.
        check(&generic(json!({"customNotificationRecipients": [
            {"recipients": [{"emailAddress": "a@b.no"}]}, {"recipients": [{"emailAddress": "x"}]}
        ]})))
        .unwrap();
        check(&generic(
            json!({"customRecipients": [{"emailAddress": "a@b.no"}], "customRecipient": {"mobileNumber": "1"}}),
        ))
        .unwrap();
        // An obsolete field satisfies the override flag too.
        check(&generic(
            json!({"customRecipient": {"emailAddress": "a@b.no"}, "overrideRegisteredContactInformation": true}),
        ))
        .unwrap();
    }

    #[test]
    fn recipient_name_is_refused_with_addresses_and_numbers_only() {
        let n = |r: Value, body: &str| json!({"emailSubject": "Hei", "emailBody": body, "customRecipients": [r]});
        rejected_with(n(json!({"emailAddress": "a@b.no"}), "Til $recipientName$"), "(Altinn 3015)");
        rejected_with(n(json!({"mobileNumber": "+4799999999"}), "Til $RECIPIENTNAME$"), "(Altinn 3015)");
        check(&n(json!({"organizationNumber": "991825827"}), "Til $recipientName$")).unwrap();
        check(&n(json!({"emailAddress": "a@b.no"}), "Til $sendersName$")).unwrap();
    }
}
