//! `kpatch-build --deb`: the module as a Debian package, `livepatch-<name>_<ver>_amd64.deb`.
//!
//! The package ships the module as `/usr/lib/kpatch/<release>/livepatch-<name>.ko` and
//! depends on the exact kernel it was built for (`linux-image-<release> (= <version>)`,
//! or its `-unsigned` twin, the same build) and on `kpatch-rs`. Its maintainer scripts
//! act as an operator would with `kpatch`:
//!
//! - `postinst configure`: `kpatch install -k <release>` (the copy in
//!   `/var/lib/kpatch/<release>/` is what `kpatch.service` loads at boot; installing again
//!   clears an interrupted-load mark), then `kpatch load` when `<release>` is the running
//!   kernel (not in a chroot); a load that fails is uninstalled again and fails the
//!   configuration, so that apt reports it (`dpkg --configure -a` tries again);
//! - `prerm remove|upgrade|deconfigure`: `kpatch unload` if the patch is loaded; on
//!   removal also `kpatch uninstall`;
//! - `postrm purge`: removes what may be left in `/var/lib/kpatch`.
//!
//! An upgrade unloads the old version before the new one loads (both have the same module
//! name, which the kernel needs to be unique): the old fix is off for the seconds in
//! between.

use std::path::{Path, PathBuf};

use debpkg::{changelog, ChangelogEntry, Control, Package, Script};

use crate::error::{step, step_hint, Result};
use crate::pipeline::FunctionChange;

/// What `--deb` was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebOptions {
    /// The package version (`--deb-version`).
    pub version: String,
    /// `Name <address>`; default from `DEBFULLNAME`/`DEBEMAIL`, as `dch` does.
    pub maintainer: Option<String>,
}

/// What the package is made of.
pub struct PatchPackage<'a> {
    /// The patch name (`-n`).
    pub name: &'a str,
    /// The built module.
    pub module: &'a Path,
    /// The module's name as the kernel knows it (`livepatch_<name>`).
    pub module_name: &'a str,
    /// The kernel release.
    pub release: &'a str,
    /// The Debian version of that kernel's image.
    pub kernel_version: &'a str,
    /// The patch file (shipped compressed in the documentation).
    pub patch_file: &'a Path,
    /// What the module changes.
    pub functions: &'a [FunctionChange],
}

/// The package name for a patch name: lower case, `_` as `-`.
pub fn package_name(patch_name: &str) -> String {
    format!(
        "livepatch-{}",
        patch_name.to_ascii_lowercase().replace('_', "-")
    )
}

/// The maintainer: `--deb-maintainer`, else `DEBFULLNAME <DEBEMAIL>` (or `NAME`/`EMAIL`).
pub fn maintainer(given: Option<&str>) -> Result<String> {
    if let Some(m) = given {
        return Ok(m.to_string());
    }
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    match (var(&["DEBFULLNAME", "NAME"]), var(&["DEBEMAIL", "EMAIL"])) {
        (Some(n), Some(e)) => Ok(format!("{n} <{e}>")),
        (None, Some(e)) if e.contains('<') => Ok(e),
        _ => Err(step_hint(
            "--deb needs a maintainer for the package",
            "pass --deb-maintainer 'Name <address>' or set DEBFULLNAME and DEBEMAIL",
        )),
    }
}

/// The Debian codename a release belongs to, for the changelog.
fn codename(release: &str) -> &'static str {
    if release.contains("+deb13") {
        "trixie"
    } else {
        "bookworm"
    }
}

/// Writes the package into `out_dir`; returns its path.
pub fn write(p: &PatchPackage<'_>, opts: &DebOptions, out_dir: &Path) -> Result<PathBuf> {
    let pkg_name = package_name(p.name);
    let maintainer = maintainer(opts.maintainer.as_deref())?;
    let ko = p
        .module
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| step("the module has no file name"))?;
    let mut control = Control::new(&pkg_name, &opts.version, "amd64");
    control.maintainer = maintainer.clone();
    control.section = "kernel".into();
    let image = format!("linux-image-{}", p.release);
    control.depends = vec![
        format!(
            "{image} (= {v}) | {image}-unsigned (= {v})",
            v = p.kernel_version
        ),
        format!("kpatch-rs (>= {})", env!("CARGO_PKG_VERSION")),
    ];
    control.synopsis = format!("live patch {} for Linux {}", p.name, p.release);
    control.description = description(p);
    let mut pkg = Package::new(control);
    let dest = format!("/usr/lib/kpatch/{}/{ko}", p.release);
    pkg.file(&dest, p.module, 0o644).map_err(deb_error)?;
    let patch = std::fs::read(p.patch_file).map_err(crate::error::io(p.patch_file))?;
    pkg.bytes(
        &format!("/usr/share/doc/{pkg_name}/{}.patch.gz", p.name),
        gzip(&patch),
        0o644,
    )
    .map_err(deb_error)?;
    let time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now);
    let log = changelog(
        &pkg_name,
        &[ChangelogEntry {
            version: opts.version.clone(),
            distribution: codename(p.release).into(),
            changes: vec![format!(
                "Live patch {} for Linux {} ({}), built by kpatch-build.",
                p.name, p.release, p.kernel_version
            )],
            maintainer,
            time,
        }],
    );
    pkg.docs(&copyright(&pkg_name, p, time), &log)
        .map_err(deb_error)?;
    let scripts = Scripts {
        release: p.release,
        installed: &dest,
        ko: &ko,
        module_name: p.module_name,
        package: &pkg_name,
    };
    pkg.script(Script::Postinst, &scripts.postinst());
    pkg.script(Script::Prerm, &scripts.prerm());
    pkg.script(Script::Postrm, &scripts.postrm());
    pkg.build(out_dir).map_err(deb_error)
}

fn deb_error(e: debpkg::Error) -> crate::Error {
    match e {
        debpkg::Error::Invalid(m) => step_hint(
            format!("--deb: {m}"),
            "the package name comes from -n, the version from --deb-version",
        ),
        other => step(format!("--deb: {other}")),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

fn description(p: &PatchPackage<'_>) -> String {
    let mut changed: Vec<String> = p
        .functions
        .iter()
        .map(|f| {
            format!(
                "{}:{}{}",
                f.object,
                f.function,
                if f.new { " (new)" } else { "" }
            )
        })
        .collect();
    changed.sort();
    let list = if changed.len() > 12 {
        format!(
            "{} and {} more",
            changed[..12].join(", "),
            changed.len() - 12
        )
    } else {
        changed.join(", ")
    };
    format!(
        "This package applies the live patch \"{}\" to the running Linux kernel {} \
         (Debian version {}) without a reboot, and installs it so that kpatch.service \
         loads it at every boot of that kernel. Removing the package unloads it.\n\n\
         Functions it replaces or adds: {list}.",
        p.name, p.release, p.kernel_version
    )
}

fn copyright(pkg_name: &str, p: &PatchPackage<'_>, time: u64) -> String {
    let date = debpkg::rfc2822_date(time);
    let year = date.split_whitespace().nth(3).unwrap_or("2026");
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {pkg_name}\n\
         Comment: A live patch module built by kpatch-build (kpatch-rs) from {} for\n \
         Linux {}. The module is built from the Linux kernel's source and is a derivative\n \
         work of the kernel.\n\
         \n\
         Files: *\n\
         Copyright: 1991-{year} Linus Torvalds and the Linux kernel's authors\n \
         {year} the authors of the patch\n\
         License: GPL-2\n \
         This program is free software; you can redistribute it and/or modify it under\n \
         the terms of the GNU General Public License version 2 as published by the Free\n \
         Software Foundation.\n \
         .\n \
         On Debian systems, the complete text of the GNU General Public License version 2\n \
         can be found in `/usr/share/common-licenses/GPL-2'.\n",
        p.patch_file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        p.release,
        year = year,
    )
}

/// The maintainer scripts' shared facts.
struct Scripts<'a> {
    release: &'a str,
    /// The packaged module (`/usr/lib/kpatch/<release>/<ko>`).
    installed: &'a str,
    ko: &'a str,
    module_name: &'a str,
    package: &'a str,
}

impl Scripts<'_> {
    fn header(&self) -> String {
        format!(
            "#!/bin/sh\n# {} maintainer script, written by kpatch-build.\nset -e\n\
             RELEASE='{}'\nMODULE='{}'\nKO='{}'\nNAME='{}'\n",
            self.package, self.release, self.installed, self.ko, self.module_name
        )
    }

    fn postinst(&self) -> String {
        self.header()
            + r#"
case "$1" in
configure)
	# Installed for kpatch.service, which loads it at every boot of $RELEASE.
	kpatch install --kernel-version "$RELEASE" "$MODULE"
	if [ -n "$DPKG_ROOT" ] || ischroot; then
		echo "$NAME: installed for $RELEASE (not loaded: not on the running system)"
	elif [ "$(uname -r)" != "$RELEASE" ]; then
		echo "$NAME: installed; it will be loaded when $RELEASE runs (the running kernel is $(uname -r))"
	elif ! kpatch load "$NAME"; then
		# Not live: do not leave it for the next boot either. `dpkg --configure -a`
		# tries again.
		kpatch uninstall --kernel-version "$RELEASE" "$KO" || true
		echo "$NAME: the kernel did not take the patch (see above); it is not installed" >&2
		exit 1
	fi
	;;
abort-upgrade|abort-remove|abort-deconfigure)
	;;
esac
exit 0
"#
    }

    fn prerm(&self) -> String {
        self.header()
            + r#"
case "$1" in
remove|upgrade|deconfigure)
	if [ -z "$DPKG_ROOT" ] && [ -d "/sys/kernel/livepatch/$NAME" ] && ! ischroot; then
		kpatch unload "$NAME"
	fi
	if [ "$1" = remove ] && [ -e "/var/lib/kpatch/$RELEASE/$KO" ]; then
		kpatch uninstall --kernel-version "$RELEASE" "$KO"
	fi
	;;
failed-upgrade)
	;;
esac
exit 0
"#
    }

    fn postrm(&self) -> String {
        self.header()
            + r#"
case "$1" in
purge)
	rm -f "/var/lib/kpatch/$RELEASE/$KO" "/var/lib/kpatch/$RELEASE/$NAME.loading"
	rmdir --ignore-fail-on-non-empty "/var/lib/kpatch/$RELEASE" /var/lib/kpatch 2>/dev/null || true
	;;
esac
exit 0
"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_policy() {
        assert_eq!(package_name("CVE_2026_1"), "livepatch-cve-2026-1");
        assert!(debpkg::valid_package_name(&package_name("meminfo")));
    }

    #[test]
    fn scripts_are_valid_shell() {
        let s = Scripts {
            release: "6.1.0-57-amd64",
            installed: "/usr/lib/kpatch/6.1.0-57-amd64/livepatch-x.ko",
            ko: "livepatch-x.ko",
            module_name: "livepatch_x",
            package: "livepatch-x",
        };
        for text in [s.postinst(), s.prerm(), s.postrm()] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &text])
                .output()
                .unwrap();
            assert!(out.status.success(), "{text}: {out:?}");
        }
        assert!(s.postinst().contains("kpatch load \"$NAME\""));
    }
}
