//! Shared builders of random but realistic communities.
#![allow(dead_code)]

use pb_model::{BillingModel, CycleContext, Data};
use pb_units::{CycleId, MemberId, PriceUnits, Wh};

/// A tiny deterministic generator (test data only).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

pub fn context(model: BillingModel, slots: usize, rng: &mut Lcg) -> CycleContext {
    let mut p = Vec::new();
    let mut r = Vec::new();
    let mut f = Vec::new();
    for _ in 0..slots {
        let trading = rng.range(5_000, 40_000);
        p.push(PriceUnits(trading));
        r.push(PriceUnits(trading + rng.range(0, 20_000)));
        f.push(PriceUnits(rng.range(0, trading)));
    }
    CycleContext::new(CycleId(7), model, p, r, f).unwrap()
}

pub fn households(n: usize, slots: usize, rng: &mut Lcg) -> Vec<Data> {
    (0..n)
        .map(|i| {
            let mut u = Vec::with_capacity(slots);
            let mut x = Vec::with_capacity(slots);
            for _ in 0..slots {
                let promise = match rng.range(0, 3) {
                    0 => 0,
                    1 => rng.range(1, 3_000),
                    _ => -rng.range(1, 3_000),
                };
                u.push(Wh(promise));
                x.push(Wh(
                    (promise + rng.range(-1_500, 1_500)).clamp(-100_000, 100_000)
                ));
            }
            Data::new(
                MemberId::new(format!("house-{i:03}")).unwrap(),
                CycleId(7),
                u,
                x,
            )
            .unwrap()
        })
        .collect()
}
