#![doc = include_str!("../README.md")]

mod checkpoint;
mod entry;
mod error;
mod evidence;
mod export;
mod schema;
mod trail;
mod verify;

pub use checkpoint::{
    CHECKPOINT_FORMAT, CHECKPOINT_PREFIX, Checkpoint, CheckpointSigner, latest_checkpoint,
    verify_trail_with_checkpoint,
};
pub use ed25519_dalek;
pub use entry::{Action, Entry, Event, FORMAT_TAG, GENESIS_HASH};
pub use error::{Error, ErrorKind};
pub use evidence::IsolationEvidence;
pub use export::{
    BUNDLE_FORMAT, ChainHead, ENTRIES_CSV, ENTRIES_JSONL, GeneratedBy, MANIFEST, Manifest, SUMS,
    Scope, System, TIMELINE_HTML,
};
pub use schema::migration;
pub use trail::AuditTrail;
pub use verify::{
    ChainVerifier, Problem, Report, verify_bundle, verify_bundle_signed, verify_trail,
};

/// The format specification of a bundle: the canonical encoding, the hash inputs, the
/// manifest's fields.
#[doc = include_str!("../FORMAT.md")]
pub mod format {}
