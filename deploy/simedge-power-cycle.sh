#!/usr/bin/env bash
# Switch the hub port one modem sits in off and on again with uhubctl: the last step of
# simedge's recovery ladder for a modem that stopped answering. Installed by install.sh
# as PREFIX/bin/simedge-power-cycle; use it in /etc/simedge/simedge.toml as
#   power_cycle_command = "/opt/simedge/bin/simedge-power-cycle {usb_path}"
# Only hubs with real per-port power switching can do this (hardware.md).
set -euo pipefail

usage() {
    cat <<USAGE
Usage: simedge-power-cycle [--off-seconds N] USB_PATH

USB_PATH is the modem's USB device path as the kernel names it, e.g. 1-1.2.3: the port
chain 1.2.3 on bus 1, so hub 1-1.2, port 3. The port is switched off for N seconds
(default 5: long enough for a SIM800's capacitors to drain) and on again.
USAGE
}

die() {
    echo "simedge-power-cycle: $*" >&2
    exit 2
}

main() {
    local off_seconds=5 usb_path=""
    while [ $# -gt 0 ]; do
        case $1 in
            -h | --help) usage; exit 0 ;;
            --off-seconds) off_seconds=${2:?--off-seconds needs a number}; shift 2 ;;
            -*) die "unknown option $1 (see --help)" ;;
            *) usb_path=$1; shift ;;
        esac
    done
    [ -n "$usb_path" ] || die "which port? give the USB path, e.g. 1-1.2.3 (see --help)"
    [[ "$off_seconds" =~ ^[0-9]+$ ]] || die "--off-seconds: expected whole seconds, got \"$off_seconds\""
    # A modem's interface path (1-1.2.3:1.2) names the same device: drop the interface.
    usb_path=${usb_path%%:*}
    [[ "$usb_path" =~ ^[0-9]+-[0-9]+(\.[0-9]+)+$ ]] ||
        die "\"$usb_path\" is not the path of a device behind a hub (expected e.g. 1-1.2.3)"
    command -v uhubctl >/dev/null || die "uhubctl is not installed (apt-get install uhubctl)"
    exec uhubctl -l "${usb_path%.*}" -p "${usb_path##*.}" -a cycle -d "$off_seconds"
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
