//! docs/admin.md, the reference of the command line, held to the binary: every subcommand and
//! long flag that `--help` shows has its place there; every key of every `--json` document,
//! from commands run against a database with letters in several states and the fake, is named
//! in its command's section; every exit code the admin module defines is in the table of exit
//! codes, and that table has no other.
//!
//! `run`, `migrate` and `keygen` print no JSON. What the page says beyond names (types,
//! meanings, which command exits with what when) is not checked here: the admin tests check
//! the behaviour.

use std::collections::BTreeSet;
use std::process::Command;

use altinn_fake::{Endpoint, FakeConfig, FaultKind, FaultRule};
use altinn_outbox::admin::Exit;
use serde_json::Value;

use crate::admin::{code, run, stdout_json, PERSON, UNKNOWN_RESOURCE};
use crate::common::{TestApp, ORG, RESOURCE};
use crate::events_subscriptions::{Events, PUBLISHED};

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");
/// clap's own exit code for a usage error: no variant of `Exit`, but in the table all the same.
const USAGE: u8 = 2;

fn reference() -> String {
    std::fs::read_to_string(crate::docs::root().join("docs/admin.md")).unwrap()
}

/// The text under the heading that opens with `opening` (`` `status` ``, `Exit codes`), up to
/// the next heading of the same or a higher level.
fn section(doc: &str, opening: &str) -> String {
    let level = |line: &str| line.chars().take_while(|c| *c == '#').count();
    let mut lines =
        doc.lines().skip_while(|l| !(level(l) > 0 && l.trim_start_matches('#').trim_start().starts_with(opening)));
    let Some(heading) = lines.next() else { panic!("docs/admin.md has no heading opening with {opening}") };
    let body = lines.take_while(|l| !(level(l) > 0 && level(l) <= level(heading)));
    body.collect::<Vec<_>>().join("\n")
}

/// The section of a command: its heading opens with its name in code (`` `events list` ``).
fn command_section(doc: &str, command: &str) -> String {
    section(doc, &format!("`{command}`"))
}

/// Whether `text` names the flag in code: `` `--id` `` or `` `--id 42` ``, not `` `--identity` ``.
fn names_flag(text: &str, flag: &str) -> bool {
    text.match_indices(&format!("`{flag}")).any(|(at, found)| {
        text[at + found.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// The lines of one block of `-h` (`Commands:`, `Options:`), up to the blank line after it.
fn block<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines().skip_while(|l| *l != title).skip(1).take_while(|l| !l.trim().is_empty()).collect()
}

/// The subcommands and long flags `altinn-outbox <path> -h` lists (clap's `help` left out).
fn help_of(path: &[String]) -> (Vec<String>, Vec<String>) {
    let out = Command::new(BIN).args(path).arg("-h").output().unwrap();
    assert!(out.status.success(), "{path:?} -h: {}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8(out.stdout).unwrap();
    let commands = block(&help, "Commands:")
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect();
    // An option's own line starts with its flags; its description starts further in.
    let flags = block(&help, "Options:")
        .iter()
        .filter(|l| l.len() - l.trim_start().len() <= 6 && l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect();
    (commands, flags)
}

/// Every subcommand path below the top (`["events", "list"]`...), with its long flags.
fn command_tree() -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let (commands, flags) = help_of(&path);
        for command in commands {
            todo.push([path.clone(), vec![command]].concat());
        }
        found.push((path, flags));
    }
    found
}

#[test]
fn every_subcommand_and_flag_of_the_binary_is_in_the_reference() {
    let doc = reference();
    let tree = command_tree();
    assert!(tree.len() >= 14, "the walk finds the commands: {tree:?}");
    let (_, global) = tree.iter().find(|(path, _)| path.is_empty()).unwrap();
    assert!(global.iter().any(|f| f == "--config"), "{global:?}");
    let mut missing = Vec::new();
    for flag in global {
        if !names_flag(&doc, flag) {
            missing.push(format!("{flag} (every command)"));
        }
    }
    for (path, flags) in tree.iter().filter(|(path, _)| !path.is_empty()) {
        let command = path.join(" ");
        let text = command_section(&doc, &command);
        for flag in flags.iter().filter(|f| !global.contains(f)) {
            if !names_flag(&text, flag) {
                missing.push(format!("{flag} of `{command}`"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/admin.md does not name: {missing:?}");
}

/// Every exit code `Exit` has. The match fails to compile when a variant is added, until it
/// is listed here (and then in the table).
fn admin_exit_codes() -> BTreeSet<u8> {
    let all = [Exit::Success, Exit::Error, Exit::NotFound, Exit::Refused, Exit::TryAgain];
    for exit in all {
        match exit {
            Exit::Success | Exit::Error | Exit::NotFound | Exit::Refused | Exit::TryAgain => {}
        }
    }
    all.into_iter().map(Exit::code).collect()
}

#[test]
fn the_table_of_exit_codes_has_every_code_and_every_command() {
    let doc = reference();
    let table = section(&doc, "Exit codes");
    let listed: BTreeSet<u8> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    let mut expected = admin_exit_codes();
    expected.insert(USAGE);
    assert_eq!(listed, expected, "the rows of the table of exit codes");
    for (path, _) in command_tree().iter().filter(|(path, _)| !path.is_empty()) {
        let command = format!("`{}`", path.join(" "));
        assert!(table.contains(&command), "the table of exit codes says what {command} returns");
    }
}

/// Every key of every object in `json`, however deep.
fn keys(json: &Value, out: &mut BTreeSet<String>) {
    match json {
        Value::Object(map) => {
            for (key, value) in map {
                out.insert(key.clone());
                keys(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// Runs `args` (with `--json`), asserts its exit code, and records the document's keys
/// under the command's name, for [`assert_documented`].
async fn record(app: &TestApp, seen: &mut Vec<(String, BTreeSet<String>)>, args: &[&str], exit: i32) {
    let out = run(app, args).await;
    assert_eq!(code(&out), exit, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let command: Vec<&str> =
        args.iter().take_while(|a| !a.starts_with('-') && a.parse::<i64>().is_err()).copied().collect();
    let mut found = BTreeSet::new();
    keys(&stdout_json(&out), &mut found);
    seen.push((command.join(" "), found));
}

/// Asserts the documents held `witnesses` (keys only some states or failures produce), so that
/// a scenario that stops producing them fails here rather than checking less; then that every
/// key seen is in its command's section.
fn assert_documented(seen: &[(String, BTreeSet<String>)], witnesses: &[&str]) {
    let all: BTreeSet<&String> = seen.iter().flat_map(|(_, keys)| keys).collect();
    for key in witnesses {
        assert!(all.iter().any(|k| k == key), "the scenario produces {key}: {all:?}");
    }
    let doc = reference();
    let mut missing = Vec::new();
    for (command, keys) in seen {
        let text = command_section(&doc, command);
        missing
            .extend(keys.iter().filter(|k| !text.contains(&format!("`{k}`"))).map(|k| format!("{k} of `{command}`")));
    }
    assert!(missing.is_empty(), "JSON keys docs/admin.md does not name in their command's section: {missing:?}");
}

/// The database-only commands and `cancel` and `check` (the fake answers for Altinn), through
/// the binary, on letters awaiting their status, failed (an unknown resource), pending and cancelled.
#[tokio::test]
async fn every_key_of_the_json_documents_is_in_the_reference() {
    let fake = FakeConfig {
        publish_after_ms: 3_600_000,
        unknown_resources: vec![UNKNOWN_RESOURCE.into()],
        ..crate::common::fake_config()
    };
    let app = TestApp::with(fake, |_| {}).await;
    let sent = app.insert("sent", &[ORG, PERSON]).await.to_string();
    app.insert_on(UNKNOWN_RESOURCE, "refused").await;
    app.drain().await;
    let waiting = app.insert("waiting", &[ORG]).await.to_string();
    let mut seen = Vec::new();

    record(&app, &mut seen, &["status", "--json"], 0).await;
    record(&app, &mut seen, &["show", &sent, "--json"], 0).await;
    record(&app, &mut seen, &["check", "--resource", RESOURCE, "--resource", UNKNOWN_RESOURCE, "--json"], 1).await;
    record(&app, &mut seen, &["retry", "--failed", "--json"], 0).await;
    record(&app, &mut seen, &["retry", &sent, "--json"], 4).await;
    record(&app, &mut seen, &["cancel", &waiting, "--json"], 0).await;
    record(&app, &mut seen, &["prune", "--older-than", "1h", "--dry-run", "--json"], 0).await;
    record(&app, &mut seen, &["prune", "--older-than", "1h", "--json"], 0).await;
    // oldest_pending, failed_last_24h, history, a failed resource, retry's and cancel's lists.
    let witnesses = ["age_s", "error_code", "kind", "fault", "code", "remedy", "old_state", "outcome", "cutoff"];
    assert_documented(&seen, &witnesses);
}

/// `events list|subscribe|delete` through the binary against the fake Altinn Events, with the
/// receiver of the events tests answering the handshake, a type filter set (so that Altinn's
/// list carries `typeFilter`) and faults injected for the keys of failures (`failed`, `error`).
/// Not produced: `waiting` and `overdue` of `subscribe` (they take its 10-second wait or the
/// validation timeout; their keys are those of `validated`), and `subjectFilter` of Altinn's
/// list (the daemon sets no subject filter; only a subscription made by other means has one).
#[tokio::test]
async fn every_key_of_the_events_documents_is_in_the_reference() {
    let events = Events::start(|c| c.events.type_filter = Some(PUBLISHED.into())).await;
    let app = &events.app;
    app.insert("subscribed", &[ORG]).await;
    let mut seen = Vec::new();

    record(app, &mut seen, &["events", "subscribe", "--json"], 0).await;
    record(app, &mut seen, &["events", "list", "--json"], 0).await;
    let id = app.fake.events().subscriptions()[0].id.to_string();
    app.fake.faults().add(FaultRule::always(Endpoint::Subscriptions, FaultKind::Status(503)));
    // An outage is worth another try (75); a refusal is an error (1).
    record(app, &mut seen, &["events", "subscribe", "--resource", "another-resource", "--json"], 75).await;
    record(app, &mut seen, &["events", "delete", "--id", &id, "--json"], 75).await;
    app.fake.faults().clear();
    app.fake.faults().add(FaultRule::always(Endpoint::Subscriptions, FaultKind::Status(403)));
    record(app, &mut seen, &["events", "subscribe", "--resource", "another-resource", "--json"], 1).await;
    app.fake.faults().clear();
    record(app, &mut seen, &["events", "delete", "--resource", RESOURCE, "--json"], 0).await;
    assert_documented(&seen, &["validated_at", "typeFilter", "validated", "failed", "error", "deleted_at_altinn"]);
}
