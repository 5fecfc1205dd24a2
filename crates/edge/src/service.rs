//! The edge's request handling, independent of the transport: open the
//! envelope, check admission and freshness, apply the request to
//! [`SharedBilling`] and the store, bill ready cycles, answer signed.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pb_hiding::{DropoutCorrection, HiddenData};
use pb_model::CycleContext;
use pb_protocol::{
    Audience, Envelope, ErrorCode, MAX_FRAME, MemberEntry, MemberList, NodeId, NodeKey,
    ProtocolError, ReplayGuard, Request, RequestHash, Response, clock_counter,
    x25519_key_is_usable,
};
use pb_shared_billing::{BillingError, ComputeBackend, SharedBilling};
use pb_units::{CommunityId, CycleId, MemberId};

use crate::EdgeError;
use crate::config::{Admission, Role};
use crate::store::{BilledRecord, CycleRecord, EdgeStore, MemberRecord};

// The operator's status answer and the metrics' view (read-only).
#[path = "status.rs"]
mod status;
pub use status::MetricsView;

/// What the edge needs besides its store.
pub struct ServiceConfig {
    /// Community.
    pub community: CommunityId,
    /// Signing key.
    pub key: NodeKey,
    /// Admitted nodes.
    pub admission: Admission,
    /// Fewest members billed together.
    pub min_members: usize,
    /// Dropout deadline after a context is recorded.
    pub deadline: Duration,
    /// Sustained requests per second per enrolled node.
    pub requests_per_sec: NonZeroU32,
    /// Burst above the sustained rate.
    pub request_burst: NonZeroU32,
}

/// One token bucket per admitted node (unknown nodes never get one, so the
/// map is bounded by the admission list).
type RateLimiter = governor::DefaultKeyedRateLimiter<NodeId>;

type Refusal = (ErrorCode, String);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

fn billing_refusal(e: BillingError) -> Refusal {
    let code = match &e {
        BillingError::NoContext(_) => ErrorCode::UnknownCycle,
        BillingError::NotInCycle { .. } | BillingError::UnknownMember(_) => ErrorCode::Forbidden,
        BillingError::AlreadySubmitted { .. } | BillingError::AlreadyBilled(_) => {
            ErrorCode::AlreadyDone
        }
        BillingError::NotReady { .. } => ErrorCode::NotReady,
        _ => ErrorCode::Rejected,
    };
    (code, e.to_string())
}

/// Counts of what the edge has handled (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered with a result.
    pub served: u64,
    /// Requests refused.
    pub refused: u64,
    /// Cycles billed by this process.
    pub billed: u64,
    /// Requests refused by the per-node rate limit (part of `refused`).
    pub rate_limited: u64,
}

/// The edge service.
pub struct Service {
    store: EdgeStore,
    billing: SharedBilling,
    config: ServiceConfig,
    replay: ReplayGuard,
    members: BTreeMap<MemberId, MemberRecord>,
    cycles: BTreeMap<CycleId, CycleRecord>,
    dropped: BTreeMap<CycleId, Vec<MemberId>>,
    billed: BTreeMap<CycleId, BilledRecord>,
    stuck: BTreeSet<CycleId>,
    counters: Counters,
    rate: RateLimiter,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("members", &self.members.len())
            .field("cycles", &self.cycles.len())
            .field("billed", &self.billed.len())
            .finish()
    }
}

impl Service {
    /// Opens the service on a store, restoring every unbilled cycle into
    /// [`SharedBilling`] (billed cycles are answered from the store), then
    /// bills what is ready.
    pub fn open(
        store: EdgeStore,
        backend: Box<dyn ComputeBackend>,
        config: ServiceConfig,
    ) -> Result<Service, EdgeError> {
        let mut billing = SharedBilling::new(backend);
        billing.set_min_members(config.min_members);
        let replay = ReplayGuard::from_counters(store.counters()?);
        let rate = governor::RateLimiter::keyed(
            governor::Quota::per_second(config.requests_per_sec).allow_burst(config.request_burst),
        );
        let mut s = Service {
            rate,
            store,
            billing,
            config,
            replay,
            members: BTreeMap::new(),
            cycles: BTreeMap::new(),
            dropped: BTreeMap::new(),
            billed: BTreeMap::new(),
            stuck: BTreeSet::new(),
            counters: Counters::default(),
        };
        s.restore()?;
        s.tick();
        Ok(s)
    }

    fn restore(&mut self) -> Result<(), EdgeError> {
        let restored = |e: BillingError| EdgeError::Store(format!("restoring state: {e}"));
        for (id, m) in self.store.members()? {
            self.billing
                .register_member(id.clone(), m.public_key.clone())
                .map_err(restored)?;
            self.members.insert(id, m);
        }
        for rec in self.store.cycles()? {
            let cycle = rec.context.cycle();
            if let Some(b) = self.store.billed(cycle)? {
                self.billed.insert(cycle, b);
                self.cycles.insert(cycle, rec);
                continue;
            }
            self.billing
                .record_context_with(
                    rec.context.clone(),
                    rec.members.iter().map(|m| m.member.clone()),
                )
                .map_err(restored)?;
            for d in self.store.submissions(cycle)? {
                self.billing.record_data(d).map_err(restored)?;
            }
            if let Some(dropped) = self.store.dropped(cycle)? {
                let again = self.billing.declare_dropouts(cycle).map_err(restored)?;
                if again != dropped {
                    return Err(EdgeError::Store(format!(
                        "{cycle}: stored dropouts do not match its submissions"
                    )));
                }
                self.dropped.insert(cycle, dropped);
            }
            for c in self.store.corrections(cycle)? {
                self.billing.record_correction(c).map_err(restored)?;
            }
            self.cycles.insert(cycle, rec);
        }
        tracing::info!(
            members = self.members.len(),
            cycles = self.cycles.len(),
            billed = self.billed.len(),
            "state restored"
        );
        Ok(())
    }

    /// After a failed write the in-memory state may be ahead of the store:
    /// rebuild it from the store, which is the truth.
    fn resync(&mut self) {
        tracing::error!("store write failed; reloading state from the store");
        self.members.clear();
        self.cycles.clear();
        self.dropped.clear();
        self.billed.clear();
        let placeholder = SharedBilling::new(Box::new(pb_shared_billing::CpuBackend::new()));
        let backend = std::mem::replace(&mut self.billing, placeholder).into_backend();
        self.billing = SharedBilling::new(backend);
        self.billing.set_min_members(self.config.min_members);
        if let Err(e) = self.restore() {
            tracing::error!(error = %e, "cannot reload state");
        }
    }

    /// What the edge has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The edge's identity.
    pub fn node(&self) -> NodeId {
        self.config.key.id()
    }

    /// Whether a cycle is billed.
    pub fn is_billed(&self, cycle: CycleId) -> bool {
        self.billed.contains_key(&cycle)
    }

    /// The edge's keys for the encrypted transport: its own, and the
    /// transport keys of every admitted node (the only ones that may open
    /// a session).
    pub fn server_keys(&self) -> Result<pb_net::ServerKeys, EdgeError> {
        pb_net::ServerKeys::new(&self.config.key, self.config.admission.nodes())
            .map_err(|e| EdgeError::Config(format!("admission: {e}")))
    }

    /// Handles one frame and returns the sealed answer. `oversized` is set
    /// when the transport refused the frame before decoding.
    pub fn handle(&mut self, frame: &[u8], oversized: Option<usize>) -> Vec<u8> {
        self.handle_from(frame, oversized, None)
    }

    /// Like [`Service::handle`] for a frame that arrived in an encrypted
    /// session opened with the X25519 static key `peer`: the envelope must
    /// be signed by the node that owns that key, so a session cannot carry
    /// another node's frames.
    pub fn handle_from(
        &mut self,
        frame: &[u8],
        oversized: Option<usize>,
        peer: Option<[u8; 32]>,
    ) -> Vec<u8> {
        let (counter, result) = self.handle_inner(frame, oversized, peer);
        // Hashing a frame refused as oversized hashes the empty payload.
        let response = match result {
            Ok(r) => {
                self.counters.served += 1;
                r
            }
            Err((code, message)) => {
                self.counters.refused += 1;
                tracing::debug!(?code, %message, "request refused");
                Response::Error { code, message }
            }
        };
        Envelope::seal_response(&self.config.key, counter, RequestHash::of(frame), &response)
    }

    fn handle_inner(
        &mut self,
        frame: &[u8],
        oversized: Option<usize>,
        peer: Option<[u8; 32]>,
    ) -> (u64, Result<Response, Refusal>) {
        if let Some(size) = oversized {
            return (
                0,
                Err(refuse(
                    ErrorCode::BadFrame,
                    format!(
                        "request of {size} bytes refused: the limit is {MAX_FRAME} bytes in at most {} frames",
                        pb_net::MAX_PARTS
                    ),
                )),
            );
        }
        let me = Audience {
            edge: self.config.key.id(),
            community: self.config.community.clone(),
        };
        let (sender, counter, request) = match Envelope::open_request(frame, &me) {
            Ok(x) => x,
            Err(e) => {
                let code = match e {
                    ProtocolError::BadSignature => ErrorCode::BadSignature,
                    ProtocolError::Misdirected(_) => ErrorCode::Misdirected,
                    _ => ErrorCode::BadFrame,
                };
                return (0, Err(refuse(code, e.to_string())));
            }
        };
        if let Some(peer) = peer {
            if sender.transport_public() != Some(peer) {
                return (
                    counter,
                    Err(refuse(
                        ErrorCode::Forbidden,
                        format!(
                            "the request is signed by node {} but the session was opened by another node",
                            sender.to_hex()
                        ),
                    )),
                );
            }
        }
        let Some(role) = self.config.admission.role(&sender) else {
            return (
                counter,
                Err(refuse(
                    ErrorCode::NotEnrolled,
                    format!("node {} is not enrolled in this community", sender.to_hex()),
                )),
            );
        };
        // Replays first: a captured frame sent again must not spend its
        // signer's rate budget.
        if let Err(r) = self.replay.check(&sender, counter, clock_counter()) {
            return (counter, Err(refuse(ErrorCode::Replay, r.to_string())));
        }
        // From here on the frame is handled once, whatever the outcome: its
        // counter is recorded even if it is refused, so that it can never be
        // replayed (state-changing requests also persist it with their
        // change).
        self.replay.accept(sender, counter);
        if let Err(not_until) = self.rate.check_key(&sender) {
            use governor::clock::{Clock, DefaultClock};
            self.counters.rate_limited += 1;
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return (
                counter,
                Err(refuse(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} requests per second (burst {}) from node {}: retry in {} ms",
                        self.config.requests_per_sec,
                        self.config.request_burst,
                        sender.to_hex(),
                        wait.as_millis().max(1)
                    ),
                )),
            );
        }
        (counter, self.dispatch(&sender, counter, role, request))
    }

    fn dispatch(
        &mut self,
        sender: &NodeId,
        counter: u64,
        role: Role,
        request: Request,
    ) -> Result<Response, Refusal> {
        let stamp = (sender, counter);
        match (role, request) {
            (
                Role::Member(me),
                Request::Join {
                    member,
                    przs,
                    public_key,
                },
            ) => {
                if member != me {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        format!("this node is enrolled for {me}, not {member}"),
                    ));
                }
                if !x25519_key_is_usable(&przs.0) {
                    return Err(refuse(
                        ErrorCode::Rejected,
                        format!(
                            "{member}: the PRZS key is a low-order X25519 point (every shared secret with it would be zero); generate a proper key"
                        ),
                    ));
                }
                let record = MemberRecord {
                    node: *sender,
                    przs,
                    public_key,
                };
                if let Some(existing) = self.members.get(&member) {
                    return if *existing == record {
                        Ok(Response::Ok)
                    } else {
                        Err(refuse(
                            ErrorCode::Rejected,
                            format!(
                                "{member} already joined with other keys (a core that lost its keys must be re-enrolled under a new node id)"
                            ),
                        ))
                    };
                }
                self.billing
                    .register_member(member.clone(), record.public_key.clone())
                    .map_err(billing_refusal)?;
                let stored = self.store.put_member(stamp, &member, &record);
                self.committed(stored)?;
                tracing::info!(%member, node = %sender, "member joined");
                self.members.insert(member, record);
                Ok(Response::Ok)
            }
            (_, Request::GetMembers) => Ok(Response::Members(MemberList {
                community: self.config.community.clone(),
                members: self.member_entries(),
            })),
            (Role::Operator, Request::PutContext(context)) => self.put_context(stamp, context),
            (role, Request::GetCycle { cycle }) => {
                let rec = self.cycle_for(&role, cycle)?;
                let (waiting, billed) = if self.billed.contains_key(&cycle) {
                    (0, true)
                } else {
                    let waiting = match self.billing.status(cycle) {
                        Ok(pb_shared_billing::CycleStatus::Collecting { waiting }) => waiting,
                        _ => 0,
                    };
                    (waiting, false)
                };
                Ok(Response::Cycle {
                    context: rec.context.clone(),
                    members: rec.members.clone(),
                    dropped: self.dropped.get(&cycle).cloned().unwrap_or_default(),
                    waiting,
                    billed,
                })
            }
            (Role::Member(me), Request::Submit(data)) => self.submit(stamp, &me, data),
            (Role::Member(me), Request::Correct(correction)) => {
                self.correct(stamp, &me, correction)
            }
            (Role::Member(me), Request::GetBill { cycle }) => self.get_bill(&me, cycle),
            (Role::Operator, Request::Status { cycle }) => self.status(cycle).map(Response::Status),
            (role, request) => Err(refuse(
                ErrorCode::Forbidden,
                format!(
                    "{} may not send {}",
                    match role {
                        Role::Operator => "an operator",
                        Role::Member(_) => "a member's core",
                    },
                    request_name(&request)
                ),
            )),
        }
    }

    fn member_entries(&self) -> Vec<MemberEntry> {
        self.members
            .iter()
            .map(|(id, m)| MemberEntry {
                member: id.clone(),
                node: m.node,
                przs: m.przs,
            })
            .collect()
    }

    fn cycle_for(&self, role: &Role, cycle: CycleId) -> Result<&CycleRecord, Refusal> {
        let rec = self.cycles.get(&cycle).ok_or_else(|| {
            refuse(
                ErrorCode::UnknownCycle,
                format!("{cycle} has no context yet"),
            )
        })?;
        if let Role::Member(me) = role {
            if !rec.members.iter().any(|m| &m.member == me) {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "{me} is not a member of {cycle} (it joined after the cycle's context)"
                    ),
                ));
            }
        }
        Ok(rec)
    }

    /// A failed commit leaves memory ahead of the store: rebuild memory
    /// from the store (the truth) and refuse the request.
    fn committed(&mut self, stored: Result<(), EdgeError>) -> Result<(), Refusal> {
        stored.map_err(|e| {
            self.resync();
            refuse(ErrorCode::Internal, e.to_string())
        })
    }

    /// Whether `me` may send data or a correction for `member` in `cycle`.
    fn may_contribute(
        &self,
        me: &MemberId,
        member: &MemberId,
        cycle: CycleId,
    ) -> Result<(), Refusal> {
        if member != me {
            return Err(refuse(
                ErrorCode::Forbidden,
                format!("this node speaks for {me}, not {member}"),
            ));
        }
        if self.billed.contains_key(&cycle) {
            return Err(refuse(
                ErrorCode::AlreadyDone,
                format!("{cycle} is already billed"),
            ));
        }
        self.cycle_for(&Role::Member(me.clone()), cycle).map(|_| ())
    }

    fn put_context(
        &mut self,
        stamp: (&NodeId, u64),
        context: CycleContext,
    ) -> Result<Response, Refusal> {
        let cycle = context.cycle();
        if let Some(rec) = self.cycles.get(&cycle) {
            return if rec.context == context {
                Ok(Response::Ok)
            } else {
                Err(refuse(
                    ErrorCode::AlreadyDone,
                    format!("{cycle} already has a different context"),
                ))
            };
        }
        if self.members.len() < self.config.min_members {
            return Err(refuse(
                ErrorCode::Rejected,
                format!(
                    "only {} members have joined; a cycle needs at least {}",
                    self.members.len(),
                    self.config.min_members
                ),
            ));
        }
        let rec = CycleRecord {
            context: context.clone(),
            members: self.member_entries(),
            posted_at: now_secs(),
        };
        self.billing
            .record_context_with(context, rec.members.iter().map(|m| m.member.clone()))
            .map_err(billing_refusal)?;
        let stored = self.store.put_cycle(stamp, &rec);
        self.committed(stored)?;
        tracing::info!(%cycle, members = rec.members.len(), slots = rec.context.slots(), model = %rec.context.model(), "cycle context recorded");
        self.cycles.insert(cycle, rec);
        Ok(Response::Ok)
    }

    fn submit(
        &mut self,
        stamp: (&NodeId, u64),
        me: &MemberId,
        data: HiddenData,
    ) -> Result<Response, Refusal> {
        let cycle = data.cycle;
        self.may_contribute(me, &data.member, cycle)?;
        self.billing
            .record_data(data.clone())
            .map_err(billing_refusal)?;
        let stored = self.store.put_submission(stamp, &data);
        self.committed(stored)?;
        tracing::debug!(%cycle, member = %me, "submission accepted");
        self.tick();
        Ok(Response::Ok)
    }

    fn correct(
        &mut self,
        stamp: (&NodeId, u64),
        me: &MemberId,
        c: DropoutCorrection,
    ) -> Result<Response, Refusal> {
        let cycle = c.cycle;
        self.may_contribute(me, &c.member, cycle)?;
        self.billing
            .record_correction(c.clone())
            .map_err(billing_refusal)?;
        let stored = self.store.put_correction(stamp, &c);
        self.committed(stored)?;
        tracing::debug!(%cycle, member = %me, "dropout correction accepted");
        self.tick();
        Ok(Response::Ok)
    }

    fn get_bill(&mut self, me: &MemberId, cycle: CycleId) -> Result<Response, Refusal> {
        self.cycle_for(&Role::Member(me.clone()), cycle)?;
        if self.billed.contains_key(&cycle) {
            let bill = self
                .store
                .bill(cycle, me)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?
                .ok_or_else(|| {
                    refuse(
                        ErrorCode::Rejected,
                        format!("{me} was declared dropped out of {cycle}: it has no bill"),
                    )
                })?;
            if let Ok(true) = self.store.mark_delivered(cycle, me, now_secs()) {
                tracing::debug!(%cycle, member = %me, "bill delivered");
            }
            return Ok(Response::Bill(bill));
        }
        if self.dropped.get(&cycle).is_some_and(|d| d.contains(me)) {
            return Err(refuse(
                ErrorCode::Rejected,
                format!("{me} was declared dropped out of {cycle}: it has no bill"),
            ));
        }
        let waiting = match self.billing.status(cycle) {
            Ok(pb_shared_billing::CycleStatus::Collecting { waiting }) => waiting,
            _ => 0,
        };
        Ok(Response::Pending {
            waiting,
            dropouts: self.dropped.contains_key(&cycle),
        })
    }

    /// Declares dropouts past the deadline and bills every ready cycle.
    pub fn tick(&mut self) {
        let now = now_secs();
        let open: Vec<CycleId> = self
            .cycles
            .keys()
            .filter(|c| !self.billed.contains_key(c))
            .copied()
            .collect();
        for cycle in open {
            if self.stuck.contains(&cycle) {
                continue;
            }
            if self.billing.is_ready(cycle) {
                self.bill(cycle);
                continue;
            }
            let Some(rec) = self.cycles.get(&cycle) else {
                continue;
            };
            let overdue = now >= rec.posted_at.saturating_add(self.config.deadline.as_secs());
            if overdue && !self.dropped.contains_key(&cycle) {
                match self.billing.declare_dropouts(cycle) {
                    Ok(dropped) => {
                        if let Err(e) = self.store.put_dropped(cycle, &dropped) {
                            tracing::error!(error = %e, "cannot store dropouts");
                            self.resync();
                            return;
                        }
                        tracing::warn!(%cycle, dropped = dropped.len(), members = ?dropped, "deadline passed: members declared dropped out");
                        self.dropped.insert(cycle, dropped);
                        if self.billing.is_ready(cycle) {
                            self.bill(cycle);
                        }
                    }
                    Err(e) => {
                        tracing::error!(%cycle, error = %e, "deadline passed but the cycle cannot be billed");
                        self.stuck.insert(cycle);
                    }
                }
            }
        }
    }

    fn bill(&mut self, cycle: CycleId) {
        let start = Instant::now();
        // What the edge learns by design, kept for the operator's report.
        let aggregates: Vec<Vec<i64>> =
            match (self.billing.context(cycle), self.billing.aggregates(cycle)) {
                (Some(ctx), Ok(a)) => ctx
                    .model()
                    .aggregates()
                    .iter()
                    .map(|&w| {
                        a.get(w, ctx.slots())
                            .map(<[i64]>::to_vec)
                            .unwrap_or_default()
                    })
                    .collect(),
                _ => Vec::new(),
            };
        match self.billing.compute_bills(cycle) {
            Ok(bills) => {
                let record = BilledRecord {
                    at: now_secs(),
                    millis: start.elapsed().as_millis() as u64,
                    bills: bills.len(),
                };
                if let Err(e) = self.store.put_bills(cycle, &bills, record, &aggregates) {
                    tracing::error!(%cycle, error = %e, "cannot store bills");
                    self.resync();
                    return;
                }
                self.billing.retire(cycle);
                self.billed.insert(cycle, record);
                self.counters.billed += 1;
                tracing::info!(
                    cycle = cycle.0,
                    bills = record.bills,
                    millis = record.millis,
                    backend = self.billing.backend_name(),
                    "cycle billed"
                );
            }
            Err(e) => {
                if self.stuck.insert(cycle) {
                    tracing::error!(%cycle, error = %e, "cycle cannot be billed");
                }
            }
        }
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Join { .. } => "Join",
        Request::GetMembers => "GetMembers",
        Request::PutContext(_) => "PutContext",
        Request::GetCycle { .. } => "GetCycle",
        Request::Submit(_) => "Submit",
        Request::Correct(_) => "Correct",
        Request::GetBill { .. } => "GetBill",
        Request::Status { .. } => "Status",
    }
}
