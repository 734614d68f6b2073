//! The documentation holds: every relative link in the repository's Markdown names a file that
//! exists, and a `#fragment` names a heading of that file (GitHub's slugs; links to other sites
//! are not fetched, the tests need no network); the configuration reference names the keys of
//! `worker.toml`; the troubleshooting guide explains every error code of the catalogue
//! (`src/codes.rs`) and every failure of `check`, and the catalogue has every code the SQL and
//! the sources write.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use altinn_outbox::altinn::Fault;
use altinn_outbox::codes::{self, Code, Family};
use altinn_outbox::outbox;

use crate::common::sql_check;

/// The repository's root (the daemon's crate is two levels below it).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every Markdown file of the repository, but build output and dependencies.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The targets of inline links `[text](target)`, outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        // Code spans are no links: drop them first.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.strip_prefix('#')).map(|h| slug(h.trim_start_matches('#'))).collect()
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")), "the scan finds the README");
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').map_or((link.as_str(), None), |(p, f)| (p, Some(f)));
            let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
            if !target.exists() {
                broken.push(format!("{shown}: ({link}) names no file"));
            } else if let Some(fragment) = fragment.filter(|_| target.extension().is_some_and(|e| e == "md")) {
                if !anchors(&std::fs::read_to_string(&target).unwrap()).contains(fragment) {
                    broken.push(format!("{shown}: ({link}) names no heading"));
                }
            } else if !target.canonicalize().unwrap().starts_with(&root) {
                broken.push(format!("{shown}: ({link}) points outside the repository"));
            }
            checked += 1;
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 5, "the scan finds the links ({checked})");
}

#[test]
fn the_link_reader_sees_links_and_not_code() {
    let text = "See [a](docs/a.md) and [b](b.md#part).\n`[not](x.md)`\n```\n[no](y.md)\n```\n[web](https://example.no)";
    assert_eq!(links(text), ["docs/a.md", "b.md#part", "https://example.no"]);
    assert_eq!(slug("Altinn Events (0.3.0, 2026-12-05)"), "altinn-events-030-2026-12-05");
    assert!(anchors("# Title\n## One way through the worker\n").contains("one-way-through-the-worker"));
}

/// Every key of the shipped `worker.toml` (set or shown commented out), as `section.key`.
fn worker_toml_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("worker.toml")).unwrap();
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
            continue;
        }
        let line = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = line.split_once(" = ") {
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                keys.insert(format!("{section}{key}"));
            }
        }
    }
    keys
}

/// The keys the configuration reference of docs/operations.md describes: the table rows of
/// its section "Configuration" (other sections' tables, the metrics', name other things).
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let section = text.split("\n## Configuration\n").nth(1).expect("docs/operations.md has a section Configuration");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(key, _)| key.to_string())
        .collect()
}

#[test]
fn the_configuration_reference_and_worker_toml_name_the_same_keys() {
    let shipped = worker_toml_keys();
    let documented = documented_keys();
    assert!(shipped.len() > 60, "the scan finds worker.toml's keys ({})", shipped.len());
    let undocumented: Vec<_> = shipped.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&shipped).collect();
    assert!(undocumented.is_empty(), "keys of worker.toml missing from docs/operations.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/operations.md describes keys worker.toml does not have: {unknown:?}");
}

/// worker.toml shows some keys commented out (no default, or one of a choice): with every one
/// of them set to its example, the file still parses, so every key it names exists.
#[test]
fn every_key_worker_toml_shows_is_a_setting() {
    let text = std::fs::read_to_string(root().join("worker.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: Result<altinn_outbox::config::Config, _> = toml::from_str(&uncommented);
    assert!(parsed.is_ok(), "worker.toml with its examples set: {:?}", parsed.err());
    let unknown = uncommented.replace("[database]\n", "[database]\nno_such_key = 1\n");
    assert!(toml::from_str::<altinn_outbox::config::Config>(&unknown).is_err(), "an unknown key is refused");
}

/// The troubleshooting guide, which explains every error code a row can get.
fn troubleshooting() -> String {
    std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap()
}

/// Whether the guide names `code` as code: `` `code` ``.
fn names(doc: &str, code: &str) -> bool {
    doc.contains(&format!("`{code}`"))
}

/// Every code of the catalogue (`altinn_outbox::codes`) is in the guide: the daemon's own,
/// every family's pattern and known members (each Altinn code the classification table
/// knows as `altinn:<n>`, each column a check names as `validation:<column>`, the token
/// codes), and every configuration fault `/readyz` and `check` name.
#[test]
fn the_troubleshooting_guide_explains_every_error_code() {
    let doc = troubleshooting();
    let mut missing: Vec<String> =
        Code::ALL.iter().map(|c| c.as_str().to_string()).filter(|c| !names(&doc, c)).collect();
    for family in Family::ALL {
        let pattern = family.pattern().to_string();
        missing.extend(std::iter::once(pattern).chain(family.members()).filter(|c| !names(&doc, c)));
    }
    let faults = Fault::ALL.iter().map(|f| f.label()).chain(["unknown_resource"]);
    missing.extend(faults.filter(|f| !names(&doc, f)).map(str::to_string));
    assert!(missing.is_empty(), "codes docs/troubleshooting.md does not explain: {missing:?}");
    let altinns = altinn_outbox::altinn::codes::known().count();
    assert!(altinns > 80 && Family::AltinnError.members().len() == altinns, "the table's codes are all members");
    assert!(Family::Validation.members().contains(&"validation:title".to_string()));
}

/// The literals SQL writes to an `error_code` column (`error_code = 'lease_expired'`).
fn sql_codes(sql: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find("error_code") {
        rest = &rest[at + "error_code".len()..];
        let value = rest.trim_start().strip_prefix('=').map(str::trim_start).and_then(|v| v.strip_prefix('\''));
        if let Some((code, _)) = value.and_then(|v| v.split_once('\'')) {
            found.push(code.to_string());
        }
    }
    found
}

/// A code SQL writes is one of the catalogue's: in every registered statement and in every
/// migration (functions and triggers included).
#[test]
fn every_code_the_sql_writes_is_in_the_catalogue() {
    let known = codes::known();
    let mut written = Vec::new();
    for statement in outbox::statements() {
        written.extend(
            sql_codes(statement.sql).into_iter().map(|c| (format!("{} {}", statement.file, statement.name), c)),
        );
    }
    for entry in std::fs::read_dir(root().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        written.extend(sql_codes(&sql).into_iter().map(|c| (name.clone(), c)));
    }
    let unknown: Vec<_> = written.iter().filter(|(_, code)| !known.contains(code)).collect();
    assert!(unknown.is_empty(), "SQL writes codes the catalogue (src/codes.rs) does not have: {unknown:?}");
    assert!(written.len() >= 8, "the scan finds the statements' codes ({written:?})");
    assert_eq!(
        sql_codes("SET error_code = 'a', x = 1 WHERE d.error_code='b' OR error_code = $2 OR n.error_code || ':'"),
        ["a", "b"]
    );
}

/// The prefixes of the families whose codes `src/codes.rs` alone makes.
const FAMILY_PREFIXES: [&str; 6] = ["altinn:", "http:", "validation:", "maskinporten:", "exchange:", "grant:"];
/// Literals shaped like a code that are Maskinporten scopes, not codes.
const SCOPES: [&str; 1] = ["altinn:serviceowner"];
/// What, right before a string literal, makes it a code: a `code` field or comparison, the
/// pairs of code and text (`Some((code, text))`, `Err((code, text))`), a token error's
/// reason, an `ApiError` constructor.
const CODE_POSITIONS: [&str; 9] =
    ["code:", "code ==", "code !=", "Some((", "Err((", "error:", "transient(", "deferred(", "permanent("];

/// The string literals of one source file up to its tests (the rule of `common::sql_check`),
/// each with the code right before it (comments left out, literals as `""`).
fn literals(text: &str) -> Vec<(String, String)> {
    let end = text
        .lines()
        .position(|l| l.trim() == "#[cfg(test)]")
        .map_or(text.len(), |n| text.split_inclusive('\n').take(n).map(str::len).sum());
    let code = &text[..end];
    let (mut found, mut before, mut i) = (Vec::new(), String::new(), 0);
    while i < code.len() {
        let Some(next) = sql_check::skip_literal_or_comment(code, i) else {
            let c = code[i..].chars().next().unwrap();
            before.push(c);
            i += c.len_utf8();
            continue;
        };
        let literal = &code[i..next];
        // Comments begin with `/`, character literals with `'`.
        if let Some(open) = literal.find('"').filter(|_| literal.starts_with(['"', 'r', 'b'])) {
            let inner = literal[open + 1..].trim_end_matches('#');
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            let context: String = before.split_whitespace().collect::<Vec<_>>().join(" ");
            let tail = context.char_indices().rev().nth(40).map_or(context.as_str(), |(at, _)| &context[at..]);
            found.push((tail.to_string(), inner.to_string()));
            before.push_str("\"\"");
        }
        i = next;
    }
    found
}

/// What breaks the catalogue's rule in one file's literals: a literal in a code's place that is
/// no code of the catalogue; a family's code made outside `src/codes.rs`; a literal shaped like
/// a family's code that the catalogue does not have.
fn free_codes(file: &str, text: &str, known: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let in_catalogue = file == "codes.rs";
    for (before, literal) in literals(text) {
        let in_code_position = CODE_POSITIONS.iter().any(|p| before.ends_with(p));
        let is_code = known.contains(&literal);
        // A token error's own reason: the code is `<step>:<reason>`.
        let is_reason = before.ends_with("error:") && known.iter().any(|k| k.ends_with(&format!(":{literal}")));
        if in_code_position && !is_code && !is_reason {
            problems.push(format!("src/{file}: {literal:?} in a code's place is no code of src/codes.rs"));
        }
        let family = FAMILY_PREFIXES.iter().find_map(|p| literal.strip_prefix(p));
        if in_catalogue {
            continue;
        }
        if family.is_some_and(|rest| rest.starts_with('{') || rest.is_empty()) {
            problems.push(format!("src/{file}: {literal:?} makes a family's code outside src/codes.rs"));
        }
        let shaped = family.is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if shaped && !is_code && !SCOPES.contains(&literal.as_str()) {
            problems.push(format!("src/{file}: {literal:?} looks like a code, but src/codes.rs does not have it"));
        }
    }
    problems
}

/// Every code the daemon's sources write comes from the catalogue: its enums and functions
/// (`src/codes.rs`), never a string made where it is used, so a new code cannot reach a row
/// without reaching the catalogue, and through the first test the guide.
#[test]
fn the_sources_write_no_code_the_catalogue_lacks() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = codes::known();
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut problems = Vec::new();
    let mut literals_seen = 0;
    for path in &files {
        let file = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        // Test modules of their own (`tests.rs`, `poll_tests.rs`): they write codes to compare.
        let name = file.rsplit('/').next().unwrap_or(&file);
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        literals_seen += literals(&text).len();
        problems.extend(free_codes(&file, &text, &known));
    }
    assert!(problems.is_empty(), "codes outside the catalogue:\n{}", problems.join("\n"));
    assert!(files.len() > 50 && literals_seen > 1000, "the scan reads the sources ({literals_seen} literals)");
}

/// The scan's rule on a source written to break it, and on code it must leave alone.
#[test]
fn the_scan_catches_codes_made_where_they_are_used() {
    let known = vec!["timeout".to_string(), "altinn:1036".to_string(), "grant:signing_failed".to_string()];
    let source = r##"
        // code: "in a comment" is no code
        fn f() {
            let a = ApiError::transient("made_up", "text");
            let b = Outcome::Finished { state, code: "timeout".into(), message };
            let c = Some(("also_made_up".into(), text));
            let d = format!("altinn:{n}");
            let e = if e.code == "altinn:9999" { 1 } else { 2 };
            let f = TokenError::Rejected { step, error: "signing_failed".to_string(), description };
            let g = ["altinn:serviceowner", "urn:altinn:resource:x", "Failed"];
            let h = r#"code: "raw""#;
        }
        #[cfg(test)]
        mod tests {
            fn g() { let c = Some(("test_only", "")); }
        }
    "##;
    let problems = free_codes("worker/x.rs", source, &known);
    let named: Vec<bool> =
        ["\"made_up\"", "\"also_made_up\"", "\"altinn:{n}\"", "\"altinn:9999\" in", "\"altinn:9999\" looks"]
            .iter()
            .map(|p| problems.iter().any(|problem| problem.contains(p)))
            .collect();
    assert_eq!(named, [true; 5], "{problems:#?}");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

/// Each step `altinn-outbox check` runs is in the guide, and so is the start of each way a
/// step or a resource fails, as the sources write it.
#[test]
fn the_troubleshooting_guide_covers_every_check_failure() {
    let doc = troubleshooting();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let check = std::fs::read_to_string(src.join("check.rs")).unwrap();
    let steps: Vec<String> =
        literals(&check).into_iter().filter(|(before, _)| before.ends_with("step(")).map(|(_, name)| name).collect();
    assert!(steps.len() >= 6, "the scan finds the steps: {steps:?}");
    let missing: Vec<_> = steps.iter().filter(|s| !names(&doc, s)).collect();
    assert!(missing.is_empty(), "check steps docs/troubleshooting.md does not name: {missing:?}");
    for (file, text) in CHECK_FAILURES {
        let source = std::fs::read_to_string(src.join(file)).unwrap();
        assert!(source.contains(text), "src/{file} no longer says {text:?}: update the guide and this list");
        assert!(doc.contains(text), "docs/troubleshooting.md does not explain the check failure {text:?}");
    }
}

/// How `check`'s failures begin, as the sources write them (file under `src`, text).
const CHECK_FAILURES: [(&str, &str); 14] = [
    ("config.rs", "configuration: "),
    ("maskinporten/key.rs", "maskinporten key "),
    ("app.rs", "database: "),
    ("maskinporten/key_file.rs", "make it readable by its owner only"),
    ("check.rs", "reachable, but run"),
    ("maskinporten/error.rs", " unavailable: "),
    ("maskinporten/error.rs", " rejected the request: "),
    ("check.rs", "maskinporten.scopes lacks"),
    ("check.rs", "Altinn Events refuses the token"),
    ("check.rs", "Altinn Events could not be asked"),
    ("check.rs", "the search answered, but it also admits the read scope"),
    ("check.rs", "the resource registry has no resource with this id"),
    ("check.rs", "the resource registry did not say"),
    ("check.rs", "could not be checked"),
];
