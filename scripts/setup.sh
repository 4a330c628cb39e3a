#!/usr/bin/env bash
# Creates .venv with everything the tests and the demo need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# Debian packages: QEMU (TCG) and busybox-static for the QEMU board; nftables and iproute2 for
# the relay's network-namespace tests. Only missing packages are installed, after one
# `apt-get update`; nothing happens when all are there.
APT_PACKAGES="qemu-system-x86 busybox-static nftables iproute2"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi
# The QEMU board's kernel and initramfs (needs apt's package lists for `apt-get download`).
if ! bash scripts/build-initramfs.sh .venv/share/tether-qemu 2>/dev/null; then
    $SUDO apt-get update -qq
    bash scripts/build-initramfs.sh .venv/share/tether-qemu
fi
