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
# The other supported Pythons (3.12, 3.13) for `make test`.
bash scripts/setup-pythons.sh

# Debian packages, each for tests that start the real thing:
# - qemu-system-x86, busybox-static: the QEMU board; u-boot-qemu: real U-Boot for it;
# - nftables, iproute2: the relay's and the DUT network's namespaces;
# - openssh-server, openssh-client: sshd on loopback for the Ssh driver (and the bench's ssh/scp);
# - snmpd, snmp: an SNMP agent for SnmpPower (and net-snmp's own client);
# - ipmitool: an independent IPMI client next to the BMC simulator;
# - tftpd-hpa, tftp-hpa, curl: TFTP peers for the TftpServer (and the bench's reference server);
# - chromium: headless browser tests of the dashboard.
# Only missing packages are installed, after one `apt-get update`; nothing happens when all are
# there. Daemons these packages would start system-wide are not started (policy-rc.d): the tests
# start their own, on loopback, with their own configs.
APT_PACKAGES="qemu-system-x86 busybox-static u-boot-qemu nftables iproute2 openssh-server
openssh-client snmpd snmp ipmitool tftpd-hpa tftp-hpa curl chromium"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    $SUDO apt-get update -qq
    no_daemons=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        no_daemons=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
    [ -z "$no_daemons" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# The QEMU board's kernel and initramfs (needs apt's package lists for `apt-get download`).
if ! bash scripts/build-initramfs.sh .venv/share/tether-qemu 2>/dev/null; then
    $SUDO apt-get update -qq
    bash scripts/build-initramfs.sh .venv/share/tether-qemu
fi
