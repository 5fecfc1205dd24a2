//! What a cycle's SecAgg+ rounds carry (format 3): the round events are
//! small ([`RoundEvent`]: digests, not payloads), and the payloads go to
//! three tables of the cycle's own, keyed by who reads them, so that no
//! request and no pass needs more of them in memory than its own part:
//!
//! * `secagg/{cycle}/shares`: `(sender, holder) -> sealed pair`;
//! * `secagg/{cycle}/masked`: `member -> masked vectors` (rows as
//!   [`put_value`]);
//! * `secagg/{cycle}/answers`: `(holder, about) -> (secret, x, y)`.
//!
//! Each is keyed by who writes it, so that a message's `k` rows are
//! adjacent (a few leaf pages written per message: keyed by the reader,
//! the `k` rows of one message land on `k` leaves all over the table, and
//! a `Share` took about 5 ms to commit at 300 members); the reader knows
//! from the graph whom to look up: a member's `GetShares` is `k` point
//! reads of its partners' rows, the unmasking `k` point reads per needed
//! secret of its owner's neighbours that revealed.
//!
//! An event and its payload are written in one transaction with the
//! request's counter. The tables of a billed cycle are dropped whole
//! ([`EdgeStore::drop_round_tables`]). A format 2 store (whose round
//! events carried the payloads) is migrated when opened
//! ([`migrate_to_3`]).

use pb_hiding::HiddenData;
use pb_hiding::wire::Wire;
use pb_secagg::client::MaskedInput;
use pb_secagg::rounds::{Step, input_digest, reveal_digest, shares_digest};
use pb_secagg::shares::SecretShare;
use pb_secagg::unmask::{Needed, Survivor};
use pb_secagg::{Confirmation, EncryptedShare, Reveal, Secret, SignedBundle};
use pb_units::{CycleId, MemberId};
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Deserialize;

use super::{
    BILLED, EdgeError, EdgeStore, ROUNDS, Rows, SUBMISSION_COUNTS, SUBMISSIONS, Stamp,
    billing_started, dec, enc, get_value, next_value, put_value, rdb, round_rows, value_count,
};
use crate::rounds::RoundEvent;

/// What a round message carries besides its event.
#[derive(Debug, Clone, Copy)]
pub enum RoundPayload<'a> {
    /// Nothing (a bundle, a confirmation or a closing is all in the event).
    None,
    /// A member's encrypted shares.
    Shares(&'a [EncryptedShare]),
    /// A member's submission, its masked vectors SecAgg+-masked.
    Submission(&'a HiddenData),
    /// A survivor's answers.
    Answers(&'a Reveal),
}

fn shares_name(cycle: CycleId) -> String {
    format!("secagg/{}/shares", cycle.0)
}
fn masked_name(cycle: CycleId) -> String {
    format!("secagg/{}/masked", cycle.0)
}
fn answers_name(cycle: CycleId) -> String {
    format!("secagg/{}/answers", cycle.0)
}

type SharesTable<'a> = TableDefinition<'a, (&'static str, &'static str), &'static [u8]>;
type MaskedTable<'a> = TableDefinition<'a, Rows<&'static str>, &'static [u8]>;
type AnswersTable<'a> = TableDefinition<'a, (&'static str, &'static str), &'static [u8]>;

fn secret_code(s: Secret) -> u8 {
    match s {
        Secret::SelfSeed => 0,
        Secret::MaskKey => 1,
    }
}

fn corrupt(what: &str) -> EdgeError {
    EdgeError::Store(format!("corrupt record: {what}"))
}

/// Writes a round message's payload in the caller's transaction.
fn write_payload(
    t: &WriteTransaction,
    cycle: CycleId,
    payload: RoundPayload<'_>,
) -> Result<(), EdgeError> {
    match payload {
        RoundPayload::None => {}
        RoundPayload::Shares(shares) => {
            let name = shares_name(cycle);
            let mut table = t.open_table(SharesTable::new(&name)).map_err(rdb)?;
            for s in shares {
                table
                    .insert((s.from.as_str(), s.to.as_str()), s.ciphertext.as_slice())
                    .map_err(rdb)?;
            }
        }
        RoundPayload::Submission(d) => {
            if billing_started(t, d.cycle)? {
                return Err(EdgeError::BillingStarted(d.cycle));
            }
            let mut subs = t.open_table(SUBMISSIONS).map_err(rdb)?;
            let mut counts = t.open_table(SUBMISSION_COUNTS).map_err(rdb)?;
            let before = match counts.get(d.cycle.0).map_err(rdb)?.map(|v| v.value()) {
                Some(n) => n,
                None => value_count(&subs, d.cycle)? as u64,
            };
            let new = !put_value(&mut subs, (d.cycle.0, d.member.as_str()), &d.to_bytes())?;
            counts
                .insert(d.cycle.0, before + u64::from(new))
                .map_err(rdb)?;
            let name = masked_name(cycle);
            let mut masked = t.open_table(MaskedTable::new(&name)).map_err(rdb)?;
            put_value(&mut masked, d.member.as_str(), &enc(&d.masked)?)?;
        }
        RoundPayload::Answers(r) => {
            let name = answers_name(cycle);
            let mut table = t.open_table(AnswersTable::new(&name)).map_err(rdb)?;
            for a in &r.answers {
                let mut row = [0u8; 65];
                row[0] = secret_code(a.secret);
                row[1..33].copy_from_slice(&a.share.x);
                row[33..].copy_from_slice(&a.share.y);
                table
                    .insert((r.member.as_str(), a.about.as_str()), row.as_slice())
                    .map_err(rdb)?;
            }
        }
    }
    Ok(())
}

impl EdgeStore {
    /// Appends an event of an open cycle's rounds and its payload (with
    /// the request's counter when a request caused it), in one
    /// transaction. A submission is refused ([`EdgeError::BillingStarted`])
    /// once the cycle's billing has begun.
    pub fn put_round_event<E: serde::Serialize>(
        &self,
        stamp: Option<Stamp<'_>>,
        cycle: CycleId,
        seq: u64,
        event: &E,
        payload: RoundPayload<'_>,
    ) -> Result<(), EdgeError> {
        let bytes = enc(event)?;
        self.write(stamp, |t| {
            put_value(
                &mut t.open_table(ROUNDS).map_err(rdb)?,
                (cycle.0, seq),
                &bytes,
            )?;
            write_payload(t, cycle, payload)
        })
    }

    /// An open cycle's round events, in order, one at a time (a cycle's
    /// events are never all in memory).
    pub fn for_each_round_event<E: serde::de::DeserializeOwned>(
        &self,
        cycle: CycleId,
        mut f: impl FnMut(E) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        let r = self.begin_read()?;
        let t = r.open_table(ROUNDS).map_err(rdb)?;
        let mut rows = t.range(round_rows(cycle)).map_err(rdb)?;
        while let Some((_, bytes)) = next_value(&mut rows)? {
            f(dec(&bytes)?)?;
        }
        Ok(())
    }

    /// An open cycle's round events, in order.
    pub fn round_events<E: serde::de::DeserializeOwned>(
        &self,
        cycle: CycleId,
    ) -> Result<Vec<E>, EdgeError> {
        let mut out = Vec::new();
        self.for_each_round_event(cycle, |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// The shares addressed to `holder` in `cycle` by each of `partners`
    /// (its neighbours that shared), in that order.
    pub fn shares_to(
        &self,
        cycle: CycleId,
        holder: &MemberId,
        partners: &[MemberId],
    ) -> Result<Vec<EncryptedShare>, EdgeError> {
        if partners.is_empty() {
            return Ok(Vec::new());
        }
        let r = self.begin_read()?;
        let name = shares_name(cycle);
        let t = r.open_table(SharesTable::new(&name)).map_err(rdb)?;
        partners
            .iter()
            .map(|from| {
                let v = t
                    .get((from.as_str(), holder.as_str()))
                    .map_err(rdb)?
                    .ok_or_else(|| {
                        EdgeError::Store(format!(
                            "{cycle}: the share of {from} for {holder} is missing"
                        ))
                    })?;
                Ok(EncryptedShare {
                    from: from.clone(),
                    to: holder.clone(),
                    ciphertext: v.value().to_vec(),
                })
            })
            .collect()
    }

    /// The answers about each of `needed` of the kind it needs, looked up
    /// at each of its `holders`, in order.
    pub fn answers_about(
        &self,
        cycle: CycleId,
        needed: &[Needed],
    ) -> Result<Vec<Vec<SecretShare>>, EdgeError> {
        let r = self.begin_read()?;
        let name = answers_name(cycle);
        let t = match r.open_table(AnswersTable::new(&name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(needed.iter().map(|_| Vec::new()).collect());
            }
            Err(e) => return Err(rdb(e)),
        };
        let mut out = Vec::with_capacity(needed.len());
        for n in needed {
            let code = secret_code(n.secret);
            let mut shares = Vec::new();
            for h in &n.holders {
                let Some(v) = t.get((h.as_str(), n.about.as_str())).map_err(rdb)? else {
                    continue;
                };
                let row = v.value();
                if row.len() != 65 {
                    return Err(corrupt("an answer of another length"));
                }
                if row[0] != code {
                    continue;
                }
                let mut share = SecretShare {
                    x: [0; 32],
                    y: [0; 32],
                };
                share.x.copy_from_slice(&row[1..33]);
                share.y.copy_from_slice(&row[33..]);
                shares.push(share);
            }
            out.push(shares);
        }
        Ok(out)
    }

    /// The masked vectors of each of `survivors`, in order.
    pub fn masked_inputs(
        &self,
        cycle: CycleId,
        survivors: &[Survivor],
    ) -> Result<Vec<Vec<Vec<u64>>>, EdgeError> {
        let r = self.begin_read()?;
        let name = masked_name(cycle);
        let t = r.open_table(MaskedTable::new(&name)).map_err(rdb)?;
        survivors
            .iter()
            .map(|s| {
                let bytes = get_value(&t, s.member.as_str())?.ok_or_else(|| {
                    EdgeError::Store(format!(
                        "{cycle}: the masked input of {} is missing",
                        s.member
                    ))
                })?;
                dec(&bytes)
            })
            .collect()
    }

    /// Drops the tables of a cycle's rounds (after it is billed: its
    /// shares, masked vectors and answers are needed no more); whether
    /// there were any.
    pub fn drop_round_tables(&self, cycle: CycleId) -> Result<bool, EdgeError> {
        let (shares, masked, answers) =
            (shares_name(cycle), masked_name(cycle), answers_name(cycle));
        self.write_txn(|t| {
            let a = t.delete_table(SharesTable::new(&shares)).map_err(rdb)?;
            let b = t.delete_table(MaskedTable::new(&masked)).map_err(rdb)?;
            let c = t.delete_table(AnswersTable::new(&answers)).map_err(rdb)?;
            Ok(a || b || c)
        })
    }

    /// The cycles that have tables of their rounds.
    pub fn round_table_cycles(&self) -> Result<Vec<CycleId>, EdgeError> {
        let r = self.begin_read()?;
        let mut out: Vec<CycleId> = r
            .list_tables()
            .map_err(rdb)?
            .filter_map(|t| {
                let name = t
                    .name()
                    .strip_prefix("secagg/")?
                    .split('/')
                    .next()?
                    .to_string();
                name.parse().ok().map(CycleId)
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The round events of format 2, which carried their payloads (decoded
/// only by [`migrate_to_3`]).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) enum LegacyEvent {
    Advertise(Box<SignedBundle>),
    CloseAdvertise {
        at: u64,
    },
    Share {
        from: MemberId,
        shares: Vec<EncryptedShare>,
    },
    CloseShare {
        at: u64,
    },
    Submit {
        member: MemberId,
        partners: Vec<MemberId>,
    },
    CloseMask {
        at: u64,
    },
    Confirm(Confirmation),
    Reveal(Reveal),
}

/// A format 2 event decoded whole (nothing left over), else `None`.
fn legacy(bytes: &[u8]) -> Option<LegacyEvent> {
    // A length read from bytes that are not such an event must not
    // allocate more than the event could hold.
    let cfg = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<{ 1 << 26 }>();
    let (e, used) = bincode::serde::decode_from_slice::<LegacyEvent, _>(bytes, cfg).ok()?;
    (used == bytes.len()).then_some(e)
}

/// Migrates a format 2 store to format 3 in the caller's transaction:
/// each round event of a cycle not billed yet becomes its small event,
/// its payload written to the cycle's tables (a submission's masked
/// vectors read from the stored submission); events of billed cycles
/// are deleted with nothing else (they are never replayed), and an event
/// that is not a format 2 event is left as it is. Returns the events
/// rewritten.
pub(super) fn migrate_to_3(txn: &WriteTransaction) -> Result<u64, EdgeError> {
    if !txn
        .list_tables()
        .map_err(rdb)?
        .any(|t| t.name() == ROUNDS.name())
    {
        return Ok(0);
    }
    let mut events: Vec<((u64, u64), Vec<u8>)> = Vec::new();
    {
        let t = txn.open_table(ROUNDS).map_err(rdb)?;
        let mut rows = t.iter().map_err(rdb)?;
        while let Some((k, bytes)) = next_value(&mut rows)? {
            events.push((k.value().0, bytes));
        }
    }
    let billed: std::collections::BTreeSet<u64> = {
        let t = txn.open_table(BILLED).map_err(rdb)?;
        let mut ids = std::collections::BTreeSet::new();
        for row in t.iter().map_err(rdb)? {
            ids.insert(row.map_err(rdb)?.0.value());
        }
        ids
    };
    let mut rewritten = 0;
    for ((cycle, seq), bytes) in events {
        let Some(old) = legacy(&bytes) else { continue };
        let id = CycleId(cycle);
        let mut rounds = txn.open_table(ROUNDS).map_err(rdb)?;
        if billed.contains(&cycle) {
            super::remove_value(&mut rounds, (cycle, seq))?;
            continue;
        }
        let event = match old {
            LegacyEvent::Advertise(b) => RoundEvent::Step(Step::Advertise(b)),
            LegacyEvent::CloseAdvertise { at } => RoundEvent::CloseAdvertise { at },
            LegacyEvent::CloseShare { at } => RoundEvent::CloseShare { at },
            LegacyEvent::CloseMask { at } => RoundEvent::CloseMask { at },
            LegacyEvent::Confirm(c) => RoundEvent::Step(Step::Confirm(c)),
            LegacyEvent::Share { from, shares } => {
                write_payload(txn, id, RoundPayload::Shares(&shares))?;
                RoundEvent::Step(Step::Share {
                    digest: shares_digest(&shares),
                    from,
                })
            }
            LegacyEvent::Submit { member, partners } => {
                let subs = txn.open_table(SUBMISSIONS).map_err(rdb)?;
                let data = get_value(&subs, (cycle, member.as_str()))?.ok_or_else(|| {
                    EdgeError::Store(format!("{id}: the submission of {member} is missing"))
                })?;
                drop(subs);
                let data: HiddenData = super::wire(&data)?;
                let name = masked_name(id);
                let mut masked = txn.open_table(MaskedTable::new(&name)).map_err(rdb)?;
                put_value(&mut masked, member.as_str(), &enc(&data.masked)?)?;
                let digest = input_digest(&MaskedInput {
                    member: member.clone(),
                    partners,
                    vectors: data.masked,
                });
                RoundEvent::Step(Step::Submit { member, digest })
            }
            LegacyEvent::Reveal(r) => {
                write_payload(txn, id, RoundPayload::Answers(&r))?;
                RoundEvent::Step(Step::Reveal {
                    digest: reveal_digest(&r),
                    about: r.answers.iter().map(|a| a.about.clone()).collect(),
                    member: r.member,
                })
            }
        };
        put_value(&mut rounds, (cycle, seq), &enc(&event)?)?;
        rewritten += 1;
    }
    Ok(rewritten)
}
