fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (deb, release, out) = (&a[1], &a[2], std::path::Path::new(&a[3]));
    let t = std::time::Instant::now();
    let idx = builder::index::build(
        deb.as_ref(),
        release,
        &out.join("index"),
        &out.join("vmlinux"),
    )
    .unwrap();
    println!(
        "{} binaries, {} units, {} included, {} unreadable {:?}, {:.1}s, {} bytes",
        idx.binaries.len(),
        idx.units.len(),
        idx.included.len(),
        idx.unreadable.len(),
        &idx.unreadable[..idx.unreadable.len().min(3)],
        t.elapsed().as_secs_f64(),
        idx.bytes
    );
}
