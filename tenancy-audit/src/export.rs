//! The inspection export: a directory with the manifest, the entries as JSON Lines and
//! CSV, an HTML timeline per record, and the SHA-256 sum of every file. Entries are
//! streamed from the database to the files, so memory does not grow with the trail. The
//! format is specified in `FORMAT.md`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy_core::TenantContext;
use tenancy_db::{Transaction, Value};
use tenancy_storage::TenantBucket;

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::entry::{Action, Entry, Event};
use crate::error::{Error, ErrorKind, io};
use crate::evidence::IsolationEvidence;
use crate::schema::COLUMNS;
use crate::trail::{AuditTrail, entry_from_row, head};
use crate::verify::file_sha256;
use tenancy_core::hex;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The entries, one JSON object a line.
pub const ENTRIES_JSONL: &str = "entries.jsonl";
/// The entries as CSV.
pub const ENTRIES_CSV: &str = "entries.csv";
/// The timeline of each record, for people.
pub const TIMELINE_HTML: &str = "timeline.html";
/// The SHA-256 sums, in the format of `sha256sum`.
pub const SUMS: &str = "SHA256SUMS";

/// The format name in every manifest.
pub const BUNDLE_FORMAT: &str = "tenancy-audit-bundle/1";

/// What an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// The whole trail.
    All,
    /// Entries `first` to `last`.
    Sequence {
        /// The first entry.
        first: u64,
        /// The last entry.
        last: u64,
    },
    /// Entries recorded from `from` (included) to `to` (excluded), RFC 3339 in UTC, compared
    /// as text (byte order): write them as the trail does, `2026-12-01T00:00:00Z`.
    Time {
        /// Start, included.
        from: String,
        /// End, excluded.
        to: String,
    },
    /// Every entry of one kind of record.
    RecordType {
        /// The record type.
        record_type: String,
    },
    /// Every entry of one record: its history.
    Record {
        /// The record type.
        record_type: String,
        /// The record id.
        record_id: String,
    },
}

impl Scope {
    /// Whether the scope is an unbroken run of the chain (so a verifier can check every
    /// link), rather than a selection of entries.
    pub fn is_contiguous(&self) -> bool {
        matches!(
            self,
            Scope::All | Scope::Sequence { .. } | Scope::Time { .. }
        )
    }
}

/// The software that made a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct System {
    /// `tenancy-audit`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// Who made a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GeneratedBy {
    /// The actor's id.
    pub actor_id: String,
    /// The actor's display name.
    pub actor_name: String,
    /// The request that asked for the export.
    pub request_id: String,
}

/// The chain head when the bundle was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChainHead {
    /// The last entry's number (0 for an empty trail).
    pub seq: u64,
    /// The last entry's hash.
    pub hash: String,
}

/// A bundle's `manifest.json`: what it covers, who made it and when, what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The tenant.
    pub tenant: String,
    /// The software that made the bundle.
    pub system: System,
    /// What the export covers.
    pub scope: Scope,
    /// Whether the entries are an unbroken run of the chain.
    pub contiguous: bool,
    /// When the export was recorded, by the database's clock (the export entry's time).
    pub generated_at: String,
    /// Who asked for it.
    pub generated_by: GeneratedBy,
    /// The number of the trail entry that records this export.
    pub export_entry_seq: u64,
    /// How many entries the bundle holds.
    pub entries: u64,
    /// How many of each action.
    pub counts_by_action: BTreeMap<String, u64>,
    /// The first entry's number.
    pub first_seq: Option<u64>,
    /// The last entry's number.
    pub last_seq: Option<u64>,
    /// The first entry's `prev_hash`: where the run joins the chain.
    pub first_prev_hash: Option<String>,
    /// The last entry's hash.
    pub last_hash: Option<String>,
    /// The chain head when the export began (the export's own entry comes after it).
    pub chain_head: ChainHead,
    /// Where the tenant's data is, and the isolation check at export time.
    pub isolation: Option<IsolationEvidence>,
    /// The signed checkpoint of the chain head taken for this export
    /// ([`AuditTrail::export_signed`]), which an inspector checks with the platform's
    /// public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// Writes the three entry files as entries stream past, hashing nothing twice.
struct EntryFiles {
    jsonl: BufWriter<File>,
    csv: BufWriter<File>,
    jsonl_sha: Sha256,
    entries: u64,
    counts: BTreeMap<String, u64>,
    first: Option<(u64, String)>,
    last: Option<(u64, String)>,
}

/// What [`EntryFiles`] wrote.
struct Written {
    entries: u64,
    counts: BTreeMap<String, u64>,
    jsonl_sha: String,
    first: Option<(u64, String)>,
    last: Option<(u64, String)>,
}

fn create(dir: &Path, name: &str) -> Result<BufWriter<File>, Error> {
    File::create(dir.join(name))
        .map(|file| BufWriter::with_capacity(64 * 1024, file))
        .map_err(|error| io(format!("creating {name} in {}", dir.display()), error))
}

const CSV_HEADER: &str = "seq,recorded_at,tenant,actor_id,actor_name,action,record_type,\
    record_id,old_value,new_value,reason,signature_meaning,request_id,prev_hash,hash\n";

fn csv_field(out: &mut String, value: Option<&str>) {
    // RFC 4180: every field quoted, quotes doubled; an absent value is an empty field,
    // an empty one `""`.
    if let Some(value) = value {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    }
}

fn csv_line(entry: &Entry) -> String {
    let seq = entry.seq.to_string();
    let fields = [
        Some(seq.as_str()),
        Some(&entry.recorded_at),
        Some(&entry.tenant),
        Some(&entry.actor_id),
        Some(&entry.actor_name),
        Some(&entry.action),
        Some(&entry.record_type),
        Some(&entry.record_id),
        entry.old_value.as_deref(),
        entry.new_value.as_deref(),
        entry.reason.as_deref(),
        entry.signature_meaning.as_deref(),
        entry.request_id.as_deref(),
        Some(&entry.prev_hash),
        Some(&entry.hash),
    ];
    let mut line = String::with_capacity(512);
    for (n, field) in fields.into_iter().enumerate() {
        if n > 0 {
            line.push(',');
        }
        csv_field(&mut line, field);
    }
    line.push_str("\r\n");
    line
}

impl EntryFiles {
    fn create(dir: &Path) -> Result<Self, Error> {
        let mut csv = create(dir, ENTRIES_CSV)?;
        csv.write_all(CSV_HEADER.replace('\n', "\r\n").as_bytes())
            .map_err(|error| io(format!("writing {ENTRIES_CSV}"), error))?;
        Ok(EntryFiles {
            jsonl: create(dir, ENTRIES_JSONL)?,
            csv,
            jsonl_sha: Sha256::new(),
            entries: 0,
            counts: BTreeMap::new(),
            first: None,
            last: None,
        })
    }

    fn push(&mut self, entry: &Entry) -> Result<(), Error> {
        let mut line = serde_json::to_string(entry).map_err(|error| {
            Error::with_source(ErrorKind::Io, "encoding an entry as JSON", error)
        })?;
        line.push('\n');
        self.jsonl_sha.update(line.as_bytes());
        self.jsonl
            .write_all(line.as_bytes())
            .map_err(|error| io(format!("writing {ENTRIES_JSONL}"), error))?;
        self.csv
            .write_all(csv_line(entry).as_bytes())
            .map_err(|error| io(format!("writing {ENTRIES_CSV}"), error))?;
        self.entries += 1;
        *self.counts.entry(entry.action.clone()).or_default() += 1;
        if self.first.is_none() {
            self.first = Some((entry.seq, entry.prev_hash.clone()));
        }
        self.last = Some((entry.seq, entry.hash.clone()));
        Ok(())
    }

    fn finish(mut self) -> Result<Written, Error> {
        self.jsonl
            .flush()
            .map_err(|error| io(format!("writing {ENTRIES_JSONL}"), error))?;
        self.csv
            .flush()
            .map_err(|error| io(format!("writing {ENTRIES_CSV}"), error))?;
        Ok(Written {
            entries: self.entries,
            counts: self.counts,
            jsonl_sha: hex(&self.jsonl_sha.finalize()),
            first: self.first,
            last: self.last,
        })
    }
}

/// Old and new JSON values, pretty-printed when they parse.
fn pretty(value: Option<&str>) -> String {
    match value {
        None => String::new(),
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.to_owned()),
    }
}

const HTML_HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Audit trail</title><style>body{font-family:sans-serif;margin:2em}\
table{border-collapse:collapse;width:100%;margin-bottom:2em}\
td,th{border:1px solid #999;padding:4px;vertical-align:top;text-align:left}\
pre{margin:0;white-space:pre-wrap}</style></head><body>\n";

fn html_row(out: &mut String, entry: &Entry) {
    out.push_str("<tr><td>");
    out.push_str(&entry.seq.to_string());
    for cell in [
        Some(entry.recorded_at.as_str()),
        Some(&format!("{} ({})", entry.actor_name, entry.actor_id)),
        Some(&entry.action),
        entry.reason.as_deref(),
        entry.signature_meaning.as_deref(),
    ] {
        out.push_str("</td><td>");
        out.push_str(&tenancy_core::escape_html(cell.unwrap_or("")));
    }
    for value in [&entry.old_value, &entry.new_value] {
        out.push_str("</td><td><pre>");
        out.push_str(&tenancy_core::escape_html(&pretty(value.as_deref())));
        out.push_str("</pre>");
    }
    out.push_str("</td></tr>\n");
}

/// The bounds and filter of an export, as SQL.
struct Selection {
    first: u64,
    last: u64,
    filter: String,
    params: Vec<Value>,
}

impl Selection {
    fn params(&self) -> Vec<Value> {
        let mut params = vec![
            i64::try_from(self.first).unwrap_or(i64::MAX).into(),
            i64::try_from(self.last).unwrap_or(i64::MAX).into(),
        ];
        params.extend(self.params.iter().cloned());
        params
    }

    fn sql(&self, order: &str) -> String {
        format!(
            "SELECT {COLUMNS} FROM tenancy_audit WHERE seq BETWEEN $1 AND $2{} ORDER BY {order}",
            self.filter
        )
    }
}

async fn selection(tx: &mut Transaction, scope: &Scope, head: u64) -> Result<Selection, Error> {
    let all = |first: u64, last: u64| Selection {
        first,
        last,
        filter: String::new(),
        params: Vec::new(),
    };
    Ok(match scope {
        Scope::All => all(1, head),
        Scope::Sequence { first, last } => all((*first).max(1), (*last).min(head)),
        Scope::Time { from, to } => {
            let row = tx
                .query_one(
                    "SELECT min(seq), max(seq) FROM tenancy_audit \
                     WHERE recorded_at >= $1 AND recorded_at < $2",
                    &[from.as_str().into(), to.as_str().into()],
                )
                .await?;
            let first: Option<i64> = row.try_get(0)?;
            let last: Option<i64> = row.try_get(1)?;
            match (first, last) {
                (Some(first), Some(last)) => all(
                    u64::try_from(first).unwrap_or(1),
                    u64::try_from(last).unwrap_or(0).min(head),
                ),
                _ => all(1, 0),
            }
        }
        Scope::RecordType { record_type } => Selection {
            filter: " AND record_type = $3".to_owned(),
            params: vec![record_type.as_str().into()],
            ..all(1, head)
        },
        Scope::Record {
            record_type,
            record_id,
        } => Selection {
            filter: " AND record_type = $3 AND record_id = $4".to_owned(),
            params: vec![record_type.as_str().into(), record_id.as_str().into()],
            ..all(1, head)
        },
    })
}

impl AuditTrail {
    /// Exports the `scope` of `tx`'s tenant's trail into `dir` (created if missing; it
    /// must hold no bundle already), records the export in the trail, in `tx`, and returns
    /// the manifest. Commit `tx` to keep the record of the export; the files are written
    /// either way.
    ///
    /// The entry files (`entries.jsonl`, `entries.csv`, `timeline.html`) depend only on the
    /// entries: the same scope exported again gives the same bytes. `isolation` is the
    /// evidence to carry ([`IsolationEvidence::collect`]).
    pub async fn export(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        scope: &Scope,
        isolation: Option<IsolationEvidence>,
        dir: &Path,
    ) -> Result<Manifest, Error> {
        self.export_inner(tx, ctx, scope, isolation, dir, None)
            .await
    }

    /// Like [`AuditTrail::export`], after signing the chain head with `signer` and storing
    /// the checkpoint in the tenant's `bucket` ([`AuditTrail::checkpoint`]); the manifest
    /// carries the checkpoint, which [`verify_bundle_signed`](crate::verify_bundle_signed)
    /// checks with the platform's public key.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is a separate input of the export"
    )]
    pub async fn export_signed(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        scope: &Scope,
        isolation: Option<IsolationEvidence>,
        dir: &Path,
        signer: &CheckpointSigner,
        bucket: &TenantBucket,
    ) -> Result<Manifest, Error> {
        self.export_inner(tx, ctx, scope, isolation, dir, Some((signer, bucket)))
            .await
    }

    async fn export_inner(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        scope: &Scope,
        isolation: Option<IsolationEvidence>,
        dir: &Path,
        signed: Option<(&CheckpointSigner, &TenantBucket)>,
    ) -> Result<Manifest, Error> {
        if tx.tenant() != ctx.tenant() {
            return Err(Error::new(
                ErrorKind::InvalidEvent,
                "the context's tenant is not the transaction's: export a tenant's trail in \
                 that tenant's transaction",
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|error| io(format!("creating {}", dir.display()), error))?;
        if dir.join(MANIFEST).exists() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} already holds a bundle: export into a new directory",
                    dir.display()
                ),
            ));
        }
        let checkpoint = match signed {
            Some((signer, bucket)) => Some(self.checkpoint(tx, ctx, signer, bucket).await?),
            None => None,
        };
        let (head_seq, head_hash) = head(tx).await?;
        let selection = selection(tx, scope, head_seq).await?;
        let params = selection.params();
        let mut files = EntryFiles::create(dir)?;
        {
            let mut rows = tx.query_stream(&selection.sql("seq"), &params).await?;
            while let Some(row) = rows.next().await {
                files.push(&entry_from_row(&row?)?)?;
            }
        }
        let Written {
            entries,
            counts,
            jsonl_sha,
            first,
            last,
        } = files.finish()?;
        self.write_timeline(tx, ctx, &selection, dir).await?;
        let export_entry = self
            .record(
                tx,
                ctx,
                Event::new(Action::Export, "audit_trail", ctx.tenant().as_str()).new_value(
                    serde_json::json!({
                        "scope": scope,
                        "entries": entries,
                        "first_seq": first.as_ref().map(|f| f.0),
                        "last_seq": last.as_ref().map(|l| l.0),
                        "entries_jsonl_sha256": jsonl_sha,
                    }),
                ),
            )
            .await?;
        let manifest = Manifest {
            format: BUNDLE_FORMAT.to_owned(),
            tenant: ctx.tenant().as_str().to_owned(),
            system: System {
                name: env!("CARGO_PKG_NAME").to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            scope: scope.clone(),
            contiguous: scope.is_contiguous(),
            generated_at: export_entry.recorded_at.clone(),
            generated_by: GeneratedBy {
                actor_id: export_entry.actor_id.clone(),
                actor_name: export_entry.actor_name.clone(),
                request_id: export_entry.request_id.clone().unwrap_or_default(),
            },
            export_entry_seq: export_entry.seq,
            entries,
            counts_by_action: counts,
            first_seq: first.as_ref().map(|f| f.0),
            last_seq: last.as_ref().map(|l| l.0),
            first_prev_hash: first.map(|f| f.1),
            last_hash: last.map(|l| l.1),
            chain_head: ChainHead {
                seq: head_seq,
                hash: head_hash,
            },
            isolation,
            checkpoint,
        };
        let mut text = serde_json::to_string_pretty(&manifest)
            .map_err(|error| Error::with_source(ErrorKind::Io, "encoding the manifest", error))?;
        text.push('\n');
        std::fs::write(dir.join(MANIFEST), text)
            .map_err(|error| io(format!("writing {MANIFEST}"), error))?;
        let mut sums = String::new();
        for name in [ENTRIES_CSV, ENTRIES_JSONL, MANIFEST, TIMELINE_HTML] {
            let sum = file_sha256(&dir.join(name))
                .map_err(|error| io(format!("reading back {name}"), error))?;
            sums.push_str(&format!("{sum}  {name}\n"));
        }
        std::fs::write(dir.join(SUMS), sums)
            .map_err(|error| io(format!("writing {SUMS}"), error))?;
        Ok(manifest)
    }

    /// `timeline.html`: each record's entries as a table, old and new values side by
    /// side, records in order of type and id. A second streamed pass, in record order.
    async fn write_timeline(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        selection: &Selection,
        dir: &Path,
    ) -> Result<(), Error> {
        let mut html = create(dir, TIMELINE_HTML)?;
        let write = |html: &mut BufWriter<File>, text: &str| {
            html.write_all(text.as_bytes())
                .map_err(|error| io(format!("writing {TIMELINE_HTML}"), error))
        };
        let mut out = String::from(HTML_HEAD);
        out.push_str("<h1>Audit trail of tenant ");
        out.push_str(&tenancy_core::escape_html(ctx.tenant().as_str()));
        out.push_str("</h1>\n");
        write(&mut html, &out)?;
        let params = selection.params();
        let mut rows = tx
            .query_stream(&selection.sql("record_type, record_id, seq"), &params)
            .await?;
        let mut current: Option<(String, String)> = None;
        while let Some(row) = rows.next().await {
            let entry = entry_from_row(&row?)?;
            let mut out = String::new();
            let record = (entry.record_type.clone(), entry.record_id.clone());
            if current.as_ref() != Some(&record) {
                if current.is_some() {
                    out.push_str("</tbody></table>\n");
                }
                out.push_str("<h2>");
                out.push_str(&tenancy_core::escape_html(&record.0));
                out.push(' ');
                out.push_str(&tenancy_core::escape_html(&record.1));
                out.push_str(
                    "</h2>\n<table><thead><tr><th>#</th><th>When (UTC)</th><th>Who</th>\
                     <th>Action</th><th>Reason</th><th>Signature</th><th>Old value</th>\
                     <th>New value</th></tr></thead><tbody>\n",
                );
                current = Some(record);
            }
            html_row(&mut out, &entry);
            write(&mut html, &out)?;
        }
        drop(rows);
        let tail = if current.is_some() {
            "</tbody></table>\n</body></html>\n"
        } else {
            "<p>No entries.</p>\n</body></html>\n"
        };
        write(&mut html, tail)?;
        html.flush()
            .map_err(|error| io(format!("writing {TIMELINE_HTML}"), error))
    }
}
