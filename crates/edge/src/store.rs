//! The edge's durable state in redb. Every change is one ACID transaction
//! that also records the sender's request counter, so a replayed
//! state-changing request is refused after a restart too.

use std::path::Path;

use pb_glwe::CompactPublicKey;
use pb_hiding::wire::Wire;
use pb_hiding::{HiddenBill, HiddenData};
use pb_inputs::private_store_file;
use pb_model::CycleContext;
use pb_protocol::NodeId;
use pb_przs::IdentityPublic;
use pb_secagg::SignedRoster;
use pb_units::{CycleId, MemberId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EdgeError;

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

/// Who sent a change and with which counter.
pub type Stamp<'a> = (&'a NodeId, u64);

/// The edge's store.
#[derive(Debug)]
pub struct EdgeStore {
    db: Database,
}

impl EdgeStore {
    /// Opens or creates `dir/edge.redb`.
    ///
    /// The directory is created 0700 and `edge.redb` 0600 (it holds the
    /// members' masked submissions and encrypted bills).
    pub fn open(dir: &Path) -> Result<EdgeStore, EdgeError> {
        let path = private_store_file(dir, "edge.redb")
            .map_err(|e| EdgeError::Store(format!("{}: {e}", dir.display())))?;
        // Submissions are read back only on restart: a modest page cache.
        let db = redb::Builder::new()
            .set_cache_size(128 << 20)
            .create(path)
            .map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(MEMBERS).map_err(err)?;
            txn.open_table(CYCLES).map_err(err)?;
            txn.open_table(SUBMISSIONS).map_err(err)?;
            txn.open_table(ROSTERS).map_err(err)?;
            txn.open_table(ROUNDS).map_err(err)?;
            txn.open_table(BILLS).map_err(err)?;
            txn.open_table(BILLED).map_err(err)?;
            txn.open_table(AGGREGATES).map_err(err)?;
            txn.open_table(DELIVERED).map_err(err)?;
            txn.open_table(COUNTERS).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(EdgeStore { db })
    }

    fn write(
        &self,
        stamp: Option<Stamp<'_>>,
        f: impl FnOnce(&WriteTransaction) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        let txn = self.db.begin_write().map_err(err)?;
        f(&txn)?;
        if let Some((node, counter)) = stamp {
            txn.open_table(COUNTERS)
                .map_err(err)?
                .insert(node.0.as_slice(), counter)
                .map_err(err)?;
        }
        txn.commit().map_err(err)
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
                .map_err(err)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
    }

    /// Stores a cycle.
    pub fn put_cycle(&self, stamp: Stamp<'_>, c: &CycleRecord) -> Result<(), EdgeError> {
        let bytes = enc(c)?;
        self.write(Some(stamp), |t| {
            t.open_table(CYCLES)
                .map_err(err)?
                .insert(c.context.cycle().0, bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
    }

    /// Stores a submission.
    pub fn put_submission(&self, stamp: Stamp<'_>, d: &HiddenData) -> Result<(), EdgeError> {
        let bytes = d.to_bytes();
        self.write(Some(stamp), |t| {
            t.open_table(SUBMISSIONS)
                .map_err(err)?
                .insert((d.cycle.0, d.member.as_str()), bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
    }

    /// Stores a verified member list.
    pub fn put_roster(&self, stamp: Stamp<'_>, r: &SignedRoster) -> Result<(), EdgeError> {
        let bytes = enc(r)?;
        self.write(Some(stamp), |t| {
            t.open_table(ROSTERS)
                .map_err(err)?
                .insert(r.roster.version, bytes.as_slice())
                .map_err(err)?;
            Ok(())
        })
    }

    /// Every stored member list, oldest first.
    pub fn rosters(&self) -> Result<Vec<SignedRoster>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(ROSTERS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            out.push(dec(row.map_err(err)?.1.value())?);
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
                .map_err(err)?
                .insert((cycle.0, seq), bytes.as_slice())
                .map_err(err)?;
            if let (Some(d), Some(bytes)) = (submission, &data) {
                t.open_table(SUBMISSIONS)
                    .map_err(err)?
                    .insert((d.cycle.0, d.member.as_str()), bytes.as_slice())
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    /// An open cycle's round events, in order.
    pub fn round_events<E: DeserializeOwned>(&self, cycle: CycleId) -> Result<Vec<E>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(ROUNDS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.range((cycle.0, 0)..=(cycle.0, u64::MAX)).map_err(err)? {
            out.push(dec(row.map_err(err)?.1.value())?);
        }
        Ok(out)
    }

    /// One member's submission of a cycle.
    pub fn submission(
        &self,
        cycle: CycleId,
        member: &MemberId,
    ) -> Result<Option<HiddenData>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(SUBMISSIONS).map_err(err)?;
        t.get((cycle.0, member.as_str()))
            .map_err(err)?
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
                let mut table = t.open_table(BILLS).map_err(err)?;
                for b in bills {
                    table
                        .insert((cycle.0, b.member.as_str()), b.to_bytes().as_slice())
                        .map_err(err)?;
                }
            }
            t.open_table(BILLED)
                .map_err(err)?
                .insert(cycle.0, rec.as_slice())
                .map_err(err)?;
            t.open_table(AGGREGATES)
                .map_err(err)?
                .insert(cycle.0, agg.as_slice())
                .map_err(err)?;
            {
                let mut table = t.open_table(SUBMISSIONS).map_err(err)?;
                let keys: Vec<String> = table
                    .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
                    .map_err(err)?
                    .filter_map(|r| r.ok().map(|(k, _)| k.value().1.to_string()))
                    .collect();
                for k in keys {
                    table.remove((cycle.0, k.as_str())).map_err(err)?;
                }
            }
            t.open_table(ROUNDS)
                .map_err(err)?
                .retain_in((cycle.0, 0)..=(cycle.0, u64::MAX), |_, _| false)
                .map_err(err)?;
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
            let r = self.db.begin_read().map_err(err)?;
            let t = r.open_table(DELIVERED).map_err(err)?;
            t.get((cycle.0, member.as_str())).map_err(err)?.is_some()
        };
        if already {
            return Ok(false);
        }
        self.write(None, |t| {
            t.open_table(DELIVERED)
                .map_err(err)?
                .insert((cycle.0, member.as_str()), at)
                .map_err(err)?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Records a request counter alone (for requests that change nothing
    /// else).
    pub fn put_counter(&self, node: &NodeId, counter: u64) -> Result<(), EdgeError> {
        self.write(Some((node, counter)), |_| Ok(()))
    }

    /// All joined members.
    pub fn members(&self) -> Result<Vec<(MemberId, MemberRecord)>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(MEMBERS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let id = MemberId::new(k.value()).map_err(err)?;
            out.push((id, dec(v.value())?));
        }
        Ok(out)
    }

    /// All cycles.
    pub fn cycles(&self) -> Result<Vec<CycleRecord>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(CYCLES).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            out.push(dec(row.map_err(err)?.1.value())?);
        }
        Ok(out)
    }

    fn per_cycle<T>(
        &self,
        def: TableDefinition<(u64, &str), &[u8]>,
        cycle: CycleId,
        f: impl Fn(&[u8]) -> Result<T, EdgeError>,
    ) -> Result<Vec<T>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(def).map_err(err)?;
        let mut out = Vec::new();
        for row in t
            .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
            .map_err(err)?
        {
            let (k, v) = row.map_err(err)?;
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
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(def).map_err(err)?;
        let mut out = Vec::new();
        for row in t
            .range((cycle.0, "")..(cycle.0.saturating_add(1), ""))
            .map_err(err)?
        {
            let (k, _) = row.map_err(err)?;
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
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(AGGREGATES).map_err(err)?;
        t.get(cycle.0)
            .map_err(err)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// Whether a cycle is billed, and how.
    pub fn billed(&self, cycle: CycleId) -> Result<Option<BilledRecord>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(BILLED).map_err(err)?;
        t.get(cycle.0)
            .map_err(err)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// A member's bill.
    pub fn bill(&self, cycle: CycleId, member: &MemberId) -> Result<Option<HiddenBill>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(BILLS).map_err(err)?;
        t.get((cycle.0, member.as_str()))
            .map_err(err)?
            .map(|v| wire(v.value()))
            .transpose()
    }

    /// Bills stored for a cycle.
    pub fn bill_count(&self, cycle: CycleId) -> Result<usize, EdgeError> {
        Ok(self.per_cycle(BILLS, cycle, |_| Ok(()))?.len())
    }

    /// Last accepted counters.
    pub fn counters(&self) -> Result<Vec<(NodeId, u64)>, EdgeError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(COUNTERS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let key: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| EdgeError::Store("corrupt counter key".into()))?;
            out.push((NodeId(key), v.value()));
        }
        Ok(out)
    }
}
