//! Sessions that are checked when they are opened and whenever they are returned.
//!
//! A connection is lent to many transactions, and on the shared database to many tenants.
//! PostgreSQL keeps some state for the whole session: a `SET` without `LOCAL`, `SET ROLE`,
//! an SQL-level `PREPARE`, a `LISTEN`. A statement that sets any of it and commits would
//! hand it to the next borrower, who may be another tenant. And a role's own settings
//! (`ALTER ROLE CURRENT_USER SET role = ..`, which an ordinary role may run) would reach
//! every new session of that role.
//!
//! So every new connection is checked before it is first lent: who it is logged in as and
//! acts as, and the settings the tenancy boundary relies on. Its settings as lent are
//! recorded; at the end of every transaction on a connection other tenants share, the same
//! round trip as `COMMIT` compares the session with that record, and a session that differs
//! is closed instead of returned.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use tenancy_pool::deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use tokio_postgres::{SimpleQueryMessage, Statement};

use super::address::Tls;
use super::connect::connect;

/// What a session must look like when it is opened.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// The role the session must be logged in as and act as; `None` for the admin URL,
    /// whose user is the operator's choice.
    pub(crate) role: Option<String>,
    /// The statement and idle-in-transaction timeouts in milliseconds (0 for none), for
    /// connections whose statements are time-limited.
    pub(crate) timeouts: Option<(u64, u64)>,
    /// Whether tenants share the connection: then its search path is pinned, it is checked
    /// after every transaction, and (sealed row-level binding) its statements must not be
    /// visible to the application role's other sessions.
    pub(crate) shared: Option<Shared>,
}

/// How a connection that tenants share must be configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared {
    /// The row-level binding is sealed: `track_activities` must be off for the session, so
    /// no other session of the application role can read a binding's proof.
    pub(crate) sealed: bool,
}

/// The search path every application role is pinned to (by `Platform::prepare`): after
/// `SET LOCAL ROLE tenant`, `$user` is the tenant's schema.
pub(crate) const APPLICATION_SEARCH_PATH: &str = "\"$user\", public";

/// Read once, when a connection is opened.
const OPENED: &str = "SELECT pg_catalog.pg_backend_pid(), session_user, current_user, \
     pg_catalog.current_setting('search_path'), \
     pg_catalog.current_setting('statement_timeout'), \
     pg_catalog.current_setting('idle_in_transaction_session_timeout'), \
     (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'), \
     (SELECT setting FROM pg_catalog.pg_settings \
      WHERE name = 'idle_in_transaction_session_timeout'), \
     coalesce(pg_catalog.current_setting('app.tenant_id', true), ''), \
     pg_catalog.current_setting('track_activities')";

/// Run after every transaction on a shared connection, pipelined with `COMMIT`: whatever a
/// statement left behind that would outlive the transaction. Session-level advisory locks
/// need no check here: `Platform::prepare` revokes the functions that take them.
pub(crate) const RETURNED: &str = "SELECT current_user = session_user, \
     pg_catalog.current_setting('search_path'), \
     pg_catalog.current_setting('statement_timeout'), \
     pg_catalog.current_setting('idle_in_transaction_session_timeout'), \
     coalesce(pg_catalog.current_setting('app.tenant_id', true), ''), \
     EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql), \
     EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels())";

/// The settings of a shared session as it was lent.
#[derive(Debug, Clone)]
struct Lent {
    /// The server process serving the connection, which a row-level binding's proof names.
    pid: i32,
    search_path: String,
    statement_timeout: String,
    idle_timeout: String,
    /// [`RETURNED`], prepared on this connection when it was opened.
    check: Statement,
}

/// A pooled connection: the driver's client, the server process that serves it, and (on a
/// shared connection) how it was lent.
pub(crate) struct PgClient {
    client: ClientWrapper,
    lent: Option<Box<Lent>>,
    /// Where the connection goes: a cancel request goes there too.
    config: Arc<tokio_postgres::Config>,
}

impl std::ops::Deref for PgClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl fmt::Debug for PgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClient")
            .field("pid", &self.pid())
            .field("shared", &self.lent.is_some())
            .finish_non_exhaustive()
    }
}

impl PgClient {
    /// The process id of the server backend serving this connection, if tenants share it
    /// (only their bindings name it).
    pub(crate) fn pid(&self) -> Option<i32> {
        self.lent.as_ref().map(|lent| lent.pid)
    }

    /// Asks the server to cancel the statement running on this connection; bounded, and
    /// best effort (the connection is discarded whatever the outcome).
    pub(crate) async fn cancel(&self) {
        let request = super::connect::cancel(&self.config, self.client.cancel_token());
        let _ = tokio::time::timeout(Duration::from_secs(2), request).await;
    }

    /// Whether other tenants borrow this connection after this transaction, so it must
    /// be checked when returned.
    pub(crate) fn is_shared(&self) -> bool {
        self.lent.is_some()
    }

    /// Runs `end` (`COMMIT; CLOSE ALL`, or the rollback) and, on a shared connection, the
    /// session check pipelined behind it: one round trip. Returns the outcome of `end`,
    /// and whether the session is as it was lent (always true on an unshared one).
    pub(crate) async fn end(
        &self,
        end: &str,
    ) -> (Result<(), tokio_postgres::Error>, Result<(), String>) {
        let Some(lent) = &self.lent else {
            return (self.client.batch_execute(end).await, Ok(()));
        };
        let (ended, checked) = futures::join!(
            self.client.batch_execute(end),
            self.client.query_one(&lent.check, &[])
        );
        let clean = match checked {
            Ok(row) => lent.compare(&row),
            Err(error) => Err(format!("the session check failed: {error}")),
        };
        (ended, clean)
    }
}

impl Lent {
    /// `Ok` when the session returned as `row` describes is as it was lent; otherwise what
    /// differs.
    fn compare(&self, row: &tokio_postgres::Row) -> Result<(), String> {
        let mut changed = Vec::new();
        if !row.get::<_, bool>(0) {
            changed.push("the role (SET ROLE)");
        }
        if row.get::<_, &str>(1) != self.search_path {
            changed.push("the search path");
        }
        if row.get::<_, &str>(2) != self.statement_timeout {
            changed.push("statement_timeout");
        }
        if row.get::<_, &str>(3) != self.idle_timeout {
            changed.push("idle_in_transaction_session_timeout");
        }
        if !row.get::<_, &str>(4).is_empty() {
            changed.push("the tenant setting");
        }
        if row.get::<_, bool>(5) {
            changed.push("an SQL-level prepared statement");
        }
        if row.get::<_, bool>(6) {
            changed.push("a LISTEN channel");
        }
        if changed.is_empty() {
            Ok(())
        } else {
            Err(changed.join(", "))
        }
    }
}

/// Why a connection could not be lent.
#[derive(Debug)]
pub(crate) enum SessionError {
    /// Connecting, or reading the session, failed.
    Postgres(tokio_postgres::Error),
    /// The session is not what the boundary relies on.
    Unexpected(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Postgres(_) => f.write_str("connecting to PostgreSQL failed"),
            SessionError::Unexpected(what) => write!(
                f,
                "a new connection was refused before it was lent: {what}; a statement may \
                 have changed its role's settings (ALTER ROLE CURRENT_USER SET ..): run \
                 `Platform::prepare`, which resets them, and `Platform::check_isolation`"
            ),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Postgres(error) => Some(error),
            SessionError::Unexpected(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for SessionError {
    fn from(error: tokio_postgres::Error) -> Self {
        SessionError::Postgres(error)
    }
}

/// A deadpool manager of checked sessions to one target.
pub(crate) struct PgManager {
    pub(crate) config: Arc<tokio_postgres::Config>,
    pub(crate) tls: Tls,
    pub(crate) expected: Expected,
}

impl fmt::Debug for PgManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgManager")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// Milliseconds of an optional timeout, 0 for none: how PostgreSQL spells it.
pub(crate) fn millis(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |timeout| {
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    })
}

impl Manager for PgManager {
    type Type = PgClient;
    type Error = SessionError;

    async fn create(&self) -> Result<PgClient, SessionError> {
        let client = connect(&self.config, &self.tls).await?;
        #[expect(
            clippy::disallowed_methods,
            reason = "an empty task serves no tenant; deadpool's wrapper aborts it on drop \
                      instead of the connection's driver"
        )]
        let placeholder = tokio::spawn(async {});
        let client = ClientWrapper::new(client, placeholder);
        let opened = client.simple_query(OPENED).await?;
        let row = opened
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| SessionError::Unexpected("the session check returned nothing".into()))?;
        let text = |index: usize| row.get(index).unwrap_or_default().to_owned();
        let pid = text(0)
            .parse::<i32>()
            .map_err(|_| SessionError::Unexpected("the server reported no process id".into()))?;
        let expected = &self.expected;
        let mut problems = Vec::new();
        if let Some(role) = &expected.role {
            if text(1) != *role {
                problems.push(format!("it is logged in as `{}`, not `{role}`", text(1)));
            }
            if text(2) != *role {
                problems.push(format!("it acts as role `{}`, not `{role}`", text(2)));
            }
        }
        if let Some((statement, idle)) = expected.timeouts {
            if text(6) != statement.to_string() {
                problems.push(format!(
                    "its statement_timeout is {} ms, not {statement} ms",
                    text(6)
                ));
            }
            if text(7) != idle.to_string() {
                problems.push(format!(
                    "its idle_in_transaction_session_timeout is {} ms, not {idle} ms",
                    text(7)
                ));
            }
        }
        if !text(8).is_empty() {
            problems.push("it starts with a tenant bound (app.tenant_id is set)".into());
        }
        if let Some(shared) = expected.shared {
            if text(3) != APPLICATION_SEARCH_PATH {
                problems.push(format!(
                    "its search path is `{}`, not `{APPLICATION_SEARCH_PATH}`",
                    text(3)
                ));
            }
            if shared.sealed && text(9) != "off" {
                problems.push(
                    "track_activities is on, so other sessions could read a sealed binding".into(),
                );
            }
        }
        if !problems.is_empty() {
            return Err(SessionError::Unexpected(problems.join("; ")));
        }
        let lent = match expected.shared {
            Some(_) => Some(Box::new(Lent {
                pid,
                search_path: text(3),
                statement_timeout: text(4),
                idle_timeout: text(5),
                check: client.prepare(RETURNED).await?,
            })),
            None => None,
        };
        Ok(PgClient {
            client,
            lent,
            config: Arc::clone(&self.config),
        })
    }

    async fn recycle(&self, client: &mut PgClient, _: &Metrics) -> RecycleResult<SessionError> {
        if client.is_closed() {
            return Err(RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}
