// SPDX-License-Identifier: GPL-2.0-only
//! The ELF kernel inside a Debian `vmlinuz` (a bzImage), as the kernel's
//! `scripts/extract-vmlinux` finds it: the first compressed payload that decompresses to
//! an ELF file. Used by kpatch-build (the target's code, with `--kallsyms`) and the test
//! bed (a PVH boot of the ELF kernel).

use std::io::Write;
use std::process::{Command, Stdio};

/// `(magic, decompressor)` of the payloads a bzImage may carry, most likely first.
pub const FORMATS: &[(&[u8], &str)] = &[
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00\x00", "lzma"),
];

/// Decompresses `data` with `tool -dc`, ignoring complaints about trailing bytes; `None`
/// when the tool cannot be run.
pub fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .arg("-dc")
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

/// The ELF kernel in a bzImage: the first compressed payload that decompresses to an ELF
/// file larger than 1 MiB.
pub fn extract_vmlinux(vmlinuz: &[u8]) -> Option<Vec<u8>> {
    for (magic, tool) in FORMATS {
        let mut from = 0;
        // The magic bytes may also occur by chance: try a few places.
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_payload_after_junk_is_found() {
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(2 << 20, 7);
        let gz = {
            let mut child = Command::new("gzip")
                .arg("-c")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("gzip");
            let mut stdin = child.stdin.take().unwrap();
            let input = elf.clone();
            let w = std::thread::spawn(move || stdin.write_all(&input).unwrap());
            let out = child.wait_with_output().unwrap();
            w.join().unwrap();
            out.stdout
        };
        let mut image = b"MZ setup code \x1f\x8b junk".to_vec();
        image.extend_from_slice(&gz);
        image.extend_from_slice(b"trailing bytes");
        assert_eq!(extract_vmlinux(&image), Some(elf));
        assert_eq!(extract_vmlinux(b"no payload here"), None);
    }
}
