//! Backends for tenant-aware queues, each under an explicit queue name and carrying
//! [`RawJob`]s: SQLite (embedded, the default), Redis and PostgreSQL.

use crate::envelope::RawJob;
use crate::queue::QueueName;

/// A SQLite queue named `queue` (the name in `config` is replaced) in the database of `pool` (run
/// `apalis_sqlite::SqliteStorage::setup(&pool)` once first).
#[cfg(feature = "sqlite")]
pub fn sqlite(
    pool: &apalis_sqlite::SqlitePool,
    queue: &QueueName,
    config: apalis_sqlite::Config,
) -> apalis_sqlite::SqliteStorage<RawJob> {
    apalis_sqlite::SqliteStorage::new(pool).with_config(config.queue(queue.as_str()))
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
