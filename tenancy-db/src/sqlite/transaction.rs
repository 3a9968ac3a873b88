//! A SQLite transaction on a tenant's own file.
//!
//! Each statement runs on the connection's blocking thread. A transaction dropped before
//! `commit` or `rollback` finished discards its connection; closing it rolls back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_sync::InteractError;

use super::SqliteConnection;
use crate::error::{Error, ErrorKind};
use crate::transaction::{FailOnDrop, failed_earlier};
use crate::value::{self, Row, Value};

pub(crate) struct SqliteTransaction {
    connection: Option<SqliteConnection>,
    /// A statement failed: later ones are refused and `commit` rolls back (see
    /// `failed_earlier`).
    failed: AtomicBool,
}

fn interact_failed(error: InteractError) -> Error {
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
        self.run("executing a statement", move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            bind(&mut statement, &params)?;
            statement.raw_execute().map(|n| n as u64)
        })
        .await
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.run("running a query", move |c| {
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

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_owned();
        self.run("running a batch", move |c| c.execute_batch(&sql))
            .await
    }

    async fn finish(&mut self, verb: &'static str) -> Result<(), Error> {
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
