//! Altinn's `TextValidation.ValidatePlainText`, as the fake applies it to the title (1002)
//! and the message sender (1039): backticks and backslashes are dropped, the rest goes
//! through ReverseMarkdown (HTML to markdown, escaping only `*` and `_`) and Markdig's
//! plain-text renderer (advanced extensions, no lists), and must come back unchanged but for
//! white space. This models the constructs that change on that trip; it is kept apart from
//! the client's own check on purpose, so that the two can disagree when one is wrong.
//!
//! The body's `ValidateMarkdown` HTML-encodes its input first, so raw HTML survives its round
//! trip: the fake, like Altinn, accepts HTML in the body.

/// Markdig block starts (after up to three spaces) that render as something else.
const BLOCK_STARTS: [&str; 4] = [">", "~~~", ":::", "!["];

/// Whether Altinn's plain-text check passes `text`.
pub(crate) fn is_plain(text: &str) -> bool {
    let t: String = text.chars().filter(|&c| c != '`' && c != '\\').collect();
    !(html(&t) || entity(&t) || blocks(&t) || links(&t) || spans(&t))
}

/// HTML markup the HTML parser turns into an element, comment or declaration.
fn html(t: &str) -> bool {
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '<' {
            continue;
        }
        let mut ahead = chars.clone();
        match ahead.next() {
            Some(n) if n.is_ascii_alphabetic() || n == '!' || n == '?' => return true,
            Some('/') if ahead.next().is_some_and(|n| n.is_ascii_alphabetic()) => return true,
            _ => {}
        }
    }
    false
}

/// A character reference the HTML parser decodes: numeric, named with `;`, or one of the
/// common legacy names that decode even without it.
fn entity(t: &str) -> bool {
    t.split('&').skip(1).any(|after| {
        let name: String = after.chars().take_while(char::is_ascii_alphanumeric).collect();
        let numeric = after.strip_prefix('#').is_some_and(|n| {
            let mut c = n.chars();
            match c.next() {
                Some('x' | 'X') => c.next().is_some_and(|h| h.is_ascii_hexdigit()),
                Some(d) => d.is_ascii_digit(),
                None => false,
            }
        });
        let named =
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && after[name.len()..].starts_with(';');
        numeric || named || matches!(name.as_str(), "amp" | "lt" | "gt" | "quot" | "nbsp")
    })
}

/// Headings, quotes, fences, thematic breaks and setext underlines, line by line.
fn blocks(t: &str) -> bool {
    let lines: Vec<&str> = t.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    lines.iter().enumerate().any(|(i, line)| {
        let lead = line.chars().take_while(|&c| c == ' ').count();
        if lead >= 4 {
            return false;
        }
        let rest = &line[lead..];
        let after_hashes = rest.trim_start_matches('#');
        let level = rest.len() - after_hashes.len();
        let heading = level > 0 && level <= 6 && (after_hashes.is_empty() || after_hashes.starts_with([' ', '\t']));
        let squeezed: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
        let under_text = i > 0 && !lines[i - 1].trim().is_empty();
        let rule = squeezed.len() >= 3 && squeezed.chars().all(|c| c == '-');
        let underline = under_text
            && !squeezed.is_empty()
            && (squeezed.chars().all(|c| c == '=') || squeezed.chars().all(|c| c == '-'))
            && !rest.trim().contains(' ');
        let definition = rest.starts_with('[') && rest.contains("]:");
        heading || rule || underline || definition || BLOCK_STARTS.iter().any(|s| rest.starts_with(s))
    })
}

/// An inline link `[text](destination)` (images are links with a `!`).
fn links(t: &str) -> bool {
    t.match_indices('[').any(|(open, _)| t[open..].find("](").is_some_and(|close| close > 0))
}

/// Markdig's emphasis extras (`~~` strike-through, `~` subscript, `^` superscript, `++`
/// inserted, `==` marked), citations (`""`) and inline maths (`$`): a delimiter that opens
/// before a non-space, and the same delimiter later closing after a non-space.
fn spans(t: &str) -> bool {
    let c: Vec<char> = t.chars().collect();
    let run_at = |i: usize, d: char, n: usize| {
        (0..n).all(|k| c.get(i + k) == Some(&d)) && (i == 0 || c[i - 1] != d) && c.get(i + n) != Some(&d)
    };
    let found = |d: char, n: usize, money: bool| {
        (0..c.len()).filter(|&i| run_at(i, d, n)).any(|open| {
            c.get(open + n).is_some_and(|x| !x.is_whitespace())
                && (open + n + 1..c.len()).any(|close| {
                    run_at(close, d, n)
                        && !c[close - 1].is_whitespace()
                        && !(money && c.get(close + n).is_some_and(char::is_ascii_digit))
                })
        })
    };
    found('~', 2, false)
        || found('~', 1, false)
        || found('^', 1, false)
        || found('+', 2, false)
        || found('=', 2, false)
        || found('"', 2, false)
        || found('$', 1, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altinns_examples_and_the_other_side_of_each_construct() {
        // Plain text by Altinn's own tests, and texts that only look like markup.
        for ok in [
            "This is a valid plain text without markdown syntax.",
            "123. This is valid plaintext even if it contains Markdown list",
            "This *is not* markdown and _should_ be treated as plain text.",
            "Here is some `inline code` in plain text.",
            "Error #404 not found.",
            r"TEST\'S TESTVERKSTED AS",
            "   \n\t  ",
            "a < b, R&D, C++, $5 og $6, [sak 42], x ~ y",
        ] {
            assert!(is_plain(ok), "{ok:?}");
        }
        for markup in [
            "<h1>test</h1>",
            "# test",
            "a<b",
            "&amp;",
            "&#169;",
            "> sitat",
            "tekst\n---",
            "[a](b)",
            "~~x~~",
            "==x==",
            "$x$",
        ] {
            assert!(!is_plain(markup), "{markup:?}");
        }
    }
}
