#!/usr/bin/env bash
# The project's test command (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
