//! Build a release's -dbg index from a package into a directory and print what it holds:
//! `cargo run --release -p builder --example dbg_index -- DEB RELEASE OUTDIR`.
//! (kpatch-build does this itself while preparing a release; this is for measuring it.)

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: dbg_index DEB RELEASE OUTDIR");
        std::process::exit(1);
    }
    let (deb, release, out) = (&a[1], &a[2], std::path::Path::new(&a[3]));
    let t = std::time::Instant::now();
    let idx = match builder::index::build(
        deb.as_ref(),
        release,
        &out.join("index"),
        &out.join(format!("vmlinux-{release}")),
    ) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let count = |k: builder::index::Kind| idx.binaries.iter().filter(|b| b.kind == k).count();
    println!(
        "{} binaries ({} modules, {} vDSO images), {} compile-unit sources, {} included .c files, \
         {} unreadable; {:.1} s for {:.2} GB decompressed",
        idx.binaries.len(),
        count(builder::index::Kind::Module),
        count(builder::index::Kind::Vdso),
        idx.units.len(),
        idx.included.len(),
        idx.unreadable.len(),
        t.elapsed().as_secs_f64(),
        idx.bytes as f64 / 1e9
    );
}
