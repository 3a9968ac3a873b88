//! Hang detection for tests of races: many rounds on a thread of their own, each bounded in
//! time, so that a deadlock fails the test naming its round instead of stalling the run.

use std::sync::mpsc;
use std::time::Duration;

/// Runs `round(n)` for `n` in `0..rounds`, in order, on a thread of its own, and fails if
/// one round takes longer than `limit` (a hang: that thread is left blocked until the
/// process ends, which is why it is not joined) or panics.
///
/// # Panics
///
/// Naming the round that hung or failed, and `what`.
pub fn assert_rounds_finish(
    what: &str,
    rounds: usize,
    limit: Duration,
    mut round: impl FnMut(usize) + Send + 'static,
) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for n in 0..rounds {
            round(n);
            let _ = done.send(n);
        }
    });
    for n in 0..rounds {
        assert!(
            finished.recv_timeout(limit).is_ok(),
            "{what}: round {n} of {rounds} hung (more than {limit:?}) or failed"
        );
    }
}
