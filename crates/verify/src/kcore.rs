//! Reading the running kernel's memory through `/proc/kcore`, an ELF core file whose
//! loadable segments map kernel virtual addresses (the kernel text, the vmalloc and
//! module areas, the direct map) to file offsets. Root only.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, ProgramHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

use crate::{Error, Result};

/// An opened `/proc/kcore`.
pub struct Kcore {
    path: PathBuf,
    file: File,
    /// `(vaddr, offset, size)` of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

impl Kcore {
    /// Opens `path` (normally `/proc/kcore`) and reads its program headers.
    pub fn open(path: &Path) -> Result<Kcore> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |what: &str| Error::Format(format!("{}: {what}", path.display()));
        let mut head = [0u8; 64];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, e))?;
        let hdr: &FileHeader64<LE> = object::pod::from_bytes(&head)
            .map(|(h, _)| h)
            .map_err(|_| bad("no ELF header"))?;
        if !hdr.is_supported() || !hdr.is_class_64() || !hdr.is_little_endian() {
            return Err(bad("not a 64-bit little-endian ELF core"));
        }
        let (phoff, phnum, phent) = (hdr.e_phoff(LE), hdr.e_phnum(LE), hdr.e_phentsize(LE));
        if usize::from(phent) != std::mem::size_of::<ProgramHeader64<LE>>() || phnum == 0 {
            return Err(bad("unexpected program headers"));
        }
        let mut raw = vec![0u8; usize::from(phnum) * usize::from(phent)];
        file.read_exact_at(&mut raw, phoff)
            .map_err(|e| Error::io(path, e))?;
        let mut segments = Vec::new();
        for chunk in raw.chunks_exact(usize::from(phent)) {
            let p: &ProgramHeader64<LE> = object::pod::from_bytes(chunk)
                .map(|(p, _)| p)
                .map_err(|_| bad("program header"))?;
            if p.p_type(LE) == PT_LOAD {
                segments.push((p.p_vaddr(LE), p.p_offset(LE), p.p_filesz(LE)));
            }
        }
        Ok(Kcore {
            path: path.to_path_buf(),
            file,
            segments,
        })
    }

    /// `len` bytes of kernel memory at `addr`.
    pub fn read(&self, addr: u64, len: u64) -> Result<Vec<u8>> {
        let end = addr
            .checked_add(len)
            .ok_or_else(|| Error::Format(format!("address {addr:#x} overflows")))?;
        let seg = self
            .segments
            .iter()
            .find(|(v, _, s)| addr >= *v && end <= v.saturating_add(*s))
            .ok_or_else(|| {
                Error::Format(format!(
                    "{}: address {addr:#x} is in no segment",
                    self.path.display()
                ))
            })?;
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, seg.1 + (addr - seg.0))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }
}
