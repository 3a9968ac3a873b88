//! A PostgreSQL transaction with the tenant bound for its whole life.
//!
//! The binding is sent in the same simple-query message as `BEGIN`, and that message is
//! not sent on its own: it goes out with the transaction's first statement, pipelined on
//! the connection, so a transaction costs one round trip fewer than `BEGIN`, awaited, then
//! the statement. The server runs the two in order: if the binding fails, the transaction
//! is aborted and the statement is refused, so nothing ever runs unbound. The binding is
//! transaction-local (`SET LOCAL`), so it ends with the transaction. A transaction dropped
//! before `commit` or `rollback` finished (an error path, a cancelled request) discards its
//! connection instead of returning it.

use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join;
use futures::{StreamExt, TryStreamExt};
use tenancy_core::TenantId;
use tenancy_pool::Share;

use super::{PgConnection, TENANT_SETTING, ident, literal};
use crate::credentials::BindingKey;
use crate::error::{Error, ErrorKind};
use crate::transaction::{FailOnDrop, failed_earlier};
use crate::value::{self, Row, Value};

/// How the tenant is bound to a transaction.
#[derive(Debug, Clone)]
pub(crate) enum Binding {
    /// The connection is the tenant's own (database per tenant).
    Connection,
    /// `SET LOCAL ROLE` to the tenant's role. The application role's search path is
    /// `"$user", public` (set by `Platform::prepare`): `$user` is now the tenant's role,
    /// whose schema has the same name, and `public` is skipped because the tenant's role
    /// has no use of it. One statement instead of two (`SET LOCAL search_path` measured
    /// another +6% on a short transaction).
    Schema(String),
    /// `SET LOCAL ROLE NONE; SET LOCAL app.tenant_id = 'id:proof'`: row-level security does
    /// the rest. The role is pinned too, so a session whose role was changed cannot act as
    /// a schema tenant here; the proof is what a sealed policy checks (see
    /// [`BindingKey`]).
    Row(TenantId),
    /// `SET LOCAL search_path` only: platform work (migrations) in a tenant's schema.
    SearchPath(String),
}

impl Binding {
    /// `BEGIN` and the binding, for the connection served by server process `pid` (known
    /// on connections tenants share, the only ones a row-level binding is made on).
    fn begin_sql(&self, pid: Option<i32>, key: &BindingKey) -> Cow<'static, str> {
        Cow::Owned(match self {
            Binding::Connection => return Cow::Borrowed("BEGIN"),
            Binding::Schema(name) => format!("BEGIN; SET LOCAL ROLE {}", ident(name)),
            // Utility statements, not `SELECT set_config(..)`: they need no planning and
            // return no row (measured: +6% on a BEGIN/COMMIT pair, against +20%). The
            // literal is safe: a validated tenant id and a hex proof have no quote.
            Binding::Row(id) => format!(
                "BEGIN; SET LOCAL ROLE NONE; SET LOCAL {TENANT_SETTING} = {}",
                literal(&key.bound_value(pid.unwrap_or(0), id))
            ),
            Binding::SearchPath(schema) => {
                format!("BEGIN; SET LOCAL search_path TO {}", ident(schema))
            }
        })
    }
}

/// An open PostgreSQL transaction. See the module docs.
pub(crate) struct PgTransaction {
    connection: Option<PgConnection>,
    /// `BEGIN` and the binding, sent with the first statement.
    begin: Cow<'static, str>,
    /// `begin` has been sent.
    begun: AtomicBool,
    /// A statement failed: PostgreSQL has aborted the transaction, and would answer a
    /// `COMMIT` with a silent rollback. Set so that `commit` reports it.
    failed: AtomicBool,
    /// The tenant's share of a shared pool, held as long as the connection.
    share: Option<Share<TenantId>>,
    /// The longest a statement may take, measured here: the server's statement timeout
    /// and a grace, so that a statement that lifted the server's own limit is still
    /// stopped. `None` for platform work.
    limit: Option<Duration>,
    /// A statement outran `limit`: the connection is in an unknown state and is closed,
    /// not ended, when the transaction is.
    abandoned: AtomicBool,
}

impl PgTransaction {
    /// A transaction on `connection`; nothing is sent until its first statement.
    pub(crate) fn begin(
        connection: PgConnection,
        binding: &Binding,
        key: &BindingKey,
        limit: Option<Duration>,
    ) -> Self {
        PgTransaction {
            limit,
            abandoned: AtomicBool::new(false),
            begin: binding.begin_sql(connection.pid(), key),
            connection: Some(connection),
            begun: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            share: None,
        }
    }

    /// Holds `share` until the transaction ends.
    pub(crate) fn hold(&mut self, share: Share<TenantId>) {
        self.share = Some(share);
    }

    fn connection(&self) -> Result<&PgConnection, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(failed_earlier());
        }
        self.connection
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))
    }

    /// Runs `statement`; the first one goes out together with `BEGIN` and the binding.
    async fn run<'a, T, Fut>(
        &'a self,
        statement: impl FnOnce(&'a PgConnection) -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, Error>>,
    {
        let connection = self.connection()?;
        // Until the answers are in, whether the statement (and the binding) took effect is
        // unknown: if this future is dropped in between, the transaction is failed, so it
        // can only be rolled back (in order, after what was sent), never committed.
        let in_flight = FailOnDrop(&self.failed);
        let first = !self.begun.swap(true, Ordering::Relaxed);
        let work = async {
            if first {
                // Both messages are written on the first poll, `BEGIN` first.
                let (begun, result) =
                    join(connection.batch_execute(&self.begin), statement(connection)).await;
                // If the binding failed, the server aborted the transaction, and so refused
                // the statement: report why.
                let begun =
                    begun.map_err(|e| Error::postgres("beginning the tenant's transaction", e));
                (begun, result)
            } else {
                (Ok(()), statement(connection).await)
            }
        };
        let outcome = match self.limit {
            None => Some(work.await),
            Some(limit) => tokio::time::timeout(limit, work).await.ok(),
        };
        std::mem::forget(in_flight);
        let Some((begun, result)) = outcome else {
            return Err(self.abandon(connection).await);
        };
        if let Err(error) = begun {
            self.failed.store(true, Ordering::Relaxed);
            return Err(error);
        }
        self.watch(result)
    }

    /// A statement outlived the server's own statement timeout: a statement of this
    /// transaction lifted it (`SET LOCAL statement_timeout = 0`), which a tenant's SQL may
    /// not do. The statement is cancelled on the server, the transaction failed, and the
    /// connection closed when the transaction ends.
    async fn abandon(&self, connection: &PgConnection) -> Error {
        self.failed.store(true, Ordering::Relaxed);
        self.abandoned.store(true, Ordering::Relaxed);
        connection.cancel().await;
        Error::new(
            ErrorKind::Query,
            format!(
                "a statement ran past the deployment's statement timeout ({:?} with grace), \
                 which a statement of this transaction must have lifted: it was cancelled, \
                 nothing of the transaction is kept, and its connection is closed",
                self.limit.unwrap_or_default()
            ),
        )
    }

    /// Marks the transaction failed when `result` is an error.
    fn watch<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.run(|connection| async move {
            let statement = prepare(connection, sql).await?;
            connection
                .execute_raw(&statement, params)
                .await
                .map_err(|e| Error::postgres("executing a statement", e))
        })
        .await
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        self.run(|connection| async move {
            let statement = prepare(connection, sql).await?;
            let failed = |e| Error::postgres("running a query", e);
            // Streamed straight into portable rows: no intermediate vector of driver rows.
            let mut stream = pin!(
                connection
                    .query_raw(&statement, params)
                    .await
                    .map_err(failed)?
            );
            let mut rows = Vec::new();
            while let Some(row) = stream.try_next().await.map_err(failed)? {
                rows.push(value::from_postgres(&statement, &row)?);
            }
            Ok(rows)
        })
        .await
    }

    /// The rows of a query as the driver reads them, with the driver's own parameter types:
    /// the typed tier.
    pub(crate) async fn query_typed(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        self.run(|connection| async move {
            let statement = prepare(connection, sql).await?;
            connection
                .query(&statement, params)
                .await
                .map_err(|e| Error::postgres("running a query", e))
        })
        .await
    }

    /// A statement with the driver's own parameter types; the rows it changed.
    pub(crate) async fn execute_typed(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.run(|connection| async move {
            let statement = prepare(connection, sql).await?;
            connection
                .execute(&statement, params)
                .await
                .map_err(|e| Error::postgres("executing a statement", e))
        })
        .await
    }

    /// A query's rows as they arrive, portable: memory stays bounded however many there
    /// are. An error while reading fails the transaction.
    pub(crate) async fn query_stream<'a>(
        &'a self,
        sql: &str,
        params: &'a [Value],
    ) -> Result<impl futures::Stream<Item = Result<Row, Error>> + Send + 'a, Error> {
        let (statement, rows) = self
            .run(|connection| async move {
                let statement = prepare(connection, sql).await?;
                let rows = connection
                    .query_raw(&statement, params)
                    .await
                    .map_err(|e| Error::postgres("running a query", e))?;
                Ok((statement, rows))
            })
            .await?;
        Ok(rows.map(move |row| {
            let row = row
                .map_err(|e| Error::postgres("reading a row", e))
                .and_then(|row| value::from_postgres(&statement, &row));
            self.watch(row)
        }))
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        self.run(|connection| async move {
            connection
                .batch_execute(sql)
                .await
                .map_err(|e| Error::postgres("running a batch", e))
        })
        .await
    }

    /// Rolls back to `savepoint` after a failed statement and clears the failure: for
    /// savepoints (`Transaction::savepoint`, and the platform's own work).
    pub(crate) async fn rollback_to_savepoint(&self, savepoint: &str) -> Result<(), Error> {
        if !self.begun.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Transaction,
                "no statement has run in this transaction, so it has no savepoint",
            ));
        }
        let connection = self
            .connection
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))?;
        connection
            .batch_execute(&format!("ROLLBACK TO SAVEPOINT {}", ident(savepoint)))
            .await
            .map_err(|e| Error::postgres("rolling back to a savepoint", e))?;
        self.failed.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The driver's client, with `BEGIN` and the binding sent and answered first.
    pub(crate) async fn postgres_client(&self) -> Result<&tokio_postgres::Client, Error> {
        self.run(|_| async { Ok(()) }).await?;
        let connection = self.connection()?;
        Ok(connection)
    }

    /// Ends the transaction with `end` and returns the connection to its pool. On any
    /// failure the connection is discarded, and so is a shared connection whose session
    /// is not as it was lent (checked in the same round trip as `end`): whatever a
    /// statement changed for the session (a `SET` without `LOCAL`, `SET ROLE`, `PREPARE`,
    /// `LISTEN`) never reaches the next borrower.
    async fn finish(&mut self, end: End) -> Result<(), Error> {
        if self.abandoned.load(Ordering::Relaxed) {
            if let Some(connection) = self.connection.take() {
                connection.discard();
            }
            return Ok(());
        }
        if !self.begun.load(Ordering::Relaxed) {
            // Nothing was sent: the connection is as it was lent.
            self.connection.take();
            return Ok(());
        }
        // A failed statement aborted the transaction: end it, whatever was asked.
        self.failed.store(false, Ordering::Relaxed);
        let connection = self.connection()?;
        let (ended, clean) = connection.end(end.sql(connection.is_shared())).await;
        let connection = self.connection.take();
        match (ended, connection) {
            (Ok(()), Some(connection)) if clean.is_ok() => drop(connection),
            (Ok(()), connection) => {
                if let Some(connection) = connection {
                    connection.discard();
                }
            }
            (Err(error), connection) => {
                if let Some(connection) = connection {
                    connection.discard();
                }
                return Err(Error::postgres(end.failed(), error));
            }
        }
        Ok(())
    }

    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            self.finish(End::Rollback).await?;
            return Err(failed_earlier());
        }
        self.finish(End::Commit).await
    }

    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        self.finish(End::Rollback).await
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        // Neither committed nor rolled back: once anything was sent, the connection may
        // still be inside this tenant's transaction. Never hand it to anyone else.
        if let Some(connection) = self.connection.take()
            && self.begun.load(Ordering::Relaxed)
        {
            connection.discard();
        }
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy)]
enum End {
    Commit,
    Rollback,
}

impl End {
    /// The statements that end the transaction. On a connection other tenants use next,
    /// they also close every cursor: one declared `WITH HOLD` outlives its transaction and
    /// would hand this tenant's rows to the next borrower.
    fn sql(self, shared: bool) -> &'static str {
        match (self, shared) {
            (End::Commit, false) => "COMMIT",
            (End::Commit, true) => "COMMIT; CLOSE ALL",
            (End::Rollback, false) => "ROLLBACK",
            (End::Rollback, true) => "ROLLBACK; CLOSE ALL",
        }
    }

    fn failed(self) -> &'static str {
        match self {
            End::Commit => "COMMIT failed",
            End::Rollback => "ROLLBACK failed",
        }
    }
}

/// Prepares `sql` through the connection's statement cache: a cached statement is ready
/// without a round trip, so it is written on the same poll as `BEGIN`.
async fn prepare(connection: &PgConnection, sql: &str) -> Result<tokio_postgres::Statement, Error> {
    connection
        .prepare_cached(sql)
        .await
        .map_err(|e| Error::postgres("preparing a statement", e))
}
