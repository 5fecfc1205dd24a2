//! End-to-end properties of the cryptographic pipeline, in one process.

mod common;

use common::{Lcg, context, households};
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_hiding::wire::{DecodeError, Wire};
use pb_hiding::{HiddenBill, HiddenData, HidingContext};
use pb_model::{BillingModel, CycleContext, Data, reference};
use pb_przs::{IdentityKey, PairwiseKeys};
use pb_shared_billing::community::run_local;
use pb_shared_billing::{BillingError, CpuBackend, CycleStatus, SharedBilling};
use pb_units::limits::{MAX_PRICE_UNITS, MAX_SLOT_WH};
use pb_units::{CommunityId, CycleId, Money, PriceUnits, Wh};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    /// Encrypted bills equal the plaintext reference exactly, for every
    /// model, community size and cycle length.
    #[test]
    fn encrypted_bills_equal_plaintext_bills(
        n in 3usize..=40, slots in 1usize..=2880, model_ix in 0usize..3, seed in any::<u64>(),
    ) {
        let mut rng = Lcg(seed);
        let ctx = context(BillingModel::ALL[model_ix], slots, &mut rng);
        let data = households(n, slots, &mut rng);
        let run = run_local(&ctx, &data, Box::new(CpuBackend::new()), 3, Some(seed)).unwrap();
        prop_assert_eq!(run.bills, reference::bills(&ctx, &data).unwrap());
    }
}

#[test]
fn every_model_matches_on_a_week_of_slots() {
    for model in BillingModel::ALL {
        let mut rng = Lcg(42);
        let ctx = context(model, 672, &mut rng);
        let data = households(5, 672, &mut rng);
        let run = run_local(&ctx, &data, Box::new(CpuBackend::new()), 3, Some(1)).unwrap();
        assert_eq!(run.bills, reference::bills(&ctx, &data).unwrap(), "{model}");
        assert!(
            run.sizes.upload <= 160 * 1024,
            "upload {} bytes",
            run.sizes.upload
        );
        assert!(
            run.sizes.download <= 300 * 1024,
            "download {} bytes",
            run.sizes.download
        );
    }
}

fn flat_context(model: BillingModel, slots: usize, price: i64) -> CycleContext {
    let p = vec![PriceUnits(price); slots];
    CycleContext::new(CycleId(7), model, p.clone(), p.clone(), p).unwrap()
}

fn flat_household(i: usize, slots: usize, wh: i64) -> Data {
    let v = vec![Wh(wh); slots];
    Data::new(
        pb_units::MemberId::new(format!("h{i}")).unwrap(),
        CycleId(7),
        v.clone(),
        v,
    )
    .unwrap()
}

#[test]
fn totals_at_the_range_bound_decrypt_exactly() {
    // 17 slots at the largest price and energy: 1.7e13 money units, the
    // largest energy cost the context limit allows (2^44), half the
    // decodable 2^45 - 1, the other half being kept for imbalance charges.
    // Consumers pay it, producers at a negative price "earn" minus it.
    let slots = 17;
    let ctx = flat_context(BillingModel::Ucs, slots, MAX_PRICE_UNITS);
    let data = vec![
        flat_household(0, slots, MAX_SLOT_WH),
        flat_household(1, slots, MAX_SLOT_WH),
        flat_household(2, slots, -MAX_SLOT_WH),
    ];
    let run = run_local(&ctx, &data, Box::new(CpuBackend::new()), 3, Some(3)).unwrap();
    assert_eq!(
        run.bills[0].bill,
        Money(17 * MAX_PRICE_UNITS as i128 * MAX_SLOT_WH as i128)
    );
    assert_eq!(run.bills, reference::bills(&ctx, &data).unwrap());

    let ctx = flat_context(BillingModel::Ucs, slots, -MAX_PRICE_UNITS);
    let run = run_local(&ctx, &data, Box::new(CpuBackend::new()), 3, Some(4)).unwrap();
    assert_eq!(
        run.bills[2].reward,
        Money(-17 * MAX_PRICE_UNITS as i128 * MAX_SLOT_WH as i128)
    );
    assert_eq!(run.bills, reference::bills(&ctx, &data).unwrap());
}

#[test]
fn cycles_that_could_overflow_are_refused_before_encryption_results_leave() {
    // One slot more and the prices alone could take a bill past the
    // context limit: refused when the context is built, in currency.
    let p = vec![PriceUnits(MAX_PRICE_UNITS); 18];
    let err = CycleContext::new(CycleId(7), BillingModel::Ucs, p.clone(), p.clone(), p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("180000.00000000 currency"), "{err}");
    // Aggregates whose imbalance rates break the budget are refused by
    // the edge before anything is evaluated (tests/limits.rs has more).
    let ctx = flat_context(BillingModel::Ucs, 1, MAX_PRICE_UNITS);
    let ctx = CycleContext::new(
        CycleId(7),
        BillingModel::Ucs,
        vec![PriceUnits(0)],
        ctx.retail().to_vec(),
        vec![PriceUnits(0)],
    )
    .unwrap();
    let h = |id: &str, u: i64, x: i64| {
        Data::new(
            pb_units::MemberId::new(id).unwrap(),
            CycleId(7),
            vec![Wh(u)],
            vec![Wh(x)],
        )
        .unwrap()
    };
    // a over-consumes by 99 kWh: it alone pays (r - p) * 99 kWh = 9,900
    // currency for one slot, beyond the noise budget.
    let data = vec![h("a", 1_000, MAX_SLOT_WH), h("b", 0, 0), h("c", 0, 0)];
    let err = run_local(&ctx, &data, Box::new(CpuBackend::new()), 3, Some(5)).unwrap_err();
    assert!(
        err.to_string().starts_with("slot 0: the imbalance rate"),
        "{err}"
    );
}

/// A community set up by hand, for the state-machine tests.
struct Community {
    ctx: CycleContext,
    data: Vec<Data>,
    hiding: Vec<HidingContext>,
    edge: SharedBilling,
    hidden: Vec<HiddenData>,
}

fn community(n: usize, slots: usize, model: BillingModel) -> Community {
    let mut rng = Lcg(99);
    let ctx = context(model, slots, &mut rng);
    let data = households(n, slots, &mut rng);
    let mut chacha = ChaCha20Rng::seed_from_u64(1);
    let ids: Vec<IdentityKey> = data
        .iter()
        .map(|_| IdentityKey::generate(&mut chacha))
        .collect();
    let list: Vec<_> = data
        .iter()
        .zip(&ids)
        .map(|(d, k)| (d.member().clone(), k.public()))
        .collect();
    let mut seeder = deterministic(11);
    let mut edge = SharedBilling::with_seed(Box::new(CpuBackend::new()), [1; 32])
        .with_community(CommunityId("t".into()));
    let hiding: Vec<HidingContext> = data
        .iter()
        .zip(&ids)
        .map(|(d, k)| {
            let keys =
                PairwiseKeys::derive(&CommunityId("t".into()), d.member(), k, &list).unwrap();
            let h = HidingContext::new(keys, SecretKey::generate(&mut seeder));
            edge.register_member(d.member().clone(), h.public_key(&mut seeder))
                .unwrap();
            h
        })
        .collect();
    edge.record_context(ctx.clone()).unwrap();
    let hidden = data
        .iter()
        .zip(&hiding)
        .map(|(d, h)| h.hide(d, &ctx, &mut seeder).unwrap())
        .collect();
    Community {
        ctx,
        data,
        hiding,
        edge,
        hidden,
    }
}

#[test]
fn survivors_are_billed_after_a_dropout_and_late_data_is_refused() {
    let mut c = community(6, 48, BillingModel::Ucs);
    for h in &c.hidden[1..] {
        c.edge.record_data(h.clone()).unwrap();
    }
    assert_eq!(
        c.edge.status(CycleId(7)).unwrap(),
        CycleStatus::Collecting { waiting: 1 }
    );
    let missing = c.edge.declare_dropouts(CycleId(7)).unwrap();
    assert_eq!(missing, vec![c.data[0].member().clone()]);
    // The late submission would expose the member: refused, nothing changes.
    assert!(matches!(
        c.edge.record_data(c.hidden[0].clone()),
        Err(BillingError::DroppedOut { .. })
    ));
    assert_eq!(
        c.edge.status(CycleId(7)).unwrap(),
        CycleStatus::Collecting { waiting: 5 }
    );
    for h in &c.hiding[1..] {
        c.edge
            .record_correction(h.dropout_correction(&c.ctx, &missing).unwrap())
            .unwrap();
    }
    assert!(c.edge.is_ready(CycleId(7)));
    // The aggregates the edge learns are the survivors' exact totals.
    let agg = c.edge.aggregates(CycleId(7)).unwrap();
    let survivors: Vec<_> = c.data[1..].iter().map(Data::vectors).collect();
    assert_eq!(
        agg,
        pb_model::Aggregates::in_clear(BillingModel::Ucs, 48, &survivors)
    );
    let bills = c.edge.compute_bills(CycleId(7)).unwrap();
    let want = reference::bills(&c.ctx, &c.data[1..]).unwrap();
    for ((h, b), w) in c.hiding[1..].iter().zip(&bills).zip(&want) {
        assert_eq!(h.decrypt(b).unwrap(), *w);
    }
    // Never billed twice.
    assert_eq!(
        c.edge.compute_bills(CycleId(7)).unwrap_err(),
        BillingError::AlreadyBilled(CycleId(7))
    );
}

#[test]
fn hidden_data_of_another_community_is_refused_and_changes_nothing() {
    let mut c = community(4, 24, BillingModel::Ucs);
    assert_eq!(c.edge.community(), Some(&CommunityId("t".into())));
    assert_eq!(c.hidden[0].community, CommunityId("t".into()));
    // Another community whose members have the same ids (and, here, even
    // the same identity keys): its data looks like ours but for the name.
    let mut chacha = ChaCha20Rng::seed_from_u64(5);
    let ids: Vec<IdentityKey> = c
        .data
        .iter()
        .map(|_| IdentityKey::generate(&mut chacha))
        .collect();
    let list: Vec<_> = c
        .data
        .iter()
        .zip(&ids)
        .map(|(d, k)| (d.member().clone(), k.public()))
        .collect();
    let other = CommunityId("u".into());
    let keys = PairwiseKeys::derive(&other, c.data[0].member(), &ids[0], &list).unwrap();
    let mut seeder = deterministic(12);
    let foreign = HidingContext::new(keys, SecretKey::generate(&mut seeder));
    assert_eq!(foreign.community(), &other);
    let theirs = foreign.hide(&c.data[0], &c.ctx, &mut seeder).unwrap();
    assert_eq!(theirs.member, c.hidden[0].member);
    assert_eq!(theirs.cycle, c.hidden[0].cycle);
    let err = c.edge.record_data(theirs.clone()).unwrap_err();
    assert_eq!(
        err,
        BillingError::OtherCommunity {
            expected: "t".into(),
            found: "u".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "data of community \"u\", this billing authority bills community \"t\""
    );
    // Nothing changed: the member can still submit its own data, once.
    assert_eq!(
        c.edge.status(CycleId(7)).unwrap(),
        CycleStatus::Collecting { waiting: 4 }
    );
    c.edge.record_data(c.hidden[0].clone()).unwrap();
    assert_eq!(
        c.edge.status(CycleId(7)).unwrap(),
        CycleStatus::Collecting { waiting: 3 }
    );
    // Still refused once the member has submitted (the community is checked
    // first, whatever else is wrong).
    assert!(matches!(
        c.edge.record_data(theirs.clone()),
        Err(BillingError::OtherCommunity { .. })
    ));
    // The community survives the wire.
    let back = HiddenData::from_bytes(&theirs.to_bytes()).unwrap();
    assert_eq!(back.community, other);
    // A billing authority bound to no community (SharedBilling::new,
    // with_seed) does not check it.
    let mut unbound = SharedBilling::with_seed(Box::new(CpuBackend::new()), [3; 32]);
    assert_eq!(unbound.community(), None);
    unbound
        .register_member(c.data[0].member().clone(), foreign.public_key(&mut seeder))
        .unwrap();
    unbound.record_context(c.ctx.clone()).unwrap();
    unbound.record_data(theirs).unwrap();
}

#[test]
fn bad_submissions_get_typed_errors_and_change_nothing() {
    let mut c = community(4, 24, BillingModel::Proportional);
    c.edge.record_data(c.hidden[0].clone()).unwrap();
    let before = c.edge.status(CycleId(7)).unwrap();

    assert!(matches!(
        c.edge.record_data(c.hidden[0].clone()),
        Err(BillingError::AlreadySubmitted { .. })
    ));
    let mut wrong_cycle = c.hidden[1].clone();
    wrong_cycle.cycle = CycleId(8);
    assert_eq!(
        c.edge.record_data(wrong_cycle),
        Err(BillingError::NoContext(CycleId(8)))
    );
    let mut wrong_model = c.hidden[1].clone();
    wrong_model.model = BillingModel::Ucs;
    assert!(matches!(
        c.edge.record_data(wrong_model),
        Err(BillingError::ContextMismatch { .. })
    ));
    let mut short = c.hidden[1].clone();
    short.masked[2].pop();
    assert!(matches!(
        c.edge.record_data(short),
        Err(BillingError::Malformed(_))
    ));
    let mut no_ct = c.hidden[1].clone();
    no_ct.ciphertexts.clear();
    assert!(matches!(
        c.edge.record_data(no_ct),
        Err(BillingError::Malformed(_))
    ));
    let mut stranger = c.hidden[1].clone();
    stranger.member = pb_units::MemberId::new("stranger").unwrap();
    assert!(matches!(
        c.edge.record_data(stranger),
        Err(BillingError::NotInCycle { .. })
    ));
    assert!(matches!(
        c.edge.compute_bills(CycleId(7)),
        Err(BillingError::NotReady { .. })
    ));
    assert!(matches!(
        c.edge.record_correction(
            c.hiding[0]
                .dropout_correction(&c.ctx, &[c.data[3].member().clone()])
                .unwrap()
        ),
        Err(BillingError::UnexpectedCorrection(_))
    ));
    assert_eq!(c.edge.status(CycleId(7)).unwrap(), before);

    // The cycle still completes with the right bills.
    for h in &c.hidden[1..] {
        c.edge.record_data(h.clone()).unwrap();
    }
    let bills = c.edge.compute_bills(CycleId(7)).unwrap();
    let want = reference::bills(&c.ctx, &c.data).unwrap();
    for ((h, b), w) in c.hiding.iter().zip(&bills).zip(&want) {
        assert_eq!(h.decrypt(b).unwrap(), *w);
    }
    // A household cannot decrypt someone else's bill.
    assert!(c.hiding[0].decrypt(&bills[1]).is_err());
}

#[test]
fn too_few_members_are_never_billed() {
    let mut c = community(3, 8, BillingModel::Ucs);
    for h in &c.hidden[..2] {
        c.edge.record_data(h.clone()).unwrap();
    }
    assert!(matches!(
        c.edge.declare_dropouts(CycleId(7)),
        Err(BillingError::TooFewMembers {
            have: 2,
            need: 3,
            ..
        })
    ));
    assert!(c.edge.dropped(CycleId(7)).unwrap().is_empty());
}

#[test]
fn serialization_round_trips_and_rejects_bad_bytes() {
    let mut c = community(3, 96, BillingModel::Ucs);
    let bytes = c.hidden[0].to_bytes();
    assert_eq!(HiddenData::from_bytes(&bytes).unwrap(), c.hidden[0]);
    assert_eq!(
        HiddenData::from_bytes(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        HiddenData::from_bytes(&bytes[..3]),
        Err(DecodeError::Truncated)
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(HiddenData::from_bytes(&long), Err(DecodeError::Trailing(1)));
    assert!(matches!(
        HiddenData::from_bytes(&vec![0u8; 2 << 20]),
        Err(DecodeError::Oversized { .. })
    ));
    let mut version = bytes.clone();
    version[4] = 9;
    assert_eq!(
        HiddenData::from_bytes(&version),
        Err(DecodeError::Version(9))
    );
    assert!(matches!(
        HiddenBill::from_bytes(&bytes),
        Err(DecodeError::Kind { .. }) | Err(DecodeError::Oversized { .. })
    ));
    let mut inconsistent = c.hidden[0].clone();
    inconsistent.masked.pop();
    assert!(matches!(
        HiddenData::from_bytes(&inconsistent.to_bytes()),
        Err(DecodeError::Inconsistent(_))
    ));
    // A huge claimed length inside the body is refused without allocating it.
    let mut claim = bytes[..6].to_vec();
    claim.extend_from_slice(&[0xff; 64]);
    assert!(HiddenData::from_bytes(&claim).is_err());

    for h in &c.hidden {
        c.edge.record_data(h.clone()).unwrap();
    }
    let bills = c.edge.compute_bills(CycleId(7)).unwrap();
    let b = bills[0].to_bytes();
    assert_eq!(HiddenBill::from_bytes(&b).unwrap(), bills[0]);
    assert_eq!(
        HiddenBill::from_bytes(&b[..b.len() - 8]),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn same_randomness_gives_bit_identical_hidden_bills() {
    let run = || {
        let mut c = community(3, 16, BillingModel::Ucs);
        for h in &c.hidden {
            c.edge.record_data(h.clone()).unwrap();
        }
        c.edge.compute_bills(CycleId(7)).unwrap()
    };
    assert_eq!(run(), run());
}
