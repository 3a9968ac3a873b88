//! The isolation evidence a bundle carries: where the tenant's data is and what the
//! isolation check said about that server when the bundle was made.

use serde::{Deserialize, Serialize};
use tenancy_core::{Catalog, IsolationMode, PlatformContext, TenantId};
use tenancy_db::{ErrorKind as DbErrorKind, TenantDb};

use crate::error::{Error, ErrorKind};

/// The tenant's placement and the result of [`tenancy_db::Platform::check_isolation`] for
/// its server, at export time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IsolationEvidence {
    /// `database`, `schema` or `row` (PostgreSQL), or `database` for a SQLite file.
    pub strategy: String,
    /// The configured server that holds the tenant's data.
    pub server: String,
    /// `PostgreSQL` or `SQLite`.
    pub engine: String,
    /// Where the tenant's trail is: its database, its schema in the shared database, the
    /// shared tables of row-level tenants, or its file.
    pub location: String,
    /// `passed`, `failed`, or `not applicable` (a SQLite file: the connection opens that
    /// file only).
    pub check: String,
    /// What the check found wrong on the tenant's server (empty when it passed).
    pub findings: Vec<String>,
    /// The operator whose context ran the check.
    pub checked_by: String,
}

impl IsolationEvidence {
    /// Reads the tenant's placement from the catalog and runs the isolation check (which
    /// writes its run to the platform log).
    pub async fn collect(
        db: &TenantDb,
        op: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<Self, Error> {
        let record = db
            .catalog()
            .lookup(tenant)
            .await
            .map_err(|error| {
                Error::with_source(ErrorKind::Database, "reading the tenant's placement", error)
            })?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidEvent,
                    format!("tenant `{tenant}` is not in the catalog"),
                )
            })?;
        let server = record.placement.server.as_str().to_owned();
        let (postgres, check, findings) = match db.platform().check_isolation(op).await {
            Ok(reports) => {
                let postgres = reports.iter().any(|(name, _)| name.as_str() == server);
                let check = if postgres { "passed" } else { "not applicable" };
                (postgres, check, Vec::new())
            }
            Err(error) if error.kind() == DbErrorKind::Isolation => {
                let prefix = format!("server `{server}`");
                let findings: Vec<String> = error
                    .to_string()
                    .lines()
                    .filter(|line| line.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect();
                let check = if findings.is_empty() {
                    "passed"
                } else {
                    "failed"
                };
                (true, check, findings)
            }
            Err(error) => return Err(error.into()),
        };
        let naming = db.naming();
        let name = naming.sql_name(tenant);
        let location = match (postgres, record.placement.isolation) {
            (false, _) => format!("file {name}.sqlite3"),
            (true, IsolationMode::Database) => format!("database {name}"),
            (true, IsolationMode::Schema) => format!(
                "schema {name} in database {}",
                naming.platform_sql_name("shared")
            ),
            (true, _) => format!(
                "shared tables of database {}, fenced by row-level security on tenant_id",
                naming.platform_sql_name("shared")
            ),
        };
        Ok(IsolationEvidence {
            strategy: record.placement.isolation.as_str().to_owned(),
            server,
            engine: if postgres { "PostgreSQL" } else { "SQLite" }.to_owned(),
            location,
            check: check.to_owned(),
            findings,
            checked_by: op.operator().id().to_owned(),
        })
    }
}
