//! Escaping for the two output formats, so that no value can end a line, colour a terminal,
//! reorder what a reader sees, or pass for a field of its own.
//!
//! Both formats escape the same characters: ASCII and C1 control characters (newlines, the
//! ESC that starts an ANSI sequence, the single-byte CSI `U+009B`), DEL, the Unicode line and
//! paragraph separators, and the bidirectional controls (a right-to-left override can make
//! `tenant=acme` read as something else). JSON strings escape them as `\uXXXX`, so a line
//! is one valid JSON object whatever the input; text values escape them as `\u{..}` inside
//! double quotes, and any value that is not a plain token is quoted, so `x tenant=evil`
//! cannot pass for a second field.

use std::fmt;

/// Whether `c` is a character no output may carry as it is.
#[inline]
fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `b` may appear as it is inside a JSON string: printable ASCII other than `"` and
/// `\`. Other bytes take the slow path.
#[inline]
fn json_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Appends `s` to `out` as the inside of a JSON string (without the quotes).
pub(crate) fn json_str(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if json_plain(b) {
            i += 1;
            continue;
        }
        if b >= 0x80 {
            // A non-ASCII character: copy it unless it is one of the dangerous ones.
            let c = s[i..].chars().next().expect("i is on a character boundary");
            if !is_dangerous(c) {
                i += c.len_utf8();
                continue;
            }
            out.push_str(&s[start..i]);
            push_json_escape(out, c);
            i += c.len_utf8();
            start = i;
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => push_json_escape(out, char::from(b)),
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
}

fn push_json_escape(out: &mut String, c: char) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let code = u32::from(c);
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[((code >> shift) & 0xf) as usize]));
    }
}

/// A `fmt::Write` that JSON-escapes everything written through it into a string, so a
/// `Debug` or `Display` value is escaped as it is formatted, without a copy.
pub(crate) struct JsonEscaper<'a>(pub(crate) &'a mut String);

impl fmt::Write for JsonEscaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        json_str(self.0, s);
        Ok(())
    }
}

/// Whether `b` may appear in a bare (unquoted) text token.
#[inline]
fn text_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'.'
                | b':'
                | b'/'
                | b'@'
                | b'+'
                | b'-'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'#'
                | b','
        )
}

/// Appends `s` to `out` as a text-format value: as it is when it is a plain token
/// (letters, digits and `_.:/@+-[]()#,`), otherwise in double quotes with `"`, `\` and every
/// dangerous character escaped.
pub(crate) fn text_value(out: &mut String, s: &str) {
    if !s.is_empty() && s.bytes().all(text_plain) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = String::new();
        json_str(&mut out, s);
        out
    }

    fn text(s: &str) -> String {
        let mut out = String::new();
        text_value(&mut out, s);
        out
    }

    #[test]
    fn json_escapes_controls_quotes_and_invisible_reordering() {
        assert_eq!(json("plain text"), "plain text");
        assert_eq!(json("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(json("a\nb\r\t"), "a\\nb\\r\\t");
        assert_eq!(json("\u{1b}[31mred"), "\\u001b[31mred");
        assert_eq!(json("\u{9b}31m"), "\\u009b31m");
        assert_eq!(json("\u{7f}"), "\\u007f");
        assert_eq!(json("a\u{2028}b\u{202e}c"), "a\\u2028b\\u202ec");
        assert_eq!(json("Müller ✓"), "Müller ✓");
    }

    #[test]
    fn json_output_parses_back_to_the_input() {
        let nasty = "x\"}\n{\"tenant\":\"evil\u{1b}[2J\u{202e}\u{0}é";
        let line = format!("{{\"v\":\"{}\"}}", json(nasty));
        assert!(!line.contains('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["v"], nasty);
    }

    #[test]
    fn text_quotes_anything_that_could_pass_for_structure() {
        assert_eq!(text("GET"), "GET");
        assert_eq!(text("[regulated]"), "[regulated]");
        assert_eq!(text("/capa/12"), "/capa/12");
        assert_eq!(text(""), "\"\"");
        assert_eq!(text("a b"), "\"a b\"");
        assert_eq!(text("x tenant=evil"), "\"x tenant=evil\"");
        assert_eq!(text("a=b"), "\"a=b\"");
        assert_eq!(text("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(text("\u{1b}[31m"), "\"\\u{1b}[31m\"");
        assert_eq!(text("a\u{202e}b"), "\"a\\u{202e}b\"");
        assert_eq!(text("Müller"), "\"Müller\"");
    }
}
