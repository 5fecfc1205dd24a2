//! `pbill report`: one self-contained HTML page about a billed (or open)
//! cycle, from what the edge legitimately knows: its prices, the
//! community's per-slot aggregates (recorded when the cycle was billed:
//! before SecAgg+ unmasks them the edge cannot read them), the rates they
//! give, participation and the billing time. No household's data: the
//! edge has none.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pb_edge::EdgeStore;
use pb_model::{Aggregate, Aggregates, CycleContext};
use pb_units::CycleId;
use plotters::prelude::*;

/// Options of `pbill report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The edge's data directory (its `data_dir`, holding `edge.redb`).
    /// The edge must be stopped: its store is opened exclusively.
    #[arg(long)]
    pub edge_dir: PathBuf,
    /// The cycle.
    #[arg(long)]
    pub cycle: u64,
    /// Where to write the page (HTML, self-contained).
    #[arg(long)]
    pub out: PathBuf,
}

/// What the report shows, gathered from the store.
struct Facts {
    ctx: CycleContext,
    members: usize,
    submitted: usize,
    dropped: Vec<String>,
    aggregates: Option<Aggregates>,
    billed: Option<pb_edge::store::BilledRecord>,
}

fn gather(store: &EdgeStore, cycle: CycleId) -> Result<Facts, String> {
    let e = |e: pb_edge::EdgeError| e.to_string();
    let record = store
        .cycles()
        .map_err(e)?
        .into_iter()
        .find(|c| c.context.cycle() == cycle)
        .ok_or_else(|| format!("the edge has no {cycle}"))?;
    let ctx = record.context.clone();
    let submitted_open = store.submissions(cycle).map_err(e)?.len();
    let roster = store
        .rosters()
        .map_err(e)?
        .into_iter()
        .find(|r| r.roster.version == record.roster_version)
        .ok_or_else(|| {
            format!(
                "the edge's store lacks member list version {}",
                record.roster_version
            )
        })?;
    let billed = store.billed(cycle).map_err(e)?;
    // Only a billed cycle's aggregates are known: SecAgg+ unmasks them
    // when the cycle is billed, and they are recorded then.
    let aggregates = store
        .aggregates(cycle)
        .map_err(e)?
        .filter(|v| v.len() == 3)
        .map(|stored| {
            let mut agg = Aggregates::default();
            for (&which, v) in ctx.model().aggregates().iter().zip(stored) {
                agg.insert(which, v);
            }
            agg
        });
    let mut dropped = Vec::new();
    if billed.is_some() {
        for m in &roster.roster.members {
            if store.bill(cycle, &m.member).map_err(e)?.is_none() {
                dropped.push(m.member.to_string());
            }
        }
    }
    Ok(Facts {
        members: roster.roster.members.len(),
        // Once billed the submissions are gone: the bills count them.
        submitted: billed.map_or(submitted_open, |b| b.bills),
        dropped,
        aggregates,
        billed,
        ctx,
    })
}

/// A line chart of `series` (name, colour, values) over the slots, as SVG.
fn chart(title: &str, unit: &str, series: &[(&str, RGBColor, Vec<f64>)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = series.iter().map(|s| s.2.len()).max().unwrap_or(1).max(1);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for (_, _, v) in series {
            for &x in v {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if (hi - lo).abs() < 1e-12 {
            (lo, hi) = (lo - 1.0, hi + 1.0);
        }
        let pad = (hi - lo) * 0.05;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, (lo - pad)..(hi + pad))
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("slot")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, colour, v) in series {
            let colour = *colour;
            c.draw_series(LineSeries::new(
                v.iter().enumerate().map(|(i, &y)| (i as f64, y)),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn per_kwh(p: &[pb_units::PriceUnits]) -> Vec<f64> {
    p.iter().map(|x| x.0 as f64 / 1e5).collect()
}

fn page(f: &Facts) -> Result<String, String> {
    let ctx = &f.ctx;
    let t = ctx.slots();
    let mut html = String::new();
    let w = |e: std::fmt::Error| e.to_string();
    write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>private-billing: cycle {c}</title>\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:4px 10px;text-align:right}}\
         th{{background:#eee}}.note{{color:#555}}</style></head><body>\
         <h1>Cycle {c}</h1><p class=\"note\">Model {m}, {t} slots. What the billing authority knows: \
         prices, the community's per-slot aggregates, the rates they give, who took part. \
         No household's data or bill.</p>",
        c = ctx.cycle().0,
        m = ctx.model(),
    )
    .map_err(w)?;
    write!(
        html,
        "<h2>Participation</h2><table><tr><th>members</th><th>submitted</th><th>dropped out</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        f.members,
        f.submitted,
        f.dropped.len()
    )
    .map_err(w)?;
    if !f.dropped.is_empty() {
        write!(html, "<p>Dropped out: {}</p>", f.dropped.join(", ")).map_err(w)?;
    }
    match &f.billed {
        Some(b) => write!(
            html,
            "<h2>Billing</h2><table><tr><th>bills</th><th>time</th><th>households per second</th></tr>\
             <tr><td>{}</td><td>{:.3} s</td><td>{:.1}</td></tr></table>",
            b.bills,
            b.millis as f64 / 1e3,
            b.bills as f64 / (b.millis.max(1) as f64 / 1e3)
        )
        .map_err(w)?,
        None => write!(html, "<h2>Billing</h2><p>Not billed yet.</p>").map_err(w)?,
    }
    html.push_str("<h2>Prices</h2>");
    html.push_str(&chart(
        "Prices per slot",
        "currency/kWh",
        &[
            ("trading", BLUE, per_kwh(ctx.trading())),
            ("retail", RED, per_kwh(ctx.retail())),
            ("feed-in", GREEN, per_kwh(ctx.feed_in())),
        ],
    )?);
    match &f.aggregates {
        Some(agg) => {
            let td = agg.get(Aggregate::TD, t).map_err(|e| e.to_string())?;
            html.push_str("<h2>Community deviation</h2>");
            html.push_str(&chart(
                "Total deviation per slot (supplied minus consumed against promises)",
                "kWh",
                &[("TD", BLACK, td.iter().map(|&x| x as f64 / 1e3).collect())],
            )?);
            let weights = ctx.model().weights(ctx, agg).map_err(|e| e.to_string())?;
            let unit = if ctx.model() == pb_model::BillingModel::Proportional {
                "currency/kWh of over-amount"
            } else {
                "currency per over-consumer or over-supplier"
            };
            let scale = if ctx.model() == pb_model::BillingModel::Proportional {
                1e5
            } else {
                1e8
            };
            html.push_str("<h2>Settlement rates</h2>");
            html.push_str(&chart(
                "Imbalance rates per slot",
                unit,
                &[
                    (
                        "charge (over-consumers)",
                        RED,
                        weights.bill[2 * t..]
                            .iter()
                            .map(|&x| x as f64 / scale)
                            .collect(),
                    ),
                    (
                        "loss (over-suppliers)",
                        GREEN,
                        weights.reward[2 * t..]
                            .iter()
                            .map(|&x| -x as f64 / scale)
                            .collect(),
                    ),
                ],
            )?);
        }
        None => html.push_str(
            "<h2>Community deviation</h2><p>Not known: the cycle's submissions are not all in \
             (or no longer kept).</p>",
        ),
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

fn store(dir: &Path) -> Result<EdgeStore, String> {
    let file = dir.join("edge.redb");
    if !file.is_file() {
        return Err(format!("{}: no edge store here", file.display()));
    }
    EdgeStore::open(dir).map_err(|e| {
        let e = e.to_string();
        if e.contains("already open") || e.contains("lock") {
            format!("{}: in use (stop the edge first): {e}", file.display())
        } else {
            e
        }
    })
}

/// `pbill report`.
pub fn run(args: &ReportArgs) -> Result<(), String> {
    let store = store(&args.edge_dir)?;
    let facts = gather(&store, CycleId(args.cycle))?;
    let html = page(&facts)?;
    crate::write_file(&args.out, &html)?;
    eprintln!(
        "wrote the report of cycle {} to {}",
        args.cycle,
        args.out.display()
    );
    Ok(())
}
