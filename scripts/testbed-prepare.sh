#!/usr/bin/env bash
# Prepares the real-kernel test bed (crates/testbed): installs QEMU, busybox-static and the
# other host packages, resolves Debian 12's current 6.1 and 6.12 kernels from apt's metadata,
# downloads and caches their image, headers and source packages, and builds the livepatch
# sample against each. Idempotent; a warm cache makes it take a few seconds.
# Cache: $KPATCH_TESTBED_CACHE, else ~/.cache/kpatch-testbed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p testbed --bin testbed -- prepare --series "${1:-all}"
