//! `pbill`: command-line entry of private-billing.

use pbill::{ModelArg, client, demo, progress, report, status, synthetic, write_file};

// jemalloc returns freed memory to the system (glibc keeps it in per-thread
// arenas): the edge's resident memory follows what it holds (at 2,000
// members its peak was 158 MiB against 229 MiB with glibc's allocator).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pb_inputs::{HouseholdId, MeterFormat, Units};
use pb_model::{Bill, BillingModel};
use pb_shared_billing::BackendChoice;
use pb_shared_billing::community::{Phase, plaintext_bills, run_local_with_progress};
use pb_units::limits::DEFAULT_MIN_MEMBERS;
use serde::Serialize;

/// Private billing for peer-to-peer energy communities.
#[derive(Parser, Debug)]
#[command(name = "pbill", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The format of an input file on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// CSV: interval CSV for meter files, `promise_kwh,actual_kwh` rows
    /// for `--file`.
    Csv,
    /// Green Button (ESPI) interval XML.
    Espi,
    /// JSON (`--file` only).
    Json,
}

impl From<FormatArg> for MeterFormat {
    fn from(f: FormatArg) -> MeterFormat {
        match f {
            FormatArg::Csv => MeterFormat::Csv,
            FormatArg::Espi => MeterFormat::Espi,
            FormatArg::Json => MeterFormat::Json,
        }
    }
}

/// `Round` unless `--strict-units`.
fn units(strict: bool) -> Units {
    if strict { Units::Strict } else { Units::Round }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bill a community given in a file, running the whole cryptographic
    /// pipeline in this process (keys, PRZS masking, encryption, billing,
    /// decryption), so bills can be checked without a network.
    ///
    /// Input: {"cycle_id": N, "prices": {"trading": [..], "retail": [..],
    /// "feed_in": [..]}, "households": [{"id": "..", "promises_kwh": [..],
    /// "actual_kwh": [..]}]} with prices in currency per kWh and energy in
    /// kWh per slot (positive = consumption, negative = supply).
    ///
    /// Values are read exactly as written (decimal, never binary floating
    /// point) and rounded half away from zero to 1 Wh and 0.00001
    /// currency/kWh; a warning counts the rounded values. Ids are strings
    /// or integers. Limits: |energy| <= 100 kWh a slot, |price| <= 100
    /// currency/kWh, and the prices may not let a household's energy cost
    /// over the cycle (at 100 kWh a slot) exceed 175,921.86 currency; the
    /// encrypted and the --plaintext path refuse exactly the same inputs.
    ///
    /// A household may give meter files instead of the two arrays:
    /// {"id": "..", "forecast_file": "f.csv", "actual_file": "m.xml"}
    /// (paths relative to the community file; interval CSV or Green
    /// Button ESPI XML, by extension or --format), placed on the cycle's
    /// 15-minute slots from "cycle_start" in the file or --cycle-start.
    ///
    /// Output: {"model": "..", "bills": [{"id", "bill", "reward", "total"}]},
    /// ids as given, amounts as exact decimal strings with 8 decimals. On
    /// any error nothing is written.
    Simulate {
        /// Community file (JSON).
        #[arg(long, short)]
        input: PathBuf,
        /// Where to write the bills (JSON); must not be the input.
        #[arg(long, short)]
        output: PathBuf,
        /// Billing model.
        #[arg(long, value_enum, default_value_t = ModelArg::Ucs)]
        model: ModelArg,
        /// Compute the same bills in clear, without any cryptography.
        #[arg(long)]
        plaintext: bool,
        /// Smallest community that may be billed (never fewer than 3).
        #[arg(long, default_value_t = DEFAULT_MIN_MEMBERS)]
        min_members: usize,
        /// Refuse values finer than the units (1 Wh, 0.00001 currency/kWh)
        /// instead of rounding them.
        #[arg(long)]
        strict_units: bool,
        /// Where the billing authority's vector work runs: `auto` (CUDA when
        /// a GPU is usable, else CPU), `cpu` or `cuda`. The choice is printed.
        #[arg(long, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
        /// Start of the cycle's first 15-minute slot, ISO 8601 with an
        /// offset (2026-11-28T00:00:00+01:00), for households that give
        /// meter files; overrides the file's cycle_start.
        #[arg(long)]
        cycle_start: Option<String>,
        /// Format of the meter files the community file names (else each
        /// file's extension: .csv or .xml).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Write a synthetic community file (daily load shapes, some households
    /// with PV, forecasts with noise) for `simulate`.
    Generate {
        /// Number of households.
        #[arg(long, default_value_t = 20)]
        households: usize,
        /// Number of 15-minute slots (672 = one week).
        #[arg(long, default_value_t = 96)]
        slots: usize,
        /// Seed of the generator (same seed, same community).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the community (JSON).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Run a whole community on loopback: an edge and one core per
    /// household as separate processes, synthetic households (daily load
    /// shapes, PV, noisy forecasts), the cycle context, data through each
    /// household API, bills checked exactly against the plaintext model.
    /// Prints the bills, timings and bytes on the wire; exits non-zero if
    /// any bill is missing or differs.
    Demo(demo::DemoArgs),
    /// Operator: one self-contained HTML page about a cycle from what the
    /// edge knows (prices, per-slot community deviation, settlement rates,
    /// participation and dropouts, billing time): no household's data.
    /// Reads the edge's store, so the edge must be stopped.
    Report(report::ReportArgs),
    /// Create a node key (for an edge, a core or an operator) and print
    /// its node id, which the edge's configuration admits.
    Keygen {
        /// Where to write the secret key (must not exist yet).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Operator: send a cycle's context (prices per slot) to the edge.
    ///
    /// FILE is CSV with columns trading,retail,feed_in (currency per kWh,
    /// one row per 15-minute slot) or JSON {"cycle_id": N, "model": "ucs",
    /// "prices": {"trading": [..], "retail": [..], "feed_in": [..]}}.
    Context {
        /// Edge endpoint, e.g. tcp://127.0.0.1:5555.
        #[arg(long)]
        edge: String,
        /// Prices file (.csv or .json).
        #[arg(long)]
        file: PathBuf,
        /// The operator's key file (its node id must be among the edge's
        /// operators).
        #[arg(long)]
        key: PathBuf,
        /// Cycle number (required for CSV; overrides the JSON's cycle_id).
        #[arg(long)]
        cycle: Option<u64>,
        /// Billing model (overrides the JSON's; default ucs).
        #[arg(long, value_enum)]
        model: Option<ModelArg>,
        /// The edge's node id (64 hex digits, printed by `pbill keygen`):
        /// requests are signed for it and encrypted to it, and answers
        /// signed by anyone else are refused.
        #[arg(long)]
        edge_id: String,
        /// The community (as in `edge.toml`): requests are signed for it.
        #[arg(long)]
        community: String,
        /// Refuse prices finer than 0.00001 currency/kWh instead of
        /// rounding them.
        #[arg(long)]
        strict_units: bool,
    },
    /// Operator: sign the member list with the operator's enrolment key
    /// and post it to the edge.
    ///
    /// The list is every member enrolled in FILE (an edge.toml, or any TOML
    /// with [[members]] member/node entries) less those given to --revoke.
    /// Each core checks the list against the operator key pinned in its
    /// core.toml, and shows its size and fingerprint (printed here too) so
    /// that households can compare them out of band. Post a new version to
    /// add or revoke members; a revoked member's requests are refused.
    /// After a member rotated its key (pbill rotate), put the new node id
    /// it gives you in FILE first: the edge refuses a list that names a
    /// retired key, and no cycle starts until a list names the new one.
    Roster {
        /// Edge endpoint, e.g. tcp://127.0.0.1:5555.
        #[arg(long)]
        edge: String,
        /// The operator's key file (its node id must be among the edge's
        /// operators and in every core's `operator`).
        #[arg(long)]
        key: PathBuf,
        /// The edge's node id (64 hex digits).
        #[arg(long)]
        edge_id: String,
        /// The community (as in `edge.toml`).
        #[arg(long)]
        community: String,
        /// The enrolment records: edge.toml or a TOML file of [[members]].
        #[arg(long)]
        members: PathBuf,
        /// Leave this member out (revoke it); may be repeated.
        #[arg(long)]
        revoke: Vec<String>,
        /// Version of the list (default: the edge's current version + 1).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Household: replace the core's node key between cycles, signed by
    /// the enrolled key.
    ///
    /// Reads core.toml (key_file, edge, edge_node, community, member).
    /// The new key (--new-key, else a freshly generated one) is written
    /// to KEY.new and the current key copied to KEY.old (KEY.old.N after
    /// earlier rotations); the edge gets RotateKey signed with the current
    /// key and the new key's proof. Once the edge confirms, KEY.new
    /// replaces KEY and the new node id is printed. If the edge refuses,
    /// KEY is untouched (a generated key waits in KEY.new: run again to
    /// retry with it).
    ///
    /// Stop the core first and restart it afterwards. The edge refuses a
    /// rotation while a cycle the member is part of is in its rounds. From
    /// then on the old key is refused; the operator puts the new node id
    /// in edge.toml and posts a new member list (pbill roster) before the
    /// next cycle.
    Rotate {
        /// The core's configuration file (core.toml).
        #[arg(long)]
        config: PathBuf,
        /// Rotate to this existing key file (e.g. from pbill keygen)
        /// instead of generating a key; it is copied to KEY.new.
        #[arg(long)]
        new_key: Option<PathBuf>,
    },
    /// Household: submit one cycle's data to the household's core.
    ///
    /// Either --file: CSV with columns promise_kwh,actual_kwh (one row per
    /// slot) or JSON {"promises_kwh": [..], "actual_kwh": [..]}; or meter
    /// files as utilities export them, --forecast (the promises) and
    /// --actual (the meter's readings): interval CSV (an ISO 8601
    /// timestamp column with offset, an energy column whose header states
    /// kWh or Wh, 15-minute or hourly rows) or Green Button ESPI XML,
    /// placed on the cycle's 15-minute slots from --cycle-start. Every
    /// file is checked before anything is sent.
    Submit {
        /// The core's household API endpoint, e.g. tcp://127.0.0.1:6000.
        #[arg(long)]
        core: String,
        /// Cycle number.
        #[arg(long)]
        cycle: u64,
        /// Data file (.csv or .json), one row or value per slot.
        #[arg(
            long,
            required_unless_present_all = ["forecast", "actual"],
            conflicts_with_all = ["forecast", "actual", "cycle_start", "slots"]
        )]
        file: Option<PathBuf>,
        /// Forecast file (.csv interval CSV or .xml ESPI): the promises.
        #[arg(long, requires = "actual")]
        forecast: Option<PathBuf>,
        /// Meter file (.csv interval CSV or .xml ESPI): the actual values.
        #[arg(long, requires = "forecast")]
        actual: Option<PathBuf>,
        /// Start of the cycle's first 15-minute slot, ISO 8601 with an
        /// offset (2026-11-28T00:00:00+01:00); needed with meter files.
        #[arg(long)]
        cycle_start: Option<String>,
        /// The cycle's number of slots, to check the meter files against
        /// (else the core checks it).
        #[arg(long)]
        slots: Option<usize>,
        /// Format of the files (else the extension says: .csv, .xml, .json).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Refuse values finer than 1 Wh instead of rounding them.
        #[arg(long)]
        strict_units: bool,
    },
    /// Household: ask the core for a cycle's bill. Exit status 0 when
    /// billed, 3 when not yet, 1 on error.
    Bill {
        /// The core's household API endpoint.
        #[arg(long)]
        core: String,
        /// Cycle number.
        #[arg(long)]
        cycle: u64,
        /// Print the core's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Where the cycles stand: at the edge (operator) a cycle's phase,
    /// members submitted / missing / dropped by node id, deadline and time
    /// per phase, or the latest cycles in one table; at a core (--core) the
    /// household's cycles and their state.
    Status(status::StatusArgs),
    /// The edge daemon (same as pbill-edge; used by `pbill demo`).
    #[command(hide = true)]
    Edge(pb_edge::cli::EdgeArgs),
    /// The core daemon (same as pbill-core; used by `pbill demo`).
    #[command(hide = true)]
    Core(pb_core::cli::CoreArgs),
}

#[derive(Serialize)]
struct BillOut {
    id: HouseholdId,
    bill: String,
    reward: String,
    total: String,
}

#[derive(Serialize)]
struct BillsOut {
    model: String,
    bills: Vec<BillOut>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate {
            input,
            output,
            model,
            plaintext,
            min_members,
            strict_units,
            backend,
            cycle_start,
            format,
        } => simulate(
            &input,
            &output,
            (model.into(), plaintext, min_members),
            units(strict_units),
            backend,
            Meters {
                cycle_start,
                format: format.map(Into::into),
            },
        ),
        Command::Generate {
            households,
            slots,
            seed,
            output,
        } => synthetic::generate(households, slots, seed)
            .and_then(|community| write_json(&output, &community)),
        Command::Demo(args) => match demo::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Report(args) => report::run(&args),
        Command::Keygen { out } => client::keygen(&out),
        Command::Context {
            edge,
            file,
            key,
            cycle,
            model,
            edge_id,
            community,
            strict_units,
        } => client::read_context(&file, cycle, model.map(Into::into), units(strict_units))
            .and_then(|ctx| client::context(&edge, &key, &edge_id, &community, ctx)),
        Command::Roster {
            edge,
            key,
            edge_id,
            community,
            members,
            revoke,
            version,
        } => client::roster(
            &edge, &key, &edge_id, &community, &members, &revoke, version,
        ),
        Command::Rotate { config, new_key } => client::rotate(&config, new_key.as_deref()),
        Command::Submit {
            core,
            cycle,
            file,
            forecast,
            actual,
            cycle_start,
            slots,
            format,
            strict_units,
        } => {
            let source = match (&file, &forecast, &actual) {
                (Some(file), _, _) => client::Source::File(file),
                (None, Some(forecast), Some(actual)) => client::Source::Meters {
                    forecast,
                    actual,
                    cycle_start: cycle_start.as_deref(),
                    slots,
                },
                _ => {
                    eprintln!("error: give --file, or --forecast and --actual");
                    return ExitCode::FAILURE;
                }
            };
            let units = units(strict_units);
            client::read_household(&source, format.map(Into::into), units)
                .and_then(|data| client::submit(&core, cycle, data, units))
        }
        Command::Bill { core, cycle, json } => match client::bill(&core, cycle, json) {
            Ok(client::BillOutcome::Billed) => Ok(()),
            Ok(client::BillOutcome::Pending) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::Status(args) => status::run(&args),
        Command::Edge(args) => return pb_edge::cli::main(args),
        Command::Core(args) => return pb_core::cli::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// How `simulate` reads the meter files a community file names.
struct Meters {
    cycle_start: Option<String>,
    format: Option<MeterFormat>,
}

fn simulate(
    input: &Path,
    output: &Path,
    (model, plaintext, min_members): (BillingModel, bool, usize),
    units: Units,
    backend: BackendChoice,
    meters: Meters,
) -> Result<(), String> {
    refuse_same_file(input, output)?;
    let text = client::read(input)?;
    // Meter files are named relative to the community file.
    let base = input.parent().unwrap_or(Path::new("."));
    let load = |name: &str| client::read(&base.join(name));
    let community = pb_inputs::community_with(
        &text,
        model,
        min_members,
        units,
        pb_inputs::MeterFiles {
            cycle_start: meters.cycle_start.as_deref(),
            format: meters.format,
            load: Some(&load),
        },
    )
    .map_err(|e| format!("{}: {e}", input.display()))?;
    client::warn_rounding(&input.display().to_string(), &community.rounding);
    let n = community.households.len();
    let slots = community.context.slots();
    let bills: Vec<Bill> = if plaintext {
        plaintext_bills(&community.context, &community.households, min_members)
            .map_err(|e| e.to_string())?
    } else {
        let (backend, said) = pb_cuda::select_backend(backend)?;
        eprintln!("{said}");
        eprintln!(
            "billing {n} households x {slots} slots ({model}) with the encrypted pipeline..."
        );
        // One progress display per phase, started when the phase starts.
        let shown: std::sync::Mutex<Option<(Phase, progress::Progress)>> =
            std::sync::Mutex::new(None);
        let step = |phase: Phase, done: usize| {
            // Small communities bill in moments; billing is one step.
            if n < progress::MIN_STEPS || phase == Phase::Billing {
                return;
            }
            let Ok(mut s) = shown.lock() else { return };
            if s.as_ref().map(|(p, _)| *p) != Some(phase) {
                if let Some((_, old)) = s.take() {
                    old.finish();
                }
                *s = Some((phase, progress::progress(n, phase.name())));
            }
            if let Some((_, p)) = s.as_ref() {
                p.inc(1);
                if done == n {
                    p.finish();
                    *s = None;
                }
            }
        };
        let run = run_local_with_progress(
            &community.context,
            &community.households,
            backend,
            min_members,
            None,
            &step,
        )
        .map_err(|e| e.to_string())?;
        let t = run.timings;
        eprintln!(
            "keygen {:.2?}, hide {:.2?} ({:.2?}/household), billing {:.2?} ({:.2?}/household), decrypt {:.2?}; \
             upload {} B, download {} B per household",
            t.keygen,
            t.hide,
            t.hide / n as u32,
            t.billing,
            t.billing / n as u32,
            t.decrypt,
            run.sizes.upload,
            run.sizes.download
        );
        run.bills
    };
    let out = BillsOut {
        model: model.to_string(),
        bills: community
            .ids
            .iter()
            .zip(&bills)
            .map(|(id, b)| BillOut {
                id: id.clone(),
                bill: b.bill.to_decimal_string(),
                reward: b.reward.to_decimal_string(),
                total: b.total().to_decimal_string(),
            })
            .collect(),
    };
    write_json(output, &out)?;
    eprintln!("wrote {} bills to {}", bills.len(), output.display());
    Ok(())
}

/// Refuses an output that is the input file (it would be overwritten
/// before anything could be checked).
fn refuse_same_file(input: &Path, output: &Path) -> Result<(), String> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(format!(
            "--output {} is the input file: choose another path",
            output.display()
        ));
    }
    Ok(())
}

/// Writes `value` as pretty JSON with [`write_file`].
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    write_file(path, &(text + "\n"))
}
