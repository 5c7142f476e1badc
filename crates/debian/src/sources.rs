//! The Debian mirror, read from the host's own apt sources (never edited, never a host name
//! of our own): one-line `.list` files and deb822 `.sources` files under `<root>/etc/apt`.
//!
//! An entry whose suite is a Debian codename (`bookworm`, `trixie-updates`, ...) names the
//! main archive; one whose suite is `<codename>-security` (or the old `<codename>/updates`)
//! names the security archive. The private apt configuration then serves every suite the
//! targets need from those two URIs, whichever suites the host itself lists.

use std::path::Path;

use crate::deb822;
use crate::error::{archive_hint, Result};

/// Debian codenames this project knows, with their release numbers.
pub const CODENAMES: &[(&str, u32)] = &[
    ("bullseye", 11),
    ("bookworm", 12),
    ("trixie", 13),
    ("forky", 14),
];

/// The codenames whose kernels are targets: Debian 12 and Debian 13.
pub const TARGET_CODENAMES: &[&str] = &["bookworm", "trixie"];

/// The release number of a codename (`trixie` → 13).
pub fn release_number(codename: &str) -> Option<u32> {
    CODENAMES
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, n)| *n)
}

/// One `deb` entry of the host's sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The archive URI (`http://…/debian`).
    pub uri: String,
    /// Its suites.
    pub suites: Vec<String>,
    /// The file it came from.
    pub file: String,
}

/// The two Debian archives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    /// The main archive (codename and `-updates` suites).
    pub archive: String,
    /// The security archive (`-security` suites), if the host lists one.
    pub security: Option<String>,
}

/// What kind of Debian suite `suite` is, if it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Archive,
    Security,
}

fn kind(suite: &str) -> Option<Kind> {
    let base = suite.split(['-', '/']).next().unwrap_or(suite);
    let known = CODENAMES.iter().any(|(c, _)| *c == base)
        || matches!(
            base,
            "stable" | "oldstable" | "testing" | "unstable" | "sid"
        );
    if !known {
        return None;
    }
    if suite.ends_with("-security") || suite.ends_with("/updates") {
        Some(Kind::Security)
    } else {
        Some(Kind::Archive)
    }
}

/// Parses a one-line `.list` file: `deb [options] uri suite [components…]`.
pub fn parse_list(text: &str, file: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        {
            Some(r) => r.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Entry {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            file: file.to_string(),
        });
    }
    out
}

/// Parses a deb822 `.sources` file (`Types`, `URIs`, `Suites`, `Enabled`).
pub fn parse_sources(text: &str, file: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for s in deb822::parse(text) {
        let types = s.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if s.get("Enabled")
            .is_some_and(|e| e.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let suites: Vec<String> = s
            .get("Suites")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for uri in s.get("URIs").unwrap_or("").split_whitespace() {
            out.push(Entry {
                uri: uri.to_string(),
                suites: suites.clone(),
                file: file.to_string(),
            });
        }
    }
    out
}

/// Every `deb` entry of the host's apt sources under `root` (normally `/`).
pub fn host_entries(root: &Path) -> Vec<Entry> {
    let etc = root.join("etc/apt");
    let mut out = Vec::new();
    let main = etc.join("sources.list");
    if let Ok(text) = std::fs::read_to_string(&main) {
        out.extend(parse_list(&text, &main.display().to_string()));
    }
    let mut files: Vec<_> = std::fs::read_dir(etc.join("sources.list.d"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let name = f.display().to_string();
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if name.ends_with(".list") {
            out.extend(parse_list(&text, &name));
        } else if name.ends_with(".sources") {
            out.extend(parse_sources(&text, &name));
        }
    }
    out
}

/// The Debian archives among `entries`: the first URI serving a codename suite, and the
/// first serving a security suite.
pub fn mirrors_of(entries: &[Entry]) -> Result<Mirrors> {
    let find = |want: Kind| {
        entries
            .iter()
            .find(|e| e.suites.iter().any(|s| kind(s) == Some(want)))
            .map(|e| e.uri.trim_end_matches('/').to_string())
    };
    let archive = find(Kind::Archive).ok_or_else(|| {
        archive_hint(
            "the host's apt sources list no Debian archive (no entry with a suite such as bookworm or trixie)",
            "add the Debian mirror to /etc/apt/sources.list(.d), or set KPATCH_DEBIAN_MIRROR to its URI",
        )
    })?;
    Ok(Mirrors {
        archive,
        security: find(Kind::Security),
    })
}

/// The mirrors: `KPATCH_DEBIAN_MIRROR` / `KPATCH_DEBIAN_SECURITY_MIRROR` when set, else the
/// host's apt sources under `root`.
pub fn mirrors(root: &Path) -> Result<Mirrors> {
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.trim_end_matches('/').to_string())
    };
    let host = mirrors_of(&host_entries(root));
    match (env("KPATCH_DEBIAN_MIRROR"), host) {
        (Some(archive), host) => Ok(Mirrors {
            archive,
            security: env("KPATCH_DEBIAN_SECURITY_MIRROR")
                .or_else(|| host.ok().and_then(|h| h.security)),
        }),
        (None, Ok(mut m)) => {
            if let Some(s) = env("KPATCH_DEBIAN_SECURITY_MIRROR") {
                m.security = Some(s);
            }
            Ok(m)
        }
        (None, Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# http://snapshot.example/archive/debian/20250520T000000Z\n\
URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\
Components: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n\
Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n";

    #[test]
    fn deb822_sources() {
        let e = parse_sources(DEB822, "debian.sources");
        assert_eq!(e.len(), 2);
        let m = mirrors_of(&e).unwrap();
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

    #[test]
    fn one_line_lists_ignore_other_repositories() {
        let text = "deb https://packages.example/apt cloud-sdk-bookworm main\n\
                    # deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ trixie main\n\
                    deb http://s.example/debian-security bullseye/updates main\n";
        let e = parse_list(text, "x.list");
        assert_eq!(e.len(), 3);
        let m = mirrors_of(&e).unwrap();
        assert_eq!(m.archive, "http://m.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://s.example/debian-security")
        );
        assert!(mirrors_of(&e[..1]).is_err());
    }

    #[test]
    fn host_tree() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/apt/sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("debian.sources"), DEB822).unwrap();
        std::fs::write(
            d.join("other.list"),
            "deb http://x.example/ nodistro main\n",
        )
        .unwrap();
        let m = mirrors_of(&host_entries(dir.path())).unwrap();
        assert_eq!(m.archive, "http://mirror.example/debian");
    }
}
