//! The `Packages` indexes of the private apt configuration, read directly: every stanza of a
//! kernel package (`linux-*`), with the suite and archive it came from. apt has verified each
//! index against the signed `InRelease` file, so an entry's `SHA256` is the archive's word on
//! what its `.deb` must be.

use std::path::Path;

use crate::apt::IndexTarget;
use crate::deb822;
use crate::error::{io, Result};
use crate::version;

/// One package version in one suite.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Package name.
    pub package: String,
    /// Debian version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// Source package name (the binary's name when the field is absent).
    pub source: String,
    /// The `Depends` field as written.
    pub depends: String,
    /// Path of the `.deb` relative to the archive URI (`pool/…`).
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA256 of the `.deb`.
    pub sha256: String,
    /// Suite codename, e.g. `trixie-security`.
    pub codename: String,
    /// Archive URI, ending in `/`.
    pub repo_uri: String,
}

impl Entry {
    /// The distribution the suite belongs to (`trixie-security` → `trixie`).
    pub fn distribution(&self) -> &str {
        self.codename.split('-').next().unwrap_or(&self.codename)
    }

    /// The `.deb`'s URI.
    pub fn uri(&self) -> String {
        format!("{}{}", self.repo_uri, self.filename)
    }
}

/// The kernel packages of every index.
#[derive(Clone, Debug, Default)]
pub struct Index {
    entries: Vec<Entry>,
}

/// Which packages are kept from the indexes.
pub fn is_kernel_package(name: &str) -> bool {
    name.starts_with("linux-")
}

impl Index {
    /// Reads the `linux-*` stanzas of every index target.
    pub fn load(targets: &[IndexTarget]) -> Result<Index> {
        let mut entries = Vec::new();
        for t in targets {
            let text = std::fs::read_to_string(&t.file).map_err(io(&t.file))?;
            entries.extend(parse_index(&text, &t.codename, &t.repo_uri));
        }
        Ok(Index { entries })
    }

    /// An index of the given entries (tests, or a saved copy).
    pub fn from_entries(entries: Vec<Entry>) -> Index {
        Index { entries }
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Every entry of `package`.
    pub fn versions<'a>(&'a self, package: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.package == package)
    }

    /// The entry of `package` at exactly `version` (the first suite listing it).
    pub fn find(&self, package: &str, version: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.package == package && e.version == version)
    }

    /// The newest entry of `package` among suites of distribution `dist` (any when `None`).
    pub fn newest(&self, package: &str, dist: Option<&str>) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.package == package)
            .filter(|e| dist.is_none_or(|d| e.distribution() == d))
            .max_by(|a, b| version::compare(&a.version, &b.version))
    }
}

/// The `linux-*` stanzas of one `Packages` file.
pub fn parse_index(text: &str, codename: &str, repo_uri: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    // Only stanzas of kernel packages are parsed: find them by their first line.
    let needle = "Package: linux-";
    let mut pos = 0;
    while let Some(i) = text[pos..].find(needle) {
        let start = pos + i;
        pos = start + needle.len();
        if start != 0 && text.as_bytes()[start - 1] != b'\n' {
            continue;
        }
        let end = text[start..].find("\n\n").map_or(text.len(), |e| start + e);
        let s = deb822::parse_one(&text[start..end]);
        pos = end;
        let field = |n: &str| s.get(n).unwrap_or("").to_string();
        let package = field("Package");
        if !is_kernel_package(&package) {
            continue;
        }
        let source = s
            .get("Source")
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or(&package)
            .to_string();
        out.push(Entry {
            version: field("Version"),
            architecture: field("Architecture"),
            depends: field("Depends"),
            filename: field("Filename"),
            size: field("Size").parse().unwrap_or(0),
            sha256: field("SHA256"),
            codename: codename.to_string(),
            repo_uri: repo_uri.to_string(),
            source,
            package,
        });
    }
    out
}

/// Size of every index file (for the cache report).
pub fn lists_size(dir: &Path) -> u64 {
    crate::util::disk_usage(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernel_stanzas_with_suite_and_uri() {
        let text = "Package: gcc-14\nVersion: 14.2.0-19\n\n\
Package: linux-source-6.12\nSource: linux\nVersion: 6.12.118-1\nArchitecture: all\n\
Filename: pool/updates/main/l/linux/linux-source-6.12_6.12.118-1_all.deb\nSize: 153528496\n\
SHA256: abc\n\n\
Package: linux-image-amd64\nSource: linux-signed-amd64 (6.12.118+1)\nVersion: 6.12.118-1\n\
Architecture: amd64\nDepends: linux-image-6.12.118+deb13-amd64 (= 6.12.118-1)\n\n\
Package: notlinux-x\nDescription: Package: linux-fake\n";
        let e = parse_index(text, "trixie-security", "http://m/debian-security/");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].package, "linux-source-6.12");
        assert_eq!(e[0].source, "linux");
        assert_eq!(e[0].size, 153528496);
        assert_eq!(
            e[0].uri(),
            "http://m/debian-security/pool/updates/main/l/linux/linux-source-6.12_6.12.118-1_all.deb"
        );
        assert_eq!(e[0].distribution(), "trixie");
        assert_eq!(e[1].source, "linux-signed-amd64");
        let idx = Index::from_entries(e);
        assert!(idx.find("linux-image-amd64", "6.12.118-1").is_some());
        assert!(idx.newest("linux-image-amd64", Some("bookworm")).is_none());
    }
}
