//! The verify phase's refusal: which functions differ from the target, where, and the
//! likely cause, from what the build can compare with the target: the compiler (the
//! objects' `.comment` against the target's), the configuration (the `.config` the
//! objects were built with against the headers package's, which Debian built with), and
//! the source (a user's tree against Debian's source package, when that is prepared).

use std::collections::BTreeSet;
use std::path::PathBuf;

use verify::compare::Verdict;
use verify::image::KernelImage;

use super::objects::Objects;
use super::prepare::Prepared;
use super::resolve::Target;
use super::verify::UnitResult;
use crate::kernel::Kernel;
use crate::units::read_config;

/// How many differing configuration options are named.
const MAX_OPTIONS: usize = 8;

/// The refusal's text: each differing function, then the likely causes and what to do.
pub fn report(
    bad: &[&UnitResult],
    target: &Target,
    prepared: &Prepared,
    objects: &Objects,
    kernel: &KernelImage,
) -> String {
    let mut text = format!(
        "the rebuilt original code is not the code kernel {} runs:",
        target.release.release
    );
    for u in bad {
        for f in &u.functions {
            match &f.verdict {
                Verdict::Differs {
                    size,
                    target_size,
                    first,
                    ..
                } => {
                    text.push_str(&format!(
                        "\n  {}: {} differs from {}'s at +{:#x}",
                        u.object.display(),
                        f.name,
                        u.against,
                        first.offset
                    ));
                    if let Some(d) = &first.detail {
                        text.push_str(&format!(" ({d})"));
                    } else if target_size.is_some_and(|t| t != *size) {
                        text.push_str(&format!(
                            " (size {size}, the target's {})",
                            target_size.unwrap_or(0)
                        ));
                    }
                    text.push_str(&format!(
                        "\n      rebuilt: {}\n      target:  {}",
                        first.ours, first.theirs
                    ));
                }
                Verdict::Missing => text.push_str(&format!(
                    "\n  {}: {} is not in {}",
                    u.object.display(),
                    f.name,
                    u.against
                )),
                _ => {}
            }
        }
    }
    let causes = causes(bad, prepared, objects, kernel);
    text.push_str("\n  likely cause:");
    for c in &causes {
        text.push_str(&format!("\n    - {c}"));
    }
    text.push_str(
        "\n  hint: a live patch built from this code would replace functions whose callers, \
         offsets or inlining are not the running kernel's; build with the target's exact \
         source, .config and compiler. --skip-verify builds anyway (recorded in the module's modinfo)",
    );
    text
}

fn causes(
    bad: &[&UnitResult],
    prepared: &Prepared,
    objects: &Objects,
    kernel: &KernelImage,
) -> Vec<String> {
    let k = &prepared.kernel;
    let mut out = Vec::new();
    if let Some(c) = compiler(bad, objects, kernel) {
        out.push(c);
    }
    let sources: Vec<PathBuf> = bad
        .iter()
        .map(|u| u.source.clone())
        .filter(|c| k.tree().join(c).exists())
        .collect();
    if let Some(c) = config(k, &sources) {
        out.push(c);
    }
    match source(k, &sources) {
        Some(c) => out.push(c),
        None if out.is_empty() => out.push(match &k.source {
            crate::kernel::TreeSource::User { dir, .. } => format!(
                "the source: the tree {} may not be the target's source (Debian's linux-source {})",
                dir.display(),
                k.rel.version
            ),
            crate::kernel::TreeSource::Package { .. } => format!(
                "the source: Debian's linux-source {} does not rebuild the shipped binary \
                 (another point release, or a distribution patch missing from the source \
                 package)",
                k.rel.version
            ),
        }),
        None => {}
    }
    out
}

/// The compiler that built the objects, when the target's binary names others.
fn compiler(bad: &[&UnitResult], objects: &Objects, kernel: &KernelImage) -> Option<String> {
    let theirs: BTreeSet<String> = kernel
        .elf
        .comments()
        .ok()?
        .into_iter()
        .filter(|c| c.starts_with("GCC:") || c.contains("clang"))
        .collect();
    if theirs.is_empty() {
        return None;
    }
    for u in bad {
        let obj = verify::elf::Elf::open(objects.orig.join(&u.object)).ok()?;
        for ours in obj.comments().ok()? {
            if ours.starts_with("GCC:") && !theirs.contains(&ours) {
                return Some(format!(
                    "the compiler: {} was built by '{ours}', the target by '{}'",
                    u.object.display(),
                    theirs.iter().cloned().collect::<Vec<_>>().join("', '")
                ));
            }
        }
    }
    None
}

/// The configuration the objects were built with, when it is not the target's.
fn config(k: &Kernel, sources: &[PathBuf]) -> Option<String> {
    let target = k.headers().join(".config");
    let used = match &k.source {
        crate::kernel::TreeSource::User { dir, .. } => dir.join(".config"),
        crate::kernel::TreeSource::Package { config } => config.clone(),
    };
    let (a, b) = (read_config(&target).ok()?, read_config(&used).ok()?);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut diff: Vec<(&String, String)> = keys
        .into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .filter(|key| !toolchain_option(key))
        .map(|key| {
            let show = |v: Option<&String>| v.map_or("not set".to_string(), |v| v.clone());
            (
                key,
                format!(
                    "{key} is {} in the target's .config, {} here",
                    show(a.get(key)),
                    show(b.get(key))
                ),
            )
        })
        .collect();
    if diff.is_empty() {
        return None;
    }
    // Options the differing files use first.
    let text: String = sources
        .iter()
        .filter_map(|s| std::fs::read_to_string(k.tree().join(s)).ok())
        .collect();
    diff.sort_by_key(|(key, _)| !text.contains(&key["CONFIG_".len()..]));
    let n = diff.len();
    let mut line = format!(
        "the configuration: {} differs from the target's in {n} option(s): ",
        used.display()
    );
    let shown: Vec<String> = diff.into_iter().take(MAX_OPTIONS).map(|(_, s)| s).collect();
    line.push_str(&shown.join("; "));
    if n > MAX_OPTIONS {
        line.push_str("; ...");
    }
    Some(line)
}

/// Options `olddefconfig` derives from the host's tools (versions, what the compiler,
/// assembler, linker or rustc support), and the build salt: the compiler cause covers
/// those.
fn toolchain_option(key: &str) -> bool {
    key.contains("_VERSION")
        || key == "CONFIG_BUILD_SALT"
        || [
            "CONFIG_RUSTC_",
            "CONFIG_CC_HAS_",
            "CONFIG_AS_HAS_",
            "CONFIG_LD_HAS_",
            "CONFIG_CC_CAN_",
            "CONFIG_TOOLS_SUPPORT_",
            "CONFIG_PAHOLE_HAS_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

/// The source: a file of a user's tree that differs from Debian's source package (when
/// that is prepared in the cache), and from which line.
fn source(k: &Kernel, sources: &[PathBuf]) -> Option<String> {
    let crate::kernel::TreeSource::User { dir, .. } = &k.source else {
        return None;
    };
    let debian = Kernel::new(k.archive.clone(), k.rel.clone()).tree();
    sources.iter().find_map(|s| {
        let ours = std::fs::read_to_string(dir.join(s)).ok()?;
        let theirs = std::fs::read_to_string(debian.join(s)).ok()?;
        if ours == theirs {
            return None;
        }
        let line = ours
            .lines()
            .zip(theirs.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(ours.lines().count().min(theirs.lines().count()))
            + 1;
        Some(format!(
            "the source: {} in {} differs from Debian's linux-source {} from line {line}",
            s.display(),
            dir.display(),
            k.rel.version
        ))
    })
}
