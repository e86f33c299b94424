#!/usr/bin/env bash
# Remove what deploy/install.sh installed. The configuration (/etc/simedge: API key,
# webhook token, slot labels) and the store (/var/lib/simedge: SMS not yet forwarded) are
# kept, with the service user that owns them, unless --purge is given. Idempotent.
set -euo pipefail

CONF_DIR=/etc/simedge
DATA_DIR=/var/lib/simedge
STATE_FILE=$CONF_DIR/install.env
SERVICE_USER=simedge
UNIT_DIR=/etc/systemd/system
PREFIX=""
DASHBOARD_USER=""
MODEMMANAGER=ignore
PURGE=0
CHANGED=0

usage() {
    cat <<USAGE
Usage: uninstall.sh [--purge] [--prefix DIR]

Stops and removes simedge: the app, its systemd units, udev rules, journald and SSH
drop-ins. Keeps $CONF_DIR and $DATA_DIR (and the $SERVICE_USER user owning them).

  --purge         also delete $CONF_DIR, $DATA_DIR (unforwarded SMS included), the
                  $SERVICE_USER user and group, and the dashboard user
  --prefix DIR    where the app was installed; default: as recorded by install.sh,
                  else /opt/simedge
  -h, --help      this text
USAGE
}

say() { echo "simedge uninstall: $*"; }
removed() {
    CHANGED=1
    say "removed $*"
}
systemd_running() { [ -d /run/systemd/system ]; }

remove_path() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        rm -rf -- "$1"
        removed "$1"
    fi
}

main() {
    local prefix_option=""
    while [ $# -gt 0 ]; do
        case $1 in
            --purge) PURGE=1; shift ;;
            --prefix) prefix_option=${2:?--prefix needs a folder}; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "simedge uninstall: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done
    [ "$(id -u)" = 0 ] || { echo "simedge uninstall: run as root" >&2; exit 1; }
    if [ -r "$STATE_FILE" ]; then
        PREFIX=$(sed -n 's/^PREFIX=//p' "$STATE_FILE")
        DASHBOARD_USER=$(sed -n 's/^DASHBOARD_USER=//p' "$STATE_FILE")
        MODEMMANAGER=$(sed -n 's/^MODEMMANAGER=//p' "$STATE_FILE")
    fi
    PREFIX=${prefix_option:-${PREFIX:-/opt/simedge}}

    local unit
    for unit in simedge.service simedge-firstboot.service; do
        if [ -e "$UNIT_DIR/$unit" ]; then
            if systemd_running; then systemctl stop "$unit" 2>/dev/null || true; fi
            systemctl disable --quiet "$unit" 2>/dev/null || true
            remove_path "$UNIT_DIR/$unit"
        fi
    done
    remove_path /etc/systemd/journald.conf.d/simedge.conf
    remove_path /etc/udev/rules.d/77-simedge-modems.rules
    remove_path /etc/udev/rules.d/78-simedge-usb-power.rules
    remove_path /etc/ssh/sshd_config.d/simedge-dashboard.conf
    if [ "$(readlink /usr/local/bin/simedge 2>/dev/null)" = "$PREFIX/venv/bin/simedge" ]; then
        remove_path /usr/local/bin/simedge
    fi
    # Only a folder install.sh marked as its own is deleted: --prefix could be mistyped.
    if [ -e "$PREFIX/.simedge-install" ]; then
        remove_path "$PREFIX"
    elif [ -e "$PREFIX" ]; then
        say "kept $PREFIX: it has no .simedge-install mark, so it was not made by install.sh"
    fi
    if [ "$MODEMMANAGER" = mask ] && [ "$(readlink "$UNIT_DIR/ModemManager.service" 2>/dev/null)" = /dev/null ]; then
        rm -f "$UNIT_DIR/ModemManager.service"
        removed "the ModemManager mask"
    fi

    if [ "$PURGE" = 1 ]; then
        remove_path "$CONF_DIR"
        remove_path "$DATA_DIR"
        if [ -n "$DASHBOARD_USER" ] && getent passwd "$DASHBOARD_USER" >/dev/null; then
            userdel --remove "$DASHBOARD_USER" 2>/dev/null || userdel "$DASHBOARD_USER"
            removed "the dashboard user $DASHBOARD_USER"
        fi
        # The tunnel's account (simedge-tunnel-setup); its key went with $CONF_DIR.
        if getent passwd simedge-tunnel >/dev/null; then
            userdel simedge-tunnel
            removed "the user simedge-tunnel"
        fi
        if getent passwd "$SERVICE_USER" >/dev/null; then
            userdel "$SERVICE_USER"
            removed "the user $SERVICE_USER"
        fi
        if getent group "$SERVICE_USER" >/dev/null; then
            groupdel "$SERVICE_USER"
            removed "the group $SERVICE_USER"
        fi
    else
        local kept
        for kept in "$CONF_DIR" "$DATA_DIR"; do
            if [ -e "$kept" ]; then say "kept $kept (--purge deletes it)"; fi
        done
    fi

    if systemd_running && [ "$CHANGED" = 1 ]; then
        systemctl daemon-reload
        udevadm control --reload-rules 2>/dev/null || true
        systemctl try-restart systemd-journald.service ssh.service 2>/dev/null || true
    fi
    if [ "$CHANGED" = 0 ]; then say "nothing to remove"; else say "done"; fi
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
