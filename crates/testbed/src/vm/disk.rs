//! The bootable disk: a GPT with an EFI system partition (Debian's signed shim and GRUB,
//! and a `grub.cfg` that boots the root file system's `/vmlinuz`) and an ext4 root
//! partition made from a directory with `mkfs.ext4 -d`, converted to a compressed qcow2.
//! Nothing is mounted: `mkfs.vfat` + `mcopy`, `sfdisk` and `dd` work on files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::util::run;

/// The EFI binaries, from Debian's `shim-signed`, `shim-helpers-amd64-signed` and
/// `grub-efi-amd64-signed` packages.
#[derive(Clone, Debug)]
pub struct EfiBinaries {
    /// `shimx64.efi.signed` (signed by Microsoft's UEFI CA).
    pub shim: PathBuf,
    /// `mmx64.efi.signed`: MokManager, which shim starts when a MOK request is pending.
    pub mok_manager: PathBuf,
    /// `grubx64.efi.signed` (signed by Debian; built-in modules for GPT, ext4, linux).
    pub grub: PathBuf,
}

/// The GPT type GUIDs of the two partitions.
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

/// Sizes in MiB.
const ESP_MIB: u64 = 32;

/// What the disk boots.
pub struct DiskSpec<'a> {
    /// The root file system.
    pub rootfs: &'a Path,
    /// Its size in MiB.
    pub root_mib: u64,
    /// The ext4 UUID (also in the guest's fstab and the kernel command line).
    pub root_uuid: &'a str,
    /// Kernel parameters after `root=UUID=… ro`.
    pub cmdline: &'a str,
    /// shim, MokManager, GRUB.
    pub efi: &'a EfiBinaries,
}

/// GRUB's configuration: no menu, boot `/vmlinuz` with `/initrd.img` (the links Debian's
/// kernel packages keep) from the root partition.
pub fn grub_cfg(root_uuid: &str, cmdline: &str) -> String {
    format!(
        "# Written by the kpatch test bed.\n\
         set timeout=0\n\
         set default=0\n\
         search --no-floppy --fs-uuid --set=root {root_uuid}\n\
         menuentry 'Debian GNU/Linux' {{\n\
         \x20 linux /vmlinuz root=UUID={root_uuid} ro {cmdline}\n\
         \x20 initrd /initrd.img\n\
         }}\n"
    )
}

/// Builds the disk as `out` (qcow2) using `work` for the intermediate images.
pub fn build_disk(spec: &DiskSpec<'_>, work: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(work).at(work)?;
    let root_img = work.join("root.img");
    let esp_img = work.join("esp.img");
    let raw = work.join("disk.raw");
    for f in [&root_img, &esp_img, &raw] {
        if f.exists() {
            fs::remove_file(f).at(f)?;
        }
    }
    // GRUB 2.06 reads ext4 with Debian 12's default features (no metadata_csum_seed,
    // no orphan_file); say so in case the defaults change.
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-L",
            "kpatch-root",
            "-O",
            "^metadata_csum_seed,^orphan_file",
        ])
        .arg("-U")
        .arg(spec.root_uuid)
        .arg("-d")
        .arg(spec.rootfs)
        .arg(&root_img)
        .arg(format!("{}M", spec.root_mib)))?;
    make_esp(spec, work, &esp_img)?;
    let total = 1 + ESP_MIB + spec.root_mib + 1;
    let f = fs::File::create(&raw).at(&raw)?;
    f.set_len(total << 20).at(&raw)?;
    drop(f);
    let table = format!(
        "label: gpt\nstart=2048, size={}, type={ESP_TYPE}, name=esp\nstart={}, size={}, type={ROOT_TYPE}, name=root\n",
        ESP_MIB * 2048,
        (1 + ESP_MIB) * 2048,
        spec.root_mib * 2048
    );
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&raw);
    run_with_stdin(&mut sfdisk, &table)?;
    for (img, mib) in [(&esp_img, 1), (&root_img, 1 + ESP_MIB)] {
        run(Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", raw.display()))
            .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={mib}")))?;
    }
    let tmp = out.with_extension("tmp");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-c", "-O", "qcow2"])
        .arg(&raw)
        .arg(&tmp))?;
    fs::rename(&tmp, out).at(out)?;
    for f in [&root_img, &esp_img, &raw] {
        fs::remove_file(f).at(f)?;
    }
    Ok(())
}

/// The EFI system partition: shim as the removable-media loader `\EFI\BOOT\BOOTX64.EFI`
/// (firmware with empty boot entries starts it), MokManager and GRUB beside it, and
/// `grub.cfg` where Debian's signed GRUB looks (`\EFI\debian`, its built-in prefix, and
/// the directory it was started from).
fn make_esp(spec: &DiskSpec<'_>, work: &Path, img: &Path) -> Result<()> {
    let dir = work.join("esp");
    if dir.exists() {
        fs::remove_dir_all(&dir).at(&dir)?;
    }
    let boot = dir.join("EFI/BOOT");
    let debian = dir.join("EFI/debian");
    for d in [&boot, &debian] {
        fs::create_dir_all(d).at(d)?;
    }
    for (src, name) in [
        (&spec.efi.shim, "BOOTX64.EFI"),
        (&spec.efi.mok_manager, "mmx64.efi"),
        (&spec.efi.grub, "grubx64.efi"),
    ] {
        fs::copy(src, boot.join(name)).at(src)?;
    }
    let cfg = grub_cfg(spec.root_uuid, spec.cmdline);
    for d in [&boot, &debian] {
        let p = d.join("grub.cfg");
        fs::write(&p, &cfg).at(&p)?;
    }
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", "EFI"])
        .arg(img)
        .arg((ESP_MIB * 1024).to_string()))?;
    run(Command::new("mcopy")
        .args(["-s", "-i"])
        .arg(img)
        .arg(dir.join("EFI"))
        .arg("::/"))?;
    fs::remove_dir_all(&dir).at(&dir)
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<()> {
    use std::io::Write;
    let command = crate::util::display(cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn grub_boots_the_root_partition_by_uuid() {
        let cfg = super::grub_cfg("1234-5678", "console=ttyS0");
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=root 1234-5678"));
        assert!(cfg.contains("linux /vmlinuz root=UUID=1234-5678 ro console=ttyS0\n"));
        assert!(cfg.contains("initrd /initrd.img\n"));
    }
}
