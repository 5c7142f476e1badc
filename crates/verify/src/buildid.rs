//! GNU build-ids: the linker's hash of a linked file, kept in a `NT_GNU_BUILD_ID` note.
//! The same id is in the file on disk (`.note.gnu.build-id`, or vmlinux's `.notes`) and
//! in the running kernel (`/sys/kernel/notes`, `/sys/module/<name>/notes/`), so it tells
//! whether the kernel or module that runs is the build a patch was made for.

use std::path::Path;

/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;

/// The build-id in a sequence of ELF notes (the contents of a note section, or of
/// `/sys/kernel/notes`), if there is one.
pub fn from_notes(data: &[u8]) -> Option<Vec<u8>> {
    let mut rest = data;
    while rest.len() >= 12 {
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (namesz, descsz, ntype) = (word(0) as usize, word(4) as usize, word(8));
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_add(3)? & !3;
        let desc_end = desc_start.checked_add(descsz)?;
        if desc_end > rest.len() {
            return None;
        }
        let name = &rest[12..name_end];
        if ntype == NT_GNU_BUILD_ID && name == b"GNU\0" && descsz > 0 {
            return Some(rest[desc_start..desc_end].to_vec());
        }
        let next = desc_end.checked_add(3)? & !3;
        rest = rest.get(next..)?;
    }
    None
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The build-id of the running kernel (`/sys/kernel/notes` under `sys`).
pub fn running_kernel(sys: &Path) -> std::io::Result<Option<String>> {
    let data = std::fs::read(sys.join("kernel/notes"))?;
    Ok(from_notes(&data).map(|id| hex(&id)))
}

/// The build-id of loaded module `name` (`/sys/module/<name>/notes/.note.gnu.build-id`
/// under `sys`): `Ok(None)` when the module is not loaded, or carries no build-id.
pub fn loaded_module(sys: &Path, name: &str) -> std::io::Result<Option<String>> {
    let dir = sys.join("module").join(name);
    if !dir.exists() {
        return Ok(None);
    }
    let note = dir.join("notes/.note.gnu.build-id");
    match std::fs::read(&note) {
        Ok(data) => Ok(from_notes(&data).map(|id| hex(&id))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_le_bytes());
        v.extend((desc.len() as u32).to_le_bytes());
        v.extend(ntype.to_le_bytes());
        v.extend(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn finds_the_gnu_note_among_others() {
        let mut data = note(b"Xen\0", 6, b"linux\0");
        data.extend(note(b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef]));
        data.extend(note(b"Linux\0", 0x100, b"x"));
        assert_eq!(from_notes(&data), Some(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(hex(&from_notes(&data).unwrap()), "deadbeef");
    }

    #[test]
    fn truncated_or_absent() {
        let data = note(b"GNU\0", 3, &[1, 2, 3, 4]);
        assert_eq!(from_notes(&data[..data.len() - 2]), None);
        assert_eq!(from_notes(&note(b"GNU\0", 1, &[1])), None);
        assert_eq!(from_notes(&[]), None);
    }
}
