//! The running core: the household API thread and the sync thread that
//! talks to the edge, sharing the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use pb_hiding::HidingContext;
use pb_net::{Connection, EdgeClient, Exchange, NetError, Server};
use pb_protocol::{ErrorCode, NodeId, NodeKey, Request, Response, RosterPage};
use pb_secagg::{Client, Round, SignedRoster};
use pb_units::CycleId;
use tokio::runtime::Handle;

use crate::CoreError;
use crate::api::{
    Accepted, ApiRequest, ApiResponse, BillReply, CycleReport, StatusReply, SubmitRequest,
};
use crate::config::{Checked, CoreConfig};
use crate::store::{CoreStore, CycleEntry, CycleState, Secrets};

/// A refusal to the household.
type Refusal = ApiResponse;

fn internal(e: impl std::fmt::Display) -> Refusal {
    ApiResponse::error("internal", e.to_string())
}

/// Whether an edge error code is final for a cycle (anything else is
/// retried).
fn is_final(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Forbidden | ErrorCode::Rejected | ErrorCode::UnknownCycle
    )
}

/// The state shared by the core's threads.
pub struct Node {
    store: CoreStore,
    checked: Checked,
    edge_endpoint: String,
    node: NodeId,
    secrets: Secrets,
    edge: Mutex<EdgeClient>,
    rt: Handle,
    hiding: Mutex<BTreeMap<CycleId, Arc<HidingContext>>>,
    /// The node key again, for SecAgg+ signatures (the envelope's copy
    /// lives in the edge client).
    identity: NodeKey,
    passphrase: Option<crate::sealed::Passphrase>,
    roster: Mutex<Option<Arc<SignedRoster>>>,
    silent_after_mask: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member", &self.checked.member)
            .field("node", &self.node)
            .finish()
    }
}

impl Node {
    /// Opens the store (generating the household's keys on first start).
    pub fn open(rt: Handle, config: &CoreConfig) -> Result<Node, CoreError> {
        let checked = config.check()?;
        let key = NodeKey::read_file(&config.key_file)?;
        let store = CoreStore::open(&config.data_dir)?;
        let passphrase = config
            .secrets_passphrase_file
            .as_deref()
            .map(crate::sealed::Passphrase::read_file)
            .transpose()?;
        let secrets = store.secrets_with(passphrase.as_ref())?;
        let node = key.id();
        let identity = NodeKey::read_file(&config.key_file)?;
        let roster = store.roster()?.map(Arc::new);
        let edge = EdgeClient::new(
            Connection::new(config.edge.clone(), checked.timeout),
            key,
            pb_protocol::Audience {
                edge: checked.edge_node,
                community: checked.community.clone(),
            },
        );
        Ok(Node {
            store,
            checked,
            edge_endpoint: config.edge.clone(),
            node,
            secrets,
            edge: Mutex::new(edge),
            rt,
            hiding: Mutex::new(BTreeMap::new()),
            identity,
            passphrase,
            roster: Mutex::new(roster),
            silent_after_mask: config.drill_silent_after_mask,
        })
    }

    /// One request to the edge. A connection broken by an edge restart
    /// fails the first request on it, so a transport failure is retried
    /// once on a fresh connection (a retried request is either new to the
    /// edge or refused as already done: every request is idempotent).
    fn call(&self, request: &Request) -> Result<Exchange, NetError> {
        let mut edge = self.edge.lock().unwrap_or_else(|p| p.into_inner());
        match self.rt.block_on(edge.call(request)) {
            Err(NetError::Transport { .. } | NetError::Connect { .. }) => {
                self.rt.block_on(edge.call(request))
            }
            other => other,
        }
    }

    /// Answers one household request (JSON in, JSON out).
    pub fn handle_api(&self, bytes: &[u8], oversized: Option<usize>) -> Vec<u8> {
        let response = match oversized {
            Some(n) => {
                ApiResponse::error("bad_request", format!("request of {n} bytes is too large"))
            }
            None => match ApiRequest::from_json(bytes) {
                Err(answer) => answer,
                Ok(ApiRequest::Submit(s)) => self.submit(s).unwrap_or_else(|e| e),
                Ok(ApiRequest::GetBill(c)) => {
                    self.get_bill(CycleId(c.cycle_id)).unwrap_or_else(|e| e)
                }
                Ok(ApiRequest::Status(_)) => self.status().unwrap_or_else(|e| e),
            },
        };
        serde_json::to_vec(&response).unwrap_or_else(|_| {
            b"{\"error\":{\"code\":\"internal\",\"message\":\"unencodable answer\"}}".to_vec()
        })
    }

    /// The cycle, from the store or else from the edge.
    fn cycle_entry(&self, cycle: CycleId) -> Result<CycleEntry, Refusal> {
        if let Some(e) = self.store.cycle(cycle).map_err(internal)? {
            return Ok(e);
        }
        let exchange = self.call(&Request::GetCycle { cycle }).map_err(|e| {
            ApiResponse::error(
                "edge_unavailable",
                format!("cannot fetch {cycle} from the edge: {e}; try again later"),
            )
        })?;
        match exchange.response {
            Response::Cycle {
                context,
                roster_version,
                roster_fingerprint,
                ..
            } => {
                if context.cycle() != cycle {
                    return Err(ApiResponse::error(
                        "internal",
                        "the edge answered with another cycle",
                    ));
                }
                let roster = self.roster(roster_version).map_err(|e| {
                    ApiResponse::error(
                        "edge_unavailable",
                        format!("the member list of {cycle} cannot be used: {e}"),
                    )
                })?;
                if roster.roster.fingerprint() != roster_fingerprint {
                    return Err(ApiResponse::error(
                        "internal",
                        "the edge names another member list than it serves",
                    ));
                }
                if roster.roster.entry(&self.checked.member).is_none() {
                    return Err(ApiResponse::error(
                        "not_member",
                        format!("{} is not a member of {cycle}", self.checked.member),
                    ));
                }
                let entry = CycleEntry {
                    context,
                    roster_version,
                };
                self.store.put_cycle(&entry).map_err(internal)?;
                Ok(entry)
            }
            Response::Error {
                code: ErrorCode::UnknownCycle,
                message,
            } => Err(ApiResponse::error("unknown_cycle", message)),
            Response::Error {
                code: ErrorCode::Forbidden,
                message,
            } => Err(ApiResponse::error("not_member", message)),
            Response::Error { code, message } => Err(ApiResponse::error(
                "edge_unavailable",
                format!("the edge refused ({code:?}): {message}"),
            )),
            other => Err(ApiResponse::error(
                "internal",
                format!("unexpected answer from the edge: {other:?}"),
            )),
        }
    }

    fn hiding_context(&self, entry: &CycleEntry) -> Result<Arc<HidingContext>, CoreError> {
        let cycle = entry.context.cycle();
        let mut cache = self.hiding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = cache.get(&cycle) {
            return Ok(h.clone());
        }
        // The aggregate contributions are masked by SecAgg+, not PRZS.
        let h = Arc::new(HidingContext::for_secagg(
            &self.checked.community,
            &self.checked.member,
            self.secrets.glwe.clone(),
        ));
        cache.insert(cycle, h.clone());
        Ok(h)
    }

    fn submit(&self, s: SubmitRequest) -> Result<ApiResponse, Refusal> {
        let cycle = CycleId(s.cycle_id);
        let bad = |m: String| ApiResponse::error("bad_request", m);
        let entry = self.cycle_entry(cycle)?;
        let slots = entry.context.slots();
        let (data, rounding) = s.to_data(&self.checked.member, slots).map_err(bad)?;
        if let Some(existing) = self.store.data(cycle).map_err(internal)? {
            return if existing == data {
                let state = self.report(cycle)?.state;
                Ok(ApiResponse::Accepted(Accepted {
                    cycle_id: cycle.0,
                    slots,
                    state,
                    rounded: rounding.count,
                }))
            } else {
                Err(ApiResponse::error(
                    "conflict",
                    format!(
                        "{cycle} already has other data at this core; submitted data cannot change"
                    ),
                ))
            };
        }
        let hiding = self.hiding_context(&entry).map_err(internal)?;
        let start = Instant::now();
        let mut seeder = pb_glwe::seeding::new_seeder();
        let hidden = hiding
            .hide(&data, &entry.context, seeder.as_mut())
            .map_err(|e| bad(e.to_string()))?;
        let state = CycleState {
            hide_micros: start.elapsed().as_micros() as u64,
            ..CycleState::default()
        };
        self.store
            .put_submission(&data, &hidden, &state)
            .map_err(internal)?;
        tracing::info!(%cycle, slots, hide_micros = state.hide_micros, "household data stored");
        Ok(ApiResponse::Accepted(Accepted {
            cycle_id: cycle.0,
            slots,
            state: "queued".into(),
            rounded: rounding.count,
        }))
    }

    fn report(&self, cycle: CycleId) -> Result<CycleReport, Refusal> {
        let state = self.store.state(cycle).map_err(internal)?.ok_or_else(|| {
            ApiResponse::error(
                "unknown_cycle",
                format!("no data was submitted for {cycle} at this core"),
            )
        })?;
        let billed = self.store.bill(cycle).map_err(internal)?.is_some();
        Ok(CycleReport {
            cycle_id: cycle.0,
            state: if billed {
                "billed".into()
            } else if let Some(f) = &state.failure {
                format!("failed: {f}")
            } else if let Some(round) = state.sent.filter(|_| state.submitted) {
                format!("submitted ({} round)", round.name())
            } else if state.submitted {
                "submitted".into()
            } else {
                "queued".into()
            },
            upload_bytes: state.upload_bytes,
            download_bytes: state.download_bytes,
            hide_micros: state.hide_micros,
            decrypt_micros: state.decrypt_micros,
        })
    }

    fn get_bill(&self, cycle: CycleId) -> Result<ApiResponse, Refusal> {
        match self.store.bill(cycle).map_err(internal)? {
            Some(b) => Ok(ApiResponse::Bill(BillReply {
                cycle_id: cycle.0,
                bill: b.bill.to_decimal_string(),
                reward: b.reward.to_decimal_string(),
                total: b.total().to_decimal_string(),
            })),
            None => Ok(ApiResponse::Pending(self.report(cycle)?)),
        }
    }

    fn status(&self) -> Result<ApiResponse, Refusal> {
        let mut cycles = Vec::new();
        for (cycle, _) in self.store.states().map_err(internal)? {
            cycles.push(self.report(cycle)?);
        }
        // The last member list this core checked: its size and fingerprint
        // are what households compare out of band.
        let roster = self
            .roster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(ApiResponse::Status(StatusReply {
            member: self.checked.member.to_string(),
            node: self.node.to_hex(),
            edge: self.edge_endpoint.clone(),
            joined: self.store.joined().map_err(internal)?,
            cycles,
            community_size: roster.as_ref().map(|r| r.roster.members.len()),
            roster_fingerprint: roster
                .as_ref()
                .map(|r| pb_secagg::roster::show_fingerprint(&r.roster.fingerprint())),
        }))
    }

    /// One round of work with the edge: join, move each cycle with data
    /// through its SecAgg+ rounds, fetch and decrypt bills. Returns whether
    /// work remains.
    pub fn sync_once(&self) -> Result<bool, CoreError> {
        if !self.store.joined()? {
            let join = Request::Join {
                member: self.checked.member.clone(),
                przs: self.secrets.przs.public(),
                public_key: self.secrets.public_key.clone(),
            };
            match self.call(&join)?.response {
                Response::Ok => {
                    self.store.set_joined()?;
                    tracing::info!(member = %self.checked.member, "joined the community");
                }
                Response::Error { code, message } => {
                    tracing::warn!(?code, %message, "join refused");
                    return Ok(true);
                }
                other => {
                    return Err(CoreError::Protocol(format!(
                        "unexpected answer to Join: {other:?}"
                    )));
                }
            }
        }
        let mut pending = false;
        for (cycle, mut state) in self.store.states()? {
            if state.failure.is_some() || self.store.bill(cycle)?.is_some() {
                continue;
            }
            pending = true;
            self.advance(cycle, &mut state)?;
        }
        Ok(pending)
    }

    fn fail(&self, cycle: CycleId, state: &mut CycleState, why: String) -> Result<(), CoreError> {
        tracing::error!(%cycle, reason = %why, "cycle failed at this core");
        state.failure = Some(why);
        self.store.put_state(cycle, state)
    }

    /// The member list of `version`: from memory or the store, else
    /// fetched from the edge page by page, checked against the pinned
    /// operator key and the minimum size, and stored. Its size and
    /// fingerprint are logged for the household to compare out of band.
    pub fn roster(&self, version: u64) -> Result<Arc<SignedRoster>, CoreError> {
        if let Some(r) = self
            .roster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|r| r.roster.version == version)
        {
            return Ok(r.clone());
        }
        let mut pages = Vec::new();
        loop {
            let page = pages.len() as u32;
            match self
                .call(&Request::GetRoster {
                    version: Some(version),
                    page,
                })?
                .response
            {
                Response::Roster(p) => {
                    let last = p.page + 1 >= p.pages;
                    pages.push(p);
                    if last {
                        break;
                    }
                    if pages.len() > 1_000 {
                        return Err(CoreError::Protocol(
                            "the member list has more than 1,000 pages".into(),
                        ));
                    }
                }
                Response::Error { code, message } => {
                    return Err(CoreError::Protocol(format!(
                        "member list page {page} refused ({code:?}): {message}"
                    )));
                }
                other => {
                    return Err(CoreError::Protocol(format!(
                        "unexpected answer to GetRoster: {other:?}"
                    )));
                }
            }
        }
        let signed = RosterPage::join(&pages).ok_or_else(|| {
            CoreError::Protocol("the member list's pages do not fit together".into())
        })?;
        let r = signed
            .verify(&self.checked.operator, self.checked.min_members)
            .map_err(|e| CoreError::Protocol(format!("member list refused: {e}")))?;
        if r.version != version || r.community != self.checked.community.0 {
            return Err(CoreError::Protocol(format!(
                "member list refused: it is version {} of {:?}, not version {version} of {:?}",
                r.version, r.community, self.checked.community.0
            )));
        }
        match r.entry(&self.checked.member) {
            Some(e) if e.identity == self.node.0 => {}
            Some(_) => {
                return Err(CoreError::Protocol(format!(
                    "member list refused: it lists {} with another key than this core's",
                    self.checked.member
                )));
            }
            None => {
                return Err(CoreError::Protocol(format!(
                    "member list version {version} does not list {}",
                    self.checked.member
                )));
            }
        }
        tracing::info!(
            version,
            members = r.members.len(),
            fingerprint = %pb_secagg::roster::show_fingerprint(&r.fingerprint()),
            "member list checked (compare its size and fingerprint with your neighbours)"
        );
        self.store.put_roster(&signed)?;
        let signed = Arc::new(signed);
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = Some(signed.clone());
        Ok(signed)
    }

    /// Sends a round message; `Ok(true)` once the edge has it.
    fn send_round(
        &self,
        cycle: CycleId,
        state: &mut CycleState,
        round: Round,
        request: &Request,
    ) -> Result<bool, CoreError> {
        if state.sent >= Some(round) {
            return Ok(true);
        }
        let exchange = self.call(request)?;
        match exchange.response {
            Response::Ok
            | Response::Error {
                code: ErrorCode::AlreadyDone,
                ..
            } => {
                state.sent = Some(round);
                if round == Round::Mask {
                    state.submitted = true;
                    state.upload_bytes = exchange.sent as u64;
                    tracing::info!(%cycle, bytes = exchange.sent, "masked submission accepted by the edge");
                }
                self.store.put_state(cycle, state)?;
                tracing::debug!(%cycle, round = round.name(), "round message accepted");
                Ok(true)
            }
            Response::Error { code, message } if is_final(code) => {
                self.fail(cycle, state, message)?;
                Ok(false)
            }
            Response::Error { code, message } => {
                tracing::debug!(%cycle, ?code, %message, round = round.name(), "round message refused for now");
                Ok(false)
            }
            other => Err(CoreError::Protocol(format!(
                "unexpected answer in the {} round: {other:?}",
                round.name()
            ))),
        }
    }

    /// Asks the edge for what the next step needs; `None` while it is not
    /// ready (or after a final refusal, recorded in `state`).
    fn fetch(
        &self,
        cycle: CycleId,
        state: &mut CycleState,
        request: &Request,
    ) -> Result<Option<Response>, CoreError> {
        match self.call(request)?.response {
            // Unmasked and billed without this member's further messages
            // (its neighbours' shares sufficed): fetch the bill.
            Response::Error {
                code: ErrorCode::AlreadyDone,
                ..
            } => {
                self.fetch_bill(cycle, state)?;
                Ok(None)
            }
            Response::Error { code, message } if is_final(code) => {
                self.fail(cycle, state, message)?;
                Ok(None)
            }
            Response::Error { code, message } => {
                tracing::debug!(%cycle, ?code, %message, "not ready yet");
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    fn save(&self, cycle: CycleId, client: &Client) -> Result<(), CoreError> {
        self.store
            .put_client(cycle, client, self.passphrase.as_ref())
    }

    /// Moves one cycle on as far as the edge lets it: each step records
    /// the SecAgg+ state before sending what depends on it.
    fn advance(&self, cycle: CycleId, state: &mut CycleState) -> Result<(), CoreError> {
        let (Some(entry), Some(hidden)) = (self.store.cycle(cycle)?, self.store.hidden(cycle)?)
        else {
            return Ok(());
        };
        let roster = self.roster(entry.roster_version)?;
        let mut client = match self.store.client(cycle, self.passphrase.as_ref())? {
            Some(c) => c,
            None => {
                let c = match Client::start(
                    &roster,
                    &self.checked.operator,
                    self.checked.min_members,
                    cycle.0,
                    &self.checked.member,
                    self.identity.signing_key(),
                    &mut rand_core::OsRng,
                ) {
                    Ok(c) => c,
                    Err(e) => return self.fail(cycle, state, e.to_string()),
                };
                self.save(cycle, &c)?;
                c
            }
        };
        let refused = |this: &Node, state: &mut CycleState, e: pb_secagg::Refusal| {
            this.fail(cycle, state, format!("refused by this core: {e}"))
        };
        // At most one step per round per call; each `continue` follows a
        // recorded state change.
        for _ in 0..6 {
            if state.failure.is_some() {
                return Ok(());
            }
            if self.silent_after_mask && state.submitted {
                tracing::warn!(%cycle, "drill: silent after masking (as a household that vanished before unmasking)");
                return Ok(());
            }
            match client.round() {
                Round::Advertise => {
                    let request = Request::Advertise {
                        cycle,
                        bundle: client.bundle().clone(),
                    };
                    if !self.send_round(cycle, state, Round::Advertise, &request)? {
                        return Ok(());
                    }
                    let Some(answer) = self.fetch(cycle, state, &Request::GetBundles { cycle })?
                    else {
                        return Ok(());
                    };
                    let Response::Bundles(bundles) = answer else {
                        return Err(unexpected("GetBundles", &answer));
                    };
                    if let Err(e) = client.share(&bundles, &mut rand_core::OsRng) {
                        return refused(self, state, e);
                    }
                    self.save(cycle, &client)?;
                }
                Round::Share => {
                    let request = Request::Share {
                        cycle,
                        shares: client.sent_shares().to_vec(),
                    };
                    if !self.send_round(cycle, state, Round::Share, &request)? {
                        return Ok(());
                    }
                    let Some(answer) = self.fetch(cycle, state, &Request::GetShares { cycle })?
                    else {
                        return Ok(());
                    };
                    let Response::Shares(shares) = answer else {
                        return Err(unexpected("GetShares", &answer));
                    };
                    if let Err(e) = client.mask(&shares, &hidden.masked) {
                        return refused(self, state, e);
                    }
                    self.save(cycle, &client)?;
                }
                Round::Mask => {
                    let Some(masked) = client.masked() else {
                        return Err(CoreError::Protocol("masked state lost".into()));
                    };
                    let mut data = hidden.clone();
                    data.masked = masked.vectors.clone();
                    let request = Request::Submit {
                        data,
                        partners: masked.partners.clone(),
                    };
                    if !self.send_round(cycle, state, Round::Mask, &request)? {
                        return Ok(());
                    }
                    let Some(answer) =
                        self.fetch(cycle, state, &Request::GetSurvivors { cycle })?
                    else {
                        return Ok(());
                    };
                    let Response::Survivors(bits) = answer else {
                        return Err(unexpected("GetSurvivors", &answer));
                    };
                    // The set is read with the roster this core checked
                    // and kept only while it is signed: the state keeps
                    // its hash and the neighbours' part.
                    let signed = bits
                        .checked(&roster.roster)
                        .and_then(|set| client.confirm_checked(&set, self.identity.signing_key()));
                    if let Err(e) = signed {
                        return refused(self, state, e);
                    }
                    self.save(cycle, &client)?;
                }
                Round::Confirm => {
                    let Some(confirmation) = client.confirmed().cloned() else {
                        return Err(CoreError::Protocol("confirmed state lost".into()));
                    };
                    let set = confirmation.set;
                    let request = Request::Confirm {
                        cycle,
                        confirmation,
                    };
                    if !self.send_round(cycle, state, Round::Confirm, &request)? {
                        return Ok(());
                    }
                    let Some(answer) =
                        self.fetch(cycle, state, &Request::GetConfirmations { cycle })?
                    else {
                        return Ok(());
                    };
                    let Response::Confirmations(confirmations) = answer else {
                        return Err(unexpected("GetConfirmations", &answer));
                    };
                    match client.reveal(&set, &confirmations) {
                        Ok(_) => self.save(cycle, &client)?,
                        Err(pb_secagg::Refusal::TooFewConfirmations { have, need }) => {
                            tracing::debug!(%cycle, have, need, "waiting for neighbours' confirmations");
                            return Ok(());
                        }
                        Err(e) => return refused(self, state, e),
                    }
                }
                Round::Reveal | Round::Done => {
                    let Some(reveal) = client.revealed().cloned() else {
                        return Err(CoreError::Protocol("revealed state lost".into()));
                    };
                    let request = Request::Reveal { cycle, reveal };
                    if !self.send_round(cycle, state, Round::Reveal, &request)? {
                        return Ok(());
                    }
                    return self.fetch_bill(cycle, state);
                }
            }
        }
        Ok(())
    }

    fn fetch_bill(&self, cycle: CycleId, state: &mut CycleState) -> Result<(), CoreError> {
        let exchange = self.call(&Request::GetBill { cycle })?;
        match exchange.response {
            Response::Bill(hidden) => {
                if hidden.member != self.checked.member || hidden.cycle != cycle {
                    return Err(CoreError::Protocol(
                        "the edge sent someone else's bill".into(),
                    ));
                }
                let Some(entry) = self.store.cycle(cycle)? else {
                    return Ok(());
                };
                let hiding = self.hiding_context(&entry)?;
                let start = Instant::now();
                match hiding.decrypt(&hidden) {
                    Ok(bill) => {
                        state.decrypt_micros = start.elapsed().as_micros() as u64;
                        state.download_bytes = exchange.received as u64;
                        self.store.put_bill(cycle, &bill, state)?;
                        self.store.drop_client(cycle)?;
                        // The cycle's keys are no longer needed in memory.
                        self.hiding
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&cycle);
                        tracing::info!(%cycle, total = %bill.total().to_decimal_string(), "bill decrypted");
                    }
                    Err(e) => self.fail(cycle, state, format!("the bill does not decrypt: {e}"))?,
                }
            }
            Response::Pending { .. } => {}
            Response::Error { code, message } if is_final(code) => {
                self.fail(cycle, state, message)?
            }
            Response::Error { code, message } => {
                tracing::warn!(%cycle, ?code, %message, "bill not available")
            }
            other => {
                return Err(CoreError::Protocol(format!(
                    "unexpected answer to GetBill: {other:?}"
                )));
            }
        }
        Ok(())
    }
}

fn unexpected(what: &str, answer: &Response) -> CoreError {
    CoreError::Protocol(format!("unexpected answer to {what}: {answer:?}"))
}

/// A core started by [`spawn`].
#[derive(Debug)]
pub struct Running {
    /// The household API endpoint, port resolved.
    pub endpoint: String,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits for the core's threads (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts a core's two threads on the runtime `rt` until `stop` is set.
pub fn spawn(
    rt: &Handle,
    config: &CoreConfig,
    stop: Arc<AtomicBool>,
) -> Result<Running, CoreError> {
    let node = Arc::new(Node::open(rt.clone(), config)?);
    // Before the household API listens: a metrics address that cannot be
    // bound stops the start-up with nothing left running.
    let metrics = match &config.metrics {
        Some(addr) => Some(crate::metrics::CoreMetrics::start(addr, &config.data_dir)?),
        None => None,
    };
    // The household API is the household's own: a few local clients.
    let mut limits = pb_net::GuardLimits::new(pb_protocol::MAX_FRAME, pb_net::MAX_PARTS);
    limits.max_connections = 64;
    limits.max_per_address = 64;
    let server = Server::bind(rt, &config.listen, limits)?;
    let endpoint = server.endpoint().to_string();
    tracing::info!(%endpoint, member = %node.checked.member, node = %node.node.to_hex(), "household API listening");
    let (wake, woken) = channel::<()>();
    let poll = node.checked.poll;
    let api = {
        let node = node.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("core-api".into())
            .spawn(move || api_loop(&node, &server, &wake, &stop, metrics.as_ref()))
            .map_err(|e| CoreError::Runtime(e.to_string()))?
    };
    let sync = std::thread::Builder::new()
        .name("core-sync".into())
        .spawn(move || sync_loop(&node, &woken, poll, &stop))
        .map_err(|e| CoreError::Runtime(e.to_string()))?;
    Ok(Running {
        endpoint,
        threads: vec![api, sync],
    })
}

fn api_loop(
    node: &Node,
    server: &Server,
    wake: &Sender<()>,
    stop: &AtomicBool,
    metrics: Option<&crate::metrics::CoreMetrics>,
) {
    while !stop.load(Ordering::Relaxed) {
        match server
            .requests()
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            Ok(incoming) => {
                let answer = node.handle_api(&incoming.payload, incoming.oversized);
                if let Some(m) = metrics {
                    m.request(&incoming.payload, incoming.oversized.is_some(), &answer);
                }
                incoming.reply(answer);
                let _ = wake.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn sync_loop(node: &Node, woken: &Receiver<()>, poll: std::time::Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match node.sync_once() {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sync with the edge failed; will retry"),
        }
        match woken.recv_timeout(poll) {
            Ok(()) => while woken.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}
