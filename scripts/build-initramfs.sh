#!/usr/bin/env bash
# Builds the QEMU board's boot files: a Debian cloud kernel and a small busybox initramfs.
#
#   scripts/build-initramfs.sh [OUT_DIR]      (default: .venv/share/tether-qemu)
#
# OUT_DIR gets vmlinuz, initramfs.cpio.gz and a stamp. The kernel comes from Debian's
# linux-image-*-cloud-amd64 package, fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`: nothing is installed, no initramfs-tools hooks run and /boot is left alone.
# The initramfs holds busybox-static, the virtio modules (disk and network) and an /init that
# mounts proc/sys/dev, configures eth0 for QEMU's user network (10.0.2.15), starts an echo
# service on TCP port 7, prints a banner and runs a shell on the console (ttyS0), respawned.
# Safe to run again: it does nothing when the stamp matches this script and the kernel package.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.venv/share/tether-qemu}
BUSYBOX=${BUSYBOX:-/bin/busybox}
META=linux-image-cloud-amd64

[ -x "$BUSYBOX" ] || BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! "$BUSYBOX" --list | grep -qx sh; then
    echo "build-initramfs: busybox-static is needed (apt-get install busybox-static)" >&2
    exit 1
fi
PKG=$(apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$PKG" ]; then
    echo "build-initramfs: apt knows no $META (run apt-get update first)" >&2
    exit 1
fi
STAMP="$PKG $(sha256sum "$0" | cut -c1-16)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] \
    && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.cpio.gz" ]; then
    exit 0
fi

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"  # apt-get download runs as root (unsandboxed) when _apt cannot write here
(cd "$WORK" && apt-get download -qq "$PKG" 2>/dev/null)
dpkg-deb -x "$WORK"/"$PKG"_*.deb "$WORK/kernel"
KVER=${PKG#linux-image-}
MODS="$WORK/kernel/lib/modules/$KVER/kernel"

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,root,modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
# Load order follows the modules' dependencies (virtio core, PCI transport, then devices).
ORDER="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
failover net_failover virtio_net"
for mod in $ORDER; do
    find "$MODS" -name "$mod.ko" -exec cp {} "$ROOT/modules/" \;
done
echo "$ORDER" | tr ' ' '\n' | sed '/^$/d' > "$ROOT/modules/order"

cat > "$ROOT/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for mod in $(cat /modules/order); do insmod /modules/$mod.ko 2>/dev/null; done
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
fi
hostname tether-qemu
# An echo service on TCP port 7 (for network tests), listening before the prompt appears.
nc -ll -p 7 -e /bin/cat </dev/null >/dev/null 2>&1 &
until netstat -ltn 2>/dev/null | grep -q ':7 '; do usleep 20000; done
export HOME=/root PS1='tether-qemu# '
echo
echo "=== tether QEMU board: busybox $(busybox | head -n1 | cut -d' ' -f2), kernel $(uname -r) ==="
while true; do
    setsid cttyhack /bin/sh -l
done
EOF
chmod 755 "$ROOT/init"
echo "export PS1='tether-qemu# '" > "$ROOT/etc/profile"

(cd "$ROOT" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -6) > "$OUT/initramfs.cpio.gz.tmp"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$STAMP" > "$OUT/stamp"
echo "build-initramfs: $OUT/vmlinuz ($KVER) and $OUT/initramfs.cpio.gz"
