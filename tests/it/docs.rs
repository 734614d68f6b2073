//! The documentation's links hold: every relative link in the repository's Markdown names a
//! file that exists, and a `#fragment` names a heading of that file (GitHub's slugs). Links to
//! other sites are not fetched (the tests need no network).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
