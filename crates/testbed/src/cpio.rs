//! A minimal writer for the `newc` cpio format the kernel unpacks as an initramfs.

use std::io::{self, Write};

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Writes entries in the given order (parents must come first) and the trailer.
pub struct NewcWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: usize) -> io::Result<()> {
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            size as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.ino += 1;
        let mut head = String::from("070701");
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        self.put(head.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()
    }

    /// Appends one entry; `path` is relative (no leading `/`), `perm` the permission bits.
    pub fn entry(&mut self, path: &str, kind: &EntryKind, perm: u32) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        match kind {
            EntryKind::Dir => self.header(path, S_IFDIR | perm, 2, 0),
            EntryKind::File(data) => {
                self.header(path, S_IFREG | perm, 1, data.len())?;
                self.put(data)?;
                self.pad4()
            }
            EntryKind::Symlink(target) => {
                self.header(path, S_IFLNK | 0o777, 1, target.len())?;
                self.put(target.as_bytes())?;
                self.pad4()
            }
        }
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.ino = 0;
        self.header("TRAILER!!!", 0, 1, 0)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_ends_with_trailer() {
        let mut w = NewcWriter::new(Vec::new());
        w.entry("bin", &EntryKind::Dir, 0o755).unwrap();
        w.entry("bin/x", &EntryKind::File(b"hello".to_vec()), 0o755)
            .unwrap();
        w.entry("bin/sh", &EntryKind::Symlink("busybox".into()), 0)
            .unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // Second header starts on a 4-byte boundary right after "bin\0" padded.
        let second = 116; // 110-byte header + "bin\0", padded to 4
        assert_eq!(&out[second..second + 6], b"070701");
        // Mode field of the file entry: regular file, 0755.
        assert_eq!(&out[second + 14..second + 22], b"000081ed");
        // Name length field of the file: "bin/x" + NUL.
        assert_eq!(&out[second + 94..second + 102], b"00000006");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!"));
    }
}
