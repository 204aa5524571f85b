#!/usr/bin/env bash
# The README's main job: the whole iatools pipeline against the bundled
# archive.org emulator (offline), then a re-run that finds nothing left to do.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
demo=${IATOOLS_DEMO_DIR:-$top/demo}  # the test suite runs it elsewhere
rm -rf "$demo"
mkdir -p "$demo/disk-a" "$demo/disk-b"

"${PYTHON:-$top/.venv/bin/python}" -m tests.emulator serve --state-dir "$demo/emulator" --https \
  --items 40 --mix realistic --collection prelinger --latency 0.01 >/dev/null &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$demo/emulator/port" ] && break; sleep 0.1; done
# What a user behind an https proxy has: IA_CONFIG_FILE, HTTPS_PROXY, a CA bundle.
. "$demo/emulator/env.sh"
export PATH="$top/bin:$PATH"
cd "$demo"

# disk-a and disk-b are two directories of one filesystem, whose free space
# ia-route will not count twice: --no-disk-check spreads items over them by
# identifier instead.  On real disks: ia-route -d /mnt/a -d /mnt/b.
pipeline() {
  ia-resolve --total --search 'collection:prelinger' \
    | ia-joblog skip s.jsonl | ia-route --no-disk-check -d disk-a -d disk-b \
    | ia-fetch -j 8 | ia-joblog append s.jsonl
}
echo "== first run"
pipeline
ia-joblog status s.jsonl
echo "== second run: everything is already done"
pipeline
ia-joblog status s.jsonl
echo "== files: $(find disk-a disk-b -type f | wc -l) in $demo"
