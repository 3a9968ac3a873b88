//! Run with: cargo bench -p tenancy-db --bench tenant_transaction
//!
//! One transaction with one simple query (`SELECT title FROM records WHERE id = $1`),
//! through `TenantDb` and through a raw deadpool-postgres pool, interleaved round by round
//! in one run, for each PostgreSQL strategy. The raw side runs the same statement against
//! the same table (schema-qualified, or with an explicit `tenant_id` filter as a superuser
//! that RLS does not apply to), in `BEGIN ... COMMIT`, with a cached prepared statement:
//! once as deadpool-postgres's `transaction()` does it (the baseline of the goal), and once
//! with `BEGIN` pipelined with the query, as `TenantDb` sends it. A third raw variant logs
//! in as the role `TenantDb` uses and sends exactly the statements it sends, binding
//! included (`BEGIN; SET LOCAL ROLE ..`, the unqualified query, `COMMIT; CLOSE ALL`), so
//! the report splits the difference three ways: the round trip saved, the server's cost of
//! the binding, and this crate's own code.
//!
//! Needs the test PostgreSQL server (TENANCY_TEST_POSTGRES_URL, default 127.0.0.1:5432).
//!
//! The benchmark pins itself and every server backend it uses to CPU 0 (set
//! `TENANCY_BENCH_PIN=0` not to): on a two-core virtual machine a round trip to a backend
//! on the other, idle core costs tens of microseconds of wake-up, and which backend lands
//! where is chance, so unpinned runs compare placements, not work.
//!
//! `TENANCY_BENCH_ONLY=raw|pipelined|same|tenancy` runs 10,000 transactions of one side per
//! strategy and no comparison, for a profiler: `strace -c -f`, `perf stat`, or `perf record
//! -a` for the server's side. `TENANCY_BENCH_ISOLATION=database|schema|row` runs one
//! strategy only.

use std::hint::black_box;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migrations, TENANT_SETTING, TenantDb, tokio_postgres};
use tenancy_test::Service;
use tenancy_test::bench::{Comparison, pin_to_cpu};
use tenancy_test::db::{Backend, TestDb};

/// Transactions per strategy when one side runs alone (`TENANCY_BENCH_ONLY`).
const PROFILE_TRANSACTIONS: usize = 10_000;

fn migrations() -> Migrations {
    tenancy_test::db::records_migrations()
}

/// The superuser login to `database`.
fn superuser(database: &str) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = Service::Postgres.require().parse().unwrap();
    config.dbname(database);
    config
}

/// `role`'s login to `database`, with the statement timeout `TenantDb` sets on its
/// connections (the default), which makes the server arm a timer for every statement.
fn login_as_tenancy(fixture: &TestDb, role: &str, database: &str) -> tokio_postgres::Config {
    let mut config = fixture.login(role, database);
    config.options("-c statement_timeout=30000");
    config
}

fn raw_pool(mut config: tokio_postgres::Config) -> Pool {
    config.application_name("tenancy-bench-raw");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(4).build().unwrap()
}

async fn raw_transaction(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare_cached(sql).await.unwrap();
    let title: String = tx.query_one(&statement, params).await.unwrap().get(0);
    tx.commit().await.unwrap();
    title
}

/// The same, with `BEGIN` pipelined with the query as `TenantDb` does: what the saved
/// round trip is worth, so that the rest of the difference is the binding and our code.
async fn raw_pipelined_transaction(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let client = pool.get().await.unwrap();
    let statement = client.prepare_cached(sql).await.unwrap();
    let (begun, row) = futures::join!(
        client.batch_execute("BEGIN"),
        client.query_one(&statement, params)
    );
    begun.unwrap();
    let title: String = row.unwrap().get(0);
    client.batch_execute("COMMIT").await.unwrap();
    title
}

/// What `TenantDb` sends for one transaction, written by hand on a raw pool logged in as
/// the role `TenantDb` uses: `begin` (with the binding) pipelined with the query, then
/// `end`.
struct SameStatements {
    pool: Pool,
    begin: String,
    end: &'static str,
}

impl SameStatements {
    async fn transaction(&self) -> String {
        let client = self.pool.get().await.unwrap();
        let id = 1i64;
        let (begun, row) = futures::join!(client.batch_execute(&self.begin), async {
            // Prepared inside the transaction: the application role alone may not see the
            // table.
            let statement = client.prepare_cached(TENANT_QUERY).await?;
            client.query_one(&statement, &[&id]).await
        });
        begun.unwrap();
        let title: String = row.unwrap().get(0);
        client.batch_execute(self.end).await.unwrap();
        title
    }
}

/// The query of every transaction, as the application writes it.
const TENANT_QUERY: &str = "SELECT title FROM records WHERE id = $1";

async fn tenant_transaction(db: &TenantDb, ctx: &TenantContext) -> String {
    let mut tx = db.transaction(ctx).await.unwrap();
    let title: String = tx
        .query_one(TENANT_QUERY, &[1i64.into()])
        .await
        .unwrap()
        .get(0)
        .unwrap();
    tx.commit().await.unwrap();
    title
}

/// Pins this process and the backends of its connections to CPU 0, unless told not to.
async fn pin_everything(fixture: &TestDb) {
    if std::env::var("TENANCY_BENCH_PIN").is_ok_and(|v| v == "0") {
        println!("(not pinned: TENANCY_BENCH_PIN=0)\n");
        return;
    }
    let admin = fixture.superuser("postgres").await;
    let pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name IN ('tenancy', 'tenancy-bench-raw')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let pinned = pin_to_cpu(std::process::id(), 0)
        && pids
            .iter()
            .all(|pid| pin_to_cpu(u32::try_from(*pid).unwrap(), 0));
    println!(
        "(this process and {} server backends {} to CPU 0)\n",
        pids.len(),
        if pinned {
            "pinned"
        } else {
            "could NOT be pinned"
        }
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = runtime.block_on(TestDb::new(Backend::Postgres, migrations()));
    let naming = fixture.db.naming();
    let tenants: Vec<(IsolationMode, TenantContext)> = runtime.block_on(async {
        let mut tenants = Vec::new();
        for isolation in [
            IsolationMode::Database,
            IsolationMode::Schema,
            IsolationMode::Row,
        ] {
            let ctx = fixture
                .tenant(&format!("bench-{isolation}"), isolation)
                .await;
            let mut tx = fixture.db.transaction(&ctx).await.unwrap();
            tx.execute(
                "INSERT INTO records (id, title) VALUES (1, $1)",
                &[ctx.tenant().as_str().into()],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            tenants.push((isolation, ctx));
        }
        tenants
    });

    println!(
        "tenant transaction (BEGIN, one SELECT, COMMIT) vs the same on a raw deadpool-postgres pool\n"
    );
    let mut setups = Vec::new();
    for (isolation, ctx) in &tenants {
        let tenant = ctx.tenant().to_string();
        let name = naming.sql_name(ctx.tenant());
        let shared = naming.platform_sql_name("shared");
        let app = naming.platform_sql_name("app");
        let (pool, sql, same) = match isolation {
            IsolationMode::Database => (
                raw_pool(superuser(&name)),
                String::from(TENANT_QUERY),
                SameStatements {
                    pool: raw_pool(login_as_tenancy(&fixture, &name, &name)),
                    begin: String::from("BEGIN"),
                    end: "COMMIT",
                },
            ),
            IsolationMode::Schema => (
                raw_pool(superuser(&shared)),
                format!("SELECT title FROM \"{name}\".records WHERE id = $1"),
                SameStatements {
                    pool: raw_pool(login_as_tenancy(&fixture, &app, &shared)),
                    begin: format!("BEGIN; SET LOCAL ROLE \"{name}\""),
                    end: "COMMIT; CLOSE ALL",
                },
            ),
            _ => (
                raw_pool(superuser(&shared)),
                String::from("SELECT title FROM records WHERE tenant_id = $2 AND id = $1"),
                SameStatements {
                    pool: raw_pool(login_as_tenancy(&fixture, &app, &shared)),
                    begin: format!("BEGIN; SET LOCAL {TENANT_SETTING} = '{tenant}'"),
                    end: "COMMIT; CLOSE ALL",
                },
            ),
        };
        let id = 1i64;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match isolation {
            IsolationMode::Row => vec![&id, &tenant],
            _ => vec![&id],
        };
        assert_eq!(
            runtime.block_on(raw_transaction(&pool, &sql, &params)),
            tenant
        );
        assert_eq!(runtime.block_on(same.transaction()), tenant);
        assert_eq!(
            runtime.block_on(tenant_transaction(&fixture.db, ctx)),
            tenant
        );
        setups.push((isolation, ctx, pool, sql, tenant, same));
    }
    runtime.block_on(pin_everything(&fixture));
    let only_isolation = std::env::var("TENANCY_BENCH_ISOLATION").ok();
    for (isolation, ctx, pool, sql, tenant, same) in &setups {
        if only_isolation
            .as_ref()
            .is_some_and(|only| *only != isolation.to_string())
        {
            continue;
        }
        let id = 1i64;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match isolation {
            IsolationMode::Row => vec![&id, tenant],
            _ => vec![&id],
        };
        if let Ok(side) = std::env::var("TENANCY_BENCH_ONLY") {
            // For profilers (`strace -c`, `perf stat`): one side alone, no comparison.
            for _ in 0..PROFILE_TRANSACTIONS {
                let title = match side.as_str() {
                    "raw" => runtime.block_on(raw_transaction(pool, sql, &params)),
                    "pipelined" => runtime.block_on(raw_pipelined_transaction(pool, sql, &params)),
                    "same" => runtime.block_on(same.transaction()),
                    _ => runtime.block_on(tenant_transaction(&fixture.db, ctx)),
                };
                black_box(title);
            }
            println!("{isolation}: {PROFILE_TRANSACTIONS} transactions of side `{side}`");
            continue;
        }
        // Many short rounds: this machine drifts between fast and slow states, and the
        // paired ratio compares each round's variant with the same round's baseline.
        let report = Comparison::new(&format!("{isolation} per tenant"))
            .rounds(300)
            .iterations(20)
            .baseline("raw deadpool-postgres", || {
                black_box(runtime.block_on(raw_transaction(pool, sql, &params)));
            })
            .variant("raw, BEGIN pipelined", || {
                black_box(runtime.block_on(raw_pipelined_transaction(pool, sql, &params)));
            })
            .variant("raw, same statements", || {
                black_box(runtime.block_on(same.transaction()));
            })
            .variant("TenantDb::transaction", || {
                black_box(runtime.block_on(tenant_transaction(&fixture.db, ctx)));
            })
            .run();
        let goal = if **isolation == IsolationMode::Database {
            1.05
        } else {
            1.10
        };
        let paired = report.paired_ratio("TenantDb::transaction");
        let pipelined = report.paired_ratio("raw, BEGIN pipelined");
        let same_statements = report.paired_ratio("raw, same statements");
        println!(
            "  paired ratio {paired:.3} (goal <= {goal:.2}): {}\n  \
             split: round trip saved {pipelined:.3}x, binding on the server {:.3}x, \
             this crate's code {:.3}x\n",
            if paired <= goal { "met" } else { "NOT MET" },
            same_statements / pipelined,
            paired / same_statements,
        );
    }
    drop(fixture);
}
