//! The notification's rules, checked before sending so that the operator sees the mistake
//! on the row: which texts each channel requires (Altinn's 3002 to 3025), their lengths,
//! and the shape of custom recipients. Keys are matched case-insensitively, as Altinn does.

use serde_json::{Map, Value};

use super::{invalid, Invalid};
use crate::identifiers::{is_valid_national_identity_number, is_valid_org_number};

const FIELD: &str = "notification";
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
    if email {
        for key in ["emailsubject", "emailbody"] {
            let key = format!("{prefix}{key}");
            if text(n, &key).is_none_or(|t| t.trim().is_empty()) {
                missing.push(display(&key));
            }
        }
    }
    if sms && text(n, &format!("{prefix}smsbody")).is_none_or(|t| t.trim().is_empty()) {
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

fn check_custom_recipients(n: &Map<String, Value>) -> Result<(), Invalid> {
    let recipients = match n.get("customrecipients") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return Err(invalid(FIELD, "customRecipients must be a JSON array")),
    };
    if recipients.is_empty() && n.get("overrideregisteredcontactinformation").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(FIELD, "overrideRegisteredContactInformation needs customRecipients (Altinn 3022)"));
    }
    recipients.iter().try_for_each(check_custom_recipient)
}

fn check_custom_recipient(r: &Value) -> Result<(), Invalid> {
    let r = lower_keys(r)?;
    let given: Vec<(&str, &str)> = ["emailaddress", "mobilenumber", "organizationnumber", "nationalidentitynumber"]
        .into_iter()
        .filter_map(|k| text(&r, k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
        .collect();
    let (key, value) = match given.as_slice() {
        [one] => *one,
        [] => return Err(invalid(FIELD, "a custom recipient has no identifier (Altinn 3019)")),
        _ => return Err(invalid(FIELD, "a custom recipient has more than one identifier (Altinn 3018)")),
    };
    let ok = match key {
        "emailaddress" => is_email(value),
        "mobilenumber" => is_e164(value),
        "organizationnumber" => is_valid_org_number(value),
        _ => is_valid_national_identity_number(value),
    };
    if !ok {
        let code = match key {
            "emailaddress" => " (Altinn 3011)",
            "mobilenumber" => ", expected E.164 such as +4799999999 (Altinn 3012)",
            _ => ", it fails the mod-11 check",
        };
        // The value itself is personal data: the message names the key only.
        return Err(invalid(FIELD, format!("a custom recipient's {} is not valid{code}", display(key))));
    }
    Ok(())
}

fn is_email(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else { return false };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !s.contains(' ')
}

/// E.164: a plus, then up to 15 digits, the first not zero.
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
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
        .map_or_else(|| lower.to_string(), |n| n.to_string())
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
                assert_eq!(e.field, "notification");
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
        rejected_with(json!({"notificationChannel": "Email", "emailSubject": " ", "emailBody": "b"}), "emailSubject");
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
            json!({"mobileNumber": "+4799999999"}),
            json!({"organizationNumber": "991825827"}),
            json!({"nationalIdentityNumber": "13896396174"}),
        ] {
            check(&with(ok)).unwrap();
        }
        rejected_with(with(json!({})), "(Altinn 3019)");
        rejected_with(with(json!({"emailAddress": "a@b.no", "mobileNumber": "+4799999999"})), "(Altinn 3018)");
        rejected_with(with(json!({"emailAddress": "not-an-address"})), "(Altinn 3011)");
        rejected_with(with(json!({"mobileNumber": "99999999"})), "E.164");
        let e = check(&with(json!({"nationalIdentityNumber": "01010199999"}))).unwrap_err();
        assert!(e.problem.contains("mod-11") && !e.problem.contains("0101"), "{e}");
        rejected_with(
            json!({"notificationTemplate": 1, "overrideRegisteredContactInformation": true}),
            "(Altinn 3022)",
        );
    }
}
