//! Streaming billing ([`CycleBiller`]) gives bit-identical bills to the
//! in-memory `SharedBilling::compute_bills_with`, whatever the batching.

mod common;

use common::{Lcg, context, households};
use pb_glwe::seeding::deterministic;
use pb_glwe::{CompactPublicKey, SecretKey};
use pb_hiding::{HiddenBill, HiddenData, HidingContext};
use pb_model::{Aggregates, BillingModel, CycleContext, Data, reference};
use pb_shared_billing::{BillingError, ComputeBackend, CpuBackend, CycleBiller, SharedBilling};
use pb_units::{CommunityId, CycleId, MemberId};
use proptest::prelude::*;

/// A community's hidden data with unmasked contributions (each household's
/// pairwise keys are with nobody, as under SecAgg+), its keys, and the
/// aggregates in clear.
struct Setup {
    ctx: CycleContext,
    data: Vec<Data>,
    hiding: Vec<HidingContext>,
    hidden: Vec<HiddenData>,
    keys: Vec<CompactPublicKey>,
    aggregates: Aggregates,
}

fn setup(n: usize, slots: usize, model: BillingModel, seed: u64) -> Setup {
    let mut rng = Lcg(seed);
    let ctx = context(model, slots, &mut rng);
    let data = households(n, slots, &mut rng);
    let mut seeder = deterministic(seed as u128 | 1 << 90);
    let mut hiding = Vec::new();
    let mut keys = Vec::new();
    let mut hidden = Vec::new();
    for d in &data {
        let h = HidingContext::for_secagg(
            &CommunityId("s".into()),
            d.member(),
            SecretKey::generate(&mut seeder),
        );
        keys.push(h.public_key(&mut seeder));
        hidden.push(h.hide(d, &ctx, &mut seeder).unwrap());
        hiding.push(h);
    }
    let vectors: Vec<_> = data.iter().map(Data::vectors).collect();
    let aggregates = Aggregates::in_clear(model, slots, &vectors);
    Setup {
        ctx,
        data,
        hiding,
        hidden,
        keys,
        aggregates,
    }
}

fn in_memory(s: &Setup, seed: [u8; 32]) -> Vec<HiddenBill> {
    let mut edge = SharedBilling::with_seed(Box::new(CpuBackend::new()), seed);
    for (d, k) in s.hidden.iter().zip(&s.keys) {
        edge.register_member(d.member.clone(), k.clone()).unwrap();
    }
    edge.record_context(s.ctx.clone()).unwrap();
    for d in &s.hidden {
        edge.record_data(d.clone()).unwrap();
    }
    edge.compute_bills_with(s.ctx.cycle(), s.aggregates.clone())
        .unwrap()
}

/// The households in member order (as a store's key range reads them),
/// billed `batch` at a time.
fn streamed(s: &Setup, seed: [u8; 32], batch: usize) -> Vec<HiddenBill> {
    let backend = CpuBackend::new();
    let biller = CycleBiller::new(
        &s.ctx,
        &s.aggregates,
        s.hidden.iter().map(|d| d.member.clone()),
        3,
        seed,
    )
    .unwrap();
    let mut rows: Vec<(HiddenData, CompactPublicKey)> = s
        .hidden
        .iter()
        .cloned()
        .zip(s.keys.iter().cloned())
        .collect();
    rows.sort_by(|a, b| a.0.member.cmp(&b.0.member));
    let mut out = Vec::new();
    for chunk in rows.chunks(batch) {
        out.extend(biller.bill_batch(&backend, chunk).unwrap());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// Batches of 1, 3 and all give exactly the in-memory bills, for every
    /// model.
    #[test]
    fn streamed_bills_are_bit_identical_to_in_memory_bills(
        n in 3usize..=9, slots in 1usize..=96, model_ix in 0usize..3,
        seed in any::<u64>(), edge_seed in any::<[u8; 32]>(),
    ) {
        let s = setup(n, slots, BillingModel::ALL[model_ix], seed);
        let want = in_memory(&s, edge_seed);
        for batch in [1, 3, n] {
            prop_assert_eq!(&streamed(&s, edge_seed, batch), &want, "batch {}", batch);
        }
        // And they decrypt to the plaintext model's bills.
        let plain = reference::bills(&s.ctx, &s.data).unwrap();
        for (b, w) in want.iter().zip(&plain) {
            let h = s.hiding.iter().find(|h| h.member() == &b.member).unwrap();
            prop_assert_eq!(&h.decrypt(b).unwrap(), w);
        }
    }
}

#[test]
fn the_order_of_a_batch_does_not_change_a_bill() {
    let s = setup(5, 24, BillingModel::Ucs, 3);
    let want = in_memory(&s, [9; 32]);
    let biller = CycleBiller::new(
        &s.ctx,
        &s.aggregates,
        s.hidden.iter().rev().map(|d| d.member.clone()),
        3,
        [9; 32],
    )
    .unwrap();
    let rows: Vec<_> = s
        .hidden
        .iter()
        .cloned()
        .zip(s.keys.iter().cloned())
        .rev()
        .collect();
    let mut got = biller.bill_batch(&CpuBackend::new(), &rows).unwrap();
    got.reverse();
    assert_eq!(got, want);
}

#[test]
fn bad_batches_and_cycles_get_typed_errors() {
    let s = setup(4, 8, BillingModel::Proportional, 5);
    let backend = CpuBackend::new();
    let members = || s.hidden.iter().map(|d| d.member.clone());
    // Too few members, or one listed twice: refused before any work.
    assert!(matches!(
        CycleBiller::new(&s.ctx, &s.aggregates, members().take(2), 3, [0; 32]),
        Err(BillingError::TooFewMembers {
            have: 2,
            need: 3,
            ..
        })
    ));
    assert!(matches!(
        CycleBiller::new(
            &s.ctx,
            &s.aggregates,
            members().chain(members().take(1)),
            3,
            [0; 32]
        ),
        Err(BillingError::Malformed(_))
    ));
    // Aggregates of another model cannot give the weights.
    assert!(matches!(
        CycleBiller::new(&s.ctx, &Aggregates::default(), members(), 3, [0; 32]),
        Err(BillingError::Model(_))
    ));
    // Households outside the billed set, twice in a batch, of another
    // cycle, model or shape, or with a malformed key are refused.
    let biller = CycleBiller::new(&s.ctx, &s.aggregates, members().skip(1), 3, [0; 32]).unwrap();
    let row = |i: usize| (s.hidden[i].clone(), s.keys[i].clone());
    assert!(matches!(
        biller.bill_batch(&backend, &[row(0)]),
        Err(BillingError::NotInCycle { .. })
    ));
    assert!(matches!(
        biller.bill_batch(&backend, &[row(1), row(1)]),
        Err(BillingError::AlreadySubmitted { .. })
    ));
    let mut other = row(1);
    other.0.cycle = CycleId(8);
    assert!(matches!(
        biller.bill_batch(&backend, &[other]),
        Err(BillingError::ContextMismatch { what: "cycle", .. })
    ));
    let mut other = row(1);
    other.0.model = BillingModel::Ucs;
    assert!(matches!(
        biller.bill_batch(&backend, &[other]),
        Err(BillingError::ContextMismatch {
            what: "billing model",
            ..
        })
    ));
    let mut other = row(1);
    other.0.ciphertexts.clear();
    assert!(matches!(
        biller.bill_batch(&backend, &[other]),
        Err(BillingError::Malformed(_))
    ));
    let mut other = row(1);
    other.1.0.body.pop();
    assert_eq!(
        biller.bill_batch(&backend, &[other]),
        Err(BillingError::BadPublicKey(s.hidden[1].member.clone()))
    );
    let stranger = MemberId::new("stranger").unwrap();
    let mut other = row(1);
    other.0.member = stranger;
    assert!(matches!(
        biller.bill_batch(&backend, &[other]),
        Err(BillingError::NotInCycle { .. })
    ));
    // An empty batch is no work.
    assert_eq!(biller.bill_batch(&backend, &[]), Ok(vec![]));
    assert!(backend.preferred_batch() >= 64);
}
