//! Honest cycles: the unmasked sum is exactly the survivors' sum, whoever
//! vanishes at whichever round, as long as every needed secret has enough
//! shares; otherwise the edge says whom it waits for.

mod common;

use common::{Dropouts, community, run};
use pb_secagg::{Refusal, Round};
use proptest::prelude::*;

#[test]
fn everyone_present_gives_the_exact_sum() {
    for n in [3, 4, 7, 12] {
        let mut c = community(n, n as u64);
        let r = run(&mut c, 1, &Dropouts::default());
        let all = c.ids.clone();
        assert_eq!(r.result.unwrap(), c.sum(&all), "n = {n}");
        assert_eq!(r.server.round(), Round::Done);
    }
}

#[test]
fn a_sparse_graph_masks_with_k_neighbours_only() {
    // 400 members: k is below n - 1, every member sends k shares and
    // learns k bundles, whatever n is.
    let mut c = community(400, 9);
    let r = run(&mut c, 1, &Dropouts::default());
    let k = r.server.params().degree;
    assert!(k < 399, "k = {k}");
    for client in r.clients.values().take(20) {
        assert_eq!(client.neighbours().count(), k);
        assert_eq!(client.holders().0.len(), k);
    }
    for m in r.masked.values().take(20) {
        assert_eq!(m.partners.len(), k);
    }
    assert_eq!(r.result.unwrap(), c.sum(&c.ids.clone()));
}

#[test]
fn dropouts_at_every_round_leave_the_survivors_exact_sum() {
    let mut c = community(12, 3);
    let drops = Dropouts {
        before_advertise: vec![0],
        before_share: vec![1],
        before_mask: vec![2],
        before_confirm: vec![3],
        before_reveal: vec![4],
    };
    let r = run(&mut c, 1, &drops);
    let set = r.set.clone().unwrap();
    // Members 0-2 never submitted: not survivors. 3 and 4 submitted, so
    // their data is in the sum although they vanished afterwards.
    assert!(!set.contains(&c.ids[2]) && set.contains(&c.ids[3]) && set.contains(&c.ids[4]));
    assert_eq!(r.result.unwrap(), c.sum(&set.members));
}

#[test]
fn too_many_vanished_holders_make_the_edge_wait_and_say_for_whom() {
    // 7 members, complete graph, threshold 4 of 6 holders: three members
    // vanishing before the reveal leave too few answers for some secrets.
    let mut c = community(7, 5);
    let drops = Dropouts {
        before_reveal: vec![0, 1, 2],
        ..Dropouts::default()
    };
    let r = run(&mut c, 1, &drops);
    match r.result {
        Err(Refusal::NotEnoughShares { waiting }) => {
            assert_eq!(
                waiting,
                vec![c.ids[0].clone(), c.ids[1].clone(), c.ids[2].clone()]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.server.progress().waiting.len(), 3);
    // The running count the edge asks before unmasking agrees.
    assert!(!r.server.complete());
}

#[test]
fn too_few_members_in_a_round_refuse_to_go_on() {
    let mut c = community(4, 6);
    let drops = Dropouts {
        before_share: vec![0, 1],
        ..Dropouts::default()
    };
    let r = run(&mut c, 1, &drops);
    assert_eq!(r.result, Err(Refusal::TooFewMembers { have: 2, need: 3 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Masks cancel: any pattern of a few dropouts gives the survivors' sum.
    #[test]
    fn masks_cancel_for_any_dropout_pattern(seed in any::<u64>(), n in 8usize..20) {
        let mut c = community(n, seed);
        let pick = |k: u64| ((seed >> (8 * k)) as usize) % n;
        let drops = Dropouts {
            before_share: vec![pick(0)],
            before_mask: vec![pick(1)],
            before_reveal: vec![pick(2)],
            ..Dropouts::default()
        };
        let r = run(&mut c, seed % 1000, &drops);
        let set = r.set.clone().unwrap();
        prop_assert_eq!(r.result.unwrap(), c.sum(&set.members));
    }
}

#[test]
fn a_wrong_share_from_one_member_is_left_out() {
    let mut c = common::community(9, 11);
    let (mut server, mut clients, _) = common::through_mask(&mut c, 1);
    let set = server.close_mask().unwrap();
    let roster = c.roster.roster.clone();
    for (m, client) in clients.iter_mut() {
        server
            .confirm(client.confirm(&set, &roster, c.key_of(m)).unwrap())
            .unwrap();
    }
    let ids = c.ids.clone();
    for (i, m) in ids.iter().enumerate() {
        let mut r = clients
            .get_mut(m)
            .unwrap()
            .reveal(&set.hash(), &server.confirmations_for(m))
            .unwrap();
        if i == 0 {
            // A lying member: every share it reveals is off by one bit.
            for a in &mut r.answers {
                a.share.y[0] ^= 1;
            }
        }
        server.reveal(r).unwrap();
    }
    assert!(server.complete());
    assert_eq!(server.unmask().unwrap(), c.sum(&ids));
}

#[test]
fn the_survivor_set_travels_as_one_bit_per_roster_member() {
    let mut c = community(40, 21);
    let drops = Dropouts {
        before_mask: vec![3, 17],
        ..Dropouts::default()
    };
    let r = run(&mut c, 1, &drops);
    let set = r.set.clone().unwrap();
    let roster = c.roster.roster.clone();
    let bits = r.server.survivor_bits().unwrap().clone();
    assert_eq!(bits.bits.len(), 5, "40 members, 5 bytes");
    assert_eq!(bits.count(), 38);
    assert_eq!(bits.expand(&roster).unwrap(), set);
    let checked = bits.checked(&roster).unwrap();
    assert_eq!(checked.hash(), set.hash());
    // Bits for another length, a bit past the end, or another roster's
    // session are refused.
    let mut short = bits.clone();
    short.bits.pop();
    assert!(matches!(
        short.expand(&roster),
        Err(Refusal::BadSurvivorSet(_))
    ));
    let mut longer = bits.clone();
    longer.members = 41;
    assert!(matches!(
        longer.expand(&roster),
        Err(Refusal::BadSurvivorSet(_))
    ));
    let mut other = community(37, 22);
    let r37 = run(&mut other, 1, &Dropouts::default());
    let mut stray = r37.server.survivor_bits().unwrap().clone();
    stray.bits[4] |= 0x80; // member 39 of 37
    assert!(matches!(
        stray.expand(&other.roster.roster),
        Err(Refusal::BadSurvivorSet(_))
    ));
    assert!(matches!(
        bits.expand(&other.roster.roster),
        Err(Refusal::OtherContext(_))
    ));
}

#[test]
fn a_confirmed_member_keeps_the_sets_hash_not_the_set() {
    // 400 members: the set lists 400 ids, the state must not grow by them.
    let mut c = community(400, 23);
    let cycle = 1;
    let mut server = c.server(cycle);
    let ids = c.ids.clone();
    let mut clients: Vec<_> = ids.iter().map(|m| c.client(m, cycle)).collect();
    for cl in &clients {
        server.advertise(cl.bundle().clone()).unwrap();
    }
    server.close_advertise().unwrap();
    for (m, cl) in ids.iter().zip(clients.iter_mut()) {
        let shares = cl
            .share(&server.bundles_for(m).unwrap(), &mut c.rng)
            .unwrap();
        server.share(m, shares).unwrap();
    }
    server.close_share().unwrap();
    for (m, cl) in ids.iter().zip(clients.iter_mut()) {
        let masked = cl
            .mask(&server.shares_for(m).unwrap(), &c.inputs[m])
            .unwrap();
        server.submit(masked).unwrap();
    }
    let set = server.close_mask().unwrap();
    let encoded = |cl: &pb_secagg::Client| {
        bincode::serde::encode_to_vec(cl, bincode::config::standard())
            .unwrap()
            .len()
    };
    // An edge that clears a submitter's bit (declares it dropped) is
    // refused by that member, and the member's state does not change.
    let mut dropped = server.survivor_bits().unwrap().clone();
    dropped.bits[0] &= !0b10; // member 1
    let checked = dropped.checked(&c.roster.roster).unwrap();
    let state = encoded(&clients[1]);
    assert!(matches!(
        clients[1].confirm_checked(&checked, c.key_of(&ids[1])),
        Err(Refusal::BadSurvivorSet(_))
    ));
    assert_eq!(encoded(&clients[1]), state);
    assert!(clients[1].confirmed().is_none());
    let before = encoded(&clients[0]);
    let conf = clients[0]
        .confirm(&set, &c.roster.roster, c.key_of(&ids[0]))
        .unwrap();
    let grew = encoded(&clients[0]) - before;
    assert!(grew < 200, "the state grew by {grew} bytes on confirming");
    assert_eq!(clients[0].confirmed(), Some(&conf));
    assert_eq!(conf.set, set.hash());
}
