//! The services every crate's tests rely on are up where the fixtures say they are: a
//! missing one fails here first, with a message that says how to start it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tenancy_test::Service;

/// Sends `request` to the `host:port` of `url` and returns what comes back first.
fn exchange(url: &str, request: &[u8]) -> String {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let mut stream = TcpStream::connect(host_port).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut buffer = [0u8; 512];
    let n = stream.read(&mut buffer).unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[test]
fn redis_answers_ping() {
    let url = Service::Redis.require();
    assert_eq!(exchange(&url, b"PING\r\n"), "+PONG\r\n");
}

#[test]
fn s3_test_server_answers_http() {
    let url = Service::S3.require();
    let reply = exchange(
        &url,
        // ListBuckets: moto's own `/moto-api/data.json` answers 500 for a moment while
        // another test deletes a bucket that held objects.
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn postgres_accepts_connections() {
    let url = Service::Postgres.require();
    // An SSLRequest: a PostgreSQL server answers with a single byte, `S` or `N`.
    let reply = exchange(&url, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert!(
        reply == "N" || reply == "S",
        "not a PostgreSQL server: {reply:?}"
    );
}

#[test]
fn redis_cluster_answers_ping_on_every_node() {
    for url in Service::RedisCluster.require_all() {
        assert_eq!(exchange(&url, b"PING\r\n"), "+PONG\r\n", "{url}");
    }
}
