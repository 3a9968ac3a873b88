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
//! Every side connects without TLS (the raw pools use `NoTls`; `TenantDb` gets
//! `sslmode=disable`), so the sides do the same work.
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
use tenancy_db::__bench::SESSION_CHECK;
use tenancy_db::{Migrations, Secret, TENANT_SETTING, TenantDb, tokio_postgres};
use tenancy_test::Service;
use tenancy_test::bench::{Comparison, pin_to_cpu};
use tenancy_test::db::{Backend, TEST_SECRET, TestDb, without_tls};

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

fn raw_pool(config: tokio_postgres::Config) -> Pool {
    raw_pool_of(config, 4)
}

fn raw_pool_of(mut config: tokio_postgres::Config, size: usize) -> Pool {
    config.application_name("tenancy-bench-raw");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size).build().unwrap()
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
/// `end`, with the session check pipelined behind it where `checked`.
struct SameStatements {
    pool: Pool,
    begin: String,
    end: &'static str,
    checked: bool,
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
        if self.checked {
            let check = client.prepare_cached(SESSION_CHECK).await.unwrap();
            let (ended, checked) = futures::join!(
                client.batch_execute(self.end),
                client.query_one(&check, &[])
            );
            ended.unwrap();
            checked.unwrap();
        } else {
            client.batch_execute(self.end).await.unwrap();
        }
        title
    }

    /// The server process of the pool's one connection, which a row-level proof names.
    async fn pid(&self) -> i32 {
        let client = self.pool.get().await.unwrap();
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The query of every transaction, as the application writes it.
const TENANT_QUERY: &str = "SELECT title FROM records WHERE id = $1";

/// The same transaction through the typed tier: the driver's own parameter and row types.
async fn typed_transaction(db: &TenantDb, ctx: &TenantContext) -> String {
    let mut tx = db.transaction(ctx).await.unwrap();
    let title: String = tx
        .postgres()
        .unwrap()
        .query_one(TENANT_QUERY, &[&1i64])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    title
}

async fn tenant_transaction(db: &TenantDb, ctx: &TenantContext) -> String {
    let mut tx = db.transaction(ctx).await.unwrap();
    let title: String = tx
        .query_one(TENANT_QUERY, &[1i64.into()])
        .await
        .unwrap()
        .get(0);
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

/// One strategy's sides: the raw baseline, and the statements sent by hand.
struct Setup<'a> {
    isolation: IsolationMode,
    ctx: &'a TenantContext,
    pool: Pool,
    sql: String,
    tenant: String,
    /// What this crate sent before the session check and the role pin.
    before: SameStatements,
    same: SameStatements,
    /// Row-level only: the same deployment sealed.
    sealed: Option<(&'a TenantDb, &'a TenantContext, SameStatements)>,
}

/// Creates a tenant with one record in `fixture`.
async fn seeded(fixture: &TestDb, isolation: IsolationMode, label: &str) -> TenantContext {
    let ctx = fixture.tenant(label, isolation).await;
    let mut tx = fixture.db.transaction(&ctx).await.unwrap();
    tx.execute(
        "INSERT INTO records (id, title) VALUES (1, $1)",
        &[ctx.tenant().as_str().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ctx
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Without TLS, like the raw pools (`NoTls`): the test server offers TLS, and `prefer`,
    // the default, would take it.
    let fixture = runtime.block_on(TestDb::with_config(
        Backend::Postgres,
        migrations(),
        without_tls,
    ));
    let sealed_fixture = runtime.block_on(TestDb::with_config(
        Backend::Postgres,
        migrations(),
        |config| {
            *config = config.clone().sealed_row_binding(true);
            without_tls(config);
        },
    ));
    let naming = fixture.db.naming();
    let (tenants, sealed_ctx) = runtime.block_on(async {
        let mut tenants = Vec::new();
        for isolation in [
            IsolationMode::Database,
            IsolationMode::Schema,
            IsolationMode::Row,
        ] {
            let ctx = seeded(&fixture, isolation, &format!("bench-{isolation}")).await;
            tenants.push((isolation, ctx));
        }
        let sealed = seeded(&sealed_fixture, IsolationMode::Row, "bench-sealed").await;
        (tenants, sealed)
    });
    let secret = Secret::new(TEST_SECRET).unwrap();

    println!(
        "tenant transaction (BEGIN, one SELECT, COMMIT) vs the same on a raw deadpool-postgres pool\n"
    );
    let mut setups = Vec::new();
    for (isolation, ctx) in &tenants {
        let tenant = ctx.tenant().to_string();
        let name = naming.sql_name(ctx.tenant());
        let shared = naming.platform_sql_name("shared");
        let app = naming.platform_sql_name("app");
        let by_hand = |role: &str, database: &str, begin: String, end, checked| SameStatements {
            pool: raw_pool_of(login_as_tenancy(&fixture, role, database), 1),
            begin,
            end,
            checked,
        };
        let setup = match isolation {
            IsolationMode::Database => Setup {
                isolation: *isolation,
                ctx,
                pool: raw_pool(superuser(&name)),
                sql: String::from(TENANT_QUERY),
                before: by_hand(&name, &name, "BEGIN".into(), "COMMIT", false),
                same: by_hand(&name, &name, "BEGIN".into(), "COMMIT", false),
                tenant,
                sealed: None,
            },
            IsolationMode::Schema => {
                let begin = format!("BEGIN; SET LOCAL ROLE \"{name}\"");
                Setup {
                    isolation: *isolation,
                    ctx,
                    pool: raw_pool(superuser(&shared)),
                    sql: format!("SELECT title FROM \"{name}\".records WHERE id = $1"),
                    before: by_hand(&app, &shared, begin.clone(), "COMMIT; CLOSE ALL", false),
                    same: by_hand(&app, &shared, begin, "COMMIT; CLOSE ALL", true),
                    tenant,
                    sealed: None,
                }
            }
            _ => {
                let before = by_hand(
                    &app,
                    &shared,
                    format!("BEGIN; SET LOCAL {TENANT_SETTING} = '{tenant}'"),
                    "COMMIT; CLOSE ALL",
                    false,
                );
                let mut same = by_hand(&app, &shared, String::new(), "COMMIT; CLOSE ALL", true);
                let pid = runtime.block_on(same.pid());
                same.begin = format!(
                    "BEGIN; SET LOCAL ROLE NONE; SET LOCAL {TENANT_SETTING} = '{}'",
                    secret.row_binding(pid, ctx.tenant())
                );
                let sealed_naming = sealed_fixture.db.naming();
                let mut sealed_same = SameStatements {
                    pool: raw_pool_of(
                        login_as_tenancy(
                            &sealed_fixture,
                            &sealed_naming.platform_sql_name("app"),
                            &sealed_naming.platform_sql_name("shared"),
                        ),
                        1,
                    ),
                    begin: String::new(),
                    end: "COMMIT; CLOSE ALL",
                    checked: true,
                };
                let pid = runtime.block_on(sealed_same.pid());
                sealed_same.begin = format!(
                    "BEGIN; SET LOCAL ROLE NONE; SET LOCAL {TENANT_SETTING} = '{}'",
                    secret.row_binding(pid, sealed_ctx.tenant())
                );
                Setup {
                    isolation: *isolation,
                    ctx,
                    pool: raw_pool(superuser(&shared)),
                    sql: String::from("SELECT title FROM records WHERE tenant_id = $2 AND id = $1"),
                    before,
                    same,
                    tenant,
                    sealed: Some((&sealed_fixture.db, &sealed_ctx, sealed_same)),
                }
            }
        };
        let id = 1i64;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match isolation {
            IsolationMode::Row => vec![&id, &setup.tenant],
            _ => vec![&id],
        };
        let tenant = &setup.tenant;
        assert_eq!(
            &runtime.block_on(raw_transaction(&setup.pool, &setup.sql, &params)),
            tenant
        );
        assert_eq!(&runtime.block_on(setup.before.transaction()), tenant);
        assert_eq!(&runtime.block_on(setup.same.transaction()), tenant);
        assert_eq!(
            &runtime.block_on(tenant_transaction(&fixture.db, ctx)),
            tenant
        );
        if let Some((db, sealed_ctx, sealed_same)) = &setup.sealed {
            let expected = sealed_ctx.tenant().to_string();
            assert_eq!(runtime.block_on(sealed_same.transaction()), expected);
            assert_eq!(
                runtime.block_on(tenant_transaction(db, sealed_ctx)),
                expected
            );
        }
        setups.push(setup);
    }
    runtime.block_on(pin_everything(&fixture));
    let only_isolation = std::env::var("TENANCY_BENCH_ISOLATION").ok();
    for setup in &setups {
        let isolation = setup.isolation;
        if only_isolation
            .as_ref()
            .is_some_and(|only| *only != isolation.to_string())
        {
            continue;
        }
        let (pool, sql, ctx, same) = (&setup.pool, &setup.sql, setup.ctx, &setup.same);
        let id = 1i64;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match isolation {
            IsolationMode::Row => vec![&id, &setup.tenant],
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
        let mut comparison = Comparison::new(&format!("{isolation} per tenant"))
            .rounds(300)
            .iterations(20)
            .baseline("raw deadpool-postgres", || {
                black_box(runtime.block_on(raw_transaction(pool, sql, &params)));
            })
            .variant("raw, BEGIN pipelined", || {
                black_box(runtime.block_on(raw_pipelined_transaction(pool, sql, &params)));
            })
            .variant("raw, statements before", || {
                black_box(runtime.block_on(setup.before.transaction()));
            })
            .variant("raw, same statements", || {
                black_box(runtime.block_on(same.transaction()));
            })
            .variant("TenantDb::transaction", || {
                black_box(runtime.block_on(tenant_transaction(&fixture.db, ctx)));
            })
            .variant("TenantDb, typed tier", || {
                black_box(runtime.block_on(typed_transaction(&fixture.db, ctx)));
            });
        if let Some((db, sealed_ctx, sealed_same)) = &setup.sealed {
            comparison = comparison
                .variant("raw, same statements, sealed", || {
                    black_box(runtime.block_on(sealed_same.transaction()));
                })
                .variant("TenantDb, sealed", || {
                    black_box(runtime.block_on(tenant_transaction(db, sealed_ctx)));
                });
        }
        let report = comparison.run();
        let goal = if isolation == IsolationMode::Database {
            1.05
        } else {
            1.10
        };
        let paired = report.paired_ratio("TenantDb::transaction");
        let pipelined = report.paired_ratio("raw, BEGIN pipelined");
        let before = report.paired_ratio("raw, statements before");
        let same_statements = report.paired_ratio("raw, same statements");
        println!(
            "  paired ratio {paired:.3} (goal <= {goal:.2}): {}\n  \
             split: round trip saved {pipelined:.3}x, binding on the server {:.3}x \
             (of which the session check and role pin {:.3}x), this crate's code {:.3}x",
            if paired <= goal { "met" } else { "NOT MET" },
            same_statements / pipelined,
            same_statements / before,
            paired / same_statements,
        );
        let typed = report.paired_ratio("TenantDb, typed tier");
        println!(
            "  typed tier: {:.3}x raw with the same statements (goal <= 1.05): {}; the portable \
             tier {:.3}x the typed one",
            typed / same_statements,
            if typed / same_statements <= 1.05 {
                "met"
            } else {
                "NOT MET"
            },
            paired / typed,
        );
        if setup.sealed.is_some() {
            let sealed = report.paired_ratio("TenantDb, sealed");
            let sealed_same = report.paired_ratio("raw, same statements, sealed");
            println!(
                "  sealed: {sealed:.3}x raw, {:.3}x the unsealed TenantDb (on by default only \
                 if <= 1.05); the seal on the server {:.3}x, this crate's code {:.3}x",
                sealed / paired,
                sealed_same / same_statements,
                sealed / sealed_same,
            );
        }
        println!();
    }
    drop(fixture);
    drop(sealed_fixture);
}
