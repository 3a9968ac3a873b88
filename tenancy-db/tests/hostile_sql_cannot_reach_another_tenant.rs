//! SQL injected into one tenant's request cannot reach another tenant where the strategy
//! can stop it: with the sealed row-level binding, rebinding the transaction by SQL is an
//! error through every statement API, a proof cannot be replayed on another connection,
//! and the key cannot be read. Where a strategy cannot stop it (schema per tenant), the
//! isolation check says so for a deployment that declares its tenants' SQL hostile.

mod common;

use common::{add_record, all_titles, records};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{ErrorKind, TenantDb, Transaction};
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::operator;

const PERMISSION_DENIED: &str = "42501";

/// The titles a transaction can read, or the error that stopped it.
async fn titles_in(tx: &mut Transaction) -> Result<Vec<String>, tenancy_db::Error> {
    let rows = tx
        .query("SELECT title FROM records ORDER BY title", &[])
        .await?;
    Ok(rows.iter().map(|row| row.get::<String>(0)).collect())
}

/// Runs `attack` in a transaction of `ctx`, then reads; returns what the read saw (or
/// `None` when something refused).
async fn after<F>(db: &TenantDb, ctx: &TenantContext, attack: F) -> Option<Vec<String>>
where
    F: AsyncFnOnce(&mut Transaction) -> Result<(), tenancy_db::Error>,
{
    let mut tx = db.transaction(ctx).await.unwrap();
    let seen = match attack(&mut tx).await {
        Ok(()) => titles_in(&mut tx).await.ok(),
        Err(_) => None,
    };
    tx.rollback().await.unwrap();
    seen
}

#[tokio::test]
async fn a_sealed_binding_cannot_be_rebound_by_sql() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    add_record(&fixture.db, &acme, 1, "Acme CAPA").await;
    add_record(&fixture.db, &beta, 1, "Beta CAPA").await;
    let beta_id = beta.tenant().as_str().to_owned();

    // Unsealed, the setting is the binding: SQL that rewrites it reads another tenant.
    let rebind = format!("SELECT set_config('app.tenant_id', '{beta_id}', true)");
    let seen = after(&fixture.db, &acme, async |tx| tx.batch(&rebind).await).await;
    assert_eq!(
        seen.unwrap(),
        ["Beta CAPA"],
        "the threat the seal exists for"
    );

    // Sealed: every way of rebinding is refused by the policy itself.
    let sealed = fixture.reopen_with(records(), |config| {
        *config = config.clone().sealed_row_binding(true);
    });
    sealed.platform().prepare(&operator()).await.unwrap();
    assert_eq!(all_titles(&sealed, &acme).await, ["Acme CAPA"]);
    assert_eq!(all_titles(&sealed, &beta).await, ["Beta CAPA"]);

    let bare = format!("SET LOCAL app.tenant_id = '{beta_id}'");
    let with_own_proof = "SELECT set_config('app.tenant_id', \
         $1 || ':' || split_part(current_setting('app.tenant_id'), ':', 2), true)";
    assert_eq!(
        after(&sealed, &acme, async |tx| tx.batch(&rebind).await).await,
        None,
        "batch"
    );
    assert_eq!(
        after(&sealed, &acme, async |tx| tx.batch(&bare).await).await,
        None,
        "SET LOCAL"
    );
    assert_eq!(
        after(&sealed, &acme, async |tx| {
            tx.execute(with_own_proof, &[beta_id.as_str().into()])
                .await
                .map(drop)
        })
        .await,
        None,
        "execute, with acme's own proof"
    );
    assert_eq!(
        after(&sealed, &acme, async |tx| {
            tx.query(
                "SELECT set_config('app.tenant_id', $1, true)",
                &[format!("{beta_id}:").into()],
            )
            .await
            .map(drop)
        })
        .await,
        None,
        "query"
    );
    assert_eq!(
        after(&sealed, &acme, async |tx| {
            let client = tx.as_postgres().await?.expect("PostgreSQL");
            client.batch_execute(&rebind).await.unwrap();
            Ok(())
        })
        .await,
        None,
        "the raw client"
    );
    // One statement that rebinds and reads at once: refused, or acme's rows only.
    let mut tx = sealed.transaction(&acme).await.unwrap();
    let read = tx
        .query(
            &format!(
                "SELECT title FROM records, \
                 (SELECT set_config('app.tenant_id', '{beta_id}', true)) rebound"
            ),
            &[],
        )
        .await;
    if let Ok(rows) = read {
        for row in rows {
            assert_eq!(row.get::<String>(0), "Acme CAPA");
        }
    }
    tx.rollback().await.unwrap();

    // Writing a row for another tenant is refused too, sealed or not.
    let mut tx = sealed.transaction(&acme).await.unwrap();
    let refused = tx
        .execute(
            "INSERT INTO records (tenant_id, id, title) VALUES ($1, 9, 'planted')",
            &[beta_id.as_str().into()],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.sql_state(), Some(PERMISSION_DENIED), "{refused}");
    tx.rollback().await.unwrap();

    // Nothing leaked, nothing planted.
    assert_eq!(all_titles(&sealed, &beta).await, ["Beta CAPA"]);
}

#[tokio::test]
async fn a_proof_is_good_on_its_own_connection_only_and_the_key_stays_hidden() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        *config = config.clone().sealed_row_binding(true);
    })
    .await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    add_record(&fixture.db, &beta, 1, "Beta CAPA").await;

    // Beta's bound value, as someone who saw it once would hold it; beta's transaction
    // stays open, so acme's is on another connection.
    let mut beta_tx = fixture.db.transaction(&beta).await.unwrap();
    let row = beta_tx
        .query_one(
            "SELECT current_setting('app.tenant_id') AS bound, pg_backend_pid() AS pid, \
             current_setting('track_activities') AS tracked",
            &[],
        )
        .await
        .unwrap();
    let beta_bound: String = row.get("bound");
    let beta_pid: i32 = row.get("pid");
    assert_eq!(row.get::<String>("tracked"), "off");

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let acme_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(acme_pid, beta_pid);
    // Another session of the application role cannot read beta's binding either.
    let visible = tx
        .query(
            "SELECT coalesce(query, '') AS query FROM pg_stat_activity \
             WHERE pid = $1",
            &[beta_pid.into()],
        )
        .await
        .unwrap();
    for row in &visible {
        let text: String = row.get("query");
        assert!(!text.contains(&beta_bound), "{text}");
    }
    tx.batch(&format!(
        "SELECT set_config('app.tenant_id', '{beta_bound}', true)"
    ))
    .await
    .unwrap();
    let replayed = titles_in(&mut tx).await.unwrap_err();
    assert_eq!(replayed.sql_state(), Some(PERMISSION_DENIED), "{replayed}");
    assert!(
        tenancy_test::error_chain(&replayed).contains("no valid proof"),
        "{replayed}"
    );
    tx.rollback().await.unwrap();
    beta_tx.rollback().await.unwrap();

    // The key is the owner's alone.
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let refused = tx
        .query("SELECT * FROM tenancy.binding_key", &[])
        .await
        .unwrap_err();
    assert_eq!(refused.sql_state(), Some(PERMISSION_DENIED), "{refused}");
    tx.rollback().await.unwrap();
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let source: String = tx
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE oid = 'tenancy.bound_tenant()'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tx.rollback().await.unwrap();
    assert!(
        source.contains("binding_key"),
        "the function reads the key…"
    );
    assert!(!source.contains("\\x"), "…but holds none of it");

    // The sealed deployment's check is clean.
    fixture
        .db
        .platform()
        .check_isolation(&operator())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_check_names_what_cannot_stop_hostile_sql() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        config.assume_hostile_sql = true;
    })
    .await;
    fixture.tenant("acme", IsolationMode::Row).await;
    let schema = fixture.tenant("schema", IsolationMode::Schema).await;
    let found = fixture
        .db
        .platform()
        .check_isolation(&operator())
        .await
        .unwrap_err();
    assert_eq!(found.kind(), ErrorKind::Isolation);
    let found = found.to_string();
    assert!(
        found.contains("the row-level binding is not sealed"),
        "{found}"
    );
    assert!(found.contains("may act as 1 schema tenants"), "{found}");

    // Sealed, and with no schema tenant left, nothing is found.
    let node = fixture.reopen_with(records(), |config| {
        *config = config.clone().sealed_row_binding(true);
    });
    let platform = node.platform();
    platform.prepare(&operator()).await.unwrap();
    platform
        .suspend(&operator(), schema.tenant())
        .await
        .unwrap();
    platform
        .drop_tenant(&operator(), schema.tenant())
        .await
        .unwrap();
    platform.check_isolation(&operator()).await.unwrap();
}
