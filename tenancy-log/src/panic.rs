//! A panic hook that reports panics through the tracing pipeline, redacted.
//!
//! The standard hook prints a panic's message to standard error, which is an ops stream
//! too, and a panic message is built from whatever the code had at hand: a CAPA title in
//! an `expect`, a record in an `assert_eq!`. This hook replaces it: the message goes out as
//! an event whose payload is [`Regulated`], so the ops stream (and every other layer) gets
//! `[regulated]` and the tenant's sink gets the message.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::panic::PanicHookInfo;

use crate::Regulated;

/// Replaces the process's panic hook with one that logs each panic as an `ERROR` event
/// with target `panic`, in the tenant context of the panicking code.
///
/// The event carries `panic.payload` (the message, as a [`Regulated`] value: the ops stream
/// gets `[regulated]`, the tenant sink the message), `panic.location` (file, line and
/// column), `panic.thread`, and, when `RUST_BACKTRACE` asks for one, `panic.backtrace` (code
/// locations only). The previous hook, by default the standard one that prints the
/// message to standard error, is dropped, not chained. When no subscriber records the
/// event, the hook prints one line to standard error with the location and thread, and
/// without the message.
///
/// ```
/// tenancy_log::install_panic_hook();
/// # let _ = std::panic::take_hook();
/// ```
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(report));
}

fn report(info: &PanicHookInfo<'_>) {
    let payload = Regulated::new(
        info.payload_as_str()
            .unwrap_or("(a payload that is not a string)"),
    );
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    if !tracing::enabled!(target: "panic", tracing::Level::ERROR) {
        eprintln!(
            "thread {thread:?} panicked at {} (message withheld: it may hold regulated content, \
             and no tracing subscriber records panics)",
            location.as_deref().unwrap_or("an unknown location")
        );
        return;
    }
    let backtrace = Backtrace::capture();
    if backtrace.status() == BacktraceStatus::Captured {
        tracing::event!(
            target: "panic",
            tracing::Level::ERROR,
            panic.payload = %payload,
            panic.location = location.as_deref(),
            panic.thread = thread,
            panic.backtrace = %backtrace,
            "a thread panicked"
        );
    } else {
        tracing::event!(
            target: "panic",
            tracing::Level::ERROR,
            panic.payload = %payload,
            panic.location = location.as_deref(),
            panic.thread = thread,
            "a thread panicked"
        );
    }
}
