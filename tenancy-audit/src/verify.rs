//! Verification of a chain of entries: from a bundle on disk (offline, needing nothing but
//! the bundle) or from a tenant's live trail.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tenancy_db::Transaction;

use crate::entry::{Entry, GENESIS_HASH};
use ed25519_dalek::VerifyingKey;
use tenancy_core::hex;

use crate::error::{Error, ErrorKind, io};
use crate::export::{ENTRIES_CSV, ENTRIES_JSONL, MANIFEST, Manifest, SUMS, TIMELINE_HTML};
use crate::schema::COLUMNS;
use crate::trail::{entry_from_row, head};

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The first sequence number that is not as it must be, when the problem is in the
    /// entries; `None` for a problem with the bundle as a whole (a sum, the manifest).
    pub seq: Option<u64>,
    /// What is wrong, for people.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "entry {seq}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The tenant whose trail was verified.
    pub tenant: String,
    /// Entries read.
    pub entries: u64,
    /// The first and last sequence numbers read.
    pub seq_range: Option<(u64, u64)>,
    /// The hash of the last entry read.
    pub last_hash: Option<String>,
    /// The first problem, or `None` when everything verified.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether everything verified.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The first bad sequence number, if the problem is in the entries.
    pub fn first_bad_seq(&self) -> Option<u64> {
        self.problem.as_ref().and_then(|p| p.seq)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.problem, self.seq_range) {
            (Some(problem), _) => write!(f, "FAILED for tenant `{}`: {problem}", self.tenant),
            (None, Some((first, last))) => write!(
                f,
                "OK: tenant `{}`, {} entries, sequence {first} to {last}, last hash {}",
                self.tenant,
                self.entries,
                self.last_hash.as_deref().unwrap_or("")
            ),
            (None, None) => write!(f, "OK: tenant `{}`, no entries", self.tenant),
        }
    }
}

/// Checks entries one at a time, in order, holding nothing but the last one's number and
/// hash: each entry's hash matches its content, it belongs to the tenant, its number is the
/// next one and its `prev_hash` is the previous entry's hash.
///
/// ```
/// use tenancy_audit::ChainVerifier;
///
/// let verifier = ChainVerifier::from_genesis("acme");
/// let report = verifier.finish();
/// assert!(report.is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    tenant: String,
    contiguous: bool,
    next: Option<(u64, String)>,
    report: Report,
    counts: BTreeMap<String, u64>,
}

impl ChainVerifier {
    /// A chain that starts at entry 1.
    pub fn from_genesis(tenant: &str) -> Self {
        ChainVerifier::starting_at(tenant, 1, GENESIS_HASH)
    }

    /// A chain that starts at entry `seq`, whose `prev_hash` must be `prev_hash`.
    pub fn starting_at(tenant: &str, seq: u64, prev_hash: &str) -> Self {
        ChainVerifier {
            next: Some((seq, prev_hash.to_owned())),
            contiguous: true,
            ..ChainVerifier::selection(tenant)
        }
    }

    /// A selection of a chain (a record's entries): each entry's hash and tenant are
    /// checked and numbers must increase; links are checked between consecutive numbers
    /// only.
    pub fn selection(tenant: &str) -> Self {
        ChainVerifier {
            tenant: tenant.to_owned(),
            contiguous: false,
            next: None,
            report: Report {
                tenant: tenant.to_owned(),
                entries: 0,
                seq_range: None,
                last_hash: None,
                problem: None,
            },
            counts: BTreeMap::new(),
        }
    }

    /// The number the next entry must have, where it is known.
    fn expected(&self) -> u64 {
        match (&self.next, self.report.seq_range) {
            (Some((seq, _)), _) => *seq,
            (None, Some((_, last))) => last + 1,
            (None, None) => 1,
        }
    }

    /// Records a line that is not an entry: the problem is at the next expected number.
    pub fn fail_here(&mut self, what: String) {
        let seq = self.expected();
        self.fail(seq, what);
    }

    fn fail(&mut self, seq: u64, what: String) {
        if self.report.problem.is_none() {
            self.report.problem = Some(Problem {
                seq: Some(seq),
                what,
            });
        }
    }

    /// Checks the next entry. Returns `false` once a problem was found.
    pub fn push(&mut self, entry: &Entry) -> bool {
        if self.report.problem.is_some() {
            return false;
        }
        let expected = self.expected();
        if self.contiguous {
            let (want_seq, want_prev) = self.next.clone().unwrap_or_default();
            if entry.seq != want_seq {
                let what = if entry.seq > want_seq {
                    format!("missing: the next entry read is {}", entry.seq)
                } else {
                    format!(
                        "out of order: entry {} read where {want_seq} belongs",
                        entry.seq
                    )
                };
                self.fail(want_seq, what);
                return false;
            }
            if entry.prev_hash != want_prev {
                self.fail(
                    entry.seq,
                    "its prev_hash is not the previous entry's hash: the chain was broken"
                        .to_owned(),
                );
                return false;
            }
        } else if let Some((_, last)) = self.report.seq_range
            && entry.seq <= last
        {
            self.fail(
                expected,
                format!("out of order: entry {} read after {last}", entry.seq),
            );
            return false;
        }
        if entry.tenant != self.tenant {
            self.fail(
                entry.seq,
                format!(
                    "belongs to another tenant ({}), not `{}`",
                    tenancy_core::quote(&entry.tenant),
                    self.tenant
                ),
            );
            return false;
        }
        if entry.compute_hash() != entry.hash {
            self.fail(
                entry.seq,
                "its content does not match its hash: the entry was changed".to_owned(),
            );
            return false;
        }
        self.report.entries += 1;
        self.report.seq_range = Some(match self.report.seq_range {
            Some((first, _)) => (first, entry.seq),
            None => (entry.seq, entry.seq),
        });
        self.report.last_hash = Some(entry.hash.clone());
        *self.counts.entry(entry.action.clone()).or_default() += 1;
        if self.contiguous {
            self.next = Some((entry.seq + 1, entry.hash.clone()));
        }
        true
    }

    /// The report so far.
    pub fn finish(self) -> Report {
        self.report
    }
}

/// Verifies the live trail of `tx`'s tenant from its first entry to its head, reading the
/// entries as a stream (memory does not grow with the trail).
pub async fn verify_trail(tx: &mut Transaction) -> Result<Report, Error> {
    let tenant = tx.tenant().as_str().to_owned();
    let (head_seq, head_hash) = head(tx).await?;
    let mut verifier = ChainVerifier::from_genesis(&tenant);
    let bound = [i64::try_from(head_seq).unwrap_or(i64::MAX).into()];
    {
        let mut rows = tx
            .query_stream(
                &format!("SELECT {COLUMNS} FROM tenancy_audit WHERE seq <= $1 ORDER BY seq"),
                &bound,
            )
            .await?;
        while let Some(row) = rows.next().await {
            let entry = entry_from_row(&row?)?;
            if !verifier.push(&entry) {
                break;
            }
        }
    }
    let mut report = verifier.finish();
    if report.problem.is_none() {
        let last = report.seq_range.map_or(0, |(_, last)| last);
        if last != head_seq {
            report.problem = Some(Problem {
                seq: Some(last + 1),
                what: format!("missing: the head says the trail ends at entry {head_seq}"),
            });
        } else if head_seq > 0 && report.last_hash.as_deref() != Some(head_hash.as_str()) {
            report.problem = Some(Problem {
                seq: Some(head_seq),
                what: "the head's hash is not the last entry's".to_owned(),
            });
        }
    }
    Ok(report)
}

/// SHA-256 of a file, read in blocks.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Verifies an export bundle with nothing but its files: the entries' chain (each hash,
/// each link, no gap, every entry the manifest's tenant's), the manifest's counts, range
/// and chain head, and the SHA-256 sum of every file. Reads the entries as a stream.
///
/// The first problem found is in [`Report::problem`], with the first bad sequence number
/// where the problem is in the entries. An error only when the bundle cannot be read.
pub fn verify_bundle(dir: &Path) -> Result<Report, Error> {
    let manifest_path = dir.join(MANIFEST);
    let manifest: Manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(manifest) => manifest,
            Err(error) => {
                return Ok(bundle_problem(
                    String::new(),
                    format!("{MANIFEST} is not a manifest of this format: {error}"),
                ));
            }
        },
        Err(error) => {
            return Err(io(format!("reading {}", manifest_path.display()), error));
        }
    };
    let tenant = manifest.tenant.clone();
    let mut verifier = if manifest.contiguous {
        match (manifest.first_seq, &manifest.first_prev_hash) {
            (Some(first), Some(prev)) => ChainVerifier::starting_at(&tenant, first, prev),
            _ => ChainVerifier::from_genesis(&tenant),
        }
    } else {
        ChainVerifier::selection(&tenant)
    };
    let entries_path = dir.join(ENTRIES_JSONL);
    let file = File::open(&entries_path)
        .map_err(|error| io(format!("reading {}", entries_path.display()), error))?;
    for line in BufReader::new(file).split(b'\n') {
        let line =
            line.map_err(|error| io(format!("reading {}", entries_path.display()), error))?;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(entry) => {
                if !verifier.push(&entry) {
                    break;
                }
            }
            Err(error) => {
                verifier.fail_here(format!("the line is not an entry: {error}"));
                break;
            }
        }
    }
    let counts = verifier.counts.clone();
    let mut report = verifier.finish();
    if report.problem.is_some() {
        return Ok(report);
    }
    // What the manifest promises about the entries.
    let last = report.seq_range.map(|(_, last)| last);
    if report.entries != manifest.entries || last != manifest.last_seq {
        let seq = if manifest.contiguous {
            Some(last.map_or(manifest.first_seq.unwrap_or(1), |last| last + 1))
        } else {
            None
        };
        report.problem = Some(Problem {
            seq,
            what: format!(
                "missing: the manifest lists {} entries up to {:?}, the bundle holds {} up \
                 to {last:?}",
                manifest.entries, manifest.last_seq, report.entries
            ),
        });
        return Ok(report);
    }
    if manifest.contiguous && report.last_hash != manifest.last_hash {
        report.problem = Some(Problem {
            seq: last,
            what: "the last entry's hash is not the manifest's".to_owned(),
        });
        return Ok(report);
    }
    if counts != manifest.counts_by_action {
        report.problem = Some(Problem {
            seq: None,
            what: "the entry counts per action are not the manifest's".to_owned(),
        });
        return Ok(report);
    }
    if let Some(problem) = check_sums(dir)? {
        report.problem = Some(problem);
    }
    Ok(report)
}

/// [`verify_bundle`], then the manifest's signed checkpoint: signed by `key`, for the
/// bundle's tenant, and the bundle's entry at its number (when the bundle holds it) has the
/// hash it signed. A bundle without a checkpoint fails.
pub fn verify_bundle_signed(dir: &Path, key: &VerifyingKey) -> Result<Report, Error> {
    let mut report = verify_bundle(dir)?;
    if report.problem.is_some() {
        return Ok(report);
    }
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join(MANIFEST))
            .map_err(|error| io(format!("reading {MANIFEST}"), error))?,
    )
    .map_err(|error| Error::with_source(ErrorKind::Verification, "reading the manifest", error))?;
    let problem = |seq: Option<u64>, what: &str| Problem {
        seq,
        what: what.to_owned(),
    };
    let Some(checkpoint) = manifest.checkpoint else {
        report.problem = Some(problem(None, "the bundle carries no signed checkpoint"));
        return Ok(report);
    };
    if checkpoint.tenant != manifest.tenant || !checkpoint.verify_signature(key) {
        report.problem = Some(problem(
            None,
            "the bundle's checkpoint is not signed by this key for the bundle's tenant",
        ));
        return Ok(report);
    }
    let entries_path = dir.join(ENTRIES_JSONL);
    let file = File::open(&entries_path)
        .map_err(|error| io(format!("reading {}", entries_path.display()), error))?;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|error| io(format!("reading {ENTRIES_JSONL}"), error))?;
        let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
            continue;
        };
        if entry.seq == checkpoint.seq && entry.hash != checkpoint.hash {
            report.problem = Some(problem(
                Some(entry.seq),
                "not the entry the signed checkpoint names: the chain was rewritten",
            ));
            break;
        }
    }
    Ok(report)
}

fn bundle_problem(tenant: String, what: String) -> Report {
    Report {
        tenant,
        entries: 0,
        seq_range: None,
        last_hash: None,
        problem: Some(Problem { seq: None, what }),
    }
}

/// Every file of the bundle is listed in `SHA256SUMS` with its sum.
fn check_sums(dir: &Path) -> Result<Option<Problem>, Error> {
    let sums_path = dir.join(SUMS);
    let sums = std::fs::read_to_string(&sums_path)
        .map_err(|error| io(format!("reading {}", sums_path.display()), error))?;
    let mut listed = BTreeMap::new();
    for line in sums.lines() {
        let Some((sum, name)) = line.split_once("  ") else {
            return Ok(Some(Problem {
                seq: None,
                what: format!("{SUMS} has a line that is not `<sha256>  <file>`"),
            }));
        };
        listed.insert(name.to_owned(), sum.to_owned());
    }
    for name in [MANIFEST, ENTRIES_JSONL, ENTRIES_CSV, TIMELINE_HTML] {
        let Some(sum) = listed.get(name) else {
            return Ok(Some(Problem {
                seq: None,
                what: format!("{SUMS} does not list {name}"),
            }));
        };
        let actual = file_sha256(&dir.join(name))
            .map_err(|error| io(format!("reading {name} of the bundle"), error))?;
        if &actual != sum {
            return Ok(Some(Problem {
                seq: None,
                what: format!("{name} does not match its SHA-256 sum in {SUMS}"),
            }));
        }
    }
    Ok(None)
}
