//! Writes the seed corpus of every fuzz target under `fuzz/corpus/`:
//! valid inputs of each decoder (from a three-member community of four
//! slots), so that the fuzzer starts from real structure.
//!
//! `cargo run --release -p pb-fuzz-checks --example seeds`

use std::path::Path;

use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_hiding::HidingContext;
use pb_hiding::wire::Wire;
use pb_inputs::{CommunityFile, HouseholdFile, HouseholdId, PricesFile, Units};
use pb_model::BillingModel;
use pb_protocol::{Envelope, ErrorCode, Request, Response};
use pb_przs::{IdentityKey, PairwiseKeys};
use pb_shared_billing::{CpuBackend, SharedBilling};
use pb_units::{CommunityId, CycleId};
use rand_core::SeedableRng;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

fn payload<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard().with_fixed_int_encoding())
        .expect("encodes")
}

fn decimals(texts: &[&str]) -> Vec<pb_units::Decimal> {
    texts.iter().map(|t| t.parse().expect("decimal")).collect()
}

fn main() {
    let file = CommunityFile {
        cycle_id: 7,
        prices: PricesFile {
            trading: decimals(&["0.2", "0.25", "0.22", "0.3"]),
            retail: decimals(&["0.3", "0.31", "0.3", "0.35"]),
            feed_in: decimals(&["0.05", "0.04", "0.05", "0.05"]),
        },
        households: (0..3)
            .map(|i| HouseholdFile {
                id: if i == 2 {
                    HouseholdId::Number(7.into())
                } else {
                    HouseholdId::Text(format!("h{i}"))
                },
                promises_kwh: decimals(&["0.5", "-0.25", "1.0", "0.5005"]),
                actual_kwh: decimals(&[["0.4", "0.5", "0.6"][i], "-3e-1", "1.1", "0.05"]),
                forecast_file: None,
                actual_file: None,
            })
            .collect(),
        cycle_start: None,
    };
    let json = serde_json::to_string_pretty(&file).expect("json");
    write("community_file", "three-households.json", json.as_bytes());
    let community = pb_inputs::community(&json, BillingModel::Ucs, 3, Units::Round).expect("valid");
    for (name, text) in [
        ("tie", "0.5005"),
        ("exponent", "-3.5E-5"),
        (
            "long",
            "123456789012345678901234567890.12345678901234567890",
        ),
        ("huge-exponent", "1e99999999999"),
        ("nan", "NaN"),
        ("plain", "+.5"),
    ] {
        write("decimal", name, text.as_bytes());
    }
    let ctx = community.context.clone();

    write(
        "context_file",
        "prices.csv",
        b"trading,retail,feed_in\n0.2,0.3,0.05\n0.25,0.31,0.04\n",
    );
    write(
        "context_file",
        "prices.json",
        br#"{"cycle_id": 3, "model": "ucs", "prices": {"trading": [0.2, 0.25], "retail": [0.3, 0.31], "feed_in": [0.05, 0.04]}}"#,
    );
    write(
        "data_file",
        "data.csv",
        b"promise_kwh,actual_kwh\n0.5,0.4\n-0.25,-0.3\n",
    );
    write(
        "data_file",
        "data.json",
        br#"{"promises_kwh": [0.5, -0.25], "actual_kwh": [0.4, -0.3]}"#,
    );
    write(
        "household_request",
        "submit.json",
        br#"{"submit": {"cycle_id": 3, "promises_kwh": [0.5, -1], "actual_kwh": [0.4, -1.2]}}"#,
    );
    write(
        "household_request",
        "get_bill.json",
        br#"{"get_bill": {"cycle_id": 3}}"#,
    );
    write("household_request", "status.json", br#"{"status": {}}"#);

    // A real cycle: keys, hidden data, a correction, bills.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let ids: Vec<IdentityKey> = community
        .households
        .iter()
        .map(|_| IdentityKey::generate(&mut rng))
        .collect();
    let list: Vec<_> = community
        .households
        .iter()
        .zip(&ids)
        .map(|(d, k)| (d.member().clone(), k.public()))
        .collect();
    let mut seeder = deterministic(3);
    let mut edge = SharedBilling::with_seed(Box::new(CpuBackend::new()), [2; 32]);
    let mut hiding = Vec::new();
    for (d, k) in community.households.iter().zip(&ids) {
        let keys =
            PairwiseKeys::derive(&CommunityId("seed".into()), d.member(), k, &list).expect("keys");
        let h = HidingContext::new(keys, SecretKey::generate(&mut seeder));
        edge.register_member(d.member().clone(), h.public_key(&mut seeder))
            .expect("member");
        hiding.push(h);
    }
    edge.record_context(ctx.clone()).expect("context");
    let hidden: Vec<_> = community
        .households
        .iter()
        .zip(&hiding)
        .map(|(d, h)| h.hide(d, &ctx, &mut seeder).expect("hide"))
        .collect();
    write("hidden_data", "hidden-data.bin", &hidden[0].to_bytes());
    let missing = vec![community.households[2].member().clone()];
    let correction = hiding[0]
        .dropout_correction(&ctx, &missing)
        .expect("correction");
    write(
        "dropout_correction",
        "correction.bin",
        &correction.to_bytes(),
    );
    for h in &hidden {
        edge.record_data(h.clone()).expect("data");
    }
    let bills = edge.compute_bills(CycleId(7)).expect("bills");
    write("hidden_bill", "hidden-bill.bin", &bills[0].to_bytes());

    let key = pb_fuzz_checks::fuzz_key();
    let requests = [
        ("get-cycle", Request::GetCycle { cycle: CycleId(7) }),
        ("get-members", Request::GetMembers),
        ("put-context", Request::PutContext(ctx.clone())),
        (
            "submit",
            Request::Submit {
                data: hidden[1].clone(),
                partners: vec![community.households[0].member().clone()],
            },
        ),
        (
            "get-roster",
            Request::GetRoster {
                version: None,
                page: 0,
            },
        ),
        (
            "join",
            Request::Join {
                member: community.households[0].member().clone(),
                przs: ids[0].public(),
                public_key: hiding[0].public_key(&mut seeder),
            },
        ),
    ];
    for (name, r) in &requests {
        write("signed_request", name, &payload(r));
        // Large payloads are seeded through signed_request only.
        if !matches!(r, Request::Submit { .. } | Request::Join { .. }) {
            write(
                "envelope",
                &format!("request-{name}"),
                &Envelope::seal_request(&key, 9, &pb_fuzz_checks::fuzz_audience(), r),
            );
        }
    }
    let responses = [
        ("ok", Response::Ok),
        ("bill", Response::Bill(bills[1].clone())),
        (
            "error",
            Response::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            },
        ),
        (
            "pending",
            Response::Pending {
                round: pb_secagg::Round::Reveal,
                waiting: 2,
            },
        ),
    ];
    for (name, r) in &responses {
        write("signed_response", name, &payload(r));
        if !matches!(r, Response::Bill(_)) {
            write(
                "envelope",
                &format!("response-{name}"),
                &Envelope::seal_response(&key, 9, pb_protocol::RequestHash([0; 32]), r),
            );
        }
    }

    // ZMTP: greeting, READY, then a REQ message (delimiter + body).
    let mut z = vec![0u8; 64];
    z[0] = 0xFF;
    z[9] = 0x7F;
    z[10] = 3;
    z[12..16].copy_from_slice(b"NULL");
    let ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03REQ";
    z.push(0x04);
    z.push(ready.len() as u8);
    z.extend_from_slice(ready);
    z.extend_from_slice(&[0x01, 0x00]);
    z.extend_from_slice(&[0x00, 0x05]);
    z.extend_from_slice(b"hello");
    z.push(0x02);
    z.extend_from_slice(&200u64.to_be_bytes());
    z.extend_from_slice(&[7u8; 200]);
    write("zmtp_stream", "req-session.bin", &z);
    println!("seed corpus written under fuzz/corpus/");
}
