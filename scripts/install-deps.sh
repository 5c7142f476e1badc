#!/usr/bin/env bash
# Installs what building and testing the project needs on Debian 12 (or 13). Idempotent.
# Kernels are compiled in per-distribution build roots that kpatch-build creates with
# mmdebstrap from the archive keyring; gcc-12 and the kernel build tools here serve the
# differ's tests and `kpatch-build --host-toolchain`.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
pkgs=(gcc-12 gcc binutils make patch bc bison flex libelf-dev libssl-dev openssl lintian dwarves cpio xz-utils
  mmdebstrap debian-archive-keyring ovmf qemu-utils dosfstools mtools e2fsprogs openssh-client gpg apt-utils fdisk python3-venv ansible-core
  gcc-aarch64-linux-gnu gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
