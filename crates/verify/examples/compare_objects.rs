//! `cargo run --release -p verify --example compare_objects -- TARGET OBJ...`: compare
//! every function of each object with TARGET (a vmlinux with symbols, or a .ko) and print
//! what differs. A measuring tool.

use std::path::Path;
use std::time::Instant;

use verify::image::{Image, KernelImage, ModuleImage};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let t = Instant::now();
    let target = Path::new(&args[0]);
    let mut image: Box<dyn Image> = if target.extension().is_some_and(|e| e == "ko") {
        Box::new(ModuleImage::open(target).unwrap())
    } else if let Some(ks) = std::env::var_os("KALLSYMS") {
        let text = std::fs::read_to_string(ks).unwrap();
        Box::new(KernelImage::with_kallsyms(target, &text).unwrap())
    } else {
        Box::new(KernelImage::open(target).unwrap())
    };
    eprintln!("opened {} in {:?}", image.describe(), t.elapsed());
    let (mut total, mut same, mut missing, mut unchecked, mut fields) = (0, 0, 0, 0, 0);
    for obj in &args[1..] {
        let t = Instant::now();
        let mut f = verify::func::RelFile::open(obj).unwrap();
        let funcs = f.functions().unwrap();
        let layout = verify::sites::Layout {
            alt: std::env::var("ALT")
                .map(|v| v.parse().unwrap())
                .unwrap_or(12),
            ..Default::default()
        };
        let index = verify::sites::SiteIndex::build(&mut f, &layout).unwrap();
        let mut diffs = 0;
        for func in &funcs {
            total += 1;
            match verify::compare::function(image.as_mut(), func, &index.for_function(func))
                .unwrap()
            {
                verify::compare::Verdict::Identical {
                    fields: c,
                    unchecked: u,
                    ..
                } => {
                    same += 1;
                    fields += c;
                    unchecked += u;
                    if u > 0 && std::env::var_os("SHOW_UNCHECKED").is_some() {
                        for fl in &func.fields {
                            if matches!(fl.target, verify::func::Target::Unnamed { .. }) {
                                println!("  unchecked {}+{:#x}: {}", func.name, fl.off, fl.target);
                            }
                        }
                    }
                }
                verify::compare::Verdict::Overridden => println!("  overridden {}", func.name),
                verify::compare::Verdict::Missing => {
                    missing += 1;
                    println!("  missing {} ({})", func.name, func.section_name);
                }
                d @ verify::compare::Verdict::Differs { .. } => {
                    diffs += 1;
                    println!(
                        "  DIFF {}: {}",
                        func.name,
                        serde_json::to_string(&d).unwrap()
                    );
                }
            }
        }
        println!(
            "{obj}: {} functions, {diffs} differ ({:?})",
            funcs.len(),
            t.elapsed()
        );
    }
    println!("total {total}, identical {same}, missing {missing}; fields checked {fields}, unchecked {unchecked}; {:?}", t.elapsed());
}
