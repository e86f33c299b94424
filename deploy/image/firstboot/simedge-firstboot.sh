#!/usr/bin/env bash
# Apply the site settings a reseller left on the SD card's boot partition: the API key,
# the webhook token, the OnlineSim base URL, Wi-Fi, the hostname, the dashboard's SSH key,
# or a whole simedge.toml. Runs at boot (simedge-firstboot.service, before simedge) when
# one of the files is there, and by hand with a file argument. Settings are data: read
# line by line (never sourced or evaluated), the base URL written through the agent's own
# configuration code (escaped as TOML, checked against the schema). The boot partition is
# a FAT file system any computer can read: its files are overwritten and removed as soon
# as they are read, and again on any exit (trap EXIT), whatever failed in between.
set -euo pipefail

BOOT_DIR=/boot/firmware
[ -d "$BOOT_DIR" ] || BOOT_DIR=/boot
ROOT=""  # --root: the system to change lives under this folder (tests, image builds)
SERVICE_USER=simedge
PREFIX=/opt/simedge
DASHBOARD_USER=""
BOOT_FILES=()  # files on the boot partition to wipe on exit

usage() {
    cat <<USAGE
Usage: simedge-firstboot [--boot-dir DIR] [--root DIR] [SETTINGS_FILE]

Applies DIR/simedge.txt and DIR/simedge.toml (DIR: /boot/firmware, or /boot on older
systems), or the given settings file. The boot partition's files are overwritten and
deleted once read, whatever happens next; DIR/simedge-firstboot.log (no secrets in it)
tells what was done. --root DIR changes the system under DIR (/etc/... is DIR/etc/...).

simedge.txt holds KEY=value lines (not a shell script; quotes around values are optional;
a value is taken verbatim, & # \ quotes included, and cannot span lines):
  API_KEY=...            the OnlineSim reseller API key            -> $CONF_DIR/api_key
  WEBHOOK_TOKEN=...      the webhook secret, 16+ characters;      -> $CONF_DIR/webhook_token
                         one is generated when none exists yet
  BASE_URL=https://...   the API base URL from OnlineSim partner support
  WIFI_SSID=... WIFI_PASSWORD=... WIFI_COUNTRY=DE   Wi-Fi through NetworkManager
  HOSTNAME=site-07       the machine's name
  DASHBOARD_SSH_KEY=ssh-ed25519 AAAA... someone    allowed to open the dashboard over SSH
  RELAY=relay.example.net  RELAY_PORT=20001   a site behind NAT: keep a tunnel to the relay;
  RELAY_HOST_KEY=ssh-ed25519 AAAA...          with the relay's host key (required), and
  RELAY_SITE=site-07                          the site's name there (default: hostname)
simedge.toml, when present, replaces $CONF_DIR/simedge.toml if it passes --check-config.
USAGE
}

set_root() {
    ROOT=$1
    CONF_DIR=$ROOT/etc/simedge
    STATE_FILE=$CONF_DIR/install.env
    NM_DIR=$ROOT/etc/NetworkManager/system-connections
}
set_root ""

log_lines=()
say() {
    echo "simedge-firstboot: $*"
    log_lines+=("$*")
}

# KEY=value -> the global associative array SETTINGS; values are never evaluated.
declare -A SETTINGS=()
read_settings() {
    local file=$1 line key value number=0
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        line=${line%$'\r'}
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        if [[ ! "$line" =~ ^[[:space:]]*([A-Z_]+)[[:space:]]*=(.*)$ ]]; then
            say "$file:$number: ignored, expected KEY=value"
            continue
        fi
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        value="${value#"${value%%[![:space:]]*}"}"
        value="${value%"${value##*[![:space:]]}"}"
        if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        case $key in
            API_KEY | WEBHOOK_TOKEN | BASE_URL | WIFI_SSID | WIFI_PASSWORD | WIFI_COUNTRY | HOSTNAME | DASHBOARD_SSH_KEY)
                SETTINGS[$key]=$value ;;
            RELAY | RELAY_PORT | RELAY_SITE | RELAY_HOST_KEY) SETTINGS[$key]=$value ;;
            *) say "$file:$number: unknown setting $key, ignored" ;;
        esac
    done <"$file"
}

write_secret() {
    local path=$1 value=$2
    install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
    (umask 077 && printf '%s\n' "$value" >"$path.new")
    chown "$SERVICE_USER:$SERVICE_USER" "$path.new"
    chmod 0600 "$path.new"
    mv -f "$path.new" "$path"
}

set_base_url() {
    local url=$1 result
    # On stdin, so no quoting or pattern of ours can change a byte of it; the agent checks
    # it against its schema and writes it as a TOML string.
    if result=$(printf '%s' "$url" | "$PREFIX/venv/bin/simedge" config set onlinesim.base_url \
        --config "$CONF_DIR/simedge.toml" 2>&1); then
        say "[onlinesim] base_url set to $url"
    else
        say "BASE_URL not applied: $result"
    fi
}

# A value for a NetworkManager keyfile (GKeyFile): backslashes doubled, a leading space
# and tabs escaped, so that the SSID and password are read back as they were written.
keyfile_value() {
    local value=${1//\\/\\\\}
    value=${value//$'\t'/\\t}
    [[ "$value" == " "* ]] && value="\\s${value:1}"
    printf '%s' "$value"
}

set_wifi() {
    local ssid=$1 password=$2 country=$3 file=$NM_DIR/simedge-wifi.nmconnection
    if [ -n "$country" ]; then
        if command -v raspi-config >/dev/null; then
            raspi-config nonint do_wifi_country "$country" || say "could not set the Wi-Fi country $country"
        elif command -v iw >/dev/null; then
            iw reg set "$country" || true
        fi
    fi
    if command -v rfkill >/dev/null; then rfkill unblock wifi || true; fi
    install -d -m 0755 "$NM_DIR"
    (
        umask 077
        {
            printf '[connection]\nid=simedge-wifi\ntype=wifi\nautoconnect=true\n\n'
            printf '[wifi]\nmode=infrastructure\nssid=%s\n\n' "$(keyfile_value "$ssid")"
            if [ -n "$password" ]; then
                printf '[wifi-security]\nkey-mgmt=wpa-psk\npsk=%s\n\n' "$(keyfile_value "$password")"
            fi
            printf '[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n'
        } >"$file"
    )
    if command -v nmcli >/dev/null && nmcli -t general status >/dev/null 2>&1; then
        nmcli connection reload || true
    fi
    say "Wi-Fi network \"$ssid\" configured${country:+ (country $country)}"
}

set_hostname() {
    local name=$1
    if [[ ! "$name" =~ ^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$ ]]; then
        say "HOSTNAME ignored: letters, digits and inner hyphens only, up to 63 characters"
        return
    fi
    printf '%s\n' "$name" >"$ROOT/etc/hostname"
    # $name is letters, digits and hyphens (checked above): safe in the sed expression.
    if grep -q '^127\.0\.1\.1' "$ROOT/etc/hosts"; then
        sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$name/" "$ROOT/etc/hosts"
    else
        printf '127.0.1.1\t%s\n' "$name" >>"$ROOT/etc/hosts"
    fi
    [ -n "$ROOT" ] || hostname "$name" 2>/dev/null || true
    say "hostname set to $name"
}

add_dashboard_key() {
    local key=$1 home
    if [ -z "$DASHBOARD_USER" ]; then
        say "DASHBOARD_SSH_KEY ignored: installed without --dashboard-user"
        return
    fi
    home=$ROOT$(getent passwd "$DASHBOARD_USER" | cut -d: -f6)
    install -d -m 0700 -o "$DASHBOARD_USER" -g "$DASHBOARD_USER" "$home/.ssh"
    touch "$home/.ssh/authorized_keys"
    grep -qxF "$key" "$home/.ssh/authorized_keys" || printf '%s\n' "$key" >>"$home/.ssh/authorized_keys"
    chown "$DASHBOARD_USER:$DASHBOARD_USER" "$home/.ssh/authorized_keys"
    chmod 0600 "$home/.ssh/authorized_keys"
    say "SSH key added for the dashboard user $DASHBOARD_USER"
}

# --- the tunnel to a relay (issue 21): RELAY, RELAY_PORT, RELAY_SITE, RELAY_HOST_KEY ---
# simedge-tunnel-setup does the work (install.sh --relay runs the same). The relay's host
# key must come with it: this runs before the network is up, and a key fetched unseen
# at first use would pin whatever answers.
setup_relay_tunnel() {
    if [ -z "${SETTINGS[RELAY_HOST_KEY]:-}" ]; then
        say "RELAY ignored: give RELAY_HOST_KEY too (the relay's /etc/ssh/ssh_host_ed25519_key.pub)"
        return
    fi
    local args=(--relay "${SETTINGS[RELAY]}" --relay-port "${SETTINGS[RELAY_PORT]:-}") output
    if [ -n "${SETTINGS[RELAY_SITE]:-}" ]; then args+=(--site "${SETTINGS[RELAY_SITE]}"); fi
    args+=(--relay-host-key "${SETTINGS[RELAY_HOST_KEY]}")
    if output=$("$PREFIX/bin/simedge-tunnel-setup" "${args[@]}" 2>&1); then
        say "tunnel to the relay ${SETTINGS[RELAY]} set up:"
    else
        say "tunnel to the relay NOT set up:"
    fi
    while IFS= read -r line; do say "  $line"; done <<<"$output"
}
# --- end of the tunnel block ---

check_config() {
    runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/simedge" run --check-config --config "$1" 2>&1
}

replace_config() {
    local candidate=$1 target=$CONF_DIR/simedge.toml staged result
    staged=$CONF_DIR/simedge.toml.new
    install -m 0640 -o root -g "$SERVICE_USER" "$candidate" "$staged"
    if result=$(check_config "$staged"); then
        mv -f "$staged" "$target"
        say "simedge.toml installed as $target"
    else
        rm -f "$staged"
        say "simedge.toml NOT installed, the current configuration stays: $result"
    fi
}

# Overwrite, then delete: a deleted file's clusters on FAT keep its bytes until reused.
wipe() {
    local file
    for file in "$@"; do
        [ -f "$file" ] || continue
        if ! shred --iterations=0 --zero --remove "$file" 2>/dev/null; then
            : >"$file" || true
            rm -f "$file"
        fi
    done
}

WRITE_LOG=0
STAGED_TOML=""
# Whatever ended the run (done, a failed command under set -e, a signal): the boot
# partition's settings go, and the log says how far it got.
# shellcheck disable=SC2317  # called by the EXIT trap, which shellcheck does not follow
on_exit() {
    local status=$?
    set +e
    wipe "${BOOT_FILES[@]}"
    [ -z "$STAGED_TOML" ] || rm -f "$STAGED_TOML"
    if [ "$WRITE_LOG" = 1 ]; then
        if [ "$status" != 0 ]; then
            log_lines+=("FAILED (exit $status) after the lines above; what is not listed was not applied." \
                "The settings file was removed all the same (it holds secrets): write it again.")
        fi
        {
            echo "simedge-firstboot $(date -u +%Y-%m-%dT%H:%M:%SZ) (the clock may be wrong before NTP)"
            printf '%s\n' "${log_lines[@]}"
        } >"$BOOT_DIR/simedge-firstboot.log"
        sync
    fi
    exit "$status"
}

main() {
    local settings_file="" toml_file="" manual=0 value
    while [ $# -gt 0 ]; do
        case $1 in
            -h | --help) usage; exit 0 ;;
            --boot-dir) BOOT_DIR=${2:?--boot-dir needs a folder}; shift 2 ;;
            --root) set_root "${2:?--root needs a folder}"; shift 2 ;;
            -*) echo "simedge-firstboot: unknown option $1 (see --help)" >&2; exit 2 ;;
            *) settings_file=$1; manual=1; shift ;;
        esac
    done
    [ "$(id -u)" = 0 ] || { echo "simedge-firstboot: run as root" >&2; exit 1; }
    if [ -r "$STATE_FILE" ]; then
        PREFIX=$(sed -n 's/^PREFIX=//p' "$STATE_FILE")
        DASHBOARD_USER=$(sed -n 's/^DASHBOARD_USER=//p' "$STATE_FILE")
        value=$(sed -n 's/^SERVICE_USER=//p' "$STATE_FILE")
        SERVICE_USER=${value:-$SERVICE_USER}
    fi
    if [ "$manual" = 0 ]; then
        if [ -f "$BOOT_DIR/simedge.txt" ]; then settings_file=$BOOT_DIR/simedge.txt; fi
        if [ -f "$BOOT_DIR/simedge.toml" ]; then toml_file=$BOOT_DIR/simedge.toml; fi
    fi
    if [ -z "$settings_file" ] && [ -z "$toml_file" ]; then
        echo "simedge-firstboot: nothing to apply (no simedge.txt or simedge.toml in $BOOT_DIR)"
        exit 0
    fi
    if [ "$manual" = 0 ]; then
        BOOT_FILES=("$BOOT_DIR/simedge.txt" "$BOOT_DIR/simedge.toml")
        WRITE_LOG=1
        trap on_exit EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
        if [ -n "$toml_file" ]; then
            # Read now into a root-only copy, so the card holds no secret from here on.
            STAGED_TOML=$(umask 077 && mktemp)
            cat "$toml_file" >"$STAGED_TOML"
            wipe "$toml_file"
            toml_file=$STAGED_TOML
        fi
    fi

    if [ -n "$settings_file" ]; then
        read_settings "$settings_file"
        if [ "$manual" = 0 ]; then wipe "$settings_file"; fi
        if [ -n "${SETTINGS[API_KEY]:-}" ]; then
            write_secret "$CONF_DIR/api_key" "${SETTINGS[API_KEY]}"
            say "API key written to $CONF_DIR/api_key"
        fi
        if [ -n "${SETTINGS[WEBHOOK_TOKEN]:-}" ]; then
            if [ "${#SETTINGS[WEBHOOK_TOKEN]}" -lt 16 ]; then
                say "WEBHOOK_TOKEN ignored: it needs 16 characters or more"
            else
                write_secret "$CONF_DIR/webhook_token" "${SETTINGS[WEBHOOK_TOKEN]}"
                say "webhook token written to $CONF_DIR/webhook_token"
            fi
        fi
        if [ -n "${SETTINGS[BASE_URL]:-}" ]; then set_base_url "${SETTINGS[BASE_URL]}"; fi
        if [ -n "${SETTINGS[WIFI_SSID]:-}" ]; then
            set_wifi "${SETTINGS[WIFI_SSID]}" "${SETTINGS[WIFI_PASSWORD]:-}" "${SETTINGS[WIFI_COUNTRY]:-}"
        fi
        if [ -n "${SETTINGS[HOSTNAME]:-}" ]; then set_hostname "${SETTINGS[HOSTNAME]}"; fi
        if [ -n "${SETTINGS[DASHBOARD_SSH_KEY]:-}" ]; then
            add_dashboard_key "${SETTINGS[DASHBOARD_SSH_KEY]}"
        fi
        if [ -n "${SETTINGS[RELAY]:-}" ]; then setup_relay_tunnel; fi
    fi
    if [ -n "$toml_file" ]; then replace_config "$toml_file"; fi

    local verdict
    if verdict=$(check_config "$CONF_DIR/simedge.toml"); then
        say "check: $verdict"
    else
        say "check FAILED, simedge will not start until this is fixed: $verdict"
    fi
    if [ "$manual" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl try-restart --no-block simedge.service
    fi
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
