//! The local directory backend: a directory per bucket, a file per object.
//!
//! A bucket is the directory `{root}/{bucket}`; it exists only once provisioned, and no
//! call but provisioning ever creates it, so a tenant that was never provisioned (or was
//! deleted) gets [`ErrorKind::NotProvisioned`] rather than a directory made on the fly.
//!
//! An object is one file: a small header (content type, metadata, entity tag) and then the
//! body. It is written to `{bucket}/.tmp/` and renamed into place once complete and synced,
//! so a reader sees the whole old object or the whole new one, and a failed or abandoned
//! write leaves nothing under the key.
//!
//! Keys map to paths one segment at a time: `capa/12/report.pdf` is
//! `capa=d/12=d/report.pdf=o`. Each segment is escaped (`%` and `=` always, a leading `.`)
//! and cut into chunks of at most 200 bytes (`=c` directories) to fit file-name limits,
//! so the key `a` and the key `a/b` coexist (`a=o` beside `a=d/`), no file name is `.` or
//! `..` or starts with a dot, and the mapping can be read back for listing. Keys are
//! checked before they get here; the encoding is a second wall, not the first.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::bucket::BoxError;
use crate::error::{Error, ErrorKind, quote};
use crate::object::{
    ListPage, ListRequest, ListedObject, Object, ObjectBody, ObjectInfo, PresignedRequest,
    PutOptions, PutReceipt,
};
use crate::platform::Deletion;
use crate::storage::Location;

const TMP_DIR: &str = ".tmp";
const MAGIC: &[u8; 4] = b"TSO1";
const MAX_HEADER: usize = 64 * 1024;
/// Escaped bytes per path component, before its two-byte suffix: well under the 255 of
/// common file systems.
const MAX_CHUNK: usize = 200;
const OBJECT: &str = "=o";
const DIR: &str = "=d";
const CONTINUED: &str = "=c";
/// How often placing a file is retried when a concurrent delete removed an empty parent
/// directory between its creation and the rename.
const PLACE_ATTEMPTS: usize = 8;

pub(crate) struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalBackend { root }
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    pub(crate) async fn put_stream<S>(
        &self,
        location: &Location,
        key: &str,
        body: S,
        options: &PutOptions,
    ) -> Result<PutReceipt, Error>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send,
    {
        if options.retention.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the local directory backend cannot retain objects (no object lock): use S3 \
                 with object lock for records that must not be deleted",
            ));
        }
        let bucket_dir = self.bucket_dir(&location.bucket);
        let target = object_path(&bucket_dir, &location.key(key));
        let etag = write_id();
        let header = Header {
            etag: etag.clone(),
            content_type: options.content_type.clone(),
            metadata: options.metadata.clone(),
        }
        .encode();

        let temp = {
            let bucket_dir = bucket_dir.clone();
            blocking(move || TempFile::create(&bucket_dir)).await?
        };
        let mut file =
            tokio::io::BufWriter::with_capacity(
                256 * 1024,
                tokio::fs::File::from_std(temp.file.try_clone().map_err(|e| {
                    io_error("opening a temporary file in the tenant's directory", e)
                })?),
            );
        file.write_all(&header)
            .await
            .map_err(|e| io_error("writing the object", e))?;
        let mut body = pin!(body);
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Error::with_source(
                    ErrorKind::Body,
                    format!(
                        "the body of {} failed after {written} bytes; nothing was stored",
                        quote(key)
                    ),
                    e,
                )
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("writing the object", e))?;
            written += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| io_error("writing the object", e))?;
        drop(file);
        blocking(move || temp.place(&bucket_dir, &target)).await?;
        Ok(PutReceipt {
            etag: Some(format!("\"{etag}\"")),
            version_id: None,
        })
    }

    pub(crate) async fn get(&self, location: &Location, key: &str) -> Result<Object, Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let path = object_path(&bucket_dir, &location.key(key));
        let key = key.to_owned();
        let (info, file) = blocking(move || open_object(&bucket_dir, &path, key)).await?;
        Ok(Object::new(
            info,
            ObjectBody::local(tokio::fs::File::from_std(file)),
        ))
    }

    pub(crate) async fn head(&self, location: &Location, key: &str) -> Result<ObjectInfo, Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let path = object_path(&bucket_dir, &location.key(key));
        let key = key.to_owned();
        blocking(move || open_object(&bucket_dir, &path, key).map(|(info, _)| info)).await
    }

    pub(crate) async fn delete(&self, location: &Location, key: &str) -> Result<(), Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let path = object_path(&bucket_dir, &location.key(key));
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => {
                prune_empty_parents(&bucket_dir, &path);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if bucket_dir.is_dir() {
                    Ok(())
                } else {
                    Err(not_provisioned())
                }
            }
            Err(e) => Err(io_error("deleting the object", e)),
        })
        .await
    }

    pub(crate) async fn copy(
        &self,
        location: &Location,
        from: &str,
        to: &str,
    ) -> Result<PutReceipt, Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let source = object_path(&bucket_dir, &location.key(from));
        let target = object_path(&bucket_dir, &location.key(to));
        let from = from.to_owned();
        blocking(move || {
            let (info, mut body) = open_object(&bucket_dir, &source, from)?;
            let etag = write_id();
            let header = Header {
                etag: etag.clone(),
                content_type: info.content_type,
                metadata: info.metadata,
            };
            let mut temp = TempFile::create(&bucket_dir)?;
            temp.file
                .write_all(&header.encode())
                .and_then(|()| io::copy(&mut body, &mut temp.file))
                .map_err(|e| io_error("copying the object", e))?;
            temp.place(&bucket_dir, &target)?;
            Ok(PutReceipt {
                etag: Some(format!("\"{etag}\"")),
                version_id: None,
            })
        })
        .await
    }

    pub(crate) async fn list(
        &self,
        location: &Location,
        request: &ListRequest,
    ) -> Result<ListPage, Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let location = location.clone();
        let request = request.clone();
        blocking(move || list_sync(&bucket_dir, &location, &request)).await
    }

    pub(crate) fn presign(&self) -> Result<PresignedRequest, Error> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "the local directory backend has no URLs to presign: stream the object through \
             the application instead (TenantBucket::get / put_stream)",
        ))
    }

    pub(crate) async fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        let root = self.root.clone();
        let bucket_dir = self.bucket_dir(bucket);
        blocking(move || {
            fs::create_dir_all(&root)
                .map_err(|e| io_error("creating the storage root directory", e))?;
            for dir in [bucket_dir.clone(), bucket_dir.join(TMP_DIR)] {
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error("creating the tenant's directory", e)),
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn delete_bucket(
        &self,
        bucket: &str,
        deletion: Deletion,
    ) -> Result<(), Error> {
        let bucket_dir = self.bucket_dir(bucket);
        let graveyard = self.root.join(format!(".deleting-{bucket}-{}", write_id()));
        blocking(move || {
            if !bucket_dir.is_dir() {
                return Err(not_provisioned());
            }
            remove_tree(&bucket_dir, &graveyard, deletion)
        })
        .await
    }

    pub(crate) async fn delete_prefix(
        &self,
        location: &Location,
        deletion: Deletion,
    ) -> Result<(), Error> {
        let bucket_dir = self.bucket_dir(&location.bucket);
        let tenant_dir = dir_path(&bucket_dir, &location.prefix);
        let graveyard = bucket_dir
            .join(TMP_DIR)
            .join(format!("deleting-{}", write_id()));
        blocking(move || {
            if !bucket_dir.is_dir() {
                return Err(not_provisioned());
            }
            if !tenant_dir.exists() {
                return Ok(());
            }
            remove_tree(&tenant_dir, &graveyard, deletion)
        })
        .await
    }
}

/// Runs file-system work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    #[expect(
        clippy::disallowed_methods,
        reason = "file-system work on paths derived from the tenant's location before the call; \
                  the closure reads no ambient tenant context"
    )]
    let task = tokio::task::spawn_blocking(work);
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::with_source(
            ErrorKind::Unavailable,
            "the runtime is shutting down; the file-system work did not run",
            e,
        )),
    }
}

/// Moves `dir` aside (so no put lands in it meanwhile), then removes it, or moves it back
/// when it holds objects and must not be purged.
fn remove_tree(dir: &Path, graveyard: &Path, deletion: Deletion) -> Result<(), Error> {
    fs::rename(dir, graveyard).map_err(|e| io_error("setting the directory aside", e))?;
    if deletion == Deletion::RefuseIfNotEmpty && holds_objects(graveyard) {
        fs::rename(graveyard, dir).map_err(|e| {
            io_error(
                "putting back a directory that was not empty (it is now under its .deleting \
                 name)",
                e,
            )
        })?;
        return Err(Error::new(
            ErrorKind::NotEmpty,
            "the tenant's storage still holds objects and was not deleted: delete them \
             first, or purge (Deletion::PurgeEveryVersion)",
        ));
    }
    fs::remove_dir_all(graveyard).map_err(|e| io_error("removing the tenant's directory", e))
}

fn holds_objects(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        (name.ends_with(OBJECT) && is_file)
            || ((name.ends_with(DIR) || name.ends_with(CONTINUED))
                && is_dir
                && holds_objects(&entry.path()))
    })
}

fn not_provisioned() -> Error {
    Error::new(
        ErrorKind::NotProvisioned,
        "the tenant's storage directory does not exist: the tenant has not been provisioned \
         (StoragePlatform::create_bucket), or was deleted",
    )
}

fn io_error(what: &str, e: io::Error) -> Error {
    let (kind, advice) = match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => (
            ErrorKind::Denied,
            "the process may not write there: check the storage directory's permissions",
        ),
        io::ErrorKind::InvalidFilename => (
            ErrorKind::InvalidKey,
            "the key is too long for the local file system: use a shorter key",
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => (
            ErrorKind::Unavailable,
            "the disk is full: free space, then retry",
        ),
        _ => (
            ErrorKind::Unavailable,
            "check the storage directory (mounted, readable, not full)",
        ),
    };
    Error::with_source(kind, format!("{what} failed: {advice}"), e)
}

/// A unique id for a write: the entity tag of the object it makes and its temporary
/// file's name.
fn write_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:016x}{:08x}{:08x}",
        nanos as u64,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A file being written in the bucket's `.tmp` directory, removed when dropped unless
/// it was placed.
struct TempFile {
    path: PathBuf,
    file: fs::File,
    placed: bool,
}

impl TempFile {
    fn create(bucket_dir: &Path) -> Result<TempFile, Error> {
        let tmp_dir = bucket_dir.join(TMP_DIR);
        let path = tmp_dir.join(write_id());
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !bucket_dir.is_dir() {
                    return Err(not_provisioned());
                }
                // The bucket exists but lost its .tmp: make it again, inside the bucket only.
                match fs::create_dir(&tmp_dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error("creating the temporary directory", e)),
                }
                open().map_err(|e| io_error("creating a temporary file", e))?
            }
            Err(e) => return Err(io_error("creating a temporary file", e)),
        };
        Ok(TempFile {
            path,
            file,
            placed: false,
        })
    }

    /// Syncs the file and renames it to `target`, making the parent directories inside
    /// `bucket_dir` (never `bucket_dir` itself) as needed.
    fn place(mut self, bucket_dir: &Path, target: &Path) -> Result<(), Error> {
        self.file
            .sync_all()
            .map_err(|e| io_error("syncing the object to disk", e))?;
        let parent = target.parent().expect("an object path has a parent");
        for attempt in 1..=PLACE_ATTEMPTS {
            make_parents(bucket_dir, parent)?;
            match fs::rename(&self.path, target) {
                Ok(()) => {
                    self.placed = true;
                    // Make the rename itself durable.
                    if let Ok(dir) = fs::File::open(parent) {
                        let _ = dir.sync_all();
                    }
                    return Ok(());
                }
                // A delete pruned a parent we had just made: make it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < PLACE_ATTEMPTS => {}
                Err(e) => return Err(io_error("moving the object into place", e)),
            }
        }
        unreachable!("the last attempt returns")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates each directory from `bucket_dir` (exclusive) down to `dir`; a missing
/// `bucket_dir` is [`ErrorKind::NotProvisioned`], never created.
fn make_parents(bucket_dir: &Path, dir: &Path) -> Result<(), Error> {
    let relative = dir
        .strip_prefix(bucket_dir)
        .expect("object paths are inside their bucket");
    let mut current = bucket_dir.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !bucket_dir.is_dir() {
                    return Err(not_provisioned());
                }
                // A concurrent delete pruned the level above: start again from the top.
                return make_parents(bucket_dir, dir);
            }
            Err(e) => return Err(io_error("creating the object's directory", e)),
        }
    }
    Ok(())
}

/// Removes the empty directories above a deleted object, up to (not including) the bucket.
fn prune_empty_parents(bucket_dir: &Path, object: &Path) {
    let mut dir = object.parent();
    while let Some(current) = dir {
        if current == bucket_dir || !current.starts_with(bucket_dir) {
            break;
        }
        if fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

/// Opens an object: its description, and the file positioned at the start of the body.
fn open_object(
    bucket_dir: &Path,
    path: &Path,
    key: String,
) -> Result<(ObjectInfo, fs::File), Error> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(if bucket_dir.is_dir() {
                Error::new(
                    ErrorKind::NotFound,
                    format!("there is no object {}", quote(&key)),
                )
            } else {
                not_provisioned()
            });
        }
        Err(e) => return Err(io_error("opening the object", e)),
    };
    let (header, header_len) = Header::read(&mut file)?;
    let metadata = file
        .metadata()
        .map_err(|e| io_error("reading the object's size", e))?;
    let info = ObjectInfo {
        key,
        size: metadata.len().saturating_sub(header_len),
        content_type: header.content_type,
        metadata: header.metadata,
        etag: Some(format!("\"{}\"", header.etag)),
        last_modified: metadata.modified().ok(),
        version_id: None,
        encryption: None,
        kms_key_id: None,
        retention: None,
    };
    Ok((info, file))
}

fn list_sync(
    bucket_dir: &Path,
    location: &Location,
    request: &ListRequest,
) -> Result<ListPage, Error> {
    if !bucket_dir.is_dir() {
        return Err(not_provisioned());
    }
    let wanted = location.key(&request.prefix);
    // Walk only the directory of the prefix's complete segments.
    let complete = &wanted[..wanted.rfind('/').map_or(0, |at| at + 1)];
    let start = dir_path(bucket_dir, complete);
    let mut found = Vec::new();
    let mut key = complete.to_owned();
    walk(&start, &mut key, &wanted, &mut found)
        .map_err(|e| io_error("listing the tenant's objects", e))?;
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let after = request.after.as_ref().map(|after| location.key(after));
    let mut objects = Vec::new();
    let mut more = false;
    for (full, path) in found {
        if after
            .as_ref()
            .is_some_and(|after| full.as_str() <= after.as_str())
        {
            continue;
        }
        if objects.len() == request.max_keys {
            more = true;
            break;
        }
        let Some(relative) = location.relative(&full) else {
            continue;
        };
        // Gone since the walk (a concurrent delete): not listed.
        let Ok((info, _)) = open_object(bucket_dir, &path, relative.to_owned()) else {
            continue;
        };
        objects.push(ListedObject {
            key: info.key,
            size: info.size,
            etag: info.etag,
            last_modified: info.last_modified,
        });
    }
    let next = if more {
        objects.last().map(|last| last.key.clone())
    } else {
        None
    };
    Ok(ListPage { objects, next })
}

/// Collects `(full key, path)` of the objects under `dir` whose keys start with `wanted`;
/// `key` holds the key text that `dir` stands for.
fn walk(
    dir: &Path,
    key: &mut String,
    wanted: &str,
    found: &mut Vec<(String, PathBuf)>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((text, suffix)) = split_suffix(name) else {
            continue;
        };
        // Symbolic links and other odd entries are not objects: only what this backend
        // wrote is read.
        let file_type = entry.file_type()?;
        let base = key.len();
        key.push_str(&unescape(text));
        match suffix {
            OBJECT if file_type.is_file() && key.starts_with(wanted) => {
                found.push((key.clone(), entry.path()));
            }
            DIR | CONTINUED if file_type.is_dir() => {
                if suffix == DIR {
                    key.push('/');
                }
                if key.starts_with(wanted) || wanted.starts_with(key.as_str()) {
                    walk(&entry.path(), key, wanted, found)?;
                }
            }
            _ => {}
        }
        key.truncate(base);
    }
    Ok(())
}

fn split_suffix(name: &str) -> Option<(&str, &'static str)> {
    [OBJECT, DIR, CONTINUED]
        .into_iter()
        .find_map(|suffix| name.strip_suffix(suffix).map(|text| (text, suffix)))
}

/// The path of the object with full key `key` in `bucket_dir`.
pub(crate) fn object_path(bucket_dir: &Path, key: &str) -> PathBuf {
    let mut path = bucket_dir.to_path_buf();
    let mut segments = key.split('/').peekable();
    while let Some(segment) = segments.next() {
        let suffix = if segments.peek().is_some() {
            DIR
        } else {
            OBJECT
        };
        push_segment(&mut path, segment, suffix);
    }
    path
}

/// The directory that holds the keys starting with `dir_key` (empty, or ending in `/`).
pub(crate) fn dir_path(bucket_dir: &Path, dir_key: &str) -> PathBuf {
    let mut path = bucket_dir.to_path_buf();
    for segment in dir_key.split_terminator('/') {
        push_segment(&mut path, segment, DIR);
    }
    path
}

fn push_segment(path: &mut PathBuf, segment: &str, suffix: &str) {
    let mut chunk = String::new();
    let mut utf8 = [0u8; 4];
    for c in segment.chars() {
        loop {
            let escaped: &str = match c {
                '%' => "%25",
                '=' => "%3D",
                '.' if chunk.is_empty() => "%2E",
                c => c.encode_utf8(&mut utf8),
            };
            if chunk.len() + escaped.len() <= MAX_CHUNK {
                chunk.push_str(escaped);
                break;
            }
            chunk.push_str(CONTINUED);
            path.push(&chunk);
            chunk.clear();
        }
    }
    chunk.push_str(suffix);
    path.push(chunk);
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an object file says about itself before its body.
struct Header {
    etag: String,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

impl Header {
    /// `TSO1`, the length of the text as a little-endian u32, then lines of
    /// tab-separated fields. Values were checked to hold no control characters, so tabs
    /// and newlines cannot occur in them.
    fn encode(&self) -> Vec<u8> {
        let mut text = format!("etag\t{}\n", self.etag);
        if let Some(content_type) = &self.content_type {
            text.push_str(&format!("content-type\t{content_type}\n"));
        }
        for (name, value) in &self.metadata {
            text.push_str(&format!("meta\t{name}\t{value}\n"));
        }
        let mut out = Vec::with_capacity(8 + text.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(
            &u32::try_from(text.len())
                .expect("a small header")
                .to_le_bytes(),
        );
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Reads the header; returns it and its length in the file.
    fn read(file: &mut fs::File) -> Result<(Header, u64), Error> {
        let damaged = || {
            Error::new(
                ErrorKind::Unavailable,
                "the object's file is damaged (no valid header): it was not written by this \
                 library, or was changed by hand",
            )
        };
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix).map_err(|_| damaged())?;
        if &prefix[..4] != MAGIC {
            return Err(damaged());
        }
        let len = u32::from_le_bytes(prefix[4..].try_into().expect("four bytes")) as usize;
        if len > MAX_HEADER {
            return Err(damaged());
        }
        let mut text = vec![0u8; len];
        file.read_exact(&mut text).map_err(|_| damaged())?;
        let text = String::from_utf8(text).map_err(|_| damaged())?;
        let mut header = Header {
            etag: String::new(),
            content_type: None,
            metadata: BTreeMap::new(),
        };
        for line in text.lines() {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some("etag"), Some(etag), None) => etag.clone_into(&mut header.etag),
                (Some("content-type"), Some(value), None) => {
                    header.content_type = Some(value.to_owned());
                }
                (Some("meta"), Some(name), Some(value)) => {
                    header.metadata.insert(name.to_owned(), value.to_owned());
                }
                _ => return Err(damaged()),
            }
        }
        Ok((header, 8 + len as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    use proptest::prelude::*;

    fn names(path: &Path, base: &Path) -> Vec<String> {
        path.strip_prefix(base)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn keys_map_to_paths_that_read_back() {
        let base = Path::new("/b");
        assert_eq!(names(&object_path(base, "a"), base), ["a=o"]);
        assert_eq!(
            names(&object_path(base, "capa/12/report.pdf"), base),
            ["capa=d", "12=d", "report.pdf=o"]
        );
        assert_eq!(
            names(&object_path(base, ".env/x%=y"), base),
            ["%2Eenv=d", "x%25%3Dy=o"]
        );
        assert_eq!(names(&dir_path(base, "a/b/"), base), ["a=d", "b=d"]);
        let long = "é".repeat(300);
        let parts = names(&object_path(base, &long), base);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= MAX_CHUNK + 2));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.ends_with("=c")));
    }

    proptest! {
        /// Whatever key passes the checks, its path stays inside the bucket directory,
        /// has only ordinary components, none starting with a dot, each short enough for
        /// a file name; and it reads back to the key.
        #[test]
        fn every_accepted_key_maps_inside_its_bucket(key in "[a-z./%=\u{e9}\u{ff0e}2eE]{1,40}|.{1,300}") {
            prop_assume!(crate::key::check_key(&key).is_ok());
            let base = Path::new("/root/tt-acme");
            let path = object_path(base, &format!("acme/{key}"));
            prop_assert!(path.starts_with(base));
            for component in path.strip_prefix(base).unwrap().components() {
                let Component::Normal(name) = component else {
                    return Err(TestCaseError::fail(format!("{component:?} in {path:?}")));
                };
                let name = name.to_str().unwrap();
                prop_assert!(!name.starts_with('.'), "{}", name);
                prop_assert!(name.len() <= 255);
            }
            // Read back the way listing does.
            let mut found = String::new();
            for name in names(&path, base) {
                let (text, suffix) = split_suffix(&name).unwrap();
                found.push_str(&unescape(text));
                if suffix == DIR {
                    found.push('/');
                }
            }
            prop_assert_eq!(found, format!("acme/{key}"));
        }
    }

    #[test]
    fn headers_round_trip() {
        let header = Header {
            etag: String::from("abc"),
            content_type: Some(String::from("application/pdf")),
            metadata: BTreeMap::from([(String::from("capa"), String::from("CAPA 12"))]),
        };
        let bytes = header.encode();
        let dir = std::env::temp_dir().join(format!("tenancy-storage-header-{}", write_id()));
        fs::write(&dir, &bytes).unwrap();
        let mut file = fs::File::open(&dir).unwrap();
        let (read, len) = Header::read(&mut file).unwrap();
        fs::remove_file(&dir).unwrap();
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(read.etag, "abc");
        assert_eq!(read.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(read.metadata["capa"], "CAPA 12");
    }
}
