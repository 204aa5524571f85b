#!/usr/bin/env bash
# System packages the bench's anchors use beyond the tests' own
# (tests/setup-system.sh): rclone, whose internetarchive backend is an anchor
# of W1, W5 and B1.  Installed with apt when running as root; otherwise those
# rows are skipped and say why.
set -u
"$(dirname "$0")/../setup-system.sh"
command -v rclone >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "bench setup: not root or no apt-get; the rclone rows will be skipped" >&2
  exit 0
fi
echo "bench setup: installing rclone" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone \
  >/dev/null 2>&1 || echo "bench setup: apt-get failed; the rclone rows will be skipped" >&2
exit 0
