//! The edge's durable state in redb. Every change is one ACID transaction
//! that also records the sender's request counter, so a replayed
//! state-changing request is refused after a restart too.
//!
//! A store records its format ([`STORE_FORMAT`]) and is checked read-only
//! before it is opened: a damaged file, one of a newer format, or one open
//! in another process is refused untouched, with the file named.
//!
//! Large cycles are billed from the store in batches, holding nothing per
//! member in memory: [`EdgeStore::begin_billing`] records the cycle's
//! re-randomisation seed and aggregates (and from then on refuses the
//! cycle's submissions), [`EdgeStore::for_each_billing_batch`] (or
//! [`EdgeStore::billing_batch`]) reads each batch's submissions with their
//! members' one stored public key, [`EdgeStore::put_bills_batch`] stores a
//! batch's bills with a progress marker in one transaction (a killed edge
//! resumes after it, with the same seed), and [`EdgeStore::finish_billing`]
//! marks the cycle billed once every submission has its bill.
//! [`EdgeStore::prune`] then applies the [`Retention`] of the
//! configuration, and [`EdgeStore::disk_usage`] reports the bytes per
//! member and cycle.
//!
//! A full disk (or file size limit) refuses the write with
//! [`EdgeError::StoreFull`]; the transaction is undone, and the store is
//! reopened on the next call so that everything stored stays readable.
//!
//! redb gives each large row a page of a power-of-two size, and the public
//! keys, submissions and bills are each just over 128 KiB: stored whole
//! (format 1) each took a 256 KiB page. Format 2 ([`STORE_FORMAT`]) stores
//! them, and the round events, in rows of about 32 KB ([`put_value`],
//! [`next_value`]), about 1.03 times their bytes; a format 1 store is
//! migrated when opened (docs/design.md section 10, docs/benchmarks.md).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use pb_glwe::CompactPublicKey;
use pb_hiding::wire::Wire;
use pb_hiding::{HiddenBill, HiddenData};
use pb_inputs::private_store_file;
use pb_model::CycleContext;
use pb_protocol::NodeId;
use pb_przs::IdentityPublic;
use pb_secagg::SignedRoster;
use pb_units::{CycleId, MemberId};
use redb::{
    Database, Key, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EdgeError;
use crate::config::{Retention, Rotation};

mod secagg;
pub use secagg::RoundPayload;

/// Joined members ([`MemberRecord`]) by id, in rows ([`put_value`]).
const MEMBERS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("member_rows");
const CYCLES: TableDefinition<u64, &[u8]> = TableDefinition::new("cycles");
/// Submissions by `(cycle, member)`, in rows ([`put_value`]).
const SUBMISSIONS: TableDefinition<((u64, &str), u32), &[u8]> =
    TableDefinition::new("submission_rows");
/// Signed member lists by version.
const ROSTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("rosters");
/// Each open cycle's SecAgg+ messages and round closings, in order
/// (`(cycle, sequence)`), in rows ([`put_value`]): replaying them rebuilds
/// the cycle's state. A submission's event holds no masked data (that is
/// the stored submission's).
const ROUNDS: TableDefinition<((u64, u64), u32), &[u8]> = TableDefinition::new("round_rows");
/// Bills by `(cycle, member)`, in rows ([`put_value`]).
const BILLS: TableDefinition<((u64, &str), u32), &[u8]> = TableDefinition::new("bill_rows");
const BILLED: TableDefinition<u64, &[u8]> = TableDefinition::new("billed");
/// A billed cycle's unmasked per-slot aggregates (what the edge learns by
/// design), kept for the operator's report after the submissions go.
const AGGREGATES: TableDefinition<u64, &[u8]> = TableDefinition::new("aggregates");
const DELIVERED: TableDefinition<(u64, &str), u64> = TableDefinition::new("delivered");
const COUNTERS: TableDefinition<&[u8], u64> = TableDefinition::new("counters");
/// The store's format (`"format"`), written at creation.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
/// A cycle being billed batch by batch: [`BillingProgress`].
const BILLING_PROGRESS: TableDefinition<u64, &[u8]> = TableDefinition::new("billing_progress");

/// Submissions received per cycle (kept when they are pruned), so that
/// finishing a large cycle's billing needs no scan of its submissions.
const SUBMISSION_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("submission_counts");

/// Members' key rotations by the node id they retired ([`Rotation`]).
const ROTATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rotations");

/// The tables of format 1 that held each value in one row; read only by
/// [`migrate_to_2`], which moves them into the tables of rows and deletes
/// them.
mod v1 {
    use redb::TableDefinition;

    pub(super) const MEMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("members");
    pub(super) const SUBMISSIONS: TableDefinition<(u64, &str), &[u8]> =
        TableDefinition::new("submissions");
    pub(super) const ROUNDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("rounds");
    pub(super) const BILLS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("bills");
}

/// The format of the stores this edge writes and the newest it reads.
/// Stores written before the format was recorded are format 1, which
/// held each value in one row; format 2 splits the large ones into rows
/// ([`put_value`]) and holds the members' key rotations (`rotations`;
/// an older edge would admit retired keys again, and refuses format 2).
/// Format 3 keeps the SecAgg+ rounds' payloads (shares, masked vectors,
/// answers) in tables of each cycle, keyed by who reads them, and small
/// round events ([`secagg`]). An older store is migrated when opened.
pub const STORE_FORMAT: u64 = 3;

/// A store file that exists: must be a readable edge store of a format this
/// edge knows. Opened read-only, so a refused file is left as it was.
fn check_existing(path: &Path) -> Result<(), EdgeError> {
    let ro = match redb::Builder::new().open_read_only(path) {
        Ok(ro) => ro,
        // Left by a killed edge: the writable open repairs it.
        Err(redb::DatabaseError::RepairAborted) => return Ok(()),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(EdgeError::StoreInUse(path.to_path_buf()));
        }
        Err(e) => return Err(unreadable(path, e)),
    };
    let format = (|| -> Result<u64, redb::Error> {
        let r = ro.begin_read()?;
        match r.open_table(META) {
            Ok(t) => Ok(t.get(FORMAT_KEY)?.map(|v| v.value()).unwrap_or(1)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(1),
            Err(e) => Err(e.into()),
        }
    })()
    .map_err(|e| unreadable(path, e))?;
    if format > STORE_FORMAT {
        return Err(EdgeError::StoreTooNew {
            path: path.to_path_buf(),
            found: format,
            supported: STORE_FORMAT,
        });
    }
    Ok(())
}

/// The format recorded in a store being opened: `META`'s, else 1 for a
/// store written before the format was recorded, or [`STORE_FORMAT`] for a
/// new (empty) one.
fn stored_format(txn: &WriteTransaction) -> Result<u64, EdgeError> {
    let recorded = match txn.open_table(META) {
        Ok(t) => t.get(FORMAT_KEY).map_err(rdb)?.map(|v| v.value()),
        Err(e) => return Err(rdb(e)),
    };
    if let Some(format) = recorded {
        return Ok(format);
    }
    let mut tables = txn.list_tables().map_err(rdb)?;
    Ok(if tables.any(|t| t.name() != META.name()) {
        1
    } else {
        STORE_FORMAT
    })
}

/// Migrates a format 1 store to format 2 in the caller's transaction:
/// every value of the members, submissions, round events and bills is
/// split into rows ([`put_value`]) and the tables of whole values are
/// deleted. Returns the values moved.
fn migrate_to_2(txn: &WriteTransaction) -> Result<u64, EdgeError> {
    Ok(move_rows(txn, v1::MEMBERS, MEMBERS)?
        + move_rows(txn, v1::SUBMISSIONS, SUBMISSIONS)?
        + move_rows(txn, v1::ROUNDS, ROUNDS)?
        + move_rows(txn, v1::BILLS, BILLS)?)
}

/// Moves every value of a table of whole values into a table of rows and
/// deletes the old table (if it exists).
fn move_rows<K: Key + 'static>(
    txn: &WriteTransaction,
    old: TableDefinition<K, &[u8]>,
    new: TableDefinition<Rows<K>, &[u8]>,
) -> Result<u64, EdgeError>
where
    for<'a> K::SelfType<'a>: Copy,
{
    if !txn
        .list_tables()
        .map_err(rdb)?
        .any(|t| t.name() == old.name())
    {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let from = txn.open_table(old).map_err(rdb)?;
        let mut to = txn.open_table(new).map_err(rdb)?;
        for row in from.iter().map_err(rdb)? {
            let (k, v) = row.map_err(rdb)?;
            put_value(&mut to, k.value(), v.value())?;
            moved += 1;
        }
    }
    txn.delete_table(old).map_err(rdb)?;
    Ok(moved)
}

/// The store's page cache unless told otherwise (`store_cache_mib` of
/// `edge.toml`).
pub const DEFAULT_CACHE_BYTES: usize = crate::config::DEFAULT_STORE_CACHE_MIB << 20;

/// Opens (or creates) the redb file; the page cache is modest, submissions
/// being read back in batches.
fn open_db(path: &Path, cache_bytes: usize) -> Result<Database, EdgeError> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| unreadable(path, e))
}

fn unreadable(path: &Path, e: impl Into<redb::Error>) -> EdgeError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => EdgeError::StoreInUse(path.to_path_buf()),
        e => EdgeError::StoreUnreadable {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    }
}

/// A joined member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its core.
    pub node: NodeId,
    /// X25519 key for PRZS.
    pub przs: IdentityPublic,
    /// Compact public key.
    pub public_key: CompactPublicKey,
}

/// A cycle as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// Prices and model.
    pub context: CycleContext,
    /// Version of the signed member list the cycle runs on.
    pub roster_version: u64,
    /// Unix seconds of recording (the advertise deadline counts from here).
    pub posted_at: u64,
}

/// A billed cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilledRecord {
    /// Unix seconds.
    pub at: u64,
    /// Wall time of `compute_bills`, milliseconds.
    pub millis: u64,
    /// Bills computed.
    pub bills: usize,
}

fn cfg() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, EdgeError> {
    bincode::serde::encode_to_vec(v, cfg()).map_err(|e| EdgeError::Store(e.to_string()))
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EdgeError> {
    bincode::serde::decode_from_slice(bytes, cfg())
        .map(|(v, _)| v)
        .map_err(|e| EdgeError::Store(format!("corrupt record: {e}")))
}

fn wire<T: Wire>(bytes: &[u8]) -> Result<T, EdgeError> {
    T::from_bytes(bytes).map_err(|e| EdgeError::Store(format!("corrupt record: {e}")))
}

fn err(e: impl std::fmt::Display) -> EdgeError {
    EdgeError::Store(e.to_string())
}

/// A redb error; an I/O error that says the disk (or the file size limit)
/// is full becomes [`EdgeError::StoreFull`].
fn rdb(e: impl Into<redb::Error>) -> EdgeError {
    let e: redb::Error = e.into();
    match &e {
        redb::Error::Io(io) if is_full(io) => EdgeError::StoreFull(io.to_string()),
        redb::Error::PreviousIo => {
            EdgeError::StoreFull("an earlier write failed (out of space?)".into())
        }
        _ => EdgeError::Store(e.to_string()),
    }
}

/// Out of space, over the file size limit or over quota.
fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(27 | 28 | 122)) // EFBIG, ENOSPC, EDQUOT
}

/// The largest row of a value: one row and its leaf header (12 bytes) and
/// key (at most about 90 bytes: a 64-character member id in a tuple) fit
/// a 32 KiB page. redb gives every row above about 2 KB a leaf page of its
/// own, of the power of two that holds it: whole values of just over
/// 128 KiB took 256 KiB pages (format 1).
const BIG_ROW: usize = 32_500;

/// The rows of a value's remainder under [`BIG_ROW`]: each fits one 4 KiB
/// page, so the remainder costs at most one page more than its bytes
/// (instead of the next power of two).
const SMALL_ROW: usize = 3_968;

/// Bytes of the value's length at the head of its first row.
const LENGTH_HEAD: usize = 8;

/// A table of values split into rows keyed by `(key, row index)`.
type Rows<K> = (K, u32);

/// The bounds of a range of rows.
type RowRange<K> = (Bound<Rows<K>>, Bound<Rows<K>>);

/// A value read whole: the key guard of its first row and its bytes.
type ValueRead<'a, K> = (redb::AccessGuard<'a, Rows<K>>, Vec<u8>);

/// One row as a range yields it.
type RowGuards<'a, K> = (
    redb::AccessGuard<'a, Rows<K>>,
    redb::AccessGuard<'a, &'static [u8]>,
);

/// The length of the next row of a value of which `rest` bytes (with the
/// length head) are still to be stored.
fn row_len(rest: usize) -> usize {
    if rest >= BIG_ROW {
        BIG_ROW
    } else {
        rest.min(SMALL_ROW)
    }
}

/// Stores `bytes` under `key` as rows `(key, 0)`, `(key, 1)`, …: the
/// first starts with the value's length (8 bytes, little-endian), then
/// rows of [`BIG_ROW`] bytes and the remainder in rows of at most
/// [`SMALL_ROW`]. Rows of a value stored before under `key` are removed
/// first. Returns whether there was one.
fn put_value<'k, K: Key + 'static>(
    table: &mut redb::Table<'_, Rows<K>, &'static [u8]>,
    key: K::SelfType<'k>,
    bytes: &[u8],
) -> Result<bool, EdgeError>
where
    K::SelfType<'k>: Copy,
{
    let existed = remove_value(table, key)?;
    let total = LENGTH_HEAD + bytes.len();
    let first = row_len(total) - LENGTH_HEAD;
    let mut row0 = Vec::with_capacity(LENGTH_HEAD + first);
    row0.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    row0.extend_from_slice(&bytes[..first]);
    table.insert((key, 0), row0.as_slice()).map_err(rdb)?;
    let mut at = first;
    let mut index = 0u32;
    while at < bytes.len() {
        index = index
            .checked_add(1)
            .ok_or_else(|| EdgeError::Store("value too large".into()))?;
        let n = row_len(bytes.len() - at);
        table
            .insert((key, index), &bytes[at..at + n])
            .map_err(rdb)?;
        at += n;
    }
    Ok(existed)
}

/// Removes the rows of the value under `key`; whether there was one.
fn remove_value<'k, K: Key + 'static>(
    table: &mut redb::Table<'_, Rows<K>, &'static [u8]>,
    key: K::SelfType<'k>,
) -> Result<bool, EdgeError>
where
    K::SelfType<'k>: Copy,
{
    let existed = table.get((key, 0)).map_err(rdb)?.is_some();
    if existed {
        table
            .retain_in((key, 0)..=(key, u32::MAX), |_, _| false)
            .map_err(rdb)?;
    }
    Ok(existed)
}

/// The value stored under `key` ([`put_value`]), whole.
fn get_value<'k, K: Key + 'static>(
    table: &impl ReadableTable<Rows<K>, &'static [u8]>,
    key: K::SelfType<'k>,
) -> Result<Option<Vec<u8>>, EdgeError>
where
    K::SelfType<'k>: Copy,
{
    let mut rows = table.range((key, 0)..=(key, u32::MAX)).map_err(rdb)?;
    Ok(next_value(&mut rows)?.map(|(_, bytes)| bytes))
}

/// Reads the next whole value from `rows` (a range of a table of rows, in
/// key order, starting at a value's first row): the key guard of its
/// first row and its bytes. Reads only that value's rows, so a cycle is
/// read value by value. A value whose rows are missing or out of place is
/// refused as corrupt.
fn next_value<'a, K: Key + 'static>(
    rows: &mut impl Iterator<Item = Result<RowGuards<'a, K>, redb::StorageError>>,
) -> Result<Option<ValueRead<'a, K>>, EdgeError> {
    let corrupt = |what: &str| EdgeError::Store(format!("corrupt record: {what}"));
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    let (key, row) = first.map_err(rdb)?;
    let head = row.value();
    if key.value().1 != 0 || head.len() < LENGTH_HEAD {
        return Err(corrupt("a value without its first row"));
    }
    let (len, start) = head.split_at(LENGTH_HEAD);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| corrupt("length"))?);
    let len = usize::try_from(len).map_err(|_| corrupt("length"))?;
    if len < start.len() {
        return Err(corrupt("a row longer than its value"));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|_| corrupt("length"))?;
    bytes.extend_from_slice(start);
    drop(row);
    let own_key = K::as_bytes(&key.value().0).as_ref().to_vec();
    let mut index = 0u32;
    while bytes.len() < len {
        let Some(next) = rows.next() else {
            return Err(corrupt("a value cut short"));
        };
        let (k, row) = next.map_err(rdb)?;
        let (next_key, i) = k.value();
        if Some(i) != index.checked_add(1) || K::as_bytes(&next_key).as_ref() != own_key {
            return Err(corrupt("a value with a row missing"));
        }
        index = i;
        let part = row.value();
        if bytes.len() + part.len() > len {
            return Err(corrupt("a row longer than its value"));
        }
        bytes.extend_from_slice(part);
    }
    Ok(Some((key, bytes)))
}

/// The range of rows of the values whose keys are in `(lower, upper)`.
fn rows_of<K>(lower: Bound<K>, upper: Bound<K>) -> RowRange<K> {
    let lower = match lower {
        Bound::Included(k) => Bound::Included((k, 0)),
        Bound::Excluded(k) => Bound::Excluded((k, u32::MAX)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let upper = match upper {
        Bound::Included(k) => Bound::Included((k, u32::MAX)),
        Bound::Excluded(k) => Bound::Excluded((k, 0)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lower, upper)
}

/// Who sent a change and with which counter.
pub type Stamp<'a> = (&'a NodeId, u64);

/// The edge's store.
#[derive(Debug)]
pub struct EdgeStore {
    /// `None` after a failed write closed it until it reopens.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// The page cache's size (kept to reopen the file).
    cache_bytes: usize,
}

impl EdgeStore {
    /// Opens or creates `dir/edge.redb`.
    ///
    /// The directory is created 0700 and `edge.redb` 0600 (it holds the
    /// members' masked submissions and encrypted bills). A new store records
    /// its format version ([`STORE_FORMAT`]). An existing file is first
    /// opened read-only: a file that is not an edge store or is damaged, a
    /// store of a newer format, and a store another process holds open are
    /// refused with an error naming the file and what to do, and the file
    /// is left as it was. A store left by a killed edge is repaired by redb
    /// on open (nothing committed is lost).
    pub fn open(dir: &Path) -> Result<EdgeStore, EdgeError> {
        EdgeStore::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`EdgeStore::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<EdgeStore, EdgeError> {
        let path = private_store_file(dir, "edge.redb")
            .map_err(|e| EdgeError::Store(format!("{}: {e}", dir.display())))?;
        let existing = std::fs::metadata(&path)
            .map_err(|e| EdgeError::Store(format!("{}: {e}", path.display())))?
            .len()
            > 0;
        if existing {
            check_existing(&path)?;
        }
        let db = open_db(&path, cache_bytes)?;
        let store = EdgeStore {
            db: RwLock::new(Some(db)),
            path,
            cache_bytes,
        };
        let migrated = store.write_txn(|txn| {
            let format = stored_format(txn)?;
            if format > STORE_FORMAT {
                return Err(EdgeError::StoreTooNew {
                    path: store.path.clone(),
                    found: format,
                    supported: STORE_FORMAT,
                });
            }
            let migrated = if format < 2 {
                Some(migrate_to_2(txn)?)
            } else {
                None
            };
            let rewritten = if format < 3 {
                Some(secagg::migrate_to_3(txn)?)
            } else {
                None
            };
            txn.open_table(MEMBERS).map_err(rdb)?;
            txn.open_table(CYCLES).map_err(rdb)?;
            txn.open_table(SUBMISSIONS).map_err(rdb)?;
            txn.open_table(ROSTERS).map_err(rdb)?;
            txn.open_table(ROUNDS).map_err(rdb)?;
            txn.open_table(BILLS).map_err(rdb)?;
            txn.open_table(BILLED).map_err(rdb)?;
            txn.open_table(AGGREGATES).map_err(rdb)?;
            txn.open_table(DELIVERED).map_err(rdb)?;
            txn.open_table(COUNTERS).map_err(rdb)?;
            txn.open_table(BILLING_PROGRESS).map_err(rdb)?;
            txn.open_table(SUBMISSION_COUNTS).map_err(rdb)?;
            txn.open_table(ROTATIONS).map_err(rdb)?;
            txn.open_table(META)
                .map_err(rdb)?
                .insert(FORMAT_KEY, STORE_FORMAT)
                .map_err(rdb)?;
            Ok((migrated, rewritten))
        });
        let (migrated, rewritten) = match migrated {
            Ok(m) => m,
            Err(e @ EdgeError::StoreTooNew { .. }) => return Err(e),
            Err(e) => {
                return Err(EdgeError::Store(format!(
                    "{}: opening (and migrating an older store to format {STORE_FORMAT}, in \
                     one transaction: nothing was changed if it failed): {e}",
                    store.path.display()
                )));
            }
        };
        if let Some(events) = rewritten {
            tracing::info!(path = %store.path.display(), events, "round events migrated to format 3");
        }
        if let Some(rows) = migrated {
            tracing::info!(path = %store.path.display(), rows, "store migrated from format 1 to format 2");
            store.compact();
        }
        Ok(store)
    }

    /// Moves live pages to the front of the file and trims its free tail
    /// (after a migration, which frees the whole of the old tables). A
    /// failure (a full disk) leaves the store as it was, only larger: it is
    /// logged, not returned.
    fn compact(&self) {
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = guard.as_mut() else { return };
        match db.compact() {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "store not compacted");
                // A failed compaction may leave the database refusing
                // writes until it is reopened.
                *guard = None;
            }
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(
        &self,
        stamp: Option<Stamp<'_>>,
        f: impl FnOnce(&WriteTransaction) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        self.write_txn(|txn| {
            f(txn)?;
            if let Some((node, counter)) = stamp {
                txn.open_table(COUNTERS)
                    .map_err(rdb)?
                    .insert(node.0.as_slice(), counter)
                    .map_err(rdb)?;
            }
            Ok(())
        })
    }

    /// Runs `f` on the open database, reopening it first if a failed
    /// write closed it.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, EdgeError>,
    ) -> Result<T, EdgeError> {
        {
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = guard.as_ref() {
                return f(db);
            }
        }
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(open_db(&self.path, self.cache_bytes)?);
            tracing::info!(path = %self.path.display(), "store reopened after a failed write");
        }
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(EdgeError::Store("store closed".into())),
        }
    }

    /// A read transaction.
    fn begin_read(&self) -> Result<redb::ReadTransaction, EdgeError> {
        self.with_db(|db| db.begin_read().map_err(rdb))
    }

    /// Runs `f` in one write transaction and commits it; a full disk is
    /// reported with the file's name, and nothing of `f` is kept.
    ///
    /// After an I/O error redb refuses every later transaction, reads
    /// included, until the database is reopened: the store closes it at
    /// once and reopens it on the next call (redb repairs it from its last
    /// commit), so what is stored stays readable while the disk is full.
    fn write_txn<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, EdgeError>,
    ) -> Result<T, EdgeError> {
        let result = (|| {
            let txn = self.with_db(|db| db.begin_write().map_err(rdb))?;
            let out = f(&txn)?;
            txn.commit().map_err(rdb)?;
            Ok(out)
        })();
        match result {
            Err(EdgeError::StoreFull(detail)) => {
                // Closed now (the failed transaction is dropped); reopened
                // by the next call.
                let old = self
                    .db
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                drop(old);
                tracing::error!(path = %self.path.display(), %detail, "store full: write refused");
                Err(EdgeError::StoreFull(format!(
                    "{}: {detail}",
                    self.path.display()
                )))
            }
            other => other,
        }
    }

    /// Stores a joined member.
    pub fn put_member(
        &self,
        stamp: Stamp<'_>,
        id: &MemberId,
        m: &MemberRecord,
    ) -> Result<(), EdgeError> {
        let bytes = enc(m)?;
        self.write(Some(stamp), |t| {
            put_value(
                &mut t.open_table(MEMBERS).map_err(rdb)?,
                id.as_str(),
                &bytes,
            )?;
            Ok(())
        })
    }

    /// Stores a cycle.
    pub fn put_cycle(&self, stamp: Stamp<'_>, c: &CycleRecord) -> Result<(), EdgeError> {
        let bytes = enc(c)?;
        self.write(Some(stamp), |t| {
            t.open_table(CYCLES)
                .map_err(rdb)?
                .insert(c.context.cycle().0, bytes.as_slice())
                .map_err(rdb)?;
            Ok(())
        })
    }

    /// Stores a submission; refused ([`EdgeError::BillingStarted`]) once
    /// the cycle's billing has begun ([`EdgeStore::begin_billing`]) or
    /// ended.
    pub fn put_submission(&self, stamp: Stamp<'_>, d: &HiddenData) -> Result<(), EdgeError> {
        let bytes = d.to_bytes();
        self.write(Some(stamp), |t| {
            if billing_started(t, d.cycle)? {
                return Err(EdgeError::BillingStarted(d.cycle));
            }
            let mut subs = t.open_table(SUBMISSIONS).map_err(rdb)?;
            let mut counts = t.open_table(SUBMISSION_COUNTS).map_err(rdb)?;
            let counted = counts.get(d.cycle.0).map_err(rdb)?.map(|v| v.value());
            let before = match counted {
                Some(n) => n,
                // The cycle's first submission, or a store written before
                // the counts were kept: counted once.
                None => value_count(&subs, d.cycle)? as u64,
            };
            let new = !put_value(&mut subs, (d.cycle.0, d.member.as_str()), &bytes)?;
            counts
                .insert(d.cycle.0, before + u64::from(new))
                .map_err(rdb)?;
            Ok(())
        })
    }

    /// Stores a verified member list.
    pub fn put_roster(&self, stamp: Stamp<'_>, r: &SignedRoster) -> Result<(), EdgeError> {
        let bytes = enc(r)?;
        self.write(Some(stamp), |t| {
            t.open_table(ROSTERS)
                .map_err(rdb)?
                .insert(r.roster.version, bytes.as_slice())
                .map_err(rdb)?;
            Ok(())
        })
    }

    /// Records a member's key rotation with the request's counter, in one
    /// transaction: the old node is retired and the member's joined record
    /// (if it joined) names the new node.
    pub fn put_rotation(&self, stamp: Stamp<'_>, r: &Rotation) -> Result<(), EdgeError> {
        let bytes = enc(r)?;
        self.write(Some(stamp), |t| {
            let mut rotations = t.open_table(ROTATIONS).map_err(rdb)?;
            if rotations.get(r.from.0.as_slice()).map_err(rdb)?.is_some() {
                return Err(EdgeError::Store(format!(
                    "node {} was already rotated away from",
                    r.from.to_hex()
                )));
            }
            rotations
                .insert(r.from.0.as_slice(), bytes.as_slice())
                .map_err(rdb)?;
            let mut members = t.open_table(MEMBERS).map_err(rdb)?;
            let joined: Option<MemberRecord> = get_value(&members, r.member.as_str())?
                .map(|v| dec(&v))
                .transpose()?;
            if let Some(mut record) = joined {
                record.node = r.to;
                let record = enc(&record)?;
                put_value(&mut members, r.member.as_str(), &record)?;
            }
            Ok(())
        })
    }

    /// Every stored rotation, by the node id it retired.
    pub fn rotations(&self) -> Result<Vec<Rotation>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(ROTATIONS).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(rdb)? {
            out.push(dec(row.map_err(rdb)?.1.value())?);
        }
        Ok(out)
    }

    /// Every stored member list, oldest first.
    pub fn rosters(&self) -> Result<Vec<SignedRoster>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(ROSTERS).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(rdb)? {
            out.push(dec(row.map_err(rdb)?.1.value())?);
        }
        Ok(out)
    }

    /// One member's submission of a cycle.
    pub fn submission(
        &self,
        cycle: CycleId,
        member: &MemberId,
    ) -> Result<Option<HiddenData>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(SUBMISSIONS).map_err(rdb)?;
        get_value(&t, (cycle.0, member.as_str()))?
            .map(|v| wire(&v))
            .transpose()
    }

    /// Stores all bills of a cycle and its unmasked aggregates (one vector
    /// per field, in the model's order) and marks it billed, in one
    /// transaction, and drops its submissions and round events (no longer
    /// needed).
    pub fn put_bills(
        &self,
        cycle: CycleId,
        bills: &[HiddenBill],
        record: BilledRecord,
        aggregates: &[Vec<i64>],
    ) -> Result<(), EdgeError> {
        let rec = enc(&record)?;
        let agg = enc(&aggregates)?;
        self.write(None, |t| {
            {
                let mut table = t.open_table(BILLS).map_err(rdb)?;
                for b in bills {
                    put_value(&mut table, (cycle.0, b.member.as_str()), &b.to_bytes())?;
                }
            }
            t.open_table(BILLED)
                .map_err(rdb)?
                .insert(cycle.0, rec.as_slice())
                .map_err(rdb)?;
            t.open_table(AGGREGATES)
                .map_err(rdb)?
                .insert(cycle.0, agg.as_slice())
                .map_err(rdb)?;
            t.open_table(SUBMISSIONS)
                .map_err(rdb)?
                .retain_in(cycle_value_rows(cycle, None), |_, _| false)
                .map_err(rdb)?;
            t.open_table(ROUNDS)
                .map_err(rdb)?
                .retain_in(round_rows(cycle), |_, _| false)
                .map_err(rdb)?;
            Ok(())
        })
    }

    /// Records that a member fetched its bill (first time only).
    pub fn mark_delivered(
        &self,
        cycle: CycleId,
        member: &MemberId,
        at: u64,
    ) -> Result<bool, EdgeError> {
        let already = {
            let r = self.begin_read()?;
            let t = r.open_table(DELIVERED).map_err(rdb)?;
            t.get((cycle.0, member.as_str())).map_err(rdb)?.is_some()
        };
        if already {
            return Ok(false);
        }
        self.write(None, |t| {
            t.open_table(DELIVERED)
                .map_err(rdb)?
                .insert((cycle.0, member.as_str()), at)
                .map_err(rdb)?;
            Ok(())
        })?;
        Ok(true)
    }

    /// When a member's bill of a cycle was first delivered, if it was.
    pub fn delivered(&self, cycle: CycleId, member: &MemberId) -> Result<Option<u64>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(DELIVERED).map_err(rdb)?;
        Ok(t.get((cycle.0, member.as_str()))
            .map_err(rdb)?
            .map(|v| v.value()))
    }

    /// Records a request counter alone (for requests that change nothing
    /// else).
    pub fn put_counter(&self, node: &NodeId, counter: u64) -> Result<(), EdgeError> {
        self.write(Some((node, counter)), |_| Ok(()))
    }

    /// All joined members.
    /// Every joined member's node and X25519 key, without its public key
    /// (each record is decoded and its key dropped at once: the index of a
    /// large community stays small).
    pub fn member_index(&self) -> Result<Vec<(MemberId, NodeId, IdentityPublic)>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        let mut out = Vec::new();
        // The node and X25519 key lead the record: only each member's
        // first row is read (a seek per member skips the key's rows).
        let mut last: Option<String> = None;
        loop {
            let lower = match &last {
                Some(id) => Bound::Excluded((id.as_str(), u32::MAX)),
                None => Bound::Unbounded,
            };
            let mut rows = t
                .range::<(&str, u32)>((lower, Bound::Unbounded))
                .map_err(rdb)?;
            let Some(row) = rows.next() else { break };
            let (k, v) = row.map_err(rdb)?;
            let (id, index) = k.value();
            let head = v.value();
            if index != 0 || head.len() < LENGTH_HEAD {
                return Err(EdgeError::Store(format!(
                    "corrupt record: member {id} without its first row"
                )));
            }
            let (node, przs): (NodeId, IdentityPublic) = dec(&head[LENGTH_HEAD..])?;
            out.push((MemberId::new(id).map_err(err)?, node, przs));
            last = Some(id.to_string());
        }
        Ok(out)
    }

    /// One joined member.
    pub fn member(&self, id: &MemberId) -> Result<Option<MemberRecord>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        get_value(&t, id.as_str())?.map(|v| dec(&v)).transpose()
    }

    /// All joined members, with their public keys.
    pub fn members(&self) -> Result<Vec<(MemberId, MemberRecord)>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        let mut out = Vec::new();
        let mut rows = t.iter().map_err(rdb)?;
        while let Some((k, bytes)) = next_value(&mut rows)? {
            let id = MemberId::new(k.value().0).map_err(err)?;
            out.push((id, dec(&bytes)?));
        }
        Ok(out)
    }

    /// All cycles.
    pub fn cycles(&self) -> Result<Vec<CycleRecord>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(CYCLES).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(rdb)? {
            out.push(dec(row.map_err(rdb)?.1.value())?);
        }
        Ok(out)
    }

    fn per_cycle<T>(
        &self,
        def: TableDefinition<Rows<(u64, &str)>, &[u8]>,
        cycle: CycleId,
        f: impl Fn(&[u8]) -> Result<T, EdgeError>,
    ) -> Result<Vec<T>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(def).map_err(rdb)?;
        let mut out = Vec::new();
        let mut rows = t.range(cycle_value_rows(cycle, None)).map_err(rdb)?;
        while let Some((_, bytes)) = next_value(&mut rows)? {
            out.push(f(&bytes)?);
        }
        Ok(out)
    }

    /// A cycle's submissions.
    pub fn submissions(&self, cycle: CycleId) -> Result<Vec<HiddenData>, EdgeError> {
        self.per_cycle(SUBMISSIONS, cycle, wire)
    }

    /// The members that submitted data for a cycle (keys only: the
    /// submissions themselves are not read).
    pub fn submitted(&self, cycle: CycleId) -> Result<Vec<MemberId>, EdgeError> {
        self.members_in(SUBMISSIONS, cycle)
    }

    fn members_in(
        &self,
        def: TableDefinition<Rows<(u64, &str)>, &[u8]>,
        cycle: CycleId,
    ) -> Result<Vec<MemberId>, EdgeError> {
        let r = self.begin_read()?;
        value_members(&r.open_table(def).map_err(rdb)?, cycle)
    }

    /// A billed cycle's unmasked aggregates, one vector per field in the
    /// model's order (empty when the billing did not record them).
    pub fn aggregates(&self, cycle: CycleId) -> Result<Option<Vec<Vec<i64>>>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(AGGREGATES).map_err(rdb)?;
        t.get(cycle.0)
            .map_err(rdb)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// Whether a cycle is billed, and how.
    pub fn billed(&self, cycle: CycleId) -> Result<Option<BilledRecord>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(BILLED).map_err(rdb)?;
        t.get(cycle.0)
            .map_err(rdb)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// A member's bill.
    pub fn bill(&self, cycle: CycleId, member: &MemberId) -> Result<Option<HiddenBill>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(BILLS).map_err(rdb)?;
        get_value(&t, (cycle.0, member.as_str()))?
            .map(|v| wire(&v))
            .transpose()
    }

    /// Bills stored for a cycle.
    pub fn bill_count(&self, cycle: CycleId) -> Result<usize, EdgeError> {
        Ok(self.members_in(BILLS, cycle)?.len())
    }

    /// Last accepted counters.
    pub fn counters(&self) -> Result<Vec<(NodeId, u64)>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(COUNTERS).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(rdb)? {
            let (k, v) = row.map_err(rdb)?;
            let key: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| EdgeError::Store("corrupt counter key".into()))?;
            out.push((NodeId(key), v.value()));
        }
        Ok(out)
    }
}

/// Whether a cycle's billing has begun or ended (in a write transaction).
fn billing_started(t: &WriteTransaction, cycle: CycleId) -> Result<bool, EdgeError> {
    Ok(t.open_table(BILLING_PROGRESS)
        .map_err(rdb)?
        .get(cycle.0)
        .map_err(rdb)?
        .is_some()
        || t.open_table(BILLED)
            .map_err(rdb)?
            .get(cycle.0)
            .map_err(rdb)?
            .is_some())
}

/// The range of a cycle's rows after `after` (all of them without).
fn cycle_rows<'a>(
    cycle: CycleId,
    after: Option<&'a MemberId>,
) -> (Bound<(u64, &'a str)>, Bound<(u64, &'a str)>) {
    let start = match after {
        Some(m) => Bound::Excluded((cycle.0, m.as_str())),
        None => Bound::Included((cycle.0, "")),
    };
    let end = match cycle.0.checked_add(1) {
        Some(next) => Bound::Excluded((next, "")),
        None => Bound::Unbounded,
    };
    (start, end)
}

/// The rows ([`put_value`]) of a cycle's values after `after`'s (all of
/// them without).
fn cycle_value_rows(cycle: CycleId, after: Option<&MemberId>) -> RowRange<(u64, &str)> {
    let (start, end) = cycle_rows(cycle, after);
    rows_of(start, end)
}

/// The rows of a cycle's round events.
fn round_rows(cycle: CycleId) -> RowRange<(u64, u64)> {
    rows_of(
        Bound::Included((cycle.0, 0)),
        Bound::Included((cycle.0, u64::MAX)),
    )
}

/// The members with a value of `cycle` in a table of rows, in order,
/// reading only each value's first row (a seek per value skips the rest).
fn value_members(
    t: &impl ReadableTable<Rows<(u64, &'static str)>, &'static [u8]>,
    cycle: CycleId,
) -> Result<Vec<MemberId>, EdgeError> {
    let mut out: Vec<MemberId> = Vec::new();
    loop {
        let mut rows = t.range(cycle_value_rows(cycle, out.last())).map_err(rdb)?;
        let Some(row) = rows.next() else { break };
        let (k, _) = row.map_err(rdb)?;
        let ((_, member), index) = k.value();
        if index != 0 {
            return Err(EdgeError::Store(format!(
                "corrupt record: {member} of {cycle} without its first row"
            )));
        }
        out.push(
            MemberId::new(member.to_string())
                .map_err(|e| EdgeError::Store(format!("corrupt member id: {e}")))?,
        );
    }
    Ok(out)
}

/// Submissions deleted per transaction by [`EdgeStore::prune`].
const PRUNE_BATCH: usize = 256;

/// The first `limit` members with a value of `cycle` in a table of rows
/// (a seek per value, as [`value_members`]).
fn first_value_members(
    t: &impl ReadableTable<Rows<(u64, &'static str)>, &'static [u8]>,
    cycle: CycleId,
    limit: usize,
) -> Result<Vec<String>, EdgeError> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < limit {
        let after = out
            .last()
            .map(|m| MemberId::new(m.clone()))
            .transpose()
            .map_err(err)?;
        let mut rows = t
            .range(cycle_value_rows(cycle, after.as_ref()))
            .map_err(rdb)?;
        let Some(row) = rows.next() else { break };
        let (k, _) = row.map_err(rdb)?;
        let ((_, member), _) = k.value();
        out.push(member.to_string());
    }
    Ok(out)
}

/// The values of `cycle` in a table of rows.
fn value_count(
    t: &impl ReadableTable<Rows<(u64, &'static str)>, &'static [u8]>,
    cycle: CycleId,
) -> Result<usize, EdgeError> {
    Ok(value_members(t, cycle)?.len())
}

/// How far a cycle's billing got: written with [`EdgeStore::begin_billing`]
/// and advanced by every [`EdgeStore::put_bills_batch`] in the batch's
/// transaction, so a restarted edge resumes after the last committed batch
/// with the same seed (its recomputed bills are the ones it would have
/// stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingProgress {
    /// Seed of the cycle's re-randomisation
    /// (`pb_shared_billing::CycleBiller::new`).
    pub seed: [u8; 32],
    /// The last member billed (batches go in member order); `None` before
    /// the first batch.
    pub last: Option<MemberId>,
    /// Bills stored so far.
    pub bills: u64,
    /// Submissions of the cycle when billing began (each gets one bill).
    pub submissions: u64,
    /// Unix seconds at which billing began.
    pub started_at: u64,
}

/// What [`EdgeStore::prune`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Billed cycles whose submissions (and round events) were deleted.
    pub cycles: Vec<CycleId>,
    /// Submissions deleted.
    pub submissions: usize,
    /// Delivered bills deleted.
    pub bills: usize,
    /// Billed cycles whose SecAgg+ tables (shares, masked vectors,
    /// answers) were dropped.
    pub round_tables: Vec<CycleId>,
}

/// The store's size on disk against what it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskUsage {
    /// Bytes of the store file (its length: redb grows it ahead of use,
    /// doubling it up to 4 GiB, and the part not written yet takes no
    /// disk space).
    pub file_bytes: u64,
    /// Bytes the file takes on disk (its allocated blocks; its length
    /// where the platform does not say).
    pub disk_bytes: u64,
    /// Joined members.
    pub members: usize,
    /// Cycles recorded.
    pub cycles: usize,
    /// Sum over the recorded cycles of their members.
    pub member_cycles: u64,
}

impl DiskUsage {
    /// File bytes per member per cycle (`file_bytes / member_cycles`);
    /// `None` before any cycle has members.
    pub fn bytes_per_member_cycle(&self) -> Option<f64> {
        (self.member_cycles > 0).then(|| self.file_bytes as f64 / self.member_cycles as f64)
    }
}

/// One table's share of the store, as redb accounts for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableUsage {
    /// The table's name.
    pub name: String,
    /// Its rows (for a table of values in rows, rows, not values).
    pub rows: u64,
    /// Bytes of its keys and values.
    pub stored_bytes: u64,
    /// Bytes of the pages it takes: what it stores, its branch pages and
    /// what page rounding and partly filled pages leave unused.
    pub page_bytes: u64,
}

/// The length of a file and the bytes it takes on disk.
fn file_sizes(path: &Path) -> Result<(u64, u64), EdgeError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| EdgeError::Store(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    let disk = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
    #[cfg(not(unix))]
    let disk = meta.len();
    Ok((meta.len(), disk))
}

/// Every table's usage in a read transaction, by name.
fn tables_usage(r: &redb::ReadTransaction) -> Result<Vec<TableUsage>, EdgeError> {
    let mut out = Vec::new();
    for handle in r.list_tables().map_err(rdb)? {
        let name = handle.name().to_string();
        let t = r.open_untyped_table(handle).map_err(rdb)?;
        let stats = t.stats().map_err(rdb)?;
        out.push(TableUsage {
            name,
            rows: t.len().map_err(rdb)?,
            stored_bytes: stats.stored_bytes(),
            page_bytes: stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The tables of a store file that is not open (of any format: a format
/// 1 store is read as it is, not migrated), with the file's length and
/// the bytes it takes on disk: where a store's bytes go.
pub fn store_usage(path: &Path) -> Result<(Vec<TableUsage>, u64, u64), EdgeError> {
    let db = redb::Builder::new()
        .open_read_only(path)
        .map_err(|e| unreadable(path, e))?;
    let r = db.begin_read().map_err(|e| unreadable(path, e))?;
    let tables = tables_usage(&r)?;
    let (len, disk) = file_sizes(path)?;
    Ok((tables, len, disk))
}

/// Streaming billing, retention and disk usage: what an edge needs to bill
/// a large cycle batch by batch from the store, holding nothing per member
/// in memory, and to keep old cycles from filling the disk.
impl EdgeStore {
    /// Up to `n` of a cycle's submissions in member order, after `after`
    /// (from the first without): one batch, read without loading the rest.
    pub fn submissions_batch(
        &self,
        cycle: CycleId,
        after: Option<&MemberId>,
        n: usize,
    ) -> Result<Vec<HiddenData>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(SUBMISSIONS).map_err(rdb)?;
        let mut out = Vec::with_capacity(n.min(4096));
        let mut rows = t.range(cycle_value_rows(cycle, after)).map_err(rdb)?;
        while out.len() < n {
            let Some((_, bytes)) = next_value(&mut rows)? else {
                break;
            };
            out.push(wire(&bytes)?);
        }
        Ok(out)
    }

    /// Like [`EdgeStore::submissions_batch`], each submission with its
    /// member's compact public key read in the same transaction from the
    /// member's one stored copy: the input of
    /// `pb_shared_billing::CycleBiller::bill_batch`.
    pub fn billing_batch(
        &self,
        cycle: CycleId,
        after: Option<&MemberId>,
        n: usize,
    ) -> Result<Vec<(HiddenData, CompactPublicKey)>, EdgeError> {
        let r = self.begin_read()?;
        let subs = r.open_table(SUBMISSIONS).map_err(rdb)?;
        let members = r.open_table(MEMBERS).map_err(rdb)?;
        let mut out = Vec::with_capacity(n.min(4096));
        let mut rows = subs.range(cycle_value_rows(cycle, after)).map_err(rdb)?;
        while out.len() < n {
            let Some((k, bytes)) = next_value(&mut rows)? else {
                break;
            };
            let ((_, member), _) = k.value();
            let d: HiddenData = wire(&bytes)?;
            if d.member.as_str() != member || d.cycle != cycle {
                return Err(EdgeError::Store(format!(
                    "corrupt record: the submission stored as {member} of {cycle} is {}'s of {}",
                    d.member, d.cycle
                )));
            }
            let m = get_value(&members, member)?.ok_or_else(|| {
                EdgeError::Store(format!("{member}: submission of an unknown member"))
            })?;
            let record: MemberRecord = dec(&m)?;
            out.push((d, record.public_key));
        }
        Ok(out)
    }

    /// Reads a cycle's submissions after `after`, `n` at a time as
    /// [`EdgeStore::billing_batch`] does, and hands each batch to `f` in
    /// member order, reading the next batch on a second thread while `f`
    /// works on the current one (at most two batches in memory). Stops at
    /// the first error, of the store or of `f`.
    pub fn for_each_billing_batch<E: From<EdgeError> + Send>(
        &self,
        cycle: CycleId,
        after: Option<&MemberId>,
        n: usize,
        mut f: impl FnMut(Vec<(HiddenData, CompactPublicKey)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let n = n.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let stop = &stop;
            scope.spawn(move || {
                let mut after = after.cloned();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch = self.billing_batch(cycle, after.as_ref(), n);
                    let done = match &batch {
                        Ok(rows) => {
                            after = rows.last().map(|(d, _)| d.member.clone());
                            rows.len() < n
                        }
                        Err(_) => true,
                    };
                    if tx.send(batch).is_err() || done {
                        break;
                    }
                }
            });
            let result = (|| {
                for batch in rx.iter() {
                    let batch = batch?;
                    if !batch.is_empty() {
                        f(batch)?;
                    }
                }
                Ok(())
            })();
            // Unblocks the reader if `f` failed; the scope joins it.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            drop(rx);
            result
        })
    }

    /// A member's compact public key (its one stored copy).
    pub fn public_key(&self, member: &MemberId) -> Result<Option<CompactPublicKey>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        get_value(&t, member.as_str())?
            .map(|v| dec::<MemberRecord>(&v).map(|m| m.public_key))
            .transpose()
    }

    /// Submissions received for a cycle (pruned ones included), from the
    /// count kept as they are stored.
    pub fn submissions_received(&self, cycle: CycleId) -> Result<u64, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(SUBMISSION_COUNTS).map_err(rdb)?;
        match t.get(cycle.0).map_err(rdb)? {
            Some(v) => Ok(v.value()),
            None => Ok(self.submission_count(cycle)? as u64),
        }
    }

    /// Submissions stored for a cycle, counted one by one (a seek and the
    /// first row of each: for tests and audits).
    pub fn submission_count(&self, cycle: CycleId) -> Result<usize, EdgeError> {
        let r = self.begin_read()?;
        value_count(&r.open_table(SUBMISSIONS).map_err(rdb)?, cycle)
    }

    /// Begins (or resumes) a cycle's batch billing: records the seed and
    /// the unmasked aggregates (one vector per field, in the model's order)
    /// in one transaction, after which submissions of the cycle are
    /// refused. If billing had begun already (a restarted edge) nothing is
    /// written and the stored progress is returned: resume after its `last`
    /// with its seed and the stored [`EdgeStore::aggregates`]. A billed
    /// cycle is refused.
    pub fn begin_billing(
        &self,
        cycle: CycleId,
        seed: [u8; 32],
        aggregates: &[Vec<i64>],
        now: u64,
    ) -> Result<BillingProgress, EdgeError> {
        let agg = enc(&aggregates)?;
        self.write_txn(|t| {
            if t.open_table(BILLED)
                .map_err(rdb)?
                .get(cycle.0)
                .map_err(rdb)?
                .is_some()
            {
                return Err(EdgeError::Store(format!("{cycle} is billed already")));
            }
            let mut progress = t.open_table(BILLING_PROGRESS).map_err(rdb)?;
            if let Some(v) = progress.get(cycle.0).map_err(rdb)? {
                return dec(v.value());
            }
            let counted = t
                .open_table(SUBMISSION_COUNTS)
                .map_err(rdb)?
                .get(cycle.0)
                .map_err(rdb)?
                .map(|v| v.value());
            let submissions = match counted {
                Some(n) => n,
                None => value_count(&t.open_table(SUBMISSIONS).map_err(rdb)?, cycle)? as u64,
            };
            let fresh = BillingProgress {
                seed,
                last: None,
                bills: 0,
                submissions,
                started_at: now,
            };
            progress
                .insert(cycle.0, enc(&fresh)?.as_slice())
                .map_err(rdb)?;
            t.open_table(AGGREGATES)
                .map_err(rdb)?
                .insert(cycle.0, agg.as_slice())
                .map_err(rdb)?;
            Ok(fresh)
        })
    }

    /// Where a cycle's batch billing stands (`None`: not begun, or
    /// finished: see [`EdgeStore::billed`]).
    pub fn billing_progress(&self, cycle: CycleId) -> Result<Option<BillingProgress>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(BILLING_PROGRESS).map_err(rdb)?;
        t.get(cycle.0)
            .map_err(rdb)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// Stores one batch of a cycle's bills and advances the progress marker
    /// to its last member, in one transaction: after a crash either the
    /// whole batch and its marker are stored or neither.
    ///
    /// The bills must be of the cycle, in strictly increasing member order,
    /// all after the marker, each of a member with a stored submission:
    /// otherwise nothing is stored. Returns the new progress.
    pub fn put_bills_batch(
        &self,
        cycle: CycleId,
        bills: &[HiddenBill],
    ) -> Result<BillingProgress, EdgeError> {
        self.write_txn(|t| {
            let mut progress_table = t.open_table(BILLING_PROGRESS).map_err(rdb)?;
            let mut progress: BillingProgress = match progress_table.get(cycle.0).map_err(rdb)? {
                Some(v) => dec(v.value())?,
                None => {
                    return Err(EdgeError::Store(format!(
                        "{cycle}: no billing in progress (begin_billing first, or billed already)"
                    )));
                }
            };
            let subs = t.open_table(SUBMISSIONS).map_err(rdb)?;
            let mut table = t.open_table(BILLS).map_err(rdb)?;
            let mut last = progress.last.clone();
            for b in bills {
                if b.cycle != cycle {
                    return Err(EdgeError::Store(format!(
                        "a bill of {} in a batch of {cycle}",
                        b.cycle
                    )));
                }
                if last.as_ref().is_some_and(|l| &b.member <= l) {
                    return Err(EdgeError::Store(format!(
                        "{cycle}: bill of {} out of member order or billed already",
                        b.member
                    )));
                }
                if subs
                    .get(((cycle.0, b.member.as_str()), 0))
                    .map_err(rdb)?
                    .is_none()
                {
                    return Err(EdgeError::Store(format!(
                        "{cycle}: bill of {}, which has no submission",
                        b.member
                    )));
                }
                put_value(&mut table, (cycle.0, b.member.as_str()), &b.to_bytes())?;
                last = Some(b.member.clone());
            }
            progress.last = last;
            progress.bills += bills.len() as u64;
            progress_table
                .insert(cycle.0, enc(&progress)?.as_slice())
                .map_err(rdb)?;
            Ok(progress)
        })
    }

    /// Marks a batch-billed cycle billed, once every submission has its
    /// bill (none after the progress marker, as many bills as
    /// submissions); removes the progress marker in the same transaction.
    /// The submissions stay until [`EdgeStore::prune`].
    pub fn finish_billing(&self, cycle: CycleId, record: BilledRecord) -> Result<(), EdgeError> {
        let rec = enc(&record)?;
        self.write_txn(|t| {
            let mut progress_table = t.open_table(BILLING_PROGRESS).map_err(rdb)?;
            let progress: BillingProgress = match progress_table.get(cycle.0).map_err(rdb)? {
                Some(v) => dec(v.value())?,
                None => {
                    return Err(EdgeError::Store(format!("{cycle}: no billing in progress")));
                }
            };
            // Bills go in strictly increasing member order, each for a
            // stored submission, and submissions are refused once billing
            // began: every submission is billed once there are as many
            // bills as submissions (no scan of a large cycle).
            let unbilled = t
                .open_table(SUBMISSIONS)
                .map_err(rdb)?
                .range(cycle_value_rows(cycle, progress.last.as_ref()))
                .map_err(rdb)?
                .next()
                .is_some();
            if unbilled || progress.bills != progress.submissions {
                return Err(EdgeError::Store(format!(
                    "{cycle}: {} bill(s) stored for {} submission(s): not finished",
                    progress.bills, progress.submissions
                )));
            }
            progress_table.remove(cycle.0).map_err(rdb)?;
            t.open_table(BILLED)
                .map_err(rdb)?
                .insert(cycle.0, rec.as_slice())
                .map_err(rdb)?;
            Ok(())
        })
    }

    /// Applies the retention: deletes the submissions and dropout
    /// corrections of billed cycles other than the
    /// `keep_submissions_cycles` most recent billed ones (by cycle id), and
    /// the bills delivered at least `keep_bills_secs_after_delivery`
    /// seconds before `now` (their delivery record stays, so a late
    /// request is told the bill was delivered). Cycles being billed and
    /// undelivered bills are never touched. One transaction per pruned
    /// cycle, one for the bills; freed pages are reused by later writes.
    pub fn prune(&self, now: u64, retention: &Retention) -> Result<PruneReport, EdgeError> {
        let mut report = PruneReport::default();
        let billed: Vec<u64> = {
            let r = self.begin_read()?;
            let t = r.open_table(BILLED).map_err(rdb)?;
            let mut ids = Vec::new();
            for row in t.iter().map_err(rdb)? {
                ids.push(row.map_err(rdb)?.0.value());
            }
            ids
        };
        // The rounds' payloads of a billed cycle are needed no more,
        // whatever the retention.
        for cycle in self.round_table_cycles()? {
            if billed.binary_search(&cycle.0).is_ok() && self.drop_round_tables(cycle)? {
                report.round_tables.push(cycle);
            }
        }
        let old = billed
            .len()
            .saturating_sub(retention.keep_submissions_cycles);
        for &cycle in &billed[..old] {
            let cycle = CycleId(cycle);
            // In transactions of PRUNE_BATCH submissions: the edge's own
            // writes wait for each, never for a whole large cycle.
            let mut subs = 0;
            loop {
                let removed = self.write_txn(|t| {
                    let mut table = t.open_table(SUBMISSIONS).map_err(rdb)?;
                    let first = first_value_members(&table, cycle, PRUNE_BATCH)?;
                    for m in &first {
                        remove_value(&mut table, (cycle.0, m.as_str()))?;
                    }
                    Ok(first.len())
                })?;
                if removed == 0 {
                    break;
                }
                subs += removed;
            }
            self.write_txn(|t| {
                t.open_table(ROUNDS)
                    .map_err(rdb)?
                    .retain_in(round_rows(cycle), |_, _| false)
                    .map_err(rdb)
            })?;
            if subs > 0 {
                report.cycles.push(cycle);
                report.submissions += subs;
            }
        }
        let cutoff = now.saturating_sub(retention.keep_bills_secs_after_delivery);
        report.bills = self.write_txn(|t| {
            let delivered = t.open_table(DELIVERED).map_err(rdb)?;
            let mut bills = t.open_table(BILLS).map_err(rdb)?;
            let mut removed = 0;
            for row in delivered.iter().map_err(rdb)? {
                let (k, at) = row.map_err(rdb)?;
                let (cycle, member) = k.value();
                if at.value() <= cutoff && remove_value(&mut bills, (cycle, member))? {
                    removed += 1;
                }
            }
            Ok(removed)
        })?;
        Ok(report)
    }

    /// Every table's rows and bytes (redb's accounting): where the store's
    /// bytes go.
    pub fn table_usage(&self) -> Result<Vec<TableUsage>, EdgeError> {
        tables_usage(&self.begin_read()?)
    }

    /// The store file's size against the member-cycles it holds: the
    /// load report's disk bytes per member per cycle.
    pub fn disk_usage(&self) -> Result<DiskUsage, EdgeError> {
        let (file_bytes, disk_bytes) = file_sizes(&self.path)?;
        let r = self.begin_read()?;
        let members = self.member_index()?.len();
        let mut sizes = std::collections::BTreeMap::new();
        for row in r.open_table(ROSTERS).map_err(rdb)?.iter().map_err(rdb)? {
            let roster: SignedRoster = dec(row.map_err(rdb)?.1.value())?;
            sizes.insert(roster.roster.version, roster.roster.members.len() as u64);
        }
        let t = r.open_table(CYCLES).map_err(rdb)?;
        let (mut cycles, mut member_cycles) = (0, 0u64);
        for row in t.iter().map_err(rdb)? {
            let rec: CycleRecord = dec(row.map_err(rdb)?.1.value())?;
            cycles += 1;
            member_cycles += sizes.get(&rec.roster_version).copied().unwrap_or(0);
        }
        Ok(DiskUsage {
            file_bytes,
            disk_bytes,
            members,
            cycles,
            member_cycles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb_glwe::params::POLYNOMIAL_SIZE;
    use pb_glwe::{HiddenTotals, SeededGlwe};
    use pb_model::BillingModel;
    use pb_units::{PriceUnits, SlotCount};

    const SLOTS: usize = 4;

    fn member(i: usize) -> MemberId {
        MemberId::new(format!("m{i:03}")).unwrap()
    }

    fn glwe(i: usize) -> SeededGlwe {
        SeededGlwe {
            seed: i as u128,
            body: vec![i as u128 * 7 + 1; POLYNOMIAL_SIZE],
        }
    }

    fn record(i: usize) -> MemberRecord {
        MemberRecord {
            node: NodeId([i as u8; 32]),
            przs: IdentityPublic([i as u8; 32]),
            public_key: CompactPublicKey(glwe(1000 + i)),
        }
    }

    fn data(cycle: u64, i: usize) -> HiddenData {
        HiddenData {
            community: pb_units::CommunityId("c".into()),
            member: member(i),
            cycle: CycleId(cycle),
            model: BillingModel::Ucs,
            slots: SlotCount::new(SLOTS).unwrap(),
            masked: vec![vec![i as u64; SLOTS]; 3],
            ciphertexts: vec![glwe(i); pb_glwe::layout::chunk_count(3 * SLOTS)],
        }
    }

    fn bill(cycle: u64, i: usize) -> HiddenBill {
        HiddenBill {
            member: member(i),
            cycle: CycleId(cycle),
            totals: HiddenTotals {
                mask: vec![i as u128; POLYNOMIAL_SIZE],
                body: [i as u128, cycle as u128],
            },
        }
    }

    fn cycle_record(cycle: u64, n: usize) -> CycleRecord {
        let p = vec![PriceUnits(10); SLOTS];
        CycleRecord {
            context: CycleContext::new(CycleId(cycle), BillingModel::Ucs, p.clone(), p.clone(), p)
                .unwrap(),
            roster_version: n as u64,
            posted_at: 0,
        }
    }

    /// A member list of `n` members, as version `n` (the store keeps
    /// what it is given: the service verified it).
    fn roster(n: usize) -> SignedRoster {
        SignedRoster {
            roster: pb_secagg::Roster::new(
                "c",
                n as u64,
                (0..n)
                    .map(|i| pb_secagg::RosterEntry {
                        member: member(i),
                        identity: pb_protocol::NodeKey::from_bytes([i as u8; 32]).id().0,
                    })
                    .collect(),
            )
            .unwrap(),
            operator: [0; 32],
            signature: Vec::new(),
        }
    }

    const NODE: NodeId = NodeId([0xee; 32]);

    /// A store with `n` members, and cycles `cycles` each with all `n`
    /// submissions.
    fn filled(dir: &Path, n: usize, cycles: &[u64]) -> EdgeStore {
        let s = EdgeStore::open(dir).unwrap();
        let mut counter = 0;
        let mut stamp = || {
            counter += 1;
            (&NODE, counter)
        };
        for i in 0..n {
            s.put_member(stamp(), &member(i), &record(i)).unwrap();
        }
        s.put_roster(stamp(), &roster(n)).unwrap();
        for &c in cycles {
            s.put_cycle(stamp(), &cycle_record(c, n)).unwrap();
            for i in 0..n {
                s.put_submission(stamp(), &data(c, i)).unwrap();
            }
        }
        s
    }

    /// Bills a cycle through the batch API, `batch` at a time.
    fn bill_all(s: &EdgeStore, cycle: u64, batch: usize) {
        let p = s
            .begin_billing(CycleId(cycle), [cycle as u8; 32], &[vec![1]], 5)
            .unwrap();
        bill_all_from(s, cycle, batch, p.last);
    }

    /// Bills the rest of a begun cycle after `after` and finishes it.
    fn bill_all_from(s: &EdgeStore, cycle: u64, batch: usize, after: Option<MemberId>) {
        let c = CycleId(cycle);
        let mut after = after;
        loop {
            let rows = s.billing_batch(c, after.as_ref(), batch).unwrap();
            let Some(last) = rows.last() else { break };
            after = Some(last.0.member.clone());
            let bills: Vec<HiddenBill> = rows
                .iter()
                .map(|(d, _)| bill(cycle, d.member.as_str()[1..].parse().unwrap()))
                .collect();
            s.put_bills_batch(c, &bills).unwrap();
        }
        s.finish_billing(
            c,
            BilledRecord {
                at: 10,
                millis: 1,
                bills: s.bill_count(c).unwrap(),
            },
        )
        .unwrap();
    }

    #[test]
    fn batches_read_a_cycle_in_member_order_with_each_members_one_key() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 10, &[1, 2]);
        let mut seen = Vec::new();
        let mut after: Option<MemberId> = None;
        loop {
            let batch = s.submissions_batch(CycleId(1), after.as_ref(), 3).unwrap();
            assert!(batch.len() <= 3);
            let Some(last) = batch.last() else { break };
            after = Some(last.member.clone());
            seen.extend(batch);
        }
        assert_eq!(seen, (0..10).map(|i| data(1, i)).collect::<Vec<_>>());
        let rows = s.billing_batch(CycleId(2), Some(&member(7)), 100).unwrap();
        assert_eq!(rows.len(), 2);
        for (i, (d, key)) in (8..10).zip(&rows) {
            assert_eq!(d, &data(2, i));
            assert_eq!(key, &record(i).public_key);
        }
        assert!(s.submissions_batch(CycleId(3), None, 5).unwrap().is_empty());
        for n in [1, 3, 10, 11] {
            let mut got = Vec::new();
            s.for_each_billing_batch::<EdgeError>(CycleId(2), Some(&member(1)), n, |b| {
                assert!(b.len() <= n);
                got.extend(b);
                Ok(())
            })
            .unwrap();
            let want: Vec<_> = (2..10)
                .map(|i| (data(2, i), record(i).public_key))
                .collect();
            assert_eq!(got, want, "batches of {n}");
        }
        // An error of the callback stops the reading and is returned.
        let mut calls = 0;
        let e = s
            .for_each_billing_batch(CycleId(2), None, 2, |_| {
                calls += 1;
                Err(EdgeError::Runtime("stop".into()))
            })
            .unwrap_err();
        assert!(matches!(e, EdgeError::Runtime(_)) && calls == 1);
        assert_eq!(s.submission_count(CycleId(2)).unwrap(), 10);
        assert_eq!(s.submissions_received(CycleId(2)).unwrap(), 10);
        // Storing the same submission again does not count twice.
        s.put_submission((&NODE, 500), &data(2, 3)).unwrap();
        assert_eq!(s.submissions_received(CycleId(2)).unwrap(), 10);
        assert_eq!(s.submissions_received(CycleId(7)).unwrap(), 0);
        assert_eq!(
            s.public_key(&member(3)).unwrap(),
            Some(record(3).public_key)
        );
        assert_eq!(s.public_key(&member(99)).unwrap(), None);
    }

    #[test]
    fn the_public_key_is_stored_once_per_member_not_per_cycle() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 3, &[1, 2]);
        let key = enc(&record(0).public_key).unwrap();
        let r = s.begin_read().unwrap();
        let mut copies = 0;
        for def in [SUBMISSIONS, BILLS] {
            let t = r.open_table(def).unwrap();
            for row in t.iter().unwrap() {
                let v = row.unwrap().1.value().to_vec();
                copies += v.windows(64).filter(|w| *w == &key[16..80]).count();
            }
        }
        let t = r.open_table(CYCLES).unwrap();
        for row in t.iter().unwrap() {
            let v = row.unwrap().1.value().to_vec();
            copies += v.windows(64).filter(|w| *w == &key[16..80]).count();
        }
        assert_eq!(copies, 0, "the key appears outside the members table");
        let t = r.open_table(MEMBERS).unwrap();
        let v = get_value(&t, member(0).as_str()).unwrap().unwrap();
        assert_eq!(v.windows(64).filter(|w| *w == &key[16..80]).count(), 1);
    }

    #[test]
    fn batch_billing_resumes_after_a_restart_and_refuses_what_would_corrupt_it() {
        let d = tempfile::tempdir().unwrap();
        let c = CycleId(1);
        {
            let s = filled(d.path(), 7, &[1]);
            assert_eq!(s.billing_progress(c).unwrap(), None);
            let p = s.begin_billing(c, [1; 32], &[vec![4, 5]], 100).unwrap();
            assert_eq!((p.last, p.bills, p.submissions), (None, 0, 7));
            let p = s
                .put_bills_batch(c, &[bill(1, 0), bill(1, 1), bill(1, 2)])
                .unwrap();
            assert_eq!((p.last, p.bills), (Some(member(2)), 3));
            // Killed here: the store is dropped without finishing.
        }
        let s = EdgeStore::open(d.path()).unwrap();
        // Resuming keeps the first seed and the stored aggregates.
        let p = s.begin_billing(c, [2; 32], &[vec![9]], 200).unwrap();
        assert_eq!(p.seed, [1; 32]);
        assert_eq!(p.started_at, 100);
        assert_eq!((p.last.clone(), p.bills), (Some(member(2)), 3));
        assert_eq!(s.aggregates(c).unwrap(), Some(vec![vec![4, 5]]));
        assert_eq!(s.billing_progress(c).unwrap(), Some(p.clone()));

        // Refused, nothing changed: a late submission, a bill again or out
        // of order, of another cycle, of a member without submission, and
        // finishing early.
        let unchanged = |s: &EdgeStore| {
            assert_eq!(s.billing_progress(c).unwrap(), Some(p.clone()));
            assert_eq!(s.bill_count(c).unwrap(), 3);
            assert_eq!(s.submission_count(c).unwrap(), 7);
            assert_eq!(s.billed(c).unwrap(), None);
        };
        let mut late = data(1, 3);
        late.member = member(50);
        assert!(matches!(
            s.put_submission((&NODE, 999), &late),
            Err(EdgeError::BillingStarted(CycleId(1)))
        ));
        assert!(s.counters().unwrap().iter().all(|(_, n)| *n != 999));
        for bad in [
            vec![bill(1, 2)],
            vec![bill(1, 4), bill(1, 3)],
            vec![bill(1, 3), bill(1, 3)],
            vec![bill(1, 3), bill(2, 4)],
            vec![bill(1, 3), bill(1, 60)],
        ] {
            assert!(matches!(
                s.put_bills_batch(c, &bad),
                Err(EdgeError::Store(_))
            ));
            unchanged(&s);
        }
        let rec = BilledRecord {
            at: 1,
            millis: 1,
            bills: 7,
        };
        assert!(s.finish_billing(c, rec).is_err());
        unchanged(&s);
        assert!(s.put_bills_batch(CycleId(9), &[bill(9, 0)]).is_err());

        // The rest, from the marker on.
        let rest = s.billing_batch(c, p.last.as_ref(), 100).unwrap();
        assert_eq!(rest.len(), 4);
        s.put_bills_batch(c, &[bill(1, 3), bill(1, 4)]).unwrap();
        s.put_bills_batch(c, &[bill(1, 5), bill(1, 6)]).unwrap();
        s.finish_billing(c, rec).unwrap();
        assert_eq!(s.billed(c).unwrap(), Some(rec));
        assert_eq!(s.billing_progress(c).unwrap(), None);
        for i in 0..7 {
            assert_eq!(s.bill(c, &member(i)).unwrap(), Some(bill(1, i)));
        }
        // Billed: never begun again, no more bills or submissions.
        assert!(s.begin_billing(c, [3; 32], &[], 300).is_err());
        assert!(s.put_bills_batch(c, &[bill(1, 6)]).is_err());
        assert!(matches!(
            s.put_submission((&NODE, 1000), &late),
            Err(EdgeError::BillingStarted(_))
        ));
    }

    #[test]
    fn a_skipped_member_keeps_the_cycle_unfinished() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 5, &[1]);
        let c = CycleId(1);
        s.begin_billing(c, [0; 32], &[], 1).unwrap();
        s.put_bills_batch(c, &[bill(1, 0), bill(1, 1), bill(1, 3), bill(1, 4)])
            .unwrap();
        let rec = BilledRecord {
            at: 1,
            millis: 1,
            bills: 4,
        };
        let e = s.finish_billing(c, rec).unwrap_err().to_string();
        assert!(e.contains("4 bill(s) stored for 5 submission(s)"), "{e}");
        assert_eq!(s.billed(c).unwrap(), None);
        // Member 2 can no longer be billed in order: the cycle stays
        // unbilled rather than finishing without it.
        assert!(s.put_bills_batch(c, &[bill(1, 2)]).is_err());
    }

    #[test]
    fn a_store_without_submission_counts_counts_once_when_billing_begins() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 4, &[1]);
        // As a store written before the counts were kept.
        s.write_txn(|t| {
            t.open_table(SUBMISSION_COUNTS)
                .map_err(rdb)?
                .remove(1)
                .map_err(rdb)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(s.submissions_received(CycleId(1)).unwrap(), 4);
        let p = s.begin_billing(CycleId(1), [0; 32], &[], 1).unwrap();
        assert_eq!(p.submissions, 4);
        bill_all_from(&s, 1, 3, p.last);
        assert!(s.billed(CycleId(1)).unwrap().is_some());
    }

    #[test]
    fn prune_keeps_recent_cycles_and_undelivered_bills() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 4, &[1, 2, 3, 4]);
        for c in [1, 2, 3] {
            bill_all(&s, c, 3);
        }
        // Cycle 4 is being billed: never pruned.
        s.begin_billing(CycleId(4), [0; 32], &[], 5).unwrap();
        s.put_bills_batch(CycleId(4), &[bill(4, 0)]).unwrap();
        assert!(s.mark_delivered(CycleId(1), &member(0), 1_000).unwrap());
        assert!(s.mark_delivered(CycleId(3), &member(1), 2_000).unwrap());
        assert!(s.mark_delivered(CycleId(4), &member(0), 1_000).unwrap());
        let retention = Retention {
            keep_submissions_cycles: 1,
            keep_bills_secs_after_delivery: 500,
        };
        let r = s.prune(1_499, &retention).unwrap();
        assert_eq!(r.cycles, vec![CycleId(1), CycleId(2)]);
        assert_eq!((r.submissions, r.bills), (8, 0));
        for c in [1, 2] {
            assert_eq!(s.submission_count(CycleId(c)).unwrap(), 0);
            assert_eq!(s.submissions_received(CycleId(c)).unwrap(), 4);
            assert_eq!(s.bill_count(CycleId(c)).unwrap(), 4);
        }
        assert_eq!(s.submission_count(CycleId(3)).unwrap(), 4);
        assert_eq!(s.submission_count(CycleId(4)).unwrap(), 4);

        // 500 s after delivery: the bills delivered at 1,000 go (the one
        // of the cycle in billing too: delivered means the core has it).
        let r = s.prune(1_500, &retention).unwrap();
        assert_eq!(
            r,
            PruneReport {
                bills: 2,
                ..PruneReport::default()
            }
        );
        assert_eq!(s.bill(CycleId(1), &member(0)).unwrap(), None);
        assert_eq!(s.bill(CycleId(1), &member(1)).unwrap(), Some(bill(1, 1)));
        assert_eq!(s.bill(CycleId(3), &member(1)).unwrap(), Some(bill(3, 1)));
        // Pruning again changes nothing.
        assert_eq!(s.prune(1_500, &retention).unwrap(), PruneReport::default());
        let r = s
            .prune(
                u64::MAX,
                &Retention {
                    keep_submissions_cycles: 0,
                    keep_bills_secs_after_delivery: u64::MAX,
                },
            )
            .unwrap();
        assert_eq!(r.cycles, vec![CycleId(3)]);
        assert_eq!(r.bills, 0);
        assert_eq!(s.submission_count(CycleId(4)).unwrap(), 4);
        let r = s.prune(2_500, &Retention::default()).unwrap();
        assert_eq!(r.bills, 0);
        assert_eq!(s.bill(CycleId(3), &member(1)).unwrap(), Some(bill(3, 1)));
    }

    #[test]
    fn disk_usage_divides_the_file_by_member_cycles() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 5, &[1, 2]);
        let u = s.disk_usage().unwrap();
        assert_eq!((u.members, u.cycles, u.member_cycles), (5, 2, 10));
        assert_eq!(
            u.file_bytes,
            std::fs::metadata(d.path().join("edge.redb")).unwrap().len()
        );
        assert_eq!(u.bytes_per_member_cycle(), Some(u.file_bytes as f64 / 10.0));
        let empty = tempfile::tempdir().unwrap();
        let e = EdgeStore::open(empty.path()).unwrap();
        assert_eq!(e.disk_usage().unwrap().bytes_per_member_cycle(), None);
    }

    #[test]
    fn a_new_store_records_its_format() {
        let d = tempfile::tempdir().unwrap();
        let s = EdgeStore::open(d.path()).unwrap();
        let r = s.begin_read().unwrap();
        let t = r.open_table(META).unwrap();
        assert_eq!(t.get(FORMAT_KEY).unwrap().unwrap().value(), STORE_FORMAT);
    }

    /// A rotation is stored with its counter and the member's record
    /// naming the new node, in one transaction, and survives a reopening.
    #[test]
    fn a_rotation_is_stored_with_the_member_record() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 3, &[]);
        let old = s.member(&member(1)).unwrap().unwrap().node;
        let r = Rotation {
            member: member(1),
            from: old,
            to: NodeId([0x42; 32]),
            at: 9,
        };
        s.put_rotation((&old, 77), &r).unwrap();
        assert!(
            s.put_rotation((&old, 78), &r).is_err(),
            "a key is retired once"
        );
        drop(s);
        let s = EdgeStore::open(d.path()).unwrap();
        assert_eq!(s.rotations().unwrap(), vec![r]);
        assert_eq!(
            s.member(&member(1)).unwrap().unwrap().node,
            NodeId([0x42; 32])
        );
        assert!(s.counters().unwrap().contains(&(old, 77)));
        let rd = s.begin_read().unwrap();
        let t = rd.open_table(META).unwrap();
        assert_eq!(t.get(FORMAT_KEY).unwrap().unwrap().value(), STORE_FORMAT);
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_left_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        drop(filled(d.path(), 2, &[1]));
        let path = d.path().join("edge.redb");
        {
            let db = Database::open(&path).unwrap();
            let t = db.begin_write().unwrap();
            t.open_table(META)
                .unwrap()
                .insert(FORMAT_KEY, STORE_FORMAT + 1)
                .unwrap();
            t.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = EdgeStore::open(d.path()).unwrap_err();
        assert!(
            matches!(e, EdgeError::StoreTooNew { found, supported, .. }
                if found == STORE_FORMAT + 1 && supported == STORE_FORMAT),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("newer pb-edge"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn garbage_and_truncated_files_are_refused_and_left_as_they_are() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("edge.redb");
        let garbage: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let e = EdgeStore::open(d.path()).unwrap_err();
        assert!(matches!(e, EdgeError::StoreUnreadable { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("restore it from a backup"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);

        // A real store cut short (a bad copy, a damaged disk).
        let d = tempfile::tempdir().unwrap();
        drop(filled(d.path(), 6, &[1]));
        let path = d.path().join("edge.redb");
        let full = std::fs::read(&path).unwrap();
        for keep in [16, 4096, full.len() / 2] {
            std::fs::write(&path, &full[..keep]).unwrap();
            let e = EdgeStore::open(d.path()).unwrap_err();
            assert!(
                matches!(e, EdgeError::StoreUnreadable { .. }),
                "{keep}: {e}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), &full[..keep], "{keep}");
        }
        // The whole file opens again.
        std::fs::write(&path, &full).unwrap();
        let s = EdgeStore::open(d.path()).unwrap();
        assert_eq!(s.submission_count(CycleId(1)).unwrap(), 6);
    }

    #[test]
    fn a_store_open_elsewhere_is_named() {
        let d = tempfile::tempdir().unwrap();
        let _s = EdgeStore::open(d.path()).unwrap();
        let e = EdgeStore::open(d.path()).unwrap_err();
        assert!(matches!(e, EdgeError::StoreInUse(_)), "{e}");
        assert!(e.to_string().contains("already open"), "{e}");
    }

    const KILLED_DIR: &str = "PB_EDGE_TEST_KILLED_DIR";

    /// Run by `a_store_left_by_a_killed_edge_opens_with_everything_committed`:
    /// commits, then dies without closing the store.
    #[test]
    #[ignore = "run by a_store_left_by_a_killed_edge_opens_with_everything_committed"]
    fn killed_edge_child() {
        let Ok(dir) = std::env::var(KILLED_DIR) else {
            return;
        };
        let s = EdgeStore::open(Path::new(&dir)).unwrap();
        s.begin_billing(CycleId(1), [7; 32], &[vec![1]], 1).unwrap();
        s.put_bills_batch(CycleId(1), &[bill(1, 0)]).unwrap();
        std::process::abort();
    }

    #[test]
    fn a_store_left_by_a_killed_edge_opens_with_everything_committed() {
        let d = tempfile::tempdir().unwrap();
        drop(filled(d.path(), 3, &[1]));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::tests::killed_edge_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(KILLED_DIR, d.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child did not die");
        // redb marked the file as needing recovery: the read-only check
        // lets it through to be repaired, not refused as damaged.
        let s = EdgeStore::open(d.path()).unwrap();
        let p = s.billing_progress(CycleId(1)).unwrap().unwrap();
        assert_eq!((p.seed, p.last, p.bills), ([7; 32], Some(member(0)), 1));
        assert_eq!(s.bill(CycleId(1), &member(0)).unwrap(), Some(bill(1, 0)));
        assert_eq!(s.submission_count(CycleId(1)).unwrap(), 3);
    }

    const FULL_DISK_DIR: &str = "PB_EDGE_TEST_FULL_DISK_DIR";

    /// Run by `a_full_disk_refuses_the_write_and_damages_nothing` under a
    /// file size limit: writes submissions until the store refuses one.
    #[test]
    #[ignore = "run by a_full_disk_refuses_the_write_and_damages_nothing"]
    fn full_disk_child() {
        let Ok(dir) = std::env::var(FULL_DISK_DIR) else {
            return;
        };
        let s = EdgeStore::open(Path::new(&dir)).unwrap();
        let mut stored = 0;
        let refusal = loop {
            match s.put_submission((&NODE, 10_000 + stored as u64), &data(1, 100 + stored)) {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 10_000, "never refused");
        };
        assert!(matches!(refusal, EdgeError::StoreFull(_)), "{refusal}");
        // What was stored before is still readable in this process.
        assert_eq!(s.submission_count(CycleId(1)).unwrap(), 3 + stored);
        // And the next write is refused as clearly.
        let next = s.put_submission((&NODE, 20_000), &data(1, 99)).unwrap_err();
        assert!(matches!(next, EdgeError::StoreFull(_)), "{next}");
        println!("REFUSED {stored} after: {refusal}");
    }

    #[test]
    fn a_full_disk_refuses_the_write_and_damages_nothing() {
        let d = tempfile::tempdir().unwrap();
        drop(filled(d.path(), 3, &[1]));
        let path = d.path().join("edge.redb");
        let size = std::fs::metadata(&path).unwrap().len();
        // A file size limit 2 MB above the store (512-byte blocks); SIGXFSZ
        // ignored so that the write fails with EFBIG instead of killing.
        let blocks = (size + (2 << 20)) / 512;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""
            ))
            .arg(std::env::current_exe().unwrap())
            .args([
                "store::tests::full_disk_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FULL_DISK_DIR, d.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("REFUSED ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("child did not run: {stdout}"));
        assert!(line.contains("store full"), "{line}");
        assert!(line.contains(&path.display().to_string()), "{line}");
        let stored: usize = line.split(' ').next().unwrap().parse().unwrap();
        assert!(stored > 0, "{line}");

        // Reopened without the limit: everything committed is intact, the
        // refused write left nothing, and writing works again.
        let s = EdgeStore::open(d.path()).unwrap();
        let all = s.submissions_batch(CycleId(1), None, 100_000).unwrap();
        let want: Vec<HiddenData> = (0..3)
            .chain(100..100 + stored)
            .map(|i| data(1, i))
            .collect::<Vec<_>>();
        let mut want = want;
        want.sort_by(|a, b| a.member.cmp(&b.member));
        assert_eq!(all, want);
        assert_eq!(s.members().unwrap().len(), 3);
        s.put_submission((&NODE, 30_000), &data(1, 99)).unwrap();
    }

    /// A table of rows for the tests of the helpers.
    const TEST_ROWS: TableDefinition<Rows<(u64, &str)>, &[u8]> = TableDefinition::new("test_rows");

    #[test]
    fn values_are_split_into_page_sized_rows_and_read_back_whole() {
        let d = tempfile::tempdir().unwrap();
        let db = Database::create(d.path().join("t.redb")).unwrap();
        let sizes = [
            0,
            1,
            SMALL_ROW - LENGTH_HEAD,
            SMALL_ROW,
            BIG_ROW - LENGTH_HEAD,
            BIG_ROW,
            131_104,
            133_000,
            300_001,
        ];
        let value = |n: usize, salt: u8| -> Vec<u8> {
            (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
        };
        let t = db.begin_write().unwrap();
        {
            let mut table = t.open_table(TEST_ROWS).unwrap();
            for (i, &n) in sizes.iter().enumerate() {
                let m = format!("m{i}");
                assert!(!put_value(&mut table, (1, m.as_str()), &value(n, 1)).unwrap());
            }
        }
        t.commit().unwrap();
        let r = db.begin_read().unwrap();
        let table = r.open_table(TEST_ROWS).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let m = format!("m{i}");
            assert_eq!(
                get_value(&table, (1, m.as_str())).unwrap(),
                Some(value(n, 1))
            );
            // Rows of BIG_ROW bytes (the length head counted), then rows of at
            // most SMALL_ROW.
            let lens: Vec<usize> = table
                .range(rows_of(
                    Bound::Included((1, m.as_str())),
                    Bound::Included((1, m.as_str())),
                ))
                .unwrap()
                .map(|row| row.unwrap().1.value().len())
                .collect();
            assert_eq!(lens.iter().sum::<usize>(), n + LENGTH_HEAD, "{n}");
            let bigs = (n + LENGTH_HEAD) / BIG_ROW;
            assert!(lens[..bigs].iter().all(|&l| l == BIG_ROW), "{n}: {lens:?}");
            assert!(
                lens[bigs..].iter().all(|&l| l <= SMALL_ROW),
                "{n}: {lens:?}"
            );
        }
        // In order, value by value, from any key on.
        let mut rows = table
            .range(rows_of(
                Bound::Excluded((1, "m1")),
                Bound::Excluded((2, "")),
            ))
            .unwrap();
        let mut seen = Vec::new();
        while let Some((k, v)) = next_value(&mut rows).unwrap() {
            seen.push((k.value().0.1.to_string(), v.len()));
        }
        let want: Vec<(String, usize)> = (2..sizes.len())
            .map(|i| (format!("m{i}"), sizes[i]))
            .collect();
        assert_eq!(seen, want);
        drop((rows, table, r));

        // A shorter value replaces all the rows of the longer one; removal
        // takes them all.
        let t = db.begin_write().unwrap();
        {
            let mut table = t.open_table(TEST_ROWS).unwrap();
            assert!(put_value(&mut table, (1, "m8"), &value(5, 2)).unwrap());
            assert_eq!(get_value(&table, (1, "m8")).unwrap(), Some(value(5, 2)));
            let rows = table
                .range(rows_of(
                    Bound::Included((1, "m8")),
                    Bound::Included((1, "m8")),
                ))
                .unwrap()
                .count();
            assert_eq!(rows, 1);
            assert!(remove_value(&mut table, (1, "m7")).unwrap());
            assert!(!remove_value(&mut table, (1, "m7")).unwrap());
            assert_eq!(get_value(&table, (1, "m7")).unwrap(), None);
            assert_eq!(value_count(&table, CycleId(1)).unwrap(), sizes.len() - 1);
        }
        t.commit().unwrap();
    }

    #[test]
    fn a_value_with_a_row_missing_is_refused_as_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let db = Database::create(d.path().join("t.redb")).unwrap();
        let t = db.begin_write().unwrap();
        {
            let mut table = t.open_table(TEST_ROWS).unwrap();
            put_value(&mut table, (1, "a"), &[7; 100_000]).unwrap();
            put_value(&mut table, (1, "b"), &[8; 100_000]).unwrap();
            table.remove(((1, "a"), 2)).unwrap();
            table.remove(((1, "b"), 0)).unwrap();
            for key in ["a", "b"] {
                let e = get_value(&table, (1, key)).unwrap_err().to_string();
                assert!(e.contains("corrupt record"), "{e}");
            }
            // A truncated value (its last row gone).
            put_value(&mut table, (1, "c"), &[9; 40_000]).unwrap();
            table.remove(((1, "c"), 2)).unwrap();
            let e = get_value(&table, (1, "c")).unwrap_err().to_string();
            assert!(e.contains("corrupt record"), "{e}");
        }
    }

    /// Rewrites a format 2 store as format 1 wrote it: each value of the
    /// tables of rows in one row of its format 1 table, `META` at 1 (or
    /// absent, as before the format was recorded).
    fn downgrade_to_format_1(path: &Path, with_meta: bool) {
        let db = Database::open(path).unwrap();
        let t = db.begin_write().unwrap();
        {
            let from = t.open_table(MEMBERS).unwrap();
            let mut to = t.open_table(v1::MEMBERS).unwrap();
            let mut rows = from.iter().unwrap();
            while let Some((k, v)) = next_value(&mut rows).unwrap() {
                to.insert(k.value().0, v.as_slice()).unwrap();
            }
        }
        for (new, old) in [(SUBMISSIONS, v1::SUBMISSIONS), (BILLS, v1::BILLS)] {
            let from = t.open_table(new).unwrap();
            let mut to = t.open_table(old).unwrap();
            let mut rows = from.iter().unwrap();
            while let Some((k, v)) = next_value(&mut rows).unwrap() {
                to.insert(k.value().0, v.as_slice()).unwrap();
            }
        }
        {
            let from = t.open_table(ROUNDS).unwrap();
            let mut to = t.open_table(v1::ROUNDS).unwrap();
            let mut rows = from.iter().unwrap();
            while let Some((k, v)) = next_value(&mut rows).unwrap() {
                to.insert(k.value().0, v.as_slice()).unwrap();
            }
        }
        assert!(t.delete_table(MEMBERS).unwrap());
        assert!(t.delete_table(SUBMISSIONS).unwrap());
        assert!(t.delete_table(BILLS).unwrap());
        assert!(t.delete_table(ROUNDS).unwrap());
        if with_meta {
            t.open_table(META).unwrap().insert(FORMAT_KEY, 1).unwrap();
        } else {
            assert!(t.delete_table(META).unwrap());
        }
        t.commit().unwrap();
    }

    /// Everything a store answers, for comparing before and after a
    /// migration.
    fn everything(s: &EdgeStore) -> String {
        let mut out = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            s.members().unwrap(),
            s.member_index().unwrap(),
            s.cycles().unwrap(),
            s.rosters().unwrap(),
            s.counters().unwrap(),
        );
        for c in [1, 2] {
            let c = CycleId(c);
            out += &format!(
                "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
                s.submissions(c).unwrap(),
                s.submitted(c).unwrap(),
                s.round_events::<(u64, Vec<u8>)>(c).unwrap(),
                s.billed(c).unwrap(),
                s.billing_progress(c).unwrap(),
                s.aggregates(c).unwrap(),
                s.submissions_received(c).unwrap(),
                s.bill_count(c).unwrap(),
            );
            for i in 0..5 {
                out += &format!(
                    "{:?} {:?} {:?}\n",
                    s.bill(c, &member(i)).unwrap(),
                    s.delivered(c, &member(i)).unwrap(),
                    s.public_key(&member(i)).unwrap(),
                );
            }
        }
        out
    }

    #[test]
    fn a_format_1_store_is_migrated_to_format_2_when_opened() {
        for with_meta in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let before = {
                let s = filled(d.path(), 5, &[1, 2]);
                // Round events of both cycles, one larger than a page.
                for seq in 0..3 {
                    let event = (seq, vec![seq as u8; seq as usize * 20_000]);
                    s.put_round_event(None, CycleId(2), seq, &event, RoundPayload::None)
                        .unwrap();
                }
                s.put_round_event(None, CycleId(1), 0, &(9u64, vec![1u8]), RoundPayload::None)
                    .unwrap();
                bill_all(&s, 1, 2);
                assert!(s.mark_delivered(CycleId(1), &member(3), 77).unwrap());
                s.begin_billing(CycleId(2), [2; 32], &[vec![3]], 9).unwrap();
                s.put_bills_batch(CycleId(2), &[bill(2, 0)]).unwrap();
                everything(&s)
            };
            let path = d.path().join("edge.redb");
            downgrade_to_format_1(&path, with_meta);
            {
                // Written the old way: whole values, format 1.
                let db = Database::open(&path).unwrap();
                let r = db.begin_read().unwrap();
                let t = r.open_table(v1::SUBMISSIONS).unwrap();
                let v = t.get((2, member(4).as_str())).unwrap().unwrap();
                assert_eq!(v.value(), data(2, 4).to_bytes().as_slice());
            }
            let s = EdgeStore::open(d.path()).unwrap();
            assert_eq!(everything(&s), before, "meta recorded: {with_meta}");
            let r = s.begin_read().unwrap();
            let meta = r.open_table(META).unwrap();
            assert_eq!(meta.get(FORMAT_KEY).unwrap().unwrap().value(), STORE_FORMAT);
            let names: Vec<String> = r
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_string())
                .collect();
            for old in ["members", "submissions", "rounds", "bills"] {
                assert!(!names.contains(&old.to_string()), "{old} left: {names:?}");
            }
            drop((meta, r));
            // The migrated store goes on as any other, and opens again as
            // it is.
            bill_all_from(&s, 2, 2, Some(member(0)));
            drop(s);
            let s = EdgeStore::open(d.path()).unwrap();
            assert_eq!(s.bill_count(CycleId(2)).unwrap(), 5);
            assert_eq!(s.members().unwrap().len(), 5);
        }
    }

    /// A format 2 store whose round events carried their payloads, with a
    /// cycle in its reveal round (and a billed one), opens as format 3:
    /// the open cycle's events are small, its payloads are in its tables,
    /// and replaying the events and unmasking from the tables gives the
    /// sum the in-memory server gives.
    #[test]
    fn a_format_2_store_with_an_open_cycle_is_migrated_to_format_3() {
        use crate::rounds::RoundEvent;
        use pb_protocol::NodeKey;
        use pb_secagg::rounds::{Rounds, Step};
        use pb_secagg::{Client, Roster, RosterEntry, Server};
        use secagg::LegacyEvent as L;

        let n = 4;
        let keys: Vec<NodeKey> = (0..n)
            .map(|i| NodeKey::from_bytes([i as u8 + 1; 32]))
            .collect();
        let operator = NodeKey::from_bytes([99; 32]);
        let roster = Roster::new(
            "c",
            1,
            (0..n)
                .map(|i| RosterEntry {
                    member: member(i),
                    identity: keys[i].id().0,
                })
                .collect(),
        )
        .unwrap();
        let signed = SignedRoster::sign(roster, operator.signing_key());
        let pinned = operator.id().0;
        let cycle = 7u64;
        let mut server = Server::new(&signed, &pinned, cycle, 3, 3, SLOTS).unwrap();
        let mut clients: Vec<Client> = (0..n)
            .map(|i| {
                Client::start(
                    &signed,
                    &pinned,
                    3,
                    cycle,
                    &member(i),
                    keys[i].signing_key(),
                    &mut rand_core::OsRng,
                )
                .unwrap()
            })
            .collect();
        let mut events: Vec<L> = Vec::new();
        for c in &clients {
            server.advertise(c.bundle().clone()).unwrap();
            events.push(L::Advertise(Box::new(c.bundle().clone())));
        }
        server.close_advertise().unwrap();
        events.push(L::CloseAdvertise { at: 1 });
        for (i, c) in clients.iter_mut().enumerate() {
            let bundles = server.bundles_for(&member(i)).unwrap();
            let shares = c.share(&bundles, &mut rand_core::OsRng).unwrap();
            server.share(&member(i), shares.clone()).unwrap();
            events.push(L::Share {
                from: member(i),
                shares,
            });
        }
        server.close_share().unwrap();
        events.push(L::CloseShare { at: 2 });
        let d = tempfile::tempdir().unwrap();
        let s = EdgeStore::open(d.path()).unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            let incoming = server.shares_for(&member(i)).unwrap();
            let input = vec![vec![i as u64 + 1; SLOTS]; 3];
            let masked = c.mask(&incoming, &input).unwrap();
            server.submit(masked.clone()).unwrap();
            let mut sub = data(cycle, i);
            sub.masked = masked.vectors.clone();
            s.put_submission((&NODE, i as u64 + 1), &sub).unwrap();
            events.push(L::Submit {
                member: member(i),
                partners: masked.partners,
            });
        }
        let set = server.close_mask().unwrap();
        events.push(L::CloseMask { at: 3 });
        for (i, c) in clients.iter_mut().enumerate() {
            let conf = c
                .confirm(&set, &signed.roster, keys[i].signing_key())
                .unwrap();
            server.confirm(conf.clone()).unwrap();
            events.push(L::Confirm(conf));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c
                .reveal(&set.hash(), &server.confirmations_for(&member(i)))
                .unwrap();
            server.reveal(r.clone()).unwrap();
            events.push(L::Reveal(r));
        }
        s.write_txn(|t| {
            let mut rounds = t.open_table(ROUNDS).map_err(rdb)?;
            for (seq, e) in events.iter().enumerate() {
                put_value(&mut rounds, (cycle, seq as u64), &enc(e)?)?;
            }
            // A billed cycle's event: deleted, never replayed.
            put_value(&mut rounds, (8, 0), &enc(&L::CloseShare { at: 5 })?)?;
            t.open_table(BILLED)
                .map_err(rdb)?
                .insert(
                    8,
                    enc(&BilledRecord {
                        at: 1,
                        millis: 1,
                        bills: 0,
                    })?
                    .as_slice(),
                )
                .map_err(rdb)?;
            t.open_table(META)
                .map_err(rdb)?
                .insert(FORMAT_KEY, 2)
                .map_err(rdb)?;
            Ok(())
        })
        .unwrap();
        drop(s);

        let s = EdgeStore::open(d.path()).unwrap();
        {
            let r = s.begin_read().unwrap();
            let meta = r.open_table(META).unwrap();
            assert_eq!(meta.get(FORMAT_KEY).unwrap().unwrap().value(), 3);
        }
        assert!(s.round_events::<RoundEvent>(CycleId(8)).unwrap().is_empty());
        for i in 0..n {
            assert_eq!(
                s.shares_to(
                    CycleId(cycle),
                    &member(i),
                    &server.rounds().partners_of(&member(i))
                )
                .unwrap(),
                server.shares_for(&member(i)).unwrap()
            );
        }
        let mut rounds = Rounds::new(&signed, &pinned, cycle, 3, 3, SLOTS).unwrap();
        let stored: Vec<RoundEvent> = s.round_events(CycleId(cycle)).unwrap();
        assert_eq!(stored.len(), events.len());
        for e in stored {
            match e {
                RoundEvent::Step(step) => rounds.apply(step).unwrap(),
                RoundEvent::CloseAdvertise { .. } => rounds.close_advertise().unwrap(),
                RoundEvent::CloseShare { .. } => rounds.close_share().unwrap(),
                RoundEvent::CloseMask { .. } => {
                    rounds.close_mask().unwrap();
                }
            }
        }
        assert!(rounds.complete());
        // A replayed Step is refused as a duplicate: the state is whole.
        assert!(
            rounds
                .apply(Step::Confirm(
                    server.confirmations_for(&member(0))[0].clone()
                ))
                .is_err()
        );
        let sum = rounds
            .unmask_job()
            .unwrap()
            .run(
                |b| {
                    s.answers_about(CycleId(cycle), b)
                        .map_err(crate::service::UnmaskError::Store)
                },
                |b| {
                    s.masked_inputs(CycleId(cycle), b)
                        .map_err(crate::service::UnmaskError::Store)
                },
            )
            .map_err(|e| e.to_string())
            .unwrap();
        let want: u64 = (1..=n as u64).sum();
        assert_eq!(sum, vec![vec![want; SLOTS]; 3]);
        assert_eq!(server.unmask().unwrap(), sum);
    }

    /// Realistic values (96 slots, the real key size) for `n` members in
    /// `cycles` cycles, each billed; returns the store and the bytes of
    /// the values it must hold at once (a cycle's submissions and bills
    /// and the members' records).
    fn realistic(dir: &Path, n: usize, cycles: &[u64]) -> (EdgeStore, u64) {
        let s = EdgeStore::open(dir).unwrap();
        let mut counter = 0;
        let mut stamp = || {
            counter += 1;
            (&NODE, counter)
        };
        let mut held = 0;
        for i in 0..n {
            held += enc(&record(i)).unwrap().len() as u64;
            s.put_member(stamp(), &member(i), &record(i)).unwrap();
        }
        s.put_roster(stamp(), &roster(n)).unwrap();
        let wide = |c: u64, i: usize| {
            let mut d = data(c, i);
            d.slots = SlotCount::new(96).unwrap();
            d.masked = vec![vec![i as u64; 96]; 3];
            d.ciphertexts = vec![glwe(i); pb_glwe::layout::chunk_count(3 * 96)];
            d
        };
        held += n as u64 * (wide(1, 0).to_bytes().len() + bill(1, 0).to_bytes().len()) as u64;
        for &c in cycles {
            s.put_cycle(stamp(), &cycle_record(c, n)).unwrap();
            // Submissions arrive in no particular order.
            for k in 0..n {
                let i = (k * 7919) % n;
                s.put_submission(stamp(), &wide(c, i)).unwrap();
            }
            bill_all(&s, c, 16);
        }
        (s, held)
    }

    #[test]
    fn a_cycle_takes_at_most_a_quarter_more_than_it_holds() {
        let d = tempfile::tempdir().unwrap();
        let (s, held) = realistic(d.path(), 40, &[1]);
        let pages: u64 = s.table_usage().unwrap().iter().map(|t| t.page_bytes).sum();
        let u = s.disk_usage().unwrap();
        eprintln!(
            "held {held}, pages {pages} ({:.3}x), file {} ({:.3}x), disk {} ({:.3}x)",
            pages as f64 / held as f64,
            u.file_bytes,
            u.file_bytes as f64 / held as f64,
            u.disk_bytes,
            u.disk_bytes as f64 / held as f64,
        );
        assert!(pages as f64 <= 1.05 * held as f64, "{pages} for {held}");
        assert!(
            u.disk_bytes as f64 <= 1.25 * held as f64,
            "{u:?} for {held}"
        );
    }

    #[test]
    fn pages_freed_by_retention_are_used_again() {
        let d = tempfile::tempdir().unwrap();
        let (s, _) = realistic(d.path(), 30, &[1, 2]);
        let keep = Retention {
            keep_submissions_cycles: 1,
            keep_bills_secs_after_delivery: 0,
        };
        assert_eq!(s.prune(100, &keep).unwrap().submissions, 30);
        let before = s.disk_usage().unwrap();
        // A third cycle of the same size, after the first's submissions
        // went: its submissions take their pages.
        let mut counter = 1_000_000;
        s.put_cycle((&NODE, counter), &cycle_record(3, 30)).unwrap();
        for i in 0..30 {
            counter += 1;
            s.put_submission((&NODE, counter), &data(3, i)).unwrap();
        }
        bill_all(&s, 3, 16);
        assert_eq!(s.prune(100, &keep).unwrap().submissions, 30);
        let after = s.disk_usage().unwrap();
        eprintln!("before {before:?}\nafter {after:?}");
        // What it adds is the third cycle's bills (undelivered, kept).
        let bills = 30.0 * bill(3, 0).to_bytes().len() as f64;
        assert!(
            after.disk_bytes as f64 <= before.disk_bytes as f64 + 1.1 * bills,
            "{before:?} -> {after:?}"
        );
        assert_eq!(after.file_bytes, before.file_bytes);
    }

    /// Where the bytes of a realistic cycle go (run by hand:
    /// `PB_EDGE_STORE_MEMBERS=200 cargo test --release -p pb-edge --
    /// --ignored where_the_bytes_go --nocapture`).
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn where_the_bytes_go() {
        let n = std::env::var("PB_EDGE_STORE_MEMBERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let d = tempfile::tempdir().unwrap();
        let (s, held) = realistic(d.path(), n, &[1]);
        for t in s.table_usage().unwrap() {
            println!("{t:?}");
        }
        let u = s.disk_usage().unwrap();
        println!(
            "{n} members: held {held} B ({} per member), file {} ({:.3}x), disk {} ({:.3}x)",
            held / n as u64,
            u.file_bytes,
            u.file_bytes as f64 / held as f64,
            u.disk_bytes,
            u.disk_bytes as f64 / held as f64,
        );
    }
}
