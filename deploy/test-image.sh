#!/usr/bin/env bash
# `make test-image`: the image `make image` built, booted in qemu-system-aarch64 (the
# "virt" board with the image's own Debian kernel and initrd; its disk is the whole
# image), the way a reseller's card boots:
#   1. a simedge.txt with a test API key, a base URL and a dashboard SSH key is written
#      onto a copy of the image's boot partition (mtools; nothing is mounted);
#   2. first boot: the serial console shows simedge-firstboot run; from outside the VM,
#      through forwarded loopback ports: /healthz answers 200 (simedge.service is up) and
#      the dashboard login draws over ssh -tt under tmux and q ends it; ssh -T, a command,
#      port forwarding and SFTP are refused for that login; then the VM powers off;
#   3. read from the image: simedge.txt is gone from the boot partition and
#      simedge-firstboot.log is there;
#   4. a second boot: simedge comes up again and simedge-firstboot does not run.
# No network is given to the VM beyond the forwarded ports (restrict=on).
# Needs the image ($WORK/simedge-arm64.img); many minutes under emulation.
set -euo pipefail

WORK=${SIMEDGE_IMAGE_DIR:-/var/cache/simedge-test}
IMAGE=$WORK/simedge-arm64.img
KERNEL=$WORK/image-kernel
BOOT_OFFSET=4M # the boot partition's start, as build-image.sh lays it out
BOOT_WAIT=900  # seconds a boot may take to bring simedge up under emulation

usage() {
    cat <<USAGE
Usage: deploy/test-image.sh

Boots a copy of $IMAGE (made by make image) twice in qemu-system-aarch64 and checks
first boot, simedge.service through /healthz, the SSH dashboard login and the second boot.
USAGE
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/arm-root.sh
. "$REPO/deploy/arm-root.sh"

export SIMEDGE_TEST_IMAGE_STARTED=${SIMEDGE_TEST_IMAGE_STARTED:-$(date +%s)}
step() {
    echo
    echo "=== [$(($(date +%s) - SIMEDGE_TEST_IMAGE_STARTED))s] $*"
}
fail() {
    echo "test-image: FAILED: $*" >&2
    exit 1
}

QEMU_PID=""
TMUX_SOCKET=simedge-test-image-$$
# shellcheck disable=SC2317  # run by the EXIT trap
stop_everything() {
    end_tmux "$TMUX_SOCKET"
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID"
        wait "$QEMU_PID" 2>/dev/null || true
    fi
}

# Boots the test disk; the console goes to LOG. Sets QEMU_PID.
boot() {
    local log=$1
    : >"$log"
    nice -n 10 qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
        -kernel "$KERNEL/vmlinuz" -initrd "$KERNEL/initrd.img" \
        -append "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0" \
        -drive "file=$DISK,format=raw,if=virtio" \
        -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$HEALTH_PORT-:8085,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22" \
        -device virtio-net-pci,netdev=net0 \
        -monitor "unix:$WORK/qemu-monitor.sock,server,nowait" \
        -display none -serial "file:$log" -no-reboot &
    QEMU_PID=$!
}

wait_healthy() {
    local started=$SECONDS
    curl -sS --retry $((BOOT_WAIT / 5)) --retry-all-errors --retry-delay 5 --max-time 10 \
        -o "$WORK/test-image-healthz.json" -w '%{http_code}\n' "http://127.0.0.1:$HEALTH_PORT/healthz" |
        grep -qx 200 || fail "/healthz never answered 200 (console: $1)"
    echo "ok  /healthz 200 through the forwarded port, $((SECONDS - started))s after power on: $(head -c 200 "$WORK/test-image-healthz.json")"
}

# ACPI-less "virt" board: the power button is a GPIO key that systemd-logind acts on.
# LOG is the boot's console.
power_off() {
    local started=$SECONDS
    python3 -c 'import socket, sys
monitor = socket.socket(socket.AF_UNIX)
monitor.connect(sys.argv[1])
monitor.sendall(b"system_powerdown\n")' "$WORK/qemu-monitor.sock"
    if ! timeout 180 tail --pid="$QEMU_PID" -f /dev/null; then
        # The EXIT trap stops qemu; what is on the disk now may be half written.
        fail "no clean power-off within 180s of the power button (console: $1)"
    fi
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
    grep -aq "reboot: Power down" "$1" || fail "qemu ended without the kernel's power-down (console: $1)"
    echo "ok  powered off in $((SECONDS - started))s: the button, systemd's shutdown, \"reboot: Power down\""
}

main() {
    case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) echo "test-image: unknown option $1" >&2; exit 2 ;; esac
    if [ ! -s "$IMAGE" ] || [ ! -s "$KERNEL/vmlinuz" ]; then fail "no image: make image first ($IMAGE)"; fi
    ensure_packages qemu-system-arm mtools tmux curl
    trap stop_everything EXIT
    read -r HEALTH_PORT SSH_PORT < <(python3 -c '
import socket
probes = [socket.socket() for _ in range(2)]
for probe in probes:
    probe.bind(("127.0.0.1", 0))
print(*(probe.getsockname()[1] for probe in probes))')
    DISK=$WORK/test-image.img

    step "a copy of the image, simedge.txt written onto its boot partition"
    cp --sparse=always "$IMAGE" "$DISK"
    [ -e "$WORK/dashboard_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C dashboard@test-image -f "$WORK/dashboard_ed25519"
    {
        echo "API_KEY=test-api-key-0123456789"
        # Nothing listens there: /healthz speaks of the agent, not of the uplink.
        echo "BASE_URL=http://127.0.0.1:9/api/resellers"
        echo "DASHBOARD_SSH_KEY=$(cat "$WORK/dashboard_ed25519.pub")"
    } >"$WORK/simedge.txt"
    mcopy -o -i "$DISK@@$BOOT_OFFSET" "$WORK/simedge.txt" ::simedge.txt
    mdir -b -i "$DISK@@$BOOT_OFFSET" :: | tr '\n' ' '
    echo

    step "first boot (console: $WORK/console-1.log)"
    boot "$WORK/console-1.log"
    wait_healthy "$WORK/console-1.log"
    grep -a "simedge-firstboot\|simedge first boot\|settings from the boot partition" "$WORK/console-1.log" | head -n 15 ||
        fail "the console does not show simedge-firstboot"

    step "the dashboard login over SSH (forwarded port), ssh -tt under tmux at 80x24"
    dashboard_ssh_options "$WORK/dashboard_ed25519"
    dashboard_login "$TMUX_SOCKET" "$WORK/test-image-dashboard.txt" 300 ssh -p "$SSH_PORT" "${DASHBOARD_SSH_OPTIONS[@]}"
    step "a terminal-less session, a command, port forwarding and SFTP are refused for the dashboard user"
    dashboard_refusals "$SSH_PORT" 127.0.0.1:22 "$WORK/test-image"
    power_off "$WORK/console-1.log"

    step "the boot partition after first boot"
    local listing
    listing=$(mdir -b -i "$DISK@@$BOOT_OFFSET" ::)
    if grep -q "simedge.txt$" <<<"$listing"; then fail "simedge.txt is still on the boot partition"; fi
    echo "ok  simedge.txt is gone"
    mtype -i "$DISK@@$BOOT_OFFSET" ::simedge-firstboot.log | tail -n 8
    if mtype -i "$DISK@@$BOOT_OFFSET" ::simedge-firstboot.log | grep -q "test-api-key"; then
        fail "simedge-firstboot.log holds the API key"
    fi

    step "second boot (console: $WORK/console-2.log): simedge up, first boot not run again"
    boot "$WORK/console-2.log"
    wait_healthy "$WORK/console-2.log"
    if grep -a "simedge-firstboot\|settings from the boot partition" "$WORK/console-2.log"; then
        fail "simedge-firstboot ran again on the second boot"
    fi
    echo "ok  no first boot on the second boot"
    power_off "$WORK/console-2.log"
    echo
    echo "test-image: PASSED in $(($(date +%s) - SIMEDGE_TEST_IMAGE_STARTED))s"
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
