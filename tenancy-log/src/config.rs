//! [`LogConfig`] and [`install`]: the whole pipeline from configuration, in one call.

use std::io;
use std::path::PathBuf;

use tenancy_core::naming::Naming;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::error::{Error, ErrorKind};
use crate::layer::{Format, RedactingLayer, SinkEvents};
use crate::panic::install_panic_hook;
use crate::policy::{Policy, PolicyConfig};
use crate::sink::DirectorySink;

/// The configuration of the logging pipeline.
///
/// ```
/// use tenancy_log::{Format, LogConfig};
///
/// let mut config = LogConfig::default();
/// config.format = Format::Text;
/// config.policy.regulated = vec!["capa.title".into(), "capa.description".into()];
/// config.tenant_sink_dir = Some("./data/tenant-logs".into());
/// ```
///
/// With the `serde` feature it deserializes, every key optional, unknown keys refused; in
/// TOML:
///
/// ```toml
/// format = "json"                        # or "text"
/// filter = "info,tower_http=debug"       # EnvFilter directives; RUST_LOG, when set, wins
/// tenant_sink_dir = "/var/lib/app/tenant-logs"
/// naming_prefix = "tenancy"              # tenant files are {prefix}-{tenant}.jsonl
/// sink_events = "redacted"               # or "all"
/// panic_hook = true
///
/// [policy]
/// mode = "deny-list"
/// regulated = ["capa.title", "capa.description", "*.sources"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct LogConfig {
    /// The ops stream's format (JSON by default).
    pub format: Format,
    /// `EnvFilter` directives (`info` by default). When the `RUST_LOG` environment variable
    /// is set and not empty, [`LogConfig::env_filter`] uses it instead.
    pub filter: String,
    /// The classification policy.
    pub policy: PolicyConfig,
    /// The directory of the embedded tenant sink (a file per tenant); `None` (the default)
    /// for no tenant sink: regulated content is then redacted and kept nowhere.
    pub tenant_sink_dir: Option<PathBuf>,
    /// The deployment prefix of the tenant sink's file names (`tenancy` by default).
    pub naming_prefix: String,
    /// Which events the tenant sink receives.
    pub sink_events: SinkEvents,
    /// Whether [`install`] replaces the panic hook with [`install_panic_hook`]'s (`true` by
    /// default).
    pub panic_hook: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: Format::Json,
            filter: "info".to_owned(),
            policy: PolicyConfig::default(),
            tenant_sink_dir: None,
            naming_prefix: "tenancy".to_owned(),
            sink_events: SinkEvents::Redacted,
            panic_hook: true,
        }
    }
}

impl LogConfig {
    /// The layer this configuration describes, writing the ops stream to standard output.
    pub fn layer(&self) -> Result<RedactingLayer, Error> {
        self.layer_with_writer(io::stdout as fn() -> io::Stdout)
    }

    /// The layer this configuration describes, writing the ops stream to `writer`.
    pub fn layer_with_writer<W>(&self, writer: W) -> Result<RedactingLayer<W>, Error>
    where
        W: for<'a> MakeWriter<'a> + 'static,
    {
        let mut builder = RedactingLayer::builder()
            .writer(writer)
            .format(self.format)
            .policy(Policy::from_config(&self.policy)?)
            .sink_events(self.sink_events);
        if let Some(dir) = &self.tenant_sink_dir {
            let naming = Naming::new(&self.naming_prefix).map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    "the log configuration's naming_prefix is invalid",
                    e,
                )
            })?;
            builder = builder.tenant_sink(DirectorySink::new(dir, naming)?);
        }
        Ok(builder.build())
    }

    /// The stock `EnvFilter` for this configuration: `RUST_LOG` when it is set and not
    /// empty, [`LogConfig::filter`] otherwise.
    pub fn env_filter(&self) -> Result<EnvFilter, Error> {
        self.filter_with(std::env::var("RUST_LOG").ok())
    }

    fn filter_with(&self, rust_log: Option<String>) -> Result<EnvFilter, Error> {
        let (directives, origin) = match rust_log {
            Some(directives) if !directives.trim().is_empty() => (directives, "RUST_LOG"),
            _ => (self.filter.clone(), "the log configuration's filter"),
        };
        EnvFilter::try_new(&directives).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidFilter,
                format!(
                    "{origin} does not parse as filter directives: write them like \
                     `info,my_crate=debug`"
                ),
                e,
            )
        })
    }
}

/// Installs the pipeline as the process's global subscriber: the stock `EnvFilter`
/// ([`LogConfig::env_filter`]), then a [`RedactingLayer`] writing the ops stream to
/// standard output (with the embedded tenant sink when `tenant_sink_dir` is set), on a
/// `tracing_subscriber::registry()`; and, unless `panic_hook` is false, the redacting panic
/// hook.
///
/// To stack other layers beside it (an OpenTelemetry layer, say), build the same pieces
/// with [`LogConfig::env_filter`] and [`LogConfig::layer`] and install them yourself.
///
/// ```no_run
/// let mut config = tenancy_log::LogConfig::default();
/// config.policy.regulated = vec!["capa.title".into(), "capa.description".into()];
/// config.tenant_sink_dir = Some("./data/tenant-logs".into());
/// tenancy_log::install(&config)?;
/// # Ok::<(), tenancy_log::Error>(())
/// ```
pub fn install(config: &LogConfig) -> Result<(), Error> {
    let filter = config.env_filter()?;
    let layer = config.layer()?;
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::AlreadyInstalled,
                "a global tracing subscriber is already installed in this process: install \
                 the logging pipeline once, at start-up",
                e,
            )
        })?;
    if config.panic_hook {
        install_panic_hook();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn rust_log_wins_over_the_configured_filter_and_bad_directives_are_refused() {
        let config = LogConfig {
            filter: "info,[=bad".to_owned(),
            ..LogConfig::default()
        };
        let err = config.filter_with(None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidFilter);
        assert!(
            err.to_string()
                .starts_with("the log configuration's filter"),
            "{err}"
        );
        assert!(config.filter_with(Some("debug".into())).is_ok());
        assert!(
            config.filter_with(Some("  ".into())).is_err(),
            "blank RUST_LOG is unset"
        );
        let err = LogConfig::default()
            .filter_with(Some("[=bad".into()))
            .unwrap_err();
        assert!(err.to_string().starts_with("RUST_LOG"), "{err}");
    }

    #[test]
    fn a_bad_naming_prefix_or_pattern_is_a_config_error() {
        let config = LogConfig {
            tenant_sink_dir: Some(std::env::temp_dir()),
            naming_prefix: "Not-Valid".to_owned(),
            ..LogConfig::default()
        };
        assert_eq!(config.layer().unwrap_err().kind(), ErrorKind::Config);
        let mut config = LogConfig::default();
        config.policy.regulated = vec!["has space".to_owned()];
        assert_eq!(config.layer().unwrap_err().kind(), ErrorKind::InvalidPolicy);
    }

    #[test]
    fn install_sets_the_global_subscriber_once() {
        let config = LogConfig {
            panic_hook: false,
            ..LogConfig::default()
        };
        install(&config).unwrap();
        assert_eq!(
            install(&config).unwrap_err().kind(),
            ErrorKind::AlreadyInstalled
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn the_documented_configuration_deserializes() {
        let dir = std::env::temp_dir().join(format!("tenancy-log-config-{}", std::process::id()));
        let json = serde_json::json!({
            "format": "text",
            "filter": "info,tower_http=debug",
            "tenant_sink_dir": dir,
            "naming_prefix": "tenancy",
            "sink_events": "all",
            "panic_hook": true,
            "policy": {"mode": "deny-list", "regulated": ["capa.title", "capa.description", "*.sources"]}
        });
        let config: LogConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.format, Format::Text);
        assert_eq!(config.sink_events, SinkEvents::All);
        assert!(config.layer().is_ok());
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
        let empty: LogConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, LogConfig::default());
        assert!(serde_json::from_str::<LogConfig>(r#"{"fromat":"json"}"#).is_err());
    }
}
