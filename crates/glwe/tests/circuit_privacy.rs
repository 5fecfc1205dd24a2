//! What a household receives does not depend on rates that its own data
//! does not select (design section 6, circuit privacy).
//!
//! A household that never over-consumes (`FC = 0` in every slot) is billed
//! under two weight sets that differ only in the over-consumption rates. Its
//! totals are equal; the noise it can observe (phase minus `Delta * total`)
//! and its mask must be distributed alike. A two-sample Kolmogorov-Smirnov
//! test at significance 0.001 must not tell the two apart, while the same
//! test on the noise *without* flooding (negative control) must.

use pb_glwe::layout::pack;
use pb_glwe::ntt::plan;
use pb_glwe::params::DELTA_LOG;
use pb_glwe::seeding::deterministic;
use pb_glwe::{EvalScratch, PreparedWeights, Rerandomizer, SecretKey, evaluate};

const SAMPLES: usize = 300;

/// Two-sample Kolmogorov-Smirnov statistic.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            i += 1;
        } else {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn unselected_rates_leave_no_trace_in_what_the_household_sees() {
    let t = 96;
    let mut seeder = deterministic(21);
    let sk = SecretKey::generate(&mut seeder);
    let cpk = sk.public_key(&mut seeder);
    // CA, CR with energy, FC all zero; the reward side is empty.
    let mut bill_side: Vec<i64> = (0..2 * t as i64).map(|i| (i * 37) % 900).collect();
    bill_side.extend(std::iter::repeat_n(0, t));
    let reward_side = vec![0i64; 3 * t];
    let cts: Vec<_> = pack(&bill_side, &reward_side)
        .iter()
        .map(|m| sk.encrypt(m, &mut seeder))
        .collect();

    let mut weights_a: Vec<i64> = (0..2 * t as i64)
        .map(|i| 20_000 + (i * 101) % 9_000)
        .collect();
    let mut weights_b = weights_a.clone();
    weights_a.extend(std::iter::repeat_n(0, t)); // nobody charged
    weights_b.extend((0..t as i64).map(|i| 1_000_000 + i * 1_000_003 % 30_000_000)); // large shares
    let ntt = plan();
    let prepared = |w: &[i64]| PreparedWeights::new(ntt, w, &vec![0; 3 * t]).unwrap();
    let (pa, pb) = (prepared(&weights_a), prepared(&weights_b));

    let total: i128 = bill_side
        .iter()
        .zip(&weights_a)
        .map(|(&x, &w)| x as i128 * w as i128)
        .sum();
    let mut scratch = EvalScratch::default();
    let mut observe = |w: &PreparedWeights, seed: u32| {
        let mut s = [0u8; 32];
        s[..4].copy_from_slice(&seed.to_le_bytes());
        let rr = Rerandomizer::from_seed(s);
        let out = evaluate(ntt, w, &cts, &cpk, &rr, &mut scratch).unwrap();
        assert_eq!(sk.decrypt_totals(&out).unwrap(), (total, 0));
        let noise = sk.phases(&out).unwrap()[0].wrapping_sub((total as u128) << DELTA_LOG) as i128;
        let unflooded = noise - rr.flood[0];
        (noise as f64, unflooded as f64, out.mask[17] as f64)
    };
    let a: Vec<_> = (0..SAMPLES as u32).map(|i| observe(&pa, i)).collect();
    let b: Vec<_> = (0..SAMPLES as u32)
        .map(|i| observe(&pb, 1_000_000 + i))
        .collect();
    let col =
        |v: &[(f64, f64, f64)], k: usize| v.iter().map(|x| [x.0, x.1, x.2][k]).collect::<Vec<_>>();

    // critical value of the two-sample KS test at alpha = 0.001
    let critical = 1.95 * (2.0 / SAMPLES as f64).sqrt();
    let d_noise = ks(col(&a, 0), col(&b, 0));
    let d_mask = ks(col(&a, 2), col(&b, 2));
    assert!(
        d_noise < critical,
        "flooded noise distinguishable: D = {d_noise}"
    );
    assert!(d_mask < critical, "mask distinguishable: D = {d_mask}");
    // Negative control: without the flooding, the same test separates them.
    let d_unflooded = ks(col(&a, 1), col(&b, 1));
    assert!(
        d_unflooded > 0.9,
        "control should separate the unflooded noise: D = {d_unflooded}"
    );
}
