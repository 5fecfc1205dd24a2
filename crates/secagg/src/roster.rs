//! The community's member list, signed by the operator's enrolment key.
//!
//! Cores learn their peers' identities only from a roster whose signature
//! verifies with the operator key pinned in their configuration, so the
//! edge can neither add members it controls nor swap a member's identity.
//! The fingerprint is shown to each household, which can compare it out of
//! band; every key bundle signs it, so neighbours confirm to each other
//! that they saw the same list.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use pb_units::MemberId;
use serde::{Deserialize, Serialize};

use crate::params::{GraphParams, Tolerance};
use crate::{Refusal, hash};

/// One member: its id and its enrolled Ed25519 identity (its core's node
/// key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// The household.
    pub member: MemberId,
    /// Its core's Ed25519 public key.
    pub identity: [u8; 32],
}

/// The member list of one version, with the tolerances the masking graph
/// is sized for (so that every party derives the same parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The community.
    pub community: String,
    /// Increases with every change of membership.
    pub version: u64,
    /// Tolerated fraction of dropouts, in thousandths.
    pub dropout_permille: u32,
    /// Tolerated fraction of members colluding with the edge, in
    /// thousandths.
    pub collusion_permille: u32,
    /// Members, sorted by id, no id or identity twice.
    pub members: Vec<RosterEntry>,
}

impl Roster {
    /// A roster from entries in any order, with the default tolerances;
    /// refuses a member or identity listed twice.
    pub fn new(
        community: impl Into<String>,
        version: u64,
        mut members: Vec<RosterEntry>,
    ) -> Result<Roster, Refusal> {
        members.sort_by(|a, b| a.member.cmp(&b.member));
        let t = Tolerance::default();
        let r = Roster {
            community: community.into(),
            version,
            dropout_permille: (t.dropout * 1000.0).round() as u32,
            collusion_permille: (t.collusion * 1000.0).round() as u32,
            members,
        };
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), Refusal> {
        let mut ids = BTreeSet::new();
        for w in self.members.windows(2) {
            if w[0].member >= w[1].member {
                return Err(Refusal::RosterMalformed(format!(
                    "{} is listed twice or out of order",
                    w[1].member
                )));
            }
        }
        for e in &self.members {
            if !ids.insert(e.identity) {
                return Err(Refusal::RosterMalformed(format!(
                    "the identity of {} is also another member's",
                    e.member
                )));
            }
            if VerifyingKey::from_bytes(&e.identity).is_err() {
                return Err(Refusal::RosterMalformed(format!(
                    "the identity of {} is not an Ed25519 key",
                    e.member
                )));
            }
        }
        Ok(())
    }

    /// The tolerances the graph is sized for.
    pub fn tolerance(&self) -> Tolerance {
        Tolerance {
            dropout: f64::from(self.dropout_permille) / 1000.0,
            collusion: f64::from(self.collusion_permille) / 1000.0,
        }
    }

    /// The graph parameters of this roster.
    pub fn params(&self) -> Result<GraphParams, Refusal> {
        GraphParams::choose(self.members.len(), self.tolerance())
            .map_err(|e| Refusal::RosterMalformed(e.to_string()))
    }

    /// The fingerprint households compare: SHA-256 over the community,
    /// version, tolerances and every entry.
    pub fn fingerprint(&self) -> [u8; 32] {
        let version = self.version.to_le_bytes();
        let tol = [
            self.dropout_permille.to_le_bytes(),
            self.collusion_permille.to_le_bytes(),
        ]
        .concat();
        let mut parts: Vec<&[u8]> = vec![self.community.as_bytes(), &version, &tol];
        for e in &self.members {
            parts.push(e.member.as_str().as_bytes());
            parts.push(&e.identity);
        }
        hash("pbill/secagg/roster/v1", &parts)
    }

    /// The entry of `member`.
    pub fn entry(&self, member: &MemberId) -> Option<&RosterEntry> {
        self.members
            .binary_search_by(|e| e.member.cmp(member))
            .ok()
            .map(|i| &self.members[i])
    }

    /// The member ids, sorted.
    pub fn ids(&self) -> Vec<MemberId> {
        self.members.iter().map(|e| e.member.clone()).collect()
    }

    /// Verifies `signature` by `member`'s identity over `message`.
    pub(crate) fn verify(
        &self,
        member: &MemberId,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        let entry = self
            .entry(member)
            .ok_or_else(|| Refusal::NotInRoster(member.clone()))?;
        verify_with(&entry.identity, member, message, signature)
    }
}

/// Verifies `signature` over `message` by the Ed25519 `identity` of
/// `member`.
pub(crate) fn verify_with(
    identity: &[u8; 32],
    member: &MemberId,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    let bad = || Refusal::BadSignature(member.clone());
    let key = VerifyingKey::from_bytes(identity).map_err(|_| bad())?;
    let sig = Signature::from_slice(signature).map_err(|_| bad())?;
    key.verify_strict(message, &sig).map_err(|_| bad())
}

/// A short, readable form of a fingerprint: 16 hex digits in groups of 4.
pub fn show_fingerprint(f: &[u8; 32]) -> String {
    f[..8]
        .chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join("-")
}

/// A roster and the operator's signature over its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    /// The list.
    pub roster: Roster,
    /// The operator's enrolment key (Ed25519).
    pub operator: [u8; 32],
    /// Signature over the fingerprint.
    pub signature: Vec<u8>,
}

fn signed_message(fingerprint: &[u8; 32]) -> Vec<u8> {
    let mut m = b"pbill/secagg/roster-signature/v1".to_vec();
    m.extend_from_slice(fingerprint);
    m
}

impl SignedRoster {
    /// Signs `roster` with the operator's enrolment key.
    pub fn sign(roster: Roster, operator: &SigningKey) -> SignedRoster {
        let signature = operator
            .sign(&signed_message(&roster.fingerprint()))
            .to_bytes()
            .to_vec();
        SignedRoster {
            roster,
            operator: operator.verifying_key().to_bytes(),
            signature,
        }
    }

    /// Checks the signature against the operator key pinned by the caller
    /// (never the key the roster names) and the roster's form and size.
    pub fn verify(
        &self,
        pinned_operator: &[u8; 32],
        min_members: usize,
    ) -> Result<&Roster, Refusal> {
        if &self.operator != pinned_operator {
            return Err(Refusal::RosterSignature);
        }
        let key =
            VerifyingKey::from_bytes(pinned_operator).map_err(|_| Refusal::RosterSignature)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| Refusal::RosterSignature)?;
        key.verify_strict(&signed_message(&self.roster.fingerprint()), &sig)
            .map_err(|_| Refusal::RosterSignature)?;
        self.roster.check()?;
        if self.roster.members.len() < min_members {
            return Err(Refusal::TooFewMembers {
                have: self.roster.members.len(),
                need: min_members,
            });
        }
        Ok(&self.roster)
    }
}
