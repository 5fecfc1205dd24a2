//! `LocalCommunity`: a whole community in this process, whose methods are
//! the rounds of the SecAgg+ masking protocol (`pb-secagg`, design section
//! 4.2), each one a call into `pb_secagg::Client` at every household that
//! is still there and into `pb_secagg::server::Server` at the edge. The
//! households hide their data with PRZS keys "with nobody" (their
//! contributions unmasked) and SecAgg+ masks them, as
//! `pb_shared_billing::community::run_local` does; the edge unmasks the
//! survivors' sum and bills with `SharedBilling::compute_bills_with`.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use pb_glwe::SecretKey;
use pb_glwe::seeding::new_seeder;
use pb_model::Aggregates;
use pb_przs::decode;
use pb_secagg::roster::show_fingerprint;
use pb_secagg::server::Server;
use pb_secagg::{Client, Graph, Refusal, Roster, RosterEntry, SignedRoster, SurvivorSet};
use pb_units::{CommunityId, MemberId};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand_core::OsRng;

use crate::convert::{member_id, type_name, value_error};
use crate::objects::{Bill, CycleContext, Data, HiddenBill, HidingContext, SharedBilling};

/// One household: its keys (GLWE, PRZS with nobody) and its Ed25519
/// identity, listed in the signed roster.
struct Member {
    id: MemberId,
    hiding: Py<HidingContext>,
    signer: SigningKey,
}

/// The cycle in progress: the edge's SecAgg+ state and each household's.
struct Cycle {
    ctx: pb_model::CycleContext,
    server: Server,
    clients: BTreeMap<MemberId, Client>,
    dropped: BTreeSet<MemberId>,
    set: Option<SurvivorSet>,
    hidden_bills: Vec<pb_hiding::HiddenBill>,
}

impl Cycle {
    fn online(&self, m: &MemberId) -> bool {
        !self.dropped.contains(m)
    }

    fn set(&self, round: &'static str) -> Result<SurvivorSet, Fail> {
        self.set.clone().ok_or(Fail::Masking(
            round,
            None,
            Refusal::WrongRound {
                expected: pb_secagg::Round::Confirm,
                actual: self.server.round(),
            },
        ))
    }
}

/// Why a round failed: bad input (`ValueError`, `TypeError`) or a refusal
/// of `pb-secagg` (`private_billing.MaskingError`).
enum Fail {
    Py(PyErr),
    Masking(&'static str, Option<MemberId>, Refusal),
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Fail {
        Fail::Py(e)
    }
}

fn refused(round: &'static str) -> impl Fn(Refusal) -> Fail {
    move |r| Fail::Masking(round, None, r)
}

fn refused_at<'a>(round: &'static str, m: &'a MemberId) -> impl Fn(Refusal) -> Fail + 'a {
    move |r| Fail::Masking(round, Some(m.clone()), r)
}

impl Fail {
    fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Fail::Py(e) => e,
            Fail::Masking(round, member, refusal) => masking_error(py, round, member, &refusal),
        }
    }
}

/// A `private_billing.MaskingError` (a `ValueError` if the module cannot
/// be imported), with the round and the members the edge waits for.
fn masking_error(
    py: Python<'_>,
    round: &str,
    member: Option<MemberId>,
    refusal: &Refusal,
) -> PyErr {
    let waiting: Vec<String> = match refusal {
        Refusal::NotEnoughShares { waiting } => {
            waiting.iter().map(|m| m.as_str().to_string()).collect()
        }
        _ => Vec::new(),
    };
    let message = match member {
        Some(m) => format!("{round} round: {m} refused: {refusal}"),
        None => format!("{round} round refused: {refusal}"),
    };
    let made = py
        .import("private_billing.errors")
        .and_then(|m| m.getattr("MaskingError"))
        .and_then(|c| c.call1((message.clone(), round, waiting)));
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(_) => value_error(message),
    }
}

fn ids(members: impl IntoIterator<Item = MemberId>) -> Vec<String> {
    members.into_iter().map(String::from).collect()
}

/// A whole community in this process: every household's keys and SecAgg+
/// state, the edge's SecAgg+ state and its billing authority. Its methods
/// are the rounds of a cycle, in order: `advertise(context)`, `share()`,
/// `mask(data)`, `confirm()`, `reveal()`, `unmask()`; `drop(*ids)` makes
/// households leave the cycle in progress (they take part in no later
/// round).
#[pyclass(module = "private_billing", frozen, subclass)]
pub struct LocalCommunity {
    community: String,
    need: usize,
    members: Vec<Member>,
    roster: Roster,
    signed: SignedRoster,
    operator: [u8; 32],
    billing: Py<SharedBilling>,
    cycle: Mutex<Option<Cycle>>,
}

impl LocalCommunity {
    fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// Runs `f` on the cycle in progress with the GIL released.
    fn on_cycle<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Cycle) -> Result<T, Fail> + Send,
    ) -> PyResult<T> {
        let out = py.detach(|| {
            let mut guard = self.cycle.lock().map_err(|_| {
                Fail::Py(value_error("the community failed earlier and is unusable"))
            })?;
            let cycle = guard.as_mut().ok_or_else(|| {
                Fail::Py(value_error(
                    "no cycle in progress: advertise(context) starts one",
                ))
            })?;
            f(cycle)
        });
        out.map_err(|e| e.into_py(py))
    }

    fn read<T>(&self, f: impl FnOnce(Option<&Cycle>) -> T) -> PyResult<T> {
        let guard = self
            .cycle
            .lock()
            .map_err(|_| value_error("the community failed earlier and is unusable"))?;
        Ok(f(guard.as_ref()))
    }
}

/// `data` (`{household_id: Data}`) as the engine's data of each member.
fn parse_data(
    community: &LocalCommunity,
    data: &Bound<'_, PyAny>,
) -> PyResult<BTreeMap<MemberId, pb_model::Data>> {
    let data = data.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "data must be a dict {{household_id: Data}}, not {}",
            type_name(data)
        ))
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in data.iter() {
        let id = member_id(&k, "data key")?;
        if community.member(&id).is_none() {
            return Err(value_error(format!(
                "{id} is not a member of community {:?}",
                community.community
            )));
        }
        let d = v.cast::<Data>().map_err(|_| {
            PyTypeError::new_err(format!("data[{id}] must be a Data, not {}", type_name(&v)))
        })?;
        let d = d.get().for_member(&id)?;
        if out.insert(id.clone(), d).is_some() {
            return Err(value_error(format!("data names {id} twice")));
        }
    }
    Ok(out)
}

#[pymethods]
impl LocalCommunity {
    #[new]
    #[pyo3(signature = (household_ids, *, community = "local", min_members = pb_units::limits::DEFAULT_MIN_MEMBERS))]
    fn new(
        py: Python<'_>,
        household_ids: &Bound<'_, PyAny>,
        community: &str,
        min_members: usize,
    ) -> PyResult<LocalCommunity> {
        if community.is_empty() {
            return Err(value_error("community must not be empty"));
        }
        let mut list: Vec<MemberId> = Vec::new();
        for h in household_ids.try_iter()? {
            let id = member_id(&h?, "household id")?;
            if list.contains(&id) {
                return Err(value_error(format!("household {id} is listed twice")));
            }
            list.push(id);
        }
        let need = pb_units::limits::min_members(min_members);
        if list.len() < need {
            return Err(value_error(format!(
                "a community is billed with at least {need} households, not {}",
                list.len()
            )));
        }
        let cid = CommunityId(community.into());
        let billing = SharedBilling::create(min_members, Some(community))?;
        let mut members = Vec::with_capacity(list.len());
        for id in list {
            // `hide` leaves the contributions for the mask round's SecAgg+.
            let inner = pb_hiding::HidingContext::for_secagg(
                &cid,
                &id,
                SecretKey::generate(new_seeder().as_mut()),
            );
            let public = py.detach(|| inner.public_key(new_seeder().as_mut()));
            billing.with(|e| e.register_member(id.clone(), public).map_err(value_error))?;
            members.push(Member {
                id,
                hiding: Py::new(py, HidingContext { inner })?,
                signer: SigningKey::generate(&mut OsRng),
            });
        }
        let roster = Roster::new(
            community,
            1,
            members
                .iter()
                .map(|m| RosterEntry {
                    member: m.id.clone(),
                    identity: m.signer.verifying_key().to_bytes(),
                })
                .collect(),
        )
        .map_err(value_error)?;
        let operator = SigningKey::generate(&mut OsRng);
        let signed = SignedRoster::sign(roster.clone(), &operator);
        Ok(LocalCommunity {
            community: community.into(),
            need,
            members,
            roster,
            signed,
            operator: operator.verifying_key().to_bytes(),
            billing: Py::new(py, billing)?,
            cycle: Mutex::new(None),
        })
    }

    /// Advertise round: starts a cycle under `context` (abandoning one in
    /// progress) with every household: the edge checks the operator-signed
    /// member list and records the context, each household draws its
    /// cycle secrets and advertises its signed key bundle. Returns the
    /// households that advertised.
    fn advertise(
        &self,
        py: Python<'_>,
        context: &Bound<'_, CycleContext>,
    ) -> PyResult<Vec<String>> {
        let ctx = context.get().inner.clone();
        let fields = ctx.model().aggregates().len();
        let started = py.detach(|| -> Result<Cycle, Fail> {
            let round = "advertise";
            let mut server = Server::new(
                &self.signed,
                &self.operator,
                ctx.cycle().0,
                self.need,
                fields,
                ctx.slots(),
            )
            .map_err(refused(round))?;
            self.billing
                .get()
                .with(|e| e.record_context(ctx.clone()).map_err(value_error))?;
            let graph = Graph::new(server.session(), &self.roster.ids(), server.params());
            let mut clients = BTreeMap::new();
            for m in &self.members {
                let client = Client::with_graph(
                    &self.roster,
                    &graph,
                    self.need,
                    &m.id,
                    &m.signer,
                    &mut OsRng,
                )
                .map_err(refused_at(round, &m.id))?;
                server
                    .advertise(client.bundle().clone())
                    .map_err(refused_at(round, &m.id))?;
                clients.insert(m.id.clone(), client);
            }
            server.close_advertise().map_err(refused(round))?;
            Ok(Cycle {
                ctx: ctx.clone(),
                server,
                clients,
                dropped: BTreeSet::new(),
                set: None,
                hidden_bills: Vec::new(),
            })
        });
        let cycle = started.map_err(|e| e.into_py(py))?;
        let advertised = ids(cycle.clients.keys().cloned());
        let mut guard = self
            .cycle
            .lock()
            .map_err(|_| value_error("the community failed earlier and is unusable"))?;
        *guard = Some(cycle);
        Ok(advertised)
    }

    /// Households leave the cycle in progress: from now on they take part
    /// in no round (dropped before `mask()` they are not billed; dropped
    /// after it, their data is in the sum and billed, but they are not
    /// there to decrypt their bill).
    #[pyo3(name = "drop", signature = (*household_ids))]
    fn drop_out(&self, py: Python<'_>, household_ids: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        let mut leaving = Vec::with_capacity(household_ids.len());
        for h in &household_ids {
            let id = member_id(h, "household id")?;
            if self.member(&id).is_none() {
                return Err(value_error(format!(
                    "{id} is not a member of community {:?}",
                    self.community
                )));
            }
            leaving.push(id);
        }
        self.on_cycle(py, |c| {
            c.dropped.extend(leaving);
            Ok(())
        })
    }

    /// Share round: each household still there checks its neighbours' key
    /// bundles and sends them Shamir shares of its secrets, encrypted to
    /// each; the edge then closes the round. Returns the households that
    /// shared.
    fn share(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.on_cycle(py, |c| {
            let round = "share";
            let mut shared = Vec::new();
            for (id, client) in c.clients.iter_mut() {
                if c.dropped.contains(id) {
                    continue;
                }
                let bundles = c.server.bundles_for(id).map_err(refused_at(round, id))?;
                let shares = client
                    .share(&bundles, &mut OsRng)
                    .map_err(refused_at(round, id))?;
                c.server.share(id, shares).map_err(refused_at(round, id))?;
                shared.push(id.clone());
            }
            c.server.close_share().map_err(refused(round))?;
            Ok(ids(shared))
        })
    }

    /// Mask round: each household still there hides its data (`data`,
    /// `{household_id: Data}`; in a thread pool of `max_workers`, by
    /// default one per CPU; data of households that dropped out is not
    /// used), masks its contributions with SecAgg+ and submits; the edge
    /// records the hidden data and announces the survivor set, which it
    /// returns.
    #[pyo3(signature = (data, *, max_workers = None))]
    fn mask(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        max_workers: Option<usize>,
    ) -> PyResult<Vec<String>> {
        let mut data = parse_data(self, data)?;
        if max_workers == Some(0) {
            return Err(value_error("max_workers must be at least 1"));
        }
        self.on_cycle(py, |c| {
            let round = "mask";
            let online: Vec<&Member> = self
                .members
                .iter()
                .filter(|m| c.online(&m.id) && c.clients.contains_key(&m.id))
                .collect();
            let mut jobs = Vec::with_capacity(online.len());
            for m in &online {
                let d = data.remove(&m.id).ok_or_else(|| {
                    Fail::Py(value_error(format!(
                        "no data for {}: give its data, or drop() it first",
                        m.id
                    )))
                })?;
                jobs.push((*m, d));
            }
            let workers = max_workers
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
                })
                .clamp(1, jobs.len().max(1));
            let ctx = &c.ctx;
            let per = jobs.len().div_ceil(workers).max(1);
            let hidden: Vec<Result<pb_hiding::HiddenData, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .chunks(per)
                    .map(|chunk| {
                        s.spawn(move || {
                            chunk
                                .iter()
                                .map(|(m, d)| {
                                    m.hiding
                                        .get()
                                        .inner
                                        .hide(d, ctx, new_seeder().as_mut())
                                        .map_err(|e| format!("{}: {e}", m.id))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join()
                            .unwrap_or_else(|_| vec![Err("hiding failed".to_string())])
                    })
                    .collect()
            });
            let hidden = hidden
                .into_iter()
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| Fail::Py(value_error(e)))?;
            let mut submitted = Vec::with_capacity(hidden.len());
            for ((m, _), mut h) in jobs.iter().zip(hidden) {
                let client = c.clients.get_mut(&m.id).ok_or_else(|| {
                    Fail::Py(value_error(format!("{} is not in this cycle", m.id)))
                })?;
                let shares = c
                    .server
                    .shares_for(&m.id)
                    .map_err(refused_at(round, &m.id))?;
                let masked = client
                    .mask(&shares, &h.masked)
                    .map_err(refused_at(round, &m.id))?;
                h.masked = masked.vectors.clone();
                c.server.submit(masked).map_err(refused_at(round, &m.id))?;
                submitted.push(h);
            }
            let set = c.server.close_mask().map_err(refused(round))?;
            c.set = Some(set.clone());
            // The billing authority records exactly the survivors' data, once
            // the survivor set stands (a refused round records nothing).
            let billing = self.billing.get();
            for h in submitted {
                billing.with(|e| e.record_data(h).map_err(value_error))?;
            }
            Ok(ids(set.members))
        })
    }

    /// Confirm round: each survivor still there signs the survivor set
    /// (once per cycle). Returns those that confirmed, sorted.
    fn confirm(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.on_cycle(py, |c| {
            let round = "confirm";
            let set = c.set(round)?;
            let mut confirmed = Vec::new();
            for m in &self.members {
                if !set.contains(&m.id) || !c.online(&m.id) {
                    continue;
                }
                let Some(client) = c.clients.get_mut(&m.id) else {
                    continue;
                };
                let conf = client
                    .confirm(&set, &self.roster, &m.signer)
                    .map_err(refused_at(round, &m.id))?;
                c.server.confirm(conf).map_err(refused_at(round, &m.id))?;
                confirmed.push(m.id.clone());
            }
            confirmed.sort();
            Ok(ids(confirmed))
        })
    }

    /// Reveal round: each survivor still there checks that enough of its
    /// neighbours confirmed the same set and answers, for each neighbour,
    /// the share of its self-mask seed (survived) or of its mask key
    /// (dropped). If one refuses (too few confirmations), the edge
    /// receives none of this round's answers. Returns those that revealed,
    /// sorted.
    fn reveal(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.on_cycle(py, |c| {
            let round = "reveal";
            let set = c.set(round)?;
            let hash = set.hash();
            let mut answers = Vec::new();
            for m in &self.members {
                if !set.contains(&m.id) || !c.online(&m.id) {
                    continue;
                }
                let Some(client) = c.clients.get_mut(&m.id) else {
                    continue;
                };
                let confirmations = c.server.confirmations_for(&m.id);
                let r = client
                    .reveal(&hash, &confirmations)
                    .map_err(refused_at(round, &m.id))?;
                answers.push(r);
            }
            let mut revealed = Vec::with_capacity(answers.len());
            for r in answers {
                let m = r.member.clone();
                c.server.reveal(r).map_err(refused_at(round, &m))?;
                revealed.push(m);
            }
            revealed.sort();
            Ok(ids(revealed))
        })
    }

    /// The edge recovers the secrets it needs from the answers, unmasks
    /// the survivors' sum (the model's per-slot aggregates) and bills every
    /// survivor; each survivor still there decrypts its bill, which this
    /// returns (`{household_id: Bill}`; `hidden_bills` has them all).
    fn unmask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (bills, cycle) = self.on_cycle(py, |c| {
            let sums = c.server.unmask().map_err(refused("unmask"))?;
            let mut aggregates = Aggregates::default();
            for (agg, sum) in c.ctx.model().aggregates().into_iter().zip(sums) {
                aggregates.insert(agg, sum.into_iter().map(decode).collect());
            }
            let cycle = c.ctx.cycle();
            let bills = self
                .billing
                .get()
                .with(|e| e.compute_bills_with(cycle, aggregates).map_err(value_error))?;
            c.hidden_bills = bills.clone();
            let mut out = Vec::new();
            for m in &self.members {
                if !c.online(&m.id) {
                    continue;
                }
                if let Some(hb) = bills.iter().find(|b| b.member == m.id) {
                    let b = m.hiding.get().inner.decrypt(hb).map_err(value_error)?;
                    out.push((m.id.clone(), b));
                }
            }
            Ok((out, cycle))
        })?;
        let dict = PyDict::new(py);
        for (id, b) in bills {
            dict.set_item(
                id.as_str(),
                Bill {
                    bill: b.bill,
                    reward: b.reward,
                    cycle,
                    member: Some(id.clone()),
                },
            )?;
        }
        Ok(dict)
    }

    /// The households, in the order given.
    #[getter]
    fn household_ids(&self) -> Vec<String> {
        ids(self.members.iter().map(|m| m.id.clone()))
    }

    /// Each household's keys (its `HidingContext`), by id. Their PRZS keys
    /// are with nobody: `hide` alone leaves the contributions unmasked, the
    /// mask round masks them.
    #[getter]
    fn households<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for m in &self.members {
            out.set_item(m.id.as_str(), m.hiding.clone_ref(py))?;
        }
        Ok(out)
    }

    /// The billing authority (bound to this community).
    #[getter]
    fn billing(&self, py: Python<'_>) -> Py<SharedBilling> {
        self.billing.clone_ref(py)
    }

    /// The community.
    #[getter]
    fn community(&self) -> String {
        self.community.clone()
    }

    /// The fewest households billed together (and surviving each round).
    #[getter]
    fn min_members(&self) -> usize {
        self.need
    }

    /// The signed member list's fingerprint, as households compare it.
    #[getter]
    fn fingerprint(&self) -> String {
        show_fingerprint(&self.roster.fingerprint())
    }

    /// Neighbours per household in the masking graph (`k`; all others
    /// when the graph is complete).
    #[getter]
    fn degree(&self) -> PyResult<usize> {
        let p = self.roster.params().map_err(value_error)?;
        Ok(p.degree)
    }

    /// The edge's round in the cycle in progress (`"advertise"`,
    /// `"share"`, `"mask"`, `"confirm"`, `"reveal"`, `"done"`), or `None`.
    #[getter]
    fn round(&self) -> PyResult<Option<String>> {
        self.read(|c| c.map(|c| format!("{:?}", c.server.round()).to_lowercase()))
    }

    /// Households the edge waits for in the current round.
    #[getter]
    fn waiting(&self) -> PyResult<Vec<String>> {
        self.read(|c| c.map_or_else(Vec::new, |c| ids(c.server.progress().waiting)))
    }

    /// The survivor set (households whose masked data the edge sums), once
    /// the mask round closed.
    #[getter]
    fn survivors(&self) -> PyResult<Option<Vec<String>>> {
        self.read(|c| c.and_then(|c| c.set.as_ref().map(|s| ids(s.members.clone()))))
    }

    /// Households that dropped out of the cycle in progress.
    #[getter]
    fn dropped(&self) -> PyResult<Vec<String>> {
        self.read(|c| c.map_or_else(Vec::new, |c| ids(c.dropped.iter().cloned())))
    }

    /// Every bill the edge computed in the last `unmask()`, by household
    /// (those of households that dropped after masking included).
    #[getter]
    fn hidden_bills<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let bills = self.read(|c| c.map_or_else(Vec::new, |c| c.hidden_bills.clone()))?;
        let out = PyDict::new(py);
        for b in bills {
            out.set_item(b.member.as_str().to_string(), HiddenBill { inner: b })?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "LocalCommunity(community={:?}, households={}, min_members={})",
            self.community,
            self.members.len(),
            self.need
        )
    }
}
