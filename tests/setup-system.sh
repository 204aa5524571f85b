#!/usr/bin/env bash
# System packages some tests use (GNU parallel, sshd, groff).  Installed with
# apt when running as root; otherwise those tests skip and say why.
set -u
wanted=()
command -v parallel >/dev/null || wanted+=(parallel)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || wanted+=(openssh-server)
command -v groff >/dev/null || wanted+=(groff-base)
[ ${#wanted[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-system: not root or no apt-get; tests needing ${wanted[*]} will skip" >&2
  exit 0
fi
echo "setup-system: installing ${wanted[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${wanted[@]}"; } \
  >/dev/null 2>&1 || echo "setup-system: apt-get failed; tests needing ${wanted[*]} will skip" >&2
exit 0
