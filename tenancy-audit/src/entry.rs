//! An audit entry, the event an application records, and the canonical encoding that the
//! chain hashes (specified in `FORMAT.md`).

use std::fmt;
use tenancy_core::hex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};

/// The `prev_hash` of a tenant's first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first bytes of every canonical encoding: the format and its version.
pub const FORMAT_TAG: &str = "tenancy-audit/v1\n";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// A record was created.
    Create,
    /// A record was changed.
    Update,
    /// A record was deleted.
    Delete,
    /// A record was read (recorded for the record types configured so).
    Read,
    /// A record's status changed (opened, approved, closed, ...).
    StatusChange,
    /// An electronic signature was applied; the entry carries its meaning.
    Signature,
    /// The trail (or part of it) was exported.
    Export,
    /// The tenant's data was restored from a backup.
    Restore,
    /// The chain head was signed and stored as a checkpoint.
    Checkpoint,
}

impl Action {
    /// Every action, in the order of their names.
    pub const ALL: [Action; 9] = [
        Action::Checkpoint,
        Action::Create,
        Action::Delete,
        Action::Export,
        Action::Read,
        Action::Restore,
        Action::Signature,
        Action::StatusChange,
        Action::Update,
    ];

    /// The name stored in the trail: `create`, `update`, `delete`, `read`,
    /// `status_change`, `signature`, `export`, `restore`, `checkpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::StatusChange => "status_change",
            Action::Signature => "signature",
            Action::Export => "export",
            Action::Restore => "restore",
            Action::Checkpoint => "checkpoint",
        }
    }

    /// Changes that need a reason on a regulated record.
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            Action::Update | Action::Delete | Action::StatusChange | Action::Restore
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a tenant's trail, as stored and as exported.
///
/// `old_value` and `new_value` are JSON texts, kept byte for byte as they were written
/// (the hash covers those bytes), so a verifier never needs to re-encode JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the tenant's trail: 1, 2, 3, ... with no gap.
    pub seq: u64,
    /// When it was recorded, by the database's clock, in UTC (RFC 3339, `Z`).
    pub recorded_at: String,
    /// The tenant whose trail this is.
    pub tenant: String,
    /// Who acted: their stable id.
    pub actor_id: String,
    /// Who acted: their display name at the time.
    pub actor_name: String,
    /// What was done (see [`Action::as_str`]).
    pub action: String,
    /// The kind of record (`capa`, `deviation`, ...).
    pub record_type: String,
    /// The record's id.
    pub record_id: String,
    /// The record before, as JSON text.
    pub old_value: Option<String>,
    /// The record after, as JSON text.
    pub new_value: Option<String>,
    /// Why (required for changes to regulated records).
    pub reason: Option<String>,
    /// The meaning of an electronic signature (`approved by`, `reviewed by`, ...).
    pub signature_meaning: Option<String>,
    /// The request (correlation id) that made the change.
    pub request_id: Option<String>,
    /// The hash of the previous entry of the same tenant ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical encoding, lowercase hex.
    pub hash: String,
}

impl Entry {
    /// The canonical encoding the hash is computed over (see `FORMAT.md`): the format tag,
    /// then each field in a fixed order as `<length>:<bytes>,` (length in decimal bytes),
    /// or `~,` for an absent field.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let seq = self.seq.to_string();
        let fields: [Option<&str>; 14] = [
            Some(&seq),
            Some(&self.recorded_at),
            Some(&self.tenant),
            Some(&self.actor_id),
            Some(&self.actor_name),
            Some(&self.action),
            Some(&self.record_type),
            Some(&self.record_id),
            self.old_value.as_deref(),
            self.new_value.as_deref(),
            self.reason.as_deref(),
            self.signature_meaning.as_deref(),
            self.request_id.as_deref(),
            Some(&self.prev_hash),
        ];
        let mut out = Vec::with_capacity(
            FORMAT_TAG.len() + fields.iter().flatten().map(|f| f.len() + 8).sum::<usize>(),
        );
        out.extend_from_slice(FORMAT_TAG.as_bytes());
        for field in fields {
            match field {
                Some(text) => {
                    out.extend_from_slice(text.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(text.as_bytes());
                    out.push(b',');
                }
                None => out.extend_from_slice(b"~,"),
            }
        }
        out
    }

    /// SHA-256 of [`Entry::canonical_bytes`], lowercase hex: what `hash` must be.
    pub fn compute_hash(&self) -> String {
        hex(&Sha256::digest(self.canonical_bytes()))
    }
}

/// What the application records: an action on a record, with its values and reason. The
/// trail adds the tenant, the actor, the request id, the time and the chain.
///
/// ```
/// use tenancy_audit::Event;
///
/// let event = Event::update("capa", "CAPA-7")
///     .old_value(serde_json::json!({"status": "open"}))
///     .new_value(serde_json::json!({"status": "in review"}))
///     .reason("root cause confirmed");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub(crate) action: Action,
    pub(crate) record_type: String,
    pub(crate) record_id: String,
    pub(crate) old_value: Option<String>,
    pub(crate) new_value: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) signature_meaning: Option<String>,
}

impl Event {
    /// `action` on the record `record_type`/`record_id`.
    pub fn new(action: Action, record_type: &str, record_id: &str) -> Self {
        Event {
            action,
            record_type: record_type.to_owned(),
            record_id: record_id.to_owned(),
            old_value: None,
            new_value: None,
            reason: None,
            signature_meaning: None,
        }
    }

    /// A record was created.
    pub fn create(record_type: &str, record_id: &str) -> Self {
        Event::new(Action::Create, record_type, record_id)
    }

    /// A record was changed.
    pub fn update(record_type: &str, record_id: &str) -> Self {
        Event::new(Action::Update, record_type, record_id)
    }

    /// A record was deleted.
    pub fn delete(record_type: &str, record_id: &str) -> Self {
        Event::new(Action::Delete, record_type, record_id)
    }

    /// A record's status changed.
    pub fn status_change(record_type: &str, record_id: &str) -> Self {
        Event::new(Action::StatusChange, record_type, record_id)
    }

    /// An electronic signature with its `meaning` (`approved by`, `reviewed by`, ...).
    pub fn signature(record_type: &str, record_id: &str, meaning: &str) -> Self {
        let mut event = Event::new(Action::Signature, record_type, record_id);
        event.signature_meaning = Some(meaning.to_owned());
        event
    }

    /// The record before the change.
    pub fn old_value(mut self, value: serde_json::Value) -> Self {
        self.old_value = Some(value.to_string());
        self
    }

    /// The record after the change.
    pub fn new_value(mut self, value: serde_json::Value) -> Self {
        self.new_value = Some(value.to_string());
        self
    }

    /// Why the change was made.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    pub(crate) fn check(&self, regulated: bool) -> Result<(), Error> {
        for (what, value) in [
            ("record type", &self.record_type),
            ("record id", &self.record_id),
        ] {
            if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
                return Err(Error::new(
                    ErrorKind::InvalidEvent,
                    format!(
                        "the {what} {} is invalid: use 1 to 256 bytes without control \
                         characters",
                        tenancy_core::quote(value)
                    ),
                ));
            }
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
        if regulated && self.action.needs_reason() && blank(&self.reason) {
            return Err(Error::new(
                ErrorKind::InvalidEvent,
                format!(
                    "`{}` records are regulated: a {} needs a reason (`Event::reason`); \
                     nothing was recorded",
                    self.record_type, self.action
                ),
            ));
        }
        if self.action == Action::Signature && blank(&self.signature_meaning) {
            return Err(Error::new(
                ErrorKind::InvalidEvent,
                "a signature needs its meaning (`approved by`, `reviewed by`, ...)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            seq: 1,
            recorded_at: "2026-12-01T12:00:00.000000Z".into(),
            tenant: "acme".into(),
            actor_id: "u-1".into(),
            actor_name: "Jane".into(),
            action: "create".into(),
            record_type: "capa".into(),
            record_id: "7".into(),
            old_value: None,
            new_value: Some("{\"a\":1}".into()),
            reason: None,
            signature_meaning: None,
            request_id: Some("r".into()),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let bytes = entry().canonical_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                "tenancy-audit/v1\n1:1,27:2026-12-01T12:00:00.000000Z,4:acme,3:u-1,4:Jane,\
                 6:create,4:capa,1:7,~,7:{{\"a\":1}},~,~,1:r,64:{GENESIS_HASH},"
            )
        );
    }

    #[test]
    fn absent_and_empty_differ_and_fields_cannot_shift() {
        let mut a = entry();
        let mut b = entry();
        a.reason = None;
        b.reason = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
        // Moving text from one field to the next changes the hash.
        a.actor_id = "u-1J".into();
        a.actor_name = "ane".into();
        b = entry();
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn regulated_changes_need_a_reason() {
        assert!(Event::update("capa", "1").check(true).is_err());
        assert!(Event::update("capa", "1").check(false).is_ok());
        assert!(Event::update("capa", "1").reason("why").check(true).is_ok());
        assert!(Event::create("capa", "1").check(true).is_ok());
        assert!(Event::signature("capa", "1", " ").check(false).is_err());
        assert!(Event::create("", "1").check(false).is_err());
    }
}
