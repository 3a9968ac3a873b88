//! A Redis server of a test's own, on a free loopback port, that the test may stop: for
//! "Redis down" tests, which must never stop the shared server other tests use; and the
//! removal of the keys a test made on the shared one.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, stopped when dropped.
#[derive(Debug)]
pub struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (`apt-get install redis-server`) or does not
    /// answer within 5 seconds.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start redis-server ({e}): install it with `apt-get install redis-server`")
            });
        let server = OwnRedis {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on 127.0.0.1:{port} did not answer within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Its process id (for [`crate::bench::pin_to_cpu`]); `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL) and waits until it is gone: connections to it now fail.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes every key matching `pattern` (a `KEYS` pattern, such as `*{queue name}*`) on the
/// Redis server at `url`: the keys a test or benchmark made under a name of its own.
///
/// # Panics
///
/// When the server cannot be reached or refuses.
pub async fn remove_keys(url: &str, pattern: &str) {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connecting to Redis at {url} failed: {e}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("listing Redis keys");
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("removing Redis keys");
    }
}
