//! Green Button (ESPI, NAESB REQ.21) interval XML: the readings of a
//! meter as utilities publish them, read with `quick-xml`.
//!
//! Every `IntervalReading` element in the ESPI namespace
//! (`http://naesb.org/espi`), at any depth (an Atom feed of entries, or a
//! bare `IntervalBlock`), gives one reading: `timePeriod/start` (Unix
//! seconds, UTC), `timePeriod/duration` (seconds: 900 or 3600) and `value`
//! (an integer). Its unit comes from the `ReadingType` before it in the
//! document (or the document's first, when none is before it):
//!
//! * `uom` must be 72 (Wh); the value is `value * 10^powerOfTenMultiplier`
//!   Wh (multiplier -9 to 9, default 0);
//! * `flowDirection` 1 (forward: delivered to the household, counted
//!   positive), 19 (reverse: received from it, counted negative) or 4 (net,
//!   signed as given); default 1. A file with readings of several
//!   directions gives, per slot, their signed sum; each direction's
//!   readings must cover the cycle on their own. One file is one meter:
//!   two usage points' readings of one direction are duplicates.
//!
//! Other ESPI elements (costs, qualities, `LocalTimeParameters`) are
//! ignored: times are instants, so daylight-saving changes need nothing.
//! Readings are placed on the cycle's slots by [`crate::meter`].

use std::collections::BTreeMap;

use pb_units::limits::MAX_SLOTS;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use crate::meter::Reading;

/// The ESPI namespace.
pub const ESPI_NS: &str = "http://naesb.org/espi";

/// Longest text of one field (a number) accepted.
const FIELD_LEN: usize = 64;

/// Byte offsets to line numbers, for offsets that only grow.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, pos: u64) -> usize {
        let pos = (pos as usize).min(self.text.len());
        if pos < self.pos {
            // Not expected (offsets grow); count again from the start.
            self.pos = 0;
            self.line = 1;
        }
        let bytes = self.text.as_bytes();
        self.line += bytes[self.pos..pos].iter().filter(|&&b| b == b'\n').count();
        self.pos = pos;
        self.line
    }
}

#[derive(Default)]
struct ReadingType {
    line: usize,
    uom: Option<String>,
    multiplier: Option<String>,
    flow: Option<String>,
}

#[derive(Default)]
struct RawReading {
    line: usize,
    start: Option<String>,
    duration: Option<String>,
    value: Option<String>,
    /// How many `ReadingType`s came before it.
    types_before: usize,
}

/// A `ReadingType` checked: the power of ten and the direction.
struct Unit {
    multiplier: i32,
    flow: u8,
}

fn check_type(origin: &str, t: &ReadingType) -> Result<Unit, String> {
    let at = format!("{origin}: line {}: <ReadingType>", t.line);
    match t.uom.as_deref().map(str::trim) {
        Some("72") => {}
        Some(other) => {
            return Err(format!(
                "{at}: uom {:?} is not a unit this reads: only 72 (Wh)",
                pb_units::shorten(other)
            ));
        }
        None => return Err(format!("{at}: no <uom> (the unit of the readings)")),
    }
    let multiplier = match t.multiplier.as_deref().map(str::trim) {
        None => 0,
        Some(m) => match m.parse::<i32>() {
            Ok(m) if (-9..=9).contains(&m) => m,
            _ => {
                return Err(format!(
                    "{at}: powerOfTenMultiplier {:?} is not an integer from -9 to 9",
                    pb_units::shorten(m)
                ));
            }
        },
    };
    let flow = match t.flow.as_deref().map(str::trim) {
        None | Some("1") => 1,
        Some("19") => 19,
        Some("4") => 4,
        Some(other) => {
            return Err(format!(
                "{at}: flowDirection {:?} is not read: 1 (forward), 19 (reverse) or 4 (net)",
                pb_units::shorten(other)
            ));
        }
    };
    Ok(Unit { multiplier, flow })
}

fn direction(flow: u8) -> (&'static str, i64) {
    match flow {
        19 => ("reverse readings", -1),
        4 => ("net readings", 1),
        _ => ("forward readings", 1),
    }
}

/// Which field of the current element a text belongs to.
#[derive(Clone, Copy)]
enum Field {
    Start,
    Duration,
    Value,
    Uom,
    Multiplier,
    Flow,
}

/// One flow direction's readings: its name, its sign, the readings.
pub(crate) type Direction = (&'static str, i64, Vec<Reading>);

/// The readings of an ESPI document grouped by flow direction (its name
/// and sign), each group in document order; every error starts with
/// `origin` and names the line and element.
pub(crate) fn readings(origin: &str, text: &str) -> Result<Vec<Direction>, String> {
    crate::too_large(origin, text.len())?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut lines = Lines {
        text,
        pos: 0,
        line: 1,
    };
    // Open elements: local name, in the ESPI namespace, line.
    let mut stack: Vec<(String, bool, usize)> = Vec::new();
    let mut root: Option<String> = None;
    let mut types: Vec<ReadingType> = Vec::new();
    let mut raw: Vec<RawReading> = Vec::new();
    let mut open_type: Option<ReadingType> = None;
    let mut open_reading: Option<RawReading> = None;
    let mut field: Option<Field> = None;
    loop {
        let (espi, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (
                matches!(ns, ResolveResult::Bound(Namespace(n)) if n == ESPI_NS.as_bytes()),
                event,
            ),
            Err(e) => {
                let line = lines.at(reader.error_position());
                return Err(format!(
                    "{origin}: line {line}: not well-formed XML: {}",
                    pb_units::shorten(&e.to_string())
                ));
            }
        };
        // The end of the event: for a tag, the line its `>` is on.
        let line = lines.at(reader.buffer_position());
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if root.is_none() {
                    root = Some(name.clone());
                }
                let parent = stack.last().filter(|p| p.1).map(|p| p.0.as_str());
                let grand = stack
                    .len()
                    .checked_sub(2)
                    .and_then(|i| stack.get(i))
                    .filter(|p| p.1)
                    .map(|p| p.0.as_str());
                field = None;
                if espi {
                    match (name.as_str(), parent, grand) {
                        ("ReadingType", _, _) if open_type.is_none() => {
                            open_type = Some(ReadingType {
                                line,
                                ..ReadingType::default()
                            });
                        }
                        ("IntervalReading", _, _) if open_reading.is_none() => {
                            if raw.len() >= 3 * MAX_SLOTS as usize {
                                return Err(format!(
                                    "{origin}: line {line}: more than {} <IntervalReading>s, more than \
                                     three directions of the longest cycle",
                                    3 * MAX_SLOTS
                                ));
                            }
                            open_reading = Some(RawReading {
                                line,
                                types_before: types.len(),
                                ..RawReading::default()
                            });
                        }
                        ("start", Some("timePeriod"), Some("IntervalReading")) => {
                            field = Some(Field::Start)
                        }
                        ("duration", Some("timePeriod"), Some("IntervalReading")) => {
                            field = Some(Field::Duration)
                        }
                        ("value", Some("IntervalReading"), _) => field = Some(Field::Value),
                        ("uom", Some("ReadingType"), _) => field = Some(Field::Uom),
                        ("powerOfTenMultiplier", Some("ReadingType"), _) => {
                            field = Some(Field::Multiplier)
                        }
                        ("flowDirection", Some("ReadingType"), _) => field = Some(Field::Flow),
                        _ => {}
                    }
                }
                stack.push((name, espi, line));
                if matches!(event, Event::Empty(_)) {
                    close(
                        &mut stack,
                        &mut open_type,
                        &mut open_reading,
                        &mut types,
                        &mut raw,
                    );
                    field = None;
                }
            }
            Event::End(_) => {
                close(
                    &mut stack,
                    &mut open_type,
                    &mut open_reading,
                    &mut types,
                    &mut raw,
                );
                field = None;
            }
            Event::Text(ref t) => {
                let Some(f) = field else { continue };
                let s = t
                    .decode()
                    .map_err(|e| format!("{origin}: line {line}: text that is not UTF-8: {e}"))?;
                let target = match f {
                    Field::Start => open_reading.as_mut().map(|r| &mut r.start),
                    Field::Duration => open_reading.as_mut().map(|r| &mut r.duration),
                    Field::Value => open_reading.as_mut().map(|r| &mut r.value),
                    Field::Uom => open_type.as_mut().map(|r| &mut r.uom),
                    Field::Multiplier => open_type.as_mut().map(|r| &mut r.multiplier),
                    Field::Flow => open_type.as_mut().map(|r| &mut r.flow),
                };
                if let Some(slot) = target {
                    let v = slot.get_or_insert_with(String::new);
                    v.push_str(&s);
                    if v.len() > FIELD_LEN {
                        let name = stack.last().map_or("", |s| s.0.as_str());
                        return Err(format!(
                            "{origin}: line {line}: <{name}> is too long for a number"
                        ));
                    }
                }
            }
            Event::CData(_) | Event::GeneralRef(_) if field.is_some() => {
                let name = stack.last().map_or("", |s| s.0.as_str());
                return Err(format!(
                    "{origin}: line {line}: <{name}> holds CDATA or a character reference: \
                     write the number as plain text"
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some((name, _, line)) = stack.last() {
        return Err(format!(
            "{origin}: truncated: <{name}> (line {line}) is not closed at the end of the file"
        ));
    }
    let Some(root) = root else {
        return Err(format!("{origin}: no XML element: not an ESPI document"));
    };
    if raw.is_empty() {
        return Err(format!(
            "{origin}: not an ESPI document: the root element is <{}> and there is no \
             <IntervalReading> in the ESPI namespace ({ESPI_NS})",
            pb_units::shorten(&root)
        ));
    }
    if types.is_empty() {
        return Err(format!(
            "{origin}: no <ReadingType>: the unit of the readings is unknown"
        ));
    }
    // Only the reading types that readings use are checked (a feed may
    // also describe, say, a gas meter).
    let mut units: BTreeMap<usize, Unit> = BTreeMap::new();
    let mut groups: BTreeMap<u8, Vec<Reading>> = BTreeMap::new();
    for r in raw {
        let at = format!("line {} <IntervalReading>", r.line);
        let index = r.types_before.saturating_sub(1);
        let unit = match units.entry(index) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let t = types
                    .get(index)
                    .ok_or_else(|| format!("{origin}: {at}: no <ReadingType>"))?;
                e.insert(check_type(origin, t)?)
            }
        };
        let need = |v: Option<String>, what: &str| {
            v.map(|s| s.trim().to_string())
                .ok_or_else(|| format!("{origin}: {at}: no {what}"))
        };
        let integer = |s: &str, what: &str| {
            s.parse::<i64>().map_err(|_| {
                format!(
                    "{origin}: {at}: {what} {:?} is not an integer",
                    pb_units::shorten(s)
                )
            })
        };
        let start = integer(&need(r.start, "<timePeriod><start>")?, "<start>")?;
        let duration = integer(&need(r.duration, "<timePeriod><duration>")?, "<duration>")?;
        if duration <= 0 {
            return Err(format!(
                "{origin}: {at}: <duration> {duration} is not a positive number of seconds"
            ));
        }
        let value = integer(&need(r.value, "<value>")?, "<value>")?;
        let value = format!("{value}e{}", unit.multiplier)
            .parse()
            .map_err(|e| format!("{origin}: {at}: <value>: {e}"))?;
        groups.entry(unit.flow).or_default().push(Reading {
            at,
            start,
            seconds: Some(duration),
            value,
            scale: 0,
            unit: "Wh",
        });
    }
    Ok(groups
        .into_iter()
        .map(|(flow, readings)| {
            let (name, sign) = direction(flow);
            (name, sign, readings)
        })
        .collect())
}

/// Closes the innermost element, finishing a `ReadingType` or an
/// `IntervalReading` that it ends.
fn close(
    stack: &mut Vec<(String, bool, usize)>,
    open_type: &mut Option<ReadingType>,
    open_reading: &mut Option<RawReading>,
    types: &mut Vec<ReadingType>,
    raw: &mut Vec<RawReading>,
) {
    let Some((name, espi, _)) = stack.pop() else {
        return;
    };
    if !espi {
        return;
    }
    // The element that opened it is the outermost of that name still open.
    let still_open = |n: &str| stack.iter().any(|(s, e, _)| *e && s == n);
    match name.as_str() {
        "ReadingType" if !still_open("ReadingType") => {
            if let Some(t) = open_type.take() {
                types.push(t);
            }
        }
        "IntervalReading" if !still_open("IntervalReading") => {
            if let Some(r) = open_reading.take() {
                raw.push(r);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::meter::{CycleClock, MeterFile, MeterFormat, meter_series};
    use pb_model::parse::{Rounding, Units};

    const TWO_WAY: &str = include_str!("../../../docs/examples/meter-espi.xml");
    const HOURLY: &str = include_str!("../../../docs/examples/meter-hourly-espi.xml");
    /// 2026-11-28T00:00:00+01:00.
    const T0: i64 = 1_795_820_400;

    fn series(text: &str, slots: Option<usize>) -> Result<Vec<i64>, String> {
        let clock = CycleClock::parse("2026-11-28T00:00:00+01:00", slots).unwrap();
        let file = MeterFile {
            origin: "g.xml",
            text,
            format: MeterFormat::Espi,
        };
        meter_series(&file, &clock, Units::Round, &mut Rounding::default())
    }

    /// A bare IntervalBlock of 15-minute readings from `T0`, `uom` 72.
    fn block(values: &[&str], extra_type: &str) -> String {
        let mut t = String::from(
            "<IntervalBlock xmlns=\"http://naesb.org/espi\">\n<ReadingType><uom>72</uom>",
        );
        t += extra_type;
        t += "</ReadingType>\n";
        for (i, v) in values.iter().enumerate() {
            t += &format!(
                "<IntervalReading><timePeriod><duration>900</duration><start>{}</start></timePeriod><value>{v}</value></IntervalReading>\n",
                T0 + 900 * i as i64
            );
        }
        t + "</IntervalBlock>\n"
    }

    #[test]
    fn green_button_feeds_are_read_by_direction_and_time() {
        // Delivered minus received, per slot (the example of docs/api.md).
        assert_eq!(
            series(TWO_WAY, Some(8)).unwrap(),
            vec![80, 75, 60, 10, -130, -230, -310, -330]
        );
        assert_eq!(
            series(HOURLY, Some(8)).unwrap(),
            vec![251, 251, 251, 250, 216, 216, 215, 215]
        );
        // A multiplier of 3: kWh in Wh's unit; -3: mWh, rounded to Wh.
        let v = series(
            &block(
                &["2", "-1"],
                "<powerOfTenMultiplier>3</powerOfTenMultiplier>",
            ),
            None,
        );
        assert_eq!(v.unwrap(), vec![2000, -1000]);
        let v = series(
            &block(
                &["1500", "499"],
                "<powerOfTenMultiplier>-3</powerOfTenMultiplier>",
            ),
            None,
        );
        assert_eq!(v.unwrap(), vec![2, 0]);
    }

    #[test]
    fn documents_that_are_not_espi_are_refused() {
        for (text, want) in [
            (
                "<html><body><p>1</p></body></html>",
                "g.xml: not an ESPI document: the root element is <html>",
            ),
            (
                "<IntervalBlock><IntervalReading/></IntervalBlock>",
                "g.xml: not an ESPI document: the root element is <IntervalBlock> and there is no <IntervalReading> in the ESPI namespace",
            ),
            ("", "g.xml: no XML element"),
            ("just text", "g.xml: no XML element"),
            ("timestamp,energy_kwh\n", "g.xml: no XML element"),
            ("<a><b></a>", "g.xml: line 1: not well-formed XML"),
        ] {
            let e = series(text, None).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }

    #[test]
    fn truncated_documents_are_refused_wherever_they_are_cut() {
        let end = TWO_WAY.trim_end().len();
        for cut in (0..end).filter(|&i| TWO_WAY.is_char_boundary(i)) {
            let e = series(&TWO_WAY[..cut], Some(8));
            assert!(e.is_err(), "cut at {cut} was accepted");
        }
        let cut = TWO_WAY.find("<value>240").unwrap();
        let open = TWO_WAY[..cut].rfind("<IntervalReading>").unwrap();
        let line = TWO_WAY[..open].matches('\n').count() + 1;
        let e = series(&TWO_WAY[..cut], Some(8)).unwrap_err();
        assert_eq!(
            e,
            format!(
                "g.xml: truncated: <IntervalReading> (line {line}) is not closed at the end of the file"
            )
        );
    }

    #[test]
    fn bad_readings_and_reading_types_are_named_by_line() {
        let e = series(&block(&["1", "x"], ""), None).unwrap_err();
        assert_eq!(
            e,
            "g.xml: line 4 <IntervalReading>: <value> \"x\" is not an integer"
        );
        let e = series(&block(&["1", "1.5"], ""), None).unwrap_err();
        assert!(
            e.contains("line 4 <IntervalReading>: <value> \"1.5\" is not an integer"),
            "{e}"
        );
        let no_value = block(&["1", "2"], "").replace("<value>2</value>", "");
        let e = series(&no_value, None).unwrap_err();
        assert_eq!(e, "g.xml: line 4 <IntervalReading>: no <value>");
        let watts = block(&["1"], "").replace("<uom>72</uom>", "<uom>38</uom>");
        let e = series(&watts, None).unwrap_err();
        assert!(
            e.starts_with("g.xml: line 2: <ReadingType>: uom \"38\" is not a unit this reads"),
            "{e}"
        );
        let gas = format!(
            "<feed xmlns:e=\"http://naesb.org/espi\"><e:ReadingType><e:uom>169</e:uom></e:ReadingType>{}</feed>",
            block(&["1"], "")
        );
        assert_eq!(series(&gas, None).unwrap(), vec![1]);
        let gas_only = gas.replace("<ReadingType><uom>72</uom></ReadingType>", "");
        let e = series(&gas_only, None).unwrap_err();
        assert!(
            e.starts_with("g.xml: line 1: <ReadingType>: uom \"169\""),
            "{e}"
        );
        let untyped = block(&["1"], "").replace("<ReadingType><uom>72</uom></ReadingType>", "");
        assert!(
            series(&untyped, None)
                .unwrap_err()
                .contains("no <ReadingType>")
        );
        let flow = block(&["1"], "<flowDirection>7</flowDirection>");
        assert!(
            series(&flow, None)
                .unwrap_err()
                .contains("flowDirection \"7\"")
        );
        let entity = block(&["1", "2"], "").replace("<value>2</value>", "<value>&#50;</value>");
        assert!(
            series(&entity, None)
                .unwrap_err()
                .contains("line 4: <value> holds CDATA or a character reference")
        );
        let gap = block(&["1", "2", "3"], "").replace(
            &format!("<start>{}</start>", T0 + 900),
            &format!("<start>{}</start>", T0 + 1800),
        );
        let e = series(&gap, None).unwrap_err();
        assert_eq!(
            e,
            "g.xml (forward readings): line 4 <IntervalReading>: gap: no reading from \
             2026-11-28T00:15:00+01:00 to 2026-11-28T00:30:00+01:00 (after line 3 <IntervalReading>)"
        );
        // Another cycle length.
        let e = series(&block(&["1", "2"], ""), Some(4)).unwrap_err();
        assert!(
            e.starts_with("g.xml (forward readings): the readings end") && e.contains("4 slots"),
            "{e}"
        );
    }
}
