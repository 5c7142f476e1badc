#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The whole story on a fresh Debian 12 machine, nothing prepared:
#   1. install the build dependencies and build kpatch-rs;
#   2. build examples/meminfo.patch for Debian's current 6.1 kernel with our kpatch-build
#      (the first run downloads and prepares that kernel's packages);
#   3. boot that very kernel under QEMU, load the module with our kpatch, and show the
#      /proc/meminfo line before loading, while loaded and after unloading.
# Exits non-zero as soon as a step does not show what it should.
#
# Options: SERIES=trixie (Debian 13), trixie-cloud, 6.12 (Debian 12's 6.12), an exact release such
# as 6.1.0-56-amd64: any kpatch-build target; SKIP_DEPS=1 to skip apt.
set -euo pipefail
cd "$(dirname "$0")/.."

series=${SERIES:-6.1}
start=$(date +%s)
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
elapsed() { echo "$(($(date +%s) - start)) s"; }

if [ -z "${SKIP_DEPS:-}" ]; then
	step "Installing build dependencies with apt (scripts/install-deps.sh)"
	bash scripts/install-deps.sh
fi

step "Building kpatch-rs (cargo build --release)"
cargo build --release --workspace --bins
bin=$PWD/target/release

step "Preparing the QEMU test bed with Debian's $series kernel (cached after the first run)"
"$bin/testbed" prepare --series "$series"

step "Building examples/meminfo.patch for Debian's $series kernel with kpatch-build"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin/kpatch-build" -a "$series" -n meminfo -o "$out" examples/meminfo.patch
ko=$out/livepatch-meminfo.ko
echo "module: $ko ($(stat -c %s "$ko") bytes)"

step "Booting Debian's $series kernel under QEMU; loading and unloading the patch with our kpatch"
# Each step prints the meminfo line, then checks it. The guest has our kpatch binary in
# /usr/local/bin and the module in /testbed/modules.
show='grep -i "^vmallocchunk" /proc/meminfo'
"$bin/testbed" boot --series "$series" --show-steps \
	--module "$ko" --binary "$bin/kpatch" \
	--step "1-before-loading=$show && grep -q '^VmallocChunk:' /proc/meminfo" \
	--step "2-kpatch-load=kpatch load /testbed/modules/livepatch-meminfo.ko && kpatch list" \
	--step "3-while-loaded=$show && grep -q '^VMALLOCChunk:' /proc/meminfo" \
	--step "4-kpatch-unload=kpatch unload livepatch_meminfo" \
	--step "5-after-unloading=$show && grep -q '^VmallocChunk:' /proc/meminfo"

step "Done in $(elapsed): VmallocChunk before, VMALLOCChunk while the live patch was loaded, VmallocChunk after"
