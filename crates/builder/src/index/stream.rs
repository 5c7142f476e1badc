//! One streaming pass over a Debian package's files: the `.deb` is an `ar` archive whose
//! `data.tar.*` member holds the files. Debian compresses it with multi-block xz, so it is
//! decoded with liblzma's multi-threaded decoder (one worker per core); other
//! compressions go through `dpkg-deb --fsys-tarfile`. Nothing is written to disk here:
//! the caller sees each regular file once, in archive order, as a reader.

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{io, step, Result};

/// A regular file of the package: its path without the leading `./`, and its size.
pub struct Member<'a> {
    /// Path in the package, without `./`.
    pub path: &'a str,
    /// Size in bytes.
    pub size: u64,
}

/// Call `visit` for every regular file of `deb`'s data archive, in archive order.
/// `visit` reads what it needs from the reader; the rest of the member is skipped.
pub fn for_each_file(
    deb: &Path,
    mut visit: impl FnMut(Member<'_>, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(deb).map_err(io(deb))?;
    let mut archive = ar::Archive::new(BufReader::with_capacity(1 << 20, file));
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(|e| step(format!("{}: not a .deb: {e}", deb.display())))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        if name == "data.tar.xz" {
            let decoder = liblzma::stream::MtStreamBuilder::new()
                .threads(threads())
                .memlimit_threading(1 << 30)
                .memlimit_stop(u64::MAX)
                .decoder()
                .map_err(|e| step(format!("xz decoder: {e}")))?;
            let xz = liblzma::read::XzDecoder::new_stream(
                BufReader::with_capacity(1 << 20, entry),
                decoder,
            );
            return walk_tar(deb, BufReader::with_capacity(1 << 20, xz), &mut visit);
        }
        drop(entry);
        return dpkg_deb_stream(deb, &mut visit);
    }
    Err(step(format!("{}: no data.tar member", deb.display())))
}

fn threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Any compression dpkg knows: `dpkg-deb --fsys-tarfile` decompresses, we read the tar.
fn dpkg_deb_stream(
    deb: &Path,
    visit: &mut dyn FnMut(Member<'_>, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| step(format!("cannot run dpkg-deb: {e}")))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| step("dpkg-deb: no output"))?;
    let walked = walk_tar(deb, BufReader::with_capacity(1 << 20, out), visit);
    let status = child.wait().map_err(|e| step(format!("dpkg-deb: {e}")))?;
    walked?;
    if !status.success() {
        return Err(step(format!(
            "dpkg-deb --fsys-tarfile {} failed",
            deb.display()
        )));
    }
    Ok(())
}

fn walk_tar<R: Read>(
    deb: &Path,
    reader: R,
    visit: &mut dyn FnMut(Member<'_>, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let bad = |e: std::io::Error| step(format!("{}: unreadable data archive: {e}", deb.display()));
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        let size = entry.size();
        visit(Member { path: &path, size }, &mut entry)?;
    }
    Ok(())
}
