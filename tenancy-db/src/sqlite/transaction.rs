//! A SQLite transaction on a tenant's own file.
//!
//! Each statement runs on the connection's blocking thread. A transaction dropped before
//! `commit` or `rollback` finished discards its connection; closing it rolls back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_sync::InteractError;
use futures::StreamExt;

use super::SqliteConnection;
use crate::error::{Error, ErrorKind};
use crate::transaction::{FailOnDrop, failed_earlier};
use crate::value::{self, Row, Value};

pub(crate) struct SqliteTransaction {
    connection: Option<SqliteConnection>,
    /// Statements of the typed tier ended the transaction: there is nothing to end.
    ended: AtomicBool,
    /// A statement failed: later ones are refused and `commit` rolls back (see
    /// `failed_earlier`).
    failed: AtomicBool,
}

pub(super) fn interact_failed(error: InteractError) -> Error {
    Error::new(
        ErrorKind::Transaction,
        format!("the SQLite connection's worker failed: {error}"),
    )
}

/// Binds `params` to the `$1`, `$2`, ... of `statement` by name, so their order in the SQL
/// does not matter (SQLite numbers named parameters by first appearance).
fn bind(statement: &mut rusqlite::Statement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    let expected = statement.parameter_count();
    if expected != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            expected,
        ));
    }
    for (position, value) in params.iter().enumerate() {
        let name = format!("${}", position + 1);
        let index = statement
            .parameter_index(&name)?
            .ok_or(rusqlite::Error::InvalidParameterName(name))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

impl SqliteTransaction {
    pub(crate) async fn begin(connection: SqliteConnection) -> Result<Self, Error> {
        let transaction = SqliteTransaction {
            ended: AtomicBool::new(false),
            connection: Some(connection),
            failed: AtomicBool::new(false),
        };
        transaction
            .run("beginning the tenant's transaction", |c| {
                c.execute_batch("BEGIN IMMEDIATE")
            })
            .await?;
        Ok(transaction)
    }

    async fn run<R: Send + 'static>(
        &self,
        context: &'static str,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(failed_earlier());
        }
        let connection = self
            .connection
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))?;
        // The statement runs on the connection's thread whether or not this future is
        // awaited to the end: if it is dropped first, the transaction is failed.
        let in_flight = FailOnDrop(&self.failed);
        let result = connection
            .interact(f)
            .await
            .map_err(interact_failed)
            .and_then(|result| result.map_err(|error| Error::sqlite(context, error)));
        std::mem::forget(in_flight);
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.run_statement("executing a statement", move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            bind(&mut statement, &params)?;
            statement.raw_execute().map(|n| n as u64)
        })
        .await
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.run_statement("running a query", move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            bind(&mut statement, &params)?;
            let columns: Arc<[String]> = statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let mut rows = statement.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(value::from_sqlite(&columns, row)?);
            }
            Ok(out)
        })
        .await
    }

    /// Runs `work` on the tenant's own connection, inside this transaction: the typed tier.
    pub(crate) async fn with_connection<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, Error> {
        self.run_statement("running statements on the tenant's connection", work)
            .await
    }

    /// Runs the application's statements, under the rule every tier shares: they run in
    /// this transaction and must not end it. A `COMMIT` among them is turned into a
    /// rollback (a commit hook refuses it), so nothing of the transaction is kept, and a
    /// transaction they ended is failed; attaching another file stays refused (the limit
    /// is 0).
    async fn run_statement<R: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, Error> {
        let (result, ended) = self
            .run(context, move |c| {
                c.commit_hook(Some(|| true))?;
                let result = work(c);
                c.commit_hook(None::<fn() -> bool>)?;
                Ok((result, c.is_autocommit()))
            })
            .await?;
        if ended {
            self.failed.store(true, Ordering::Relaxed);
            self.ended.store(true, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::Transaction,
                "a statement ended the tenant's transaction: nothing of it is kept; end a \
                 transaction with `commit` or `rollback`, not in SQL",
            ));
        }
        result.map_err(|error| {
            self.failed.store(true, Ordering::Relaxed);
            Error::sqlite(context, error)
        })
    }

    /// A query's rows as they arrive, through a bounded channel from the connection's
    /// thread, so memory stays bounded however many there are.
    pub(crate) async fn query_stream(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<impl futures::Stream<Item = Result<Row, Error>> + Send + '_, Error> {
        const BUFFERED_ROWS: usize = 64;
        if self.failed.load(Ordering::Relaxed) {
            return Err(failed_earlier());
        }
        let connection = self
            .connection
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(BUFFERED_ROWS);
        let (sql, params) = (sql.to_owned(), params.to_vec());
        let reading = connection.interact(move |c| {
            let read = || -> rusqlite::Result<()> {
                let mut statement = c.prepare_cached(&sql)?;
                bind(&mut statement, &params)?;
                let columns: Arc<[String]> = statement
                    .column_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                let mut rows = statement.raw_query();
                while let Some(row) = rows.next()? {
                    let row = value::from_sqlite(&columns, row)?;
                    if sender.blocking_send(Ok(row)).is_err() {
                        // The reader went away: stop reading.
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(error) = read() {
                let _ = sender.blocking_send(Err(error));
            }
        });
        let rows = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|row| (row, receiver))
        });
        // Drives the reading and the channel together; the reading finishes when the rows
        // are all sent or the stream is dropped.
        let reading = futures::stream::once(reading)
            .filter_map(|done| async move { done.err().map(|error| Err(interact_failed(error))) });
        Ok(futures::stream::select(
            rows.map(|row| {
                row.map_err(|error| Error::sqlite("reading a row", error))
                    .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
            }),
            reading.map(|error: Result<Row, Error>| {
                self.failed.store(true, Ordering::Relaxed);
                error
            }),
        ))
    }

    /// Rolls back to `savepoint` and clears the failure.
    pub(crate) async fn rollback_to_savepoint(&self, savepoint: &str) -> Result<(), Error> {
        self.failed.store(false, Ordering::Relaxed);
        let sql = format!("ROLLBACK TO SAVEPOINT \"{savepoint}\"");
        self.run("rolling back to a savepoint", move |c| {
            c.execute_batch(&sql)
        })
        .await
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_owned();
        self.run_statement("running a batch", move |c| c.execute_batch(&sql))
            .await
    }

    async fn finish(&mut self, verb: &'static str) -> Result<(), Error> {
        if self.ended.load(Ordering::Relaxed) {
            if let Some(connection) = self.connection.take() {
                connection.discard();
            }
            return Ok(());
        }
        self.failed.store(false, Ordering::Relaxed);
        let result = self
            .run("ending the transaction", move |c| c.execute_batch(verb))
            .await;
        let connection = self.connection.take();
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                if let Some(connection) = connection {
                    connection.discard();
                }
                Err(error)
            }
        }
    }

    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            self.finish("ROLLBACK").await?;
            return Err(failed_earlier());
        }
        self.finish("COMMIT").await
    }

    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        self.finish("ROLLBACK").await
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.discard();
        }
    }
}
