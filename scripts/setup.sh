#!/usr/bin/env bash
# Everything brig needs on a fresh Debian/Ubuntu machine: system packages
# (as root through apt-get; otherwise it prints the exact command), then npm
# packages and the build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# bubblewrap: the jail. util-linux: setsid, and mount/losetup for workspace quotas;
# e2fsprogs: mkfs.ext4 for them (resources.diskMiB). g++, make, python3: node-gyp
# builds the native parts at npm ci (brig-spawn, brig-relay and brig-exec, node-pty,
# better-sqlite3). perl: the syscall probes of the tests; libcap2-bin: setcap/getcap,
# for the test that no jail can give a file capabilities; curl: what the egress tests
# reach through the proxy. git, jq, wget, unzip, gawk, procps: the rest of the tools
# every agent jail offers (seed 002's list; brig agent names any that are missing).
# socat, ripgrep: what sandbox-runtime (srt) needs for the benchmark, ripgrep also an
# agent tool. mmdebstrap: images FROM debian:SUITE, bootstrapped from the Debian mirror
# (no container registry needed). runsc: gVisor, the gvisor tier (brig tiers).
# qemu-system-x86 (with virtiofsd): the vm tier, without its recommends (firmware,
# display and audio libraries a microvm never uses). chromium: the browser tests (noVNC,
# the notebook, sandbox ports), driven by playwright-core.
packages=(bubblewrap util-linux e2fsprogs g++ make python3 perl libcap2-bin curl git jq wget unzip gawk procps socat ripgrep mmdebstrap runsc chromium)
lean_packages=(qemu-system-x86)
missing_in() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}
mapfile -t missing < <(missing_in "${packages[@]}")
mapfile -t missing_lean < <(missing_in "${lean_packages[@]}")
if [ $((${#missing[@]} + ${#missing_lean[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]} ${missing_lean[*]}"
    apt-get update -qq
    [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    [ ${#missing_lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_lean[@]}" >/dev/null
  else
    echo "setup: brig needs these system packages: ${missing[*]} ${missing_lean[*]}"
    [ ${#missing[@]} -eq 0 ] || echo "setup: run:  sudo apt-get install -y ${missing[*]}"
    [ ${#missing_lean[@]} -eq 0 ] || echo "setup: run:  sudo apt-get install -y --no-install-recommends ${missing_lean[*]}"
    exit 1
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: brig needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))"
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
echo "setup: ready — try: ./bin/brig run -- bash"
