//! A PostgreSQL transaction with the tenant bound for its whole life.
//!
//! The binding is sent in the same simple-query message as `BEGIN`, so it costs no extra
//! round trip; it is transaction-local (`SET LOCAL`, `set_config(.., true)`), so it ends
//! with the transaction. A transaction dropped before `commit` or `rollback` finished (an
//! error path, a cancelled request) discards its connection instead of returning it.

use std::borrow::Cow;
use std::pin::pin;

use futures::TryStreamExt;
use tenancy_core::TenantId;

use super::{PgConnection, TENANT_SETTING, ident, literal};
use crate::error::{Error, ErrorKind};
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
    /// `SET LOCAL app.tenant_id = 'id'`: row-level security does the rest.
    Row(TenantId),
    /// `SET LOCAL search_path` only: platform work (migrations) in a tenant's schema.
    SearchPath(String),
}

impl Binding {
    fn begin_sql(&self) -> Cow<'static, str> {
        Cow::Owned(match self {
            Binding::Connection => return Cow::Borrowed("BEGIN"),
            Binding::Schema(name) => format!("BEGIN; SET LOCAL ROLE {}", ident(name)),
            // A utility statement, not `SELECT set_config(..)`: it needs no planning and
            // returns no row (measured: +6% on a BEGIN/COMMIT pair, against +20%). The
            // literal is safe: a validated tenant id has no quote.
            Binding::Row(id) => format!(
                "BEGIN; SET LOCAL {TENANT_SETTING} = {}",
                literal(id.as_str())
            ),
            Binding::SearchPath(schema) => {
                format!("BEGIN; SET LOCAL search_path TO {}", ident(schema))
            }
        })
    }

    /// Whether other tenants use the same connections afterwards.
    fn is_shared(&self) -> bool {
        !matches!(self, Binding::Connection)
    }
}

/// An open PostgreSQL transaction. See the module docs.
pub(crate) struct PgTransaction {
    connection: Option<PgConnection>,
    shared: bool,
}

impl PgTransaction {
    pub(crate) async fn begin(connection: PgConnection, binding: Binding) -> Result<Self, Error> {
        let transaction = PgTransaction {
            connection: Some(connection),
            shared: binding.is_shared(),
        };
        transaction
            .client()?
            .batch_execute(&binding.begin_sql())
            .await
            .map_err(|e| Error::postgres("beginning the tenant's transaction", e))?;
        Ok(transaction)
    }

    fn client(&self) -> Result<&tokio_postgres::Client, Error> {
        self.connection
            .as_ref()
            .map(|connection| &***connection)
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        let connection = self
            .connection
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Transaction, "the transaction is finished"))?;
        connection
            .prepare_cached(sql)
            .await
            .map_err(|e| Error::postgres("preparing a statement", e))
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        let statement = self.prepare(sql).await?;
        self.client()?
            .execute_raw(&statement, params)
            .await
            .map_err(|e| Error::postgres("executing a statement", e))
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        let failed = |e| Error::postgres("running a query", e);
        let statement = self.prepare(sql).await?;
        // Streamed straight into portable rows: no intermediate vector of driver rows.
        let mut stream = pin!(
            self.client()?
                .query_raw(&statement, params)
                .await
                .map_err(failed)?
        );
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await.map_err(failed)? {
            rows.push(value::from_postgres(&statement, &row)?);
        }
        Ok(rows)
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        self.client()?
            .batch_execute(sql)
            .await
            .map_err(|e| Error::postgres("running a batch", e))
    }

    pub(crate) fn postgres_client(&self) -> Option<&tokio_postgres::Client> {
        self.client().ok()
    }

    /// Ends the transaction with `verb` and returns the connection to its pool; on any
    /// failure the connection is discarded.
    async fn finish(&mut self, verb: &str) -> Result<(), Error> {
        // A cursor declared WITH HOLD outlives the transaction and would hand this
        // tenant's rows to the next borrower of a shared connection: close them all.
        let sql = if self.shared {
            format!("{verb}; CLOSE ALL")
        } else {
            verb.to_owned()
        };
        let result = self.client()?.batch_execute(&sql).await;
        let connection = self.connection.take();
        match result {
            Ok(()) => {
                drop(connection);
                Ok(())
            }
            Err(error) => {
                if let Some(connection) = connection {
                    connection.discard();
                }
                Err(Error::postgres(&format!("{verb} failed"), error))
            }
        }
    }

    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        self.finish("COMMIT").await
    }

    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        self.finish("ROLLBACK").await
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        // Neither committed nor rolled back: the connection may still be inside this
        // tenant's transaction. Never hand it to anyone else.
        if let Some(connection) = self.connection.take() {
            connection.discard();
        }
    }
}
