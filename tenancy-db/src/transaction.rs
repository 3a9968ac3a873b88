//! [`Transaction`]: the one way application code reaches a tenant's data.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tenancy_core::TenantId;

use crate::error::{Error, ErrorKind};
use crate::postgres::PgTransaction;
use crate::sqlite::SqliteTransaction;
use crate::value::{Row, Value};

/// The error for work on, or a commit of, a transaction in which a statement failed. The
/// rule is the same on both backends: PostgreSQL aborts such a transaction (and would
/// answer a `COMMIT` with a silent rollback); SQLite would commit the statements that did
/// succeed. One failed statement fails the transaction everywhere.
pub(crate) fn failed_earlier() -> Error {
    Error::new(
        ErrorKind::Transaction,
        "a statement failed earlier in this transaction, so it was rolled back and nothing \
         was committed; roll back and start a new transaction",
    )
}

/// Marks a transaction failed when dropped: held across a statement whose outcome is not
/// known until its answer arrives, and forgotten once it has. If the future running the
/// statement is dropped in between (a cancelled request), the statement may or may not
/// have run, so the transaction can only be rolled back, never committed.
pub(crate) struct FailOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A transaction on PostgreSQL or SQLite, with or without a tenant: the portable statement
/// methods shared by [`Transaction`] and the platform's own work (catalog, migrations).
pub(crate) enum Tx {
    /// Boxed: a PostgreSQL transaction carries its pooled connection and its limits, several
    /// times the size of a SQLite one.
    Postgres(Box<PgTransaction>),
    Sqlite(SqliteTransaction),
}

impl Tx {
    pub(crate) fn postgres(tx: PgTransaction) -> Tx {
        Tx::Postgres(Box::new(tx))
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        match self {
            Tx::Postgres(tx) => tx.execute(sql, params).await,
            Tx::Sqlite(tx) => tx.execute(sql, params).await,
        }
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        match self {
            Tx::Postgres(tx) => tx.query(sql, params).await,
            Tx::Sqlite(tx) => tx.query(sql, params).await,
        }
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        match self {
            Tx::Postgres(tx) => tx.batch(sql).await,
            Tx::Sqlite(tx) => tx.batch(sql).await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Sqlite(tx) => tx.rollback().await,
        }
    }

    fn backend_name(&self) -> &'static str {
        match self {
            Tx::Postgres(_) => "postgres",
            Tx::Sqlite(_) => "sqlite",
        }
    }
}

/// A transaction that can only see one tenant's data, whatever the isolation strategy.
///
/// Made by [`TenantDb::transaction`](crate::TenantDb::transaction). Parameters are written
/// `$1`, `$2`, ... on every backend. End it with [`Transaction::commit`] or
/// [`Transaction::rollback`]; a transaction dropped without either (an early `?`, a
/// cancelled request) rolls back and its connection is closed, never reused. Once a
/// statement has failed, later statements are refused and `commit` rolls back and returns
/// an error, on every backend. Transaction control (`COMMIT`, `SAVEPOINT`) does not belong
/// in the SQL passed here.
pub struct Transaction {
    tenant: TenantId,
    tx: Tx,
}

impl Transaction {
    pub(crate) fn new(tenant: TenantId, tx: Tx) -> Self {
        Transaction { tenant, tx }
    }

    /// The tenant this transaction belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.tx.execute(sql, params).await
    }

    /// Runs a query; returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        self.tx.query(sql, params).await
    }

    /// Runs a query that returns exactly one row.
    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, Error> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(Error::new(
                ErrorKind::Query,
                format!("the query returned {n} rows where exactly one was expected"),
            )),
        }
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.remove(0))),
            n => Err(Error::new(
                ErrorKind::Query,
                format!("the query returned {n} rows where at most one was expected"),
            )),
        }
    }

    /// Runs several statements without parameters.
    pub async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.tx.batch(sql).await
    }

    /// The underlying `tokio_postgres` client, inside this transaction, for what the
    /// portable API does not cover (`COPY`, types without a [`Value`]). `None` on SQLite.
    ///
    /// Statements sent through it run in this transaction with the tenant bound (the
    /// transaction is begun, if no statement has begun it yet, before the client is
    /// returned). Do not end the transaction through it: statements after a `COMMIT` sent
    /// here run unbound, with whatever session state the connection carries. Because this
    /// crate cannot see what was sent, a connection shared between tenants is closed after
    /// a transaction that used this, rather than handed to another tenant.
    pub async fn as_postgres(&mut self) -> Result<Option<&tokio_postgres::Client>, Error> {
        match &self.tx {
            Tx::Postgres(tx) => tx.postgres_client().await.map(Some),
            Tx::Sqlite(_) => Ok(None),
        }
    }

    /// Commits and returns the connection to its pool.
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await
    }

    /// Rolls back and returns the connection to its pool.
    pub async fn rollback(self) -> Result<(), Error> {
        self.tx.rollback().await
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("tenant", &self.tenant)
            .field("backend", &self.tx.backend_name())
            .finish()
    }
}
