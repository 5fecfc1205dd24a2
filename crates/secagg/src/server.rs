//! The edge's side of one cycle, for a community run in one process: the
//! rounds' state ([`Rounds`]) and, in memory, what it checks but does not
//! keep (the encrypted shares, the masked inputs, the revealed answers).
//! An edge serving many members keeps those in its store instead and
//! drives [`Rounds`] itself. It holds nothing it could read a household's
//! data from: shares are encrypted to their holders, and for any member
//! it can recover either the self-mask seed (survivor) or the mask key
//! (dropped), never both (see [`crate::params`]).
//!
//! Every call either advances the cycle or returns a [`Refusal`] and
//! changes nothing; a message received twice is accepted once (the same
//! message again is not an error, a different one is).

use std::collections::BTreeMap;

use pb_units::MemberId;

use crate::client::MaskedInput;
use crate::keys::SignedBundle;
use crate::params::GraphParams;
use crate::roster::{Roster, SignedRoster};
pub use crate::rounds::Progress;
use crate::rounds::Rounds;
use crate::shares::{EncryptedShare, Reveal, Secret, SecretShare};
use crate::{Confirmation, Refusal, Round, Session, SurvivorBits, SurvivorSet};

/// The edge's state of one cycle, with its shares, inputs and answers in
/// memory.
#[derive(Debug)]
pub struct Server {
    rounds: Rounds,
    shares: BTreeMap<MemberId, Vec<EncryptedShare>>,
    inputs: BTreeMap<MemberId, MaskedInput>,
    reveals: BTreeMap<MemberId, Reveal>,
}

impl Server {
    /// A cycle over `roster` (signed by the pinned operator key), for
    /// vectors of `fields` fields of `slots` values; at least
    /// `min_survivors` members must survive every round.
    pub fn new(
        roster: &SignedRoster,
        pinned_operator: &[u8; 32],
        cycle: u64,
        min_survivors: usize,
        fields: usize,
        slots: usize,
    ) -> Result<Server, Refusal> {
        Ok(Server {
            rounds: Rounds::new(roster, pinned_operator, cycle, min_survivors, fields, slots)?,
            shares: BTreeMap::new(),
            inputs: BTreeMap::new(),
            reveals: BTreeMap::new(),
        })
    }

    /// The rounds' state.
    pub fn rounds(&self) -> &Rounds {
        &self.rounds
    }
    /// The session.
    pub fn session(&self) -> &Session {
        self.rounds.session()
    }
    /// The graph parameters.
    pub fn params(&self) -> &GraphParams {
        self.rounds.params()
    }
    /// The current round.
    pub fn round(&self) -> Round {
        self.rounds.round()
    }
    /// The announced survivor set (from the confirm round on).
    pub fn survivor_set(&self) -> Option<&SurvivorSet> {
        self.rounds.survivor_set()
    }
    /// The announced survivor set as the members fetch it.
    pub fn survivor_bits(&self) -> Option<&SurvivorBits> {
        self.rounds.survivor_bits()
    }
    /// The member list the cycle runs on.
    pub fn roster(&self) -> &Roster {
        self.rounds.roster()
    }

    /// Advertise round: a member's signed key bundle.
    pub fn advertise(&mut self, bundle: SignedBundle) -> Result<(), Refusal> {
        if let Some(step) = self.rounds.check_advertise(&bundle)? {
            self.rounds.apply(step)?;
        }
        Ok(())
    }

    /// Ends the advertise round (everyone advertised, or its deadline).
    pub fn close_advertise(&mut self) -> Result<(), Refusal> {
        self.rounds.close_advertise()
    }

    /// The bundles a member needs: its neighbours that advertised.
    pub fn bundles_for(&self, m: &MemberId) -> Result<Vec<SignedBundle>, Refusal> {
        self.rounds.bundles_for(m)
    }

    /// Share round: a member's encrypted shares, exactly one to each of its
    /// holders.
    pub fn share(&mut self, from: &MemberId, shares: Vec<EncryptedShare>) -> Result<(), Refusal> {
        if let Some(step) = self.rounds.check_share(from, &shares)? {
            self.rounds.apply(step)?;
            self.shares.insert(from.clone(), shares);
        }
        Ok(())
    }

    /// Ends the share round.
    pub fn close_share(&mut self) -> Result<(), Refusal> {
        self.rounds.close_share()
    }

    /// The shares addressed to `m` by neighbours that shared.
    pub fn shares_for(&self, m: &MemberId) -> Result<Vec<EncryptedShare>, Refusal> {
        self.rounds.check_shares_for(m)?;
        Ok(self
            .rounds
            .partners_of(m)
            .iter()
            .filter_map(|v| self.shares.get(v))
            .flat_map(|s| s.iter().filter(|s| &s.to == m).cloned())
            .collect())
    }

    /// Mask round: a member's masked vectors, masked with exactly its
    /// partners.
    pub fn submit(&mut self, input: MaskedInput) -> Result<(), Refusal> {
        if let Some(step) = self.rounds.check_submit(&input)? {
            self.rounds.apply(step)?;
            self.inputs.insert(input.member.clone(), input);
        }
        Ok(())
    }

    /// Whether [`Server::submit`] would accept `input` (so that a caller
    /// can check other conditions before anything changes).
    pub fn check_submit(&self, input: &MaskedInput) -> Result<(), Refusal> {
        self.rounds.check_submit(input).map(|_| ())
    }

    /// Whether `m`'s message of `round` was accepted.
    pub fn has_message(&self, round: Round, m: &MemberId) -> bool {
        self.rounds.has_message(round, m)
    }

    /// Whether `m`'s masked input is in.
    pub fn has_input(&self, m: &MemberId) -> bool {
        self.rounds.has_input(m)
    }

    /// Ends the mask round and announces the survivor set: the members
    /// whose masked vectors arrived.
    pub fn close_mask(&mut self) -> Result<SurvivorSet, Refusal> {
        self.rounds.close_mask()
    }

    /// Whether every secret the unmasking needs has its threshold of
    /// answers.
    pub fn complete(&self) -> bool {
        self.rounds.complete()
    }

    /// Survivors that have not revealed yet (cheap: `O(n)`).
    pub fn not_revealed(&self) -> Vec<MemberId> {
        self.rounds.not_revealed()
    }

    /// Confirm round: a survivor's signature over the set.
    pub fn confirm(&mut self, c: Confirmation) -> Result<(), Refusal> {
        if let Some(step) = self.rounds.check_confirm(&c)? {
            self.rounds.apply(step)?;
        }
        Ok(())
    }

    /// The confirmations a member checks: those of its holders.
    pub fn confirmations_for(&self, m: &MemberId) -> Vec<Confirmation> {
        self.rounds.confirmations_for(m)
    }

    /// Reveal round: a survivor's answers, one per neighbour whose shares
    /// it holds, of the kind the survivor set calls for.
    pub fn reveal(&mut self, r: Reveal) -> Result<(), Refusal> {
        if let Some(step) = self.rounds.check_reveal(&r)? {
            self.rounds.apply(step)?;
            self.reveals.insert(r.member.clone(), r);
        }
        Ok(())
    }

    /// Where the cycle stands and whom the edge waits for.
    pub fn progress(&self) -> Progress {
        self.rounds.progress()
    }

    /// Recovers every needed secret and returns the sum of the survivors'
    /// vectors. Refuses with the members it still waits for, or names a
    /// member whose recovered secret does not match its commitment.
    pub fn unmask(&mut self) -> Result<Vec<Vec<u64>>, Refusal> {
        let job = self.rounds.unmask_job()?;
        let mut by: BTreeMap<(&MemberId, Secret), Vec<SecretShare>> = BTreeMap::new();
        for r in self.reveals.values() {
            for a in &r.answers {
                by.entry((&a.about, a.secret))
                    .or_default()
                    .push(a.share.clone());
            }
        }
        let sums = job.run(
            |batch| {
                Ok::<_, Refusal>(
                    batch
                        .iter()
                        .map(|n| by.get(&(&n.about, n.secret)).cloned().unwrap_or_default())
                        .collect(),
                )
            },
            |batch| {
                batch
                    .iter()
                    .map(|s| {
                        self.inputs
                            .get(&s.member)
                            .map(|i| i.vectors.clone())
                            .ok_or_else(|| Refusal::BadInput(s.member.clone(), "input missing"))
                    })
                    .collect()
            },
        );
        let sums = match sums {
            Err(Refusal::NotEnoughShares { .. }) => {
                return Err(Refusal::NotEnoughShares {
                    waiting: self.rounds.waiting_for_reveals(),
                });
            }
            other => other?,
        };
        self.rounds.finish_unmask();
        Ok(sums)
    }

    /// Marks the cycle unmasked.
    pub fn finish_unmask(&mut self) {
        self.rounds.finish_unmask();
    }
}
