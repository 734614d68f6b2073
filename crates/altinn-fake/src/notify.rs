//! Validation of `correspondence.notification`: enum parsing, text lengths, custom
//! recipients (3011–3022, checked first, as Altinn does) and the per-channel content rules
//! (3002–3007, 3024, 3025).

use serde_json::Value;

use super::model::{at, Checker};
use super::problem::Problem;

const TEMPLATES: [&str; 2] = ["CustomMessage", "GenericAltinnMessage"];
const CHANNELS: [&str; 5] = ["Email", "Sms", "EmailPreferred", "SmsPreferred", "EmailAndSms"];
const CONTENT_TYPES: [&str; 2] = ["Plain", "Html"];
/// Field limits of `InitializeCorrespondenceNotificationExt`.
const MAX_EMAIL_SUBJECT_CHARS: usize = 512;
const MAX_EMAIL_BODY_CHARS: usize = 10_000;
const MAX_SMS_BODY_CHARS: usize = 2144;
const PATH: &str = "Correspondence.Notification";
const CUSTOM_RECIPIENT_FIELDS: [&str; 4] =
    ["emailAddress", "mobileNumber", "organizationNumber", "nationalIdentityNumber"];

/// The notification order a correspondence gets: its channel and which media it uses.
#[derive(Clone, Debug)]
pub(crate) struct NotificationPlan {
    pub channel: &'static str,
    pub email: bool,
    pub sms: bool,
    /// `sendReminder`: a reminder order follows if the letter stays unread.
    pub reminder: bool,
}

/// What model validation extracted from the notification object.
pub(crate) struct NotificationModel {
    custom_message: bool,
    channel: usize,
    reminder_channel: Option<usize>,
    send_reminder: bool,
}

fn path(field: &str) -> String {
    let mut chars = field.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
    format!("{PATH}.{first}{}", chars.as_str())
}

/// Model validation; an undefined numeric template gives the bare-string 400 (3023).
pub(crate) fn model(c: &mut Checker, body: &Value) -> Result<Option<NotificationModel>, Problem> {
    let Some(n) = at(body, &["correspondence", "notification"]) else {
        return Ok(None);
    };
    let template = at(n, &["notificationTemplate"]);
    if template.and_then(Value::as_u64).is_some_and(|t| t as usize >= TEMPLATES.len()) {
        return Err(Problem::BareString { status: 400, text: "Invalid notification template".into() });
    }
    let template = match template {
        Some(t) => c.enumeration(Some(t), &path("notificationTemplate"), &TEMPLATES),
        None => Some(0),
    };
    // A non-nullable enum: an omitted channel silently becomes Email (0).
    let channel = match at(n, &["notificationChannel"]) {
        Some(v) => c.enumeration(Some(v), &path("notificationChannel"), &CHANNELS),
        None => Some(0),
    };
    let reminder_channel = at(n, &["reminderNotificationChannel"])
        .and_then(|v| c.enumeration(Some(v), &path("reminderNotificationChannel"), &CHANNELS));
    for field in ["emailContentType", "reminderEmailContentType"] {
        if let Some(v) = at(n, &[field]) {
            c.enumeration(Some(v), &path(field), &CONTENT_TYPES);
        }
    }
    for (field, max) in [
        ("emailSubject", MAX_EMAIL_SUBJECT_CHARS),
        ("reminderEmailSubject", MAX_EMAIL_SUBJECT_CHARS),
        ("emailBody", MAX_EMAIL_BODY_CHARS),
        ("reminderEmailBody", MAX_EMAIL_BODY_CHARS),
        ("smsBody", MAX_SMS_BODY_CHARS),
        ("reminderSmsBody", MAX_SMS_BODY_CHARS),
        ("sendersReference", usize::MAX),
    ] {
        c.string_max(at(n, &[field]), &path(field), false, max);
    }
    let send_reminder = c.boolean(at(n, &["sendReminder"]), &path("sendReminder"));
    c.boolean(at(n, &["overrideRegisteredContactInformation"]), &path("overrideRegisteredContactInformation"));
    Ok(Some(NotificationModel {
        custom_message: template == Some(0),
        channel: channel.unwrap_or(0),
        reminder_channel,
        send_reminder,
    }))
}

/// Altinn's `!string.IsNullOrEmpty`: white space counts as given.
fn filled(n: &Value, field: &str) -> bool {
    at(n, &[field]).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// The error code when the content for `channel` is missing, main or reminder.
fn missing_content(n: &Value, channel: usize, reminder: bool) -> Option<(u32, &'static str)> {
    let prefix = if reminder { "reminder" } else { "" };
    let field = |name: &str| {
        if reminder {
            let mut chars = name.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
            format!("{prefix}{first}{}", chars.as_str())
        } else {
            name.to_string()
        }
    };
    let email = filled(n, &field("emailSubject")) && filled(n, &field("emailBody"));
    let sms = filled(n, &field("smsBody"));
    let (ok, code, message) = match (channel, reminder) {
        (0, false) => (email, 3002, "Email body and subject must be provided when sending email notifications"),
        (0, true) => (email, 3003, "Reminder email body and subject must be provided when sending reminder email notifications"),
        (1, false) => (sms, 3004, "SMS body must be provided when sending SMS notifications"),
        (1, true) => (sms, 3005, "Reminder SMS body must be provided when sending reminder SMS notifications"),
        (2 | 3, false) => (email && sms, 3006, "Email body, subject and SMS body must be provided when sending preferred notifications"),
        (2 | 3, true) => (email && sms, 3007, "Reminder email body, subject and SMS body must be provided when sending reminder preferred notifications"),
        (_, false) => (email && sms, 3024, "Email body, subject and SMS body must be provided when sending email and SMS notifications"),
        (_, true) => (email && sms, 3025, "Reminder email body, subject and SMS body must be provided when sending reminder email and SMS notifications"),
    };
    (!ok).then_some((code, message))
}

/// The custom recipients Altinn maps: `customRecipients` if it has any, else the obsolete
/// `customRecipient`, else the first list of the obsolete `customNotificationRecipients`.
fn custom_recipients(n: &Value) -> Vec<&Value> {
    let current: Vec<&Value> = at(n, &["customRecipients"]).and_then(Value::as_array).into_iter().flatten().collect();
    if !current.is_empty() {
        return current;
    }
    if let Some(single) = at(n, &["customRecipient"]) {
        return vec![single];
    }
    let first = at(n, &["customNotificationRecipients"]).and_then(Value::as_array).and_then(|l| l.first());
    first.and_then(|f| at(f, &["recipients"])).and_then(Value::as_array).into_iter().flatten().collect()
}

/// Altinn's e-mail pattern (its `emailRegex`), with `;` refused besides.
fn valid_email(s: &str) -> bool {
    let letter = |c: char| c.is_ascii_alphanumeric() || matches!(c, 'æ' | 'ø' | 'å' | 'Æ' | 'Ø' | 'Å');
    let local_char = |c: char| letter(c) || "!#$%&'*+-=?^_`{|}~".contains(c);
    let Some(at_sign) = s.rfind('@') else { return false };
    let (local, domain) = (&s[..at_sign], &s[at_sign + 1..]);
    let local_ok = if local.starts_with('"') {
        local.len() > 2 && local.ends_with('"') && !local[1..local.len() - 1].contains('"')
    } else {
        local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(local_char))
    };
    let octets: Vec<&str> = domain.split('.').collect();
    let ipv4 =
        octets.len() == 4 && octets.iter().all(|o| (1..=3).contains(&o.len()) && o.chars().all(|c| c.is_ascii_digit()));
    let named = octets.len() >= 2 && octets.len() <= 10 && {
        let (top, labels) = octets.split_last().unwrap_or((&"", &[]));
        (2..=14).contains(&top.len())
            && top.chars().all(|c| c.is_ascii_alphabetic())
            && labels.iter().all(|l| {
                let n = l.chars().count();
                (1..=63).contains(&n)
                    && l.chars().all(|c| letter(c) || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    !s.contains(';') && local_ok && (ipv4 || named)
}

/// Altinn's `MobileNumberHelper.IsValidMobileNumber`: `+` or `00` first, then libphonenumber
/// (the library Altinn uses) must parse it without a region and find it valid.
fn valid_mobile(s: &str) -> bool {
    let number = if let Some(rest) = s.strip_prefix("00") {
        format!("+{rest}")
    } else if s.starts_with('+') {
        s.to_string()
    } else {
        return false;
    };
    phonenumber::parse(None, number).is_ok_and(|p| phonenumber::is_valid(&p))
}

/// Custom recipients: only with one correspondence recipient, one identifier each, no
/// `$recipientName$` for an address or number, and the address or number well formed.
fn custom_recipient_rules(n: &Value, recipients: usize) -> Result<(), Problem> {
    let custom = custom_recipients(n);
    if at(n, &["overrideRegisteredContactInformation"]) == Some(&Value::Bool(true)) && custom.is_empty() {
        return Err(Problem::domain(
            3022,
            "OverrideRegisteredContactInformation flag can only be used when CustomRecipients is provided",
        ));
    }
    if custom.is_empty() {
        return Ok(());
    }
    if recipients > 1 {
        return Err(Problem::domain(3017, "Custom recipient with multiple recipients is not allowed"));
    }
    let texts =
        ["emailBody", "smsBody", "emailSubject", "reminderEmailBody", "reminderSmsBody", "reminderEmailSubject"];
    let names_recipient = texts
        .iter()
        .any(|t| at(n, &[t]).and_then(Value::as_str).is_some_and(|s| s.to_lowercase().contains("$recipientname$")));
    for r in custom {
        match CUSTOM_RECIPIENT_FIELDS.iter().filter(|f| filled(r, f)).count() {
            0 => return Err(Problem::domain(3019, "Custom recipient without identifier is not allowed")),
            1 => {}
            _ => return Err(Problem::domain(3018, "Custom recipient with multiple identifiers is not allowed")),
        }
        let email = at(r, &["emailAddress"]).and_then(Value::as_str);
        let mobile = at(r, &["mobileNumber"]).and_then(Value::as_str);
        if (email.is_some() || mobile.is_some()) && names_recipient {
            return Err(Problem::domain(
                3015,
                "Recipient overrides with email or mobile number are not allowed when using notification recipient name",
            ));
        }
        if email.is_some_and(|e| !valid_email(e)) {
            return Err(Problem::domain(3011, "Invalid email provided for custom recipient."));
        }
        if mobile.is_some_and(|m| !valid_mobile(m)) {
            return Err(Problem::domain(
                3012,
                "Invalid mobile number provided. Mobile number must be in E.164 format (e.g. +4799999999) or start with 00.",
            ));
        }
    }
    Ok(())
}

/// Domain rules; returns the order the correspondence will get.
pub(crate) fn rules(
    model: Option<NotificationModel>,
    body: &Value,
    recipients: usize,
) -> Result<Option<NotificationPlan>, Problem> {
    let (Some(m), Some(n)) = (model, at(body, &["correspondence", "notification"])) else {
        return Ok(None);
    };
    custom_recipient_rules(n, recipients)?;
    if m.custom_message {
        if let Some((code, message)) = missing_content(n, m.channel, false) {
            return Err(Problem::domain(code, message));
        }
        let reminder = m.reminder_channel.unwrap_or(m.channel);
        if let Some((code, message)) = m.send_reminder.then(|| missing_content(n, reminder, true)).flatten() {
            return Err(Problem::domain(code, message));
        }
    }
    let (email, sms) = match m.channel {
        0 | 2 => (true, false),
        1 | 3 => (false, true),
        _ => (true, true),
    };
    Ok(Some(NotificationPlan { channel: CHANNELS[m.channel], email, sms, reminder: m.send_reminder }))
}
