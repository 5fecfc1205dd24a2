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
            .reveal(&set, &server.confirmations_for(m))
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
