use chrono::TimeZone;
use serde_json::json;

use super::*;

const ORG: &str = "991825827";
const ORG_URN: &str = "urn:altinn:organization:identifier-no:991825827";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
}

fn key() -> Uuid {
    Uuid::from_u128(0x0f8e2a52_6a1b_5c3e_9d44_2b7c1e0a9f11)
}

/// The smallest message Altinn accepts: every optional column empty.
pub(crate) fn minimal() -> MessageRow {
    MessageRow {
        message_id: 1,
        resource_id: "my-correspondence-resource".into(),
        senders_reference: "case-2026-0042".into(),
        resend: 0,
        language: "nb".into(),
        title: "Vedtak".into(),
        summary: None,
        body: "# Vedtak\nTekst i **markdown**".into(),
        message_sender: None,
        requested_publish_time: None,
        due_date_time: None,
        external_references: None,
        property_list: None,
        reply_options: None,
        notification: None,
        ignore_reservation: None,
        is_confirmation_needed: false,
        is_confidential: false,
        allow_forwarding: false,
        existing_attachments: Vec::new(),
        attachment_count: 0,
        shared_file_count: 0,
        attachment_bytes: 0,
    }
}

/// The minimal message with one change, so each test shows only what it varies.
fn with(change: impl FnOnce(&mut MessageRow)) -> MessageRow {
    let mut m = minimal();
    change(&mut m);
    m
}

fn build(m: &MessageRow) -> Result<InitializeRequest, Invalid> {
    initialize_request(m, ORG, key(), now())
}

#[track_caller]
fn accepted(m: &MessageRow) {
    if let Err(e) = build(m) {
        panic!("should be accepted, was rejected: {e}");
    }
}

#[track_caller]
fn rejected(m: &MessageRow, field: &str) {
    match build(m) {
        Ok(_) => panic!("should be rejected on {field}, was accepted"),
        Err(e) => assert_eq!(e.field.as_str(), field, "rejected on the wrong field: {e}"),
    }
}

/// 'ø' is two bytes in UTF-8: a limit counted in bytes would reject these at half length.
fn oslash(n: usize) -> String {
    "ø".repeat(n)
}

#[test]
fn lengths_count_utf16_units_as_altinn_does() {
    // An emoji is two UTF-16 units: 127 of them (254 units) fit a 255 limit, 128 do not.
    accepted(&with(|m| m.title = "😀".repeat(127)));
    rejected(&with(|m| m.title = "😀".repeat(128)), "title");
    accepted(&with(|m| m.message_sender = Some("😀".repeat(127))));
    rejected(&with(|m| m.message_sender = Some("😀".repeat(128))), "message_sender");
    accepted(&with(|m| m.summary = Some("😀".repeat(127))));
    rejected(&with(|m| m.summary = Some("😀".repeat(128))), "summary");
    accepted(&with(|m| m.body = "😀".repeat(15_000)));
    rejected(&with(|m| m.body = "😀".repeat(15_001)), "body");
    accepted(&with(|m| m.senders_reference = "😀".repeat(2048)));
    rejected(&with(|m| m.senders_reference = "😀".repeat(2049)), "senders_reference");
    accepted(&with(|m| m.resource_id = "😀".repeat(127)));
    rejected(&with(|m| m.resource_id = "😀".repeat(128)), "resource_id");
    let link = |n: usize| {
        let base = "https://example.no/";
        format!("{base}{}", "😀".repeat((n - base.len()) / 2))
    };
    let reply = |url: String| with(|m| m.reply_options = Some(json!([{"linkURL": url}])));
    accepted(&reply(link(255)));
    rejected(&reply(format!("{}x", link(256))), "reply_options");
}

#[test]
fn json_null_columns_count_as_absent_and_resource_ids_keep_no_white_space() {
    let r = build(&with(|m| {
        m.notification = Some(serde_json::Value::Null);
        m.property_list = Some(serde_json::Value::Null);
    }))
    .unwrap();
    assert!(r.correspondence.notification.is_none());
    rejected(&with(|m| m.resource_id = " my-resource".into()), "resource_id");
}

#[test]
fn the_minimal_message_is_accepted_and_the_code_names_the_column() {
    accepted(&minimal());
    let e = build(&with(|m| m.title = String::new())).unwrap_err();
    assert_eq!(e.code(), "validation:title");
    assert!(e.to_string().starts_with("title: "), "{e}");
}

#[test]
fn resource_id_is_1_to_255_characters_prefix_included() {
    accepted(&with(|m| m.resource_id = "a".repeat(255)));
    rejected(&with(|m| m.resource_id = "a".repeat(256)), "resource_id");
    accepted(&with(|m| m.resource_id = oslash(255)));
    rejected(&with(|m| m.resource_id = oslash(256)), "resource_id");
    // Altinn's StringLength applies to the whole value, prefix and all (20 characters).
    let prefix = "urn:altinn:resource:";
    accepted(&with(|m| m.resource_id = format!("{prefix}{}", "a".repeat(235))));
    rejected(&with(|m| m.resource_id = format!("{prefix}{}", "a".repeat(236))), "resource_id");
    rejected(&with(|m| m.resource_id = String::new()), "resource_id");
    rejected(&with(|m| m.resource_id = prefix.into()), "resource_id");
}

#[test]
fn resource_id_allows_only_the_urn_prefix_as_colon() {
    accepted(&with(|m| m.resource_id = "urn:altinn:resource:my-resource".into()));
    accepted(&with(|m| m.resource_id = "a".into()));
    rejected(&with(|m| m.resource_id = "my:resource".into()), "resource_id");
    rejected(&with(|m| m.resource_id = "urn:altinn:resource:my:resource".into()), "resource_id");
    rejected(&with(|m| m.resource_id = "urn:other:my-resource".into()), "resource_id");
}

#[test]
fn senders_reference_is_1_to_4096_characters() {
    rejected(&with(|m| m.senders_reference = String::new()), "senders_reference");
    accepted(&with(|m| m.senders_reference = "x".into()));
    accepted(&with(|m| m.senders_reference = oslash(4096)));
    rejected(&with(|m| m.senders_reference = oslash(4097)), "senders_reference");
}

#[test]
fn title_is_1_to_255_characters_and_not_blank() {
    rejected(
        &with(|m| m.external_references = Some(json!([{"referenceValue": "1", "referenceType": "Nope"}]))),
        "external_references",
    );
    rejected(
        &with(|m| m.external_references = Some(json!([{"referenceValue": "1", "referenceType": 7}]))),
        "external_references",
    );
    rejected(&with(|m| m.title = String::new()), "title");
    rejected(&with(|m| m.title = " \t\n".into()), "title");
    accepted(&with(|m| m.title = "x".into()));
    accepted(&with(|m| m.title = oslash(255)));
    rejected(&with(|m| m.title = oslash(256)), "title");
}

#[test]
fn summary_is_optional_and_at_most_255_characters() {
    accepted(&with(|m| m.summary = Some(String::new())));
    accepted(&with(|m| m.summary = Some(oslash(255))));
    rejected(&with(|m| m.summary = Some(oslash(256))), "summary");
}

#[test]
fn body_is_1_to_30000_characters_and_not_blank() {
    rejected(&with(|m| m.body = String::new()), "body");
    rejected(&with(|m| m.body = "  \n ".into()), "body");
    accepted(&with(|m| m.body = "x".into()));
    accepted(&with(|m| m.body = oslash(30_000)));
    rejected(&with(|m| m.body = oslash(30_001)), "body");
}

#[test]
fn message_sender_is_at_most_255_characters() {
    accepted(&with(|m| m.message_sender = Some(oslash(255))));
    rejected(&with(|m| m.message_sender = Some(oslash(256))), "message_sender");
}

#[test]
fn language_is_nb_nn_or_en_in_any_case_and_blank_means_nb() {
    // Altinn lower-cases the language before comparing, and reads a blank one as nb.
    for ok in ["nb", "nn", "en", "NB", "Nn", "eN", "", "  "] {
        accepted(&with(|m| m.language = ok.into()));
    }
    for bad in ["no", "se", "de", "nob", "n b"] {
        rejected(&with(|m| m.language = bad.into()), "language");
    }
}

#[test]
fn title_and_message_sender_must_be_plain_text() {
    // Altinn's own cases (1002, 1039): HTML and a markdown heading are refused ...
    for bad in ["<h1>test</h1>", "# test", "[lenke](https://example.no)", "Smith &amp; Co"] {
        rejected(&with(|m| m.title = bad.into()), "title");
        rejected(&with(|m| m.message_sender = Some(bad.into())), "message_sender");
    }
    // ... while what only looks like markdown passes.
    for ok in ["Error #404 not found.", "This *is not* markdown", "123. Ikke en liste", "Smith & Co"] {
        accepted(&with(|m| m.title = ok.into()));
        accepted(&with(|m| m.message_sender = Some(ok.into())));
    }
    let e = build(&with(|m| m.title = "<b>Vedtak</b>".into())).unwrap_err();
    assert!(e.problem.contains("Altinn 1002"), "{e}");
}

#[test]
fn the_body_may_hold_html_as_altinn_now_accepts() {
    // Altinn HTML-encodes the body before its markdown check, so raw HTML passes there.
    accepted(&with(|m| m.body = "<h1>Vedtak</h1>\n<p>Tekst</p>".into()));
    accepted(&with(|m| m.body = "# Vedtak\n\n[lenke](https://example.no) og <b>fet</b>".into()));
}

#[test]
fn due_date_is_not_in_the_past() {
    accepted(&with(|m| m.due_date_time = Some(now())));
    rejected(&with(|m| m.due_date_time = Some(now() - chrono::Duration::seconds(1))), "due_date_time");
}

#[test]
fn due_date_is_not_before_the_requested_publish_time() {
    let publish = now() + chrono::Duration::days(2);
    let at = |due| {
        with(|m| {
            m.requested_publish_time = Some(publish);
            m.due_date_time = Some(due);
        })
    };
    accepted(&at(publish));
    rejected(&at(publish - chrono::Duration::seconds(1)), "due_date_time");
    // A publish time in the past means "at once", so it only bounds the due date.
    accepted(&with(|m| m.requested_publish_time = Some(now() - chrono::Duration::days(1))));
}

#[test]
fn confirmation_needs_a_due_date() {
    rejected(&with(|m| m.is_confirmation_needed = true), "due_date_time");
    accepted(&with(|m| {
        m.is_confirmation_needed = true;
        m.due_date_time = Some(now() + chrono::Duration::days(14));
    }));
}

fn references(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"referenceValue": i.to_string(), "referenceType": "Generic"})).collect())
}

#[test]
fn external_references_are_an_array_of_at_most_10() {
    accepted(&with(|m| m.external_references = Some(references(10))));
    rejected(&with(|m| m.external_references = Some(references(11))), "external_references");
    accepted(&with(|m| m.external_references = Some(Value::Null)));
    accepted(&with(|m| m.external_references = Some(json!([]))));
    rejected(&with(|m| m.external_references = Some(json!({"referenceValue": "1"}))), "external_references");
}

#[test]
fn dialogporten_references_follow_altinns_rules() {
    let refs = |list: Value| with(|m| m.external_references = Some(list));
    let dialog =
        json!({"referenceValue": "0195b4a6-0000-7000-8000-000000000001", "referenceType": "DialogportenDialogId"});
    // A transmission id is Altinn's to make: refused by name in any case and by number.
    for kind in [json!("DialogportenTransmissionId"), json!("dialogportentransmissionid"), json!(5)] {
        rejected(&refs(json!([{"referenceValue": "x", "referenceType": kind}])), "external_references");
    }
    // A transmission type needs a dialog, a valid value, and comes at most once (1052, 1053).
    let kind = |value: &str| json!({"referenceValue": value, "referenceType": "DialogportenTransmissionType"});
    accepted(&refs(json!([dialog.clone(), kind("Information")])));
    accepted(&refs(json!([dialog.clone(), kind("decision")])));
    accepted(&refs(json!([dialog.clone(), kind("8")])));
    rejected(&refs(json!([dialog.clone(), kind("9")])), "external_references");
    rejected(&refs(json!([dialog.clone(), kind("Unknown")])), "external_references");
    rejected(&refs(json!([kind("Information")])), "external_references");
    rejected(&refs(json!([dialog.clone(), kind("Alert"), kind("Alert")])), "external_references");
    // Enum names in any case, as .NET's JSON reader takes them.
    accepted(&refs(json!([{"referenceValue": "1", "referenceType": "gEnErIc"}])));
}

#[test]
fn external_references_need_a_string_value_and_a_type() {
    // Altinn binds enums by name or by number.
    accepted(&with(|m| m.external_references = Some(json!([{"referenceValue": "1", "referenceType": 0}]))));
    for bad in [
        json!([{"referenceValue": "1"}]),
        json!([{"referenceType": "Generic"}]),
        json!([{"referenceValue": 1, "referenceType": "Generic"}]),
        json!([{"referenceValue": "1", "referenceType": null}]),
        json!(["1"]),
    ] {
        rejected(&with(|m| m.external_references = Some(bad.clone())), "external_references");
    }
}

fn properties(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

#[test]
fn property_list_is_an_object_of_at_most_10_strings() {
    accepted(&with(|m| m.property_list = Some(properties(10))));
    rejected(&with(|m| m.property_list = Some(properties(11))), "property_list");
    rejected(&with(|m| m.property_list = Some(json!([["k", "v"]]))), "property_list");
    rejected(&with(|m| m.property_list = Some(json!({"caseNumber": 42}))), "property_list");
}

#[test]
fn property_keys_are_at_most_50_and_values_300_characters() {
    let one = |k: String, v: String| with(|m| m.property_list = Some(json!({ k: v })));
    accepted(&one(oslash(50), oslash(300)));
    rejected(&one(oslash(51), "v".into()), "property_list");
    rejected(&one("k".into(), oslash(301)), "property_list");
    // Counted in UTF-16 units: an emoji is two.
    accepted(&one("😀".repeat(25), "😀".repeat(150)));
    rejected(&one("😀".repeat(26), "v".into()), "property_list");
    rejected(&one("k".into(), "😀".repeat(151)), "property_list");
}

/// An https URL of exactly `n` characters, ending in multi-byte characters.
fn url_of(n: usize) -> String {
    let base = "https://example.no/";
    format!("{base}{}", oslash(n - base.len()))
}

#[test]
fn reply_links_are_absolute_https_of_at_most_255_characters() {
    let link = |url: &str| with(|m| m.reply_options = Some(json!([{"linkURL": url, "linkText": "Svar"}])));
    accepted(&link(&url_of(255)));
    rejected(&link(&url_of(256)), "reply_options");
    rejected(&link("http://example.no/svar"), "reply_options");
    rejected(&link("/svar"), "reply_options");
    rejected(&link("example.no/svar"), "reply_options");
    rejected(&with(|m| m.reply_options = Some(json!([{"linkText": "Svar"}]))), "reply_options");
    rejected(&with(|m| m.reply_options = Some(json!({"linkURL": "https://example.no"}))), "reply_options");
}

#[test]
fn notification_must_be_an_object() {
    accepted(&with(|m| {
        m.notification =
            Some(json!({"notificationChannel": "Email", "emailSubject": "Ny melding", "emailBody": "Hei"}));
    }));
    rejected(&with(|m| m.notification = Some(json!("Email"))), "notification");
    rejected(&with(|m| m.notification = Some(json!([]))), "notification");
}

fn attachments(n: usize) -> Vec<Uuid> {
    (0..n as u128).map(Uuid::from_u128).collect()
}

#[test]
fn at_most_100_attachments_in_all() {
    accepted(&with(|m| m.existing_attachments = attachments(100)));
    rejected(&with(|m| m.existing_attachments = attachments(101)), "existing_attachments");
    // New files count towards the same limit (1038).
    let both = with(|m| {
        m.existing_attachments = attachments(100);
        m.attachment_count = 1;
    });
    rejected(&both, "existing_attachments");
}

#[test]
fn new_files_count_towards_the_100_attachments() {
    // The files themselves are checked by `attachment::add_files`, once they are read.
    accepted(&with(|m| m.attachment_count = 1));
    accepted(&with(|m| {
        m.existing_attachments = attachments(99);
        m.attachment_count = 1;
    }));
}

#[test]
fn every_recipient_form_is_sent_as_its_urn() {
    let m = minimal();
    for (form, urn) in [
        (ORG, ORG_URN),
        ("0192:991825827", ORG_URN),
        (ORG_URN, ORG_URN),
        ("URN:ALTINN:ORGANIZATION:IDENTIFIER-NO:991825827", ORG_URN),
        ("  991825827 ", ORG_URN),
        ("13896396174", "urn:altinn:person:identifier-no:13896396174"),
        ("urn:altinn:person:identifier-no:13896396174", "urn:altinn:person:identifier-no:13896396174"),
        ("urn:altinn:person:idporten-email:a@b.no", "urn:altinn:person:idporten-email:a@b.no"),
    ] {
        let request = initialize_request(&m, form, key(), now()).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(request.recipients, vec![urn.to_string()], "{form}");
        assert_eq!(recipient_urn(form).as_deref(), Some(urn), "{form}");
    }
}

#[test]
fn invalid_recipients_are_named_without_the_number() {
    // Failing mod 11: the message lands on the row and in logs, so it must not carry a
    // national identity number (personal data).
    for bad in ["991825828", "0192:991825828", "01010199999", "urn:altinn:person:identifier-no:01010199999"] {
        let e = initialize_request(&minimal(), bad, key(), now()).unwrap_err();
        assert_eq!(e.field, Column::Recipients, "{bad}");
        let digits = bad.rsplit(':').next().unwrap();
        assert!(!e.to_string().contains(digits), "{bad}: {e}");
        assert_eq!(recipient_urn(bad), None, "{bad}");
    }
    for bad in ["", "abc", "12345", "urn:altinn:person:idporten-email:nope"] {
        assert_eq!(initialize_request(&minimal(), bad, key(), now()).unwrap_err().field, Column::Recipients, "{bad:?}");
    }
}

/// Every optional column set, as in Altinn's documented example.
fn full() -> MessageRow {
    with(|m| {
        m.summary = Some("Kort oppsummering".into());
        m.message_sender = Some("Etat X".into());
        m.requested_publish_time = Some(now() + chrono::Duration::days(1));
        m.due_date_time = Some(now() + chrono::Duration::days(14));
        m.external_references = Some(json!([{"referenceValue": "123", "referenceType": "Generic"}]));
        m.property_list = Some(json!({"caseNumber": "42"}));
        m.reply_options = Some(json!([{"linkURL": "https://example.no/svar", "linkText": "Svar"}]));
        m.notification = Some(json!({"notificationChannel": "EmailPreferred", "emailSubject": "Ny melding",
                                      "emailBody": "Du har fått en melding", "smsBody": "Ny melding"}));
        m.ignore_reservation = Some(false);
        m.is_confirmation_needed = true;
        m.existing_attachments = attachments(1);
    })
}

#[test]
fn the_request_uses_altinns_names() {
    let v = serde_json::to_value(build(&full()).unwrap()).unwrap();
    let c = &v["correspondence"];
    assert_eq!(v["idempotentKey"], json!(key().to_string()));
    assert_eq!(v["recipients"], json!([ORG_URN]));
    assert_eq!(v["existingAttachments"], json!([Uuid::from_u128(0).to_string()]));
    assert_eq!(c["resourceId"], "my-correspondence-resource");
    assert_eq!(c["sendersReference"], "case-2026-0042");
    assert_eq!(c["messageSender"], "Etat X");
    assert_eq!(c["content"]["language"], "nb");
    assert_eq!(c["content"]["messageTitle"], "Vedtak");
    assert_eq!(c["content"]["messageSummary"], "Kort oppsummering");
    assert_eq!(c["content"]["messageBody"], "# Vedtak\nTekst i **markdown**");
    // The JSON endpoint must send no new attachments (1005).
    assert_eq!(c["content"]["attachments"], json!([]));
    assert_eq!(c["requestedPublishTime"], json!(now() + chrono::Duration::days(1)));
    assert_eq!(c["dueDateTime"], json!(now() + chrono::Duration::days(14)));
    assert_eq!(c["externalReferences"], json!([{"referenceValue": "123", "referenceType": "Generic"}]));
    assert_eq!(c["propertyList"], json!({"caseNumber": "42"}));
    // The producer's JSON passes through as Altinn spells it, `linkURL` included.
    assert_eq!(c["replyOptions"], json!([{"linkURL": "https://example.no/svar", "linkText": "Svar"}]));
    assert_eq!(c["notification"]["notificationChannel"], "EmailPreferred");
    assert_eq!(c["ignoreReservation"], false);
    assert_eq!(c["isConfirmationNeeded"], true);
    assert_eq!(c["isConfidential"], false);
    assert_eq!(c["allowForwarding"], false);
    // The obsolete `sender` is ignored by Altinn, so it is never sent.
    assert!(c.get("sender").is_none() && v.get("sender").is_none(), "{v}");
}

#[test]
fn absent_optional_fields_are_left_out() {
    let v = serde_json::to_value(build(&minimal()).unwrap()).unwrap();
    let c = v["correspondence"].as_object().unwrap();
    for absent in [
        "messageSender",
        "requestedPublishTime",
        "dueDateTime",
        "externalReferences",
        "propertyList",
        "replyOptions",
        "notification",
        "ignoreReservation",
        "sender",
    ] {
        assert!(!c.contains_key(absent), "{absent} should be absent: {v}");
    }
    assert!(c["content"].get("messageSummary").is_none(), "{v}");
    // An empty display name means "use the organisation's name", which is omission.
    let v = serde_json::to_value(build(&with(|m| m.message_sender = Some(String::new()))).unwrap()).unwrap();
    assert!(v["correspondence"].get("messageSender").is_none(), "{v}");
}

#[test]
fn idempotency_keys_are_deterministic_v5_uuids() {
    let ns = Uuid::from_u128(1);
    let k = idempotency_key(ns, "res", "ref", 0, ORG_URN);
    assert_eq!(k, idempotency_key(ns, "res", "ref", 0, ORG_URN));
    assert_eq!(k.get_version_num(), 5);
    assert_eq!(k.get_version(), Some(uuid::Version::Sha1));
}

#[test]
fn idempotency_keys_differ_when_any_part_differs() {
    let ns = Uuid::from_u128(1);
    let k = idempotency_key(ns, "res", "ref", 0, ORG_URN);
    let others = [
        idempotency_key(Uuid::from_u128(2), "res", "ref", 0, ORG_URN),
        idempotency_key(ns, "res2", "ref", 0, ORG_URN),
        idempotency_key(ns, "res", "ref2", 0, ORG_URN),
        idempotency_key(ns, "res", "ref", 1, ORG_URN),
        idempotency_key(ns, "res", "ref", 0, "urn:altinn:organization:identifier-no:974760223"),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(k, *other, "variant {i}");
    }
    // Parts are encoded, not joined: moving a separator between them changes the key.
    assert_ne!(idempotency_key(ns, "a,b", "c", 0, ORG_URN), idempotency_key(ns, "a", "b,c", 0, ORG_URN));
    assert_ne!(idempotency_key(ns, "a\",\"b", "c", 0, ORG_URN), idempotency_key(ns, "a", "b\",\"c", 0, ORG_URN));
}

#[test]
fn forwarding_allows_at_most_10_mb_of_files() {
    accepted(&with(|m| {
        m.allow_forwarding = true;
        m.attachment_count = 1;
        m.attachment_bytes = 10_000_000;
    }));
    rejected(
        &with(|m| {
            m.allow_forwarding = true;
            m.attachment_count = 1;
            m.attachment_bytes = 10_000_001;
        }),
        "allow_forwarding",
    );
    accepted(&with(|m| m.attachment_bytes = 10_000_001));
}

#[test]
fn a_recipient_must_read_as_the_party_the_database_normalised_it_to() {
    assert!(check_identity(ORG, ORG_URN).is_ok());
    assert!(check_identity("0192:991825827", ORG_URN).is_ok());
    assert!(check_identity("URN:ALTINN:ORGANIZATION:IDENTIFIER-NO:991825827", ORG_URN).is_ok());
    // The database kept a form this program reads as another party (or the key was edited).
    let e = check_identity(ORG, "urn:altinn:organization:identifier-no:974760223").unwrap_err();
    assert_eq!(e.field, Column::Recipients);
    assert!(e.to_string().contains("recipient_key"), "{e}");
    let e = check_identity("  991825827", "  991825827").unwrap_err();
    assert_eq!(e.field, Column::Recipients, "a trimmed reading differs from an untrimmed key: {e}");
    // What this program cannot read at all is left to initialize_request to name.
    assert!(check_identity("someone@example.com", "someone@example.com").is_ok());
}
