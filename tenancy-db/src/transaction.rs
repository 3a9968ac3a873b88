//! [`Transaction`]: the one way application code reaches a tenant's data.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tenancy_core::TenantId;

use crate::error::{Error, ErrorKind};
#[cfg(feature = "postgres")]
use crate::postgres::PgTransaction;
#[cfg(feature = "sqlite")]
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
    #[cfg(feature = "postgres")]
    Postgres(Box<PgTransaction>),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteTransaction),
}

impl Tx {
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(tx: PgTransaction) -> Tx {
        Tx::Postgres(Box::new(tx))
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.execute(sql, params).await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.execute(sql, params).await,
        }
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.query(sql, params).await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.query(sql, params).await,
        }
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.batch(sql).await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.batch(sql).await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.commit().await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.rollback().await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.rollback().await,
        }
    }

    pub(crate) async fn rollback_to_savepoint(&self, name: &str) -> Result<(), Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.rollback_to_savepoint(name).await,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.rollback_to_savepoint(name).await,
        }
    }

    fn backend_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => "postgres",
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(_) => "sqlite",
        }
    }
}

/// A transaction that can only see one tenant's data, whatever the isolation strategy.
///
/// Made by [`TenantDb::transaction`](crate::TenantDb::transaction). End it with
/// [`Transaction::commit`] or [`Transaction::rollback`]; a transaction dropped without
/// either (an early `?`, a cancelled request) rolls back and its connection is closed,
/// never reused. Once a statement has failed, later statements are refused and `commit`
/// rolls back and returns an error, on every backend; [`Transaction::savepoint`] is how to
/// let part of a transaction fail.
///
/// Two tiers reach the same transaction:
///
/// - the **portable** tier ([`execute`](Transaction::execute), [`query`](Transaction::query),
///   [`query_as`](Transaction::query_as), [`query_stream`](Transaction::query_stream), ...)
///   binds [`Value`]s to `$1`, `$2`, ... and reads [`Row`]s, the same on PostgreSQL and
///   SQLite;
/// - the **typed** tier speaks each driver's own types: [`Transaction::postgres`] (any
///   `ToSql`/`FromSql` type of tokio-postgres, and `tokio_postgres::Row`) and
///   [`Transaction::sqlite`] (a closure over the tenant's `rusqlite::Connection`).
///
/// One rule holds for every tier, and for [`batch`](Transaction::batch) and
/// [`as_postgres`](Transaction::as_postgres): statements run inside this transaction, with
/// the tenant bound, and must not end it (`COMMIT`, `ROLLBACK`). On SQLite, statements
/// that end it fail the transaction at once. On PostgreSQL, statements after such a
/// `COMMIT` would run unbound, which reaches no tenant's data (an unbound row-level session
/// sees no row; the application role has no privileges of its own), and whatever they leave
/// on the session is caught by the end-of-transaction check, which closes the connection.
pub struct Transaction {
    tenant: TenantId,
    tx: Tx,
    /// How many savepoints are open: each gets a name of its own.
    savepoints: u32,
}

impl Transaction {
    pub(crate) fn new(tenant: TenantId, tx: Tx) -> Self {
        Transaction {
            tenant,
            tx,
            savepoints: 0,
        }
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

    /// Runs a query that returns exactly one row; none is an error of kind
    /// [`ErrorKind::RowNotFound`].
    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, Error> {
        exactly_one(self.query(sql, params).await?)
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        at_most_one(self.query(sql, params).await?)
    }

    /// Runs a query and reads each row into `T` (see [`Row::deserialize`]). Feature
    /// `serde`.
    #[cfg(feature = "serde")]
    pub async fn query_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<T>, Error> {
        self.query(sql, params)
            .await?
            .iter()
            .map(Row::deserialize)
            .collect()
    }

    /// Runs a query that returns exactly one row, read into `T`; none is an error of kind
    /// [`ErrorKind::RowNotFound`]. Feature `serde`.
    #[cfg(feature = "serde")]
    pub async fn query_one_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<T, Error> {
        self.query_one(sql, params).await?.deserialize()
    }

    /// Runs a query that returns at most one row, read into `T`. Feature `serde`.
    #[cfg(feature = "serde")]
    pub async fn query_opt_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<T>, Error> {
        self.query_opt(sql, params)
            .await?
            .map(|row| row.deserialize())
            .transpose()
    }

    /// Runs a query and yields its rows as they arrive, so a large result never sits in
    /// memory whole. The stream borrows the transaction until it is dropped; an error
    /// while reading fails the transaction.
    pub async fn query_stream<'a>(
        &'a mut self,
        sql: &str,
        params: &'a [Value],
    ) -> Result<RowStream<'a>, Error> {
        Ok(RowStream(match &self.tx {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => Box::pin(tx.query_stream(sql, params).await?),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => Box::pin(tx.query_stream(sql, params).await?),
        }))
    }

    /// Runs several statements without parameters.
    pub async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.tx.batch(sql).await
    }

    /// Runs `work` inside a savepoint: if it returns an error (a statement failed, or it
    /// chose to), what it did is rolled back and the transaction goes on as before it, on
    /// every backend; otherwise its work stays in the transaction. Savepoints nest.
    ///
    /// ```no_run
    /// # async fn run(tx: &mut tenancy_db::Transaction) -> Result<(), tenancy_db::Error> {
    /// let added = tx
    ///     .savepoint(async |tx| {
    ///         tx.execute("INSERT INTO records (id, title) VALUES (1, 'maybe')", &[]).await
    ///     })
    ///     .await;
    /// // A duplicate id failed the insert only; the transaction can still commit.
    /// # let _ = added; Ok(()) }
    /// ```
    pub async fn savepoint<R>(
        &mut self,
        work: impl AsyncFnOnce(&mut Transaction) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.savepoints += 1;
        let name = format!("tenancy_savepoint_{}", self.savepoints);
        let outcome = async {
            self.tx.batch(&format!("SAVEPOINT {name}")).await?;
            match work(self).await {
                Ok(done) => {
                    self.tx.batch(&format!("RELEASE SAVEPOINT {name}")).await?;
                    Ok(done)
                }
                Err(error) => {
                    self.tx.rollback_to_savepoint(&name).await?;
                    Err(error)
                }
            }
        }
        .await;
        self.savepoints -= 1;
        outcome
    }

    #[cfg(feature = "postgres")]
    /// The typed tier on PostgreSQL: statements with the driver's own parameter and row
    /// types, in this transaction, with the tenant bound. An error of kind
    /// [`ErrorKind::Config`] when the tenant's data is on SQLite.
    ///
    /// ```no_run
    /// # async fn run(tx: &mut tenancy_db::Transaction) -> Result<(), tenancy_db::Error> {
    /// let pg = tx.postgres()?;
    /// let rows = pg
    ///     .query("SELECT id, title FROM records WHERE id = ANY($1)", &[&vec![1_i64, 2]])
    ///     .await?;
    /// for row in rows {
    ///     let (id, title): (i64, &str) = (row.get("id"), row.get("title"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn postgres(&mut self) -> Result<Postgres<'_>, Error> {
        match &self.tx {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => Ok(Postgres(tx)),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(_) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "tenant `{}` is on SQLite: use `Transaction::sqlite`, or the portable tier",
                    self.tenant
                ),
            )),
        }
    }

    #[cfg(feature = "sqlite")]
    /// The typed tier on SQLite: `work` runs on the tenant's own `rusqlite::Connection`,
    /// inside this transaction, on the connection's thread. The connection cannot attach
    /// another file. An error of kind [`ErrorKind::Config`] when the tenant's data is on
    /// PostgreSQL.
    ///
    /// ```no_run
    /// # async fn run(tx: &mut tenancy_db::Transaction) -> Result<(), tenancy_db::Error> {
    /// let titles: Vec<String> = tx
    ///     .sqlite(|connection| {
    ///         let mut statement = connection.prepare("SELECT title FROM records")?;
    ///         let titles = statement.query_map([], |row| row.get(0))?;
    ///         titles.collect()
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn sqlite<R, F>(&mut self, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        match &self.tx {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => tx.with_connection(work).await,
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "tenant `{}` is on PostgreSQL: use `Transaction::postgres`, or the \
                     portable tier",
                    self.tenant
                ),
            )),
        }
    }

    #[cfg(feature = "postgres")]
    /// The underlying `tokio_postgres` client, inside this transaction, for what neither
    /// tier covers (`COPY`). `None` on SQLite. Statements sent through it follow the rule
    /// above; the transaction is begun, with the tenant bound, before the client is
    /// returned.
    pub async fn as_postgres(&mut self) -> Result<Option<&tokio_postgres::Client>, Error> {
        match &self.tx {
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.postgres_client().await.map(Some),
            #[cfg(feature = "sqlite")]
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

/// The one row of `rows`, or [`ErrorKind::RowNotFound`] / [`ErrorKind::Query`].
fn exactly_one<T>(mut rows: Vec<T>) -> Result<T, Error> {
    match rows.len() {
        1 => Ok(rows.remove(0)),
        0 => Err(Error::new(
            ErrorKind::RowNotFound,
            "the query returned no row where exactly one was expected",
        )),
        n => Err(Error::new(
            ErrorKind::Query,
            format!("the query returned {n} rows where exactly one was expected"),
        )),
    }
}

/// The row of `rows` if there is one, or [`ErrorKind::Query`] when there are several.
fn at_most_one<T>(mut rows: Vec<T>) -> Result<Option<T>, Error> {
    match rows.len() {
        0 => Ok(None),
        1 => Ok(Some(rows.remove(0))),
        n => Err(Error::new(
            ErrorKind::Query,
            format!("the query returned {n} rows where at most one was expected"),
        )),
    }
}

/// The rows of [`Transaction::query_stream`], as they arrive.
pub struct RowStream<'a>(Pin<Box<dyn Stream<Item = Result<Row, Error>> + Send + 'a>>);

impl Stream for RowStream<'_> {
    type Item = Result<Row, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}

/// The typed tier of a PostgreSQL transaction: see [`Transaction::postgres`].
#[cfg(feature = "postgres")]
#[derive(Clone, Copy)]
pub struct Postgres<'a>(&'a PgTransaction);

#[cfg(feature = "postgres")]
impl Postgres<'_> {
    /// Runs a statement with the driver's own parameter types; the rows it changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.0.execute_typed(sql, params).await
    }

    /// Runs a query; the driver's rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        self.0.query_typed(sql, params).await
    }

    /// Runs a query that returns exactly one row; none is an error of kind
    /// [`ErrorKind::RowNotFound`].
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, Error> {
        exactly_one(self.query(sql, params).await?)
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, Error> {
        at_most_one(self.query(sql, params).await?)
    }
}

#[cfg(feature = "postgres")]
impl fmt::Debug for Postgres<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
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
