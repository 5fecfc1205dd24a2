//! The edge's request handling, independent of the transport: open the
//! envelope, check admission and freshness, move each cycle's SecAgg+
//! rounds on ([`crate::rounds`]), bill cycles whose aggregate is unmasked,
//! answer signed.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pb_hiding::{HiddenBill, HiddenData};
use pb_model::{Aggregates, CycleContext};
use pb_protocol::{
    Audience, Envelope, ErrorCode, MAX_FRAME, MemberEntry, MemberList, NodeId, NodeKey,
    ProtocolError, ReplayGuard, Request, RequestHash, Response, RosterPage, clock_counter,
    verify_rotation, x25519_key_is_usable,
};
use pb_przs::IdentityPublic;
use pb_secagg::client::MaskedInput;
use pb_secagg::rounds::{Rounds, Step};
use pb_secagg::{Round, SignedRoster};
use pb_shared_billing::{BillingError, ComputeBackend, CycleBiller};
use pb_units::{CommunityId, CycleId, MemberId};

use crate::EdgeError;
use crate::config::{Admission, Role, Rotation, TransportAdmission};
use crate::rounds::{OpenCycle, RoundEvent, secagg_refusal};
use crate::store::{BilledRecord, CycleRecord, EdgeStore, MemberRecord, RoundPayload};

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
    /// Admitted nodes, as configured (the stored key rotations are
    /// applied to it when the service opens).
    pub admission: Admission,
    /// Fewest members billed together.
    pub min_members: usize,
    /// Advertise deadline after a context is recorded: members whose core
    /// has not advertised by then take no part in the cycle.
    pub deadline: Duration,
    /// How long the share and mask rounds wait for the members still
    /// missing before they close without them.
    pub round_time: Duration,
    /// Most members a cycle may have.
    pub max_members: usize,
    /// What is deleted once cycles are billed.
    pub retention: crate::config::Retention,
    /// Sustained requests per second per enrolled node.
    pub requests_per_sec: NonZeroU32,
    /// Burst above the sustained rate.
    pub request_burst: NonZeroU32,
}

/// One token bucket per admitted node (unknown nodes never get one, so the
/// map is bounded by the admission list).
type RateLimiter = governor::DefaultKeyedRateLimiter<NodeId>;

pub(crate) type Refusal = (ErrorCode, String);

/// The threads of the edge's background work (unmasking, billing, the
/// retention's deletions) run at the lowest CPU priority (nice 19 on
/// Linux; lowering needs no privilege): the edge thread, which answers
/// requests, comes first, and the background work takes the CPU left.
/// Without it a billing batch on every core made requests wait for a
/// time slice, and a request made during billing took several times its
/// usual time.
#[derive(Clone)]
pub(crate) struct Background(Option<Arc<rayon::ThreadPool>>);

impl Background {
    fn new() -> Background {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("background {i}"))
            .start_handler(|_| lower_priority())
            .build();
        match pool {
            Ok(p) => Background(Some(Arc::new(p))),
            Err(e) => {
                tracing::warn!(error = %e, "no thread pool for background work: it shares the global one");
                Background(None)
            }
        }
    }

    /// Runs `f` (and the parallel work it starts) on the background
    /// threads.
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// Lowers the calling thread to the lowest CPU priority.
fn lower_priority() {
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "cannot lower a background thread's priority");
    }
}

/// Why a cycle's unmasking (on its own thread) failed.
#[derive(Debug)]
pub enum UnmaskError {
    /// A needed secret is short, or a recovery does not verify.
    Refused(pb_secagg::Refusal),
    /// Reading the answers or inputs from the store failed.
    Store(EdgeError),
}

impl From<pb_secagg::Refusal> for UnmaskError {
    fn from(e: pb_secagg::Refusal) -> UnmaskError {
        UnmaskError::Refused(e)
    }
}

impl std::fmt::Display for UnmaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnmaskError::Refused(e) => e.fmt(f),
            UnmaskError::Store(e) => e.fmt(f),
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
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
    store: Arc<EdgeStore>,
    backend: Arc<dyn ComputeBackend>,
    config: ServiceConfig,
    replay: ReplayGuard,
    /// Joined members: their node and X25519 key only (public keys stay
    /// on disk and are read with their billing batch).
    members: BTreeMap<MemberId, (NodeId, IdentityPublic)>,
    /// Verified member lists by version (the last is current).
    rosters: BTreeMap<u64, SignedRoster>,
    /// Pages of a member list being posted.
    roster_pages: Vec<RosterPage>,
    cycles: BTreeMap<CycleId, CycleRecord>,
    open: BTreeMap<CycleId, OpenCycle>,
    billed: BTreeMap<CycleId, BilledRecord>,
    counters: Counters,
    rate: RateLimiter,
    /// The transport keys admitted now (shared with the handshakes).
    transport: TransportAdmission,
    /// The retention's deletions, on a thread of their own (in small
    /// transactions: the edge's writes never wait for a whole cycle's).
    pruning: Option<std::thread::JoinHandle<Result<crate::store::PruneReport, EdgeError>>>,
    /// A cycle was billed while a prune ran: prune again after it.
    prune_again: bool,
    /// Threads for the background work.
    background: Background,
}

impl Drop for Service {
    fn drop(&mut self) {
        // Its transactions are small; what it began is finished, so that a
        // stopped edge leaves the retention applied.
        if let Some(p) = self.pruning.take() {
            let _ = p.join();
        }
    }
}

/// Why a member's key rotation ([`Request::RotateKey`]) was refused;
/// nothing changed, and the old key still works.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationRefused {
    /// The new node id is not a valid Ed25519 key, or its transport key is
    /// a low-order point.
    #[error("the new node id {0} is not a usable key (generate one with pbill keygen)")]
    UnusableKey(String),
    /// The new key is the one in use.
    #[error("the new key is the key in use: rotate to a freshly generated key")]
    SameKey,
    /// The new key is admitted already, for a member or an operator.
    #[error(
        "node {0} is already admitted (for a member or as an operator): rotate to a key of its own"
    )]
    KeyInUse(String),
    /// The new key was rotated away from before.
    #[error("node {0} is a retired key (a member rotated away from it): rotate to a fresh key")]
    KeyRetired(String),
    /// The proof is not the new key's signature over this rotation.
    #[error(
        "the rotation proof does not verify: it must be the new key's signature over community \
         {community:?}, member {member}, the old and the new node id (pbill rotate makes it)"
    )]
    BadProof {
        /// The community.
        community: String,
        /// The member.
        member: MemberId,
    },
    /// The member is on the member list of a cycle whose rounds are not
    /// over.
    #[error(
        "{member} is part of {cycle}, whose rounds are still running: rotate between cycles, \
         once the cycle's aggregate is unmasked"
    )]
    InCycle {
        /// The member.
        member: MemberId,
        /// The cycle.
        cycle: CycleId,
    },
}

impl RotationRefused {
    /// The refusal's code on the wire: `NotReady` while a cycle runs (try
    /// again later), else `Rejected`.
    pub fn code(&self) -> ErrorCode {
        match self {
            RotationRefused::InCycle { .. } => ErrorCode::NotReady,
            _ => ErrorCode::Rejected,
        }
    }
}

impl From<RotationRefused> for Refusal {
    fn from(e: RotationRefused) -> Refusal {
        (e.code(), format!("key rotation refused: {e}"))
    }
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
    /// Opens the service on a store, replaying every open cycle's round
    /// events (billed cycles are answered from the store; a cycle whose
    /// billing began resumes after its last stored batch), then moves on
    /// what is due.
    pub fn open(
        store: EdgeStore,
        backend: Box<dyn ComputeBackend>,
        config: ServiceConfig,
    ) -> Result<Service, EdgeError> {
        let replay = ReplayGuard::from_counters(store.counters()?);
        // Admission = the configuration's enrolments overridden by the
        // stored rotations.
        let mut config = config;
        config.admission.apply_rotations(store.rotations()?)?;
        let transport = TransportAdmission::new(&config.admission)?;
        let rate = governor::RateLimiter::keyed(
            governor::Quota::per_second(config.requests_per_sec).allow_burst(config.request_burst),
        );
        let mut s = Service {
            rate,
            transport,
            store: Arc::new(store),
            backend: Arc::from(backend),
            config,
            replay,
            members: BTreeMap::new(),
            rosters: BTreeMap::new(),
            roster_pages: Vec::new(),
            cycles: BTreeMap::new(),
            open: BTreeMap::new(),
            billed: BTreeMap::new(),
            counters: Counters::default(),
            pruning: None,
            prune_again: false,
            background: Background::new(),
        };
        s.restore()?;
        s.tick();
        Ok(s)
    }

    fn restore(&mut self) -> Result<(), EdgeError> {
        for (id, node, przs) in self.store.member_index()? {
            self.members.insert(id, (node, przs));
        }
        for r in self.store.rosters()? {
            self.rosters.insert(r.roster.version, r);
        }
        for rec in self.store.cycles()? {
            let cycle = rec.context.cycle();
            if let Some(b) = self.store.billed(cycle)? {
                self.billed.insert(cycle, b);
                self.cycles.insert(cycle, rec);
                continue;
            }
            let open = self
                .open_cycle(&rec)
                .map_err(|(_, m)| EdgeError::Store(format!("restoring {cycle}: {m}")))?;
            self.open.insert(cycle, open);
            let store = self.store.clone();
            store
                .for_each_round_event(cycle, |event: RoundEvent| self.replay_event(cycle, event))?;
            if let Some(progress) = self.store.billing_progress(cycle)? {
                let aggregates = self.store.aggregates(cycle)?.ok_or_else(|| {
                    EdgeError::Store(format!(
                        "{cycle}: billing began but its aggregates are missing"
                    ))
                })?;
                let biller = self
                    .biller(&rec.context, cycle, &aggregates, progress.seed)
                    .map_err(|(_, m)| EdgeError::Store(format!("resuming {cycle}: {m}")))?;
                tracing::info!(%cycle, bills = progress.bills, of = progress.submissions, "billing resumes after its last stored batch");
                let billing = Billing::spawn(
                    self.store.clone(),
                    self.backend.clone(),
                    self.background.clone(),
                    cycle,
                    biller,
                    progress.last,
                );
                if let Some(open) = self.open.get_mut(&cycle) {
                    open.billing = Some(billing);
                }
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

    /// Rebuilds one stored round event into the cycle's state.
    fn replay_event(&mut self, cycle: CycleId, event: RoundEvent) -> Result<(), EdgeError> {
        let bad = |e: &dyn std::fmt::Display| {
            EdgeError::Store(format!(
                "restoring {cycle}: stored round event refused: {e}"
            ))
        };
        let open = self
            .open
            .get_mut(&cycle)
            .ok_or_else(|| bad(&"no such open cycle"))?;
        open.apply(event).map_err(|e| bad(&e))?;
        Ok(())
    }

    /// A cycle's SecAgg+ server on the member list it runs on.
    fn open_cycle(&mut self, rec: &CycleRecord) -> Result<OpenCycle, Refusal> {
        let roster = self.rosters.get(&rec.roster_version).ok_or_else(|| {
            refuse(
                ErrorCode::Internal,
                format!("member list version {} is missing", rec.roster_version),
            )
        })?;
        let ctx = &rec.context;
        let need = pb_units::limits::min_members(self.config.min_members);
        let server = Rounds::new(
            roster,
            &roster.operator,
            ctx.cycle().0,
            need,
            ctx.model().aggregates().len(),
            ctx.slots(),
        )
        .map_err(|e| refuse(ErrorCode::Rejected, e.to_string()))?;
        Ok(OpenCycle::new(server, rec.posted_at))
    }

    /// The billing of a cycle whose aggregates are unmasked: its survivors
    /// (exactly the members with a stored submission), the weights derived
    /// once.
    fn biller(
        &self,
        ctx: &CycleContext,
        cycle: CycleId,
        aggregates: &[Vec<i64>],
        seed: [u8; 32],
    ) -> Result<CycleBiller, Refusal> {
        let survivors = self
            .open
            .get(&cycle)
            .and_then(|o| o.server.survivor_set())
            .map(|s| s.members.clone())
            .ok_or_else(|| refuse(ErrorCode::Internal, format!("{cycle} has no survivor set")))?;
        let mut agg = Aggregates::default();
        for (&which, v) in ctx.model().aggregates().iter().zip(aggregates) {
            agg.insert(which, v.clone());
        }
        CycleBiller::new(ctx, &agg, survivors, self.config.min_members, seed)
            .map_err(billing_refusal)
    }

    /// After a failed write the in-memory state may be ahead of the store:
    /// rebuild it from the store, which is the truth.
    fn resync(&mut self) {
        tracing::error!("store write failed; reloading state from the store");
        self.members.clear();
        self.rosters.clear();
        self.cycles.clear();
        self.open.clear();
        self.billed.clear();
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
    /// a session). The admission is read at each handshake, so a key
    /// rotation takes effect at once; a retired key's handshake is refused
    /// with the rotation named.
    pub fn server_keys(&self) -> Result<pb_net::ServerKeys, EdgeError> {
        Ok(pb_net::ServerKeys::with_authorize(
            &self.config.key,
            self.transport.authorize(),
        ))
    }

    /// What the edge admits now: the configuration's enrolments with the
    /// members' key rotations applied.
    pub fn admission(&self) -> &Admission {
        &self.config.admission
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
        // A retired key is refused with its rotation named (an old session
        // of it may still be open: the envelope check closes that door).
        if let Some(r) = self.config.admission.retired(&sender) {
            return (counter, Err(refuse(ErrorCode::NotEnrolled, r.refusal())));
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
        if let Role::Member(me) = &role {
            self.check_not_revoked(me, sender)?;
        }
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
                            "{member}: the X25519 key is a low-order point (every shared secret with it would be zero); generate a proper key"
                        ),
                    ));
                }
                let record = MemberRecord {
                    node: *sender,
                    przs,
                    public_key,
                };
                if self.members.contains_key(&member) {
                    let existing = self
                        .store
                        .member(&member)
                        .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
                    return if existing.as_ref() == Some(&record) {
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
                if !record.public_key.0.is_well_formed() {
                    return Err(billing_refusal(BillingError::BadPublicKey(member)));
                }
                let stored = self.store.put_member(stamp, &member, &record);
                self.committed(stored)?;
                tracing::info!(%member, node = %sender, "member joined");
                self.members.insert(member, (record.node, record.przs));
                Ok(Response::Ok)
            }
            (_, Request::GetMembers) => Ok(Response::Members(MemberList {
                community: self.config.community.clone(),
                members: self.member_entries(),
            })),
            (Role::Operator, Request::PutRoster(page)) => self.put_roster(stamp, page),
            (_, Request::GetRoster { version, page }) => self.get_roster(version, page),
            (Role::Operator, Request::PutContext(context)) => self.put_context(stamp, context),
            (role, Request::GetCycle { cycle }) => {
                let rec = self.cycle_for(&role, cycle)?;
                let fingerprint = self
                    .rosters
                    .get(&rec.roster_version)
                    .map(|r| r.roster.fingerprint())
                    .unwrap_or_default();
                let (round, waiting) = match self.open.get(&cycle) {
                    Some(o) => {
                        let p = o.progress();
                        (p.round, p.waiting.len())
                    }
                    None => (Round::Done, 0),
                };
                Ok(Response::Cycle {
                    context: rec.context.clone(),
                    roster_version: rec.roster_version,
                    roster_fingerprint: fingerprint,
                    round,
                    waiting,
                    billed: self.billed.contains_key(&cycle),
                })
            }
            (Role::Member(me), Request::Advertise { cycle, bundle }) => {
                if bundle.bundle.member != me {
                    return Err(speaks_for(&me, &bundle.bundle.member));
                }
                if !self.members.contains_key(&me) {
                    return Err(refuse(
                        ErrorCode::NotReady,
                        format!("{me} has not joined yet: its core joins before it advertises"),
                    ));
                }
                self.round_message(
                    stamp,
                    &me,
                    cycle,
                    |r| r.check_advertise(&bundle),
                    RoundPayload::None,
                )
            }
            (Role::Member(me), Request::GetBundles { cycle }) => {
                let open = self.open_for(&me, cycle)?;
                open.wait_for(Round::Share)?;
                let bundles = open.server.bundles_for(&me).map_err(secagg_refusal)?;
                Ok(Response::Bundles(bundles))
            }
            (Role::Member(me), Request::Share { cycle, shares }) => self.round_message(
                stamp,
                &me,
                cycle,
                |r| r.check_share(&me, &shares),
                RoundPayload::Shares(&shares),
            ),
            (Role::Member(me), Request::GetShares { cycle }) => {
                let open = self.open_for(&me, cycle)?;
                open.wait_for(Round::Mask)?;
                if open.server.round() > Round::Mask && !open.server.has_input(&me) {
                    return Err(refuse(
                        ErrorCode::Rejected,
                        format!(
                            "the mask round of {cycle} is closed: {me} is out of this cycle (its data came too late)"
                        ),
                    ));
                }
                open.server.check_shares_for(&me).map_err(secagg_refusal)?;
                let partners = open.server.partners_of(&me);
                let shares = self
                    .store
                    .shares_to(cycle, &me, &partners)
                    .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
                Ok(Response::Shares(shares))
            }
            (Role::Member(me), Request::Submit { data, partners }) => {
                if data.member != me {
                    return Err(speaks_for(&me, &data.member));
                }
                let cycle = data.cycle;
                let input = MaskedInput {
                    member: me.clone(),
                    partners: partners.clone(),
                    vectors: data.masked.clone(),
                };
                // Both SecAgg+ and the billing must accept before anything
                // changes.
                let open = self.open_for(&me, cycle)?;
                let step = open
                    .server
                    .check_submit(&input)
                    .map_err(|e| late_or_refused(open, &me, cycle, e))?;
                if open.server.has_input(&me) {
                    return Err(refuse(
                        ErrorCode::AlreadyDone,
                        format!("{me} already submitted for {cycle}"),
                    ));
                }
                let ctx = &self.cycle_for(&Role::Member(me.clone()), cycle)?.context;
                check_data(&self.config.community, ctx, &data).map_err(billing_refusal)?;
                self.round_message(
                    stamp,
                    &me,
                    cycle,
                    |_| Ok(step),
                    RoundPayload::Submission(&data),
                )
            }
            (Role::Member(me), Request::GetSurvivors { cycle }) => {
                let open = self.open_for(&me, cycle)?;
                open.wait_for(Round::Confirm)?;
                let set = open.server.survivor_bits().cloned().ok_or_else(|| {
                    refuse(ErrorCode::NotReady, "no survivor set yet".to_string())
                })?;
                Ok(Response::Survivors(set))
            }
            (
                Role::Member(me),
                Request::Confirm {
                    cycle,
                    confirmation,
                },
            ) => {
                if confirmation.member != me {
                    return Err(speaks_for(&me, &confirmation.member));
                }
                self.round_message(
                    stamp,
                    &me,
                    cycle,
                    |r| r.check_confirm(&confirmation),
                    RoundPayload::None,
                )
            }
            (Role::Member(me), Request::GetConfirmations { cycle }) => {
                let open = self.open_for(&me, cycle)?;
                open.wait_for(Round::Confirm)?;
                Ok(Response::Confirmations(open.server.confirmations_for(&me)))
            }
            (Role::Member(me), Request::Reveal { cycle, reveal }) => {
                if reveal.member != me {
                    return Err(speaks_for(&me, &reveal.member));
                }
                self.round_message(
                    stamp,
                    &me,
                    cycle,
                    |r| r.check_reveal(&reveal),
                    RoundPayload::Answers(&reveal),
                )
            }
            (Role::Member(me), Request::GetBill { cycle }) => self.get_bill(&me, cycle),
            (Role::Operator, Request::Status { cycle }) => self.status(cycle).map(Response::Status),
            (Role::Member(me), Request::RotateKey { new_node, proof }) => {
                self.rotate_key(stamp, &me, new_node, &proof)?;
                Ok(Response::Ok)
            }
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

    /// Once a member list exists, a member must be on the current one
    /// with this node as its identity: a member the operator removed
    /// (revoked) is refused everything.
    fn check_not_revoked(&self, me: &MemberId, sender: &NodeId) -> Result<(), Refusal> {
        let Some((_, current)) = self.rosters.last_key_value() else {
            return Ok(());
        };
        match current.roster.entry(me) {
            Some(e) if e.identity == sender.0 => Ok(()),
            // Listed with a key the member rotated away from (the sender,
            // admitted for it, is where its rotations lead): the member is
            // not revoked; its cycles wait for a list with the new key
            // (`put_context` refuses a list naming a retired key).
            Some(e)
                if self
                    .config
                    .admission
                    .retired(&NodeId(e.identity))
                    .is_some_and(|r| &r.member == me) =>
            {
                Ok(())
            }
            Some(_) => Err(refuse(
                ErrorCode::NotEnrolled,
                format!(
                    "{me} is listed with another key in member list version {}: this node's key was replaced",
                    current.roster.version
                ),
            )),
            None => Err(refuse(
                ErrorCode::NotEnrolled,
                format!(
                    "{me} is not on member list version {} (revoked by the operator, or not listed yet: the operator posts a new version that lists it)",
                    current.roster.version
                ),
            )),
        }
    }

    fn member_entries(&self) -> Vec<MemberEntry> {
        self.members
            .iter()
            .map(|(id, (node, przs))| MemberEntry {
                member: id.clone(),
                node: *node,
                przs: *przs,
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
            let listed = self
                .rosters
                .get(&rec.roster_version)
                .is_some_and(|r| r.roster.entry(me).is_some());
            if !listed {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "{me} is not a member of {cycle} (not on its member list, version {})",
                        rec.roster_version
                    ),
                ));
            }
        }
        Ok(rec)
    }

    /// The open cycle `me` takes part in, still in its rounds: once its
    /// aggregate is unmasked (it is being billed, or billed) a round
    /// message is answered `AlreadyDone` (the member's part is over; its
    /// bill comes with `GetBill`).
    fn open_for(&self, me: &MemberId, cycle: CycleId) -> Result<&OpenCycle, Refusal> {
        self.cycle_for(&Role::Member(me.clone()), cycle)?;
        let open = self
            .open
            .get(&cycle)
            .ok_or_else(|| refuse(ErrorCode::AlreadyDone, format!("{cycle} is already billed")))?;
        if open.billing.is_some() || open.server.round() == Round::Done {
            return Err(refuse(
                ErrorCode::AlreadyDone,
                format!("the aggregate of {cycle} is unmasked: it is being billed"),
            ));
        }
        Ok(open)
    }

    /// A member's round message: `check` (the cycle's rounds' check of
    /// it) refuses it, changing nothing, or gives its step, which is
    /// stored with the request's counter and the message's payload in one
    /// transaction, then applied. The same message again (no step) stores
    /// only the counter.
    fn round_message(
        &mut self,
        stamp: (&NodeId, u64),
        me: &MemberId,
        cycle: CycleId,
        check: impl FnOnce(&Rounds) -> Result<Option<Step>, pb_secagg::Refusal>,
        payload: RoundPayload<'_>,
    ) -> Result<Response, Refusal> {
        let open = self.open_for(me, cycle)?;
        let step = match check(&open.server) {
            Ok(step) => step,
            Err(e) => return Err(late_or_refused(open, me, cycle, e)),
        };
        let Some(step) = step else {
            let stored = self.store.put_counter(stamp.0, stamp.1);
            self.committed(stored)?;
            return Ok(Response::Ok);
        };
        let seq = open.events;
        let event = RoundEvent::Step(step);
        let name = event.name();
        let stored = self
            .store
            .put_round_event(Some(stamp), cycle, seq, &event, payload);
        self.committed(stored)?;
        let applied = match self.open.get_mut(&cycle) {
            Some(open) => open.apply(event),
            None => Err(pb_secagg::Refusal::NoEntropy),
        };
        if let Err(e) = applied {
            // Checked a moment ago on the same state: the store and memory
            // disagree. The store is the truth.
            tracing::error!(%cycle, member = %me, error = %e, "a checked round message did not apply");
            self.resync();
            return Err(refuse(ErrorCode::Internal, e.to_string()));
        }
        tracing::debug!(%cycle, member = %me, event = name, "round message accepted");
        Ok(Response::Ok)
    }

    /// A failed commit leaves memory ahead of the store: rebuild memory
    /// from the store (the truth) and refuse the request.
    fn committed(&mut self, stored: Result<(), EdgeError>) -> Result<(), Refusal> {
        stored.map_err(|e| {
            self.resync();
            refuse(ErrorCode::Internal, e.to_string())
        })
    }

    fn put_roster(&mut self, stamp: (&NodeId, u64), page: RosterPage) -> Result<Response, Refusal> {
        if page.page == 0 {
            self.roster_pages.clear();
        }
        if page.page as usize != self.roster_pages.len() {
            let expected = self.roster_pages.len();
            self.roster_pages.clear();
            return Err(refuse(
                ErrorCode::Rejected,
                format!(
                    "member list page {} arrived, page {expected} was expected: send the list again from page 0",
                    page.page
                ),
            ));
        }
        let last = page.page + 1 >= page.pages;
        self.roster_pages.push(page);
        if !last {
            return Ok(Response::Ok);
        }
        let pages = std::mem::take(&mut self.roster_pages);
        let signed = RosterPage::join(&pages).ok_or_else(|| {
            refuse(
                ErrorCode::Rejected,
                "the member list's pages do not fit together".to_string(),
            )
        })?;
        let need = pb_units::limits::min_members(self.config.min_members);
        let roster = signed
            .verify(&stamp.0.0, need)
            .map_err(|e| refuse(ErrorCode::Rejected, format!("member list refused: {e}")))?;
        if roster.community != self.config.community.0 {
            return Err(refuse(
                ErrorCode::Misdirected,
                format!(
                    "the member list is for community {:?}, this edge serves {:?}",
                    roster.community, self.config.community.0
                ),
            ));
        }
        for e in &roster.members {
            if let Some(r) = self.config.admission.retired(&NodeId(e.identity)) {
                return Err(refuse(
                    ErrorCode::Rejected,
                    format!(
                        "member list refused: {} is listed with node {}, which {} rotated to node {} at {} (unix seconds): list the new node (update the member's node in edge.toml) and sign again",
                        e.member,
                        r.from.to_hex(),
                        r.member,
                        r.to.to_hex(),
                        r.at
                    ),
                ));
            }
            let enrolled = self.config.admission.role(&NodeId(e.identity));
            if enrolled != Some(Role::Member(e.member.clone())) {
                return Err(refuse(
                    ErrorCode::Rejected,
                    format!(
                        "member list refused: {} is listed with node {} which this edge does not admit for it",
                        e.member,
                        NodeId(e.identity).to_hex()
                    ),
                ));
            }
        }
        let version = roster.version;
        if let Some((&current, existing)) = self.rosters.last_key_value() {
            if version == current && *existing == signed {
                return Ok(Response::Ok);
            }
            if version <= current {
                return Err(refuse(
                    ErrorCode::AlreadyDone,
                    format!(
                        "member list version {version} refused: version {current} is already in use; number the new list {}",
                        current + 1
                    ),
                ));
            }
        }
        let stored = self.store.put_roster(stamp, &signed);
        self.committed(stored)?;
        tracing::info!(
            version,
            members = signed.roster.members.len(),
            fingerprint = %pb_secagg::roster::show_fingerprint(&signed.roster.fingerprint()),
            "member list recorded"
        );
        self.rosters.insert(version, signed);
        Ok(Response::Ok)
    }

    /// A member's key rotation, asked by its current key (`stamp.0`, the
    /// envelope's signer, admitted for `me` and not revoked): checks the
    /// new key and its proof and that no cycle of the member is in its
    /// rounds, stores the rotation with the request's counter, then admits
    /// the new key and retires the old one, in the envelope checks and the
    /// transport's handshakes alike.
    fn rotate_key(
        &mut self,
        stamp: (&NodeId, u64),
        me: &MemberId,
        new_node: NodeId,
        proof: &[u8],
    ) -> Result<(), Refusal> {
        let old = *stamp.0;
        let usable = new_node
            .transport_public()
            .is_some_and(|k| x25519_key_is_usable(&k));
        if !usable {
            return Err(RotationRefused::UnusableKey(new_node.to_hex()).into());
        }
        if new_node == old {
            return Err(RotationRefused::SameKey.into());
        }
        if self.config.admission.retired(&new_node).is_some() {
            return Err(RotationRefused::KeyRetired(new_node.to_hex()).into());
        }
        if self.config.admission.is_known(&new_node) {
            return Err(RotationRefused::KeyInUse(new_node.to_hex()).into());
        }
        if !verify_rotation(&self.config.community, me, &old, &new_node, proof) {
            return Err(RotationRefused::BadProof {
                community: self.config.community.0.clone(),
                member: me.clone(),
            }
            .into());
        }
        let busy = self.open.iter().find(|(cycle, open)| {
            let listed = self
                .cycles
                .get(cycle)
                .and_then(|rec| self.rosters.get(&rec.roster_version))
                .is_some_and(|r| r.roster.entry(me).is_some());
            listed && open.billing.is_none() && open.server.round() != Round::Done
        });
        if let Some((&cycle, _)) = busy {
            return Err(RotationRefused::InCycle {
                member: me.clone(),
                cycle,
            }
            .into());
        }
        let rotation = Rotation {
            member: me.clone(),
            from: old,
            to: new_node,
            at: now_secs(),
        };
        let stored = self.store.put_rotation(stamp, &rotation);
        self.committed(stored)?;
        if let Err(e) = self.transport.rotate(&rotation) {
            // Checked above (the new key has a transport key): unreachable.
            tracing::error!(error = %e, "rotation not applied to the transport");
        }
        if let Some(joined) = self.members.get_mut(me) {
            joined.0 = new_node;
        }
        tracing::info!(member = %me, old = %old.to_hex(), new = %new_node.to_hex(), "member rotated its key; the old key is retired");
        self.config.admission.rotate(rotation);
        Ok(())
    }

    fn get_roster(&self, version: Option<u64>, page: u32) -> Result<Response, Refusal> {
        let signed = match version {
            Some(v) => self.rosters.get(&v),
            None => self.rosters.last_key_value().map(|(_, r)| r),
        }
        .ok_or_else(|| {
            refuse(
                ErrorCode::NotReady,
                match version {
                    Some(v) => format!("no member list of version {v}"),
                    None => "the operator has not posted a member list yet".to_string(),
                },
            )
        })?;
        RosterPage::split(signed)
            .into_iter()
            .nth(page as usize)
            .map(Response::Roster)
            .ok_or_else(|| refuse(ErrorCode::Rejected, format!("no page {page}")))
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
        let Some((&version, roster)) = self.rosters.last_key_value() else {
            return Err(refuse(
                ErrorCode::Rejected,
                "no member list yet: the operator signs and posts one first (`pbill roster`)",
            ));
        };
        if let Some((e, r)) = roster.roster.members.iter().find_map(|e| {
            self.config
                .admission
                .retired(&NodeId(e.identity))
                .map(|r| (e, r))
        }) {
            return Err(refuse(
                ErrorCode::Rejected,
                format!(
                    "member list version {version} lists {} with node {}, which it rotated to node {}: post a new version listing the new key first (pbill roster)",
                    e.member,
                    r.from.to_hex(),
                    r.to.to_hex()
                ),
            ));
        }
        let need = pb_units::limits::min_members(self.config.min_members);
        let joined = roster
            .roster
            .members
            .iter()
            .filter(|e| self.members.contains_key(&e.member))
            .count();
        if joined < need {
            return Err(refuse(
                ErrorCode::Rejected,
                format!(
                    "only {joined} members of member list version {version} have joined; a cycle needs at least {need}"
                ),
            ));
        }
        let rec = CycleRecord {
            context,
            roster_version: version,
            posted_at: now_secs(),
        };
        if roster.roster.members.len() > self.config.max_members {
            return Err(refuse(
                ErrorCode::Rejected,
                format!(
                    "member list version {version} has {} members; this edge is configured for at most {} (max_members)",
                    roster.roster.members.len(),
                    self.config.max_members
                ),
            ));
        }
        let open = self.open_cycle(&rec)?;
        let stored = self.store.put_cycle(stamp, &rec);
        self.committed(stored)?;
        tracing::info!(%cycle, members = open.server.roster().members.len(), roster = version, slots = rec.context.slots(), model = %rec.context.model(), "cycle context recorded");
        self.open.insert(cycle, open);
        self.cycles.insert(cycle, rec);
        Ok(Response::Ok)
    }

    fn get_bill(&mut self, me: &MemberId, cycle: CycleId) -> Result<Response, Refusal> {
        self.cycle_for(&Role::Member(me.clone()), cycle)?;
        if self.billed.contains_key(&cycle) {
            let internal = |e: EdgeError| refuse(ErrorCode::Internal, e.to_string());
            let stored = self.store.bill(cycle, me).map_err(internal)?;
            if stored.is_none() {
                if let Some(at) = self.store.delivered(cycle, me).map_err(internal)? {
                    return Err(refuse(
                        ErrorCode::Rejected,
                        format!(
                            "{me}'s bill of {cycle} was delivered at {at} (unix seconds) and deleted after the retention period (retention.keep_bills_secs_after_delivery)"
                        ),
                    ));
                }
            }
            let bill = stored.ok_or_else(|| {
                    refuse(
                        ErrorCode::Rejected,
                        format!(
                            "{me} did not take part in {cycle} (no masked data before its mask round closed): it has no bill"
                        ),
                    )
                })?;
            if let Ok(true) = self.store.mark_delivered(cycle, me, now_secs()) {
                tracing::debug!(%cycle, member = %me, "bill delivered");
            }
            return Ok(Response::Bill(bill));
        }
        let Some(open) = self.open.get(&cycle) else {
            return Err(refuse(
                ErrorCode::Internal,
                format!("{cycle} is neither open nor billed"),
            ));
        };
        if let Some(set) = open.server.survivor_set() {
            if !set.contains(me) {
                return Err(refuse(
                    ErrorCode::Rejected,
                    format!(
                        "{me} is not among the survivors of {cycle} (no masked data before its mask round closed): it has no bill"
                    ),
                ));
            }
        }
        let p = open.progress();
        Ok(Response::Pending {
            round: p.round,
            waiting: p.waiting.len(),
        })
    }

    /// Moves every open cycle on ([`Service::advance`]) and finishes the
    /// cycles whose billing worker is done. The transport loop calls it
    /// between requests; billing itself runs on the workers, so requests
    /// are served while a large cycle is billed.
    pub fn tick(&mut self) {
        self.advance();
        self.collect_billing();
        self.collect_prune();
    }

    /// Applies the retention on a thread of its own (once one is running,
    /// again after it).
    fn start_prune(&mut self) {
        if self.pruning.is_some() {
            self.prune_again = true;
            return;
        }
        let store = self.store.clone();
        let retention = self.config.retention.clone();
        let started = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || {
                lower_priority();
                store.prune(now_secs(), &retention)
            });
        match started {
            Ok(handle) => self.pruning = Some(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start the retention thread"),
        }
    }

    /// Reports a finished prune (and starts the next one if asked).
    fn collect_prune(&mut self) {
        if !self.pruning.as_ref().is_some_and(|p| p.is_finished()) {
            return;
        }
        let Some(handle) = self.pruning.take() else {
            return;
        };
        match handle.join() {
            Ok(Ok(r)) if !r.cycles.is_empty() || r.bills > 0 || !r.round_tables.is_empty() => {
                tracing::info!(
                    cycles = r.cycles.len(),
                    submissions = r.submissions,
                    bills = r.bills,
                    round_tables = r.round_tables.len(),
                    "old data deleted (retention)"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "retention could not delete old data"),
            Err(_) => tracing::warn!("the retention thread failed"),
        }
        if std::mem::take(&mut self.prune_again) {
            self.start_prune();
        }
    }

    /// Closes rounds whose members are all in or whose time is up, and
    /// begins the billing of every cycle whose aggregate can be unmasked.
    pub fn advance(&mut self) {
        let now = now_secs();
        let cycles: Vec<CycleId> = self.open.keys().copied().collect();
        for cycle in cycles {
            let deadline = self.config.deadline.as_secs();
            let round_time = self.config.round_time.as_secs();
            let Some(open) = self.open.get_mut(&cycle) else {
                continue;
            };
            if open.stuck.is_some() {
                continue;
            }
            open.refresh();
            match open.due(now, deadline, round_time) {
                Ok(None) => {}
                Ok(Some(event)) => {
                    let seq = open.events;
                    match open.apply(event.clone()) {
                        Ok(()) => {
                            if let Err(e) = self.store.put_round_event(
                                None,
                                cycle,
                                seq,
                                &event,
                                RoundPayload::None,
                            ) {
                                tracing::error!(error = %e, "cannot store a round's closing");
                                self.resync();
                                return;
                            }
                            if let Some(open) = self.open.get(&cycle) {
                                let p = open.progress();
                                tracing::info!(%cycle, round = ?p.round, waiting = p.waiting.len(), "round closed");
                            }
                        }
                        Err(e) => {
                            tracing::error!(%cycle, error = %e, "the cycle cannot go on");
                            open.stuck = Some(e.to_string());
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(%cycle, error = %e, "the cycle cannot go on");
                    open.stuck = Some(e.to_string());
                }
            }
            if self.open.get_mut(&cycle).is_some_and(|o| {
                o.refresh();
                o.billing.is_none() && o.unmaskable()
            }) {
                self.start_billing(cycle);
            }
        }
    }

    /// Unmasks a cycle's aggregates and begins its billing: the seed and
    /// the aggregates are stored first, so that a restarted edge resumes
    /// with the same ones and computes no bill twice into different values.
    fn start_billing(&mut self, cycle: CycleId) {
        let Some(ctx) = self.cycles.get(&cycle).map(|r| r.context.clone()) else {
            return;
        };
        let Some(open) = self.open.get_mut(&cycle) else {
            return;
        };
        // The recoveries and the sum run on a thread of their own (an
        // `O(n k)` pass over the shares): the edge goes on answering.
        let sums = match open.unmasking.take() {
            None => {
                match open.server.unmask_job() {
                    Ok(job) => {
                        tracing::info!(%cycle, secrets = job.needed().len(), survivors = job.survivors().len(), "unmasking the aggregate");
                        let store = self.store.clone();
                        let background = self.background.clone();
                        open.unmasking = Some(std::thread::spawn(move || {
                            lower_priority();
                            background.install(|| {
                                job.run(
                                    |batch| {
                                        store
                                            .answers_about(cycle, batch)
                                            .map_err(UnmaskError::Store)
                                    },
                                    |batch| {
                                        store
                                            .masked_inputs(cycle, batch)
                                            .map_err(UnmaskError::Store)
                                    },
                                )
                            })
                        }));
                    }
                    Err(pb_secagg::Refusal::NotEnoughShares { waiting }) => {
                        tracing::debug!(%cycle, waiting = waiting.len(), "not enough shares yet");
                    }
                    Err(e) => {
                        tracing::error!(%cycle, error = %e, "the aggregate cannot be unmasked");
                        open.stuck = Some(e.to_string());
                    }
                }
                return;
            }
            Some(job) if !job.is_finished() => {
                open.unmasking = Some(job);
                return;
            }
            Some(job) => match job.join() {
                Ok(Ok(s)) => {
                    open.server.finish_unmask();
                    s
                }
                Ok(Err(UnmaskError::Refused(pb_secagg::Refusal::NotEnoughShares { waiting }))) => {
                    tracing::debug!(%cycle, short = waiting.len(), "not enough shares yet");
                    return;
                }
                Ok(Err(UnmaskError::Store(e))) => {
                    tracing::error!(%cycle, error = %e, "the aggregate cannot be unmasked: store error; reloading");
                    self.resync();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(%cycle, error = %e, "the aggregate cannot be unmasked");
                    open.stuck = Some(e.to_string());
                    return;
                }
                Err(_) => {
                    tracing::error!(%cycle, "the unmasking thread failed");
                    open.stuck = Some("the unmasking failed".into());
                    return;
                }
            },
        };
        let aggregates: Vec<Vec<i64>> = sums
            .into_iter()
            .map(|sum| sum.into_iter().map(pb_przs::decode).collect())
            .collect();
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let progress = match self
            .store
            .begin_billing(cycle, seed, &aggregates, now_secs())
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%cycle, error = %e, "cannot record the start of billing");
                self.resync();
                return;
            }
        };
        let biller = match self.biller(&ctx, cycle, &aggregates, progress.seed) {
            Ok(b) => b,
            Err((_, m)) => {
                tracing::error!(%cycle, error = %m, "cycle cannot be billed");
                if let Some(open) = self.open.get_mut(&cycle) {
                    open.stuck = Some(m);
                }
                return;
            }
        };
        tracing::info!(%cycle, households = biller.members().len(), "aggregate unmasked; billing begins");
        let billing = Billing::spawn(
            self.store.clone(),
            self.backend.clone(),
            self.background.clone(),
            cycle,
            biller,
            progress.last,
        );
        if let Some(open) = self.open.get_mut(&cycle) {
            open.billing = Some(billing);
        }
    }

    /// Finishes the cycles whose billing worker has stored its last batch;
    /// a worker stopped by a store error is restarted from the store (the
    /// state reloads, and billing resumes after the last stored batch), one
    /// stopped by a billing error leaves its cycle stuck.
    fn collect_billing(&mut self) {
        let mut done = Vec::new();
        let mut reload = false;
        for (cycle, open) in &mut self.open {
            if open.stuck.is_some() {
                continue;
            }
            let Some(billing) = open.billing.as_mut() else {
                continue;
            };
            match billing.poll() {
                None => {}
                Some(Ok(())) => done.push(*cycle),
                Some(Err(WorkerStop::Store(e))) => {
                    tracing::error!(%cycle, error = %e, "billing stopped on a store error");
                    reload = true;
                }
                Some(Err(WorkerStop::Billing(e))) => {
                    tracing::error!(%cycle, error = %e, "cycle cannot be billed");
                    open.stuck = Some(e);
                }
                Some(Err(WorkerStop::Cancelled)) => {}
            }
        }
        for cycle in done {
            self.finish_billing(cycle);
        }
        if reload {
            self.resync();
        }
    }

    fn finish_billing(&mut self, cycle: CycleId) {
        let Some(billing) = self.open.get_mut(&cycle).and_then(|o| o.billing.take()) else {
            return;
        };
        let record = BilledRecord {
            at: now_secs(),
            millis: billing.started.elapsed().as_millis() as u64,
            bills: billing.members,
        };
        if let Err(e) = self.store.finish_billing(cycle, record) {
            tracing::error!(%cycle, error = %e, "cannot finish billing");
            if let Some(open) = self.open.get_mut(&cycle) {
                open.stuck = Some(e.to_string());
            }
            return;
        }
        self.open.remove(&cycle);
        self.billed.insert(cycle, record);
        self.counters.billed += 1;
        tracing::info!(
            cycle = cycle.0,
            bills = record.bills,
            millis = record.millis,
            backend = self.backend.name(),
            "cycle billed"
        );
        self.start_prune();
    }
}

/// Why a billing worker stopped before its last batch.
#[derive(Debug)]
enum WorkerStop {
    /// Reading a batch or storing its bills failed.
    Store(String),
    /// The batch could not be billed (the cycle is stuck).
    Billing(String),
    /// The edge stopped it (shutting down or reloading).
    Cancelled,
}

/// A cycle's billing on a worker thread of its own: it reads the cycle
/// from the store in batches of the backend's preferred size (each
/// submission with its member's stored public key), bills each batch and
/// commits its bills with the progress marker, so that the edge thread
/// goes on answering requests (it only waits for the store's write lock
/// while a batch commits) and a restarted edge resumes after the last
/// committed batch. Dropping it stops the worker after its current batch
/// and waits for it.
pub struct Billing {
    /// Households billed in all.
    members: usize,
    /// When this process began or resumed it.
    started: Instant,
    cancel: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<Result<(), WorkerStop>>>,
    /// The worker thread could not be started (reported once).
    start_failed: bool,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("members", &self.members)
            .field("running", &self.worker.is_some())
            .finish()
    }
}

impl Billing {
    /// Starts billing `cycle` after the member `after` (the last one whose
    /// bill is stored).
    fn spawn(
        store: Arc<EdgeStore>,
        backend: Arc<dyn ComputeBackend>,
        background: Background,
        cycle: CycleId,
        biller: CycleBiller,
        after: Option<MemberId>,
    ) -> Billing {
        let cancel = Arc::new(AtomicBool::new(false));
        let members = biller.members().len();
        let stop = cancel.clone();
        let work = move || -> Result<(), WorkerStop> {
            lower_priority();
            let batch = backend.preferred_batch().max(1);
            // Each batch's bills commit on a second thread while the next
            // batch is read and billed: a commit of 64 bills (8 MB and an
            // fsync) is tens of milliseconds of waiting for the disk, not
            // of CPU. At most one batch waits to commit; commits keep
            // their order, so the progress marker stays that of the last
            // committed batch.
            let (to_commit, pending) = std::sync::mpsc::sync_channel::<Vec<HiddenBill>>(1);
            std::thread::scope(|scope| {
                let committer = scope.spawn(|| -> Result<(), WorkerStop> {
                    lower_priority();
                    for bills in pending {
                        store
                            .put_bills_batch(cycle, &bills)
                            .map_err(|e| WorkerStop::Store(e.to_string()))?;
                    }
                    Ok(())
                });
                let produced = (|| -> Result<(), WorkerStop> {
                    let mut after = after;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Err(WorkerStop::Cancelled);
                        }
                        let rows = store
                            .billing_batch(cycle, after.as_ref(), batch)
                            .map_err(|e| WorkerStop::Store(e.to_string()))?;
                        let Some((last, _)) = rows.last() else {
                            return Ok(());
                        };
                        after = Some(last.member.clone());
                        let bills = background
                            .install(|| biller.bill_batch(backend.as_ref(), &rows))
                            .map_err(|e| WorkerStop::Billing(e.to_string()))?;
                        drop(rows);
                        if to_commit.send(bills).is_err() {
                            // The committer stopped: its error is the one.
                            return Ok(());
                        }
                    }
                })();
                drop(to_commit);
                let committed = committer.join().unwrap_or_else(|_| {
                    Err(WorkerStop::Billing("the billing committer failed".into()))
                });
                committed.and(produced)
            })
        };
        let worker = std::thread::Builder::new()
            .name(format!("billing {}", cycle.0))
            .spawn(work);
        let (worker, start_failed) = match worker {
            Ok(handle) => (Some(handle), false),
            Err(e) => {
                tracing::error!(%cycle, error = %e, "cannot start the billing worker");
                (None, true)
            }
        };
        Billing {
            members,
            started: Instant::now(),
            cancel,
            worker,
            start_failed,
        }
    }

    /// The worker's outcome once it has ended (then joined), else `None`.
    fn poll(&mut self) -> Option<Result<(), WorkerStop>> {
        if std::mem::take(&mut self.start_failed) {
            return Some(Err(WorkerStop::Store(
                "the billing worker could not start".into(),
            )));
        }
        if !self.worker.as_ref()?.is_finished() {
            return None;
        }
        let handle = self.worker.take()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|_| Err(WorkerStop::Billing("the billing worker failed".into()))),
        )
    }
}

impl Drop for Billing {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(handle) = self.worker.take() {
            let _ = handle.join();
        }
    }
}

/// Checks a submission against its cycle as the billing will (community,
/// model, slots, shape), before anything is stored.
fn check_data(
    community: &CommunityId,
    ctx: &CycleContext,
    data: &HiddenData,
) -> Result<(), BillingError> {
    let cycle = ctx.cycle();
    if &data.community != community {
        return Err(BillingError::OtherCommunity {
            expected: community.0.clone(),
            found: data.community.0.clone(),
        });
    }
    if data.model != ctx.model() {
        return Err(BillingError::ContextMismatch {
            cycle,
            what: "billing model",
        });
    }
    if data.slots.get() != ctx.slots() {
        return Err(BillingError::ContextMismatch {
            cycle,
            what: "number of slots",
        });
    }
    data.check_shape().map_err(BillingError::Malformed)
}

/// A refused round message: `AlreadyDone` when it came after its round
/// closed and the member's message of that round is in (a core that
/// restarted before it recorded the answer resends it), else the refusal.
fn late_or_refused(
    open: &OpenCycle,
    me: &MemberId,
    cycle: CycleId,
    e: pb_secagg::Refusal,
) -> Refusal {
    if let pb_secagg::Refusal::WrongRound { expected, actual } = &e {
        if actual > expected && open.server.has_message(*expected, me) {
            return refuse(
                ErrorCode::AlreadyDone,
                format!(
                    "{me}'s {} message of {cycle} is already in",
                    expected.name()
                ),
            );
        }
    }
    secagg_refusal(e)
}

fn speaks_for(me: &MemberId, other: &MemberId) -> Refusal {
    refuse(
        ErrorCode::Forbidden,
        format!("this node speaks for {me}, not {other}"),
    )
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Join { .. } => "Join",
        Request::GetMembers => "GetMembers",
        Request::PutContext(_) => "PutContext",
        Request::GetCycle { .. } => "GetCycle",
        Request::Submit { .. } => "Submit",
        Request::GetBill { .. } => "GetBill",
        Request::PutRoster(_) => "PutRoster",
        Request::GetRoster { .. } => "GetRoster",
        Request::Advertise { .. } => "Advertise",
        Request::GetBundles { .. } => "GetBundles",
        Request::Share { .. } => "Share",
        Request::GetShares { .. } => "GetShares",
        Request::GetSurvivors { .. } => "GetSurvivors",
        Request::Confirm { .. } => "Confirm",
        Request::GetConfirmations { .. } => "GetConfirmations",
        Request::Reveal { .. } => "Reveal",
        Request::Status { .. } => "Status",
        Request::RotateKey { .. } => "RotateKey",
    }
}
