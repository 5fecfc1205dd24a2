//! Interval CSV as utilities export it: one row per interval, a timestamp
//! column and an energy column whose header states its unit.
//!
//! ```text
//! timestamp,energy_kwh
//! 2026-11-28T00:00:00+01:00,0.132
//! 2026-11-28T00:15:00+01:00,0.118
//! ```
//!
//! * **Timestamp** (the interval's start): a column named `timestamp`,
//!   `start`, `start_time`, `interval_start`, `time` or `datetime` (any
//!   case, spaces read as `_`), ISO 8601 with an offset (`Z`, `+01:00`).
//! * **End** (optional): `end`, `end_time` or `interval_end`. Without it,
//!   the interval is the shortest step between rows (15 minutes or an hour);
//!   give it when a file could be read either way.
//! * **Energy**: the one column whose header ends in the unit `kWh` or `Wh`
//!   (`energy_kwh`, `Energy (kWh)`, `consumption [Wh]`, `kWh`); positive is
//!   consumption, negative supply. Other columns (quality flags, meter
//!   ids) are ignored, unless no column or several state an energy unit.
//!
//! Rows are placed on the cycle's slots by [`crate::meter`].

use pb_units::Decimal;
use pb_units::limits::MAX_SLOTS;

use crate::meter::{Reading, parse_time};

const START: [&str; 6] = [
    "timestamp",
    "start",
    "start_time",
    "interval_start",
    "time",
    "datetime",
];
const END: [&str; 3] = ["end", "end_time", "interval_end"];

fn normal(header: &str) -> String {
    header.trim().to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The unit a header ends in: its last run of letters (`energy_kwh` ->
/// `kwh`, `Energy (kWh)` -> `kWh`).
fn unit_of(header: &str) -> &str {
    header
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .rsplit(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("")
}

/// The readings of an interval CSV file, in file order; every error starts
/// with `origin` and names the line and column.
pub(crate) fn readings(origin: &str, text: &str) -> Result<Vec<Reading>, String> {
    crate::too_large(origin, text.len())?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("{origin}: line 1: {e}"))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&normal(h).as_str()))
    };
    let start_col = find(&START).ok_or_else(|| {
        format!(
            "{origin}: line 1: no timestamp column (name one of {})",
            START.join(", ")
        )
    })?;
    let end_col = find(&END);
    let others: Vec<(usize, &str)> = headers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != start_col && Some(*i) != end_col)
        .collect();
    let energy: Vec<(usize, &str, u32, &'static str)> = others
        .iter()
        .filter_map(|&(i, h)| match unit_of(h).to_ascii_lowercase().as_str() {
            "kwh" => Some((i, h, 3, "kWh")),
            "wh" => Some((i, h, 0, "Wh")),
            _ => None,
        })
        .collect();
    let (col, col_name, scale, unit) = match (energy.as_slice(), others.as_slice()) {
        ([one], _) => *one,
        ([], [(i, h)]) => {
            return Err(format!(
                "{origin}: line 1, column {} {:?}: unit {:?} is not known; the header must state kWh or Wh \
                 (as in energy_kwh or \"Energy (Wh)\")",
                i + 1,
                pb_units::shorten(h),
                pb_units::shorten(unit_of(h))
            ));
        }
        ([], _) => {
            return Err(format!(
                "{origin}: line 1: no energy column: one column header must end in its unit, kWh or Wh \
                 (as in energy_kwh)"
            ));
        }
        (many, _) => {
            let names: Vec<String> = many
                .iter()
                .map(|e| format!("{:?}", pb_units::shorten(e.1)))
                .collect();
            return Err(format!(
                "{origin}: line 1: several energy columns ({}): give one",
                names.join(", ")
            ));
        }
    };
    let col_name = pb_units::shorten(col_name);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("{origin}: line {}: {e}", p.line()),
            None => format!("{origin}: {e}"),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if out.len() >= MAX_SLOTS as usize {
            return Err(format!(
                "{origin}: line {line}: more than {MAX_SLOTS} intervals, more than the slots of the longest cycle"
            ));
        }
        let cell = |c: usize| record.get(c).unwrap_or("");
        let time = |c: usize, what: &str| {
            let t = parse_time(cell(c))
                .map_err(|e| format!("{origin}: line {line}, column {what}: {e}"))?;
            if t.nanosecond() != 0 {
                return Err(format!(
                    "{origin}: line {line}, column {what}: {:?} is misaligned: not on a whole second",
                    pb_units::shorten(cell(c))
                ));
            }
            Ok(t.unix_timestamp())
        };
        let start = time(start_col, "timestamp")?;
        let seconds = match end_col {
            Some(c) => {
                let end = time(c, "end")?;
                if end <= start {
                    return Err(format!(
                        "{origin}: line {line}: the interval ends before it starts"
                    ));
                }
                Some(end - start)
            }
            None => None,
        };
        let value: Decimal = cell(col)
            .parse()
            .map_err(|e| format!("{origin}: line {line}, column {col_name}: {e}"))?;
        out.push(Reading {
            at: format!("line {line}"),
            start,
            seconds,
            value,
            scale,
            unit,
        });
    }
    if out.is_empty() {
        return Err(format!("{origin}: no readings after the header"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_read_from_headers() {
        assert_eq!(unit_of("energy_kwh"), "kwh");
        assert_eq!(unit_of("Energy (kWh)"), "kWh");
        assert_eq!(unit_of("consumption [Wh]"), "Wh");
        assert_eq!(unit_of("Wh"), "Wh");
        assert_eq!(unit_of("energy (MWh)"), "MWh");
        assert_eq!(unit_of(""), "");
    }
}
