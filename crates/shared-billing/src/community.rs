//! A whole community in one process: key generation, hiding at every
//! household with the SecAgg+ rounds of `pb-secagg` for the aggregates,
//! billing, decryption. This is what `pbill simulate` runs and what tests
//! compare with the plaintext reference.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pb_glwe::SecretKey;
use pb_glwe::seeding::{Seeder, deterministic, new_seeder};
use pb_hiding::{HidingContext, HidingError};
use pb_model::{Aggregates, Bill, CycleContext, Data, reference};
use pb_przs::{PrzsError, decode};
use pb_secagg::server::Server;
use pb_secagg::{Client, Graph, Roster, RosterEntry, SignedRoster};
use pb_units::CommunityId;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use thiserror::Error;

use crate::{BillingError, ComputeBackend, SharedBilling};

/// Why a local run failed.
#[derive(Debug, Error)]
pub enum CommunityError {
    /// Key derivation failed (e.g. a member id appears twice).
    #[error(transparent)]
    Przs(#[from] PrzsError),
    /// A household could not hide its data.
    #[error(transparent)]
    Hiding(#[from] HidingError),
    /// The billing authority refused.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// Secure aggregation refused a step.
    #[error(transparent)]
    SecAgg(#[from] pb_secagg::Refusal),
    /// A bill is missing for a household.
    #[error("no bill returned for {0}")]
    MissingBill(String),
}

/// Wall time of each phase of a local run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Identities, the signed roster, GLWE keys and public keys, and each
    /// member's SecAgg+ key bundle.
    pub keygen: Duration,
    /// All households' `hide` (encryption) and SecAgg+ rounds (shares,
    /// masking, confirmation, reveal).
    pub hide: Duration,
    /// `compute_bills` at the billing authority.
    pub billing: Duration,
    /// All households' `decrypt`.
    pub decrypt: Duration,
}

/// Bytes that would travel per household.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireSizes {
    /// Encoded `HiddenData` of one household.
    pub upload: usize,
    /// Encoded `HiddenBill` of one household.
    pub download: usize,
}

/// Result of a local run: bills in input order, timings, sizes.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// One bill per household, in input order.
    pub bills: Vec<Bill>,
    /// Phase timings.
    pub timings: Timings,
    /// Per-household wire sizes.
    pub sizes: WireSizes,
}

/// The same bills in clear, without any cryptography (`pbill simulate
/// --plaintext`), refusing exactly what the encrypted path refuses: fewer
/// than `pb_units::limits::min_members(min_members)` households, and
/// aggregates whose weights break the encrypted budget ([`crate::budget`]).
pub fn plaintext_bills(
    ctx: &CycleContext,
    households: &[Data],
    min_members: usize,
) -> Result<Vec<Bill>, BillingError> {
    let need = pb_units::limits::min_members(min_members);
    if households.len() < need {
        return Err(BillingError::TooFewMembers {
            cycle: ctx.cycle(),
            have: households.len(),
            need,
        });
    }
    let vectors: Vec<_> = households.iter().map(Data::vectors).collect();
    let aggregates = Aggregates::in_clear(ctx.model(), ctx.slots(), &vectors);
    let weights = ctx.model().weights(ctx, &aggregates)?;
    crate::budget::check(&weights)?;
    Ok(reference::bills(ctx, households)?)
}

/// A phase of a local run, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Keys of each household.
    Keys,
    /// Each household's `hide`.
    Hide,
    /// The billing authority's evaluation (one step).
    Billing,
    /// Each household's decryption.
    Decrypt,
}

impl Phase {
    /// A short name for people.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Keys => "keys",
            Phase::Hide => "hiding",
            Phase::Billing => "billing",
            Phase::Decrypt => "decrypting",
        }
    }
}

/// Runs the whole cryptographic pipeline for `households` under `ctx`.
///
/// With `seed`, every key and all randomness are reproducible (tests and
/// backend comparisons); without, they come from the operating system.
pub fn run_local(
    ctx: &CycleContext,
    households: &[Data],
    backend: Box<dyn ComputeBackend>,
    min_members: usize,
    seed: Option<u64>,
) -> Result<LocalRun, CommunityError> {
    run_local_with_progress(ctx, households, backend, min_members, seed, &|_, _| {})
}

/// [`run_local`], calling `step(phase, steps_done)` as each household (or,
/// for billing, the whole evaluation) is done.
pub fn run_local_with_progress(
    ctx: &CycleContext,
    households: &[Data],
    backend: Box<dyn ComputeBackend>,
    min_members: usize,
    seed: Option<u64>,
    step: &dyn Fn(Phase, usize),
) -> Result<LocalRun, CommunityError> {
    use pb_hiding::wire::Wire;

    let mut timings = Timings::default();
    let start = Instant::now();
    let mut rng = match seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s),
        None => {
            ChaCha20Rng::from_rng(OsRng).map_err(|_| HidingError::Przs(PrzsError::NoEntropy))?
        }
    };
    let mut seeder: Box<dyn Seeder> = match seed {
        Some(s) => Box::new(deterministic(s as u128 | 1 << 100)),
        None => new_seeder(),
    };
    let cycle = ctx.cycle();
    let need = pb_units::limits::min_members(min_members);
    if households.len() < need {
        return Err(BillingError::TooFewMembers {
            cycle,
            have: households.len(),
            need,
        }
        .into());
    }
    // The aggregates are masked by SecAgg+ (pb-secagg), as the network will
    // be: an operator-signed roster of identities, each member's rounds
    // against one edge. PRZS is not used here: each household's pairwise
    // keys are with nobody, so `hide` leaves its contributions unmasked for
    // SecAgg+ to mask.
    let community = CommunityId("local".into());
    let signing_key = |rng: &mut ChaCha20Rng| {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        SigningKey::from_bytes(&b)
    };
    let operator = signing_key(&mut rng);
    let signers: Vec<SigningKey> = households.iter().map(|_| signing_key(&mut rng)).collect();
    let roster = Roster::new(
        community.0.clone(),
        1,
        households
            .iter()
            .zip(&signers)
            .map(|(d, k)| RosterEntry {
                member: d.member().clone(),
                identity: k.verifying_key().to_bytes(),
            })
            .collect(),
    )?;
    let signed = SignedRoster::sign(roster.clone(), &operator);
    let fields = ctx.model().aggregates().len();
    let mut server = Server::new(
        &signed,
        &operator.verifying_key().to_bytes(),
        cycle.0,
        need,
        fields,
        ctx.slots(),
    )?;
    let graph = Graph::new(server.session(), &roster.ids(), server.params());
    let mut edge_seed = [0u8; 32];
    rng.fill_bytes(&mut edge_seed);
    let mut edge = SharedBilling::with_seed(backend, edge_seed).with_community(community.clone());
    edge.set_min_members(min_members);
    let mut contexts = Vec::with_capacity(households.len());
    let mut clients = Vec::with_capacity(households.len());
    for (d, signer) in households.iter().zip(&signers) {
        let hiding =
            HidingContext::for_secagg(&community, d.member(), SecretKey::generate(seeder.as_mut()));
        edge.register_member(d.member().clone(), hiding.public_key(seeder.as_mut()))?;
        contexts.push(hiding);
        let client = Client::with_graph(&roster, &graph, need, d.member(), signer, &mut rng)?;
        server.advertise(client.bundle().clone())?;
        clients.push(client);
        step(Phase::Keys, contexts.len());
    }
    edge.record_context(ctx.clone())?;
    timings.keygen = start.elapsed();

    let start = Instant::now();
    server.close_advertise()?;
    for (d, client) in households.iter().zip(clients.iter_mut()) {
        let shares = client.share(&server.bundles_for(d.member())?, &mut rng)?;
        server.share(d.member(), shares)?;
    }
    server.close_share()?;
    let mut sizes = WireSizes::default();
    for (i, ((d, h), client)) in households
        .iter()
        .zip(&contexts)
        .zip(clients.iter_mut())
        .enumerate()
    {
        let mut hidden = h.hide(d, ctx, seeder.as_mut())?;
        let masked = client.mask(&server.shares_for(d.member())?, &hidden.masked)?;
        hidden.masked = masked.vectors.clone();
        server.submit(masked)?;
        sizes.upload = sizes.upload.max(hidden.to_bytes().len());
        edge.record_data(hidden)?;
        step(Phase::Hide, i + 1);
    }
    let set = server.close_mask()?;
    for (d, (client, signer)) in households.iter().zip(clients.iter_mut().zip(&signers)) {
        let _ = d;
        server.confirm(client.confirm(&set, &roster, signer)?)?;
    }
    let hash = set.hash();
    for (d, client) in households.iter().zip(clients.iter_mut()) {
        let confirmations = server.confirmations_for(d.member());
        server.reveal(client.reveal(&hash, &confirmations)?)?;
    }
    timings.hide = start.elapsed();

    let start = Instant::now();
    let sums = server.unmask()?;
    let mut aggregates = Aggregates::default();
    for (agg, sum) in ctx.model().aggregates().into_iter().zip(sums) {
        aggregates.insert(agg, sum.into_iter().map(decode).collect());
    }
    let hidden_bills = edge.compute_bills_with(cycle, aggregates)?;
    timings.billing = start.elapsed();
    step(Phase::Billing, 1);

    let start = Instant::now();
    let mut bills = Vec::with_capacity(households.len());
    for h in &contexts {
        let hb = hidden_bills
            .iter()
            .find(|b| &b.member == h.member())
            .ok_or_else(|| CommunityError::MissingBill(h.member().to_string()))?;
        sizes.download = sizes.download.max(hb.to_bytes().len());
        bills.push(h.decrypt(hb)?);
        step(Phase::Decrypt, bills.len());
    }
    timings.decrypt = start.elapsed();
    Ok(LocalRun {
        bills,
        timings,
        sizes,
    })
}
