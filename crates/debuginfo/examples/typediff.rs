//! `cargo run --release -p debuginfo --example typediff ORIG.o PATCHED.o`: the type
//! layout changes between two x86_64 objects, with timings (a development aid).

use std::time::Instant;

fn width(t: u32) -> Option<usize> {
    match t {
        1 => Some(8),
        10 | 11 => Some(4),
        _ => None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = args.as_slice() else {
        return Err("usage: typediff ORIG.o PATCHED.o".into());
    };
    let t0 = Instant::now();
    let oa = kelf::read::read_file(a)?;
    let ob = kelf::read::read_file(b)?;
    let t1 = Instant::now();
    let sa = debuginfo::load::Sections::load(&oa, &width)?.ok_or("no DWARF in ORIG")?;
    let sb = debuginfo::load::Sections::load(&ob, &width)?.ok_or("no DWARF in PATCHED")?;
    let (da, db) = (sa.dwarf(), sb.dwarf());
    let t2 = Instant::now();
    let (ia, ib) = (debuginfo::die::parse(&da)?, debuginfo::die::parse(&db)?);
    let t3 = Instant::now();
    let (ta, tb) = (
        debuginfo::types::Types::new(&ia),
        debuginfo::types::Types::new(&ib),
    );
    let t4 = Instant::now();
    let changes = debuginfo::diff::compare(&ta, &tb);
    let t5 = Instant::now();
    let live = debuginfo::usage::liveness(&ta, &|_| debuginfo::usage::FnState::Unknown);
    let t6 = Instant::now();
    let (la, lb) = (
        debuginfo::lines::Lines::parse(&da)?,
        debuginfo::lines::Lines::parse(&db)?,
    );
    let t7 = Instant::now();
    println!(
        "{} + {} DIEs, {} + {} keyed types, {} changes",
        ia.dies.len(),
        ib.dies.len(),
        ta.defs.len(),
        tb.defs.len(),
        changes.len()
    );
    for c in &changes {
        let why = live.reason(c.orig_die).map(|r| r.root).unwrap_or_default();
        println!(
            "  {} [{}] breaking={} {:?} live: {why}",
            c.display,
            ia.decl_path(c.orig_die).unwrap_or("?"),
            c.breaking,
            c.details
        );
    }
    let ms = |x: Instant, y: Instant| (y - x).as_secs_f64() * 1000.0;
    println!(
        "read ELF {:.1} ms, relocate {:.1} ms, DIEs {:.1} ms, types {:.1} ms, compare {:.1} ms, \
         liveness {:.1} ms, lines {:.1} ms",
        ms(t0, t1),
        ms(t1, t2),
        ms(t2, t3),
        ms(t3, t4),
        ms(t4, t5),
        ms(t5, t6),
        ms(t6, t7)
    );
    let _ = (la, lb);
    Ok(())
}
