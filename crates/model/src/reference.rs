//! Plaintext reference: bills straight from the formulas of design
//! section 5, slot by slot, without weights, masks or ciphertexts.

use pb_units::Money;

use crate::{BillingModel, CycleContext, Data, ModelError, div_round_half_away};

/// Bills of all households of a cycle, in the order given.
pub fn bills(ctx: &CycleContext, households: &[Data]) -> Result<Vec<crate::Bill>, ModelError> {
    let t_count = ctx.slots();
    for d in households {
        if d.slots() != t_count {
            return Err(ModelError::Length {
                field: "household data",
                expected: t_count,
                found: d.slots(),
            });
        }
    }
    let vectors: Vec<_> = households.iter().map(Data::vectors).collect();
    let mut out = vec![(0i128, 0i128); households.len()];
    for t in 0..t_count {
        let p = ctx.trading()[t].0 as i128;
        let r = ctx.retail()[t].0 as i128;
        let f = ctx.feed_in()[t].0 as i128;
        let sum = |get: fn(&crate::SlotVectors) -> &Vec<i64>| {
            vectors.iter().map(|v| get(v)[t] as i128).sum::<i128>()
        };
        let td = sum(|v| &v.dev);
        let imbalance_cost_c = (r - p) * -td; // charged when td < 0
        let imbalance_cost_s = (p - f) * td; // lost when td > 0
        // The slot's community sums, once per slot (not once per
        // household: that was quadratic in the community's size).
        let (nc, np) = match ctx.model() {
            BillingModel::Ucs => (sum(|v| &v.fc), sum(|v| &v.fp)),
            BillingModel::UcsReference => (sum(|v| &v.ac).max(1), sum(|v| &v.ap).max(1)),
            BillingModel::Proportional => (sum(|v| &v.oc), sum(|v| &v.op)),
        };
        for (v, acc) in vectors.iter().zip(out.iter_mut()) {
            let mut bill = p * v.ca[t] as i128 + r * v.cr[t] as i128;
            let mut reward = p * v.sa[t] as i128 + f * v.sr[t] as i128;
            match ctx.model() {
                BillingModel::Ucs | BillingModel::UcsReference => {
                    if td < 0 && nc > 0 && v.fc[t] == 1 {
                        bill += div_round_half_away(imbalance_cost_c, nc);
                    }
                    if td > 0 && np > 0 && v.fp[t] == 1 {
                        reward -= div_round_half_away(imbalance_cost_s, np);
                    }
                }
                BillingModel::Proportional => {
                    let (soc, sop) = (nc, np);
                    if td < 0 && soc > 0 {
                        bill += div_round_half_away(imbalance_cost_c, soc) * v.oc[t] as i128;
                    }
                    if td > 0 && sop > 0 {
                        reward -= div_round_half_away(imbalance_cost_s, sop) * v.op[t] as i128;
                    }
                }
            }
            acc.0 += bill;
            acc.1 += reward;
        }
    }
    Ok(out
        .into_iter()
        .map(|(b, r)| crate::Bill {
            bill: Money(b),
            reward: Money(r),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aggregate, Aggregates, BillingModel};
    use pb_units::{CycleId, MemberId, PriceUnits, Wh};
    use proptest::prelude::*;

    fn ctx(model: BillingModel, p: &[i64], r: &[i64], f: &[i64]) -> CycleContext {
        let v = |x: &[i64]| x.iter().map(|&y| PriceUnits(y)).collect();
        CycleContext::new(CycleId(1), model, v(p), v(r), v(f)).unwrap()
    }

    fn household(i: usize, u: &[i64], x: &[i64]) -> Data {
        let v = |x: &[i64]| x.iter().map(|&y| Wh(y)).collect();
        Data::new(
            MemberId::new(format!("h{i}")).unwrap(),
            CycleId(1),
            v(u),
            v(x),
        )
        .unwrap()
    }

    #[test]
    fn ucs_is_cost_neutral_on_a_worked_example() {
        // One slot, p = 20, r = 30, f = 5 (price units). Two consumers promised
        // 100 Wh each and used 150 and 130; a producer delivered as promised.
        let c = ctx(BillingModel::Ucs, &[20], &[30], &[5]);
        let hs = [
            household(0, &[100], &[150]),
            household(1, &[100], &[130]),
            household(2, &[-200], &[-200]),
        ];
        let bills = bills(&c, &hs).unwrap();
        // TD = -80: imbalance cost (30 - 20) * 80 = 800 shared by 2 over-consumers.
        assert_eq!(bills[0].bill, Money(20 * 150 + 400));
        assert_eq!(bills[1].bill, Money(20 * 130 + 400));
        assert_eq!(bills[2].reward, Money(20 * 200));
        // UCS-reference divides by NC = 2 too here; proportional by SOC = 80.
        let p = bills_of(BillingModel::Proportional, &hs);
        assert_eq!(p[0].bill, Money(20 * 150 + 10 * 50));
        assert_eq!(p[1].bill, Money(20 * 130 + 10 * 30));
    }

    fn bills_of(model: BillingModel, hs: &[Data]) -> Vec<crate::Bill> {
        bills(&ctx(model, &[20], &[30], &[5]), hs).unwrap()
    }

    #[test]
    fn ucs_reference_divides_by_accepted_counts() {
        // Three accepted consumers, one over-consumes by 60: TD = -60,
        // cost (30 - 20) * 60 = 600. UCS charges it all to the over-consumer,
        // the reference code divides by NC = 3.
        let hs = [
            household(0, &[100], &[160]),
            household(1, &[100], &[100]),
            household(2, &[100], &[100]),
        ];
        assert_eq!(
            bills_of(BillingModel::Ucs, &hs)[0].bill,
            Money(20 * 160 + 600)
        );
        assert_eq!(
            bills_of(BillingModel::UcsReference, &hs)[0].bill,
            Money(20 * 160 + 200)
        );
        assert_eq!(
            bills_of(BillingModel::UcsReference, &hs)[1].bill,
            Money(20 * 100)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The linear form (weights from aggregates) equals the reference.
        #[test]
        fn weights_reproduce_the_reference(
            n in 1usize..8, t in 1usize..12, seed in any::<u64>(), model_ix in 0usize..3,
        ) {
            let model = BillingModel::ALL[model_ix];
            let mut s = seed;
            let mut next = |m: i64| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) as i64 % (2 * m + 1)) - m };
            let prices: Vec<Vec<i64>> = (0..3).map(|_| (0..t).map(|_| next(50_000)).collect()).collect();
            let c = ctx(model, &prices[0], &prices[1], &prices[2]);
            let hs: Vec<Data> = (0..n).map(|i| {
                let u: Vec<i64> = (0..t).map(|_| next(5_000)).collect();
                let x: Vec<i64> = (0..t).map(|_| next(5_000)).collect();
                household(i, &u, &x)
            }).collect();
            let vs: Vec<_> = hs.iter().map(Data::vectors).collect();
            let w = model.weights(&c, &Aggregates::in_clear(model, t, &vs)).unwrap();
            let want = bills(&c, &hs).unwrap();
            for (v, b) in vs.iter().zip(&want) {
                prop_assert_eq!(w.apply(v), *b);
            }
            // Every bill stays within the worst case the edge checks.
            let (wb, wr) = w.worst_case_totals();
            prop_assert!(want.iter().all(|b| b.bill.0.unsigned_abs() <= wb && b.reward.0.unsigned_abs() <= wr));
            // UCS is cost-neutral: the over-consumers' charges add up to the
            // imbalance cost of the slots where someone is charged, up to the
            // rounding of each share (at most 1/2 unit per charged household).
            if model == BillingModel::Ucs {
                let agg = Aggregates::in_clear(model, t, &vs);
                let (td, nfc) = (agg.get(Aggregate::TD, t).unwrap(), agg.get(Aggregate::NFC, t).unwrap());
                let energy: i128 = vs.iter().map(|v| (0..t).map(|s| {
                    c.trading()[s].0 as i128 * v.ca[s] as i128 + c.retail()[s].0 as i128 * v.cr[s] as i128
                }).sum::<i128>()).sum();
                let charged: i128 = want.iter().map(|b| b.bill.0).sum::<i128>() - energy;
                let (mut cost, mut slack) = (0i128, 0i128);
                for s in 0..t {
                    if td[s] < 0 && nfc[s] > 0 {
                        cost += (c.retail()[s].0 - c.trading()[s].0) as i128 * -(td[s] as i128);
                        slack += nfc[s] as i128;
                    }
                }
                prop_assert!(2 * (charged - cost).abs() <= slack, "charged {} vs cost {}", charged, cost);
            }
        }
    }
}
