//! The uncompressed kernel inside a `vmlinuz`, for a faster QEMU boot.
//!
//! QEMU loads an ELF `vmlinux` with a PVH note directly (`-kernel vmlinux`), skipping the BIOS
//! real-mode setup and the in-guest decompression of the bzImage: a boot-and-check takes
//! 3–5 s instead of 6.5–7.5 s. Debian's kernels have `CONFIG_PVH=y`. This is the same kernel
//! (same build-id) entered through its PVH entry point, but without KASLR, which the bzImage's
//! decompressor applies: see [`crate::Guest::pvh`].

use std::fs;
use std::path::PathBuf;

use crate::cache::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::util::FileLock;

pub use debian::vmlinuz::extract_vmlinux;

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
