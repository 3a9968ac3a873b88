//! The configuration of the layers wired into the app, read from the environment in one
//! place ([`Config::from_env`]). Every default is embedded: nothing needs a server.

use std::fmt;
use std::path::PathBuf;

use tenancy_core::IsolationMode;
use tenancy_db::DbConfig;
use tenancy_log::Format;
use tenancy_log::tracing_subscriber::fmt::writer::BoxMakeWriter;
use tenancy_storage::{S3Config, S3Credentials, StorageConfig};

/// Where the app's tenant databases, logs, cache, jobs and attachments go.
pub struct Config {
    /// The tenant databases: a SQLite file per tenant in the data directory when `None`;
    /// the `TENANCY_DB_*` variables of [`DbConfig::from_env`] (`TENANCY_DB_URL` and
    /// `TENANCY_DB_SECRET` for PostgreSQL) when any is set.
    pub db: Option<DbConfig>,
    /// `EQMS_TENANT_ISOLATION`: how new tenants (the demo tenants, signed-up firms) are
    /// placed: `database` (default; a file of its own on the embedded default), `schema` or
    /// `row` (PostgreSQL only).
    pub isolation: IsolationMode,
    /// `EQMS_LOG_FORMAT`: `json` (default) or `text`, for the ops stream.
    pub log_format: Format,
    /// Where the ops stream is written: standard output by default; tests give a capture.
    pub ops_writer: BoxMakeWriter,
    /// `EQMS_TENANT_LOG_DIR`: the directory of the per-tenant log files (the unredacted
    /// events, a file per tenant); `{data dir}/tenant-logs` by default.
    pub tenant_log_dir: Option<PathBuf>,
    /// `EQMS_REDIS_URL`: the response cache on this Redis; in process when unset.
    pub redis_url: Option<String>,
    /// The cache's application namespace inside each tenant's keys (`eqms`).
    pub cache_namespace: String,
    /// `EQMS_QUEUE_URL`: the job queue on Redis (`redis://...`) or PostgreSQL
    /// (`postgres://...`); a SQLite file in the data directory when unset.
    pub queue_url: Option<String>,
    /// `EQMS_QUEUE_NAME`: the queue's name (`eqms-notify-approver`).
    pub queue_name: String,
    /// Where the tenants' attachments go: a directory per tenant under the data directory
    /// when `None` ([`crate::attachments::local_storage`]); `EQMS_S3_URL` (an S3 endpoint,
    /// `http://127.0.0.1:9000` for the test server) puts them in a bucket
    /// `{EQMS_S3_BUCKET_PREFIX}-{tenant}` per tenant (prefix `eqms`), in region
    /// `EQMS_S3_REGION` (`us-east-1`), with the static key `EQMS_S3_ACCESS_KEY_ID` /
    /// `EQMS_S3_SECRET_ACCESS_KEY` (both required).
    pub storage: Option<StorageConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: None,
            isolation: IsolationMode::Database,
            log_format: Format::Json,
            ops_writer: BoxMakeWriter::new(std::io::stdout),
            tenant_log_dir: None,
            redis_url: None,
            cache_namespace: "eqms".to_owned(),
            queue_url: None,
            queue_name: "eqms-notify-approver".to_owned(),
            storage: None,
        }
    }
}

impl Config {
    /// The defaults, overridden by the `EQMS_*` variables set in the environment.
    pub fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = Config::default();
        if std::env::vars_os().any(|(name, _)| {
            name.to_str()
                .is_some_and(|name| name.starts_with(tenancy_db::ENV_PREFIX))
        }) {
            config.db = Some(DbConfig::from_env().map_err(|error| error.to_string())?);
        }
        if let Some(isolation) = var("EQMS_TENANT_ISOLATION") {
            config.isolation = match isolation.as_str() {
                "database" => IsolationMode::Database,
                "schema" => IsolationMode::Schema,
                "row" => IsolationMode::Row,
                _ => {
                    return Err(format!(
                        "EQMS_TENANT_ISOLATION={isolation:?} is not `database`, `schema` or `row`"
                    ));
                }
            };
        }
        if config.isolation != IsolationMode::Database && config.db.is_none() {
            return Err(format!(
                "EQMS_TENANT_ISOLATION={} needs PostgreSQL: set TENANCY_DB_URL and \
                 TENANCY_DB_SECRET (the embedded default has a file per tenant)",
                config.isolation
            ));
        }
        if let Some(format) = var("EQMS_LOG_FORMAT") {
            config.log_format = match format.as_str() {
                "json" => Format::Json,
                "text" => Format::Text,
                _ => {
                    return Err(format!(
                        "EQMS_LOG_FORMAT={format:?} is not `json` or `text`"
                    ));
                }
            };
        }
        config.tenant_log_dir = var("EQMS_TENANT_LOG_DIR").map(PathBuf::from);
        config.redis_url = var("EQMS_REDIS_URL");
        config.queue_url = var("EQMS_QUEUE_URL");
        if let Some(name) = var("EQMS_QUEUE_NAME") {
            config.queue_name = name;
        }
        if let Some(url) = var("EQMS_S3_URL") {
            let required = |name: &str| {
                var(name).ok_or_else(|| format!("EQMS_S3_URL is set but {name} is not; set both"))
            };
            let access_key = required("EQMS_S3_ACCESS_KEY_ID")?;
            let secret_key = required("EQMS_S3_SECRET_ACCESS_KEY")?;
            let region = var("EQMS_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned());
            let prefix = var("EQMS_S3_BUCKET_PREFIX").unwrap_or_else(|| "eqms".to_owned());
            let s3 = S3Config::new(region)
                .endpoint_url(url)
                .credentials(S3Credentials::new(access_key, secret_key));
            config.storage = Some(StorageConfig::s3(s3).naming_prefix(&prefix));
        }
        Ok(config)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry passwords: say which backend, not where.
        f.debug_struct("Config")
            .field("db_from_env", &self.db.is_some())
            .field("isolation", &self.isolation)
            .field("log_format", &self.log_format)
            .field("tenant_log_dir", &self.tenant_log_dir)
            .field("redis", &self.redis_url.is_some())
            .field("cache_namespace", &self.cache_namespace)
            .field("queue_server", &self.queue_url.is_some())
            .field("queue_name", &self.queue_name)
            .field("s3", &self.storage.is_some())
            .finish_non_exhaustive()
    }
}
