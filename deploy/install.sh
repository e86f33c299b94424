#!/usr/bin/env bash
# Install simedge on Raspberry Pi OS or Debian 12/13 from a source checkout or tarball:
# system packages, the service user, the app in a venv, configuration, systemd, udev,
# journald, and optionally the SSH dashboard login. Idempotent: a second run with the
# same options and source changes nothing and says "no changes". In a chroot or an image
# build (no running systemd) services are enabled, never started.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(dirname "$SCRIPT_DIR")
PREFIX=/opt/simedge
START=1
DASHBOARD_USER=""
DASHBOARD_KEY=""
MODEMMANAGER=ignore
RELAY=""
RELAY_ARGS=()
WHEELHOUSE=""

SERVICE_USER=simedge
CONF_DIR=/etc/simedge
DATA_DIR=/var/lib/simedge
STATE_FILE=$CONF_DIR/install.env
UNIT_DIR=/etc/systemd/system
CHANGED=0
UNITS_CHANGED=0
UDEV_CHANGED=0
JOURNALD_CHANGED=0
SSH_CHANGED=0

usage() {
    cat <<USAGE
Usage: install.sh [options]

Installs simedge from the source tree (default: the checkout this script is in).

  --source DIR              source tree to install (holds pyproject.toml); default $SOURCE
  --prefix DIR              where the app lives (DIR/venv); default $PREFIX
  --no-start                enable the service but do not start or restart it
  --dashboard-user NAME     create the SSH login NAME that opens the dashboard only
  --dashboard-key FILE      authorized_keys line(s) for that login (public keys)
  --wheelhouse DIR          install simedge and its Python dependencies from the wheels
                            in DIR only, without the network (an image, or a site whose
                            only way out is OnlineSim's API); DIR is made on a machine of
                            the same architecture with: pip wheel --wheel-dir DIR SOURCE
  --modemmanager MODE       ignore: ModemManager stays, udev tells it to skip the modems
                            (default); mask: ModemManager is stopped and masked
  --relay HOST[:SSH_PORT]   a site behind NAT: keep a tunnel open to this relay
                            (deploy/relay/, hardware.md "Reaching the webhook"); needs
  --relay-port PORT         the relay's loopback port for this site; optional:
  --relay-site NAME         the site's name in the relay's URLs (default: the hostname)
  --relay-host-key KEY      the relay's SSH host key, or a file holding it
  -h, --help                this text

A later run without options (e.g. from a newer checkout, to upgrade) keeps the prefix,
dashboard user and ModemManager choice of the previous one ($STATE_FILE).

Afterwards: put the API key in $CONF_DIR/api_key (mode 0600, owner $SERVICE_USER),
set [onlinesim] base_url in $CONF_DIR/simedge.toml, then: systemctl start simedge.
Or leave simedge.txt on the boot partition (deploy/image/README.md).
USAGE
}

say() { echo "simedge install: $*"; }
die() {
    echo "simedge install: error: $*" >&2
    exit 1
}
changed() {
    CHANGED=1
    say "$*"
}

systemd_running() { [ -d /run/systemd/system ]; }

# A re-run without options (an upgrade from a newer checkout) keeps the earlier choices.
load_previous_choices() {
    [ -r "$STATE_FILE" ] || return 0
    local value
    value=$(sed -n 's/^PREFIX=//p' "$STATE_FILE")
    PREFIX=${value:-$PREFIX}
    DASHBOARD_USER=$(sed -n 's/^DASHBOARD_USER=//p' "$STATE_FILE")
    value=$(sed -n 's/^MODEMMANAGER=//p' "$STATE_FILE")
    MODEMMANAGER=${value:-$MODEMMANAGER}
}

parse_args() {
    load_previous_choices
    while [ $# -gt 0 ]; do
        case $1 in
            --source) SOURCE=${2:?--source needs a folder}; shift 2 ;;
            --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
            --no-start) START=0; shift ;;
            --dashboard-user) DASHBOARD_USER=${2:?--dashboard-user needs a name}; shift 2 ;;
            --dashboard-key) DASHBOARD_KEY=${2:?--dashboard-key needs a file}; shift 2 ;;
            --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
            --modemmanager) MODEMMANAGER=${2:?--modemmanager needs ignore or mask}; shift 2 ;;
            --relay) RELAY=${2:?--relay needs a host}; shift 2 ;;
            --relay-port | --relay-host-key)
                RELAY_ARGS+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
            --relay-site) RELAY_ARGS+=(--site "${2:?--relay-site needs a name}"); shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "simedge install: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done
    case $MODEMMANAGER in ignore | mask) ;; *) die "--modemmanager: expected ignore or mask, got \"$MODEMMANAGER\"" ;; esac
    [[ "$PREFIX" =~ ^/[A-Za-z0-9._/-]+$ ]] ||
        die "--prefix: expected an absolute path of letters, digits and . _ - /, got \"$PREFIX\""
    PREFIX=${PREFIX%/}
    SOURCE=$(cd "$SOURCE" 2>/dev/null && pwd) || die "--source: no such folder"
    if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -d "$SOURCE/agent" ]; then
        die "--source: $SOURCE is not a simedge source tree (no pyproject.toml and agent/)"
    fi
    if [ -n "$WHEELHOUSE" ]; then
        WHEELHOUSE=$(cd "$WHEELHOUSE" 2>/dev/null && pwd) || die "--wheelhouse: no such folder"
        compgen -G "$WHEELHOUSE/simedge-*.whl" >/dev/null ||
            die "--wheelhouse: $WHEELHOUSE holds no simedge-*.whl (make it with: pip wheel --wheel-dir DIR SOURCE)"
    fi
    if [ -n "$DASHBOARD_USER" ] && [[ ! "$DASHBOARD_USER" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]]; then
        die "--dashboard-user: \"$DASHBOARD_USER\" is not a valid user name"
    fi
    if [ -n "$DASHBOARD_KEY" ]; then
        [ -n "$DASHBOARD_USER" ] || die "--dashboard-key needs --dashboard-user"
        [ -r "$DASHBOARD_KEY" ] || die "--dashboard-key: cannot read $DASHBOARD_KEY"
    fi
    if [ ${#RELAY_ARGS[@]} -gt 0 ] && [ -z "$RELAY" ]; then die "--relay-port, --relay-site and --relay-host-key need --relay"; fi
    if [ -n "$RELAY" ] && [[ " ${RELAY_ARGS[*]} " != *" --relay-port "* ]]; then die "--relay needs --relay-port"; fi
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
}

check_os() {
    local id="" version=""
    if [ -r /etc/os-release ]; then
        id=$(sed -n 's/^ID=//p' /etc/os-release | tr -d '"')
        version=$(sed -n 's/^VERSION_ID=//p' /etc/os-release | tr -d '"')
    fi
    case "$id:$version" in
        debian:12 | debian:13 | raspbian:12 | raspbian:13) ;;
        *) say "warning: made for Raspberry Pi OS / Debian 12 or 13, this is ${id:-unknown} ${version:-?}" ;;
    esac
}

# Write stdin to DEST when its content, mode or owner differ; report the change.
put_file() {
    local dest=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        if [ "$(stat -c '%a %U:%G' "$dest")" != "${mode#0} $owner" ]; then
            chmod "$mode" "$dest"
            chown "$owner" "$dest"
            changed "fixed mode/owner of $dest"
        fi
        return 1
    fi
    install -D -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
    rm -f "$tmp"
    changed "wrote $dest"
}

render() {
    sed -e "s#/opt/simedge#$PREFIX#g" -e "s#@PREFIX@#$PREFIX#g" \
        -e "s#@DASHBOARD_USER@#$DASHBOARD_USER#g" "$1"
}

package_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# regex, the one C extension simedge needs, has wheels on PyPI for amd64 and arm64 only;
# on 32-bit ARM pip builds it from source, unless /etc/pip.conf names piwheels (as
# Raspberry Pi OS's does), which has armv7 wheels.
needs_compiler() {
    case $(dpkg --print-architecture) in amd64 | arm64) return 1 ;; esac
    ! grep -qs piwheels /etc/pip.conf
}

install_packages() {
    local wanted=(python3 python3-venv ca-certificates systemd udev uhubctl) missing=() pkg
    if [ -n "$DASHBOARD_USER" ]; then wanted+=(openssh-server); fi
    if needs_compiler; then wanted+=(gcc libc6-dev python3-dev); fi
    if [ -n "$RELAY" ]; then wanted+=(openssh-client); fi
    for pkg in "${wanted[@]}"; do
        package_installed "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
        changed "installed ${missing[*]}"
    fi
    # brltty claims CH340 bridges (SIM800 sticks, modem pools) as braille displays.
    if package_installed brltty; then
        apt-get purge -y -q brltty
        changed "removed brltty (it grabs CH340 USB-serial bridges)"
    fi
}

ensure_users() {
    if ! getent group "$SERVICE_USER" >/dev/null; then
        groupadd --system "$SERVICE_USER"
        changed "created group $SERVICE_USER"
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --gid "$SERVICE_USER" --groups dialout --home-dir "$DATA_DIR" \
            --no-create-home --shell /usr/sbin/nologin --comment "simedge agent" "$SERVICE_USER"
        changed "created user $SERVICE_USER (groups $SERVICE_USER, dialout)"
    elif [[ " $(id -nG "$SERVICE_USER") " != *" dialout "* ]]; then
        usermod -aG dialout "$SERVICE_USER"
        changed "added $SERVICE_USER to dialout"
    fi
    install_dir "$DATA_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
}

install_dir() {
    local dir=$1 mode=$2 owner=$3
    if [ ! -d "$dir" ]; then
        install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"
        changed "created $dir"
    elif [ "$(stat -c '%a %U:%G' "$dir")" != "${mode#0} $owner" ]; then
        chmod "$mode" "$dir"
        chown "$owner" "$dir"
        changed "fixed mode/owner of $dir"
    fi
}

# The files that make the installed package; their digest decides whether pip runs.
source_digest() {
    (
        cd "$SOURCE"
        find pyproject.toml README.md agent tui -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}

install_app() {
    local digest stamp=$PREFIX/.source-sha256 build
    install_dir "$PREFIX" 0755 root:root
    if [ -x "$PREFIX/venv/bin/python" ] && ! "$PREFIX/venv/bin/python" -c '' 2>/dev/null; then
        # The system Python changed under the venv (e.g. Debian 12 -> 13): build it again.
        rm -rf "$PREFIX/venv" "$stamp"
    fi
    if [ ! -x "$PREFIX/venv/bin/python" ]; then
        python3 -m venv "$PREFIX/venv"
        changed "created the venv $PREFIX/venv"
    fi
    digest=$(source_digest)
    # From a wheelhouse, its wheels are part of what was installed: new wheels, new install.
    if [ -n "$WHEELHOUSE" ]; then digest="$digest wheels:$(cd "$WHEELHOUSE" && sha256sum -- *.whl | sha256sum | cut -d' ' -f1)"; fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        if [ -n "$WHEELHOUSE" ]; then
            # Everything from the folder, whatever the venv held: nothing is fetched.
            say "installing the simedge package into $PREFIX/venv from the wheels in $WHEELHOUSE (no network)"
            "$PREFIX/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --no-index \
                --find-links "$WHEELHOUSE" --upgrade --force-reinstall simedge
        else
            # pip builds in the tree it is given: build from a copy so that a read-only or
            # shared checkout stays untouched.
            build=$(mktemp -d)
            tar -C "$SOURCE" --exclude=__pycache__ -cf - pyproject.toml README.md agent tui | tar -C "$build" -xf -
            say "installing the simedge package into $PREFIX/venv (from PyPI or piwheels: needs the network)"
            "$PREFIX/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$build"
            rm -rf "$build"
        fi
        echo "$digest" >"$stamp"
        changed "installed $("$PREFIX/venv/bin/simedge" --version 2>/dev/null || echo "simedge from $SOURCE")"
    fi
    [ -e "$PREFIX/.simedge-install" ] || : >"$PREFIX/.simedge-install"
    render "$SOURCE/deploy/image/firstboot/simedge-firstboot.sh" | put_file "$PREFIX/bin/simedge-firstboot" 0755 root:root || true
    put_file "$PREFIX/bin/simedge-power-cycle" 0755 root:root <"$SOURCE/deploy/simedge-power-cycle.sh" || true
    put_file "$PREFIX/bin/simedge-tunnel-setup" 0755 root:root <"$SOURCE/deploy/tunnel/simedge-tunnel-setup.sh" || true
    local doc
    for doc in README.md hardware.md deploy/config.example.toml; do
        if [ -f "$SOURCE/$doc" ]; then
            put_file "$PREFIX/share/doc/$(basename "$doc")" 0644 root:root <"$SOURCE/$doc" || true
        fi
    done
    if [ "$(readlink /usr/local/bin/simedge 2>/dev/null)" != "$PREFIX/venv/bin/simedge" ]; then
        ln -sfn "$PREFIX/venv/bin/simedge" /usr/local/bin/simedge
        changed "linked /usr/local/bin/simedge"
    fi
}

write_secret_if_missing() {
    local path=$1 what=$2 value
    if [ ! -e "$path" ]; then
        value=$("$PREFIX/venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
        (umask 077 && printf '%s\n' "$value" >"$path")
        chown "$SERVICE_USER:$SERVICE_USER" "$path"
        changed "generated $what in $path"
    fi
    if [ "$(stat -c '%a %U:%G' "$path")" != "600 $SERVICE_USER:$SERVICE_USER" ]; then
        chown "$SERVICE_USER:$SERVICE_USER" "$path"
        chmod 0600 "$path"
        changed "fixed mode/owner of $path (0600 $SERVICE_USER)"
    fi
}

install_config() {
    install_dir "$CONF_DIR" 0750 "root:$SERVICE_USER"
    if [ ! -e "$CONF_DIR/simedge.toml" ]; then
        install -m 0640 -o root -g "$SERVICE_USER" "$SOURCE/deploy/config.example.toml" "$CONF_DIR/simedge.toml"
        changed "wrote $CONF_DIR/simedge.toml from deploy/config.example.toml"
    fi
    write_secret_if_missing "$CONF_DIR/webhook_token" "a webhook token"
    if [ -e "$CONF_DIR/api_key" ]; then
        write_secret_if_missing "$CONF_DIR/api_key" "the API key"
    fi
    printf 'PREFIX=%s\nDASHBOARD_USER=%s\nMODEMMANAGER=%s\n' "$PREFIX" "$DASHBOARD_USER" "$MODEMMANAGER" |
        put_file "$STATE_FILE" 0644 root:root || true
}

install_system_files() {
    if render "$SOURCE/deploy/systemd/simedge.service" | put_file "$UNIT_DIR/simedge.service" 0644 root:root; then
        UNITS_CHANGED=1
    fi
    if render "$SOURCE/deploy/image/firstboot/simedge-firstboot.service" |
        put_file "$UNIT_DIR/simedge-firstboot.service" 0644 root:root; then
        UNITS_CHANGED=1
    fi
    # Installed everywhere, enabled only by simedge-tunnel-setup (a site behind NAT).
    if render "$SOURCE/deploy/tunnel/simedge-tunnel.service" | put_file "$UNIT_DIR/simedge-tunnel.service" 0644 root:root; then
        UNITS_CHANGED=1
    fi
    if put_file /etc/systemd/journald.conf.d/simedge.conf 0644 root:root <"$SOURCE/deploy/journald/simedge.conf"; then
        JOURNALD_CHANGED=1
    fi
    local rules installed
    for rules in "$SOURCE"/deploy/udev/*.rules; do
        installed=/etc/udev/rules.d/${rules##*/}
        if put_file "$installed" 0644 root:root <"$rules"; then
            UDEV_CHANGED=1
        fi
    done
}

install_dashboard_user() {
    [ -n "$DASHBOARD_USER" ] || return 0
    if ! getent passwd "$DASHBOARD_USER" >/dev/null; then
        # A real shell: sshd runs ForceCommand through the user's shell.
        useradd --create-home --shell /bin/sh --groups "$SERVICE_USER" --comment "simedge dashboard" "$DASHBOARD_USER"
        passwd --lock "$DASHBOARD_USER" >/dev/null
        changed "created the dashboard user $DASHBOARD_USER (SSH keys only)"
    elif [[ " $(id -nG "$DASHBOARD_USER") " != *" $SERVICE_USER "* ]]; then
        usermod -aG "$SERVICE_USER" "$DASHBOARD_USER"
        changed "added $DASHBOARD_USER to $SERVICE_USER (the control socket's group)"
    fi
    if [ -n "$DASHBOARD_KEY" ]; then
        # Added to the keys already there (simedge-firstboot and Ansible add theirs too).
        local home keys key
        home=$(getent passwd "$DASHBOARD_USER" | cut -d: -f6)
        keys=$home/.ssh/authorized_keys
        install_dir "$home/.ssh" 0700 "$DASHBOARD_USER:$DASHBOARD_USER"
        [ -e "$keys" ] || install -m 0600 -o "$DASHBOARD_USER" -g "$DASHBOARD_USER" /dev/null "$keys"
        while IFS= read -r key || [ -n "$key" ]; do
            [[ "$key" =~ ^[[:space:]]*(#|$) ]] && continue
            if ! grep -qxF "$key" "$keys"; then
                printf '%s\n' "$key" >>"$keys"
                changed "added a dashboard SSH key to $keys"
            fi
        done <"$DASHBOARD_KEY"
    fi
    local dropin=/etc/ssh/sshd_config.d/simedge-dashboard.conf
    if render "$SOURCE/deploy/ssh/simedge-dashboard.conf" | put_file "$dropin" 0644 root:root; then
        SSH_CHANGED=1
        # sshd -t wants its privilege separation folder, which only a running ssh.service makes.
        install -d -m 0755 /run/sshd
        local verdict
        if ! verdict=$(sshd -t 2>&1); then
            rm -f "$dropin"
            die "sshd rejects $dropin, removed it: $verdict"
        fi
    fi
    systemctl enable --quiet ssh.service 2>/dev/null || true
}

configure_modemmanager() {
    local masked=0
    if [ "$(readlink "$UNIT_DIR/ModemManager.service" 2>/dev/null)" = /dev/null ]; then masked=1; fi
    if [ "$MODEMMANAGER" = mask ] && [ "$masked" = 0 ]; then
        systemctl mask ModemManager.service >/dev/null 2>&1 || ln -sfn /dev/null "$UNIT_DIR/ModemManager.service"
        if systemd_running; then systemctl stop ModemManager.service 2>/dev/null || true; fi
        changed "masked ModemManager"
    elif [ "$MODEMMANAGER" = ignore ] && [ "$masked" = 1 ]; then
        rm -f "$UNIT_DIR/ModemManager.service"
        changed "unmasked ModemManager (the udev rules keep it away from the modems)"
    fi
}

enable_and_start() {
    local unit
    for unit in simedge.service simedge-firstboot.service; do
        if [ "$(systemctl is-enabled "$unit" 2>/dev/null)" != enabled ]; then
            systemctl enable --quiet "$unit"
            changed "enabled $unit"
        fi
    done
    if ! systemd_running; then
        say "systemd is not running here (chroot or image build): services enabled, not started"
        return
    fi
    if [ "$UNITS_CHANGED" = 1 ]; then systemctl daemon-reload; fi
    if [ "$UDEV_CHANGED" = 1 ]; then
        udevadm control --reload-rules
        udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb
    fi
    if [ "$JOURNALD_CHANGED" = 1 ]; then systemctl restart systemd-journald.service; fi
    if [ "$SSH_CHANGED" = 1 ]; then systemctl reload-or-restart ssh.service; fi
    if [ "$START" = 0 ]; then
        say "--no-start: not starting simedge"
        return
    fi
    local verdict
    if ! verdict=$(runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/simedge" run --check-config \
        --config "$CONF_DIR/simedge.toml" 2>&1); then
        say "not starting simedge yet: $verdict"
        return
    fi
    if [ "$CHANGED" = 1 ]; then
        systemctl restart simedge.service
        say "restarted simedge"
    elif ! systemctl is-active --quiet simedge.service; then
        systemctl start simedge.service
        changed "started simedge"
    fi
}

# A site behind NAT (--relay): the tunnel to the relay, set up by simedge-tunnel-setup,
# which first boot and Ansible run too. Every run: it keeps what it made before.
install_tunnel() {
    [ -n "$RELAY" ] || return 0
    if [ "$UNITS_CHANGED" = 1 ] && systemd_running; then systemctl daemon-reload; fi
    local systemd_args=()
    if [ "$START" = 0 ]; then systemd_args=(--no-systemd); fi
    "$PREFIX/bin/simedge-tunnel-setup" --relay "$RELAY" "${RELAY_ARGS[@]}" "${systemd_args[@]}"
}

next_steps() {
    if [ ! -e "$CONF_DIR/api_key" ]; then
        say "next: write the API key:  sudo install -m 0600 -o $SERVICE_USER -g $SERVICE_USER /dev/stdin $CONF_DIR/api_key"
        say "      (paste the key, then Ctrl-D), set [onlinesim] base_url in $CONF_DIR/simedge.toml,"
        say "      check with:  sudo -u $SERVICE_USER simedge run --check-config, then: sudo systemctl start simedge"
    fi
    if [ "$CHANGED" = 0 ]; then
        say "no changes"
    else
        say "done"
    fi
}

main() {
    parse_args "$@"
    check_os
    install_packages
    ensure_users
    install_app
    install_config
    install_system_files
    install_dashboard_user
    configure_modemmanager
    enable_and_start
    install_tunnel
    next_steps
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
