//! The SQL check, shared by the daemon's test (`tests/it/sql.rs`) and the bench's
//! (`crates/outbox-bench/tests/it/sql.rs`, which includes this file by its path).
//!
//! Statements are registered `const`s (`altinn_outbox::statements!`). Two halves:
//! - [`prepare`]: PostgreSQL prepares every registered statement against a migrated database
//!   (parse, name resolution, types), and each call binds as many values as the statement has
//!   parameters.
//! - [`scan`] and [`registry`]: the sources run no SQL outside the registry.
//!
//! The scan's rule, kept simple on purpose. In every `.rs` file under `src`, up to its first
//! `#[cfg(test)]` line (the house keeps test modules at the end of a file), and leaving out the
//! files named `tests.rs` or `*_tests.rs` (test modules kept in files of their own):
//! - a call of sqlx's `query`, `query_as`, `query_scalar` or `raw_sql` (also their `_with` and
//!   `_unchecked` forms and the `!` macros) is the name followed by `(`, not after a `.` (that
//!   is a method, such as reqwest's `.query`). Its arguments hold no string literal and no
//!   `format!`, and name a statement registered in the same file;
//! - `.execute(`, `.fetch…(`, `.prepare(` and `.describe(` take no string literal or `format!`
//!   directly (an executor runs a `&str` without `query`);
//! - the `.bind(` calls chained on a call are counted; every registered statement is run by
//!   at least one call.
//!
//! Comments, string literals and character literals are skipped, so a word in them is no call.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sqlx::{Either, Executor as _, PgConnection};

/// A registered statement, as the check needs it.
pub struct Registered {
    /// The file that defines it (its `file!()`).
    pub file: String,
    pub name: String,
    /// The text as it runs.
    pub sql: String,
}

impl Registered {
    pub fn new(file: &str, name: &str, sql: impl Into<String>) -> Registered {
        Registered { file: file.to_string(), name: name.to_string(), sql: sql.into() }
    }

    /// Whether it is defined in `file` (a path under `src`, such as `outbox/claim.rs`).
    fn defined_in(&self, file: &str) -> bool {
        self.file.replace('\\', "/").ends_with(&format!("src/{file}"))
    }

    fn label(&self) -> String {
        let file = self.file.replace('\\', "/");
        let short = file.rfind("src/").map_or(file.as_str(), |at| &file[at..]);
        format!("{short} {}", self.name)
    }
}

/// A call in the sources that runs SQL.
#[derive(Debug)]
pub struct Call {
    /// The file, under `src`.
    pub file: String,
    pub line: usize,
    pub callee: String,
    /// Its arguments, as written.
    pub argument: String,
    /// The `.bind(` calls chained on it; None for the `_with` forms, which take their
    /// arguments whole.
    pub binds: Option<usize>,
}

impl Call {
    fn at(&self) -> String {
        format!("src/{}:{}", self.file, self.line)
    }

    /// The registered statements its argument names (those of its own file).
    fn statements<'r>(&self, registered: &'r [Registered]) -> Vec<&'r Registered> {
        let words: Vec<&str> = self.argument.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
        registered.iter().filter(|r| r.defined_in(&self.file) && words.contains(&r.name.as_str())).collect()
    }
}

/// What the scan found: the calls, and what breaks the rule outright.
#[derive(Debug, Default)]
pub struct Scan {
    pub calls: Vec<Call>,
    pub problems: Vec<String>,
}

/// Scans every `.rs` file under `src` (see the module's rule).
pub fn scan(src: &Path) -> Scan {
    let mut scan = Scan::default();
    for path in rust_files(src) {
        let file = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        scan_source(&file, &text, &mut scan);
    }
    assert!(
        !scan.calls.is_empty(),
        "no SQL call found under {}: is the scan looking in the right place?",
        src.display()
    );
    scan
}

/// The rule's problems with the registry: inline SQL, calls that name no registered
/// statement of their file, and registered statements that nothing runs.
pub fn registry(scan: &Scan, registered: &[Registered]) -> Vec<String> {
    let mut problems = scan.problems.clone();
    for call in &scan.calls {
        if call.argument.contains('"') || call.argument.contains("format!") {
            problems.push(format!(
                "{}: `{}` takes SQL written inline; register it with statements!",
                call.at(),
                call.callee
            ));
        } else if call.statements(registered).is_empty() {
            let argument = call.argument.trim();
            problems.push(format!(
                "{}: `{}({argument})` names no statement registered in its file",
                call.at(),
                call.callee
            ));
        }
    }
    for r in registered {
        if !scan.calls.iter().any(|call| call.statements(registered).iter().any(|s| std::ptr::eq(*s, r))) {
            problems.push(format!("{}: registered, but no call runs it", r.label()));
        }
    }
    problems
}

/// PostgreSQL prepares (describes) every registered statement; each call binds as many values
/// as its statement has parameters.
pub async fn prepare(conn: &mut PgConnection, scan: &Scan, registered: &[Registered]) -> Vec<String> {
    let mut problems = Vec::new();
    for r in registered {
        let described = match conn.describe(&r.sql).await {
            Ok(described) => described,
            Err(e) => {
                problems.push(format!("{}: PostgreSQL cannot prepare it: {e}", r.label()));
                continue;
            }
        };
        let parameters = match described.parameters() {
            Some(Either::Left(types)) => types.len(),
            Some(Either::Right(n)) => n,
            None => continue,
        };
        for call in scan.calls.iter().filter(|c| c.statements(registered).iter().any(|s| std::ptr::eq(*s, r))) {
            if let Some(binds) = call.binds.filter(|b| *b != parameters) {
                let name = &r.name;
                problems
                    .push(format!("{}: binds {binds} values to {name}, which has {parameters} parameters", call.at()));
            }
        }
    }
    problems
}

/// The problems, one a line, for an assertion's message.
pub fn report(what: &str, problems: &[String]) -> String {
    let mut text = format!("{} problem(s) with {what}:\n", problems.len());
    for p in problems {
        let _ = writeln!(text, "  {p}");
    }
    text
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The SQL entry points the rule looks for (with `_with` and `_unchecked` forms and macros).
const CALLEES: [&str; 4] = ["query", "query_as", "query_scalar", "raw_sql"];
/// Executor methods that run a `&str` they are given directly.
const EXECUTOR_METHODS: [&str; 10] = [
    "execute",
    "execute_many",
    "fetch",
    "fetch_one",
    "fetch_all",
    "fetch_optional",
    "fetch_many",
    "prepare",
    "prepare_with",
    "describe",
];

/// Scans one file's text (`file` names it under `src`).
pub fn scan_source(file: &str, text: &str, scan: &mut Scan) {
    let end = text
        .lines()
        .position(|l| l.trim() == "#[cfg(test)]")
        .map_or(text.len(), |n| text.split_inclusive('\n').take(n).map(str::len).sum());
    let code = &text[..end];
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(next) = skip_literal_or_comment(code, i) {
            i = next;
            continue;
        }
        if !is_ident_start(b[i]) || (i > 0 && is_ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = &code[start..i];
        let after_dot = code[..start].trim_end().ends_with('.');
        let after_fn = code[..start].trim_end().ends_with("fn");
        let mut j = i;
        let bang = b.get(j) == Some(&b'!');
        if bang {
            j += 1;
        }
        j = skip_turbofish(code, j);
        let j = skip_space(code, j);
        if b.get(j) != Some(&b'(') || after_fn {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let base = word.trim_end_matches("_with").trim_end_matches("_unchecked");
        if CALLEES.contains(&base) && !after_dot {
            let (argument, close) = arguments(code, j);
            let binds = if word.ends_with("_with") { None } else { Some(count_binds(code, close)) };
            let callee = if bang { format!("{word}!") } else { word.to_string() };
            scan.calls.push(Call { file: file.to_string(), line, callee, argument: argument.to_string(), binds });
        } else if EXECUTOR_METHODS.contains(&word) && after_dot {
            let (argument, _) = arguments(code, j);
            let argument = argument.trim().trim_start_matches('&');
            if argument.starts_with('"')
                || argument.starts_with("r\"")
                || argument.starts_with("r#")
                || argument.contains("format!")
            {
                scan.problems.push(format!(
                    "src/{file}:{line}: `.{word}` runs SQL written inline; register it with statements!"
                ));
            }
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_space(code: &str, mut i: usize) -> usize {
    let b = code.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match skip_literal_or_comment(code, i) {
            Some(next) if code[i..].starts_with('/') => i = next,
            _ => return i,
        }
    }
}

/// Past a `::<…>` after a name, if there is one.
fn skip_turbofish(code: &str, i: usize) -> usize {
    if !code[i..].starts_with("::<") {
        return i;
    }
    let mut depth = 0;
    for (k, c) in code[i + 2..].char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return i + 2 + k + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// If a comment, string or character literal starts at `i`, where it ends (also read by the
/// scan of error codes, `tests/it/docs.rs`).
pub fn skip_literal_or_comment(code: &str, i: usize) -> Option<usize> {
    let rest = &code[i..];
    if rest.starts_with("//") {
        return Some(rest.find('\n').map_or(code.len(), |n| i + n));
    }
    if rest.starts_with("/*") {
        return Some(rest.find("*/").map_or(code.len(), |n| i + n + 2));
    }
    let prev_ident = i > 0 && is_ident(code.as_bytes()[i - 1]);
    if let Some(after_r) = rest.strip_prefix("br").or_else(|| rest.strip_prefix('r')).filter(|_| !prev_ident) {
        let hashes = after_r.len() - after_r.trim_start_matches('#').len();
        if after_r[hashes..].starts_with('"') {
            let body = i + (rest.len() - after_r.len()) + hashes + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            return Some(code[body..].find(&close).map_or(code.len(), |n| body + n + close.len()));
        }
    }
    if rest.starts_with('"') {
        let mut chars = rest.char_indices().skip(1);
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => return Some(i + k + 1),
                _ => {}
            }
        }
        return Some(code.len());
    }
    if rest.starts_with('\'') {
        let mut chars = rest.char_indices().skip(1);
        let (_, first) = chars.next()?;
        if first == '\\' {
            // The escaped character, then the closing quote (`'\''`, `'\n'`, `'\u{..}'`).
            return Some(rest.get(3..)?.find('\'').map_or(code.len(), |n| i + 3 + n + 1));
        }
        // A character literal closes after one character; otherwise it is a lifetime.
        return match chars.next() {
            Some((k, '\'')) => Some(i + k + 1),
            _ => None,
        };
    }
    None
}

/// The arguments of the call whose `(` is at `open`, and where the call's `)` is.
fn arguments(code: &str, open: usize) -> (&str, usize) {
    let b = code.as_bytes();
    let (mut i, mut depth) = (open + 1, 0usize);
    while i < b.len() {
        if let Some(next) = skip_literal_or_comment(code, i) {
            i = next;
            continue;
        }
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return (&code[open + 1..i], i),
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    (&code[open + 1..], code.len())
}

/// The `.bind(` calls in the method chain after the `)` at `close`.
fn count_binds(code: &str, close: usize) -> usize {
    let b = code.as_bytes();
    let (mut i, mut binds) = (close + 1, 0);
    loop {
        i = skip_space(code, i);
        if b.get(i) != Some(&b'.') {
            return binds;
        }
        i = skip_space(code, i + 1);
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let method = &code[start..i];
        i = skip_space(code, skip_turbofish(code, i));
        if b.get(i) == Some(&b'(') {
            let (_, end) = arguments(code, i);
            i = end + 1;
            if method == "bind" {
                binds += 1;
            }
        }
    }
}
