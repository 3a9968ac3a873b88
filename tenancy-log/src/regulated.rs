//! [`Regulated<T>`]: a value that is regulated wherever it goes.
//!
//! Its `Debug` and `Display` print `[regulated]`, so every layer, formatter, panic message
//! or `format!` that meets it gets the placeholder. Only [`RedactingLayer`]'s tenant sink
//! gets the value, through a side channel that never hands it to a `Visit` or a
//! `fmt::Formatter` it does not own: while the layer formats the sink's copy of an event,
//! this thread is in *capture* mode, in which a `Regulated` value renders itself into a
//! thread-local list held by the layer and writes only a marker (`U+E000 index U+E001`)
//! where it appears; the layer then replaces its own markers with the captured text,
//! escaped. Anything else formatted on this thread meanwhile (a nested event seen by
//! another layer, a `Display` cache) receives the marker, never the value.
//!
//! [`RedactingLayer`]: crate::RedactingLayer

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};

/// What a [`Regulated`] value prints outside the tenant sink.
pub const REGULATED_PLACEHOLDER: &str = "[regulated]";

const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';
/// How deep regulated values nested inside regulated values are expanded in the sink.
const MAX_NESTING: usize = 8;

thread_local! {
    /// Whether this thread is formatting a tenant sink's copy of an event.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The values captured in capture mode, indexed by their markers.
    static CAPTURED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// How many placeholders were printed on this thread (wrapping); a pass compares the
    /// count before and after to learn whether it met a regulated value.
    static PLACEHOLDERS: Cell<u32> = const { Cell::new(0) };
}

/// A value that is regulated content wherever it goes: a CAPA title, a deviation
/// description, a patient or batch identifier whose context is regulated.
///
/// Wrap the value where it is created; every log line, span, error message and panic
/// message that formats it then prints `[regulated]`, in this crate's layers and in every
/// other layer or formatter stacked beside them (stock `fmt`, OpenTelemetry, `log`). Only a
/// [`RedactingLayer`](crate::RedactingLayer) with a tenant sink writes the value, to that
/// tenant's sink.
///
/// ```
/// use tenancy_log::Regulated;
///
/// let title = Regulated::new(String::from("Contamination in cleanroom 3"));
/// assert_eq!(format!("{title}"), "[regulated]");
/// assert_eq!(format!("{title:?}"), "[regulated]");
/// assert_eq!(title.expose(), "Contamination in cleanroom 3");
///
/// // In an event: `%` (or `?`) records it through `Display` (or `Debug`).
/// tracing::info!(capa.title = %title, "CAPA opened");
/// tracing::info!("CAPA {title} opened");
/// ```
///
/// `Regulated` has no `Serialize` implementation on purpose: a value leaving through serde
/// would leave whole. Read it with [`Regulated::expose`] where the code means to.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Regulated<T>(T);

impl<T> Regulated<T> {
    /// Marks `value` as regulated.
    pub const fn new(value: T) -> Self {
        Regulated(value)
    }

    /// The value, for code that means to use it (to store it, to show it to its owner).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Regulated<T> {
    fn from(value: T) -> Self {
        Regulated(value)
    }
}

impl<T: fmt::Display> fmt::Display for Regulated<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render(f, |text| write!(text, "{}", self.0))
    }
}

impl<T: fmt::Debug> fmt::Debug for Regulated<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alternate = f.alternate();
        render(f, |text| {
            if alternate {
                write!(text, "{:#?}", self.0)
            } else {
                write!(text, "{:?}", self.0)
            }
        })
    }
}

/// Prints the placeholder, or, in capture mode, captures the value and prints its marker.
fn render(
    f: &mut fmt::Formatter<'_>,
    value: impl FnOnce(&mut String) -> fmt::Result,
) -> fmt::Result {
    if !CAPTURING.try_with(Cell::get).unwrap_or(false) {
        let _ = PLACEHOLDERS.try_with(|n| n.set(n.get().wrapping_add(1)));
        return f.pad(REGULATED_PLACEHOLDER);
    }
    // Format the value before borrowing the list: it may hold regulated values itself.
    let mut text = String::new();
    value(&mut text)?;
    let index = CAPTURED.try_with(|captured| {
        let mut captured = captured.try_borrow_mut().ok()?;
        captured.push(text);
        Some(captured.len() - 1)
    });
    match index {
        Ok(Some(index)) => write!(f, "{MARK_OPEN}{index}{MARK_CLOSE}"),
        _ => f.pad(REGULATED_PLACEHOLDER),
    }
}

/// Runs `f` with regulated values printing their placeholder; returns what `f` returned and
/// whether a placeholder was printed meanwhile.
pub(crate) fn placeholder_pass<R>(f: impl FnOnce() -> R) -> (R, bool) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CAPTURING.try_with(|c| c.set(self.0));
        }
    }
    let previous = CAPTURING.try_with(|c| c.replace(false)).unwrap_or(false);
    let _restore = Restore(previous);
    let before = placeholder_count();
    let result = f();
    (result, placeholder_count() != before)
}

fn placeholder_count() -> u32 {
    PLACEHOLDERS.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` in capture mode; returns what `f` returned and the values captured, in marker
/// order. Whatever the thread was doing before (a pass of an enclosing event) is restored.
pub(crate) fn capture_pass<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    struct Restore {
        capturing: bool,
        captured: Option<Vec<String>>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CAPTURING.try_with(|c| c.set(self.capturing));
            if let Some(previous) = self.captured.take() {
                let _ = CAPTURED.try_with(|c| {
                    if let Ok(mut c) = c.try_borrow_mut() {
                        *c = previous;
                    }
                });
            }
        }
    }
    let capturing = CAPTURING.try_with(|c| c.replace(true)).unwrap_or(false);
    let captured = CAPTURED
        .try_with(|c| c.try_borrow_mut().ok().map(|mut c| std::mem::take(&mut *c)))
        .ok()
        .flatten();
    let mut restore = Restore {
        capturing,
        captured,
    };
    let result = f();
    let values = CAPTURED
        .try_with(|c| {
            c.try_borrow_mut()
                .map(|mut c| std::mem::take(&mut *c))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    // Put back what an enclosing pass had captured (the guard would too, on a panic).
    if let Some(previous) = restore.captured.take() {
        let _ = CAPTURED.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = previous;
            }
        });
    }
    drop(restore);
    (result, values)
}

/// Replaces, in `buf[from..]` (JSON-escaped text), each marker with its captured value,
/// JSON-escaped. A marker with no captured value (text that merely looks like one) is left
/// as it is.
pub(crate) fn substitute_json(buf: &mut String, from: usize, values: &[String]) {
    if values.is_empty() || !buf[from..].contains(MARK_OPEN) {
        return;
    }
    let tail = buf.split_off(from);
    let mut rest = tail.as_str();
    while let Some(open) = rest.find(MARK_OPEN) {
        buf.push_str(&rest[..open]);
        let after = &rest[open + MARK_OPEN.len_utf8()..];
        match marker_index(after, values) {
            Some((index, len)) => {
                let raw = expand(&values[index], values, 1);
                crate::escape::json_str(buf, &raw);
                rest = &after[len..];
            }
            None => {
                buf.push(MARK_OPEN);
                rest = after;
            }
        }
    }
    buf.push_str(rest);
}

/// The index of the marker whose body starts `after` (just past its opening character), and
/// the length of the body with its closing character.
fn marker_index(after: &str, values: &[String]) -> Option<(usize, usize)> {
    let close = after.find(MARK_CLOSE)?;
    let digits = &after[..close];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: usize = digits.parse().ok()?;
    (index < values.len()).then_some((index, close + MARK_CLOSE.len_utf8()))
}

/// A captured value with the markers of the regulated values inside it replaced by theirs.
fn expand(text: &str, values: &[String], depth: usize) -> String {
    if !text.contains(MARK_OPEN) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(MARK_OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + MARK_OPEN.len_utf8()..];
        match marker_index(after, values) {
            Some((index, len)) if depth < MAX_NESTING => {
                out.push_str(&expand(&values[index], values, depth + 1));
                rest = &after[len..];
            }
            Some((_, len)) => {
                out.push_str(REGULATED_PLACEHOLDER);
                rest = &after[len..];
            }
            None => {
                out.push(MARK_OPEN);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[expect(dead_code, reason = "read through Debug")]
    struct Capa {
        id: u32,
        title: Regulated<String>,
    }

    #[test]
    fn prints_the_placeholder_outside_capture() {
        let title = Regulated::new("secret title".to_owned());
        assert_eq!(title.to_string(), "[regulated]");
        assert_eq!(format!("{title:?}"), "[regulated]");
        assert_eq!(format!("{title:>13}|"), "  [regulated]|");
        let capa = Capa {
            id: 7,
            title: title.clone(),
        };
        assert_eq!(format!("{capa:?}"), "Capa { id: 7, title: [regulated] }");
        let ((), printed) = placeholder_pass(|| drop(format!("{capa:?}")));
        assert!(printed);
        let ((), printed) = placeholder_pass(|| drop(format!("{}", 7)));
        assert!(!printed);
    }

    #[test]
    fn capture_hands_the_value_only_to_the_substitution() {
        let capa = Capa {
            id: 7,
            title: Regulated::new("say \"hi\"\n".to_owned()),
        };
        let (formatted, values) = capture_pass(|| format!("{capa:?}"));
        assert!(!formatted.contains("hi"), "{formatted}");
        assert_eq!(values, ["\"say \\\"hi\\\"\\n\""]);
        let mut json = String::new();
        crate::escape::json_str(&mut json, &formatted);
        substitute_json(&mut json, 0, &values);
        let parsed: String = serde_json::from_str(&format!("\"{json}\"")).unwrap();
        assert_eq!(parsed, r#"Capa { id: 7, title: "say \"hi\"\n" }"#);
        // Outside the pass, the placeholder again.
        assert_eq!(format!("{capa:?}"), "Capa { id: 7, title: [regulated] }");
    }

    #[test]
    fn nested_regulated_values_expand_in_the_sink() {
        let inner = Regulated::new("inner");
        let outer = Regulated::new(format!("outer({})", Regulated::new(1)));
        // `outer` was built outside capture: its text already holds the placeholder.
        let (formatted, values) = capture_pass(|| format!("{outer} {}", Regulated::new(inner)));
        let mut json = String::new();
        crate::escape::json_str(&mut json, &formatted);
        substitute_json(&mut json, 0, &values);
        assert_eq!(json, "outer([regulated]) inner");
    }

    #[test]
    fn a_placeholder_pass_inside_a_capture_pass_restores_it() {
        let (inner, values) = capture_pass(|| {
            let (ops, _) = placeholder_pass(|| Regulated::new("v").to_string());
            assert_eq!(ops, "[regulated]");
            Regulated::new("w").to_string()
        });
        assert!(inner.starts_with(MARK_OPEN));
        assert_eq!(values, ["w"]);
        assert!(!CAPTURING.with(Cell::get));
    }

    #[test]
    fn forged_markers_are_left_alone() {
        let values = vec!["real".to_owned()];
        let mut buf = format!("a{MARK_OPEN}5{MARK_CLOSE}b{MARK_OPEN}x{MARK_CLOSE}{MARK_OPEN}");
        let expected = buf.clone();
        substitute_json(&mut buf, 0, &values);
        assert_eq!(buf, expected);
    }

    #[test]
    fn capture_mode_ends_even_when_formatting_panics() {
        struct Boom;
        impl fmt::Display for Boom {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("boom")
            }
        }
        let result = std::panic::catch_unwind(|| capture_pass(|| Boom.to_string()));
        assert!(result.is_err());
        assert_eq!(Regulated::new("x").to_string(), "[regulated]");
    }
}
