//! Backends for tenant-aware queues, each under an explicit queue name and carrying
//! [`RawJob`]s: SQLite (embedded, the default), Redis and PostgreSQL.

use crate::envelope::RawJob;
#[cfg(feature = "sqlite")]
use crate::error::{Error, ErrorKind};
use crate::queue::QueueName;

/// A SQLite queue named `queue` (the name in `config` is replaced) in the database of `pool`
/// (from [`sqlite_pool`]).
#[cfg(feature = "sqlite")]
pub fn sqlite(
    pool: &apalis_sqlite::SqlitePool,
    queue: &QueueName,
    config: apalis_sqlite::Config,
) -> apalis_sqlite::SqliteStorage<RawJob> {
    apalis_sqlite::SqliteStorage::new(pool).with_config(config.queue(queue.as_str()))
}

/// Opens the SQLite file at `path` for queues, creating it and apalis-sqlite's tables if
/// missing: the pool [`sqlite`] takes.
///
/// Use it rather than `SqlitePool::connect` and `SqliteStorage::setup`, which put the file in
/// WAL mode: there, the SQLite that libsqlite3-sys 0.36 bundles (3.51.1) can deadlock two
/// threads that close connections to the file at the same moment (a pool dropped, a test
/// ending), each holding one of SQLite's two internal locks and waiting for the other,
/// forever. The queue's file keeps a rollback journal instead, where that path is never
/// taken (`synchronous = NORMAL`, a 5 s busy timeout). tenancy-db's own SQLite files stay in
/// WAL mode and avoid it by never checkpointing on close, a setting sqlx does not offer.
#[cfg(feature = "sqlite")]
pub async fn sqlite_pool(path: &std::path::Path) -> Result<apalis_sqlite::SqlitePool, Error> {
    use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
    let failed = |doing: &str, error: Box<dyn std::error::Error + Send + Sync>| {
        Error::with_source(
            ErrorKind::Open,
            format!("{doing} the queue database {}", path.display()),
            error,
        )
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .pragma("journal_mode", "DELETE")
        .pragma("synchronous", "NORMAL")
        .busy_timeout(std::time::Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .map_err(|e| failed("opening", e.into()))?;
    SqliteStorage::<()>::migrations()
        .run(&pool)
        .await
        .map_err(|e| failed("creating apalis-sqlite's tables in", e.into()))?;
    Ok(pool)
}

/// A Redis queue named `queue` (the name in `config` is replaced) over `conn` (from `apalis_redis::connect(url)`).
#[cfg(feature = "redis")]
pub fn redis(
    conn: apalis_redis::ConnectionManager,
    queue: &QueueName,
    config: apalis_redis::Config,
) -> apalis_redis::RedisStorage<RawJob> {
    apalis_redis::RedisStorage::new(conn).with_config(config.queue(queue.as_str()))
}

/// A PostgreSQL queue named `queue` (the name in `config` is replaced) in the database of `pool` (run
/// `apalis_postgres::PostgresStorage::setup(&pool)` once first: it creates the `apalis`
/// schema and the `pgcrypto` and `hstore` extensions).
#[cfg(feature = "postgres")]
pub fn postgres(
    pool: &apalis_postgres::PgPool,
    queue: &QueueName,
    config: apalis_postgres::Config,
) -> apalis_postgres::PostgresStorage<RawJob> {
    apalis_postgres::PostgresStorage::new(pool).with_config(config.queue(queue.as_str()))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    /// Every connection of a queue pool uses a rollback journal, never WAL (see
    /// [`super::sqlite_pool`]), and pools opened and dropped in a loop, their connections
    /// closing at once on their own threads, never hang.
    #[test]
    fn a_queue_pool_keeps_a_rollback_journal_and_closes_cleanly() {
        const CONNECTIONS: usize = 6;
        let dir = std::env::temp_dir().join(tenancy_test::unique_tenant("queue-close").as_str());
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("queue.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let outcome = std::panic::catch_unwind(|| {
            tenancy_test::rounds::assert_rounds_finish(
                "opening and dropping a queue pool",
                300,
                Duration::from_secs(10),
                move |_| {
                    runtime.block_on(async {
                        let pool = super::sqlite_pool(&path).await.expect("the queue pool");
                        let mut held = Vec::new();
                        for _ in 0..CONNECTIONS {
                            let mut connection = pool.acquire().await.expect("a connection");
                            sqlx_probe(&mut connection).await;
                            held.push(connection);
                        }
                        drop(held);
                        // Dropped, not closed: each connection's thread closes it, at once.
                        drop(pool);
                    });
                },
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A write and a read, so that every connection has the file open and the journal
    /// has something in it when the pool goes.
    async fn sqlx_probe(connection: &mut apalis_sqlite::SqliteConnection) {
        sqlx::query("CREATE TABLE IF NOT EXISTS probe (n integer); INSERT INTO probe VALUES (1)")
            .execute(&mut *connection)
            .await
            .expect("a write");
        let _: (i64,) = sqlx::query_as("SELECT count(*) FROM Jobs")
            .fetch_one(&mut *connection)
            .await
            .expect("the Jobs table");
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .expect("the journal mode");
        assert_eq!(mode, "delete", "a queue connection in {mode} mode");
    }
}
