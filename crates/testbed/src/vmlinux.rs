//! The uncompressed kernel inside a `vmlinuz`, for a faster QEMU boot.
//!
//! QEMU loads an ELF `vmlinux` with a PVH note directly (`-kernel vmlinux`), skipping the BIOS
//! real-mode setup and the in-guest decompression of the bzImage: a boot-and-check takes
//! 3–5 s instead of 6.5–7.5 s. Debian's kernels have `CONFIG_PVH=y`. This is the same kernel
//! (same build-id) entered through its PVH entry point, but without KASLR, which the bzImage's
//! decompressor applies: see [`crate::Guest::pvh`].

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cache::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::util::FileLock;

/// `(magic, decompressor)` pairs, as in the kernel's `scripts/extract-vmlinux`.
const FORMATS: &[(&[u8], &str)] = &[
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
];

/// Decompresses `data` with `tool -dc`, ignoring complaints about trailing bytes.
fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .args(["-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        // The tool may stop reading at the end of its stream: a broken pipe is fine.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    Some(out.stdout)
}

/// Finds the compressed payload in a bzImage and returns the ELF it holds.
pub fn extract_vmlinux(vmlinuz: &[u8]) -> Option<Vec<u8>> {
    for (magic, tool) in FORMATS {
        let mut from = 0;
        // Try a few occurrences: the magic bytes may also appear by chance.
        for _ in 0..4 {
            let Some(pos) = find(&vmlinuz[from..], magic).map(|p| p + from) else {
                break;
            };
            if let Some(elf) = decompress(tool, &vmlinuz[pos..]) {
                if elf.len() > 1 << 20 && elf.starts_with(b"\x7fELF") {
                    return Some(elf);
                }
            }
            from = pos + 1;
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Kernel {
    /// `<dir>/vmlinux-<release>`: the ELF kernel extracted from the image once (≈1 s).
    pub fn vmlinux_uncompressed(&self) -> Result<PathBuf> {
        let out = self.dir.join(format!("vmlinux-{}", self.release()));
        if out.exists() {
            return Ok(out);
        }
        let _lock = FileLock::acquire(&self.dir.join("lock"))?;
        if out.exists() {
            return Ok(out);
        }
        let data = fs::read(&self.vmlinuz).at(&self.vmlinuz)?;
        let elf = extract_vmlinux(&data).ok_or_else(|| {
            Error::Cache(format!(
                "no xz, zstd or gzip payload with an ELF kernel in {}",
                self.vmlinuz.display()
            ))
        })?;
        let tmp = out.with_extension("tmp");
        fs::write(&tmp, elf).at(&tmp)?;
        fs::rename(&tmp, &out).at(&out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_payload_after_junk_is_found() {
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(2 << 20, 7);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&elf).unwrap();
            e.finish().unwrap()
        };
        let mut image = b"MZ setup code \x1f\x8b junk".to_vec();
        image.extend_from_slice(&gz);
        image.extend_from_slice(b"trailing bytes");
        assert_eq!(extract_vmlinux(&image), Some(elf));
        assert_eq!(extract_vmlinux(b"no payload here"), None);
    }
}
