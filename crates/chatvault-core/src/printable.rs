//! Text from a repository made safe to print: the one escaping rule every frontend uses
//! for labels, host names, tags, paths, reasons and messages that came from storage.
//!
//! Anyone with storage write access (or a writer key) chooses those strings. Printed
//! as they are, an escape sequence can rewrite the operator's terminal (move the cursor,
//! hide a line, set the window title, or on some terminals answer with keystrokes), a
//! newline can forge an output line, and a bidirectional override can make text read
//! differently from what it is.
//!
//! Invariant: the output contains no control character (C0, DEL, C1), no bidirectional
//! or invisible formatting character, and no invalid UTF-8; each is written as a visible
//! escape (`\n`, `\r`, `\t`, `\u{1b}`, `\x80` for a byte that is not UTF-8). Everything
//! else, backslashes included, is unchanged, so what an operator sees can be typed back
//! (`--host node-1`) unless it held such a character.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as it is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                  // Arabic letter mark
                | '\u{200b}'..='\u{200f}' // zero-width characters, LRM, RLM
                | '\u{2028}'..='\u{202e}' // line and paragraph separators, embeddings, overrides
                | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, isolates
                | '\u{feff}' // zero-width no-break space
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `s` with every character that could act on a terminal (controls, bidirectional and
/// invisible formatting characters) replaced by a visible escape; borrowed when there is
/// none.
///
/// ```
/// use chatvault_core::printable;
/// assert_eq!(printable("node-1"), "node-1");
/// assert_eq!(printable("evil\u{1b}]0;pwned\u{7}"), "evil\\u{1b}]0;pwned\\u{7}");
/// assert_eq!(printable("two\nlines"), "two\\nlines");
/// ```
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`] for bytes that need not be UTF-8 (file names, link targets): valid
/// UTF-8 is treated as [`printable`] does, every other byte is written `\xNN`.
pub fn printable_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return printable(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&printable(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "node-1",
            "Zürich 日本 🙂",
            r"C:\logs\a b",
            "tag=daily,keep",
        ] {
            assert!(matches!(printable(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn terminal_controls_and_formatting_are_escaped() {
        let cases = [
            ("\u{1b}[2J\u{1b}[H", r"\u{1b}[2J\u{1b}[H"),
            ("title\u{1b}]0;x\u{7}", r"title\u{1b}]0;x\u{7}"),
            ("a\nb\r\tc\0", r"a\nb\r\tc\u{0}"),
            ("del\u{7f}", r"del\u{7f}"),
            ("csi\u{9b}31m", r"csi\u{9b}31m"),
            ("abc\u{202e}fdp.exe", r"abc\u{202e}fdp.exe"),
            ("iso\u{2066}x\u{2069}", r"iso\u{2066}x\u{2069}"),
            ("zw\u{200b}sp\u{feff}", r"zw\u{200b}sp\u{feff}"),
            ("ls\u{2028}ps\u{2029}", r"ls\u{2028}ps\u{2029}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(printable(raw), shown, "{raw:?}");
            assert_eq!(printable_bytes(raw.as_bytes()), shown, "{raw:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_escaped() {
        assert_eq!(printable_bytes(b"caf\xe9\x1b"), r"caf\xe9\u{1b}");
        assert_eq!(printable_bytes(b"\xff\xfe"), r"\xff\xfe");
        assert_eq!(printable_bytes("日本".as_bytes()), "日本");
    }

    proptest::proptest! {
        /// Nothing that could act on a terminal survives, whatever the input.
        #[test]
        fn the_output_never_holds_a_control_or_formatting_character(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            text in ".{0,32}",
        ) {
            for shown in [printable_bytes(&bytes), printable(&text)] {
                proptest::prop_assert!(!shown.chars().any(needs_escape), "{shown:?}");
            }
        }
    }
}
