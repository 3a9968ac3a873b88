//! The field writer: one `Visit` for both formats and both passes (redacted for the ops
//! stream, whole for the tenant sink).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};

use crate::escape::{JsonEscaper, json_str, text_value};
use crate::policy::Policy;

/// What the ops stream writes for a field the policy redacts.
pub const REDACTED_PLACEHOLDER: &str = "[redacted]";

/// Field names that would pass for the stamps this crate writes itself. An event or span
/// field with one of these names is written under the `claimed_` name instead, so the
/// stamped tenant is the only `tenant` on the line.
const RENAMED: &[(&str, &str)] = &[
    ("tenant", "claimed_tenant"),
    ("tenant_id", "claimed_tenant_id"),
    ("correlation_id", "claimed_correlation_id"),
];

/// How one field of a callsite is written: under which key, and what the ops stream
/// redacts. Computed once per callsite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldClass {
    key: &'static str,
    redact: bool,
    sources_redact: bool,
    message: bool,
}

impl FieldClass {
    pub(crate) fn new(policy: &Policy, name: &'static str) -> FieldClass {
        let redact = policy.redacts(name);
        FieldClass {
            key: output_key(name),
            redact,
            sources_redact: redact || policy.redacts(&format!("{name}.sources")),
            message: name == "message",
        }
    }

    /// The class of a field this crate has no classification for: redacted, whole chain
    /// included. Only reached if a callsite's fields were not seen at registration.
    fn unknown(name: &'static str) -> FieldClass {
        FieldClass {
            key: output_key(name),
            redact: true,
            sources_redact: true,
            message: name == "message",
        }
    }
}

fn output_key(name: &'static str) -> &'static str {
    RENAMED
        .iter()
        .find(|(reserved, _)| *reserved == name)
        .map_or(name, |(_, renamed)| renamed)
}

/// The output format of the ops stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Json,
    Text,
}

/// Writes the fields of an event or span: JSON members (`"k":v,...`) or text pairs
/// (` k=v ...`; the message without its key).
pub(crate) struct FieldWriter<'a> {
    pub(crate) out: &'a mut String,
    pub(crate) scratch: &'a mut String,
    pub(crate) classes: &'a [FieldClass],
    /// Whether this pass redacts (the ops stream) or writes everything (the tenant sink).
    pub(crate) redact: bool,
    pub(crate) style: Style,
    /// Whether nothing was written yet (no separator before the next field).
    pub(crate) first: bool,
    /// Whether a text field starts with a space even when it is the first.
    pub(crate) text_lead_space: bool,
    /// Whether the policy redacted a field in this pass.
    pub(crate) redacted: bool,
}

impl FieldWriter<'_> {
    fn class(&self, field: &Field) -> FieldClass {
        self.classes
            .get(field.index())
            .copied()
            .unwrap_or_else(|| FieldClass::unknown(field.name()))
    }

    fn separator(&mut self) {
        match self.style {
            Style::Json => {
                if !self.first {
                    self.out.push(',');
                }
            }
            Style::Text => {
                if !self.first || self.text_lead_space {
                    self.out.push(' ');
                }
            }
        }
        self.first = false;
    }

    fn key(&mut self, class: FieldClass, suffix: &str) {
        self.separator();
        match self.style {
            Style::Json => {
                self.out.push('"');
                json_str(self.out, class.key);
                self.out.push_str(suffix);
                self.out.push_str("\":");
            }
            Style::Text => {
                if class.message && suffix.is_empty() {
                    return;
                }
                if suffix.is_empty() {
                    text_value(self.out, class.key);
                } else {
                    self.scratch.clear();
                    self.scratch.push_str(class.key);
                    self.scratch.push_str(suffix);
                    text_value(self.out, self.scratch);
                }
                self.out.push('=');
            }
        }
    }

    fn placeholder(&mut self) {
        self.redacted = true;
        match self.style {
            Style::Json => {
                self.out.push('"');
                self.out.push_str(REDACTED_PLACEHOLDER);
                self.out.push('"');
            }
            Style::Text => self.out.push_str(REDACTED_PLACEHOLDER),
        }
    }

    /// Writes a field whose value is plain (a number, a bool): as it is, or redacted.
    fn plain(&mut self, field: &Field, value: impl fmt::Display) {
        let class = self.class(field);
        self.key(class, "");
        if self.redact && class.redact {
            self.placeholder();
        } else {
            let _ = write!(self.out, "{value}");
        }
    }

    /// Writes a string value, escaped for the format.
    fn string(&mut self, value: fmt::Arguments<'_>) {
        match self.style {
            Style::Json => {
                self.out.push('"');
                let _ = JsonEscaper(self.out).write_fmt(value);
                self.out.push('"');
            }
            Style::Text => {
                self.scratch.clear();
                let _ = self.scratch.write_fmt(value);
                text_value(self.out, self.scratch);
            }
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let class = self.class(field);
        self.key(class, "");
        if self.redact && class.redact {
            self.placeholder();
            return;
        }
        match self.style {
            Style::Json => {
                self.out.push('"');
                json_str(self.out, value);
                self.out.push('"');
            }
            Style::Text => text_value(self.out, value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let class = self.class(field);
        self.key(class, "");
        if self.redact && class.redact {
            self.placeholder();
            return;
        }
        self.string(format_args!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.plain(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.plain(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() || self.style == Style::Text {
            self.plain(field, value);
            return;
        }
        // JSON has no NaN or infinity: write them as strings.
        let class = self.class(field);
        self.key(class, "");
        if self.redact && class.redact {
            self.placeholder();
        } else {
            self.string(format_args!("{value}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let class = self.class(field);
        self.key(class, "");
        if self.redact && class.redact {
            self.placeholder();
        } else {
            self.string(format_args!("{value}"));
        }
        let Some(first) = value.source() else {
            return;
        };
        self.key(class, ".sources");
        if self.redact && class.sources_redact {
            self.placeholder();
            return;
        }
        match self.style {
            Style::Json => {
                self.out.push('[');
                let mut source = Some(first);
                let mut separator = "";
                while let Some(error) = source {
                    self.out.push_str(separator);
                    self.string(format_args!("{error}"));
                    separator = ",";
                    source = error.source();
                }
                self.out.push(']');
            }
            Style::Text => {
                // The chain as anyhow prints it with `{:#}`: causes joined by ": ".
                let mut chain = String::new();
                let mut source = Some(first);
                while let Some(error) = source {
                    if !chain.is_empty() {
                        chain.push_str(": ");
                    }
                    let _ = write!(chain, "{error}");
                    source = error.source();
                }
                text_value(self.out, &chain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_renamed() {
        assert_eq!(output_key("tenant"), "claimed_tenant");
        assert_eq!(output_key("tenant_id"), "claimed_tenant_id");
        assert_eq!(output_key("correlation_id"), "claimed_correlation_id");
        assert_eq!(output_key("tenant.id"), "tenant.id");
        assert_eq!(output_key("message"), "message");
    }

    #[test]
    fn sources_follow_the_stricter_of_the_two_names() {
        let policy = Policy::builder()
            .regulated("db.error")
            .regulated("*.sources")
            .build()
            .unwrap();
        assert!(FieldClass::new(&policy, "db.error").sources_redact);
        let other = FieldClass::new(&policy, "other");
        assert!(!other.redact && other.sources_redact);
        let none = FieldClass::new(&Policy::default(), "error");
        assert!(!none.redact && !none.sources_redact);
    }
}
