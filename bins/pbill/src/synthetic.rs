//! Realistic synthetic communities: daily load shapes, PV on some roofs,
//! forecasts (the promises) with noise.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use pb_inputs::{CommunityFile, HouseholdFile, HouseholdId, PricesFile};
use pb_units::Decimal;

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `x` rounded to `10^-scale` (generated values are exact to the unit).
fn exact(x: f64, scale: u32) -> Decimal {
    Decimal::from_units((x * 10f64.powi(scale as i32)).round() as i64, scale)
}

/// Builds a community of `households` over `slots` 15-minute slots.
pub fn generate(households: usize, slots: usize, seed: u64) -> Result<CommunityFile, String> {
    if households == 0 || slots == 0 || slots > pb_units::limits::MAX_SLOTS as usize {
        return Err(format!(
            "need at least one household and 1 to {} slots",
            pb_units::limits::MAX_SLOTS
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let hour = |t: usize| (t % 96) as f64 / 4.0;
    let mut prices = PricesFile {
        trading: vec![],
        retail: vec![],
        feed_in: vec![],
    };
    for t in 0..slots {
        let h = hour(t);
        let peak = (-(h - 18.5).powi(2) / 6.0).exp() + 0.6 * (-(h - 8.0).powi(2) / 4.0).exp();
        let trading = 0.08 + 0.12 * peak + 0.01 * uniform(&mut rng);
        prices.trading.push(exact(trading, 5));
        prices.retail.push(exact(trading + 0.11, 5));
        prices
            .feed_in
            .push(exact(0.05 + 0.02 * uniform(&mut rng), 5));
    }
    let mut out = Vec::with_capacity(households);
    let shown = (households >= crate::progress::MIN_STEPS)
        .then(|| crate::progress::progress(households, "generating households"));
    for i in 0..households {
        if let Some(p) = &shown {
            p.inc(1);
        }
        let base_kw = 0.15 + 0.3 * uniform(&mut rng);
        let peak_kw = 1.0 + 2.5 * uniform(&mut rng);
        let pv_kw = if uniform(&mut rng) < 0.4 {
            2.0 + 6.0 * uniform(&mut rng)
        } else {
            0.0
        };
        let mut promises = Vec::with_capacity(slots);
        let mut actual = Vec::with_capacity(slots);
        let mut cloud = 1.0;
        for t in 0..slots {
            let h = hour(t);
            if t % 96 == 0 {
                cloud = 0.3 + 0.7 * uniform(&mut rng);
            }
            let load = base_kw
                + peak_kw
                    * (0.5 * (-(h - 7.5).powi(2) / 1.5).exp() + (-(h - 19.0).powi(2) / 3.0).exp());
            let sun = if (6.0..20.0).contains(&h) {
                (std::f64::consts::PI * (h - 6.0) / 14.0).sin().powi(2)
            } else {
                0.0
            };
            let forecast_kw = load - pv_kw * sun * cloud;
            let actual_kw =
                forecast_kw * (0.85 + 0.3 * uniform(&mut rng)) + 0.2 * (uniform(&mut rng) - 0.5);
            promises.push(exact(forecast_kw * 0.25, 3));
            actual.push(exact(actual_kw * 0.25, 3));
        }
        out.push(HouseholdFile {
            id: HouseholdId::Text(format!("house-{:03}", i + 1)),
            promises_kwh: promises,
            actual_kwh: actual,
            forecast_file: None,
            actual_file: None,
        });
    }
    if let Some(p) = &shown {
        p.finish();
    }
    Ok(CommunityFile {
        cycle_id: 1,
        prices,
        households: out,
        cycle_start: None,
    })
}
