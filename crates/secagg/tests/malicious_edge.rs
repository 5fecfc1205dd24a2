//! The edge as an attacker. Each test plays a dishonest edge, tries an
//! attack on a victim household, then does its best to reconstruct the
//! victim's per-slot contribution from everything it collected; it must
//! fail, and the members must refuse with a typed error. The first test
//! runs the same false-dropout attack against the previous protocol (PRZS
//! with dropout corrections), where it recovers the victim's data exactly:
//! the attack code is effective, so these tests would have caught the old
//! code.

mod common;

use std::collections::BTreeMap;

use common::{Community, FIELDS, MIN, SLOTS, community, key, through_mask};
use pb_secagg::client::MaskedInput;
use pb_secagg::keys::{mask_public, seed_commitment};
use pb_secagg::mask::{pair_mask, self_mask};
use pb_secagg::shares::recover;
use pb_secagg::{
    Client, Confirmation, KeyBundle, Refusal, Reveal, Roster, RosterEntry, Secret, Session,
    SignedRoster, SurvivorSet,
};
use pb_units::MemberId;

/// Everything the attacker can recover from the reveals it collected:
/// each secret whose shares combine to a value matching its commitment.
fn recovered(
    session: &Session,
    bundles: &BTreeMap<MemberId, KeyBundle>,
    reveals: &[Reveal],
) -> BTreeMap<(MemberId, Secret), [u8; 32]> {
    let mut by: BTreeMap<(MemberId, Secret), Vec<_>> = BTreeMap::new();
    for r in reveals {
        for a in &r.answers {
            by.entry((a.about.clone(), a.secret))
                .or_default()
                .push(a.share.clone());
        }
    }
    by.into_iter()
        .filter_map(|((m, s), shares)| {
            let refs: Vec<_> = shares.iter().collect();
            let bytes = recover(&refs)?;
            let b = &bundles[&m];
            let ok = match s {
                Secret::SelfSeed => seed_commitment(session, &m, &bytes) == b.self_commitment,
                Secret::MaskKey => mask_public(&bytes) == b.mask_pk,
            };
            ok.then_some(((m, s), bytes))
        })
        .collect()
}

/// The attacker's best reconstruction of `victim`'s input: its masked
/// vectors minus every mask the attacker can compute.
fn best_guess(
    session: &Session,
    bundles: &BTreeMap<MemberId, KeyBundle>,
    masked: &MaskedInput,
    got: &BTreeMap<(MemberId, Secret), [u8; 32]>,
) -> Vec<Vec<u64>> {
    let v = &masked.member;
    let mut guess = masked.vectors.clone();
    for (f, g) in guess.iter_mut().enumerate() {
        let f32 = f as u32;
        let mut sub = |m: Vec<u64>| {
            for (x, y) in g.iter_mut().zip(m) {
                *x = x.wrapping_sub(y);
            }
        };
        if let Some(seed) = got.get(&(v.clone(), Secret::SelfSeed)) {
            sub(self_mask(seed, session, v, f32, SLOTS));
        }
        for p in &masked.partners {
            let m = if let Some(s) = got.get(&(v.clone(), Secret::MaskKey)) {
                pair_mask(s, &bundles[p].mask_pk, session, v, p, f32, SLOTS)
            } else if let Some(s) = got.get(&(p.clone(), Secret::MaskKey)) {
                pair_mask(s, &bundles[v].mask_pk, session, v, p, f32, SLOTS)
            } else {
                None
            };
            if let Some(m) = m {
                sub(m);
            }
        }
    }
    guess
}

/// The self-mask seed from a member's stored state (what an attacker who
/// also broke into the victim's device would have).
fn stored_seed(client: &Client) -> [u8; 32] {
    let v = serde_json::to_value(client).unwrap();
    let bytes: Vec<u8> = serde_json::from_value(v["secrets"]["self_seed"].clone()).unwrap();
    bytes.try_into().unwrap()
}

fn assert_hidden(guess: &[Vec<u64>], truth: &[Vec<u64>]) {
    let equal = guess
        .iter()
        .flatten()
        .zip(truth.iter().flatten())
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(
        equal,
        0,
        "{equal} of {} slots reconstructed",
        FIELDS * SLOTS
    );
}

fn bundles(clients: &BTreeMap<MemberId, Client>) -> BTreeMap<MemberId, KeyBundle> {
    clients
        .iter()
        .map(|(m, c)| (m.clone(), c.bundle().bundle.clone()))
        .collect()
}

/// Every client confirms `set` (if it accepts it); returns the
/// confirmations.
fn confirm_all(
    c: &Community,
    clients: &mut BTreeMap<MemberId, Client>,
    set: &SurvivorSet,
    who: &[MemberId],
) -> Vec<Confirmation> {
    let roster = c.roster.roster.clone();
    who.iter()
        .filter_map(|m| clients.get_mut(m)?.confirm(set, &roster, c.key_of(m)).ok())
        .collect()
}

#[test]
fn old_przs_edge_recovers_a_falsely_dropped_member_exactly() {
    // The previous protocol: the edge says the victim dropped, every
    // survivor sends its dropout correction, and the victim's submitted
    // vector minus its masks is its data.
    use pb_przs::{IdentityKey, PairwiseKeys};
    use pb_units::{CommunityId, CycleId};
    let c = community(6, 1);
    let community_id = CommunityId("test-community".into());
    let keys: Vec<IdentityKey> = (0..6)
        .map(|i| IdentityKey::from_bytes([i as u8 + 7; 32]))
        .collect();
    let list: Vec<_> = c
        .ids
        .iter()
        .zip(&keys)
        .map(|(m, k)| (m.clone(), k.public()))
        .collect();
    let pk: Vec<PairwiseKeys> = c
        .ids
        .iter()
        .zip(&keys)
        .map(|(m, k)| PairwiseKeys::derive(&community_id, m, k, &list).unwrap())
        .collect();
    let victim = 2;
    let truth = &c.inputs[&c.ids[victim]];
    let mut guess = truth.clone();
    for (f, g) in guess.iter_mut().enumerate() {
        pk[victim].add_mask(CycleId(1), f as u32, g); // what the victim submitted
        for (_, p) in pk.iter().enumerate().filter(|(i, _)| *i != victim) {
            let corr = p
                .dropout_correction(CycleId(1), f as u32, &[c.ids[victim].clone()], SLOTS)
                .unwrap();
            for (x, y) in g.iter_mut().zip(corr) {
                *x = x.wrapping_add(y);
            }
        }
    }
    assert_eq!(&guess, truth, "the old protocol exposes the victim");
}

#[test]
fn malicious_edge_declares_a_submitter_dropped_and_learns_nothing() {
    let mut c = community(8, 2);
    let (server, mut clients, masked) = through_mask(&mut c, 1);
    let victim = c.ids[3].clone();
    let others: Vec<MemberId> = c.ids.iter().filter(|m| **m != victim).cloned().collect();
    let false_set = SurvivorSet {
        session: server.session().clone(),
        members: others.clone(),
    };
    // The victim knows it submitted: it refuses to sign a set without it.
    let roster = c.roster.roster.clone();
    let key = c.key_of(&victim).clone();
    assert!(matches!(
        clients
            .get_mut(&victim)
            .unwrap()
            .confirm(&false_set, &roster, &key),
        Err(Refusal::BadSurvivorSet(_))
    ));
    // Everyone else signs it and reveals: the victim's mask key shares.
    let confs = confirm_all(&c, &mut clients, &false_set, &others);
    let reveals: Vec<Reveal> = others
        .iter()
        .filter_map(|m| clients.get_mut(m)?.reveal(&false_set.hash(), &confs).ok())
        .collect();
    assert_eq!(reveals.len(), others.len());
    let b = bundles(&clients);
    let got = recovered(server.session(), &b, &reveals);
    assert!(got.contains_key(&(victim.clone(), Secret::MaskKey)));
    assert!(!got.contains_key(&(victim.clone(), Secret::SelfSeed)));
    let guess = best_guess(server.session(), &b, &masked[&victim], &got);
    assert_hidden(&guess, &c.inputs[&victim]);
    // The reconstruction is sound: had the edge also got the victim's
    // self-mask seed (here stolen from the victim's own stored state), it
    // would read the data exactly. The protocol is what withholds it.
    let mut stolen = got.clone();
    stolen.insert(
        (victim.clone(), Secret::SelfSeed),
        stored_seed(&clients[&victim]),
    );
    assert_eq!(
        best_guess(server.session(), &b, &masked[&victim], &stolen),
        c.inputs[&victim]
    );
    // Now the edge asks the victim's holders again, with a set that
    // includes the victim, for its self-mask seed: they refuse.
    let true_set = SurvivorSet {
        session: server.session().clone(),
        members: c.ids.clone(),
    };
    for m in &others {
        let client = clients.get_mut(m).unwrap();
        assert_eq!(
            client.confirm(&true_set, &roster, c.key_of(m)),
            Err(Refusal::Equivocation)
        );
        assert_eq!(
            client.reveal(&true_set.hash(), &confs),
            Err(Refusal::Equivocation)
        );
    }
}

#[test]
fn malicious_edge_tells_different_survivors_different_sets() {
    // The edge shows the victim and half its holders a set with the
    // victim (to get its self-mask seed), the other half a set without it
    // (to get its mask key).
    let mut c = community(8, 3);
    let (server, mut clients, masked) = through_mask(&mut c, 1);
    let victim = c.ids[0].clone();
    let with = SurvivorSet {
        session: server.session().clone(),
        members: c.ids.clone(),
    };
    let without = SurvivorSet {
        session: server.session().clone(),
        members: c.ids[1..].to_vec(),
    };
    let half_a: Vec<MemberId> = c.ids[..4].to_vec(); // victim + 3 holders
    let half_b: Vec<MemberId> = c.ids[4..].to_vec(); // 4 holders
    let mut confs = confirm_all(&c, &mut clients, &with, &half_a);
    confs.extend(confirm_all(&c, &mut clients, &without, &half_b));
    let mut reveals = Vec::new();
    for (set, who) in [(&with, &half_a), (&without, &half_b)] {
        for m in who {
            match clients.get_mut(m).unwrap().reveal(&set.hash(), &confs) {
                Ok(r) => reveals.push(r),
                Err(e) => assert!(matches!(e, Refusal::TooFewConfirmations { .. }), "{e}"),
            }
        }
    }
    // Neither half reaches the threshold of confirmations from its holders
    // on one set: nobody reveals anything.
    assert!(reveals.is_empty());
    // Forged confirmations do not count either.
    let forged: Vec<Confirmation> = c.ids[1..]
        .iter()
        .map(|m| Confirmation {
            member: m.clone(),
            set: with.hash(),
            signature: vec![7; 64],
        })
        .collect();
    assert!(matches!(
        clients
            .get_mut(&c.ids[1])
            .unwrap()
            .reveal(&with.hash(), &forged),
        Err(Refusal::TooFewConfirmations { .. })
    ));
    let b = bundles(&clients);
    let got = recovered(server.session(), &b, &reveals);
    assert!(
        !(got.contains_key(&(victim.clone(), Secret::SelfSeed))
            && got.contains_key(&(victim.clone(), Secret::MaskKey)))
    );
    let guess = best_guess(server.session(), &b, &masked[&victim], &got);
    assert_hidden(&guess, &c.inputs[&victim]);
}

#[test]
fn malicious_edge_hands_a_victim_its_own_roster_or_swapped_peer_keys() {
    let mut c = community(6, 4);
    let victim = c.ids[0].clone();
    let victim_key = c.key_of(&victim).clone();
    let pinned = c.pinned();
    // A roster padded with members the edge controls, signed by the edge.
    let edge_key = key(&mut c.rng);
    let mut entries = c.roster.roster.members.clone();
    for i in 0..5 {
        entries.push(RosterEntry {
            member: MemberId::new(format!("sybil{i}")).unwrap(),
            identity: key(&mut c.rng).verifying_key().to_bytes(),
        });
    }
    let forged = SignedRoster::sign(
        Roster::new("test-community", 2, entries).unwrap(),
        &edge_key,
    );
    assert_eq!(
        Client::start(&forged, &pinned, MIN, 1, &victim, &victim_key, &mut c.rng).err(),
        Some(Refusal::RosterSignature)
    );
    // The operator's roster with one byte changed: the signature breaks.
    let mut tampered = c.roster.clone();
    tampered.roster.members[1].identity = edge_key.verifying_key().to_bytes();
    assert_eq!(
        Client::start(&tampered, &pinned, MIN, 1, &victim, &victim_key, &mut c.rng).err(),
        Some(Refusal::RosterSignature)
    );
    // A list below the minimum size is refused.
    assert!(matches!(
        Client::start(&c.roster, &pinned, 7, 1, &victim, &victim_key, &mut c.rng),
        Err(Refusal::TooFewMembers { have: 6, need: 7 })
    ));
    // Swapped peer keys: the edge replaces a neighbour's bundle with keys
    // it made, signed by itself.
    let server = c.server(1);
    let mut v = c.client(&victim, 1);
    let mut fake_rng = c.rng.clone();
    let peer = c.ids[1].clone();
    let peers = c.ids[1..].to_vec();
    let mut swapped: Vec<_> = peers
        .iter()
        .map(|m| c.client(m, 1).bundle().clone())
        .collect();
    let edge_secrets = pb_secagg::keys::CycleSecrets::generate(&mut fake_rng);
    swapped[0] = edge_secrets.bundle(server.session(), &peer, &edge_key);
    assert_eq!(
        v.share(&swapped, &mut c.rng),
        Err(Refusal::BadSignature(peer.clone()))
    );
    // A bundle for a member that is not in the roster.
    swapped[0] = edge_secrets.bundle(
        server.session(),
        &MemberId::new("sybil0").unwrap(),
        &edge_key,
    );
    assert!(matches!(
        v.share(&swapped, &mut c.rng),
        Err(Refusal::NotANeighbour(..))
    ));
    assert_eq!(v.round(), pb_secagg::Round::Advertise, "state unchanged");
}

#[test]
fn malicious_edge_replays_an_old_cycles_messages() {
    let mut c = community(6, 5);
    let (old_server, old_clients, _) = through_mask(&mut c, 1);
    let victim = c.ids[0].clone();
    let mut fresh = c.client(&victim, 2);
    // Old bundles: signed for cycle 1.
    let old: Vec<_> = old_clients
        .iter()
        .filter(|(m, _)| **m != victim)
        .map(|(_, cl)| cl.bundle().clone())
        .collect();
    assert_eq!(
        fresh.share(&old, &mut c.rng),
        Err(Refusal::OtherContext("cycle"))
    );
    // Old shares, once the victim is in the share round of cycle 2.
    let mut s = c.server(2);
    s.advertise(fresh.bundle().clone()).unwrap();
    for m in &c.ids[1..].to_vec() {
        let cl = c.client(m, 2);
        s.advertise(cl.bundle().clone()).unwrap();
    }
    s.close_advertise().unwrap();
    fresh
        .share(&s.bundles_for(&victim).unwrap(), &mut c.rng)
        .unwrap();
    let old_shares = old_server.shares_for(&victim).unwrap();
    let input = c.inputs[&victim].clone();
    assert!(matches!(
        fresh.mask(&old_shares, &input),
        Err(Refusal::BadShare(_))
    ));
    assert_eq!(fresh.round(), pb_secagg::Round::Share, "state unchanged");
    // An old survivor set, shown to a member at the confirm step of cycle 2.
    let old_set = SurvivorSet {
        session: old_server.session().clone(),
        members: c.ids.clone(),
    };
    let (_, mut new_clients, _) = through_mask(&mut c, 2);
    let roster = c.roster.roster.clone();
    assert_eq!(
        new_clients
            .get_mut(&victim)
            .unwrap()
            .confirm(&old_set, &roster, c.key_of(&victim)),
        Err(Refusal::OtherContext("cycle or member list"))
    );
    // And an old confirmation is refused by the edge of cycle 2.
    let mut cl = old_clients;
    let conf = cl
        .get_mut(&victim)
        .unwrap()
        .confirm(&old_set, &roster, c.key_of(&victim))
        .unwrap();
    let (mut s2, _, _) = through_mask(&mut c, 2);
    s2.close_mask().unwrap();
    assert_eq!(s2.confirm(conf), Err(Refusal::Equivocation));
}

#[test]
fn malicious_edge_asks_a_core_twice_for_the_same_neighbour() {
    let mut c = community(6, 6);
    let (server, mut clients, _) = through_mask(&mut c, 1);
    let set = SurvivorSet {
        session: server.session().clone(),
        members: c.ids.clone(),
    };
    let confs = confirm_all(&c, &mut clients, &set, &c.ids.clone());
    let m = c.ids[1].clone();
    let first = clients
        .get_mut(&m)
        .unwrap()
        .reveal(&set.hash(), &confs)
        .unwrap();
    // The same question: the same answers, nothing new.
    assert_eq!(
        clients
            .get_mut(&m)
            .unwrap()
            .reveal(&set.hash(), &confs)
            .unwrap(),
        first
    );
    // A different set (the first neighbour now "dropped"): refused.
    let other = SurvivorSet {
        session: server.session().clone(),
        members: c.ids[1..].to_vec(),
    };
    assert_eq!(
        clients.get_mut(&m).unwrap().reveal(&other.hash(), &confs),
        Err(Refusal::Equivocation)
    );
    // After a restart (the state as the core stores it), still refused.
    let cfg = bincode::config::standard();
    let stored = bincode::serde::encode_to_vec(&clients[&m], cfg).unwrap();
    let (mut restarted, _): (Client, usize) =
        bincode::serde::decode_from_slice(&stored, cfg).unwrap();
    assert_eq!(
        restarted.reveal(&other.hash(), &confs),
        Err(Refusal::Equivocation)
    );
    let roster = c.roster.roster.clone();
    assert_eq!(
        restarted.confirm(&other, &roster, c.key_of(&m)),
        Err(Refusal::Equivocation)
    );
    assert_eq!(restarted.reveal(&set.hash(), &confs).unwrap(), first);
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let mut c = community(6, 7);
    let (mut server, mut clients, _) = through_mask(&mut c, 1);
    let m = c.ids[2].clone();
    // A survivor set smaller than the minimum.
    let small = SurvivorSet {
        session: server.session().clone(),
        members: vec![c.ids[1].clone(), m.clone()],
    };
    let roster = c.roster.roster.clone();
    assert!(matches!(
        clients
            .get_mut(&m)
            .unwrap()
            .confirm(&small, &roster, c.key_of(&m)),
        Err(Refusal::BadSurvivorSet(_))
    ));
    assert_eq!(clients[&m].round(), pb_secagg::Round::Mask);
    // A member answering for a neighbour it holds no share of, or with
    // the wrong kind of share, is refused by the edge.
    let set = server.close_mask().unwrap();
    let confs = confirm_all(&c, &mut clients, &set, &c.ids.clone());
    for conf in &confs {
        server.confirm(conf.clone()).unwrap();
    }
    let mut r = clients
        .get_mut(&m)
        .unwrap()
        .reveal(&set.hash(), &confs)
        .unwrap();
    r.answers[0].about = MemberId::new("stranger").unwrap();
    assert!(matches!(
        server.reveal(r.clone()),
        Err(Refusal::BadAnswer(..))
    ));
    let mut r2 = clients
        .get_mut(&m)
        .unwrap()
        .reveal(&set.hash(), &confs)
        .unwrap();
    r2.answers[0].secret = Secret::MaskKey;
    assert!(matches!(server.reveal(r2), Err(Refusal::BadAnswer(..))));
    // Unsigned and forged bundles, malformed shares.
    let mut fresh = c.server(2);
    let mut b = c.client(&m, 2).bundle().clone();
    b.signature.clear();
    assert_eq!(
        fresh.advertise(b.clone()),
        Err(Refusal::BadSignature(m.clone()))
    );
    b.signature = vec![1; 64];
    assert_eq!(fresh.advertise(b), Err(Refusal::BadSignature(m.clone())));
    let (_, mut cl2, _) = {
        let mut s = c.server(3);
        let mut cls = BTreeMap::new();
        for id in &c.ids.clone() {
            let cl = c.client(id, 3);
            s.advertise(cl.bundle().clone()).unwrap();
            cls.insert(id.clone(), cl);
        }
        s.close_advertise().unwrap();
        let mut shares = BTreeMap::new();
        for (id, cl) in cls.iter_mut() {
            let sh = cl.share(&s.bundles_for(id).unwrap(), &mut c.rng).unwrap();
            shares.insert(id.clone(), sh.clone());
            s.share(id, sh).unwrap();
        }
        s.close_share().unwrap();
        let mut incoming = s.shares_for(&m).unwrap();
        incoming[0].ciphertext.truncate(10);
        let input = c.inputs[&m].clone();
        assert!(matches!(
            cls.get_mut(&m).unwrap().mask(&incoming, &input),
            Err(Refusal::BadShare(_))
        ));
        let mut cut = shares[&m].clone();
        cut.pop();
        assert_eq!(
            s.share(&m, cut),
            Err(Refusal::WrongRound {
                expected: pb_secagg::Round::Share,
                actual: pb_secagg::Round::Mask
            })
        );
        (s, cls, shares)
    };
    assert_eq!(
        cl2.get_mut(&m).unwrap().round(),
        pb_secagg::Round::Share,
        "state unchanged"
    );
}

#[test]
fn malicious_edge_with_colluding_members_still_learns_nothing() {
    // 30 members tolerate floor(5% of 30) = 1 colluder: the edge also
    // holds everything one of the victim's neighbours knows (its stored
    // state: its own secrets and the shares it holds of the victim's).
    let mut c = community(30, 8);
    let (server, mut clients, masked) = through_mask(&mut c, 1);
    assert_eq!(server.params().colluding, 1);
    let victim = c.ids[0].clone();
    let traitor = c.ids[1].clone();
    let others: Vec<MemberId> = c.ids[1..].to_vec();
    let false_set = SurvivorSet {
        session: server.session().clone(),
        members: others.clone(),
    };
    let confs = confirm_all(&c, &mut clients, &false_set, &others);
    let mut reveals: Vec<Reveal> = others
        .iter()
        .filter_map(|m| clients.get_mut(m)?.reveal(&false_set.hash(), &confs).ok())
        .collect();
    // The traitor adds its share of the victim's self-mask seed.
    let state = serde_json::to_value(&clients[&traitor]).unwrap();
    let share: pb_secagg::shares::SecretShare =
        serde_json::from_value(state["held"][victim.as_str()]["self_seed"].clone()).unwrap();
    reveals.push(Reveal {
        member: traitor.clone(),
        set: false_set.hash(),
        answers: vec![pb_secagg::Answer {
            about: victim.clone(),
            secret: Secret::SelfSeed,
            share,
        }],
    });
    let b = bundles(&clients);
    let mut got = recovered(server.session(), &b, &reveals);
    assert!(!got.contains_key(&(victim.clone(), Secret::SelfSeed)));
    // And its own mask key, which gives its pairwise mask with the victim.
    let own: Vec<u8> = serde_json::from_value(state["secrets"]["mask_key"].clone()).unwrap();
    got.insert((traitor.clone(), Secret::MaskKey), own.try_into().unwrap());
    let guess = best_guess(server.session(), &b, &masked[&victim], &got);
    assert_hidden(&guess, &c.inputs[&victim]);
}

#[test]
fn a_low_order_key_is_refused_by_the_edge_and_by_the_neighbours() {
    // A bundle with a low-order X25519 mask key (here u = 0) would make
    // every pairwise mask with it known to all. The honest edge refuses it;
    // forwarded by a malicious edge, the neighbour refuses to mask with it.
    let mut c = community(5, 9);
    let (weak, victim) = (c.ids[1].clone(), c.ids[0].clone());
    let mut server = c.server(1);
    let session = server.session().clone();
    let secrets = pb_secagg::keys::CycleSecrets::generate(&mut c.rng);
    let mut body = secrets.bundle(&session, &weak, c.key_of(&weak)).bundle;
    body.mask_pk = [0; 32];
    let bad = body.sign(c.key_of(&weak));
    assert_eq!(
        server.advertise(bad.clone()),
        Err(Refusal::WeakKey(weak.clone()))
    );
    let mut v = c.client(&victim, 1);
    let ids = c.ids.clone();
    let mut bundles: Vec<_> = ids[2..]
        .iter()
        .map(|m| c.client(m, 1).bundle().clone())
        .collect();
    bundles.push(bad);
    assert_eq!(v.share(&bundles, &mut c.rng), Err(Refusal::WeakKey(weak)));
    assert_eq!(v.round(), pb_secagg::Round::Advertise, "state unchanged");
}
