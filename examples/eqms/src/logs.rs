//! The app's logs through `tenancy-log`: every line stamped with its tenant, CAPA titles
//! and descriptions classified regulated (redacted in the ops stream, whole in the tenant's
//! own file).

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tenancy_core::TenantId;
use tenancy_log::tracing_subscriber::layer::SubscriberExt as _;
use tenancy_log::{LogConfig, tracing_subscriber};
use tracing::Dispatch;
use tracing::instrument::WithSubscriber as _;

use crate::StartError;
use crate::config::Config;

/// The fields classified regulated: never in the ops stream.
pub const REGULATED_FIELDS: [&str; 3] = ["capa.title", "capa.description", "*.sources"];

/// The naming prefix of the tenant log files (`{dir}/eqms-{tenant}.jsonl`).
const NAMING_PREFIX: &str = "eqms";

/// The logging pipeline of one app: the stock `EnvFilter` (`RUST_LOG`, `info` by default)
/// and the redacting layer, with its per-tenant sink.
#[derive(Clone, Debug)]
pub struct Logs {
    dispatch: Dispatch,
    tenant_dir: PathBuf,
}

impl Logs {
    /// The pipeline `config` describes; tenant files under `data_dir` unless configured.
    pub(crate) fn new(config: &mut Config, data_dir: &Path) -> Result<Logs, StartError> {
        let tenant_dir = config
            .tenant_log_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("tenant-logs"));
        let mut log = LogConfig::default();
        log.format = config.log_format;
        log.policy.regulated = REGULATED_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        log.tenant_sink_dir = Some(tenant_dir.clone());
        log.naming_prefix = NAMING_PREFIX.to_owned();
        let writer = std::mem::replace(
            &mut config.ops_writer,
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::sink),
        );
        let subscriber = tracing_subscriber::registry()
            .with(log.env_filter()?)
            .with(log.layer_with_writer(writer)?);
        Ok(Logs {
            dispatch: Dispatch::new(subscriber),
            tenant_dir,
        })
    }

    /// The subscriber every request and job of the app logs through.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The file holding `tenant`'s unredacted events.
    pub fn tenant_log(&self, tenant: &TenantId) -> PathBuf {
        self.tenant_dir
            .join(format!("{NAMING_PREFIX}-{tenant}.jsonl"))
    }

    /// Makes this pipeline the process's (for what logs outside requests and jobs) and
    /// routes panics through it. Once per process: the binary calls it, tests do not.
    pub fn install_global(&self) -> Result<(), StartError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())?;
        tenancy_log::install_panic_hook();
        Ok(())
    }
}

/// Runs the request under the app's logging pipeline (the outermost layer, so the tenant
/// layers' own events go through it too).
pub(crate) async fn with_logs(
    State(dispatch): State<Dispatch>,
    request: Request,
    next: Next,
) -> Response {
    next.run(request).with_subscriber(dispatch).await
}
