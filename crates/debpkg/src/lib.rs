// SPDX-License-Identifier: GPL-2.0-only
//! # debpkg: binary Debian packages
//!
//! A [`Package`] is a control stanza ([`Control`]), the files it installs, its maintainer
//! scripts and its documentation (`/usr/share/doc/<package>/copyright` and the compressed
//! changelog Debian policy asks for). [`Package::build`] stages them in a temporary
//! directory next to the output, writes `DEBIAN/control`, `DEBIAN/md5sums` and the
//! scripts, and lets `dpkg-deb --build --root-owner-group` make the archive; the `.deb`
//! appears under its final name only once it is complete.
//!
//! kpatch-build writes the `livepatch-<name>` packages with it, and the `xtask` the
//! project's own `kpatch-rs` package.
//!
//! ```no_run
//! use debpkg::{Control, Package, Script};
//! let mut control = Control::new("livepatch-fix", "1", "amd64");
//! control.maintainer = "Jane Admin <jane@example.org>".into();
//! control.synopsis = "live patch fixing a bug".into();
//! control.description = "Loads a live patch into the running kernel.".into();
//! let mut pkg = Package::new(control);
//! pkg.bytes("/usr/lib/kpatch/x.ko", b"...".to_vec(), 0o644)?;
//! pkg.script(Script::Postinst, "#!/bin/sh\nset -e\n");
//! let deb = pkg.build(std::path::Path::new("."))?;
//! # Ok::<(), debpkg::Error>(())
//! ```

#![warn(missing_docs)]

mod changelog;
mod stage;

use std::path::{Path, PathBuf};

pub use changelog::{changelog, rfc2822_date, ChangelogEntry};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field or path that Debian's rules do not allow.
    #[error("invalid package: {0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] pathio::PathError),
    /// `dpkg-deb` failed or could not run.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed.
        output: String,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The fields of `DEBIAN/control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// Package name: lower case letters, digits, `+ - .`, at least two characters.
    pub package: String,
    /// Version, `[epoch:]upstream[-revision]`.
    pub version: String,
    /// `amd64`, `all`, ...
    pub architecture: String,
    /// `Name <address>`.
    pub maintainer: String,
    /// Archive section (`kernel`, `admin`, ...).
    pub section: String,
    /// `optional` unless there is a reason.
    pub priority: String,
    /// Relations, each an entry of the comma-separated field (`pkg (= 1.0)`, `a | b`).
    pub depends: Vec<String>,
    /// `Recommends:` relations.
    pub recommends: Vec<String>,
    /// `Suggests:` relations.
    pub suggests: Vec<String>,
    /// Upstream's home page.
    pub homepage: Option<String>,
    /// The one-line description.
    pub synopsis: String,
    /// The extended description; paragraphs separated by empty lines.
    pub description: String,
}

impl Control {
    /// A stanza with the usual defaults (`Section: misc`, `Priority: optional`).
    pub fn new(package: &str, version: &str, architecture: &str) -> Self {
        Control {
            package: package.to_string(),
            version: version.to_string(),
            architecture: architecture.to_string(),
            maintainer: String::new(),
            section: "misc".into(),
            priority: "optional".into(),
            depends: Vec::new(),
            recommends: Vec::new(),
            suggests: Vec::new(),
            homepage: None,
            synopsis: String::new(),
            description: String::new(),
        }
    }

    /// Checks the fields against Debian policy's syntax (names, versions, a maintainer
    /// with an address, a synopsis on one line).
    pub fn validate(&self) -> Result<()> {
        if !valid_package_name(&self.package) {
            return Err(Error::Invalid(format!(
                "package name {:?}: use lower case letters, digits and + - . (at least two \
                 characters, starting with a letter or digit)",
                self.package
            )));
        }
        if !valid_version(&self.version) {
            return Err(Error::Invalid(format!(
                "version {:?}: Debian versions are [epoch:]upstream[-revision], the upstream \
                 part starting with a digit",
                self.version
            )));
        }
        if !self.maintainer.contains('<') || !self.maintainer.trim_end().ends_with('>') {
            return Err(Error::Invalid(format!(
                "maintainer {:?}: expected `Name <address>`",
                self.maintainer
            )));
        }
        if self.synopsis.trim().is_empty() || self.synopsis.contains('\n') {
            return Err(Error::Invalid(
                "the synopsis must be one non-empty line".into(),
            ));
        }
        for field in [&self.architecture, &self.section, &self.priority] {
            if field.is_empty() || field.contains(char::is_whitespace) {
                return Err(Error::Invalid(format!("field value {field:?}")));
            }
        }
        Ok(())
    }

    /// The stanza, with `Installed-Size` in KiB.
    pub fn render(&self, installed_size_kib: u64) -> String {
        let mut s = String::new();
        let mut field = |k: &str, v: &str| {
            if !v.is_empty() {
                s.push_str(&format!("{k}: {v}\n"));
            }
        };
        field("Package", &self.package);
        field("Version", &self.version);
        field("Architecture", &self.architecture);
        field("Maintainer", &self.maintainer);
        field("Installed-Size", &installed_size_kib.to_string());
        field("Depends", &self.depends.join(", "));
        field("Recommends", &self.recommends.join(", "));
        field("Suggests", &self.suggests.join(", "));
        field("Section", &self.section);
        field("Priority", &self.priority);
        field("Homepage", self.homepage.as_deref().unwrap_or(""));
        s.push_str(&format!("Description: {}\n", self.synopsis.trim()));
        s.push_str(&extended_description(&self.description));
        s
    }
}

/// The extended description in control-file form: paragraphs filled to 79 columns, each
/// line indented by one space, an empty line written as ` .`. Lines that start with a
/// space are kept as they are (verbatim text, lists).
fn extended_description(text: &str) -> String {
    let mut s = String::new();
    for (i, para) in text.trim().split("\n\n").enumerate() {
        if i > 0 {
            s.push_str(" .\n");
        }
        let verbatim = para.lines().any(|l| l.starts_with(' '));
        let lines = if verbatim {
            para.lines().map(|l| l.trim_end().to_string()).collect()
        } else {
            wrap(&para.split_whitespace().collect::<Vec<_>>().join(" "), 78)
        };
        for line in lines {
            s.push(' ');
            s.push_str(&line);
            s.push('\n');
        }
    }
    s
}

/// Fills `text` into lines of at most `width` characters (a longer word stays whole).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Debian policy 5.6.1.
pub fn valid_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Debian policy 5.6.12.
pub fn valid_version(version: &str) -> bool {
    let (epoch, rest) = match version.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, version),
    };
    if epoch.is_some_and(|e| e.is_empty() || !e.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    let upstream_ok = upstream.starts_with(|c: char| c.is_ascii_digit())
        && upstream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c))
        && (epoch.is_some() || !upstream.contains(':'));
    let revision_ok = revision.is_none_or(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.~".contains(c))
    });
    upstream_ok && revision_ok
}

/// The maintainer scripts dpkg runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Script {
    /// Before unpacking.
    Preinst,
    /// After unpacking (configure).
    Postinst,
    /// Before removal or upgrade.
    Prerm,
    /// After removal or purge.
    Postrm,
}

impl Script {
    /// The file name in `DEBIAN/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Script::Preinst => "preinst",
            Script::Postinst => "postinst",
            Script::Prerm => "prerm",
            Script::Postrm => "postrm",
        }
    }
}

/// Where a packaged file's bytes come from.
#[derive(Clone, Debug)]
enum Content {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One installed path.
#[derive(Clone, Debug)]
enum Entry {
    File {
        path: String,
        content: Content,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// A binary package being assembled.
#[derive(Clone, Debug)]
pub struct Package {
    /// Its control fields.
    pub control: Control,
    entries: Vec<Entry>,
    scripts: Vec<(Script, String)>,
    conffiles: Vec<String>,
}

impl Package {
    /// A package with no files yet.
    pub fn new(control: Control) -> Self {
        Package {
            control,
            entries: Vec::new(),
            scripts: Vec::new(),
            conffiles: Vec::new(),
        }
    }

    fn push(&mut self, entry: Entry) -> Result<()> {
        let p = entry.path();
        let bad = !p.starts_with('/')
            || p.ends_with('/')
            || p.split('/').any(|c| c == ".." || c == ".")
            || p.starts_with("/DEBIAN");
        if bad {
            return Err(Error::Invalid(format!(
                "path {p:?}: give an absolute file path"
            )));
        }
        if self.entries.iter().any(|e| e.path() == p) {
            return Err(Error::Invalid(format!("path {p:?} is added twice")));
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Installs the file `src` at `dest` (absolute) with permissions `mode`.
    pub fn file(&mut self, dest: &str, src: &Path, mode: u32) -> Result<()> {
        self.push(Entry::File {
            path: dest.to_string(),
            content: Content::Path(src.to_path_buf()),
            mode,
        })
    }

    /// Installs `bytes` at `dest` with permissions `mode`.
    pub fn bytes(&mut self, dest: &str, bytes: Vec<u8>, mode: u32) -> Result<()> {
        self.push(Entry::File {
            path: dest.to_string(),
            content: Content::Bytes(bytes),
            mode,
        })
    }

    /// A symbolic link at `dest` pointing to `target`.
    pub fn symlink(&mut self, dest: &str, target: &str) -> Result<()> {
        self.push(Entry::Symlink {
            path: dest.to_string(),
            target: target.to_string(),
        })
    }

    /// Sets a maintainer script (replacing an earlier one of the same kind).
    pub fn script(&mut self, which: Script, text: &str) {
        self.scripts.retain(|(s, _)| *s != which);
        self.scripts.push((which, text.to_string()));
    }

    /// Marks an installed file (under `/etc`) as a configuration file.
    pub fn conffile(&mut self, path: &str) {
        self.conffiles.push(path.to_string());
    }

    /// Adds `/usr/share/doc/<package>/copyright` and the changelog, compressed as policy
    /// asks (`changelog.gz` for a native version, `changelog.Debian.gz` otherwise).
    pub fn docs(&mut self, copyright: &str, changelog_text: &str) -> Result<()> {
        let doc = format!("/usr/share/doc/{}", self.control.package);
        let native = !self
            .control
            .version
            .split_once(':')
            .map_or(self.control.version.as_str(), |(_, v)| v)
            .contains('-');
        let name = if native {
            "changelog.gz"
        } else {
            "changelog.Debian.gz"
        };
        self.bytes(
            &format!("{doc}/copyright"),
            copyright.as_bytes().to_vec(),
            0o644,
        )?;
        self.bytes(
            &format!("{doc}/{name}"),
            changelog::gzip_best(changelog_text.as_bytes()),
            0o644,
        )
    }

    /// `<package>_<version without epoch>_<architecture>.deb`.
    pub fn file_name(&self) -> String {
        let c = &self.control;
        let version = c
            .version
            .split_once(':')
            .map_or(c.version.as_str(), |(_, v)| v);
        format!("{}_{}_{}.deb", c.package, version, c.architecture)
    }

    /// Builds the package into `out_dir`; returns the `.deb`'s path. Nothing is left
    /// under the final name unless the build succeeded.
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf> {
        self.control.validate()?;
        stage::build(self, out_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_follow_policy() {
        assert!(valid_package_name("livepatch-cve-2026-1234"));
        assert!(valid_package_name("kpatch-rs"));
        assert!(!valid_package_name("Livepatch"));
        assert!(!valid_package_name("l"));
        assert!(!valid_package_name("a_b"));
        for v in [
            "1",
            "0.1.0",
            "6.1.192-3",
            "1:2.0~rc1-1+deb12u1",
            "1+kpatch1",
        ] {
            assert!(valid_version(v), "{v}");
        }
        for v in ["", "a1", "1-", "1:", ":1", "1 2", "1_2"] {
            assert!(!valid_version(v), "{v}");
        }
    }

    #[test]
    fn control_renders_the_description_and_skips_empty_fields() {
        let mut c = Control::new("kpatch-rs", "0.1.0", "amd64");
        c.maintainer = "A <a@example.org>".into();
        c.synopsis = "live patching".into();
        c.description = "First paragraph.\n\nSecond one.".into();
        c.depends = vec!["libc6 (>= 2.34)".into()];
        c.validate().unwrap();
        let text = c.render(12);
        assert!(text.contains("Depends: libc6 (>= 2.34)\n"), "{text}");
        assert!(!text.contains("Recommends"), "{text}");
        assert!(
            text.ends_with("Description: live patching\n First paragraph.\n .\n Second one.\n"),
            "{text}"
        );
        c.description = format!("{}\n\n  verbatim  line", "word ".repeat(40));
        let text = c.render(1);
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        assert!(text.ends_with(" .\n   verbatim  line\n"), "{text}");
        c.maintainer = "nobody".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn paths_must_be_absolute_and_unique() {
        let mut p = Package::new(Control::new("ab", "1", "all"));
        assert!(p.bytes("usr/x", vec![], 0o644).is_err());
        assert!(p.bytes("/usr/../x", vec![], 0o644).is_err());
        p.bytes("/usr/x", vec![], 0o644).unwrap();
        assert!(p.symlink("/usr/x", "y").is_err());
        assert_eq!(p.file_name(), "ab_1_all.deb");
    }
}
