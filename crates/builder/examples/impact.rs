//! Run the impact analysis of one header edit on a prepared tree and print the counts:
//! `cargo run --release -p builder --example impact -- TREE INDEX_DIR HEADER OLD NEW`
//! (the first occurrence of OLD in HEADER replaced by NEW; `\n` in them is a newline).
//! The includers are the units of the release's -dbg index that reach the header.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use builder::impact::{self, Graph, HeaderChange};
use builder::index::DbgIndex;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: impact TREE INDEX_DIR HEADER OLD NEW");
        std::process::exit(1);
    }
    let (tree, index, header) = (Path::new(&a[1]), Path::new(&a[2]), &a[3]);
    let unescape = |s: &str| s.replace("\\n", "\n").replace("\\t", "\t");
    let old = std::fs::read(tree.join(header)).expect("header");
    let text = String::from_utf8_lossy(&old).into_owned();
    let (from, to) = (unescape(&a[4]), unescape(&a[5]));
    assert!(text.contains(&from), "{from:?} not in {header}");
    let new = text.replacen(&from, &to, 1).into_bytes();

    let t = Instant::now();
    let idx = DbgIndex::load(index).expect("index");
    let built: BTreeSet<&str> = idx
        .units
        .keys()
        .map(String::as_str)
        .filter(|s| (s.ends_with(".c") || s.ends_with(".S")) && tree.join(s).is_file())
        .collect();
    let extra: Vec<String> = built
        .iter()
        .filter(|s| s.starts_with("tools/"))
        .map(|s| s.to_string())
        .collect();
    let g = Graph::scan(tree, &extra);
    eprintln!(
        "scan: {} files in {:.1} s {:?}",
        g.files.len(),
        g.seconds,
        g.steps
    );
    let hid = g.id(header).expect("header in graph");
    let mut units: BTreeSet<String> = g
        .includers(hid)
        .into_iter()
        .map(|i| g.path(i).to_string())
        .filter(|p| built.contains(p.as_str()))
        .collect();
    let forced = built.iter().filter(|u| g.forced_reach(hid, u)).count();
    if forced > 0 {
        units.extend(built.iter().map(|s| s.to_string()));
    }
    let headers = DbgIndex::load_headers(index).expect("headers");
    let named: BTreeSet<String> = headers
        .units_naming(header)
        .into_iter()
        .filter(|s| built.contains(s))
        .map(str::to_string)
        .collect();
    let missed: Vec<&String> = named.iter().filter(|u| !units.contains(*u)).collect();
    units.extend(named.iter().cloned());
    eprintln!(
        "includers: {} units of this configuration ({} named by line tables, {} of those not found by the scan: {:?})",
        units.len(),
        named.len(),
        missed.len(),
        missed.iter().take(5).collect::<Vec<_>>()
    );
    let units: Vec<String> = units.into_iter().collect();
    let t2 = Instant::now();
    let n = impact::narrow(
        &g,
        tree,
        &[HeaderChange {
            path: header.clone(),
            old,
            new,
        }],
        &units,
    );
    eprintln!(
        "seeds: {:?}",
        n.seeds
            .iter()
            .map(|s| format!("{} ({} at {})", s.name, s.what, s.at))
            .collect::<Vec<_>>()
    );
    for (h, w) in &n.wide {
        eprintln!("wide: {h}: {w}");
    }
    eprintln!(
        "closure: {} names, {} headers parsed; candidates: {} in {:.1} s (total {:.1} s)",
        n.closure,
        n.headers_parsed,
        n.candidates.len(),
        t2.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    for (u, why) in n.candidates.iter().take(40) {
        eprintln!("  {u}: {why}");
    }
}
