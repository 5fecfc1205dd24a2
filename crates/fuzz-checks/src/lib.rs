//! The properties fuzzed, one function per decoder of outside bytes. Each
//! takes arbitrary bytes and must return without panicking; where a decoder
//! accepts the input, its re-encoding must decode to the same value.
//!
//! `fuzz/` (cargo fuzz, libFuzzer) calls these, and `tests/corpus.rs`
//! replays the kept corpus and every crash reproducer under
//! `fuzz/regressions/` through them in `cargo test`.

#![warn(missing_docs)]

use pb_hiding::wire::Wire;
use pb_hiding::{DropoutCorrection, HiddenBill, HiddenData};
use pb_protocol::{Audience, Envelope, NodeKey, RequestHash};

/// A fuzz target: its name (also its corpus directory) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("envelope", envelope),
    ("signed_request", signed_request),
    ("signed_response", signed_response),
    ("hidden_data", hidden_data),
    ("hidden_bill", hidden_bill),
    ("dropout_correction", dropout_correction),
    ("household_request", household_request),
    ("community_file", community_file),
    ("context_file", context_file),
    ("data_file", data_file),
    ("decimal", decimal),
    ("zmtp_stream", zmtp_stream),
    ("meter_csv", meter_csv),
    ("espi_xml", espi_xml),
];

/// The fixed key that signs fuzzed payloads.
pub fn fuzz_key() -> NodeKey {
    NodeKey::from_bytes([7; 32])
}

/// A frame as the edge or a core receives it: size, magic, envelope,
/// version and signature are checked before any payload is decoded.
pub fn envelope(data: &[u8]) {
    let _ = Envelope::open_any_request(data);
    let _ = Envelope::open_any_response(data);
}

/// The audience fuzzed requests are sealed for.
pub fn fuzz_audience() -> Audience {
    Audience {
        edge: NodeKey::from_bytes([9; 32]).id(),
        community: pb_units::CommunityId("fuzz".into()),
    }
}

/// The request decoder behind the signature check: arbitrary payload bytes
/// signed by an enrolled key (what an insider could send).
pub fn signed_request(data: &[u8]) {
    let to = fuzz_audience();
    let frame = Envelope::seal_request_payload(&fuzz_key(), 1, &to, data);
    if let Ok((_, _, request)) = Envelope::open_request(&frame, &to) {
        let again = Envelope::seal_request(&fuzz_key(), 1, &to, &request);
        match Envelope::open_request(&again, &to) {
            Ok((_, _, r)) => assert_eq!(r, request, "request re-encoding differs"),
            Err(e) => panic!("an accepted request does not decode again: {e}"),
        }
    }
}

/// The response decoder behind the signature check (what a core accepts
/// from its edge).
pub fn signed_response(data: &[u8]) {
    let request = b"fuzzed request";
    let answers = RequestHash::of(request);
    let frame = Envelope::seal_response_payload(&fuzz_key(), 1, answers, data);
    if let Ok((_, _, response)) = Envelope::open_response(&frame, request) {
        let again = Envelope::seal_response(&fuzz_key(), 1, answers, &response);
        match Envelope::open_response(&again, request) {
            Ok((_, _, r)) => assert_eq!(r, response, "response re-encoding differs"),
            Err(e) => panic!("an accepted response does not decode again: {e}"),
        }
    }
}

fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        let bytes = v.to_bytes();
        match T::from_bytes(&bytes) {
            Ok(again) => assert_eq!(again, v, "{} re-encoding differs", T::NAME),
            Err(e) => panic!("an accepted {} does not decode again: {e}", T::NAME),
        }
    }
}

/// `HiddenData` as stored and sent.
pub fn hidden_data(data: &[u8]) {
    round_trip::<HiddenData>(data);
}

/// `HiddenBill` as a core receives it.
pub fn hidden_bill(data: &[u8]) {
    round_trip::<HiddenBill>(data);
}

/// `DropoutCorrection` as the edge receives it.
pub fn dropout_correction(data: &[u8]) {
    round_trip::<DropoutCorrection>(data);
}

/// A household's JSON request to its core, including the unit checks of a
/// submission.
pub fn household_request(data: &[u8]) {
    if let Ok(pb_core::api::ApiRequest::Submit(s)) = pb_core::api::ApiRequest::from_json(data) {
        if let Ok(member) = pb_units::MemberId::new("fuzz") {
            let _ = s.to_data(&member, s.promises_kwh.len());
        }
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The community file of `pbill simulate` / `demo`.
pub fn community_file(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = pb_inputs::community(t, pb_model::BillingModel::Ucs, 3, pb_inputs::Units::Round);
        let _ = pb_inputs::community(
            t,
            pb_model::BillingModel::Proportional,
            1,
            pb_inputs::Units::Strict,
        );
    }
}

/// An operator's prices file, as CSV and as JSON.
pub fn context_file(data: &[u8]) {
    if let Some(t) = text(data) {
        let over = pb_inputs::ContextOverrides::default();
        let _ = pb_inputs::context_csv("fuzz.csv", t, over);
        let _ = pb_inputs::context_json("fuzz.json", t, over);
    }
}

/// A household's data file, as CSV and as JSON.
pub fn data_file(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = pb_inputs::data_csv("fuzz.csv", t, pb_inputs::Units::Round);
        let _ = pb_inputs::data_json("fuzz.json", t, pb_inputs::Units::Strict);
    }
}

/// One meter file in `format`, put on the slots of a cycle of unknown
/// and of known length, rounding and strict: an error or a series within
/// the limits, never a panic.
fn meter_file(data: &[u8], format: pb_inputs::MeterFormat) {
    use pb_units::limits::{MAX_SLOT_WH, MAX_SLOTS};
    let Some(t) = text(data) else { return };
    let file = pb_inputs::MeterFile {
        origin: "fuzz",
        text: t,
        format,
    };
    // The examples' cycle start (docs/examples), so that seeds line up.
    for (start, slots) in [
        ("2026-11-28T00:00:00+01:00", None),
        ("2026-11-28T00:00:00+01:00", Some(8)),
        ("1970-01-01T00:00:00Z", Some(4)),
        ("2026-11-28T00:00:00+01:00", Some(usize::MAX)),
    ] {
        let Ok(clock) = pb_inputs::CycleClock::parse(start, slots) else {
            panic!("the fuzz clock does not parse");
        };
        for units in [pb_inputs::Units::Round, pb_inputs::Units::Strict] {
            let mut rounding = pb_inputs::Rounding::default();
            if let Ok(v) = pb_inputs::meter_series(&file, &clock, units, &mut rounding) {
                assert!(!v.is_empty() && v.len() <= MAX_SLOTS as usize);
                assert!(slots.is_none_or(|n| v.len() == n), "{} slots", v.len());
                assert_ne!(slots, Some(usize::MAX), "more slots than a cycle has");
                assert!(v.iter().all(|w| w.abs() <= MAX_SLOT_WH), "{v:?}");
            }
        }
    }
    let clock = pb_inputs::CycleClock::parse("2026-11-28T00:00:00+01:00", None);
    if let Ok(clock) = clock {
        let _ = pb_inputs::household_from_meters(&file, &file, &clock, pb_inputs::Units::Round);
    }
}

/// An interval CSV meter file (`pb_inputs::meter_csv`).
pub fn meter_csv(data: &[u8]) {
    meter_file(data, pb_inputs::MeterFormat::Csv);
}

/// A Green Button (ESPI) XML meter file (`pb_inputs::espi`).
pub fn espi_xml(data: &[u8]) {
    meter_file(data, pb_inputs::MeterFormat::Espi);
}

/// The exact decimal parser: whatever the text, parsing and rounding to
/// every unit scale end in a value or an error, never a panic; a parsed
/// number prints as a text that parses to the same value; a rounded value
/// stays within its limit.
pub fn decimal(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let Ok(d) = t.parse::<pb_units::Decimal>() else {
        return;
    };
    let again: pb_units::Decimal = match d.to_string().parse() {
        Ok(a) => a,
        Err(e) => panic!("{d} does not parse back: {e}"),
    };
    for scale in [0, 3, 5, 8] {
        let a = d.scaled(scale, 100_000);
        assert_eq!(a, again.scaled(scale, 100_000), "{t:?} and {d} differ");
        if let Ok(s) = a {
            assert!(s.units.abs() <= 100_000);
        }
    }
}

/// The socket guard's ZMTP scanner: whatever the bytes, it must come to
/// the same verdict and state whether the stream arrives at once, in two
/// pieces or byte by byte (TCP may split it anywhere). The decoder that
/// cuts the accepted stream into commands and messages must not panic,
/// and must cut it the same way at once and byte by byte.
pub fn zmtp_stream(data: &[u8]) {
    use pb_net::guard::{GuardLimits, ZmtpScanner};
    let limits = GuardLimits::new(300, 3);
    let mut whole = ZmtpScanner::new(limits);
    let at_once = whole.feed(data);
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut two = ZmtpScanner::new(limits);
    let in_two = two
        .feed(&data[..split])
        .and_then(|()| two.feed(&data[split..]));
    let mut one = ZmtpScanner::new(limits);
    let by_byte = data
        .iter()
        .try_for_each(|b| one.feed(std::slice::from_ref(b)));
    assert_eq!(at_once, in_two, "verdict depends on the split");
    assert_eq!(at_once, by_byte, "verdict depends on the split");
    if at_once.is_ok() {
        assert_eq!(whole.mid_message(), one.mid_message());
        assert_eq!(whole.greeted(), one.greeted());
    }
    // The decoder, on any bytes (the guard gives it only accepted ones).
    use pb_net::zmtp::Decoder;
    let mut at_once = Decoder::new();
    at_once.push(data);
    let whole: Vec<_> = std::iter::from_fn(|| at_once.next_item()).collect();
    let mut bytewise = Decoder::new();
    let mut pieces = Vec::new();
    for b in data {
        bytewise.push(std::slice::from_ref(b));
        pieces.extend(std::iter::from_fn(|| bytewise.next_item()));
    }
    assert_eq!(whole, pieces, "the decoder's cut depends on the split");
    for item in &whole {
        if let pb_net::zmtp::Item::Command(body) = item {
            let _ = pb_net::zmtp::socket_type(body);
            let _ = pb_net::zmtp::pong(body);
        }
    }
}
