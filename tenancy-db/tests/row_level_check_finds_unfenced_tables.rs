//! The row-level isolation check passes on a correctly fenced schema and names every way a
//! table or the application role could let one tenant reach another's rows.

mod common;

use common::records;
use tenancy_core::IsolationMode;
use tenancy_db::ErrorKind;
use tenancy_test::db::{Backend, TestDb};

#[tokio::test]
async fn the_check_passes_when_fenced_and_names_each_gap() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    // A row-level tenant brings the shared tables up to date.
    fixture.tenant("acme", IsolationMode::Row).await;
    let reports = fixture
        .db
        .platform()
        .check_isolation(&tenancy_test::operator())
        .await
        .expect("a clean schema");
    let (_, report) = &reports[0];
    assert!(report.is_clean(), "{report}");
    assert!(
        report.shared_tables.is_empty(),
        "{:?}",
        report.shared_tables
    );

    let naming = fixture.db.naming();
    let (owner, app) = (
        naming.platform_sql_name("owner"),
        naming.platform_sql_name("app"),
    );
    let shared = fixture.superuser(&naming.platform_sql_name("shared")).await;
    shared
        .batch_execute(&format!(
            "SET ROLE \"{owner}\";
             CREATE TABLE notes (tenant_id text NOT NULL, body text);
             CREATE TABLE half (tenant_id text NOT NULL, x int);
             ALTER TABLE half ENABLE ROW LEVEL SECURITY;
             CREATE POLICY everyone ON half USING (true);
             CREATE TABLE codes (tenant_id text NOT NULL, code text UNIQUE);
             {codes_policy}
             CREATE TABLE countries (code text PRIMARY KEY);
             RESET ROLE;
             GRANT TRUNCATE ON records TO \"{app}\";
             ALTER ROLE \"{app}\" BYPASSRLS;",
            codes_policy = tenancy_db::rls::row_level_policy("codes").unwrap()
        ))
        .await
        .unwrap();

    let err = fixture
        .db
        .platform()
        .check_isolation(&tenancy_test::operator())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Isolation);
    let message = err.to_string();
    for expected in [
        "table notes does not ENABLE ROW LEVEL SECURITY",
        "table notes does not FORCE ROW LEVEL SECURITY",
        "table notes has no policy",
        "table half does not FORCE ROW LEVEL SECURITY",
        "policy everyone on half lets rows through without comparing tenant_id with the bound tenant",
        "unique index codes_code_key on codes does not include tenant_id",
        "may TRUNCATE records",
        "has BYPASSRLS",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert!(
        !message.contains("countries"),
        "reference data is not a finding:\n{message}"
    );

    shared
        .batch_execute(&format!(
            "ALTER ROLE \"{app}\" NOBYPASSRLS; REVOKE TRUNCATE ON records FROM \"{app}\";
             DROP TABLE notes, half, codes;"
        ))
        .await
        .unwrap();
    let reports = fixture
        .db
        .platform()
        .check_isolation(&tenancy_test::operator())
        .await
        .unwrap();
    assert_eq!(reports[0].1.shared_tables, ["countries"]);
}

#[tokio::test]
async fn keys_without_tenant_id_are_findings() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    fixture.tenant("acme", IsolationMode::Row).await;
    let naming = fixture.db.naming();
    let shared = fixture.superuser(&naming.platform_sql_name("shared")).await;
    shared
        .batch_execute(&format!(
            "SET ROLE \"{owner}\";
             CREATE TABLE parents (tenant_id text NOT NULL, id int, PRIMARY KEY (tenant_id, id),
                                   UNIQUE (id));
             CREATE TABLE children (tenant_id text NOT NULL, parent int REFERENCES parents (id));
             {p} {c}",
            owner = naming.platform_sql_name("owner"),
            p = tenancy_db::rls::row_level_policy("parents").unwrap(),
            c = tenancy_db::rls::row_level_policy("children").unwrap(),
        ))
        .await
        .unwrap();
    let message = fixture
        .db
        .platform()
        .check_isolation(&tenancy_test::operator())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unique index parents_id_key on parents"),
        "{message}"
    );
    assert!(
        message.contains("foreign key children_parent_fkey on children"),
        "{message}"
    );
}
