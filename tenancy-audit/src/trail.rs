//! The trail handle: appends in the caller's transaction, reads a record's history.

use std::collections::BTreeSet;
use std::sync::Arc;

use tenancy_core::TenantContext;
use tenancy_db::{Row, Transaction, Value};

use crate::entry::{Action, Entry, Event, GENESIS_HASH};
use crate::error::{Error, ErrorKind};
use crate::schema::{COLUMNS, now};

/// The audit trail of every tenant, as the application configures it: which record types
/// are regulated (their changes need a reason) and which have their reads recorded.
///
/// Cheap to clone; holds no connection. Every call takes the tenant's
/// [`tenancy_db::Transaction`], so the entry commits or rolls back with the change it
/// records.
///
/// ```no_run
/// # async fn run(db: &tenancy_db::TenantDb, ctx: &tenancy_core::TenantContext) -> Result<(), Box<dyn std::error::Error>> {
/// use tenancy_audit::{AuditTrail, Event};
///
/// let trail = AuditTrail::new().regulated("capa").record_reads("capa");
/// let mut tx = db.transaction(ctx).await?;
/// tx.execute("UPDATE capas SET status = 'closed' WHERE id = $1", &[7.into()]).await?;
/// trail
///     .record(&mut tx, ctx, Event::status_change("capa", "7").reason("effectiveness verified"))
///     .await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AuditTrail {
    regulated: Arc<BTreeSet<String>>,
    recorded_reads: Arc<BTreeSet<String>>,
}

impl AuditTrail {
    /// A trail with no regulated record type and no recorded reads.
    pub fn new() -> Self {
        AuditTrail::default()
    }

    /// Changes to `record_type` (update, delete, status change, restore) need a reason.
    pub fn regulated(mut self, record_type: &str) -> Self {
        Arc::make_mut(&mut self.regulated).insert(record_type.to_owned());
        self
    }

    /// Reads of `record_type` are recorded by [`AuditTrail::read`].
    pub fn record_reads(mut self, record_type: &str) -> Self {
        Arc::make_mut(&mut self.recorded_reads).insert(record_type.to_owned());
        self
    }

    /// Whether `record_type` is regulated.
    pub fn is_regulated(&self, record_type: &str) -> bool {
        self.regulated.contains(record_type)
    }

    /// Whether reads of `record_type` are recorded.
    pub fn records_reads_of(&self, record_type: &str) -> bool {
        self.recorded_reads.contains(record_type)
    }

    /// Appends `event` to the trail of `tx`'s tenant, in `tx`, and returns the entry. The
    /// actor and request id come from `ctx`, which must be the transaction's tenant; the
    /// time comes from the database's clock.
    ///
    /// Concurrent writers of one tenant take turns on the tenant's head row until they
    /// commit, so entries are numbered 1, 2, 3, ... in commit order with no gap and no
    /// fork; a transaction that rolls back leaves no entry and no number used.
    pub async fn record(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        event: Event,
    ) -> Result<Entry, Error> {
        if tx.tenant() != ctx.tenant() {
            return Err(Error::new(
                ErrorKind::InvalidEvent,
                "the context's tenant is not the transaction's: record an event in the \
                 transaction of the tenant it belongs to",
            ));
        }
        event.check(self.is_regulated(&event.record_type))?;
        let postgres = tx.postgres().is_ok();
        let lock = format!(
            "UPDATE tenancy_audit_head SET seq = tenancy_audit_head.seq RETURNING seq, hash, {}",
            now(postgres)
        );
        let head = match tx.query_opt(&lock, &[]).await? {
            Some(head) => head,
            None => {
                // A row-level tenant's first entry: its head row is made here. Two first
                // writers both insert; one waits for the other and inserts nothing.
                tx.execute(
                    "INSERT INTO tenancy_audit_head (seq, hash) VALUES (0, $1) \
                     ON CONFLICT DO NOTHING",
                    &[GENESIS_HASH.into()],
                )
                .await?;
                tx.query_one(&lock, &[]).await?
            }
        };
        let seq: i64 = head.try_get(0)?;
        let prev_hash: String = head.try_get(1)?;
        let recorded_at: String = head.try_get(2)?;
        let actor = ctx.actor();
        let mut entry = Entry {
            seq: u64::try_from(seq).map_err(|_| corrupt("a negative sequence number"))? + 1,
            recorded_at,
            tenant: ctx.tenant().as_str().to_owned(),
            actor_id: actor.id().to_owned(),
            actor_name: actor.display_name().to_owned(),
            action: event.action.as_str().to_owned(),
            record_type: event.record_type,
            record_id: event.record_id,
            old_value: event.old_value,
            new_value: event.new_value,
            reason: event.reason,
            signature_meaning: event.signature_meaning,
            request_id: Some(ctx.correlation_id().as_str().to_owned()),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        let params = entry_params(&entry);
        let insert = format!(
            "INSERT INTO tenancy_audit ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        if postgres {
            // One round trip: the head moves in the same statement as the insert.
            tx.execute(
                &format!(
                    "WITH head AS (UPDATE tenancy_audit_head SET seq = $1, hash = $15 \
                     RETURNING 1) {insert}"
                ),
                &params,
            )
            .await?;
        } else {
            tx.execute(&insert, &params).await?;
            tx.execute(
                "UPDATE tenancy_audit_head SET seq = $1, hash = $2",
                &[params[0].clone(), params[14].clone()],
            )
            .await?;
        }
        Ok(entry)
    }

    /// Records a read of `record_type`/`record_id` when reads of that type are recorded
    /// ([`AuditTrail::record_reads`]); otherwise records nothing and returns `None`.
    pub async fn read(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        record_type: &str,
        record_id: &str,
    ) -> Result<Option<Entry>, Error> {
        if !self.records_reads_of(record_type) {
            return Ok(None);
        }
        self.record(tx, ctx, Event::new(Action::Read, record_type, record_id))
            .await
            .map(Some)
    }

    /// Every entry about `record_type`/`record_id`, oldest first: the record's whole
    /// history.
    pub async fn history(
        &self,
        tx: &mut Transaction,
        record_type: &str,
        record_id: &str,
    ) -> Result<Vec<Entry>, Error> {
        tx.query(
            &format!(
                "SELECT {COLUMNS} FROM tenancy_audit WHERE record_type = $1 AND record_id = $2 \
                 ORDER BY seq"
            ),
            &[record_type.into(), record_id.into()],
        )
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    /// The tenant's chain head: the last sequence number and hash (0 and
    /// [`GENESIS_HASH`] before the first entry).
    pub async fn head(&self, tx: &mut Transaction) -> Result<(u64, String), Error> {
        head(tx).await
    }
}

pub(crate) async fn head(tx: &mut Transaction) -> Result<(u64, String), Error> {
    match tx
        .query_opt("SELECT seq, hash FROM tenancy_audit_head", &[])
        .await?
    {
        Some(row) => {
            let seq: i64 = row.try_get(0)?;
            let seq = u64::try_from(seq).map_err(|_| corrupt("a negative sequence number"))?;
            Ok((seq, row.try_get(1)?))
        }
        None => Ok((0, GENESIS_HASH.to_owned())),
    }
}

fn entry_params(entry: &Entry) -> Vec<Value> {
    let seq = i64::try_from(entry.seq).unwrap_or(i64::MAX);
    vec![
        seq.into(),
        entry.recorded_at.as_str().into(),
        entry.tenant.as_str().into(),
        entry.actor_id.as_str().into(),
        entry.actor_name.as_str().into(),
        entry.action.as_str().into(),
        entry.record_type.as_str().into(),
        entry.record_id.as_str().into(),
        entry.old_value.as_deref().into(),
        entry.new_value.as_deref().into(),
        entry.reason.as_deref().into(),
        entry.signature_meaning.as_deref().into(),
        entry.request_id.as_deref().into(),
        entry.prev_hash.as_str().into(),
        entry.hash.as_str().into(),
    ]
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("the audit trail holds {what}: verify the trail"),
    )
}

/// An entry from a row of [`COLUMNS`].
pub(crate) fn entry_from_row(row: &Row) -> Result<Entry, Error> {
    let seq: i64 = row.try_get(0)?;
    Ok(Entry {
        seq: u64::try_from(seq).map_err(|_| corrupt("a negative sequence number"))?,
        recorded_at: row.try_get(1)?,
        tenant: row.try_get(2)?,
        actor_id: row.try_get(3)?,
        actor_name: row.try_get(4)?,
        action: row.try_get(5)?,
        record_type: row.try_get(6)?,
        record_id: row.try_get(7)?,
        old_value: row.try_get(8)?,
        new_value: row.try_get(9)?,
        reason: row.try_get(10)?,
        signature_meaning: row.try_get(11)?,
        request_id: row.try_get(12)?,
        prev_hash: row.try_get(13)?,
        hash: row.try_get(14)?,
    })
}
