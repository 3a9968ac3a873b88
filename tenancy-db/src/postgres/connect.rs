//! Connecting so that the connection budget counts a connection for as long as the server
//! does.
//!
//! deadpool-postgres aborts a connection's driver task when the client is dropped, which
//! closes the socket at once; the server's backend exits a moment later, and until it has,
//! the server still counts it against `max_connections`. A pool that opened a new
//! connection in that moment would have more connections on the server than its budget.
//!
//! So the driver task here is not the one deadpool aborts: it runs on its own, holds the
//! connection's [`Lease`] of the budget, and ends when the client is gone and the server
//! has closed its side. The socket is wrapped so that shutting it down also waits
//! (boundedly) for the server's end of file, which a PostgreSQL backend sends only as it
//! exits, after giving up its connection slot.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tenancy_pool::Lease;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::address::Tls;

/// The longest a closing connection waits for the server's end of file.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Opens a connection with `config`, encrypted as `tls` says, whose driver task holds the
/// caller's budget lease until the server has let the connection go.
pub(crate) async fn connect(config: &Config, tls: &Tls) -> Result<Client, tokio_postgres::Error> {
    let lease = Lease::current();
    let (socket, host) = open(config).await?;
    let client = match (socket, tls) {
        (Socket::Tcp(stream), Tls::Disable) => {
            let (client, connection) = config.connect_raw(stream, NoTls).await?;
            drive(connection, lease);
            client
        }
        (Socket::Tcp(stream), Tls::Prefer(tls) | Tls::Require(tls)) => {
            let mut make = MakeRustlsConnect::new((**tls).clone());
            // Infallible: a host name a certificate cannot name fails the handshake.
            let connector =
                match <MakeRustlsConnect as MakeTlsConnect<CloseWaits<TcpStream>>>::make_tls_connect(
                    &mut make, &host,
                ) {
                    Ok(connector) => connector,
                    Err(never) => match never {},
                };
            let (client, connection) = config.connect_raw(stream, connector).await?;
            drive(connection, lease);
            client
        }
        // As libpq: a Unix socket is local, and never encrypted.
        (Socket::Unix(stream), _) => {
            let mut plain = config.clone();
            plain.ssl_mode(SslMode::Disable);
            let (client, connection) = plain.connect_raw(stream, NoTls).await?;
            drive(connection, lease);
            client
        }
    };
    Ok(client)
}

/// Asks the server to cancel the statement running on the connection `token` belongs to,
/// through a connection of its own to the same server (the cancel protocol).
pub(crate) async fn cancel(
    config: &Config,
    token: tokio_postgres::CancelToken,
) -> Result<(), tokio_postgres::Error> {
    match open(config).await?.0 {
        Socket::Tcp(stream) => token.cancel_query_raw(stream, NoTls).await,
        Socket::Unix(stream) => token.cancel_query_raw(stream, NoTls).await,
    }
}

/// `error` as the driver's own error type, as a failed connection: tokio-postgres makes its
/// errors itself, so it is handed a stream that fails with `error`.
async fn as_driver_error(config: &Config, error: io::Error) -> tokio_postgres::Error {
    // In the clear, or the driver would refuse for want of TLS before it met the error.
    let mut plain = config.clone();
    plain.ssl_mode(SslMode::Disable);
    match plain.connect_raw(Failed(Some(error)), NoTls).await {
        Err(error) => error,
        Ok(_) => unreachable!("a stream that fails every operation cannot complete a handshake"),
    }
}

/// Runs a connection to its end, holding `lease` until then.
fn drive<F>(connection: F, lease: Option<Lease>)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    #[expect(
        clippy::disallowed_methods,
        reason = "a connection driver serves no tenant: it carries bytes for whoever holds \
                  the client"
    )]
    tokio::spawn(async move {
        let _ = connection.await;
        drop(lease);
    });
}

enum Socket {
    Tcp(CloseWaits<TcpStream>),
    Unix(CloseWaits<UnixStream>),
}

/// Opens a socket to the first reachable host of `config`; returns it with the host's name
/// (what a certificate must name).
async fn open(config: &Config) -> Result<(Socket, String), tokio_postgres::Error> {
    let ports = config.get_ports();
    let mut last_error = None;
    for (index, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
        let attempt = match host {
            Host::Tcp(name) => TcpStream::connect((name.as_str(), port))
                .await
                .map(|stream| {
                    let _ = stream.set_nodelay(true);
                    (Socket::Tcp(CloseWaits::new(stream)), name.clone())
                }),
            Host::Unix(dir) => UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                .await
                .map(|stream| (Socket::Unix(CloseWaits::new(stream)), String::new())),
        };
        match attempt {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = Some(error),
        }
    }
    let error = last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the configuration names no host",
        )
    });
    Err(as_driver_error(config, error).await)
}

/// A stream that fails every operation with one error.
struct Failed(Option<io::Error>);

impl Failed {
    fn error(&mut self) -> io::Error {
        self.0
            .take()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
    }
}

impl AsyncRead for Failed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.error()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A socket whose shutdown also waits, at most [`CLOSE_WAIT`], for the peer to close.
struct CloseWaits<S> {
    inner: S,
    wrote_shutdown: bool,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> CloseWaits<S> {
    fn new(inner: S) -> Self {
        CloseWaits {
            inner,
            wrote_shutdown: false,
            deadline: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseWaits<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CloseWaits<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.wrote_shutdown {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.wrote_shutdown = true;
        }
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_WAIT)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [0u8; 256];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {}
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}
