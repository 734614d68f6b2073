//! Altinn's plain-text rule for the title and the message sender (1002, 1039). Altinn reads
//! the text as HTML, turns that into markdown, renders the markdown back to plain text (with
//! Markdig's advanced extensions, list parsing off) and refuses the text unless it comes out
//! as it went in, white space aside; backticks and backslashes are removed before all that,
//! so they always pass. `*` and `_` are escaped on the way and pass too.
//!
//! What therefore fails is what the round trip changes: HTML tags and comments (dropped),
//! character references (decoded), and markdown outside emphasis that renders as something
//! else (headings, block quotes, rules, fenced code, links, strike-through and the other
//! emphasis extras, inline maths, citations). The checks below are those constructs as
//! Markdig recognises them, near enough: a text that only resembles one passes here and
//! there alike.
//!
//! The body gets no such check: Altinn HTML-encodes the body before its markdown round trip,
//! so raw HTML there comes back unchanged and is accepted.

/// Why Altinn would not take `text` as plain text, or None.
pub fn not_plain(text: &str) -> Option<&'static str> {
    let text: String = text.chars().filter(|c| !matches!(c, '`' | '\\')).collect();
    if has_tag(&text) {
        return Some("holds an HTML tag or comment");
    }
    if has_character_reference(&text) {
        return Some("holds an HTML character reference such as &amp;");
    }
    let mut previous_blank = true;
    for line in text.lines() {
        if let Some(what) = block_markup(line, previous_blank) {
            return Some(what);
        }
        previous_blank = line.trim().is_empty();
    }
    inline_markup(&text)
}

/// `<` opening a tag, an end tag, a comment, a doctype or a processing instruction.
fn has_tag(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(1)).any(|i| {
        b[i] == b'<'
            && match b[i + 1] {
                c if c.is_ascii_alphabetic() => true,
                b'/' => b.get(i + 2).is_some_and(u8::is_ascii_alphabetic),
                b'!' | b'?' => true,
                _ => false,
            }
    })
}

/// Legacy entities that HTML decodes even without the semicolon.
const BARE_ENTITIES: [&str; 5] = ["amp", "lt", "gt", "quot", "nbsp"];

/// `&#65;`, `&#x41;`, `&name;`, or a legacy `&amp` without its semicolon.
fn has_character_reference(text: &str) -> bool {
    text.match_indices('&').any(|(i, _)| {
        let rest = &text[i + 1..];
        if let Some(number) = rest.strip_prefix('#') {
            let hex = number.strip_prefix(['x', 'X']);
            return match hex {
                Some(h) => h.starts_with(|c: char| c.is_ascii_hexdigit()),
                None => number.starts_with(|c: char| c.is_ascii_digit()),
            };
        }
        let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let name = &rest[..name_len];
        let starts_alpha = name.starts_with(|c: char| c.is_ascii_alphabetic());
        (starts_alpha && rest[name_len..].starts_with(';')) || BARE_ENTITIES.contains(&name)
    })
}

/// Markdown that a line starts (or is): headings, quotes, rules, code fences, setext
/// underlines and link definitions. Up to three spaces of indent still count.
fn block_markup(line: &str, previous_blank: bool) -> Option<&'static str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None; // indented code: rendered as its own text
    }
    let l = &line[indent..];
    let hashes = l.len() - l.trim_start_matches('#').len();
    if (1..=6).contains(&hashes) && l[hashes..].chars().next().is_none_or(|c| c == ' ' || c == '\t') {
        return Some("is a markdown heading (#)");
    }
    if l.starts_with('>') {
        return Some("is a markdown block quote (>)");
    }
    if l.starts_with("~~~") || l.starts_with(":::") {
        return Some("is a markdown fence (~~~ or :::)");
    }
    let t = l.trim_end();
    let dashes = t.chars().filter(|&c| c == '-').count();
    if !t.is_empty() && t.chars().all(|c| c == '-' || c == ' ' || c == '\t') && (dashes >= 3 || !previous_blank) {
        return Some("is a markdown rule or heading underline (---)");
    }
    if !previous_blank && !t.is_empty() && t.chars().all(|c| c == '=') {
        return Some("is a markdown heading underline (===)");
    }
    if l.starts_with('[') && l.find("]:").is_some_and(|end| end > 1) {
        return Some("is a markdown link definition ([label]: ...)");
    }
    None
}

/// Inline markdown that renders as something else.
fn inline_markup(text: &str) -> Option<&'static str> {
    if text.contains("](") && text.find('[').is_some_and(|open| text[open..].contains("](")) {
        return Some("holds a markdown link ([text](address))");
    }
    for (delimiter, what) in [
        ("~~", "holds markdown strike-through (~~)"),
        ("++", "holds markdown inserted text (++)"),
        ("==", "holds markdown marked text (==)"),
        ("~", "holds markdown subscript (~)"),
        ("^", "holds markdown superscript (^)"),
        ("\"\"", "holds a markdown citation (\"\")"),
    ] {
        if paired(text, delimiter) {
            return Some(what);
        }
    }
    if maths(text) {
        return Some("holds markdown maths ($...$)");
    }
    None
}

/// An opening `delimiter` followed by a non-space and a later closing one preceded by a
/// non-space, with something between: the shape of an emphasis-like span.
fn paired(text: &str, delimiter: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let d: Vec<char> = delimiter.chars().collect();
    let c = d[0];
    // Runs of the delimiter character of exactly the delimiter's length.
    let mut runs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != c {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i] == c {
            i += 1;
        }
        if i - start == d.len() {
            runs.push((start, i));
        }
    }
    let opens = |(_, end): (usize, usize)| chars.get(end).is_some_and(|n| !n.is_whitespace());
    let closes = |(start, _): (usize, usize)| start > 0 && !chars[start - 1].is_whitespace();
    runs.iter()
        .enumerate()
        .any(|(k, &open)| opens(open) && runs[k + 1..].iter().any(|&close| close.0 > open.1 && closes(close)))
}

/// `$x$`: an opening `$` before a non-space, a closing one after a non-space and not before
/// a digit (so "$5 and $6" is money, not maths).
fn maths(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let dollars: Vec<usize> = (0..chars.len()).filter(|&i| chars[i] == '$').collect();
    dollars.iter().enumerate().any(|(k, &open)| {
        chars.get(open + 1).is_some_and(|n| !n.is_whitespace() && *n != '$')
            && dollars[k + 1..].iter().any(|&close| {
                close > open + 1
                    && !chars[close - 1].is_whitespace()
                    && !chars.get(close + 1).is_some_and(char::is_ascii_digit)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_altinn_accepts_as_plain_text() {
        // Altinn's own examples of plain text, and everyday titles.
        for ok in [
            "This is a valid plain text without markdown syntax.",
            "123. This is valid plaintext even if it contains Markdown list",
            "This *is not* markdown and _should_ be treated as plain text.",
            "Here is some `inline code` in plain text.",
            "1.234 is a number, not a markdown list.",
            "Error #404 not found.",
            r"TEST\'S TESTVERKSTED AS",
            "  This is   plain   text with   irregular   spaces.  ",
            "",
            "   \n\t  ",
            "- a dash list item",
            "Vedtak i sak 2026/42 (klage) - frist 1. mai",
            "Smith & Co, R&D, AT&T",
            "a < b and c > d",
            "x <3",
            "Pris $5 og $6",
            "C++ og C#",
            "Tom -- Jerry",
            "[sak 42]",
            "Rate ~5% ^ up",
            "Etat X",
        ] {
            assert_eq!(not_plain(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn what_altinn_refuses_as_plain_text() {
        for bad in [
            "<h1>test</h1>",
            "# test",
            "## Vedtak",
            "Vedtak <b>nå</b>",
            "a<b",
            "see <https://example.no>",
            "<!-- note -->",
            "Smith &amp; Co",
            "Smith &amp Co",
            "&#65;",
            "&#x41;",
            "> quoted",
            "---",
            "Title\n===",
            "Title\n-",
            "~~~",
            "[link](https://example.no)",
            "![bilde](a.png)",
            "[1]: https://example.no",
            "~~struck~~",
            "H~2~O",
            "x^2^",
            "++new++",
            "==marked==",
            "$x+y$",
            "\"\"cited\"\"",
        ] {
            assert!(not_plain(bad).is_some(), "{bad:?}");
        }
    }
}
