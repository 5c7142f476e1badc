#!/usr/bin/env bash
# Prepares the real-kernel test bed (crates/testbed): installs QEMU, busybox-static and the
# other host packages, resolves Debian 12's current 6.1 and 6.12 kernels and Debian 13's
# (amd64 and cloud-amd64 flavours) from Debian's archive (a private apt configuration),
# downloads their image, headers and source packages, creates the bookworm and trixie build
# roots (mmdebstrap, once) and builds the livepatch sample against each kernel in its root.
# Idempotent; a warm cache makes it take a few seconds. `$0 trixie` prepares one kernel.
# Cache (shared with kpatch-build): $KPATCH_CACHE, else ~/.kpatch.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p testbed --bin testbed -- prepare --series "${1:-all}"
