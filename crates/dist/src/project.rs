// SPDX-License-Identifier: GPL-2.0-only
//! The `kpatch-rs` package.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use debpkg::{changelog, ChangelogEntry, Control, Package, Script};
use pathio::IoContext;

use crate::{workspace_root, Error, Result};

/// `(binary, installed path, has a man page and completions)`.
pub const BINARIES: &[(&str, &str, bool)] = &[
    ("kpatch", "/usr/sbin/kpatch", true),
    ("kpatch-build", "/usr/bin/kpatch-build", true),
    (
        "create-diff-object",
        "/usr/libexec/kpatch/create-diff-object",
        false,
    ),
    (
        "create-klp-module",
        "/usr/libexec/kpatch/create-klp-module",
        false,
    ),
];

/// The unit's name and where Debian 12 keeps packaged units.
const UNIT: &str = "kpatch.service";
const UNIT_DIR: &str = "/lib/systemd/system";

/// What to build the package from.
#[derive(Clone, Debug)]
pub struct ProjectOptions {
    /// Where the release binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// Where the `.deb` goes.
    pub out_dir: PathBuf,
    /// `Name <address>`.
    pub maintainer: String,
    /// Seconds since the epoch for the changelog (`SOURCE_DATE_EPOCH`, else now).
    pub time: u64,
}

impl ProjectOptions {
    /// Defaults: `DEBFULLNAME <DEBEMAIL>` if set, `SOURCE_DATE_EPOCH` if set.
    pub fn new(bin_dir: &Path, out_dir: &Path) -> Self {
        let maintainer = match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
            (Ok(n), Ok(e)) if !n.is_empty() && !e.is_empty() => format!("{n} <{e}>"),
            _ => "kpatch-rs developers <kpatch-rs@users.noreply.github.com>".into(),
        };
        let time = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
        ProjectOptions {
            bin_dir: bin_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            maintainer,
            time,
        }
    }
}

/// Builds `kpatch-rs_<version>_amd64.deb`; returns its path.
pub fn project_package(opts: &ProjectOptions) -> Result<PathBuf> {
    let work = tempfile::tempdir().at(std::env::temp_dir())?;
    let mut stripped = Vec::new();
    for (name, dest, _) in BINARIES {
        let src = opts.bin_dir.join(name);
        if !src.is_file() {
            return Err(Error::Tool(format!(
                "{} is missing: run `cargo build --release --bins` first",
                src.display()
            )));
        }
        let out = work.path().join(name);
        run(Command::new("strip")
            .args(["--remove-section=.comment", "--remove-section=.note"])
            .arg("--strip-unneeded")
            .arg("-o")
            .arg(&out)
            .arg(&src))?;
        stripped.push((out, *dest));
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut control = Control::new("kpatch-rs", version, "amd64");
    control.maintainer = opts.maintainer.clone();
    control.section = "admin".into();
    control.depends = shlibs_depends(work.path(), &stripped)?;
    control.suggests = [
        "gcc-12",
        "make",
        "bc",
        "bison",
        "flex",
        "libelf-dev",
        "libssl-dev",
        "dwarves",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    control.synopsis = "kernel live patching: build, sign, package and apply live patches".into();
    control.description = DESCRIPTION.into();
    let mut pkg = Package::new(control);
    for (file, dest) in &stripped {
        pkg.file(dest, file, 0o755)?;
    }
    for (name, _, docs) in BINARIES {
        if *docs {
            add_generated_docs(&mut pkg, &opts.bin_dir.join(name), name, work.path())?;
        }
    }
    pkg.bytes(
        "/usr/share/lintian/overrides/kpatch-rs",
        LINTIAN_OVERRIDES.as_bytes().to_vec(),
        0o644,
    )?;
    let unit = workspace_root().join("contrib").join(UNIT);
    pkg.file(&format!("{UNIT_DIR}/{UNIT}"), &unit, 0o644)?;
    let (postinst, postrm) = systemd_scripts(UNIT);
    pkg.script(Script::Postinst, &postinst);
    pkg.script(Script::Postrm, &postrm);
    let log = changelog(
        "kpatch-rs",
        &[ChangelogEntry {
            version: version.into(),
            distribution: "bookworm".into(),
            changes: vec![format!(
                "kpatch-rs {version}: kpatch, kpatch-build, create-diff-object and \
                 create-klp-module, with kpatch.service."
            )],
            maintainer: opts.maintainer.clone(),
            time: opts.time,
        }],
    );
    pkg.docs(&copyright(opts.time), &log)?;
    Ok(pkg.build(&opts.out_dir)?)
}

const DESCRIPTION: &str = "kpatch-rs turns a kernel source patch into a livepatch module and \
applies it to the running kernel without a reboot, transactionally: a load that cannot \
finish is rolled back and explained.\n\n\
kpatch-build builds a module for a Debian kernel from Debian's own packages, compiling only \
the translation units the patch touches; it signs the module with a machine-owner key and \
can package it as a .deb. kpatch loads, unloads, installs and reports live patches \
(kpatch status, for monitoring), and kpatch.service loads the installed ones early at \
boot.";

/// `dpkg-shlibdeps` over the binaries, run in a scratch source tree as debhelper would.
fn shlibs_depends(work: &Path, binaries: &[(PathBuf, &str)]) -> Result<Vec<String>> {
    let src = work.join("src");
    let debian = src.join("debian");
    std::fs::create_dir_all(&debian).at(&debian)?;
    let control = debian.join("control");
    std::fs::write(
        &control,
        "Source: kpatch-rs\n\nPackage: kpatch-rs\nArchitecture: any\n",
    )
    .at(&control)?;
    let mut c = Command::new("dpkg-shlibdeps");
    c.current_dir(&src).arg("-O");
    for (b, _) in binaries {
        c.arg(format!("-e{}", b.display()));
    }
    let out = run(&mut c)?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .ok_or_else(|| Error::Tool(format!("dpkg-shlibdeps printed no shlibs:Depends: {out}")))?;
    Ok(line
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The man pages and completions `binary --generate` writes.
fn add_generated_docs(pkg: &mut Package, binary: &Path, name: &str, work: &Path) -> Result<()> {
    let generate = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new(binary)
            .arg("--generate")
            .args(args)
            .output()
            .map_err(|e| Error::Tool(format!("{} --generate: {e}", binary.display())))?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(Error::Tool(format!(
                "{} --generate {} failed: {}",
                binary.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out.stdout)
    };
    let dir = work.join(format!("man-{name}"));
    std::fs::create_dir_all(&dir).at(&dir)?;
    let listed = generate(&["man", &dir.display().to_string()])?;
    for page in String::from_utf8_lossy(&listed).lines() {
        let page = Path::new(page);
        let file = page
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let section = file.rsplit('.').next().unwrap_or("1");
        let text = std::fs::read(page).at(page)?;
        pkg.bytes(
            &format!("/usr/share/man/man{section}/{file}.gz"),
            gzip(&text),
            0o644,
        )?;
    }
    pkg.bytes(
        &format!("/usr/share/bash-completion/completions/{name}"),
        generate(&["bash"])?,
        0o644,
    )?;
    pkg.bytes(
        &format!("/usr/share/zsh/vendor-completions/_{name}"),
        generate(&["zsh"])?,
        0o644,
    )?;
    Ok(())
}

/// Lintian tags that do not apply, each with the reason.
const LINTIAN_OVERRIDES: &str = "\
# Rust does not call glibc's fortifiable functions (memcpy & co. are its own).
kpatch-rs: hardening-no-fortify-functions [*]
# kpatch.service is a one-shot boot hook, not a daemon: on other init systems the
# boot scripts run `kpatch load --all` (see kpatch(8)).
kpatch-rs: package-supports-alternative-init-but-no-init.d-script [lib/systemd/system/kpatch.service]
# Bytes of compressed data in the binary, not text.
kpatch-rs: spelling-error-in-binary * [usr/bin/kpatch-build]
";

/// The maintainer scripts debhelper's `dh_installsystemd --no-start` would write for
/// `unit`: enabled on installation (not started: it acts at boot), masked on removal,
/// forgotten on purge.
pub fn systemd_scripts(unit: &str) -> (String, String) {
    let postinst = format!(
        r#"#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	# Only remove masks created by deb-systemd-helper on package removal.
	deb-systemd-helper unmask '{unit}' >/dev/null || true
	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled '{unit}'; then
		deb-systemd-helper enable '{unit}' >/dev/null || true
	else
		deb-systemd-helper update-state '{unit}' >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
exit 0
"#
    );
    let postrm = format!(
        r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper mask '{unit}' >/dev/null || true
	fi
fi
if [ "$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge '{unit}' >/dev/null || true
		deb-systemd-helper unmask '{unit}' >/dev/null || true
	fi
fi
exit 0
"#
    );
    (postinst, postrm)
}

fn copyright(time: u64) -> String {
    let date = debpkg::rfc2822_date(time);
    let year = date.split_whitespace().nth(3).unwrap_or("2026");
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: kpatch-rs\n\
         Comment: A Rust re-implementation of kpatch, the Linux kernel live-patching\n \
         toolchain. The modules it generates are GPL.\n\
         \n\
         Files: *\n\
         Copyright: 2026-{year} the kpatch-rs authors\n\
         License: GPL-2\n \
         This program is free software; you can redistribute it and/or modify it under\n \
         the terms of the GNU General Public License version 2 as published by the Free\n \
         Software Foundation.\n \
         .\n \
         This program is distributed in the hope that it will be useful, but WITHOUT ANY\n \
         WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A\n \
         PARTICULAR PURPOSE. See the GNU General Public License for more details.\n \
         .\n \
         On Debian systems, the complete text of the GNU General Public License version 2\n \
         can be found in `/usr/share/common-licenses/GPL-2'.\n"
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| Error::Tool(format!("{:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
