//! Log capture for tests: a `MakeWriter` that keeps what is written to it, and canary
//! strings to plant in logged values and look for in the output.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// A `MakeWriter` that keeps every byte written through it; clones share the buffer.
///
/// ```
/// use std::io::Write as _;
/// use tenancy_test::log::LogCapture;
/// use tracing_subscriber::fmt::MakeWriter as _;
///
/// let capture = LogCapture::new();
/// capture.make_writer().write_all(b"one\ntwo\n").unwrap();
/// assert_eq!(capture.lines(), ["one", "two"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        LogCapture::default()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Everything written so far, split into lines (without their `\n`).
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The writer a [`LogCapture`] hands out.
#[derive(Debug)]
pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }
}

/// A string unique to this call in this process, `CANARY-{label}-{n}-X`, to plant in a
/// logged value and then search for: no other value contains it by chance, and the
/// trailing `-X` keeps `…-1` from matching inside `…-12`.
pub fn canary(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("CANARY-{label}-{}-X", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_never_contain_one_another() {
        let all: Vec<String> = (0..200).map(|_| canary("c")).collect();
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert!(i == j || !a.contains(b.as_str()), "{a} contains {b}");
            }
        }
    }
}
