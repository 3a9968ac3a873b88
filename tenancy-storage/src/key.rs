//! Object keys are validated, never sanitised, in this one place for every backend.
//!
//! A key is a `/`-separated path of non-empty segments. Refused, each with its own message:
//! the empty key; keys longer than [`MAX_KEY_LEN`]; a leading `/`; an empty segment (`a//b`,
//! a trailing `/`); a segment made only of dots (`.`, `..`, `...`, or their Unicode
//! look-alikes such as `．．`), which a path normaliser anywhere between the application and
//! the disk could resolve; a backslash, which some tools take for a separator; control
//! characters (NUL included), bidirectional-text controls and Unicode non-characters; and
//! any of these hidden behind percent-encoding (`%2e%2e/`, `%252e%252e%252f`), since a key
//! can be decoded again by a proxy, a URL library or a human copying it. A refused key is
//! an error, never rewritten into another key.

use tenancy_core::TenantId;

use crate::error::{Error, ErrorKind, quote};

/// The longest object key, in bytes of UTF-8: S3's limit of 1,024 less the longest
/// tenant prefix of the shared-bucket layout (a 40-byte tenant id and `/`), so that every
/// key valid in one layout is valid in the other.
pub const MAX_KEY_LEN: usize = 1024 - (TenantId::MAX_LEN + 1);

/// How many times a key is percent-decoded in search of hidden traversal: `%25` nests
/// one level per round, and no key needs more than a few.
const DECODE_ROUNDS: usize = 4;

/// Characters that Unicode compatibility normalisation (NFKC) turns into one or more full
/// stops: a segment of these can become `..` in a normalising layer.
const DOT_LOOKALIKES: &[char] = &[
    '.', '\u{2024}', // ONE DOT LEADER
    '\u{2025}', // TWO DOT LEADER
    '\u{2026}', // HORIZONTAL ELLIPSIS
    '\u{FE52}', // SMALL FULL STOP
    '\u{FF0E}', // FULLWIDTH FULL STOP
];

/// Checks an object key, the way every call that takes one does.
///
/// Applications can call it early, on a file name a user typed, to refuse it before any
/// upload starts.
///
/// ```
/// use tenancy_storage::{ErrorKind, check_key};
///
/// assert!(check_key("capa/CAPA-12/report v2.pdf").is_ok());
/// for bad in ["", "/etc/passwd", "a/../b", "a\\b", "%2e%2e/b", "a//b", "nul\0"] {
///     assert_eq!(check_key(bad).unwrap_err().kind(), ErrorKind::InvalidKey);
/// }
/// ```
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "object key is empty: give the object a name",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(
            "object key",
            key,
            &format!(
                "it is {} bytes long; the most is {MAX_KEY_LEN} bytes of UTF-8",
                key.len()
            ),
        ));
    }
    check_path(key, Shape::Key).map_err(|why| invalid("object key", key, &why))?;
    check_decoded(key, Shape::Key).map_err(|why| invalid("object key", key, &why))
}

/// Checks the prefix of a list request: the empty prefix, or the start of a key (a
/// trailing `/` and a partial last segment are allowed; its complete segments follow the
/// key rules).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.len() > MAX_KEY_LEN {
        return Err(invalid(
            "list prefix",
            prefix,
            &format!(
                "it is {} bytes long; the most is {MAX_KEY_LEN}",
                prefix.len()
            ),
        ));
    }
    check_path(prefix, Shape::Prefix).map_err(|why| invalid("list prefix", prefix, &why))?;
    check_decoded(prefix, Shape::Prefix).map_err(|why| invalid("list prefix", prefix, &why))
}

/// Checks the `after` position of a list request: any text a key could be, compared only.
pub(crate) fn check_after(after: &str) -> Result<(), Error> {
    if after.len() > MAX_KEY_LEN {
        return Err(invalid(
            "list position",
            after,
            &format!(
                "it is {} bytes long; the most is {MAX_KEY_LEN}",
                after.len()
            ),
        ));
    }
    check_characters(after).map_err(|why| invalid("list position", after, &why))
}

fn invalid(what: &str, value: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidKey,
        format!(
            "{what} {} is refused: {why}. Keys are `/`-separated names, taken literally \
             and never rewritten",
            quote(value)
        ),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A whole key: every segment complete.
    Key,
    /// A list prefix: the last segment may be empty or partial.
    Prefix,
}

fn check_path(path: &str, shape: Shape) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(String::from(
            "it starts with '/' (keys are relative to the tenant's bucket)",
        ));
    }
    check_characters(path)?;
    let segments: Vec<&str> = path.split('/').collect();
    let complete = match shape {
        Shape::Key => &segments[..],
        Shape::Prefix => &segments[..segments.len() - 1],
    };
    for segment in complete {
        if segment.is_empty() {
            return Err(String::from(
                "it has an empty segment (`//`, or a trailing `/`)",
            ));
        }
        if is_dot_segment(segment) {
            return Err(format!(
                "segment {} is made only of dots, which a path normaliser would resolve",
                quote(segment)
            ));
        }
    }
    Ok(())
}

fn check_characters(text: &str) -> Result<(), String> {
    for (at, c) in text.char_indices() {
        if c == '\\' {
            return Err(format!(
                "it has a backslash at byte {at} (use '/' to separate segments)"
            ));
        }
        if c.is_control() {
            return Err(format!(
                "it has the control character U+{:04X} at byte {at}",
                u32::from(c)
            ));
        }
        if is_bidi_control(c) {
            return Err(format!(
                "it has the bidirectional-text control U+{:04X} at byte {at}, which makes a \
                 key read differently from what it is",
                u32::from(c)
            ));
        }
        if is_noncharacter(c) {
            return Err(format!(
                "it has the Unicode non-character U+{:04X} at byte {at}",
                u32::from(c)
            ));
        }
    }
    Ok(())
}

/// A segment that is only dots (or NFKC dot look-alikes), ignoring trailing spaces, which
/// Windows drops.
fn is_dot_segment(segment: &str) -> bool {
    let trimmed = segment.trim_end_matches(' ');
    !trimmed.is_empty() && trimmed.chars().all(|c| DOT_LOOKALIKES.contains(&c))
}

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// Decodes `text` up to [`DECODE_ROUNDS`] times and checks each decoded form like a key, so
/// no encoding of a refused key is accepted.
fn check_decoded(text: &str, shape: Shape) -> Result<(), String> {
    let mut current = text.to_owned();
    for _ in 0..DECODE_ROUNDS {
        let Some(decoded) = percent_decode(&current) else {
            return Ok(());
        };
        // A prefix decodes to a prefix; a key to a key.
        if let Err(why) = check_path(&decoded, shape) {
            return Err(format!(
                "percent-decoded it reads {}, and {why}",
                quote(&decoded)
            ));
        }
        current = decoded;
    }
    Ok(())
}

/// `text` with every `%XX` (two hexadecimal digits) decoded, or `None` when it has none.
/// Bytes that are not UTF-8 once decoded become U+FFFD, which is checked like any other
/// character.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            decoded_any = true;
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    decoded_any.then(|| String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(key: &str) -> String {
        let err = check_key(key).expect_err(key);
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
        err.to_string()
    }

    #[test]
    fn ordinary_keys_pass() {
        for key in [
            "a",
            "capa/CAPA-12/report v2.pdf",
            "100% sure.txt",
            "a%2Fb",
            "..hidden/x",
            "x..",
            "naïve/日本語.txt",
            "a+b=c&d?e#f",
            &"k".repeat(MAX_KEY_LEN),
        ] {
            assert!(check_key(key).is_ok(), "{key}: {:?}", check_key(key));
        }
    }

    #[test]
    fn each_refusal_says_why() {
        assert!(refused("").contains("empty"));
        assert!(refused(&"k".repeat(MAX_KEY_LEN + 1)).contains("bytes long"));
        assert!(refused("/a").contains("starts with '/'"));
        assert!(refused("a//b").contains("empty segment"));
        assert!(refused("a/").contains("empty segment"));
        assert!(refused("a/../b").contains("only of dots"));
        assert!(refused("./a").contains("only of dots"));
        assert!(refused("a/...").contains("only of dots"));
        assert!(refused("a/.. ").contains("only of dots"));
        assert!(refused("\u{FF0E}\u{FF0E}/a").contains("only of dots"));
        assert!(refused("\u{2025}/a").contains("only of dots"));
        assert!(refused("a\\b").contains("backslash"));
        assert!(refused("a\0b").contains("U+0000"));
        assert!(refused("a\nb").contains("U+000A"));
        assert!(refused("a\u{7f}").contains("U+007F"));
        assert!(refused("a\u{85}").contains("U+0085"));
        assert!(refused("invoice\u{202E}fdp.exe").contains("bidirectional"));
        assert!(refused("a\u{FFFE}").contains("non-character"));
    }

    #[test]
    fn encoded_traversal_is_refused() {
        for key in [
            "%2e%2e/b",
            "%2E%2E/b",
            "a/%2e%2e",
            "a%2F..%2Fb",
            "%252e%252e%252fb",
            "%25252e%25252e/x",
            "a%5Cb",
            "a%00b",
            "%2Fetc",
            "a%2F%2Fb",
            "%EF%BC%8E%EF%BC%8E/x",
        ] {
            let why = refused(key);
            assert!(why.contains("percent-decoded"), "{key}: {why}");
        }
    }

    #[test]
    fn messages_quote_the_key_escaped() {
        let why = refused("a\u{202E}b");
        assert!(!why.contains('\u{202E}'));
        assert!(why.contains("\\u{202e}"));
        let long = format!("{}\0", "x".repeat(400));
        assert!(refused(&long).len() < 400);
    }

    #[test]
    fn prefixes_may_end_anywhere() {
        for prefix in ["", "capa/", "capa/CA", "a/b/", ".."] {
            assert!(check_prefix(prefix).is_ok(), "{prefix}");
        }
        for prefix in ["/", "/a", "a//", "../", "a/../", "%2e%2e/", "a\\"] {
            let err = check_prefix(prefix).expect_err(prefix);
            assert_eq!(err.kind(), ErrorKind::InvalidKey);
        }
        assert!(check_after("any text at all/..").is_ok());
        assert!(check_after("a\0").is_err());
    }
}
