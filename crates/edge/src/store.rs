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
//! redb gives each value a page of a power-of-two size; the public keys,
//! submissions and bills are each just over 128 KiB and take 256 KiB pages,
//! so the file is about twice what it holds (docs/benchmarks.md, issue 14).

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
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EdgeError;
use crate::config::{Retention, Rotation};

const MEMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("members");
const CYCLES: TableDefinition<u64, &[u8]> = TableDefinition::new("cycles");
const SUBMISSIONS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("submissions");
/// Signed member lists by version.
const ROSTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("rosters");
/// Each open cycle's SecAgg+ messages and round closings, in order
/// (`(cycle, sequence)`): replaying them rebuilds the cycle's state.
const ROUNDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("rounds");
const BILLS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("bills");
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

/// The format of the stores this edge writes and the newest it reads.
/// Stores written before the format was recorded are format 1. Format 2
/// adds the members' key rotations ([`EdgeStore::put_rotation`]): an
/// older edge would ignore them and admit the retired keys again, so a
/// format-1 store becomes format 2 in the transaction that records its
/// first rotation, and older edges refuse it from then on.
pub const STORE_FORMAT: u64 = 2;

/// The first format that holds rotations.
const ROTATIONS_FORMAT: u64 = 2;

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

/// Opens (or creates) the redb file; the page cache is modest, submissions
/// being read back in batches.
fn open_db(path: &Path) -> Result<Database, EdgeError> {
    redb::Builder::new()
        .set_cache_size(128 << 20)
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

/// Who sent a change and with which counter.
pub type Stamp<'a> = (&'a NodeId, u64);

/// The edge's store.
#[derive(Debug)]
pub struct EdgeStore {
    /// `None` after a failed write closed it until it reopens.
    db: RwLock<Option<Database>>,
    path: PathBuf,
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
        let path = private_store_file(dir, "edge.redb")
            .map_err(|e| EdgeError::Store(format!("{}: {e}", dir.display())))?;
        let existing = std::fs::metadata(&path)
            .map_err(|e| EdgeError::Store(format!("{}: {e}", path.display())))?
            .len()
            > 0;
        if existing {
            check_existing(&path)?;
        }
        let db = open_db(&path)?;
        let store = EdgeStore {
            db: RwLock::new(Some(db)),
            path,
        };
        store.write(None, |txn| {
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
            let mut meta = txn.open_table(META).map_err(rdb)?;
            if meta.get(FORMAT_KEY).map_err(rdb)?.is_none() {
                meta.insert(FORMAT_KEY, STORE_FORMAT).map_err(rdb)?;
            }
            Ok(())
        })?;
        Ok(store)
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
            *guard = Some(open_db(&self.path)?);
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
            t.open_table(MEMBERS)
                .map_err(rdb)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(rdb)?;
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
                None => subs.range(cycle_rows(d.cycle, None)).map_err(rdb)?.count() as u64,
            };
            let new = subs
                .insert((d.cycle.0, d.member.as_str()), bytes.as_slice())
                .map_err(rdb)?
                .is_none();
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
    /// transaction: the old node is retired, the member's joined record (if
    /// it joined) names the new node, and the store's format is raised to
    /// the one that holds rotations.
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
            let joined: Option<MemberRecord> = members
                .get(r.member.as_str())
                .map_err(rdb)?
                .map(|v| dec(v.value()))
                .transpose()?;
            if let Some(mut record) = joined {
                record.node = r.to;
                let record = enc(&record)?;
                members
                    .insert(r.member.as_str(), record.as_slice())
                    .map_err(rdb)?;
            }
            let mut meta = t.open_table(META).map_err(rdb)?;
            let format = meta.get(FORMAT_KEY).map_err(rdb)?.map(|v| v.value());
            if format.unwrap_or(1) < ROTATIONS_FORMAT {
                meta.insert(FORMAT_KEY, ROTATIONS_FORMAT).map_err(rdb)?;
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

    /// Appends an event of an open cycle's rounds (with the request's
    /// counter when a request caused it, and the submission it carries,
    /// in the same transaction).
    pub fn put_round_event<E: Serialize>(
        &self,
        stamp: Option<Stamp<'_>>,
        cycle: CycleId,
        seq: u64,
        event: &E,
        submission: Option<&HiddenData>,
    ) -> Result<(), EdgeError> {
        let bytes = enc(event)?;
        let data = submission.map(|d| d.to_bytes());
        self.write(stamp, |t| {
            t.open_table(ROUNDS)
                .map_err(rdb)?
                .insert((cycle.0, seq), bytes.as_slice())
                .map_err(rdb)?;
            if let (Some(d), Some(bytes)) = (submission, &data) {
                t.open_table(SUBMISSIONS)
                    .map_err(rdb)?
                    .insert((d.cycle.0, d.member.as_str()), bytes.as_slice())
                    .map_err(rdb)?;
            }
            Ok(())
        })
    }

    /// An open cycle's round events, in order.
    pub fn round_events<E: DeserializeOwned>(&self, cycle: CycleId) -> Result<Vec<E>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(ROUNDS).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.range((cycle.0, 0)..=(cycle.0, u64::MAX)).map_err(rdb)? {
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
        t.get((cycle.0, member.as_str()))
            .map_err(rdb)?
            .map(|v| wire(v.value()))
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
                    table
                        .insert((cycle.0, b.member.as_str()), b.to_bytes().as_slice())
                        .map_err(rdb)?;
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
            {
                let mut table = t.open_table(SUBMISSIONS).map_err(rdb)?;
                let keys: Vec<String> = table
                    .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
                    .map_err(rdb)?
                    .filter_map(|r| r.ok().map(|(k, _)| k.value().1.to_string()))
                    .collect();
                for k in keys {
                    table.remove((cycle.0, k.as_str())).map_err(rdb)?;
                }
            }
            t.open_table(ROUNDS)
                .map_err(rdb)?
                .retain_in((cycle.0, 0)..=(cycle.0, u64::MAX), |_, _| false)
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
        for row in t.iter().map_err(rdb)? {
            let (k, v) = row.map_err(rdb)?;
            let id = MemberId::new(k.value()).map_err(err)?;
            let m: MemberRecord = dec(v.value())?;
            out.push((id, m.node, m.przs));
        }
        Ok(out)
    }

    /// One joined member.
    pub fn member(&self, id: &MemberId) -> Result<Option<MemberRecord>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        t.get(id.as_str())
            .map_err(rdb)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// All joined members, with their public keys.
    pub fn members(&self) -> Result<Vec<(MemberId, MemberRecord)>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(MEMBERS).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(rdb)? {
            let (k, v) = row.map_err(rdb)?;
            let id = MemberId::new(k.value()).map_err(err)?;
            out.push((id, dec(v.value())?));
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
        def: TableDefinition<(u64, &str), &[u8]>,
        cycle: CycleId,
        f: impl Fn(&[u8]) -> Result<T, EdgeError>,
    ) -> Result<Vec<T>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(def).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t
            .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
            .map_err(rdb)?
        {
            let (k, v) = row.map_err(rdb)?;
            if k.value().0 == cycle.0 {
                out.push(f(v.value())?);
            }
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
        def: TableDefinition<(u64, &str), &[u8]>,
        cycle: CycleId,
    ) -> Result<Vec<MemberId>, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(def).map_err(rdb)?;
        let mut out = Vec::new();
        for row in t
            .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
            .map_err(rdb)?
        {
            let (k, _) = row.map_err(rdb)?;
            let (c, member) = k.value();
            if c == cycle.0 {
                out.push(
                    MemberId::new(member.to_string())
                        .map_err(|e| EdgeError::Store(format!("corrupt member id: {e}")))?,
                );
            }
        }
        Ok(out)
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
        t.get((cycle.0, member.as_str()))
            .map_err(rdb)?
            .map(|v| wire(v.value()))
            .transpose()
    }

    /// Bills stored for a cycle.
    pub fn bill_count(&self, cycle: CycleId) -> Result<usize, EdgeError> {
        Ok(self.per_cycle(BILLS, cycle, |_| Ok(()))?.len())
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
}

/// The store's size on disk against what it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskUsage {
    /// Bytes of the store file.
    pub file_bytes: u64,
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
        for row in t.range(cycle_rows(cycle, after)).map_err(rdb)?.take(n) {
            out.push(wire(row.map_err(rdb)?.1.value())?);
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
        for row in subs.range(cycle_rows(cycle, after)).map_err(rdb)?.take(n) {
            let (k, v) = row.map_err(rdb)?;
            let member = k.value().1;
            let d: HiddenData = wire(v.value())?;
            if d.member.as_str() != member || d.cycle != cycle {
                return Err(EdgeError::Store(format!(
                    "corrupt record: the submission stored as {member} of {cycle} is {}'s of {}",
                    d.member, d.cycle
                )));
            }
            let m = members.get(member).map_err(rdb)?.ok_or_else(|| {
                EdgeError::Store(format!("{member}: submission of an unknown member"))
            })?;
            let record: MemberRecord = dec(m.value())?;
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
        t.get(member.as_str())
            .map_err(rdb)?
            .map(|v| dec::<MemberRecord>(v.value()).map(|m| m.public_key))
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

    /// Submissions stored for a cycle, counted row by row (it reads every
    /// one of them: for tests and audits).
    pub fn submission_count(&self, cycle: CycleId) -> Result<usize, EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(SUBMISSIONS).map_err(rdb)?;
        let mut n = 0;
        for row in t.range(cycle_rows(cycle, None)).map_err(rdb)? {
            row.map_err(rdb)?;
            n += 1;
        }
        Ok(n)
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
                None => t
                    .open_table(SUBMISSIONS)
                    .map_err(rdb)?
                    .range(cycle_rows(cycle, None))
                    .map_err(rdb)?
                    .count() as u64,
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
                    .get((cycle.0, b.member.as_str()))
                    .map_err(rdb)?
                    .is_none()
                {
                    return Err(EdgeError::Store(format!(
                        "{cycle}: bill of {}, which has no submission",
                        b.member
                    )));
                }
                table
                    .insert((cycle.0, b.member.as_str()), b.to_bytes().as_slice())
                    .map_err(rdb)?;
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
                .range(cycle_rows(cycle, progress.last.as_ref()))
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
        let old = billed
            .len()
            .saturating_sub(retention.keep_submissions_cycles);
        for &cycle in &billed[..old] {
            let cycle = CycleId(cycle);
            let subs = self.write_txn(|t| {
                let mut table = t.open_table(SUBMISSIONS).map_err(rdb)?;
                let before = table.len().map_err(rdb)?;
                table
                    .retain_in(cycle_rows(cycle, None), |_, _| false)
                    .map_err(rdb)?;
                let removed = (before - table.len().map_err(rdb)?) as usize;
                t.open_table(ROUNDS)
                    .map_err(rdb)?
                    .retain_in((cycle.0, 0)..=(cycle.0, u64::MAX), |_, _| false)
                    .map_err(rdb)?;
                Ok(removed)
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
                if at.value() <= cutoff && bills.remove((cycle, member)).map_err(rdb)?.is_some() {
                    removed += 1;
                }
            }
            Ok(removed)
        })?;
        Ok(report)
    }

    /// The store file's size against the member-cycles it holds: the
    /// load report's disk bytes per member per cycle.
    pub fn disk_usage(&self) -> Result<DiskUsage, EdgeError> {
        let file_bytes = std::fs::metadata(&self.path)
            .map_err(|e| EdgeError::Store(format!("{}: {e}", self.path.display())))?
            .len();
        let r = self.begin_read()?;
        let members = r.open_table(MEMBERS).map_err(rdb)?.len().map_err(rdb)? as usize;
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
        let v = t.get(member(0).as_str()).unwrap().unwrap().value().to_vec();
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
    /// naming the new node, in one transaction; it raises a format-1
    /// store to format 2 and survives a reopening.
    #[test]
    fn a_rotation_is_stored_with_the_member_record_and_raises_the_format() {
        let d = tempfile::tempdir().unwrap();
        let s = filled(d.path(), 3, &[]);
        {
            let t = s.with_db(|db| db.begin_write().map_err(rdb)).unwrap();
            t.open_table(META).unwrap().insert(FORMAT_KEY, 1).unwrap();
            t.commit().unwrap();
        }
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
        assert_eq!(t.get(FORMAT_KEY).unwrap().unwrap().value(), 2);
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
}
