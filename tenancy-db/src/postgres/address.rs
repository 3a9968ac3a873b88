//! A server's address, parsed once: the driver's own [`tokio_postgres::Config`] for
//! everything it understands, and the TLS settings it does not (`sslmode=verify-ca`,
//! `verify-full`, `sslrootcert`), which libpq users expect to write in the same URL.
//!
//! Nothing here prints a password: [`describe`] shows the user, hosts, ports, database and
//! TLS mode read back from the parsed configuration, and a URL that does not parse is shown
//! as a placeholder, never as text.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode};

use crate::error::{Error, ErrorKind};

/// How a connection is encrypted, as libpq's `sslmode` says it.
#[derive(Clone)]
pub(crate) enum Tls {
    /// `disable`: never.
    Disable,
    /// `prefer` (the default): if the server offers it, without checking its certificate;
    /// otherwise in the clear.
    Prefer(Arc<ClientConfig>),
    /// `require`, `verify-ca` or `verify-full`: always; the connection fails rather than
    /// continue in the clear. The configuration checks the certificate as the mode asks.
    Require(Arc<ClientConfig>),
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tls::Disable => "Tls::Disable",
            Tls::Prefer(_) => "Tls::Prefer",
            Tls::Require(_) => "Tls::Require",
        })
    }
}

/// A parsed server address.
#[derive(Clone)]
pub(crate) struct ServerAddress {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
    mode: Mode,
}

impl fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&summary(&self.config, self.mode))
    }
}

/// The `sslmode` values, libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Mode, Error> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "sslmode=allow is not supported: use prefer (TLS when the server offers \
                     it) or require",
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "sslmode must be one of disable, prefer, require, verify-ca, verify-full",
                ));
            }
        })
    }
}

impl ServerAddress {
    /// Parses a libpq URL (`postgres://user:pw@host:port/db?sslmode=verify-full&sslrootcert=ca.pem`)
    /// or key/value string (`host=db user=admin sslmode=require`).
    pub(crate) fn parse(url: &str) -> Result<ServerAddress, Error> {
        let (rest, tls_params) = split_tls_params(url)?;
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|error| {
            // The driver's parse errors name the option, never its value.
            Error::with_source(
                ErrorKind::Config,
                "the PostgreSQL connection URL does not parse",
                error,
            )
        })?;
        let mode = match &tls_params.mode {
            Some(mode) => Mode::parse(mode)?,
            None => Mode::Prefer,
        };
        let root = tls_params.root_cert.as_deref().map(Path::new);
        let tls = match (mode, root) {
            (Mode::Disable, _) => Tls::Disable,
            (Mode::Prefer, _) => Tls::Prefer(unverified()),
            // As libpq: `require` with a root certificate checks the chain.
            (Mode::Require, None) => Tls::Require(unverified()),
            (Mode::Require | Mode::VerifyCa, Some(root)) => Tls::Require(verified(root, false)?),
            (Mode::VerifyFull, Some(root)) => Tls::Require(verified(root, true)?),
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "sslmode=verify-ca and verify-full need sslrootcert=<file of trusted CA \
                     certificates in PEM>",
                ));
            }
        };
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer(_) => SslMode::Prefer,
            Tls::Require(_) => SslMode::Require,
        });
        Ok(ServerAddress { config, tls, mode })
    }
}

/// A URL for messages and `Debug`: user, hosts, ports, database and TLS mode, read back from
/// the parsed configuration; never the password, whatever the URL's shape.
pub(crate) fn describe(url: &str) -> String {
    match ServerAddress::parse(url) {
        Ok(address) => summary(&address.config, address.mode),
        Err(_) => String::from("<a connection URL that does not parse>"),
    }
}

fn summary(config: &tokio_postgres::Config, mode: Mode) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{} (tls: {})",
        config.get_user().unwrap_or("<default user>"),
        hosts.join(","),
        config.get_dbname().unwrap_or("<default database>"),
        mode.name(),
    )
}

/// The TLS parameters taken out of a connection string before the driver sees it.
#[derive(Debug, Default)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`, returning the rest for the driver.
fn split_tls_params(url: &str) -> Result<(String, TlsParams), Error> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.mode = Some(value);
            true
        }
        "sslrootcert" => {
            params.root_cert = Some(value);
            true
        }
        _ => false,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&percent_decode(key)?, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, params));
    }
    let mut kept = String::new();
    for (key, value) in key_values(url)? {
        if !take(&key, value.clone()) {
            kept.push_str(&format!(
                "{key}='{}' ",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept, params))
}

fn unparsable() -> Error {
    Error::new(
        ErrorKind::Config,
        "the PostgreSQL connection URL does not parse",
    )
}

fn percent_decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(unparsable)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| unparsable())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| unparsable())
}

/// The pairs of a libpq key/value string: `key=value`, `key = 'quoted \' value'`.
fn key_values(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(unparsable());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next().ok_or_else(unparsable)? {
                    '\'' => break,
                    '\\' => value.push(chars.next().ok_or_else(unparsable)?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(unparsable)?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that encrypts without checking who answers (`prefer`, and
/// `require` without a root certificate, as libpq does).
fn unverified() -> Arc<ClientConfig> {
    let provider = provider();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// A client configuration that trusts the certificates in `root` and, if `check_name`,
/// requires the server's certificate to name the host connected to.
fn verified(root: &Path, check_name: bool) -> Result<Arc<ClientConfig>, Error> {
    let unreadable = |error| {
        Error::with_source(
            ErrorKind::Config,
            format!(
                "sslrootcert {} could not be read as PEM certificates",
                root.display()
            ),
            error,
        )
    };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(root).map_err(unreadable)? {
        roots
            .add(certificate.map_err(unreadable)?)
            .map_err(|error| {
                Error::with_source(
                    ErrorKind::Config,
                    format!(
                        "sslrootcert {} holds an unusable certificate",
                        root.display()
                    ),
                    error,
                )
            })?;
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("sslrootcert {} holds no certificate", root.display()),
        ));
    }
    let provider = provider();
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|error| {
        Error::with_source(
            ErrorKind::Config,
            "the TLS certificate verifier could not be built",
            error,
        )
    })?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = if check_name {
        builder.with_webpki_verifier(chain).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`, and `require` without a root certificate: any certificate, as libpq. The
/// handshake's signatures are still checked, so the session is encrypted to whoever holds
/// the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn root_cert_of(url: &str) -> Option<PathBuf> {
        split_tls_params(url).ok()?.1.root_cert.map(PathBuf::from)
    }

    const SECRETS: [&str; 3] = ["s3cr/et", "p@ss:w?rd", "hunter2"];

    #[test]
    fn descriptions_never_show_a_password() {
        let urls = [
            "postgres://admin:s3cr%2Fet@db:5432/postgres".to_owned(),
            "postgres://admin:s3cr/et@db:5432/postgres".to_owned(),
            "postgres://admin@db:5432/postgres?password=hunter2".to_owned(),
            "postgres://admin@db/postgres?sslmode=require&password=hunter2".to_owned(),
            "postgresql://admin:p%40ss%3Aw%3Frd@db1:5432,db2:5433/app".to_owned(),
            "host=db user=admin password='hunter2' dbname=app".to_owned(),
            "host=db user=admin password=s3cr/et sslmode=prefer".to_owned(),
            "postgres://admin:hunter2@db:notaport/x".to_owned(),
            "postgres://admin:hunter2@db/x?sslmode=bogus".to_owned(),
        ];
        for url in &urls {
            let shown = describe(url);
            for secret in SECRETS {
                assert!(!shown.contains(secret), "{url} shown as {shown}");
            }
        }
        assert_eq!(
            describe("postgres://admin:s3cr%2Fet@db:5432/postgres"),
            "postgres://admin@db:5432/postgres (tls: prefer)"
        );
        assert_eq!(
            describe("host=db user=admin password='hunter2' dbname=app sslmode=disable"),
            "postgres://admin@db:5432/app (tls: disable)"
        );
    }

    #[test]
    fn parse_errors_never_show_a_password() {
        for url in [
            "postgres://admin:hunter2@db:notaport/x",
            "postgres://admin:hunter2@db/x?sslmode=bogus",
            "postgres://admin:hunter2@db/x?nonsense=hunter2",
            "host=db password='hunter2",
        ] {
            let error = ServerAddress::parse(url).unwrap_err();
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            assert!(!chain.contains("hunter2"), "{url}: {chain}");
            assert!(!format!("{error:?}").contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn tls_modes_follow_libpq() {
        let mode = |url: &str| ServerAddress::parse(url).map(|a| format!("{:?}", a.tls));
        assert_eq!(mode("postgres://u@h/d").unwrap(), "Tls::Prefer");
        assert_eq!(
            mode("postgres://u@h/d?sslmode=disable").unwrap(),
            "Tls::Disable"
        );
        assert_eq!(
            mode("postgres://u@h/d?sslmode=require").unwrap(),
            "Tls::Require"
        );
        assert_eq!(
            mode("host=h user=u sslmode=require").unwrap(),
            "Tls::Require"
        );
        for refused in [
            "postgres://u@h/d?sslmode=verify-full",
            "postgres://u@h/d?sslmode=verify-ca",
            "postgres://u@h/d?sslmode=allow",
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ] {
            assert_eq!(
                ServerAddress::parse(refused).unwrap_err().kind(),
                ErrorKind::Config,
                "{refused}"
            );
        }
        assert_eq!(
            root_cert_of("postgres://u@h/d?sslrootcert=%2Ftmp%2Fca%20x.pem&sslmode=verify-ca"),
            Some(PathBuf::from("/tmp/ca x.pem"))
        );
        assert_eq!(
            root_cert_of("host=h sslrootcert='/tmp/ca x.pem' sslmode=verify-ca"),
            Some(PathBuf::from("/tmp/ca x.pem"))
        );
    }
}
