//! From what the user typed (`6.1`, `trixie`, `6.12-trixie-cloud`, `6.1.0-56-amd64`,
//! `6.12.118+deb13-cloud-amd64`) to the exact packages of one kernel, all pinned to the
//! image's Debian version.
//!
//! - A release (`uname -r`) is looked up as `linux-image-<release>` (or its `-unsigned`
//!   twin) in every suite; the newest version listed wins (an ABI normally has one).
//! - An alias names a distribution and/or a series and a flavour. Its meta-package
//!   (`linux-image-<flavour>`, or Debian 12's `linux-image-6.12-<flavour>`) is looked up in
//!   that distribution's suites (`<codename>`, `-updates`, `-security`), the newest version
//!   wins, and its `=`-pinned `linux-image-*` dependency is the release.
//! - The headers' `Depends` names the `-common` headers and the `linux-kbuild-*` package
//!   (pinned to the image's version whatever their constraint says: one source build made
//!   them all) and the compiler (`gcc-14`, `linux-compiler-gcc-12-x86`).

use crate::error::{archive, archive_hint, Result};
use crate::index::Index;
use crate::relation;
use crate::sources::{release_number, TARGET_CODENAMES};

/// One package pinned to a version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pkg {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Architecture when the index knows it (`amd64`, `all`).
    pub arch: Option<String>,
}

impl Pkg {
    /// `name=version`.
    pub fn spec(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

/// Kernel flavours with `CONFIG_LIVEPATCH` (amd64 only).
pub const FLAVOURS: &[&str] = &["amd64", "cloud-amd64", "rt-amd64"];

/// One kernel release and its packages.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    /// `uname -r`, e.g. `6.12.118+deb13-cloud-amd64`.
    pub release: String,
    /// Debian version of every package, e.g. `6.12.118-1`.
    pub version: String,
    /// Upstream series, e.g. `6.12`.
    pub series: String,
    /// Flavour, e.g. `cloud-amd64`.
    pub flavour: String,
    /// Distribution codename whose toolchain built it (`bookworm`, `trixie`).
    pub codename: String,
    /// Debian release number (12, 13).
    pub debian: u32,
    /// Suite the image was found in, e.g. `trixie-security`.
    pub suite: String,
    /// The image (signed when Debian signs it).
    pub image: Pkg,
    /// `linux-headers-<release>`.
    pub headers: Pkg,
    /// What the headers need: `-common` headers and `linux-kbuild-*`.
    pub headers_deps: Vec<Pkg>,
    /// `linux-source-<series>`.
    pub source: Pkg,
    /// `linux-image-<release>-dbg`.
    pub dbg: Pkg,
    /// The compiler package the headers depend on (`gcc-14`), if named.
    pub compiler: Option<String>,
}

impl Release {
    /// Every package a build needs except the debug one.
    pub fn build_packages(&self) -> Vec<Pkg> {
        let mut v = vec![self.headers.clone()];
        v.extend(self.headers_deps.iter().cloned());
        v.push(self.source.clone());
        v
    }
}

/// What a target string asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An exact release.
    Release(String),
    /// The current release of a distribution and/or series, in a flavour.
    Alias {
        /// `bookworm`, `trixie`, if given.
        codename: Option<String>,
        /// `6.1`, `6.12`, if given.
        series: Option<String>,
        /// `amd64`, `cloud-amd64`, `rt-amd64`.
        flavour: String,
    },
}

const ALIAS_HELP: &str =
    "give a release (6.1.0-56-amd64, 6.12.118+deb13-cloud-amd64) or an alias: \
     6.1, 6.12 (Debian 12's), bookworm, trixie, 6.12-trixie, optionally with a flavour \
     (trixie-cloud, 6.1-rt-amd64)";

/// Parses a target string.
pub fn parse_target(s: &str) -> Result<Target> {
    let s = s.trim();
    let first = s.split('-').next().unwrap_or("");
    if first.split('.').count() >= 3 && first.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(Target::Release(s.to_string()));
    }
    let mut codename = None;
    let mut series = None;
    let mut flavour = None::<&str>;
    for w in s.split('-') {
        let lower = w.to_ascii_lowercase();
        let numbered = lower
            .strip_prefix("debian")
            .or_else(|| lower.strip_prefix("deb"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = numbered {
            let c = crate::sources::CODENAMES
                .iter()
                .find(|(c, r)| *r == n && TARGET_CODENAMES.contains(c));
            codename =
                Some(c.map(|(c, _)| c.to_string()).ok_or_else(|| {
                    archive_hint(format!("Debian {n} is not a target"), ALIAS_HELP)
                })?);
        } else if TARGET_CODENAMES.contains(&lower.as_str()) {
            codename = Some(lower);
        } else if is_series(&lower) {
            series = Some(lower);
        } else if lower == "cloud" || lower == "rt" {
            flavour = Some(if lower == "cloud" {
                "cloud-amd64"
            } else {
                "rt-amd64"
            });
        } else if lower == "amd64" {
            flavour = flavour.or(Some("amd64"));
        } else {
            return Err(archive_hint(
                format!("cannot read the kernel target '{s}' ('{w}' is neither a series, a codename nor a flavour)"),
                ALIAS_HELP,
            ));
        }
    }
    if codename.is_none() && series.is_none() {
        return Err(archive_hint(
            format!("the target '{s}' names no series or distribution"),
            ALIAS_HELP,
        ));
    }
    Ok(Target::Alias {
        codename,
        series,
        flavour: flavour.unwrap_or("amd64").to_string(),
    })
}

fn is_series(w: &str) -> bool {
    let mut it = w.split('.');
    matches!((it.next(), it.next(), it.next()),
        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
}

/// The series of a release (`6.12.118+deb13-amd64` → `6.12`).
pub fn series_of(release: &str) -> Option<String> {
    let mut it = release.split(['.', '-', '+']);
    let (a, b) = (it.next()?, it.next()?);
    (a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
        .then(|| format!("{a}.{b}"))
}

/// The flavour a release ends with.
pub fn flavour_of(release: &str) -> Option<&'static str> {
    // Longest first: `-cloud-amd64` also ends with `-amd64`.
    ["cloud-amd64", "rt-amd64", "amd64"]
        .into_iter()
        .find(|f| release.ends_with(&format!("-{f}")))
}

/// Resolves `target` against `index`.
pub fn resolve(index: &Index, target: &Target) -> Result<Release> {
    match target {
        Target::Release(r) => resolve_release(index, r, None),
        Target::Alias {
            codename,
            series,
            flavour,
        } => {
            let (release, version) =
                resolve_alias(index, codename.as_deref(), series.as_deref(), flavour)?;
            resolve_release(index, &release, Some(&version))
        }
    }
}

/// Distribution of a series when only the series is given: Debian 12's 6.1 and 6.12.
fn default_codename(series: &str) -> &'static str {
    match series {
        "6.1" | "6.12" => "bookworm",
        _ => "trixie",
    }
}

fn resolve_alias(
    index: &Index,
    codename: Option<&str>,
    series: Option<&str>,
    flavour: &str,
) -> Result<(String, String)> {
    let dist = codename.unwrap_or_else(|| default_codename(series.unwrap_or("")));
    let mut metas = Vec::new();
    if let Some(s) = series {
        metas.push(format!("linux-image-{s}-{flavour}"));
    }
    metas.push(format!("linux-image-{flavour}"));
    for meta in &metas {
        let Some(e) = index.newest(meta, Some(dist)) else {
            continue;
        };
        let pinned = relation::parse(&e.depends)
            .into_iter()
            .flat_map(|r| r.alternatives)
            .find_map(|d| {
                let v = d.pinned()?.to_string();
                d.name
                    .strip_prefix("linux-image-")
                    .map(|r| (r.to_string(), v))
            });
        let Some((release, version)) = pinned else {
            return Err(archive(format!(
                "{meta} {} ({}) depends on no pinned kernel image",
                e.version, e.codename
            )));
        };
        if series.is_some_and(|s| series_of(&release).as_deref() != Some(s)) {
            continue;
        }
        return Ok((release, version));
    }
    Err(archive_hint(
        format!(
            "no {flavour} kernel{} in Debian's {dist} suites (looked for {})",
            series
                .map(|s| format!(" of series {s}"))
                .unwrap_or_default(),
            metas.join(", ")
        ),
        ALIAS_HELP,
    ))
}

fn resolve_release(index: &Index, release: &str, version: Option<&str>) -> Result<Release> {
    let mut release = release.to_string();
    if flavour_of(&release).is_none() {
        release.push_str("-amd64");
    }
    let flavour = flavour_of(&release).unwrap_or("amd64").to_string();
    let series = series_of(&release).ok_or_else(|| {
        archive(format!(
            "cannot tell the kernel series of release {release}"
        ))
    })?;
    let names = [
        format!("linux-image-{release}"),
        format!("linux-image-{release}-unsigned"),
    ];
    let image = names
        .iter()
        .find_map(|n| match version {
            Some(v) => index.find(n, v),
            None => index.newest(n, None),
        })
        .ok_or_else(|| {
            archive_hint(
                format!(
                    "no package linux-image-{release}{} in Debian's bookworm or trixie suites",
                    version.map(|v| format!(" (= {v})")).unwrap_or_default()
                ),
                "the release may have left the archive; `kpatch-build -a bookworm` / `-a trixie` \
                 give the current ones (the archive is re-read at most once a day: \
                 KPATCH_APT_MAX_AGE=0 forces it)",
            )
        })?;
    let version = image.version.clone();
    let headers_name = format!("linux-headers-{release}");
    let headers = index.find(&headers_name, &version).ok_or_else(|| {
        archive(format!(
            "{headers_name} {version} is not in the archive's index (the image is)"
        ))
    })?;
    let mut headers_deps = Vec::new();
    let mut compiler = None;
    for rel in relation::parse(&headers.depends) {
        for d in &rel.alternatives {
            if d.name.starts_with("linux-headers-") || d.name.starts_with("linux-kbuild-") {
                headers_deps.push(pkg(index, &d.name, &version));
                break;
            }
            if let Some(c) = compiler_of(&d.name) {
                compiler.get_or_insert(c);
            }
        }
    }
    let codename = image.distribution().to_string();
    Ok(Release {
        debian: release_number(&codename).unwrap_or(0),
        suite: image.codename.clone(),
        image: pkg(index, &image.package, &version),
        headers: pkg(index, &headers_name, &version),
        source: pkg(index, &format!("linux-source-{series}"), &version),
        dbg: pkg(index, &format!("linux-image-{release}-dbg"), &version),
        headers_deps,
        compiler,
        codename,
        flavour,
        series,
        version,
        release,
    })
}

/// `gcc-14` → `gcc-14`; `linux-compiler-gcc-12-x86` → `gcc-12`.
fn compiler_of(name: &str) -> Option<String> {
    let n = name
        .strip_prefix("linux-compiler-")
        .and_then(|r| r.strip_suffix("-x86"))
        .unwrap_or(name);
    let v = n.strip_prefix("gcc-")?;
    v.bytes().all(|c| c.is_ascii_digit()).then(|| n.to_string())
}

/// A package pinned to `version`, with the architecture the index gives any version of it.
fn pkg(index: &Index, name: &str, version: &str) -> Pkg {
    let arch = index
        .find(name, version)
        .or_else(|| index.versions(name).next())
        .map(|e| e.architecture.clone());
    Pkg {
        name: name.to_string(),
        version: version.to_string(),
        arch,
    }
}

#[cfg(test)]
mod tests;
