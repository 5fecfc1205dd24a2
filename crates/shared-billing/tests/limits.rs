//! One set of limits: the encrypted pipeline and the plaintext path
//! (`pbill simulate --plaintext`) accept and refuse exactly the same
//! communities, near the limits too, and refuse with the same message.

mod common;

use common::Lcg;
use pb_model::{BillingModel, CycleContext, Data};
use pb_shared_billing::CpuBackend;
use pb_shared_billing::community::{plaintext_bills, run_local};
use pb_units::limits::{MAX_PRICE_UNITS, MAX_SLOT_WH};
use pb_units::{CycleId, MemberId, PriceUnits, Wh};
use proptest::prelude::*;

/// A value near the edge of `[-limit, limit]`, or small, or zero.
fn near(rng: &mut Lcg, limit: i64) -> i64 {
    match rng.range(0, 4) {
        0 => 0,
        1 => rng.range(-limit / 1000, limit / 1000),
        2 => rng.range(limit - limit / 50, limit),
        3 => -rng.range(limit - limit / 50, limit),
        _ => rng.range(-limit, limit),
    }
}

fn community(seed: u64, n: usize, slots: usize, model: BillingModel) -> (CycleContext, Vec<Data>) {
    let mut rng = Lcg(seed);
    let mut price = || PriceUnits(near(&mut rng, MAX_PRICE_UNITS));
    let p: Vec<_> = (0..slots).map(|_| price()).collect();
    let r: Vec<_> = (0..slots).map(|_| price()).collect();
    let f: Vec<_> = (0..slots).map(|_| price()).collect();
    // At most 4 slots: these prices are always within the context budget,
    // so acceptance is decided by the aggregates.
    let ctx = CycleContext::new(CycleId(1), model, p, r, f).expect("context within budget");
    let mut rng = Lcg(seed ^ 0x5555);
    let households = (0..n)
        .map(|i| {
            let mut v = || -> Vec<Wh> {
                (0..slots)
                    .map(|_| Wh(near(&mut rng, MAX_SLOT_WH)))
                    .collect()
            };
            let (u, x) = (v(), v());
            Data::new(MemberId::new(format!("h{i}")).unwrap(), CycleId(1), u, x).unwrap()
        })
        .collect();
    (ctx, households)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn plaintext_and_encrypted_accept_and_refuse_the_same(
        seed in any::<u64>(), n in 2usize..5, slots in 1usize..5, model_ix in 0usize..3,
    ) {
        let model = BillingModel::ALL[model_ix];
        let (ctx, hs) = community(seed, n, slots, model);
        let plain = plaintext_bills(&ctx, &hs, 2);
        let enc = run_local(&ctx, &hs, Box::new(CpuBackend::new()), 2, Some(seed));
        match (&plain, &enc) {
            (Ok(p), Ok(e)) => prop_assert_eq!(p, &e.bills),
            (Err(p), Err(e)) => prop_assert_eq!(p.to_string(), e.to_string()),
            _ => prop_assert!(false, "plaintext {:?} but encrypted {:?}", plain.map(|_| ()), enc.map(|_| ())),
        }
    }
}

#[test]
fn both_paths_refuse_an_overflowing_imbalance_in_currency() {
    // One slot, retail far above trading, one member over-consumes by 99
    // kWh: its UCS share is (r - p) * |TD| = 9,900 currency for the slot,
    // beyond what the noise budget allows one slot.
    let ctx = CycleContext::new(
        CycleId(1),
        BillingModel::Ucs,
        vec![PriceUnits(0)],
        vec![PriceUnits(MAX_PRICE_UNITS)],
        vec![PriceUnits(0)],
    )
    .unwrap();
    let h = |i: usize, u: i64, x: i64| {
        Data::new(
            MemberId::new(format!("h{i}")).unwrap(),
            CycleId(1),
            vec![Wh(u)],
            vec![Wh(x)],
        )
        .unwrap()
    };
    let hs = vec![h(0, 1_000, MAX_SLOT_WH), h(1, 0, 0), h(2, 0, 0)];
    let plain = plaintext_bills(&ctx, &hs, 2).unwrap_err().to_string();
    let enc = run_local(&ctx, &hs, Box::new(CpuBackend::new()), 2, Some(1))
        .unwrap_err()
        .to_string();
    assert_eq!(plain, enc);
    assert!(
        plain.starts_with("slot 0: the imbalance rate of"),
        "{plain}"
    );
    assert!(plain.contains("currency"), "{plain}");
}

#[test]
fn both_paths_refuse_fewer_than_three_households() {
    let (ctx, hs) = community(3, 2, 2, BillingModel::Ucs);
    for (min, n) in [(0, 1), (1, 2), (2, 2)] {
        let plain = plaintext_bills(&ctx, &hs[..n], min)
            .unwrap_err()
            .to_string();
        let enc = run_local(&ctx, &hs[..n], Box::new(CpuBackend::new()), min, Some(1))
            .unwrap_err()
            .to_string();
        assert!(plain.contains("at least 3"), "{plain}");
        assert_eq!(plain, enc);
    }
}
