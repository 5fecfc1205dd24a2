use pb_units::limits::MAX_SLOT_WH;
use pb_units::{CycleId, MemberId, SlotCount, Wh};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// One household's promises and meter values for one cycle.
///
/// Deserialisation goes through [`Data::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DataFields")]
pub struct Data {
    member: MemberId,
    cycle: CycleId,
    promises: Vec<Wh>,
    actual: Vec<Wh>,
}

/// Checks `|value| <= limit` for every slot, naming the first offender.
pub(crate) fn check_range(
    field: &'static str,
    values: impl IntoIterator<Item = i64>,
    limit: i64,
) -> Result<(), ModelError> {
    for (slot, value) in values.into_iter().enumerate() {
        if value.unsigned_abs() > limit as u64 {
            return Err(ModelError::Range {
                field,
                slot,
                value,
                limit,
            });
        }
    }
    Ok(())
}

/// The serialised form, checked on the way in.
#[derive(Deserialize)]
struct DataFields {
    member: MemberId,
    cycle: CycleId,
    promises: Vec<Wh>,
    actual: Vec<Wh>,
}

impl TryFrom<DataFields> for Data {
    type Error = ModelError;
    fn try_from(f: DataFields) -> Result<Self, ModelError> {
        Data::new(f.member, f.cycle, f.promises, f.actual)
    }
}

impl Data {
    /// Checks lengths (equal, a valid slot count) and ranges
    /// (`|value| <= MAX_SLOT_WH`).
    pub fn new(
        member: MemberId,
        cycle: CycleId,
        promises: Vec<Wh>,
        actual: Vec<Wh>,
    ) -> Result<Data, ModelError> {
        SlotCount::new(promises.len())?;
        if actual.len() != promises.len() {
            return Err(ModelError::Length {
                field: "actual",
                expected: promises.len(),
                found: actual.len(),
            });
        }
        check_range("promises", promises.iter().map(|w| w.0), MAX_SLOT_WH)?;
        check_range("actual", actual.iter().map(|w| w.0), MAX_SLOT_WH)?;
        Ok(Data {
            member,
            cycle,
            promises,
            actual,
        })
    }

    /// The household.
    pub fn member(&self) -> &MemberId {
        &self.member
    }
    /// The cycle.
    pub fn cycle(&self) -> CycleId {
        self.cycle
    }
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.promises.len()
    }
    /// Promised energy per slot.
    pub fn promises(&self) -> &[Wh] {
        &self.promises
    }
    /// Metered energy per slot.
    pub fn actual(&self) -> &[Wh] {
        &self.actual
    }

    /// The per-slot vectors of design section 3.
    pub fn vectors(&self) -> SlotVectors {
        SlotVectors::new(&self.promises, &self.actual)
    }
}

/// A per-slot vector of a household (design section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Vector {
    /// Consumption within an accepted consumer promise (Wh).
    CA,
    /// Consumption without a consumer promise (Wh).
    CR,
    /// Over-consumed flag (0/1).
    FC,
    /// Supply within an accepted producer promise (Wh).
    SA,
    /// Supply without a producer promise (Wh).
    SR,
    /// Over-supplied flag (0/1).
    FP,
    /// Over-consumed amount (Wh).
    OC,
    /// Over-supplied amount (Wh).
    OP,
}

impl Vector {
    /// Largest value the vector can take in one slot.
    pub fn max_value(self) -> i64 {
        match self {
            Vector::FC | Vector::FP => 1,
            _ => MAX_SLOT_WH,
        }
    }
}

/// The vectors of section 3 for one household, computed in clear by its core.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotVectors {
    /// Accepted consumer flag per slot.
    pub ac: Vec<i64>,
    /// Accepted producer flag per slot.
    pub ap: Vec<i64>,
    /// See [`Vector::CA`].
    pub ca: Vec<i64>,
    /// See [`Vector::CR`].
    pub cr: Vec<i64>,
    /// See [`Vector::FC`].
    pub fc: Vec<i64>,
    /// See [`Vector::SA`].
    pub sa: Vec<i64>,
    /// See [`Vector::SR`].
    pub sr: Vec<i64>,
    /// See [`Vector::FP`].
    pub fp: Vec<i64>,
    /// See [`Vector::OC`].
    pub oc: Vec<i64>,
    /// See [`Vector::OP`].
    pub op: Vec<i64>,
    /// Individual deviation `sdev - cdev` (Wh).
    pub dev: Vec<i64>,
}

impl SlotVectors {
    fn new(promises: &[Wh], actual: &[Wh]) -> SlotVectors {
        let mut v = SlotVectors::default();
        for (&Wh(u), &Wh(x)) in promises.iter().zip(actual) {
            let ac = (u > 0) as i64;
            let ap = (u < 0) as i64;
            let cons = x.max(0);
            let sup = (-x).max(0);
            let cdev = ac * (cons - u.max(0));
            let sdev = ap * (sup - (-u).max(0));
            v.ac.push(ac);
            v.ap.push(ap);
            v.ca.push(ac * cons);
            v.cr.push((1 - ac) * cons);
            v.sa.push(ap * sup);
            v.sr.push((1 - ap) * sup);
            v.fc.push((cdev > 0) as i64);
            v.fp.push((sdev > 0) as i64);
            v.oc.push(cdev.max(0));
            v.op.push(sdev.max(0));
            v.dev.push(sdev - cdev);
        }
        v
    }

    /// One of the billed vectors.
    pub fn get(&self, which: Vector) -> &[i64] {
        match which {
            Vector::CA => &self.ca,
            Vector::CR => &self.cr,
            Vector::FC => &self.fc,
            Vector::SA => &self.sa,
            Vector::SR => &self.sr,
            Vector::FP => &self.fp,
            Vector::OC => &self.oc,
            Vector::OP => &self.op,
        }
    }

    /// Concatenation of the named vectors (the layout of a side).
    pub fn side(&self, which: &[Vector]) -> Vec<i64> {
        which
            .iter()
            .flat_map(|&w| self.get(w).iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(u: &[i64], x: &[i64]) -> Result<Data, ModelError> {
        Data::new(
            MemberId::new("h").unwrap(),
            CycleId(1),
            u.iter().map(|&v| Wh(v)).collect(),
            x.iter().map(|&v| Wh(v)).collect(),
        )
    }

    #[test]
    fn vectors_follow_section_3() {
        // consumer over-consumes, consumer under-consumes, producer over-supplies,
        // no promise but consumes, producer consumes
        let v = data(&[100, 100, -50, 0, -10], &[150, 80, -70, 30, 5])
            .unwrap()
            .vectors();
        assert_eq!(v.ca, [150, 80, 0, 0, 0]);
        assert_eq!(v.cr, [0, 0, 0, 30, 5]);
        assert_eq!(v.sa, [0, 0, 70, 0, 0]);
        assert_eq!(v.sr, [0, 0, 0, 0, 0]);
        assert_eq!(v.fc, [1, 0, 0, 0, 0]);
        assert_eq!(v.oc, [50, 0, 0, 0, 0]);
        assert_eq!(v.fp, [0, 0, 1, 0, 0]);
        assert_eq!(v.op, [0, 0, 20, 0, 0]);
        // producer who consumes 5 instead of supplying 10: sdev = 0 - 10
        assert_eq!(v.dev, [-50, 20, 20, 0, -10]);
    }

    #[test]
    fn deserialisation_checks_like_the_constructor() {
        let good = data(&[1, 2], &[3, 4]).unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<Data>(&json).unwrap(), good);
        assert!(serde_json::from_str::<Data>(&json.replace("[3,4]", "[3]")).is_err());
        assert!(serde_json::from_str::<Data>(&json.replace("[3,4]", "[3,4000000]")).is_err());
    }

    #[test]
    fn bad_data_is_refused() {
        assert!(matches!(
            data(&[1, 2], &[1]),
            Err(ModelError::Length {
                field: "actual",
                ..
            })
        ));
        assert!(matches!(data(&[], &[]), Err(ModelError::Slots(_))));
        assert!(matches!(
            data(&[MAX_SLOT_WH + 1], &[0]),
            Err(ModelError::Range {
                field: "promises",
                slot: 0,
                ..
            })
        ));
        assert!(matches!(
            data(&[0, 0], &[0, -MAX_SLOT_WH - 1]),
            Err(ModelError::Range {
                field: "actual",
                slot: 1,
                ..
            })
        ));
    }
}
