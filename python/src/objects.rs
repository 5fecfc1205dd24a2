//! The seed's objects, one-to-one with the engine's types.

use std::sync::Mutex;

use pb_glwe::SecretKey;
use pb_glwe::seeding::new_seeder;
use pb_hiding::wire::Wire;
use pb_model::BillingModel;
use pb_model::parse::{Rounding, energy_kwh, prices_per_kwh};
use pb_przs::{IdentityPublic, PairwiseKeys};
use pb_shared_billing::{CpuBackend, SharedBilling as Engine};
use pb_units::{CommunityId, CycleId, MemberId, Money, PriceUnits, Wh};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use rand_core::OsRng;

use crate::convert::{
    decimals, member_id, py_decimal, type_name, units, value_error, warn_rounding,
};

/// A billing model from its name (`str` or `BillingModel`).
pub fn model_of(value: &Bound<'_, PyAny>) -> PyResult<BillingModel> {
    let name: String = value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "model must be a BillingModel or one of 'ucs', 'ucs-reference', 'proportional', not {}",
            type_name(value)
        ))
    })?;
    name.parse().map_err(value_error)
}

fn decimal_list<'py>(
    py: Python<'py>,
    texts: impl IntoIterator<Item = String>,
) -> PyResult<Bound<'py, PyList>> {
    let items = texts
        .into_iter()
        .map(|t| py_decimal(py, &t))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// The public context of a billing cycle: prices per slot in currency per
/// kWh and the billing model.
#[pyclass(module = "private_billing", frozen)]
#[derive(Clone)]
pub struct CycleContext {
    pub(crate) inner: pb_model::CycleContext,
}

#[pymethods]
impl CycleContext {
    #[new]
    #[pyo3(signature = (cycle_id, *, trading, retail, feed_in, model = None, strict_units = false))]
    fn new(
        py: Python<'_>,
        cycle_id: &Bound<'_, PyAny>,
        trading: &Bound<'_, PyAny>,
        retail: &Bound<'_, PyAny>,
        feed_in: &Bound<'_, PyAny>,
        model: Option<&Bound<'_, PyAny>>,
        strict_units: bool,
    ) -> PyResult<CycleContext> {
        let cycle = crate::convert::cycle_id(cycle_id)?;
        let model = match model {
            Some(m) => model_of(m)?,
            None => BillingModel::Ucs,
        };
        let units = units(strict_units);
        let mut rounding = Rounding::default();
        let trading = decimals(trading, "trading")?;
        let retail = decimals(retail, "retail")?;
        let feed_in = decimals(feed_in, "feed_in")?;
        let slots = trading.len();
        if slots == 0 {
            return Err(value_error(
                "trading is empty: a cycle needs at least one slot",
            ));
        }
        let mut side = |name: &str, values: &[pb_units::Decimal]| {
            prices_per_kwh(name, values, slots, units, &mut rounding).map_err(value_error)
        };
        let trading = side("trading", &trading)?;
        let retail = side("retail", &retail)?;
        let feed_in = side("feed_in", &feed_in)?;
        let inner = pb_model::CycleContext::new(cycle, model, trading, retail, feed_in)
            .map_err(value_error)?;
        warn_rounding(py, &rounding)?;
        Ok(CycleContext { inner })
    }

    /// The cycle id.
    #[getter]
    fn cycle_id(&self) -> u64 {
        self.inner.cycle().0
    }

    /// The billing model's name.
    #[getter]
    fn model(&self) -> String {
        self.inner.model().to_string()
    }

    /// Number of slots.
    #[getter]
    fn slots(&self) -> usize {
        self.inner.slots()
    }

    /// Trading prices, `decimal.Decimal` currency per kWh.
    #[getter]
    fn trading<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        prices(py, self.inner.trading())
    }

    /// Retail prices, `decimal.Decimal` currency per kWh.
    #[getter]
    fn retail<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        prices(py, self.inner.retail())
    }

    /// Feed-in prices, `decimal.Decimal` currency per kWh.
    #[getter]
    fn feed_in<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        prices(py, self.inner.feed_in())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<CycleContext>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "CycleContext(cycle_id={}, model='{}', slots={})",
            self.inner.cycle().0,
            self.inner.model(),
            self.inner.slots()
        )
    }
}

fn prices<'py>(py: Python<'py>, values: &[PriceUnits]) -> PyResult<Bound<'py, PyList>> {
    decimal_list(py, values.iter().map(|p| p.per_kwh().to_string()))
}

fn energies<'py>(py: Python<'py>, values: &[Wh]) -> PyResult<Bound<'py, PyList>> {
    decimal_list(py, values.iter().map(|w| w.kwh().to_string()))
}

/// One household's promises and meter values for a cycle, kWh per slot
/// (positive: consumption, negative: supply).
#[pyclass(module = "private_billing", frozen)]
#[derive(Clone)]
pub struct Data {
    member: Option<MemberId>,
    cycle: CycleId,
    promises: Vec<Wh>,
    actual: Vec<Wh>,
}

/// Stands in for the household in checks before it is known.
const CHECK_MEMBER: &str = "household";

impl Data {
    /// The engine's data for `member` (the household of the hiding
    /// context), refusing data that names another household.
    pub fn for_member(&self, member: &MemberId) -> PyResult<pb_model::Data> {
        if let Some(m) = &self.member
            && m != member
        {
            return Err(value_error(format!("this data is {m}'s, not {member}'s")));
        }
        pb_model::Data::new(
            member.clone(),
            self.cycle,
            self.promises.clone(),
            self.actual.clone(),
        )
        .map_err(value_error)
    }
}

#[pymethods]
impl Data {
    #[new]
    #[pyo3(signature = (cycle_id, *, promises_kwh, actual_kwh, household_id = None, strict_units = false))]
    fn new(
        py: Python<'_>,
        cycle_id: &Bound<'_, PyAny>,
        promises_kwh: &Bound<'_, PyAny>,
        actual_kwh: &Bound<'_, PyAny>,
        household_id: Option<&Bound<'_, PyAny>>,
        strict_units: bool,
    ) -> PyResult<Data> {
        let cycle = crate::convert::cycle_id(cycle_id)?;
        let member = household_id
            .map(|h| member_id(h, "household_id"))
            .transpose()?;
        let units = units(strict_units);
        let mut rounding = Rounding::default();
        let promises = decimals(promises_kwh, "promises_kwh")?;
        let actual = decimals(actual_kwh, "actual_kwh")?;
        if promises.is_empty() {
            return Err(value_error(
                "promises_kwh is empty: a cycle needs at least one slot",
            ));
        }
        let slots = promises.len();
        let promises = energy_kwh("promises_kwh", &promises, slots, units, &mut rounding)
            .map_err(value_error)?;
        let actual =
            energy_kwh("actual_kwh", &actual, slots, units, &mut rounding).map_err(|e| {
                value_error(e.replace("one per price slot", "one per value of promises_kwh"))
            })?;
        let check = MemberId::new(CHECK_MEMBER).map_err(value_error)?;
        pb_model::Data::new(
            member.clone().unwrap_or(check),
            cycle,
            promises.clone(),
            actual.clone(),
        )
        .map_err(value_error)?;
        warn_rounding(py, &rounding)?;
        Ok(Data {
            member,
            cycle,
            promises,
            actual,
        })
    }

    /// The cycle id.
    #[getter]
    fn cycle_id(&self) -> u64 {
        self.cycle.0
    }

    /// The household, or `None` when the hiding context supplies it.
    #[getter]
    fn household_id(&self) -> Option<String> {
        self.member.as_ref().map(|m| m.as_str().to_string())
    }

    /// Number of slots.
    #[getter]
    fn slots(&self) -> usize {
        self.promises.len()
    }

    /// Promised energy per slot, `decimal.Decimal` kWh (rounded to 1 Wh).
    #[getter]
    fn promises_kwh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        energies(py, &self.promises)
    }

    /// Metered energy per slot, `decimal.Decimal` kWh (rounded to 1 Wh).
    #[getter]
    fn actual_kwh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        energies(py, &self.actual)
    }

    fn __repr__(&self) -> String {
        format!(
            "Data(cycle_id={}, household_id={:?}, slots={})",
            self.cycle.0,
            self.member.as_ref().map(MemberId::as_str),
            self.promises.len()
        )
    }
}

/// A household's long-term X25519 identity key, from which the pairwise
/// masking keys with every other member are derived.
#[pyclass(module = "private_billing", frozen)]
pub struct IdentityKey {
    inner: pb_przs::IdentityKey,
}

#[pymethods]
impl IdentityKey {
    /// A new key from the operating system's randomness.
    #[staticmethod]
    fn generate() -> IdentityKey {
        IdentityKey {
            inner: pb_przs::IdentityKey::generate(&mut OsRng),
        }
    }

    /// A key from its 32 secret bytes (`to_bytes`).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<IdentityKey> {
        let bytes: [u8; 32] = data.try_into().map_err(|_| {
            value_error(format!("an identity key has 32 bytes, not {}", data.len()))
        })?;
        Ok(IdentityKey {
            inner: pb_przs::IdentityKey::from_bytes(bytes),
        })
    }

    /// The 32 secret bytes (keep them private).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// The 32 public bytes to publish in the member list.
    #[getter]
    fn public<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.public().0)
    }

    fn __repr__(&self) -> String {
        "IdentityKey(<secret>)".into()
    }
}

/// A household's GLWE public key, registered with the billing authority.
#[pyclass(module = "private_billing", frozen)]
pub struct PublicKey {
    pub(crate) inner: pb_glwe::CompactPublicKey,
}

/// A household's keys: its pairwise masking keys and its GLWE secret key.
#[pyclass(module = "private_billing", frozen)]
pub struct HidingContext {
    pub(crate) inner: pb_hiding::HidingContext,
}

#[pymethods]
impl HidingContext {
    #[new]
    #[pyo3(signature = (household_id, identity, members, *, community = "local"))]
    fn new(
        household_id: &Bound<'_, PyAny>,
        identity: &Bound<'_, IdentityKey>,
        members: &Bound<'_, PyAny>,
        community: &str,
    ) -> PyResult<HidingContext> {
        let me = member_id(household_id, "household_id")?;
        let members = members.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "members must be a dict {{household_id: public identity key bytes}}, not {}",
                type_name(members)
            ))
        })?;
        let mut list = Vec::with_capacity(members.len());
        for (k, v) in members.iter() {
            let id = member_id(&k, "members key")?;
            let bytes: Vec<u8> = if let Ok(b) = v.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "members[{id}] must be the 32 bytes of IdentityKey.public, not {}",
                    type_name(&v)
                )));
            };
            let public: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                value_error(format!(
                    "members[{id}]: a public identity key has 32 bytes, not {}",
                    bytes.len()
                ))
            })?;
            list.push((id, IdentityPublic(public)));
        }
        if community.is_empty() {
            return Err(value_error("community must not be empty"));
        }
        let keys = PairwiseKeys::derive(
            &CommunityId(community.into()),
            &me,
            &identity.get().inner,
            &list,
        )
        .map_err(value_error)?;
        let mut seeder = new_seeder();
        Ok(HidingContext {
            inner: pb_hiding::HidingContext::new(keys, SecretKey::generate(seeder.as_mut())),
        })
    }

    /// The household.
    #[getter]
    fn household_id(&self) -> String {
        self.inner.member().as_str().to_string()
    }

    /// The community these keys belong to (named in every `HiddenData`).
    #[getter]
    fn community(&self) -> String {
        self.inner.community().0.clone()
    }

    /// The GLWE public key to register with the billing authority.
    fn public_key(&self, py: Python<'_>) -> PublicKey {
        let inner = py.detach(|| self.inner.public_key(new_seeder().as_mut()));
        PublicKey { inner }
    }

    /// Masks and encrypts `data` for the cycle of `context`.
    fn hide(
        &self,
        py: Python<'_>,
        data: &Bound<'_, Data>,
        context: &Bound<'_, CycleContext>,
    ) -> PyResult<HiddenData> {
        let data = data.get().for_member(self.inner.member())?;
        let ctx = &context.get().inner;
        let inner = py
            .detach(|| self.inner.hide(&data, ctx, new_seeder().as_mut()))
            .map_err(value_error)?;
        Ok(HiddenData { inner })
    }

    /// This household's masks with the members that dropped out of the
    /// cycle of `context` (the dropout correction round).
    fn dropout_correction(
        &self,
        py: Python<'_>,
        context: &Bound<'_, CycleContext>,
        missing: &Bound<'_, PyAny>,
    ) -> PyResult<DropoutCorrection> {
        let mut ids = Vec::new();
        for m in missing.try_iter()? {
            ids.push(member_id(&m?, "missing")?);
        }
        let ctx = &context.get().inner;
        let inner = py
            .detach(|| self.inner.dropout_correction(ctx, &ids))
            .map_err(value_error)?;
        Ok(DropoutCorrection { inner })
    }

    /// Decrypts this household's bill.
    fn decrypt(&self, py: Python<'_>, bill: &Bound<'_, HiddenBill>) -> PyResult<Bill> {
        let hb = &bill.get().inner;
        let b = py.detach(|| self.inner.decrypt(hb)).map_err(value_error)?;
        Ok(Bill {
            bill: b.bill,
            reward: b.reward,
            cycle: hb.cycle,
            member: Some(hb.member.clone()),
        })
    }

    fn __repr__(&self) -> String {
        format!("HidingContext(household_id='{}')", self.inner.member())
    }
}

macro_rules! wire_object {
    ($name:ident, $inner:ty, $doc:literal $(, { $($extra:tt)* })?) => {
        #[doc = $doc]
        #[pyclass(module = "private_billing", frozen)]
        #[derive(Clone)]
        pub struct $name {
            pub(crate) inner: $inner,
        }

        #[pymethods]
        impl $name {
            /// The versioned binary form (`deserialize` reads it back).
            fn serialize<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.inner.to_bytes())
            }

            /// Reads the binary form, refusing truncated, oversized,
            /// trailing or inconsistent bytes with `ValueError`.
            #[staticmethod]
            fn deserialize(data: &Bound<'_, PyAny>) -> PyResult<$name> {
                let bytes = data.cast::<PyBytes>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "deserialize takes bytes, not {}",
                        type_name(data)
                    ))
                })?;
                let inner = <$inner>::from_bytes(bytes.as_bytes())
                    .map_err(|e| value_error(format!("{}: {e}", stringify!($name))))?;
                Ok($name { inner })
            }

            /// The household.
            #[getter]
            fn household_id(&self) -> String {
                self.inner.member.as_str().to_string()
            }

            /// The cycle id.
            #[getter]
            fn cycle_id(&self) -> u64 {
                self.inner.cycle.0
            }

            $($($extra)*)?

            fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
                other
                    .cast::<$name>()
                    .is_ok_and(|o| o.get().inner == self.inner)
            }

            fn __repr__(&self) -> String {
                format!(
                    "{}(household_id='{}', cycle_id={})",
                    stringify!($name),
                    self.inner.member,
                    self.inner.cycle.0
                )
            }
        }
    };
}

wire_object!(
    HiddenData,
    pb_hiding::HiddenData,
    "A household's masked and encrypted data, as the billing authority receives it \
     (`.community` names the community it was hidden for).",
    {
        /// The community it was hidden for.
        #[getter]
        fn community(&self) -> String {
            self.inner.community.0.clone()
        }
    }
);
wire_object!(
    HiddenBill,
    pb_hiding::HiddenBill,
    "A household's encrypted bill: only its hiding context decrypts it."
);
wire_object!(
    DropoutCorrection,
    pb_hiding::DropoutCorrection,
    "A surviving household's masks with the members that dropped out of a cycle."
);

/// A household's bill for one cycle: two exact totals.
#[pyclass(module = "private_billing", frozen)]
#[derive(Clone)]
pub struct Bill {
    pub(crate) bill: Money,
    pub(crate) reward: Money,
    pub(crate) cycle: CycleId,
    pub(crate) member: Option<MemberId>,
}

#[pymethods]
impl Bill {
    /// What the household pays, `decimal.Decimal` (8 decimals).
    #[getter]
    fn bill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_decimal(py, &self.bill.to_decimal_string())
    }

    /// What the household is paid, `decimal.Decimal` (8 decimals).
    #[getter]
    fn reward<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_decimal(py, &self.reward.to_decimal_string())
    }

    /// `bill - reward`, `decimal.Decimal`: positive means the household owes.
    #[getter]
    fn total<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_decimal(py, &(self.bill - self.reward).to_decimal_string())
    }

    /// The cycle id.
    #[getter]
    fn cycle_id(&self) -> u64 {
        self.cycle.0
    }

    /// The household, when known.
    #[getter]
    fn household_id(&self) -> Option<String> {
        self.member.as_ref().map(|m| m.as_str().to_string())
    }

    /// Equal amounts for the same cycle (the household is not compared, so
    /// that a bill from `simulate` equals the one decrypted by a household).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Bill>().is_ok_and(|o| {
            let o = o.get();
            o.bill == self.bill && o.reward == self.reward && o.cycle == self.cycle
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Bill(cycle_id={}, bill=Decimal('{}'), reward=Decimal('{}'))",
            self.cycle.0,
            self.bill.to_decimal_string(),
            self.reward.to_decimal_string()
        )
    }
}

/// The billing authority: registers members and their public keys,
/// records cycle contexts, hidden data and dropout corrections, and
/// computes the encrypted bills.
#[pyclass(module = "private_billing", frozen)]
pub struct SharedBilling {
    inner: Mutex<Engine>,
    community: Option<String>,
}

impl SharedBilling {
    /// A billing authority on the CPU backend, bound to `community` when
    /// given (then `record_data` refuses data of any other community).
    pub(crate) fn create(min_members: usize, community: Option<&str>) -> PyResult<SharedBilling> {
        let mut engine = Engine::new(Box::new(CpuBackend::new()));
        engine.set_min_members(min_members);
        if let Some(c) = community {
            if c.is_empty() {
                return Err(value_error("community must not be empty"));
            }
            engine = engine.with_community(CommunityId(c.into()));
        }
        Ok(SharedBilling {
            inner: Mutex::new(engine),
            community: community.map(str::to_string),
        })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Engine) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| value_error("the billing authority failed earlier and is unusable"))?;
        f(&mut guard)
    }
}

#[pymethods]
impl SharedBilling {
    #[new]
    #[pyo3(signature = (*, min_members = pb_units::limits::DEFAULT_MIN_MEMBERS, community = Some("local")))]
    fn new(min_members: usize, community: Option<&str>) -> PyResult<SharedBilling> {
        SharedBilling::create(min_members, community)
    }

    /// The community whose data this billing authority accepts (`None`:
    /// any community).
    #[getter]
    fn community(&self) -> Option<String> {
        self.community.clone()
    }

    /// Registers a household with its GLWE public key.
    fn register_member(
        &self,
        household_id: &Bound<'_, PyAny>,
        public_key: &Bound<'_, PublicKey>,
    ) -> PyResult<()> {
        let member = member_id(household_id, "household_id")?;
        let key = public_key.get().inner.clone();
        self.with(|e| e.register_member(member, key).map_err(value_error))
    }

    /// Records a cycle's context; its members are those registered now.
    fn record_context(&self, context: &Bound<'_, CycleContext>) -> PyResult<()> {
        let ctx = context.get().inner.clone();
        self.with(|e| e.record_context(ctx).map_err(value_error))
    }

    /// Records a household's hidden data after checking it against the
    /// community, the cycle's context and membership.
    fn record_data(&self, hidden: &Bound<'_, HiddenData>) -> PyResult<()> {
        let data = hidden.get().inner.clone();
        self.with(|e| e.record_data(data).map_err(value_error))
    }

    /// Declares every member that has not submitted as dropped out of the
    /// cycle; returns their ids (survivors then send corrections).
    fn declare_dropouts(&self, cycle_id: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let cycle = crate::convert::cycle_id(cycle_id)?;
        let dropped = self.with(|e| e.declare_dropouts(cycle).map_err(value_error))?;
        Ok(dropped.iter().map(|m| m.as_str().to_string()).collect())
    }

    /// Records a survivor's dropout correction.
    fn record_correction(&self, correction: &Bound<'_, DropoutCorrection>) -> PyResult<()> {
        let c = correction.get().inner.clone();
        self.with(|e| e.record_correction(c).map_err(value_error))
    }

    /// Whether `compute_bills` can run for the cycle.
    fn is_ready(&self, cycle_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let cycle = crate::convert::cycle_id(cycle_id)?;
        self.with(|e| Ok(e.is_ready(cycle)))
    }

    /// Bills a ready cycle (once): `{household_id: HiddenBill}`.
    fn compute_bills<'py>(
        &self,
        py: Python<'py>,
        cycle_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cycle = crate::convert::cycle_id(cycle_id)?;
        let bills = py.detach(|| self.with(|e| e.compute_bills(cycle).map_err(value_error)))?;
        let out = PyDict::new(py);
        for b in bills {
            let key = PyString::new(py, b.member.as_str());
            out.set_item(key, HiddenBill { inner: b })?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        match &self.community {
            Some(c) => format!("SharedBilling(community={c:?}, backend='cpu')"),
            None => "SharedBilling(community=None, backend='cpu')".into(),
        }
    }
}

/// A bill from a local run (no household keys involved).
pub fn plain_bill(b: &pb_model::Bill, cycle: CycleId, member: &MemberId) -> Bill {
    Bill {
        bill: b.bill,
        reward: b.reward,
        cycle,
        member: Some(member.clone()),
    }
}

/// A bill as the household API returns it (exact decimal strings).
pub fn bill_from_strings(cycle: u64, bill: &str, reward: &str) -> PyResult<Bill> {
    let parse = |s: &str| {
        Money::from_decimal_str(s)
            .ok_or_else(|| value_error(format!("unexpected amount {s:?} from the core")))
    };
    Ok(Bill {
        bill: parse(bill)?,
        reward: parse(reward)?,
        cycle: CycleId(cycle),
        member: None,
    })
}
