//! Kernel series and run-time resolution of the exact Debian release and version.
//!
//! Versions move with Debian security updates, so nothing here is pinned in the source: the
//! meta package (`linux-image-amd64` for 6.1, `linux-image-6.12-amd64` for 6.12) is looked up
//! in apt's metadata, and every other package (headers, their `-common` part, kbuild, source)
//! is pinned to the image's exact Debian version.

use std::fmt;
use std::process::Command;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::util::run_stdout;

/// A Debian 12 kernel series the test bed can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KernelSeries {
    /// Debian 12's default kernel, 6.1 (`linux-image-amd64`).
    #[serde(rename = "6.1")]
    V6_1,
    /// The 6.12 kernel that bookworm-security carries (`linux-image-6.12-amd64`).
    #[serde(rename = "6.12")]
    V6_12,
}

impl KernelSeries {
    /// Every supported series.
    pub const ALL: [KernelSeries; 2] = [KernelSeries::V6_1, KernelSeries::V6_12];

    /// `"6.1"` or `"6.12"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelSeries::V6_1 => "6.1",
            KernelSeries::V6_12 => "6.12",
        }
    }

    /// The meta package whose dependency names the current image.
    pub fn image_meta_package(self) -> &'static str {
        match self {
            KernelSeries::V6_1 => "linux-image-amd64",
            KernelSeries::V6_12 => "linux-image-6.12-amd64",
        }
    }

    /// The package holding the source tarball (`/usr/src/linux-source-<series>.tar.xz`).
    pub fn source_package(self) -> String {
        format!("linux-source-{}", self.as_str())
    }

    /// Top directory inside the source tarball.
    pub fn source_top_dir(self) -> String {
        format!("linux-source-{}", self.as_str())
    }
}

impl fmt::Display for KernelSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KernelSeries {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "6.1" | "v6.1" | "6_1" => Ok(KernelSeries::V6_1),
            "6.12" | "v6.12" | "6_12" => Ok(KernelSeries::V6_12),
            other => Err(Error::UnknownSeries(other.to_owned())),
        }
    }
}

/// The exact packages of one series, as apt's metadata names them today.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Series asked for.
    pub series: KernelSeries,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Debian version of the image, e.g. `6.1.192-2`; all packages are pinned to it.
    pub version: String,
    /// `linux-image-<release>`.
    pub image_package: String,
    /// `linux-headers-<release>`.
    pub headers_package: String,
    /// The headers' architecture-independent part, e.g. `linux-headers-6.1.0-56-common`.
    pub headers_common_package: String,
    /// The kbuild tools package, e.g. `linux-kbuild-6.1`.
    pub kbuild_package: String,
    /// `linux-source-<series>`.
    pub source_package: String,
}

impl Resolved {
    /// `(package, version)` pairs to download.
    pub fn packages(&self) -> Vec<(String, String)> {
        [
            &self.image_package,
            &self.headers_package,
            &self.headers_common_package,
            &self.kbuild_package,
            &self.source_package,
        ]
        .into_iter()
        .map(|p| (p.clone(), self.version.clone()))
        .collect()
    }
}

/// Asks apt's metadata which release and version `series` currently is.
///
/// Needs `apt-get update` to have run once; [`crate::prepare`] does that when this fails.
pub fn resolve(series: KernelSeries) -> Result<Resolved> {
    let meta = series.image_meta_package();
    let text = apt_cache_show(meta)?;
    let (image_package, version) = parse_meta_depends(&text, "linux-image-").ok_or_else(|| {
        Error::Apt(format!(
            "`apt-cache show {meta}` names no pinned linux-image-* dependency"
        ))
    })?;
    let release = image_package
        .strip_prefix("linux-image-")
        .unwrap_or(&image_package)
        .to_owned();
    let headers_package = format!("linux-headers-{release}");
    let headers_text = apt_cache_show(&format!("{headers_package}={version}"))?;
    let (headers_common_package, kbuild_package) = parse_headers_depends(&headers_text)
        .ok_or_else(|| {
            Error::Apt(format!(
                "cannot find the -common and kbuild packages in the dependencies of {headers_package}"
            ))
        })?;
    Ok(Resolved {
        series,
        release,
        version,
        image_package,
        headers_package,
        headers_common_package,
        kbuild_package,
        source_package: series.source_package(),
    })
}

fn apt_cache_show(spec: &str) -> Result<String> {
    let text = run_stdout(Command::new("apt-cache").args(["show", "--no-all-versions", spec]))?;
    if text.trim().is_empty() {
        return Err(Error::Apt(format!(
            "`apt-cache show {spec}` printed nothing"
        )));
    }
    Ok(text)
}

/// The `Depends:` field of the first stanza.
fn depends_field(text: &str) -> Option<&str> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| l.strip_prefix("Depends:"))
}

/// Each dependency's first alternative as `(name, Option<(op, version)>)`.
fn parse_depends(field: &str) -> Vec<(String, Option<(String, String)>)> {
    field
        .split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let (name, rest) = match first.find('(') {
                Some(i) => (first[..i].trim(), Some(&first[i + 1..])),
                None => (first, None),
            };
            let constraint = rest.and_then(|r| {
                let r = r.trim_end().trim_end_matches(')');
                let mut it = r.split_whitespace();
                Some((it.next()?.to_owned(), it.next()?.to_owned()))
            });
            let name = name.split(':').next().unwrap_or(name);
            (!name.is_empty()).then(|| (name.to_owned(), constraint))
        })
        .collect()
}

/// From a meta package's stanza: the `prefix*` dependency pinned with `=`, and its version.
pub(crate) fn parse_meta_depends(text: &str, prefix: &str) -> Option<(String, String)> {
    parse_depends(depends_field(text)?)
        .into_iter()
        .find_map(|(name, c)| match c {
            Some((op, v)) if op == "=" && name.starts_with(prefix) => Some((name, v)),
            _ => None,
        })
}

/// From a headers package's stanza: its `-common` and `linux-kbuild-*` dependencies.
pub(crate) fn parse_headers_depends(text: &str) -> Option<(String, String)> {
    let deps = parse_depends(depends_field(text)?);
    let common = deps
        .iter()
        .find(|(n, _)| n.starts_with("linux-headers-") && n.ends_with("-common"))?
        .0
        .clone();
    let kbuild = deps
        .iter()
        .find(|(n, _)| n.starts_with("linux-kbuild-"))?
        .0
        .clone();
    Some((common, kbuild))
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\n\
Version: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n\n\
Package: linux-image-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n";

    #[test]
    fn meta_package_gives_release_and_version_of_first_stanza() {
        assert_eq!(
            parse_meta_depends(META, "linux-image-"),
            Some(("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()))
        );
        assert_eq!(parse_meta_depends(META, "linux-headers-"), None);
    }

    #[test]
    fn headers_dependencies_6_1_and_6_12() {
        let h61 = "Package: linux-headers-6.1.0-56-amd64\nDepends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86\n";
        assert_eq!(
            parse_headers_depends(h61),
            Some((
                "linux-headers-6.1.0-56-common".into(),
                "linux-kbuild-6.1".into()
            ))
        );
        let h612 = "Package: x\nDepends: linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | linux-image-6.12.117+deb12-amd64-unsigned (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12, gcc-12\n";
        assert_eq!(
            parse_headers_depends(h612),
            Some((
                "linux-headers-6.12.117+deb12-common".into(),
                "linux-kbuild-6.12.117+deb12".into()
            ))
        );
    }

    #[test]
    fn series_names_round_trip() {
        for s in KernelSeries::ALL {
            assert_eq!(s.as_str().parse::<KernelSeries>().unwrap(), s);
        }
        assert!("5.10".parse::<KernelSeries>().is_err());
    }
}
