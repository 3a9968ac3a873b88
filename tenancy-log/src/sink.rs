//! Per-tenant sinks: where the unredacted copy of an event goes, owned by its tenant.
//!
//! [`TenantSink`] is the interface (the audit and storage crates can implement it);
//! [`DirectorySink`] is the embedded default, a file per tenant under one directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tenancy_core::naming::Naming;
use tenancy_core::{TenantContext, TenantId};
use tracing::Level;

use crate::error::{Error, ErrorKind};

/// One event's unredacted record, for the sink of the tenant it belongs to.
///
/// The record is one JSON object and a newline, in the ops stream's JSON layout, with every
/// field whole: values the ops stream redacted, [`Regulated`](crate::Regulated) values, and
/// the fields of the event's spans that were recorded in this same tenant's context. Fields
/// of spans recorded for another tenant or outside any tenant are withheld
/// (`"withheld":true`): an event nested, by mistake or by design, inside another tenant's
/// span never carries that tenant's values into this sink.
pub struct TenantRecord<'a> {
    pub(crate) context: &'a TenantContext,
    pub(crate) level: Level,
    pub(crate) target: &'a str,
    pub(crate) line: &'a str,
}

impl TenantRecord<'_> {
    /// The context of the event: its tenant, actor and correlation id.
    pub fn context(&self) -> &TenantContext {
        self.context
    }

    /// The tenant the record belongs to.
    pub fn tenant(&self) -> &TenantId {
        self.context.tenant()
    }

    /// The event's level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The event's target.
    pub fn target(&self) -> &str {
        self.target
    }

    /// The record: one JSON object followed by `\n`.
    pub fn json_line(&self) -> &str {
        self.line
    }
}

impl fmt::Debug for TenantRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The line is the tenant's regulated content: not for a debug print.
        f.debug_struct("TenantRecord")
            .field("tenant", &self.tenant().as_str())
            .field("level", &self.level)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A destination owned by each tenant, for the unredacted copy of its events.
///
/// [`RedactingLayer`](crate::RedactingLayer) calls [`TenantSink::write`] on the thread that
/// emitted the event, once per record, with the record's tenant taken from the event's
/// context, never from its fields. An implementation must write the record where only that
/// tenant's data goes (a file, a table in the tenant's database, a bucket of the tenant);
/// it must not block for long: a sink backed by async I/O hands the record to a channel and
/// writes it from a task. A failed write drops the record (the regulated content goes
/// nowhere else) and the ops stream gets a line saying so, without the content.
///
/// Any `Fn(&TenantRecord) -> io::Result<()>` closure is a sink:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tenancy_log::{RedactingLayer, TenantRecord};
///
/// let lines = Arc::new(Mutex::new(Vec::<String>::new()));
/// let sink = {
///     let lines = lines.clone();
///     move |record: &TenantRecord<'_>| {
///         lines.lock().unwrap().push(record.json_line().to_owned());
///         Ok(())
///     }
/// };
/// let layer = RedactingLayer::builder().tenant_sink(sink).build();
/// # drop(layer);
/// ```
pub trait TenantSink: Send + Sync + 'static {
    /// Writes one record to its tenant's destination.
    fn write(&self, record: &TenantRecord<'_>) -> io::Result<()>;
}

impl<F> TenantSink for F
where
    F: Fn(&TenantRecord<'_>) -> io::Result<()> + Send + Sync + 'static,
{
    fn write(&self, record: &TenantRecord<'_>) -> io::Result<()> {
        self(record)
    }
}

impl<S: TenantSink + ?Sized> TenantSink for Arc<S> {
    fn write(&self, record: &TenantRecord<'_>) -> io::Result<()> {
        (**self).write(record)
    }
}

/// The embedded tenant sink: a file per tenant under one directory, named by
/// [`Naming::log_file`] (`{prefix}-{tenant}.jsonl`), one JSON record per line.
///
/// Files are created on a tenant's first record, readable and writable by the owner only
/// (mode `0600` on Unix), and opened in append mode; each record is written with one
/// `write` call. At most [`DirectorySink::max_open_files`] files are kept open; the least
/// recently used one is closed to make room.
///
/// ```
/// use tenancy_core::naming::Naming;
/// use tenancy_log::{DirectorySink, RedactingLayer};
///
/// # let dir = std::env::temp_dir().join(format!("tenancy-log-doc-{}", std::process::id()));
/// let sink = DirectorySink::new(&dir, Naming::new("tenancy")?)?;
/// assert!(sink.path(&"acme".parse()?).ends_with("tenancy-acme.jsonl"));
/// let layer = RedactingLayer::builder().tenant_sink(sink).build();
/// # drop(layer);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DirectorySink {
    dir: PathBuf,
    naming: Naming,
    max_open: usize,
    open: Mutex<OpenFiles>,
}

#[derive(Default)]
struct OpenFiles {
    tick: u64,
    files: HashMap<TenantId, (u64, Arc<Mutex<File>>)>,
}

impl DirectorySink {
    /// The default number of files kept open.
    pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

    /// A sink writing under `dir`, which is created (with its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>, naming: Naming) -> Result<Self, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::with_source(
                ErrorKind::Sink,
                format!(
                    "cannot create the tenant log directory {}: check that the parent exists \
                     and is writable",
                    dir.display()
                ),
                e,
            )
        })?;
        Ok(DirectorySink {
            dir,
            naming,
            max_open: Self::DEFAULT_MAX_OPEN_FILES,
            open: Mutex::new(OpenFiles::default()),
        })
    }

    /// Keeps at most `max` files open (at least 1).
    #[must_use]
    pub fn max_open_files(mut self, max: usize) -> Self {
        self.max_open = max.max(1);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `tenant`'s records.
    pub fn path(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(self.naming.log_file(tenant))
    }

    fn file(&self, tenant: &TenantId) -> io::Result<Arc<Mutex<File>>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.tick += 1;
        let tick = open.tick;
        if let Some((used, file)) = open.files.get_mut(tenant) {
            *used = tick;
            return Ok(file.clone());
        }
        if open.files.len() >= self.max_open {
            let oldest = open
                .files
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(tenant, _)| tenant.clone());
            if let Some(oldest) = oldest {
                open.files.remove(&oldest);
            }
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = Arc::new(Mutex::new(options.open(self.path(tenant))?));
        open.files.insert(tenant.clone(), (tick, file.clone()));
        Ok(file)
    }
}

impl TenantSink for DirectorySink {
    fn write(&self, record: &TenantRecord<'_>) -> io::Result<()> {
        let file = self.file(record.tenant())?;
        let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(record.json_line().as_bytes())
    }
}

impl fmt::Debug for DirectorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectorySink")
            .field("dir", &self.dir)
            .field("naming", &self.naming)
            .field("max_open", &self.max_open)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::Actor;

    fn record_for<'a>(ctx: &'a TenantContext, line: &'a str) -> TenantRecord<'a> {
        TenantRecord {
            context: ctx,
            level: Level::INFO,
            target: "test",
            line,
        }
    }

    #[test]
    fn files_are_per_tenant_and_survive_eviction() {
        let dir = std::env::temp_dir().join(format!(
            "tenancy-log-sink-{}-{}",
            std::process::id(),
            line!()
        ));
        let sink = DirectorySink::new(&dir, Naming::new("tt").unwrap())
            .unwrap()
            .max_open_files(2);
        let tenants: Vec<TenantContext> = ["a", "b", "c"]
            .iter()
            .map(|t| TenantContext::new(t.parse().unwrap(), Actor::anonymous()))
            .collect();
        for round in 0..3 {
            for ctx in &tenants {
                let line = format!("{} {round}\n", ctx.tenant());
                sink.write(&record_for(ctx, &line)).unwrap();
            }
        }
        for ctx in &tenants {
            let text = std::fs::read_to_string(sink.path(ctx.tenant())).unwrap();
            let t = ctx.tenant().as_str();
            assert_eq!(text, format!("{t} 0\n{t} 1\n{t} 2\n"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(sink.path(tenants[0].tenant()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "other users can read a tenant's file");
        }
        assert!(sink.open.lock().unwrap().files.len() <= 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_of_a_record_shows_no_content() {
        let ctx = TenantContext::new("acme".parse().unwrap(), Actor::anonymous());
        let record = record_for(&ctx, "{\"secret\":1}\n");
        assert!(!format!("{record:?}").contains("secret"));
    }
}
