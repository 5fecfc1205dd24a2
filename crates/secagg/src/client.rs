//! A member's side of one cycle, as an explicit state that the core
//! persists after every step (serde). Each step checks what the edge
//! brought, either advances the state and returns what to send, or
//! returns a [`Refusal`] and changes nothing. Asked again for a step it has
//! taken, it returns the same message: a restart or a replay by the edge
//! can never make it answer twice differently.
//!
//! Rounds: [`Client::start`] (advertise the signed key bundle),
//! [`Client::share`] (Shamir shares to the neighbours that advertised),
//! [`Client::mask`] (masked vectors, masked with the neighbours whose
//! shares arrived), [`Client::confirm`] (sign the survivor set, once per
//! cycle), [`Client::reveal`] (for each neighbour, the share of its
//! self-mask seed if it survived or of its mask key if it dropped, never
//! both, once enough neighbours confirmed the same set).

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use pb_units::MemberId;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::graph::neighbours_of;
use crate::keys::{CycleSecrets, SignedBundle};
use crate::mask::{StreamKey, apply, pair_key, pair_sign, self_key};
use crate::params::GraphParams;
use crate::roster::{Roster, SignedRoster, verify_with};
use crate::shares::{Answer, EncryptedShare, Reveal, Secret, SharePair, open, seal, split};
use crate::{CheckedSet, Confirmation, Graph, Refusal, Round, Session, SurvivorSet};

/// A neighbour that advertised keys: it holds shares of our secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The neighbour.
    pub member: MemberId,
    /// Its enrolled identity.
    pub identity: [u8; 32],
    /// Its share-encryption key for this cycle.
    pub share_pk: [u8; 32],
    /// Its mask key for this cycle.
    pub mask_pk: [u8; 32],
}

/// What a member sends in the mask round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// The member.
    pub member: MemberId,
    /// The neighbours it masked with (sorted).
    pub partners: Vec<MemberId>,
    /// The masked vectors, one per field.
    pub vectors: Vec<Vec<u64>>,
}

/// The pairwise mask keys with each holder, derived when sharing (a
/// low-order key is refused there). Zeroized on drop.
#[derive(Default, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct PairKeys(Vec<(String, [u8; 32])>);

impl std::fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairKeys({} keys)", self.0.len())
    }
}

/// One member's state for one cycle.
#[derive(Debug, Serialize, Deserialize)]
pub struct Client {
    session: Session,
    me: MemberId,
    params: GraphParams,
    min_survivors: usize,
    /// Graph neighbours and their identities, sorted.
    neighbours: Vec<(MemberId, [u8; 32])>,
    secrets: CycleSecrets,
    bundle: SignedBundle,
    round: Round,
    holders: Vec<Holder>,
    threshold: usize,
    pair_keys: PairKeys,
    sent_shares: Vec<EncryptedShare>,
    held: BTreeMap<MemberId, SharePair>,
    masked: Option<MaskedInput>,
    confirmed: Option<Confirmed>,
    revealed: Option<Reveal>,
}

/// What a member keeps of the survivor set it signed: the signature (with
/// the set's hash) and which of the neighbours whose shares it holds the
/// set declares dropped. Not the set itself: it lists every survivor, and
/// the reveal needs only the hash and the neighbours' part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Confirmed {
    confirmation: Confirmation,
    dropped: Vec<MemberId>,
}

impl Client {
    /// Checks the roster (signed by the pinned operator key, at least
    /// `min_members` members, `me` listed with `identity`), draws this
    /// cycle's secrets and returns the signed key bundle to advertise.
    #[allow(clippy::too_many_arguments)]
    pub fn start<R: RngCore + CryptoRng>(
        roster: &SignedRoster,
        pinned_operator: &[u8; 32],
        min_members: usize,
        cycle: u64,
        me: &MemberId,
        identity: &SigningKey,
        rng: &mut R,
    ) -> Result<Client, Refusal> {
        let r = roster.verify(pinned_operator, min_members)?;
        let session = Session {
            community: r.community.clone(),
            cycle,
            roster: r.fingerprint(),
        };
        let params = r.params()?;
        let neighbours = neighbours_of(&session, &r.ids(), &params, me);
        Client::assemble(
            r,
            session,
            params,
            neighbours,
            min_members,
            me,
            identity,
            rng,
        )
    }

    /// [`Client::start`] for a roster the core verified already (a core
    /// checks a roster once per version) and this cycle's graph (drawn for
    /// that roster's session).
    pub fn with_graph<R: RngCore + CryptoRng>(
        r: &Roster,
        graph: &Graph,
        min_members: usize,
        me: &MemberId,
        identity: &SigningKey,
        rng: &mut R,
    ) -> Result<Client, Refusal> {
        let neighbours = graph.neighbours(me);
        Client::assemble(
            r,
            graph.session().clone(),
            *graph.params(),
            neighbours,
            min_members,
            me,
            identity,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble<R: RngCore + CryptoRng>(
        r: &Roster,
        session: Session,
        params: GraphParams,
        neighbours: Vec<MemberId>,
        min_members: usize,
        me: &MemberId,
        identity: &SigningKey,
        rng: &mut R,
    ) -> Result<Client, Refusal> {
        let entry = r
            .entry(me)
            .ok_or_else(|| Refusal::NotInRoster(me.clone()))?;
        if entry.identity != identity.verifying_key().to_bytes() {
            return Err(Refusal::RosterMalformed(format!(
                "it lists another identity for {me} than this core's key"
            )));
        }
        let neighbours = neighbours
            .into_iter()
            .filter_map(|m| r.entry(&m).map(|e| (m, e.identity)))
            .collect();
        let secrets = CycleSecrets::generate(rng);
        let bundle = secrets.bundle(&session, me, identity);
        Ok(Client {
            session,
            me: me.clone(),
            params,
            min_survivors: min_members,
            neighbours,
            secrets,
            bundle,
            round: Round::Advertise,
            holders: Vec::new(),
            threshold: 0,
            pair_keys: PairKeys::default(),
            sent_shares: Vec::new(),
            held: BTreeMap::new(),
            masked: None,
            confirmed: None,
            revealed: None,
        })
    }

    /// The session (community, cycle, roster fingerprint).
    pub fn session(&self) -> &Session {
        &self.session
    }
    /// The round this member is in (the last one it took part in).
    pub fn round(&self) -> Round {
        self.round
    }
    /// The signed key bundle to advertise (the same on every call).
    pub fn bundle(&self) -> &SignedBundle {
        &self.bundle
    }
    /// This cycle's graph neighbours.
    pub fn neighbours(&self) -> impl Iterator<Item = &MemberId> {
        self.neighbours.iter().map(|(m, _)| m)
    }
    /// The shares sent in the share round (empty before it).
    pub fn sent_shares(&self) -> &[EncryptedShare] {
        &self.sent_shares
    }
    /// The masked input sent in the mask round, if masked.
    pub fn masked(&self) -> Option<&MaskedInput> {
        self.masked.as_ref()
    }
    /// This member's signature over the survivor set it signed (with the
    /// set's hash), if it signed one.
    pub fn confirmed(&self) -> Option<&Confirmation> {
        self.confirmed.as_ref().map(|c| &c.confirmation)
    }
    /// The answers this member revealed, if it did (recorded: it never
    /// answers differently).
    pub fn revealed(&self) -> Option<&Reveal> {
        self.revealed.as_ref()
    }
    /// The share holders and threshold (after [`Client::share`]).
    pub fn holders(&self) -> (&[Holder], usize) {
        (&self.holders, self.threshold)
    }

    fn require(&self, round: Round) -> Result<(), Refusal> {
        self.round.require(round)
    }

    fn identity_of(&self, m: &MemberId) -> Result<[u8; 32], Refusal> {
        self.neighbours
            .binary_search_by(|(x, _)| x.cmp(m))
            .map(|i| self.neighbours[i].1)
            .map_err(|_| Refusal::NotANeighbour(m.clone(), self.me.clone()))
    }

    /// Share round: verifies the neighbours' bundles (each signed by the
    /// identity the roster gives it, for this session, a graph neighbour,
    /// once), splits the mask key and self-mask seed among them and
    /// encrypts one pair to each.
    pub fn share<R: RngCore + CryptoRng>(
        &mut self,
        bundles: &[SignedBundle],
        rng: &mut R,
    ) -> Result<Vec<EncryptedShare>, Refusal> {
        if self.round == Round::Share {
            return Ok(self.sent_shares.clone());
        }
        self.require(Round::Advertise)?;
        let mut holders: Vec<Holder> = Vec::with_capacity(bundles.len());
        for b in bundles {
            let m = &b.bundle.member;
            let identity = self.identity_of(m)?;
            b.verify_with(&self.session, &identity)?;
            if holders.iter().any(|h| &h.member == m) {
                return Err(Refusal::Duplicate(m.clone()));
            }
            holders.push(Holder {
                member: m.clone(),
                identity,
                share_pk: b.bundle.share_pk,
                mask_pk: b.bundle.mask_pk,
            });
        }
        holders.sort_by(|a, b| a.member.cmp(&b.member));
        if holders.len() < self.params.min_holders() {
            return Err(Refusal::TooFewNeighbours {
                have: holders.len(),
                need: self.params.min_holders(),
            });
        }
        let mask_secret = self.secrets.mask_secret();
        let mut pair_keys = PairKeys::default();
        for h in &holders {
            let key = pair_key(&mask_secret, &h.mask_pk, &self.session, &self.me, &h.member)
                .ok_or_else(|| Refusal::WeakKey(h.member.clone()))?;
            pair_keys.0.push((h.member.as_str().to_string(), key.0));
        }
        let threshold = self.params.threshold(holders.len());
        let seed_shares = split(self.secrets.self_scalar(), threshold, holders.len(), rng)?;
        let mask_shares = split(self.secrets.mask_scalar(), threshold, holders.len(), rng)?;
        let share_secret = self.secrets.share_secret();
        let mut out = Vec::with_capacity(holders.len());
        for ((h, s), m) in holders.iter().zip(seed_shares).zip(mask_shares) {
            let pair = SharePair {
                self_seed: s,
                mask_key: m,
            };
            out.push(seal(
                &share_secret,
                &h.share_pk,
                &self.session,
                &self.me,
                &h.member,
                &pair,
            )?);
        }
        self.holders = holders;
        self.threshold = threshold;
        self.pair_keys = pair_keys;
        self.sent_shares = out.clone();
        self.round = Round::Share;
        Ok(out)
    }

    /// Mask round: opens the shares neighbours sent to this member, and
    /// masks `input` (one vector per field) with the self mask and the
    /// pairwise masks of the holders whose shares arrived.
    pub fn mask(
        &mut self,
        incoming: &[EncryptedShare],
        input: &[Vec<u64>],
    ) -> Result<MaskedInput, Refusal> {
        if self.round == Round::Mask {
            if let Some(m) = &self.masked {
                return Ok(m.clone());
            }
        }
        self.require(Round::Share)?;
        let mut held = BTreeMap::new();
        let share_secret = self.secrets.share_secret();
        for s in incoming {
            if s.to != self.me {
                return Err(Refusal::BadShare(s.from.clone()));
            }
            let h = self
                .holders
                .iter()
                .find(|h| h.member == s.from)
                .ok_or_else(|| Refusal::NotANeighbour(s.from.clone(), self.me.clone()))?;
            let pair = open(&share_secret, &h.share_pk, &self.session, s)?;
            if held.insert(s.from.clone(), pair).is_some() {
                return Err(Refusal::Duplicate(s.from.clone()));
            }
        }
        if held.len() < self.threshold {
            return Err(Refusal::TooFewNeighbours {
                have: held.len(),
                need: self.threshold,
            });
        }
        let mut vectors = input.to_vec();
        let self_mask = self_key(self.secrets.self_seed(), &self.session, &self.me);
        let mut keys = Vec::with_capacity(held.len());
        for peer in held.keys() {
            let key = self
                .pair_keys
                .0
                .iter()
                .find(|(m, _)| m == peer.as_str())
                .map(|(_, k)| StreamKey(*k))
                .ok_or_else(|| Refusal::NotANeighbour(peer.clone(), self.me.clone()))?;
            keys.push((pair_sign(&self.me, peer), key));
        }
        for (field, v) in vectors.iter_mut().enumerate() {
            apply(&self_mask, field as u32, 1, v);
            for (sign, key) in &keys {
                apply(key, field as u32, *sign, v);
            }
        }
        let masked = MaskedInput {
            member: self.me.clone(),
            partners: held.keys().cloned().collect(),
            vectors,
        };
        self.held = held;
        self.masked = Some(masked.clone());
        self.round = Round::Mask;
        // The share round is over and the masks are applied: the shares
        // sent and the pairwise keys are needed no more (a core keeps
        // this state for the rest of the cycle).
        self.sent_shares = Vec::new();
        self.pair_keys = PairKeys::default();
        Ok(masked)
    }

    /// Confirm round: signs the survivor set, once per cycle. Refuses a
    /// set of another session, one without this member, with members not
    /// in `roster`, or smaller than the minimum; asked to sign a second,
    /// different set, refuses ([`Refusal::Equivocation`]).
    pub fn confirm(
        &mut self,
        set: &SurvivorSet,
        roster: &Roster,
        identity: &SigningKey,
    ) -> Result<Confirmation, Refusal> {
        if set.session != self.session {
            return Err(Refusal::OtherContext("cycle or member list"));
        }
        self.confirm_checked(&set.checked(roster)?, identity)
    }

    /// [`Client::confirm`] for a set already checked against the roster
    /// ([`SurvivorSet::checked`], [`crate::SurvivorBits::checked`]).
    pub fn confirm_checked(
        &mut self,
        checked: &CheckedSet,
        identity: &SigningKey,
    ) -> Result<Confirmation, Refusal> {
        let (set, hash) = (checked.set(), checked.hash());
        if let Some(c) = &self.confirmed {
            return if c.confirmation.set == hash {
                Ok(c.confirmation.clone())
            } else {
                Err(Refusal::Equivocation)
            };
        }
        self.require(Round::Mask)?;
        if set.session != self.session {
            return Err(Refusal::OtherContext("cycle or member list"));
        }
        if !set.contains(&self.me) {
            return Err(Refusal::BadSurvivorSet(
                "this member submitted but is declared dropped",
            ));
        }
        if set.members.len() < self.min_survivors {
            return Err(Refusal::BadSurvivorSet("fewer survivors than the minimum"));
        }
        let c = Confirmation {
            member: self.me.clone(),
            set: hash,
            signature: identity
                .sign(&Confirmation::message(&hash))
                .to_bytes()
                .to_vec(),
        };
        let dropped = self
            .held
            .keys()
            .filter(|m| !set.contains(m))
            .cloned()
            .collect();
        self.confirmed = Some(Confirmed {
            confirmation: c.clone(),
            dropped,
        });
        self.round = Round::Confirm;
        Ok(c)
    }

    /// Reveal round, for the survivor set of hash `set` (the one this
    /// member signed, else [`Refusal::Equivocation`]): once at least the
    /// threshold of this member's holders confirmed it, answers for each
    /// neighbour whose shares it holds: the self-mask seed share if the
    /// neighbour survived, the mask key share if it dropped. Recorded:
    /// asked again, the same answers.
    pub fn reveal(
        &mut self,
        set: &[u8; 32],
        confirmations: &[Confirmation],
    ) -> Result<Reveal, Refusal> {
        let Some(signed) = &self.confirmed else {
            return Err(Refusal::WrongRound {
                expected: Round::Confirm,
                actual: self.round,
            });
        };
        if signed.confirmation.set != *set {
            return Err(Refusal::Equivocation);
        }
        if let Some(r) = &self.revealed {
            return Ok(r.clone());
        }
        let hash = *set;
        let dropped = signed.dropped.clone();
        let mut seen = Vec::new();
        for c in confirmations {
            if c.set != hash || seen.contains(&c.member) {
                continue;
            }
            let Some(h) = self.holders.iter().find(|h| h.member == c.member) else {
                continue;
            };
            if verify_with(
                &h.identity,
                &c.member,
                &Confirmation::message(&hash),
                &c.signature,
            )
            .is_ok()
            {
                seen.push(c.member.clone());
            }
        }
        if seen.len() < self.threshold {
            return Err(Refusal::TooFewConfirmations {
                have: seen.len(),
                need: self.threshold,
            });
        }
        let answers = self
            .held
            .iter()
            .map(|(about, pair)| {
                let (secret, share) = if dropped.binary_search(about).is_err() {
                    (Secret::SelfSeed, pair.self_seed.clone())
                } else {
                    (Secret::MaskKey, pair.mask_key.clone())
                };
                Answer {
                    about: about.clone(),
                    secret,
                    share,
                }
            })
            .collect();
        let r = Reveal {
            member: self.me.clone(),
            set: hash,
            answers,
        };
        self.revealed = Some(r.clone());
        self.round = Round::Reveal;
        Ok(r)
    }
}
