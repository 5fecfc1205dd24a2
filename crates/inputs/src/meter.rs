//! Meter data as utilities and meter operators export it: timestamped
//! intervals ([`crate::meter_csv`], [`crate::espi`]) mapped onto a cycle's
//! settlement slots by time.
//!
//! **Slots and wall-clock time.** A cycle's slot `t` (from 0) covers
//! `[start + 15 min * t, start + 15 min * (t + 1))`, where `start` is the
//! cycle's start instant ([`CycleClock`], `--cycle-start` on the command
//! line, ISO 8601 with an offset) and every slot is 15 minutes, as
//! everywhere in this system. Times are compared as instants (UTC), so a
//! file whose offset changes inside it (a daylight-saving change) is read
//! correctly: its rows are consecutive instants even where the local clock
//! jumps or repeats. A time without an offset is refused (it is ambiguous
//! at the autumn change).
//!
//! **Intervals.** 15-minute readings fill one slot each. Hourly readings
//! must start on a whole hour counted from the cycle start and are spread
//! evenly over their four slots, exactly: the reading is first rounded to
//! whole Wh (half away from zero, counted in the rounding report, or
//! refused under `--strict-units`), then divided by four with truncation;
//! the remainder (0 to 3 Wh, with the reading's sign) goes one Wh each to
//! the first slots of the hour. 1.003 kWh becomes 251, 251, 251, 250 Wh;
//! -0.002 kWh becomes -1, -1, 0, 0 Wh. The four slots always add up to the
//! reading.
//!
//! **What is refused**, each naming the line (or element) at fault: a
//! reading off the 15-minute grid of the cycle (or an hourly one off its
//! hour grid), a gap, a duplicate, an overlap, rows out of time order,
//! readings before the cycle start or past its end, data that ends before
//! the cycle does, intervals other than 15 and 60 minutes, values beyond
//! 100 kWh a slot.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use pb_model::parse::{Rounding, Units};
use pb_units::Decimal;
use pb_units::limits::{MAX_SLOT_WH, MAX_SLOTS};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, UtcOffset};

use crate::{HouseholdData, Parsed};

/// Length of a settlement slot, in seconds (15 minutes).
pub const SLOT_SECONDS: i64 = 900;

/// The interval lengths a meter file may have, in seconds (15 minutes and
/// an hour).
pub const INTERVALS: [i64; 2] = [900, 3600];

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterFormat {
    /// Interval CSV ([`crate::meter_csv`]) for a meter series; for
    /// `--file`, the per-slot `promise_kwh,actual_kwh` CSV.
    Csv,
    /// Green Button (ESPI) interval XML ([`crate::espi`]).
    Espi,
    /// The per-slot JSON `{"promises_kwh": [..], "actual_kwh": [..]}`.
    Json,
}

impl MeterFormat {
    /// The format a file's extension names: `.csv`, `.xml` (ESPI) or
    /// `.json`, in any case; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<MeterFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(MeterFormat::Csv),
            "xml" => Some(MeterFormat::Espi),
            "json" => Some(MeterFormat::Json),
            _ => None,
        }
    }
}

impl FromStr for MeterFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<MeterFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(MeterFormat::Csv),
            "espi" | "xml" => Ok(MeterFormat::Espi),
            "json" => Ok(MeterFormat::Json),
            _ => Err(format!(
                "format {:?} is not known: csv, espi or json",
                pb_units::shorten(s)
            )),
        }
    }
}

/// Where a cycle's slots lie in time: its start instant and, when known,
/// its number of 15-minute slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleClock {
    /// Start of slot 0. Its offset is the one times are shown in.
    pub start: OffsetDateTime,
    /// The cycle's number of slots; `None` when only the data can tell
    /// (the core then checks the count against the cycle).
    pub slots: Option<usize>,
}

impl CycleClock {
    /// A clock from an ISO 8601 start time with an offset
    /// (`2026-11-28T00:00:00+01:00`).
    pub fn parse(start: &str, slots: Option<usize>) -> Result<CycleClock, String> {
        let at = parse_time(start).map_err(|e| format!("cycle start: {e}"))?;
        if at.nanosecond() != 0 {
            return Err(format!(
                "cycle start: {} is not on a whole second",
                pb_units::shorten(start)
            ));
        }
        Ok(CycleClock { start: at, slots })
    }

    fn offset(&self) -> UtcOffset {
        self.start.offset()
    }

    fn show(&self, unix: i64) -> String {
        show(unix, self.offset())
    }
}

/// Parses an ISO 8601 date and time with an offset (`Z` or `+01:00`);
/// a space instead of the `T` is accepted, as spreadsheets write it.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{:?} is not an ISO 8601 time with an offset (such as 2026-11-28T00:00:00+01:00)",
            pb_units::shorten(text)
        )
    };
    if text.len() > 64 {
        return Err(bad());
    }
    let spaced;
    let t = if text.as_bytes().get(10) == Some(&b' ') {
        // Byte 10 is ASCII, so 10 and 11 are character boundaries.
        spaced = format!("{}T{}", &text[..10], &text[11..]);
        spaced.as_str()
    } else {
        text
    };
    OffsetDateTime::parse(t, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(t, &Iso8601::DEFAULT))
        .map_err(|_| bad())
}

/// `unix` seconds shown in RFC 3339 at `offset`.
fn show(unix: i64, offset: UtcOffset) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .map(|t| t.to_offset(offset))
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} s after 1970"))
}

fn minutes(seconds: i64) -> String {
    if seconds % 60 == 0 {
        format!("{} minutes", seconds / 60)
    } else {
        format!("{seconds} seconds")
    }
}

/// One reading of a meter file, before it is put on the slot grid.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// Where it is, for messages: `line 5`.
    pub at: String,
    /// Start, Unix seconds.
    pub start: i64,
    /// Length in seconds; `None` when the file does not say (then the
    /// shortest step between readings is the interval).
    pub seconds: Option<i64>,
    /// The value as written.
    pub value: Decimal,
    /// `value * 10^scale` is watt-hours (3 for kWh, 0 for Wh).
    pub scale: u32,
    /// The unit the value is written in, for messages.
    pub unit: &'static str,
}

/// Counts a rounded value in `rounding` (as `pb_model::parse` does).
fn record(rounding: &mut Rounding, change: &str, unit: &'static str, at: String) {
    let c: f64 = change.parse().unwrap_or(0.0);
    rounding.count += 1;
    if rounding.largest.as_ref().is_none_or(|(l, _, _)| c > *l) {
        rounding.largest = Some((c, unit, at));
    }
}

/// `wh` spread over `parts` slots: truncated quotient, and the remainder
/// one Wh each to the first slots (module documentation).
pub fn spread(wh: i64, parts: i64) -> Vec<i64> {
    let q = wh / parts;
    let r = wh % parts;
    (0..parts)
        .map(|i| q + if i < r.abs() { r.signum() } else { 0 })
        .collect()
}

/// Puts readings (in file order) on the cycle's slot grid, in Wh per slot;
/// every error starts with `origin` and names the reading.
pub(crate) fn to_slots(
    origin: &str,
    readings: &[Reading],
    clock: &CycleClock,
    units: Units,
    rounding: &mut Rounding,
) -> Result<Vec<i64>, String> {
    let t0 = clock.start.unix_timestamp();
    let Some(first) = readings.first() else {
        return Err(format!("{origin}: no readings"));
    };
    // Off the slot grid first: such a reading would also spoil the step.
    for r in readings {
        if r.start.saturating_sub(t0).rem_euclid(SLOT_SECONDS) != 0 {
            return Err(format!(
                "{origin}: {}: {} is misaligned: slots are 15 minutes from the cycle start {}",
                r.at,
                clock.show(r.start),
                clock.show(t0)
            ));
        }
    }
    let step = if readings.iter().any(|r| r.seconds.is_none()) {
        let shortest = readings
            .windows(2)
            .map(|w| w[1].start.saturating_sub(w[0].start))
            .filter(|d| *d > 0)
            .min();
        match shortest {
            Some(s) => s,
            None if readings.len() == 1 => {
                return Err(format!(
                    "{origin}: {}: one reading and no end time: its length (15 minutes or an hour) \
                     cannot be told; add an end column",
                    first.at
                ));
            }
            // Every reading at the same time: the duplicate is named below.
            None => SLOT_SECONDS,
        }
    } else {
        SLOT_SECONDS
    };
    let cycle_end = clock.slots.map(|n| {
        i64::try_from(n)
            .unwrap_or(i64::MAX)
            .saturating_mul(SLOT_SECONDS)
            .saturating_add(t0)
    });
    let mut out: Vec<i64> = Vec::new();
    let mut prev: Option<(&Reading, i64)> = None;
    let mut seen: HashMap<i64, &str> = HashMap::new();
    for r in readings {
        let at = format!("{origin}: {}", r.at);
        let len = r.seconds.unwrap_or(step);
        let offset = r.start.saturating_sub(t0);
        let time = clock.show(r.start);
        if !INTERVALS.contains(&len) {
            return Err(format!(
                "{at}: an interval of {}: only 15-minute and hourly intervals are read",
                minutes(len)
            ));
        }
        if offset.rem_euclid(len) != 0 {
            return Err(format!(
                "{at}: the hourly interval starting {time} is misaligned: hours are counted from \
                 the cycle start {}",
                clock.show(t0)
            ));
        }
        if offset < 0 {
            return Err(format!(
                "{at}: {time} is before the cycle start {}",
                clock.show(t0)
            ));
        }
        if let Some(first) = seen.insert(r.start, &r.at) {
            return Err(format!("{at}: {time} is a duplicate of {first}"));
        }
        match prev {
            Some((p, p_end)) => {
                if r.start < p.start {
                    return Err(format!(
                        "{at}: {time} comes after {} ({}): readings must be in time order",
                        p.at,
                        clock.show(p.start)
                    ));
                }
                if r.start < p_end {
                    return Err(format!(
                        "{at}: the interval starting {time} overlaps {} ({} to {})",
                        p.at,
                        clock.show(p.start),
                        clock.show(p_end)
                    ));
                }
                if r.start > p_end {
                    return Err(format!(
                        "{at}: gap: no reading from {} to {time} (after {})",
                        clock.show(p_end),
                        p.at
                    ));
                }
            }
            None if offset > 0 => {
                return Err(format!(
                    "{at}: gap: the readings start {time}, the cycle {}",
                    clock.show(t0)
                ));
            }
            None => {}
        }
        let end = r.start.saturating_add(len);
        if let (Some(n), Some(cycle_end)) = (clock.slots, cycle_end)
            && end > cycle_end
        {
            return Err(format!(
                "{at}: the interval to {} is past the cycle's end {} ({n} slots of 15 minutes): \
                     a file for a cycle of another length?",
                clock.show(end),
                clock.show(cycle_end)
            ));
        }
        let parts = len / SLOT_SECONDS;
        if out.len() as i64 + parts > i64::from(MAX_SLOTS) {
            return Err(format!(
                "{at}: past {MAX_SLOTS} slots, the most a cycle has"
            ));
        }
        let scaled = r.value.scaled(r.scale, MAX_SLOT_WH * parts).map_err(|e| {
            format!(
                "{at}: {} {unit} is beyond the limit of {} {unit} for {} (100 kWh a 15-minute slot)",
                e.shown,
                e.limit,
                minutes(len),
                unit = r.unit
            )
        })?;
        if let Some(change) = scaled.change {
            if units == Units::Strict {
                return Err(format!(
                    "{at}: {} {} is finer than 1 Wh and --strict-units refuses rounding it",
                    pb_units::shorten(&r.value.to_string()),
                    r.unit
                ));
            }
            record(rounding, &change, r.unit, at.clone());
        }
        out.extend(spread(scaled.units, parts));
        prev = Some((r, end));
    }
    if let (Some(n), Some(cycle_end), Some((p, p_end))) = (clock.slots, cycle_end, prev)
        && out.len() < n
    {
        return Err(format!(
            "{origin}: the readings end {} (after {}, {} slots), the cycle's {n} slots run to {}: \
                 readings missing at the end, or a file for a cycle of another length",
            clock.show(p_end),
            p.at,
            out.len(),
            clock.show(cycle_end)
        ));
    }
    Ok(out)
}

/// One meter file as read: where it came from (starts every message), its
/// text and its format.
#[derive(Debug, Clone, Copy)]
pub struct MeterFile<'a> {
    /// Usually the path.
    pub origin: &'a str,
    /// The file's text.
    pub text: &'a str,
    /// Its format ([`MeterFormat::Json`] is refused: a JSON file holds
    /// both series per slot).
    pub format: MeterFormat,
}

/// One meter series (Wh per slot) from an interval CSV or ESPI file.
pub fn meter_series(
    file: &MeterFile<'_>,
    clock: &CycleClock,
    units: Units,
    rounding: &mut Rounding,
) -> Result<Vec<i64>, String> {
    let origin = file.origin;
    match file.format {
        MeterFormat::Csv => {
            let readings = crate::meter_csv::readings(origin, file.text)?;
            to_slots(origin, &readings, clock, units, rounding)
        }
        MeterFormat::Espi => {
            let mut total: Option<Vec<i64>> = None;
            for (direction, sign, readings) in crate::espi::readings(origin, file.text)? {
                let here = format!("{origin} ({direction})");
                let slots = to_slots(&here, &readings, clock, units, rounding)?;
                total = Some(match total {
                    None => slots.iter().map(|v| sign * v).collect(),
                    Some(t) => {
                        if t.len() != slots.len() {
                            return Err(format!(
                                "{here}: {} slots, the file's other readings {}",
                                slots.len(),
                                t.len()
                            ));
                        }
                        t.iter().zip(&slots).map(|(a, b)| a + sign * b).collect()
                    }
                });
            }
            total.ok_or_else(|| format!("{origin}: no readings"))
        }
        MeterFormat::Json => Err(format!(
            "{origin}: a JSON file holds promises and actual values per slot, not a meter series: \
             give it as the data file, or give interval CSV or ESPI XML"
        )),
    }
}

/// A household's data from two meter files: the promises from a forecast,
/// the actual values from the meter, both put on the cycle's slots by time.
/// Without a slot count in `clock`, the forecast's decides and the actual
/// readings must cover the same slots.
pub fn household_from_meters(
    forecast: &MeterFile<'_>,
    actual: &MeterFile<'_>,
    clock: &CycleClock,
    units: Units,
) -> Result<Parsed<HouseholdData>, String> {
    let mut rounding = Rounding::default();
    let promises = meter_series(forecast, clock, units, &mut rounding)?;
    let clock = CycleClock {
        slots: Some(promises.len()),
        ..*clock
    };
    let actual = meter_series(actual, &clock, units, &mut rounding)?;
    let kwh = |v: &[i64]| v.iter().map(|&wh| Decimal::from_units(wh, 3)).collect();
    let mut parsed = crate::checked_data(kwh(&promises), kwh(&actual), units)?;
    rounding.merge(parsed.rounding);
    parsed.rounding = rounding;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "2026-11-28T00:00:00+01:00";

    fn clock(slots: Option<usize>) -> CycleClock {
        CycleClock::parse(START, slots).unwrap()
    }

    fn csv(text: &str, slots: Option<usize>, units: Units) -> Result<(Vec<i64>, Rounding), String> {
        let mut r = Rounding::default();
        let file = MeterFile {
            origin: "m.csv",
            text,
            format: MeterFormat::Csv,
        };
        meter_series(&file, &clock(slots), units, &mut r).map(|v| (v, r))
    }

    fn ok(text: &str, slots: Option<usize>) -> Vec<i64> {
        match csv(text, slots, Units::Round) {
            Ok((v, _)) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(text: &str, slots: Option<usize>) -> String {
        csv(text, slots, Units::Round).unwrap_err()
    }

    /// Rows from 00:00 at +01:00 every `step` minutes.
    fn rows(header: &str, step: i64, values: &[&str]) -> String {
        let mut t = format!("{header}\n");
        for (i, v) in values.iter().enumerate() {
            let m = i as i64 * step;
            t += &format!("2026-11-28T{:02}:{:02}:00+01:00,{v}\n", m / 60, m % 60);
        }
        t
    }

    #[test]
    fn quarter_hours_fill_one_slot_each() {
        let text = rows("timestamp,energy_kwh", 15, &["0.132", "-0.5", "0", "1e-1"]);
        assert_eq!(ok(&text, Some(4)), vec![132, -500, 0, 100]);
        assert_eq!(ok(&text, None), vec![132, -500, 0, 100]);
        // Wh, other header spellings, an ignored column, Z times.
        let text = "Start Time,quality,Energy (Wh)\n2026-11-27T23:00:00Z,ok,12\n2026-11-27 23:15:00Z,est,-7\n";
        assert_eq!(ok(text, Some(2)), vec![12, -7]);
    }

    #[test]
    fn hourly_readings_are_spread_exactly() {
        let text = rows("timestamp,kWh", 60, &["1.003", "-0.002"]);
        assert_eq!(ok(&text, Some(8)), vec![251, 251, 251, 250, -1, -1, 0, 0]);
        // 400 kWh an hour is 100 kWh a slot, the limit.
        let text = rows("timestamp,energy_kwh", 60, &["400"]);
        let text = text
            .replace("timestamp,energy_kwh", "timestamp,end,energy_kwh")
            .replace("+01:00,400", "+01:00,2026-11-28T01:00:00+01:00,400");
        assert_eq!(ok(&text, Some(4)), vec![100_000; 4]);
        let e = err(&text.replace(",400", ",400.001"), Some(4));
        assert!(
            e.starts_with(
                "m.csv: line 2: 400.001 kWh is beyond the limit of 400 kWh for 60 minutes"
            ),
            "{e}"
        );
    }

    #[test]
    fn values_finer_than_a_wh_are_rounded_or_refused_by_line() {
        let text = rows("timestamp,energy_kwh", 60, &["1.0005"]);
        let text = text
            .replace("energy_kwh", "end,energy_kwh")
            .replace("+01:00,1.0005", "+01:00,2026-11-28T01:00:00+01:00,1.0005");
        let (v, r) = csv(&text, None, Units::Round).unwrap();
        assert_eq!(v, vec![251, 250, 250, 250]);
        assert_eq!(r.count, 1);
        let e = csv(&text, None, Units::Strict).unwrap_err();
        assert!(
            e.starts_with("m.csv: line 2: 1.0005 kWh is finer than 1 Wh"),
            "{e}"
        );
    }

    #[test]
    fn gaps_are_named_with_their_lines() {
        let mut text = rows("timestamp,energy_kwh", 15, &["1", "2", "3", "4"]);
        text = text.replace("2026-11-28T00:15:00+01:00,2\n", "");
        let e = err(&text, Some(4));
        assert_eq!(
            e,
            "m.csv: line 3: gap: no reading from 2026-11-28T00:15:00+01:00 to 2026-11-28T00:30:00+01:00 (after line 2)"
        );
        let late = rows("timestamp,energy_kwh", 15, &["1", "2"])
            .replace("T00:00", "T00:30")
            .replace("T00:15", "T00:45");
        let e = err(&late, None);
        assert!(
            e.starts_with("m.csv: line 2: gap: the readings start 2026-11-28T00:30:00+01:00"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_overlaps_and_disorder_are_refused() {
        let text = rows("timestamp,energy_kwh", 15, &["1", "2", "3"]);
        let dup = text.replace("00:30:00", "00:15:00");
        assert_eq!(
            err(&dup, None),
            "m.csv: line 4: 2026-11-28T00:15:00+01:00 is a duplicate of line 3"
        );
        let back =
            rows("timestamp,energy_kwh", 15, &["1", "2", "3", "4"]).replace("00:45:00", "00:00:00");
        assert_eq!(
            err(&back, None),
            "m.csv: line 5: 2026-11-28T00:00:00+01:00 is a duplicate of line 2"
        );
        let disorder = "timestamp,end,energy_kwh\n\
            2026-11-28T00:00:00+01:00,2026-11-28T01:00:00+01:00,1\n\
            2026-11-28T01:00:00+01:00,2026-11-28T01:15:00+01:00,1\n\
            2026-11-28T00:30:00+01:00,2026-11-28T00:45:00+01:00,1\n";
        assert!(
            err(disorder, None).starts_with(
                "m.csv: line 4: 2026-11-28T00:30:00+01:00 comes after line 3 \
                 (2026-11-28T01:00:00+01:00): readings must be in time order"
            ),
            "{}",
            err(disorder, None)
        );
        let overlap = "timestamp,end,energy_kwh\n\
            2026-11-28T00:00:00+01:00,2026-11-28T01:00:00+01:00,1\n\
            2026-11-28T00:30:00+01:00,2026-11-28T00:45:00+01:00,1\n";
        assert_eq!(
            err(overlap, None),
            "m.csv: line 3: the interval starting 2026-11-28T00:30:00+01:00 overlaps line 2 \
             (2026-11-28T00:00:00+01:00 to 2026-11-28T01:00:00+01:00)"
        );
        let odd =
            "timestamp,end,energy_kwh\n2026-11-28T00:00:00+01:00,2026-11-28T00:30:00+01:00,1\n";
        assert!(
            err(odd, None).contains("line 2: an interval of 30 minutes: only 15-minute and hourly")
        );
        let backwards =
            "timestamp,end,energy_kwh\n2026-11-28T00:15:00+01:00,2026-11-28T00:00:00+01:00,1\n";
        assert!(err(backwards, None).contains("line 2: the interval ends before it starts"));
    }

    #[test]
    fn misaligned_intervals_are_refused() {
        let text = rows("timestamp,energy_kwh", 15, &["1", "2"]).replace("00:15:00", "00:22:00");
        let e = err(&text, None);
        assert!(
            e.starts_with("m.csv: line 3: 2026-11-28T00:22:00+01:00 is misaligned"),
            "{e}"
        );
        // An hour that starts on a quarter: on the slot grid, not on the hour grid.
        let text = "timestamp,end,energy_kwh\n\
            2026-11-28T00:00:00+01:00,2026-11-28T00:15:00+01:00,1\n\
            2026-11-28T00:15:00+01:00,2026-11-28T01:15:00+01:00,1\n";
        let e = err(text, None);
        assert!(
            e.contains(
                "line 3: the hourly interval starting 2026-11-28T00:15:00+01:00 is misaligned"
            ),
            "{e}"
        );
        let text =
            rows("timestamp,energy_kwh", 15, &["1"]).replace("00:00:00+01:00", "00:00:00.5+01:00");
        assert!(err(&text, None).contains("line 2, column timestamp"));
        let before = rows("timestamp,energy_kwh", 15, &["1", "1"]).replace("+01:00", "+02:00");
        assert!(
            err(&before, None)
                .contains("line 2: 2026-11-27T23:00:00+01:00 is before the cycle start")
        );
    }

    #[test]
    fn a_daylight_saving_change_is_read_by_instant() {
        // 25 October 2026, Central Europe: 03:00 CEST becomes 02:00 CET, so
        // the local hour 02:00 to 03:00 happens twice, with two offsets.
        let mut text = String::from("timestamp,energy_kwh\n");
        let times = [
            "02:00:00+02:00",
            "02:15:00+02:00",
            "02:30:00+02:00",
            "02:45:00+02:00",
            "02:00:00+01:00",
            "02:15:00+01:00",
            "02:30:00+01:00",
            "02:45:00+01:00",
        ];
        for (i, t) in times.iter().enumerate() {
            text += &format!("2026-10-25T{t},{}\n", i + 1);
        }
        let mut r = Rounding::default();
        let file = MeterFile {
            origin: "dst.csv",
            text: &text,
            format: MeterFormat::Csv,
        };
        let clock = CycleClock::parse("2026-10-25T02:00:00+02:00", Some(8)).unwrap();
        let v = meter_series(&file, &clock, Units::Round, &mut r).unwrap();
        assert_eq!(v, (1..=8).map(|i| i * 1000).collect::<Vec<_>>());
        // An export that kept the summer offset through the change repeats
        // instants: refused as a duplicate.
        let broken = text.replace("02:00:00+01:00", "02:00:00+02:00");
        let e = meter_series(
            &MeterFile {
                text: &broken,
                ..file
            },
            &clock,
            Units::Round,
            &mut r,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "dst.csv: line 6: 2026-10-25T02:00:00+02:00 is a duplicate of line 2"
        );
        // Local times without an offset are ambiguous that night: refused.
        let local = text.replace("+01:00", "").replace("+02:00", "");
        let e = meter_series(
            &MeterFile {
                text: &local,
                ..file
            },
            &clock,
            Units::Round,
            &mut r,
        )
        .unwrap_err();
        assert!(e.starts_with("dst.csv: line 2, column timestamp: \"2026-10-25T02:00:00\" is not an ISO 8601 time with an offset"), "{e}");
    }

    #[test]
    fn units_the_reader_does_not_know_are_named() {
        let text = rows("timestamp,energy_mwh", 15, &["1"]);
        assert_eq!(
            err(&text, None),
            "m.csv: line 1, column 2 \"energy_mwh\": unit \"mwh\" is not known; the header must state \
             kWh or Wh (as in energy_kwh or \"Energy (Wh)\")"
        );
        let e = err(&rows("timestamp,energy (kW)", 15, &["1"]), None);
        assert!(e.contains("unit \"kW\" is not known"), "{e}");
        let e = err(&rows("timestamp,a,b", 15, &["1,2"]), None);
        assert!(e.contains("line 1: no energy column"), "{e}");
        let e = err(&rows("timestamp,a_kwh,b_wh", 15, &["1,2"]), None);
        assert!(e.contains("several energy columns"), "{e}");
        let e = err(&rows("when,energy_kwh", 15, &["1"]), None);
        assert!(e.contains("line 1: no timestamp column"), "{e}");
        let e = err(&rows("timestamp,energy_kwh", 15, &["x"]), None);
        assert!(
            e.contains("line 2, column energy_kwh: \"x\" is not a decimal number"),
            "{e}"
        );
        let e = err(&rows("timestamp,energy_kwh", 15, &["NaN"]), None);
        assert!(e.contains("line 2, column energy_kwh: NaN"), "{e}");
        assert!(err("timestamp,energy_kwh\n", None).contains("no readings"));
        let e = err(
            "timestamp,energy_kwh\n2026-11-28T00:00:00+01:00,1,2\n",
            None,
        );
        assert!(e.starts_with("m.csv: line 2:"), "{e}");
    }

    #[test]
    fn another_cycle_length_is_refused() {
        let text = rows("timestamp,energy_kwh", 15, &["1"; 6]);
        let e = err(&text, Some(8));
        assert_eq!(
            e,
            "m.csv: the readings end 2026-11-28T01:30:00+01:00 (after line 7, 6 slots), the cycle's 8 slots \
             run to 2026-11-28T02:00:00+01:00: readings missing at the end, or a file for a cycle of another length"
        );
        let e = err(&text, Some(4));
        assert!(
            e.starts_with(
                "m.csv: line 6: the interval to 2026-11-28T01:15:00+01:00 is past the cycle's end"
            ),
            "{e}"
        );
        let e = err(&text, Some(usize::MAX));
        assert!(
            e.contains("the cycle's 18446744073709551615 slots run to"),
            "{e}"
        );
        let one = rows("timestamp,energy_kwh", 15, &["1"]);
        assert!(err(&one, Some(1)).contains("line 2: one reading and no end time"));
    }

    #[test]
    fn forecast_and_meter_make_a_household() {
        let forecast = rows("timestamp,energy_wh", 60, &["1003", "0"]);
        let actual = rows(
            "timestamp,energy_kwh",
            15,
            &["0.25", "0.25", "0.25", "0.3", "0", "0", "0", "0"],
        );
        let f = MeterFile {
            origin: "f.csv",
            text: &forecast,
            format: MeterFormat::Csv,
        };
        let a = MeterFile {
            origin: "a.csv",
            text: &actual,
            format: MeterFormat::Csv,
        };
        let h = household_from_meters(&f, &a, &clock(None), Units::Round).unwrap();
        let kwh = |v: &[&str]| {
            v.iter()
                .map(|x| x.parse::<Decimal>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            h.value.promises_kwh,
            kwh(&["0.251", "0.251", "0.251", "0.25", "0", "0", "0", "0"])
        );
        assert_eq!(
            h.value.actual_kwh,
            kwh(&["0.25", "0.25", "0.25", "0.3", "0", "0", "0", "0"])
        );
        let short = rows("timestamp,energy_kwh", 15, &["0.25", "0.25"]);
        let e = household_from_meters(
            &f,
            &MeterFile { text: &short, ..a },
            &clock(None),
            Units::Round,
        )
        .unwrap_err();
        assert!(
            e.starts_with("a.csv: the readings end") && e.contains("the cycle's 8 slots"),
            "{e}"
        );
        let json = MeterFile {
            format: MeterFormat::Json,
            ..a
        };
        assert!(
            household_from_meters(&f, &json, &clock(None), Units::Round)
                .unwrap_err()
                .contains("not a meter series")
        );
    }

    #[test]
    fn hourly_values_spread_exactly_first_slots_first() {
        assert_eq!(spread(1003, 4), vec![251, 251, 251, 250]);
        assert_eq!(spread(-1003, 4), vec![-251, -251, -251, -250]);
        assert_eq!(spread(-2, 4), vec![-1, -1, 0, 0]);
        assert_eq!(spread(400_000, 4), vec![100_000; 4]);
        for wh in -1000..1000 {
            let s = spread(wh, 4);
            assert_eq!(s.iter().sum::<i64>(), wh);
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn times_need_an_offset() {
        let a = parse_time("2026-11-28T00:00:00+01:00").unwrap();
        let b = parse_time("2026-11-27 23:00:00Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_time("2026-11-28T00:00:00").is_err());
        assert!(parse_time("yesterday").unwrap_err().contains("ISO 8601"));
        assert!(parse_time(&"9".repeat(100)).is_err());
        assert_eq!("ESPI".parse::<MeterFormat>().unwrap(), MeterFormat::Espi);
        assert!("xls".parse::<MeterFormat>().is_err());
        assert_eq!(
            MeterFormat::from_path(Path::new("a/b.XML")),
            Some(MeterFormat::Espi)
        );
        assert!(CycleClock::parse("2026-11-28", None).is_err());
    }
}
