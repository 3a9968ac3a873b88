//! The services tests talk to, and a clear failure when one is not running.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A service the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// PostgreSQL, as a superuser (tests create databases and roles).
    Postgres,
    /// Redis.
    Redis,
    /// An S3-compatible server (moto in server mode).
    S3,
    /// A Redis Cluster of at least three primaries; its URL is a comma-separated list of
    /// node URLs.
    RedisCluster,
}

impl Service {
    /// The environment variable that overrides the service's address.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "TENANCY_TEST_POSTGRES_URL",
            Service::Redis => "TENANCY_TEST_REDIS_URL",
            Service::S3 => "TENANCY_TEST_S3_URL",
            Service::RedisCluster => "TENANCY_TEST_REDIS_CLUSTER_URLS",
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/postgres",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::S3 => "http://127.0.0.1:9000",
            Service::RedisCluster => {
                "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003"
            }
        }
    }

    fn start_hint(self) -> &'static str {
        match self {
            Service::Postgres => "pg_ctlcluster 15 main start",
            Service::Redis => {
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
            }
            Service::S3 => "moto_server -H 127.0.0.1 -p 9000 &",
            Service::RedisCluster => {
                "for p in 7001 7002 7003; do redis-server --port $p --cluster-enabled yes \
                 --cluster-config-file nodes-$p.conf --daemonize yes --save \"\" --appendonly no; \
                 done; redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
                 --cluster-replicas 0 --cluster-yes"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Redis => "Redis",
            Service::S3 => "the S3 test server",
            Service::RedisCluster => "the Redis Cluster",
        }
    }

    /// The service's URL: the environment variable if set, the local default otherwise.
    pub fn url(self) -> String {
        std::env::var(self.env_var()).unwrap_or_else(|_| self.default_url().to_owned())
    }

    /// The URL, after checking that something accepts connections there.
    ///
    /// # Panics
    ///
    /// When nothing listens: the message names the service, the address, and the command
    /// that starts it. Tests fail rather than skip; `.ci/run` starts every service.
    pub fn require(self) -> String {
        let url = self.url();
        for node in url.split(',') {
            self.check_reachable(node.trim());
        }
        url
    }

    /// The URLs of every node: [`Service::require`] split at commas (one for every service
    /// but [`Service::RedisCluster`]).
    ///
    /// # Panics
    ///
    /// As [`Service::require`].
    pub fn require_all(self) -> Vec<String> {
        self.require()
            .split(',')
            .map(|node| node.trim().to_owned())
            .collect()
    }

    fn check_reachable(self, url: &str) {
        let address = host_port(url).unwrap_or_else(|| {
            panic!(
                "{} URL {url:?} ({}) has no host:port",
                self.name(),
                self.env_var()
            )
        });
        let reachable =
            address
                .to_socket_addrs()
                .ok()
                .into_iter()
                .flatten()
                .any(|addr: SocketAddr| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
                });
        assert!(
            reachable,
            "{name} is not reachable at {address} (from {var} or the default). Start it with \
             `{hint}`, or run `.ci/run`, which installs and starts every test service.",
            name = self.name(),
            var = self.env_var(),
            hint = self.start_hint(),
        );
    }
}

/// The `host:port` of a URL, without a URL-parsing dependency: the part after `//` and any
/// userinfo, up to the path.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.contains(':') {
        Some(host_port.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("postgres://postgres:pw@127.0.0.1:5432/postgres").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            host_port("redis://127.0.0.1:6379").as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(
            host_port("http://127.0.0.1:9000").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(host_port("http://localhost/x"), None);
    }

    #[test]
    #[should_panic(expected = "Redis is not reachable at 127.0.0.1:1 (from TENANCY_TEST_REDIS_URL")]
    fn missing_service_fails_with_a_hint() {
        // Port 1 (tcpmux) is closed on these machines.
        Service::Redis.check_reachable("redis://127.0.0.1:1");
    }
}
