//! Fixtures shared by this crate's integration tests: a catalog with tenants, a store per
//! backend (a SQLite file, a PostgreSQL database of the test's own, Redis keys under the
//! test's own queue name) that can be inspected and edited behind the queue's back, and a
//! recorder that handlers write what they saw to.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tenancy_core::{
    Actor, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant, TenantContext, TenantId,
    TenantStatus,
};
use tenancy_queue::QueueName;
use tenancy_test::{Service, operator, unique_tenant};

/// The job every test pushes: the canary ties a run to the push, `pushed_for` is whom the
/// producer pushed it for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Job {
    pub canary: String,
    pub pushed_for: String,
    /// Fail (with an ordinary error) this many attempts before succeeding.
    #[serde(default)]
    pub fail_attempts: usize,
    /// Sleep this long in the handler.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Panic in the handler.
    #[serde(default)]
    pub panic: bool,
}

impl Job {
    pub fn new(tenant: &TenantId, canary: &str) -> Self {
        Job {
            canary: canary.to_owned(),
            pushed_for: tenant.to_string(),
            fail_attempts: 0,
            sleep_ms: 0,
            panic: false,
        }
    }
}

/// What a handler saw: the job's canary, the tenant it believed it was pushed for, the
/// ambient tenant and the tenant in the task's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub canary: String,
    pub pushed_for: String,
    pub current: Option<String>,
    pub data: String,
    pub attempt: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn push(&self, seen: Seen) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits until at least `n` records, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} jobs ran within {timeout:?}: {:?}",
                self.len(),
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn ctx(tenant: &TenantId) -> TenantContext {
    TenantContext::new(
        tenant.clone(),
        Actor::user("u-1", "Jane Doe").expect("a valid actor"),
    )
}

/// A catalog with `n` active tenants, and their ids.
pub fn catalog(n: usize) -> (InMemoryCatalog, Vec<TenantId>) {
    let catalog = InMemoryCatalog::new();
    let ids: Vec<TenantId> = (0..n).map(|_| unique_tenant("q")).collect();
    for id in &ids {
        let placement = Placement::new(
            ServerName::new("embedded").expect("valid"),
            IsolationMode::Database,
        );
        catalog
            .create(&operator(), Tenant::new(id.clone(), "Test firm", placement))
            .expect("a new tenant");
    }
    (catalog, ids)
}

pub fn set_status(catalog: &InMemoryCatalog, id: &TenantId, status: TenantStatus) {
    catalog
        .set_status(&operator(), id, status)
        .expect("a known tenant");
}

pub fn queue_name() -> QueueName {
    QueueName::new(unique_tenant("tq").as_str()).expect("a valid queue name")
}

/// A worker name no other start uses (apalis refuses a name seen in the last 300 s).
pub fn worker_name(label: &str) -> String {
    format!("{label}-{}", unique_tenant("w"))
}

/// A job as the dead set keeps it.
#[derive(Debug, Clone)]
pub struct DeadJob {
    pub status: String,
    pub result: String,
    pub attempts: i64,
}

/// Where a test's jobs are stored, for looking and tampering behind the queue's back.
pub enum Store {
    Sqlite {
        pool: sqlx::SqlitePool,
        path: PathBuf,
    },
    Postgres {
        pool: sqlx::PgPool,
        admin: String,
        database: String,
    },
    Redis {
        conn: apalis_redis::ConnectionManager,
    },
}

impl Store {
    pub async fn sqlite() -> Store {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique_tenant("tq")));
        let pool = tenancy_queue::sqlite_pool(&path)
            .await
            .expect("the queue database");
        Store::Sqlite { pool, path }
    }

    pub async fn postgres() -> Store {
        let admin = Service::Postgres.require();
        let database = unique_tenant("tq").as_str().replace('-', "_");
        let server = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        // The name is a validated tenant id with `-` made `_`: letters, digits and `_` only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&server)
            .await
            .expect("create the test database");
        server.close().await;
        let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
        let pool = sqlx::PgPool::connect(&format!("{base}/{database}"))
            .await
            .expect("connect to the test database");
        apalis_postgres::PostgresStorage::setup(&pool)
            .await
            .expect("apalis-postgres migrations");
        Store::Postgres {
            pool,
            admin,
            database,
        }
    }

    pub async fn redis() -> Store {
        let url = Service::Redis.require();
        let conn = apalis_redis::connect(url).await.expect("connect to Redis");
        Store::Redis { conn }
    }

    pub fn sqlite_pool(&self) -> &sqlx::SqlitePool {
        match self {
            Store::Sqlite { pool, .. } => pool,
            _ => panic!("not a SQLite store"),
        }
    }

    pub fn pg_pool(&self) -> &sqlx::PgPool {
        match self {
            Store::Postgres { pool, .. } => pool,
            _ => panic!("not a PostgreSQL store"),
        }
    }

    pub fn redis_conn(&self) -> apalis_redis::ConnectionManager {
        match self {
            Store::Redis { conn } => conn.clone(),
            _ => panic!("not a Redis store"),
        }
    }

    /// Pushes `payload` as is onto `queue`: a job from a producer that does not use
    /// `TenantQueue`.
    pub async fn push_raw(&self, queue: &QueueName, payload: serde_json::Value) {
        use apalis::prelude::TaskSink as _;
        match self {
            Store::Sqlite { pool, .. } => {
                let mut raw = apalis_sqlite::SqliteStorage::<serde_json::Value>::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(queue.as_str()));
                raw.push(payload).await.expect("push a raw job");
            }
            Store::Postgres { pool, .. } => {
                let mut raw = apalis_postgres::PostgresStorage::<serde_json::Value>::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(queue.as_str()));
                raw.push(payload).await.expect("push a raw job");
            }
            Store::Redis { conn } => {
                let mut raw = apalis_redis::RedisStorage::<serde_json::Value>::new(conn.clone())
                    .with_config(apalis_redis::Config::default().queue(queue.as_str()));
                raw.push(payload).await.expect("push a raw job");
            }
        }
    }

    /// Replaces `from` with `to` in the stored payload of every job of `queue`, as someone
    /// with write access to the backend would; returns how many payloads changed.
    pub async fn edit_payloads(&self, queue: &QueueName, from: &str, to: &str) -> usize {
        match self {
            Store::Sqlite { pool, .. } => sqlx::query(
                "UPDATE Jobs SET job = CAST(replace(CAST(job AS TEXT), ?1, ?2) AS BLOB) \
                 WHERE job_type = ?3 AND instr(CAST(job AS TEXT), ?1) > 0",
            )
            .bind(from)
            .bind(to)
            .bind(queue.as_str())
            .execute(pool)
            .await
            .expect("edit SQLite payloads")
            .rows_affected() as usize,
            Store::Postgres { pool, .. } => sqlx::query(
                "UPDATE apalis.jobs SET job = convert_to(replace(convert_from(job, 'UTF8'), $1, $2), 'UTF8') \
                 WHERE job_type = $3 AND position($1 in convert_from(job, 'UTF8')) > 0",
            )
            .bind(from)
            .bind(to)
            .bind(queue.as_str())
            .execute(pool)
            .await
            .expect("edit PostgreSQL payloads")
            .rows_affected() as usize,
            Store::Redis { conn } => {
                let mut conn = conn.clone();
                let key = format!("{queue}:data");
                let all: HashMap<String, Vec<u8>> = conn.hgetall(&key).await.expect("HGETALL");
                let mut changed = 0;
                for (id, payload) in all {
                    let text = String::from_utf8(payload).expect("JSON payloads");
                    if text.contains(from) {
                        let () = conn
                            .hset(&key, &id, text.replace(from, to).into_bytes())
                            .await
                            .expect("HSET");
                        changed += 1;
                    }
                }
                changed
            }
        }
    }

    /// The jobs of `queue` in the dead set: killed, with their result.
    pub async fn dead(&self, queue: &QueueName) -> Vec<DeadJob> {
        match self {
            Store::Sqlite { pool, .. } => {
                let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT status, last_result, attempts FROM Jobs \
                     WHERE job_type = ?1 AND status = 'Killed'",
                )
                .bind(queue.as_str())
                .fetch_all(pool)
                .await
                .expect("read SQLite jobs");
                rows.into_iter()
                    .map(|(status, result, attempts)| DeadJob {
                        status,
                        result: result.unwrap_or_default(),
                        attempts,
                    })
                    .collect()
            }
            Store::Postgres { pool, .. } => {
                let rows: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                    "SELECT status, last_result::text, attempts FROM apalis.jobs \
                     WHERE job_type = $1 AND status = 'Killed'",
                )
                .bind(queue.as_str())
                .fetch_all(pool)
                .await
                .expect("read PostgreSQL jobs");
                rows.into_iter()
                    .map(|(status, result, attempts)| DeadJob {
                        status,
                        result: result.unwrap_or_default(),
                        attempts: i64::from(attempts),
                    })
                    .collect()
            }
            Store::Redis { conn } => {
                let mut conn = conn.clone();
                let ids: Vec<String> = conn
                    .smembers(format!("{queue}:dead"))
                    .await
                    .expect("SMEMBERS");
                let mut dead = Vec::new();
                for id in ids {
                    let meta: HashMap<String, String> = conn
                        .hgetall(format!("{queue}:meta:{id}"))
                        .await
                        .expect("HGETALL");
                    dead.push(DeadJob {
                        status: meta.get("status").cloned().unwrap_or_default(),
                        result: meta.get("result").cloned().unwrap_or_default(),
                        attempts: meta
                            .get("attempts")
                            .and_then(|a| a.parse().ok())
                            .unwrap_or_default(),
                    });
                }
                dead
            }
        }
    }

    /// How many jobs of `queue` are done.
    pub async fn done(&self, queue: &QueueName) -> usize {
        match self {
            Store::Sqlite { pool, .. } => {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM Jobs WHERE job_type = ?1 AND status = 'Done'",
                )
                .bind(queue.as_str())
                .fetch_one(pool)
                .await
                .expect("count SQLite jobs");
                n as usize
            }
            Store::Postgres { pool, .. } => {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
                )
                .bind(queue.as_str())
                .fetch_one(pool)
                .await
                .expect("count PostgreSQL jobs");
                n as usize
            }
            Store::Redis { conn } => {
                let mut conn = conn.clone();
                let n: usize = conn.scard(format!("{queue}:done")).await.expect("SCARD");
                n
            }
        }
    }

    /// Removes what the test made: the SQLite file, the PostgreSQL database, the queue's
    /// Redis keys.
    pub async fn cleanup(self, queue: &QueueName) {
        match self {
            Store::Sqlite { pool, path } => {
                pool.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Store::Postgres {
                pool,
                admin,
                database,
            } => {
                pool.close().await;
                let server = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .execute(&server)
                .await
                .expect("drop the test database");
                server.close().await;
            }
            Store::Redis { mut conn } => {
                let keys: Vec<String> = conn.keys(format!("{queue}:*")).await.expect("KEYS");
                if !keys.is_empty() {
                    let () = conn.del(keys).await.expect("DEL");
                }
            }
        }
    }
}
