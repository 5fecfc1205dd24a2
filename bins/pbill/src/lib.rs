//! The parts of `pbill` (the household's and operator's command line)
//! that `pbill-bench` (the load test and the crash drill of the edge)
//! shares with it: loopback communities, synthetic data, progress, the
//! operator's requests.

#![warn(missing_docs)]

pub mod client;
pub mod demo;
pub mod drill;
pub mod load;
pub mod progress;
pub mod report;
pub mod status;
pub mod synthetic;

use std::path::Path;

use pb_model::BillingModel;

/// A billing model on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelArg {
    /// Universal Cost Split: a slot's imbalance cost is shared equally by
    /// the households that caused it (over-consumers, or over-suppliers);
    /// cost-neutral.
    Ucs,
    /// The Python original's formula: as ucs, but each share is divided by
    /// all accepted consumers (producers) of the slot.
    UcsReference,
    /// The imbalance cost shared in proportion to each household's
    /// over-amount.
    Proportional,
}

impl From<ModelArg> for BillingModel {
    fn from(m: ModelArg) -> BillingModel {
        match m {
            ModelArg::Ucs => BillingModel::Ucs,
            ModelArg::UcsReference => BillingModel::UcsReference,
            ModelArg::Proportional => BillingModel::Proportional,
        }
    }
}

/// Writes `text` through a temporary file and a rename, so that a failure
/// never leaves a partial file behind; errors name `path`.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp-pbill");
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
