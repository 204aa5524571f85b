#!/usr/bin/env bash
# The README's main job: the whole iatools pipeline against the bundled
# archive.org emulator (offline), then a re-run that finds nothing left to do.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
demo=$top/demo
rm -rf "$demo"
mkdir -p "$demo/disk-a" "$demo/disk-b"

"$top/.venv/bin/python" -m tests.emulator serve --state-dir "$demo/emulator" --https \
  --items 40 --mix realistic --collection prelinger --latency 0.01 >/dev/null &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$demo/emulator/port" ] && break; sleep 0.1; done
# What a user behind an https proxy has: IA_CONFIG_FILE, HTTPS_PROXY, a CA bundle.
. "$demo/emulator/env.sh"
export PATH="$top/bin:$PATH"
cd "$demo"

pipeline() {
  ia-resolve --search 'collection:prelinger' \
    | ia-joblog skip s.jsonl | ia-route -d disk-a -d disk-b --margin 100M \
    | ia-fetch -j 8 | ia-joblog append s.jsonl
}
echo "== first run"
pipeline
ia-joblog status s.jsonl
echo "== second run: everything is already done"
pipeline
ia-joblog status s.jsonl
echo "== files: $(find disk-a disk-b -type f | wc -l) in $demo"
