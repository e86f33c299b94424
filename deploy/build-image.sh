#!/usr/bin/env bash
# `make image`: a Raspberry Pi SD card image (arm64: Pi 3, 4, 5, Zero 2 W) from Debian's
# own packages, built on this x86-64 machine under qemu-user:
#   1. a Debian bookworm arm64 root (the cached base of deploy/arm-root.sh) with Debian's
#      linux-image-arm64, raspi-firmware (the Pi's boot files), systemd-networkd (DHCP on
#      Ethernet), openssh-server;
#   2. a wheelhouse built in that root, and simedge installed from it by install.sh
#      --wheelhouse, as on a site without the network; the wheels and the source stay in
#      the image (/usr/local/src/simedge, /usr/local/src/simedge-wheels) for offline
#      upgrades; the dashboard login `dashboard`, whose key comes from simedge.txt;
#   3. the boot partition (FAT, label RASPIFIRM) and the root (ext4, RASPIROOT) made from
#      the folders with mkfs.vfat + mtools and mkfs.ext4 -d, partitioned with parted: no
#      loop device or mount is needed.
# The image, and the kernel and initrd that test-image boots in qemu, go to $WORK.
# Needs root and the network (Debian mirror, PyPI); heavy steps under nice.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SIMEDGE_IMAGE_DIR:-/var/cache/simedge-test}
SUITE=${SIMEDGE_IMAGE_SUITE:-bookworm}
MIRROR=${SIMEDGE_IMAGE_MIRROR:-http://deb.debian.org/debian}
IMAGE=$WORK/simedge-arm64.img
BOOT_MIB=256
ROOT_MIB=2560
FRESH=0

usage() {
    cat <<USAGE
Usage: deploy/build-image.sh [--fresh]

Builds $IMAGE, a Raspberry Pi (arm64) SD card image with simedge, from Debian $SUITE.
  --fresh   debootstrap the base root again instead of reusing the cached one
  -h        this text
Environment: SIMEDGE_IMAGE_DIR, SIMEDGE_IMAGE_SUITE, SIMEDGE_IMAGE_MIRROR.
USAGE
}

export SIMEDGE_IMAGE_STARTED=${SIMEDGE_IMAGE_STARTED:-$(date +%s)}
step() {
    echo
    echo "=== [$(($(date +%s) - SIMEDGE_IMAGE_STARTED))s] $*"
}
fail() {
    echo "build-image: FAILED: $*" >&2
    exit 1
}

# shellcheck source=deploy/arm-root.sh
. "$REPO/deploy/arm-root.sh"

# Inside the private mount namespace: the system, then simedge, in the image's root.
inside() {
    local root=$1
    enter_root "$root"
    step "Debian's kernel, the Pi's firmware files, networkd, sshd"
    # Where raspi-firmware's kernel hook finds the root: by label, on any card or disk.
    mkdir -p "$root/etc/default" "$root/boot/firmware"
    printf 'ROOTPART=LABEL=RASPIROOT\nCONSOLES="ttyS1,115200 tty0"\n' >"$root/etc/default/raspi-firmware"
    # raspi-firmware lives in non-free-firmware.
    printf 'deb %s %s main non-free-firmware\ndeb %s %s-updates main non-free-firmware\n' \
        "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
    in_root apt-get update -q >"$WORK/image-apt.log" 2>&1 || { tail -n 20 "$WORK/image-apt.log"; fail "apt-get update failed"; }
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold linux-image-arm64 raspi-firmware initramfs-tools systemd-sysv \
        systemd-timesyncd dbus openssh-server ca-certificates python3 python3-venv udev uhubctl \
        >>"$WORK/image-apt.log" 2>&1 || { tail -n 30 "$WORK/image-apt.log"; fail "apt-get install failed"; }
    find "$root/boot/firmware" -maxdepth 1 -printf "%f " | head -c 400
    echo

    step "simedge from a wheelhouse built here (arm64), as a site without the network installs it"
    rm -rf "$root/usr/local/src/simedge-wheels"
    in_root python3 -m venv /tmp/wheel-builder
    in_root /tmp/wheel-builder/bin/pip wheel -q --disable-pip-version-check \
        --wheel-dir /usr/local/src/simedge-wheels /usr/local/src/simedge >"$WORK/image-wheels.log" 2>&1 ||
        { tail -n 20 "$WORK/image-wheels.log"; fail "pip wheel failed"; }
    rm -rf "$root/usr/local/src/simedge/build" "$root/usr/local/src/simedge/"*.egg-info
    in_root /usr/local/src/simedge/deploy/install.sh --source /usr/local/src/simedge \
        --wheelhouse /usr/local/src/simedge-wheels --no-start --dashboard-user dashboard \
        >"$WORK/image-install.log" 2>&1 || { tail -n 30 "$WORK/image-install.log"; fail "install.sh failed"; }
    grep "^simedge install:" "$WORK/image-install.log"
    install -m 0644 "$REPO/deploy/image/stage-simedge/00-install/files/simedge.txt.example" \
        "$root/boot/firmware/simedge.txt.example"

    step "first-boot system settings: network, host keys, machine id, fstab"
    cat >"$root/etc/fstab" <<'FSTAB'
LABEL=RASPIROOT /              ext4 rw,noatime,errors=remount-ro 0 1
LABEL=RASPIFIRM /boot/firmware vfat rw,umask=0077                 0 2
FSTAB
    echo simedge >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tsimedge\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    printf '[Match]\nName=e*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/50-ethernet.network"
    install -m 0644 "$REPO/deploy/image/simedge-ssh-host-keys.service" "$root/etc/systemd/system/"
    in_root systemctl enable --quiet systemd-networkd.service systemd-timesyncd.service \
        simedge-ssh-host-keys.service ssh.service
    # Made at first boot, so that no two cards share them.
    rm -f "$root"/etc/ssh/ssh_host_*
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    in_root passwd --lock root >/dev/null
    in_root apt-get clean
    rm -rf "$root/tmp/wheel-builder" "$root/root/.cache" "$root/usr/src/host-pip-cert.pem"
}

main() {
    while [ $# -gt 0 ]; do
        case $1 in
            --fresh) FRESH=1; shift ;;
            --inside) shift; inside "$@"; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "build-image: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [ "$(id -u)" = 0 ] || fail "needs root (binfmt_misc, debootstrap, chroot, mounts): sudo make image"
    mkdir -p "$WORK"
    ensure_packages debootstrap qemu-user-static parted mtools dosfstools e2fsprogs
    trap cleanup_binfmt EXIT
    register_binfmt aarch64
    local base=$WORK/arm64-base root=$WORK/image-root
    step "debootstrap $SUITE arm64 (cached in $base)"
    make_base arm64 "$base"
    step "the image's root from the base, simedge's source in /usr/local/src/simedge"
    rm -rf "$root"
    cp -a "$base" "$root"
    copy_source "$root/usr/local/src/simedge"
    unshare --mount --propagation private "$0" --inside "$root"

    step "partitions from the folders: FAT boot ($BOOT_MIB MiB), ext4 root ($ROOT_MIB MiB)"
    local kernel=$WORK/image-kernel
    rm -rf "$kernel" && mkdir -p "$kernel"
    cp "$root"/boot/vmlinuz-* "$kernel/vmlinuz"
    cp "$root"/boot/initrd.img-* "$kernel/initrd.img"
    rm -f "$WORK/boot.part" "$WORK/root.part" "$IMAGE.partial"
    mkfs.vfat -n RASPIFIRM -C "$WORK/boot.part" $((BOOT_MIB * 1024)) >/dev/null
    mcopy -s -p -i "$WORK/boot.part" "$root"/boot/firmware/* ::/
    # The boot partition is mounted over this folder: its files live on the FAT only.
    find "$root/boot/firmware" -mindepth 1 -delete
    nice -n 10 mkfs.ext4 -q -L RASPIROOT -d "$root" "$WORK/root.part" "${ROOT_MIB}M"
    truncate -s $((4 + BOOT_MIB + ROOT_MIB))M "$IMAGE.partial"
    parted -s "$IMAGE.partial" mklabel msdos \
        mkpart primary fat32 4MiB $((4 + BOOT_MIB))MiB \
        mkpart primary ext4 $((4 + BOOT_MIB))MiB 100% set 1 lba on
    dd if="$WORK/boot.part" of="$IMAGE.partial" bs=1M seek=4 conv=notrunc,sparse status=none
    dd if="$WORK/root.part" of="$IMAGE.partial" bs=1M seek=$((4 + BOOT_MIB)) conv=notrunc,sparse status=none
    rm -f "$WORK/boot.part" "$WORK/root.part"
    mv "$IMAGE.partial" "$IMAGE"
    parted -s "$IMAGE" unit MiB print
    echo "build-image: DONE in $(($(date +%s) - SIMEDGE_IMAGE_STARTED))s: $IMAGE ($(du -h --apparent-size "$IMAGE" | cut -f1), $(du -h "$IMAGE" | cut -f1) used); kernel and initrd for qemu in $kernel"
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
