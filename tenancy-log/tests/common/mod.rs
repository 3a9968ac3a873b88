//! Shared by the test binaries: an in-memory tenant sink, tenants, the events that plant a
//! canary in every kind of field, and JSON line parsing.

#![allow(dead_code, unreachable_pub)]

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_log::{Policy, Regulated, TenantRecord, TenantSink};
use tenancy_test::log::canary;
use tracing::field::Empty;

/// A tenant sink that keeps `(tenant, line)` pairs in memory.
#[derive(Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<(TenantId, String)>>>);

impl MemorySink {
    pub fn sink(&self) -> impl TenantSink {
        let records = self.0.clone();
        move |record: &TenantRecord<'_>| {
            records
                .lock()
                .unwrap()
                .push((record.tenant().clone(), record.json_line().to_owned()));
            Ok(())
        }
    }

    pub fn lines_of(&self, tenant: &TenantId) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, line)| line.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<(TenantId, String)> {
        self.0.lock().unwrap().clone()
    }
}

pub fn tenant(label: &str) -> TenantContext {
    TenantContext::new(
        tenancy_test::unique_tenant(label),
        Actor::user("u-1", "Jane Doe").unwrap(),
    )
}

/// The policy of the eQMS: CAPA titles and descriptions, and every error's source chain,
/// are regulated.
pub fn eqms_policy() -> Policy {
    Policy::builder()
        .regulated("capa.title")
        .regulated("capa.description")
        .regulated("*.sources")
        .public("capa.id")
        .build()
        .unwrap()
}

#[derive(Debug)]
pub struct Capa {
    pub id: u32,
    pub title: Regulated<String>,
}

/// An error with a message and an optional cause: a chain whose inner links hold values.
#[derive(Debug)]
pub struct ChainError {
    pub message: String,
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ChainError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// An error whose own message shows a regulated value.
#[derive(Debug)]
pub struct LockedError {
    pub title: Regulated<String>,
}

impl fmt::Display for LockedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAPA {} is locked", self.title)
    }
}

impl StdError for LockedError {}

/// Logs, in the current context, one event or span per kind of field, each holding a fresh
/// canary; returns the canaries. Panics are left to the caller (the hook is global).
pub fn log_every_kind(tag: &str) -> Vec<String> {
    let mut planted = Vec::new();
    let mut plant = |kind: &str| {
        let c = canary(&format!("{tag}-{kind}"));
        planted.push(c.clone());
        c
    };

    // The message, with a regulated value interpolated.
    let c = plant("message");
    tracing::info!(capa.id = 1, "CAPA {} opened", Regulated::new(c));

    // Event fields: classified by the policy (as a str and through Display), and wrapped.
    let c = plant("field-str");
    tracing::info!(capa.id = 2, capa.title = c.as_str(), "titled");
    let c = plant("field-display");
    tracing::info!(capa.description = %c, "described");
    let c = plant("field-wrapped");
    tracing::info!(note = %Regulated::new(c), "noted");

    // Span fields: classified, wrapped, and recorded after the span was created.
    let (c1, c2, c3) = (
        plant("span-field"),
        plant("span-wrapped"),
        plant("span-recorded"),
    );
    let span = tracing::info_span!(
        "capa",
        capa.title = c1.as_str(),
        owner = %Regulated::new(c2),
        capa.description = Empty
    );
    span.record("capa.description", c3.as_str());
    span.in_scope(|| tracing::info!(step = "review", "inside the span"));

    // Error chains: a cause holding a value, and an error whose own message holds one.
    let (c1, c2) = (plant("error-source"), plant("error-inner-source"));
    let error = ChainError {
        message: "saving the CAPA failed".into(),
        source: Some(Box::new(ChainError {
            message: format!("duplicate key: title = {c1}"),
            source: Some(Box::new(ChainError {
                message: format!("DETAIL: Key (title)=({c2}) already exists"),
                source: None,
            })),
        })),
    };
    tracing::error!(error = &error as &(dyn StdError + 'static), "save failed");
    let c = plant("error-display");
    let locked = LockedError {
        title: Regulated::new(c),
    };
    tracing::warn!(error = &locked as &(dyn StdError + 'static), "locked");

    // `Debug` of a struct holding a regulated value.
    let c = plant("debug-struct");
    let capa = Capa {
        id: 3,
        title: Regulated::new(c),
    };
    tracing::info!(record = ?capa, "loaded");

    planted
}

/// Panics, in the current context, with a canary in the message, and catches it.
pub fn panic_with_canary(tag: &str) -> String {
    let c = canary(&format!("{tag}-panic"));
    let message = c.clone();
    let result = std::panic::catch_unwind(move || panic!("could not close CAPA {message}"));
    assert!(result.is_err());
    c
}

/// Serialises the tests of one binary that replace the process's panic hook.
pub fn panic_hook_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` with the redacting panic hook installed, then puts the previous hook back.
pub fn with_panic_hook<R>(f: impl FnOnce() -> R) -> R {
    let _lock = panic_hook_lock();
    let previous = std::panic::take_hook();
    tenancy_log::install_panic_hook();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    match result {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Each line parsed as one JSON object; fails on any line that is not one.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect()
}

/// The canaries found in `text`.
pub fn found<'a>(text: &str, canaries: &'a [String]) -> Vec<&'a str> {
    canaries
        .iter()
        .filter(|c| text.contains(c.as_str()))
        .map(String::as_str)
        .collect()
}
