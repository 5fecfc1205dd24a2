//! Where a store's bytes go: every table's rows, stored bytes and page
//! bytes, and the file's length and disk blocks. Reads any format (a
//! format 1 store is not migrated); the edge must not have it open.
//!
//! `cargo run --release -p pb-edge --example store_usage -- DIR/edge.redb`
//!
//! A store left by a killed edge needs redb's repair first: `--repair`
//! opens it writable once (which repairs it and changes nothing else).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    let repair = args.first().is_some_and(|a| a == "--repair");
    if repair {
        args.remove(0);
    }
    let Some(path) = args.first().map(PathBuf::from) else {
        return Err("usage: store_usage [--repair] EDGE.REDB".into());
    };
    if repair {
        drop(redb::Database::open(&path)?);
    }
    let (tables, len, disk) = pb_edge::store::store_usage(&path)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{:<20} {:>10} {:>14} {:>14} {:>7}",
        "table", "rows", "stored MiB", "pages MiB", "pages/stored"
    );
    let (mut stored, mut pages) = (0, 0);
    for t in &tables {
        stored += t.stored_bytes;
        pages += t.page_bytes;
        println!(
            "{:<20} {:>10} {:>14.2} {:>14.2} {:>7.2}",
            t.name,
            t.rows,
            mib(t.stored_bytes),
            mib(t.page_bytes),
            t.page_bytes as f64 / t.stored_bytes.max(1) as f64
        );
    }
    println!(
        "{:<20} {:>10} {:>14.2} {:>14.2} {:>7.2}",
        "all tables",
        "",
        mib(stored),
        mib(pages),
        pages as f64 / stored.max(1) as f64
    );
    println!(
        "file: {len} bytes ({:.2} MiB) long, {disk} bytes ({:.2} MiB) on disk",
        mib(len),
        mib(disk)
    );
    Ok(())
}
