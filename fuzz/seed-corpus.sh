#!/usr/bin/env bash
# Writes the seed corpora from upstream's unit objects (nothing binary is committed):
#   fuzz/corpus/read/    every x86_64 object up to 64 KiB, and a few of other architectures
#                        (big-endian s390x, ppc64le, aarch64)
#   fuzz/corpus/differ/  for each pair of fuzz_targets/differ.rs: selector byte + PATCHED,
#                        and selector|0x80 + ORIG
# Usage: fuzz/seed-corpus.sh [OBJS_DIR]   (default ../shared/kpatch-unit-test-objs)
set -euo pipefail
cd "$(dirname "$0")"
objs=${1:-${KPATCH_UNIT_OBJS:-../../shared/kpatch-unit-test-objs}}
[ -d "$objs/x86_64" ] || { echo "no unit objects in $objs" >&2; exit 1; }

mkdir -p corpus/read corpus/differ
for f in "$objs"/x86_64/*.o; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" corpus/read/
done
for a in s390x ppc64le aarch64 loongarch64; do
  ls -S "$objs/$a"/*.o | tail -2 | while read -r f; do cp "$f" "corpus/read/$a-$(basename "$f")"; done
done

# The pair list of fuzz_targets/differ.rs, in order.
mapfile -t pairs < <(sed -n '/^pub const PAIRS/,/^];/p' fuzz_targets/differ.rs | grep -o '"[^"]*"' | tr -d '"')
for i in "${!pairs[@]}"; do
  n=${pairs[$i]}
  { printf "\\x$(printf %02x "$i")"; cat "$objs/x86_64/$n.PATCHED.o"; } > "corpus/differ/$n.patched"
  { printf "\\x$(printf %02x $((i | 128)))"; cat "$objs/x86_64/$n.ORIG.o"; } > "corpus/differ/$n.orig"
done
echo "read: $(ls corpus/read | wc -l) seeds, differ: $(ls corpus/differ | wc -l) seeds"
