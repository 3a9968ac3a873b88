//! Transactions cancelled at random points (waiting for a connection, mid-BEGIN, mid-query,
//! mid-COMMIT) never hand a later borrower another tenant's rows, role, schema,
//! tenant setting or open transaction.

mod common;

use std::time::Duration;

use common::{add_record, records};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_test::db::{Backend, TestDb};

/// What a transaction of a tenant must see from inside.
struct Expected {
    user: String,
    schema: String,
    setting: String,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn cancellable_work(fixture: &TestDb, ctx: &TenantContext, serial: i64) {
    let Ok(mut tx) = fixture.db.transaction(ctx).await else {
        return;
    };
    let _ = tx.query("SELECT title FROM records", &[]).await;
    let _ = tx
        .execute(
            "INSERT INTO records (id, title) VALUES ($1, $2)",
            &[serial.into(), ctx.tenant().as_str().into()],
        )
        .await;
    let _ = tx.query("SELECT pg_sleep(0.001)", &[]).await;
    if serial % 3 == 0 {
        let _ = tx.rollback().await;
    } else {
        let _ = tx.commit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomly_cancelled_transactions_leave_connections_clean() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = tenancy_test::db::test_pool();
        pool.max_connections = 6;
        pool.max_connections_per_pool = 2;
        *config = config.clone().pool(&pool);
    })
    .await;
    let naming = fixture.db.naming();
    let mut tenants = Vec::new();
    for (label, isolation) in [
        ("schema-a", IsolationMode::Schema),
        ("schema-b", IsolationMode::Schema),
        ("row-a", IsolationMode::Row),
        ("row-b", IsolationMode::Row),
        ("db-a", IsolationMode::Database),
        ("db-b", IsolationMode::Database),
    ] {
        let ctx = fixture.tenant(label, isolation).await;
        add_record(&fixture.db, &ctx, 0, ctx.tenant().as_str()).await;
        let name = naming.sql_name(ctx.tenant());
        let expected = match isolation {
            IsolationMode::Schema => Expected {
                user: name.clone(),
                schema: name.clone(),
                setting: String::new(),
            },
            IsolationMode::Row => Expected {
                user: naming.platform_sql_name("app"),
                schema: String::from("public"),
                setting: ctx.tenant().to_string(),
            },
            _ => Expected {
                user: name,
                schema: String::from("public"),
                setting: String::new(),
            },
        };
        tenants.push((ctx, expected));
    }

    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut cancelled = 0;
    for round in 0..300i64 {
        let (victim, _) = &tenants[(rng.next() % tenants.len() as u64) as usize];
        let cancel_after = Duration::from_micros(rng.next() % 4_000);
        let serial = 1_000 + round;
        if tokio::time::timeout(cancel_after, cancellable_work(&fixture, victim, serial))
            .await
            .is_err()
        {
            cancelled += 1;
        }

        let (ctx, expected) = &tenants[(rng.next() % tenants.len() as u64) as usize];
        let mut tx = fixture
            .db
            .transaction(ctx)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let row = tx
            .query_one(
                "SELECT current_user::text AS who, current_schema()::text AS schema, \
                 coalesce(split_part(current_setting('app.tenant_id', true), ':', 1), '') \
                 AS tenant, \
                 pg_current_xact_id_if_assigned()::text AS xid",
                &[],
            )
            .await
            .unwrap();
        let context = format!("round {round}, tenant {}", ctx.tenant());
        assert_eq!(row.get::<String>("who"), expected.user, "{context}");
        assert_eq!(row.get::<String>("tenant"), expected.setting, "{context}");
        assert_eq!(row.get::<String>("schema"), expected.schema, "{context}");
        assert_eq!(
            row.get::<Option<String>>("xid"),
            None,
            "{context}: the transaction began with work of an earlier one in it"
        );
        let titles: Vec<String> = tx
            .query("SELECT title FROM records", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("title"))
            .collect();
        assert!(
            titles.iter().all(|title| title == ctx.tenant().as_str()),
            "{context}: saw {titles:?}"
        );
        tx.commit().await.unwrap();
    }
    assert!(
        cancelled > 50,
        "only {cancelled} of 300 rounds were cancelled: tune the delays"
    );

    // Nothing is left inside a transaction on the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let admin = fixture.superuser("postgres").await;
    let pattern = format!("{}\\_%", fixture.prefix());
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE $1 \
             AND state LIKE 'idle in transaction%'",
            &[&pattern],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "connections were left idle in a transaction");
    let stats = fixture.db.pool_stats(fixture.server()).unwrap();
    assert!(
        stats.discarded > 0,
        "no connection was ever discarded: {stats:?}"
    );
}
