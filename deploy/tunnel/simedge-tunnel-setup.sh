#!/usr/bin/env bash
# Point this site's tunnel at a relay (hardware.md, "Reaching the webhook"): the tunnel's
# own account and SSH key, the relay's host key pinned, tunnel.env for
# simedge-tunnel.service, [webhook] public_url in simedge.toml, and the unit enabled and
# (re)started. Installed as PREFIX/bin/simedge-tunnel-setup; run by install.sh --relay,
# by simedge-firstboot (RELAY= in simedge.txt) and by Ansible. Idempotent: the key is made
# once, a pinned host key is only replaced by --relay-host-key.
set -euo pipefail

CONF_DIR=/etc/simedge
TUNNEL_USER=simedge-tunnel
RELAY=""
RELAY_PORT=""
RELAY_USER=simedge-relay
RELAY_HOST_KEY=""
SITE=""
SYSTEMD=1

usage() {
    cat <<USAGE
Usage: simedge-tunnel-setup --relay HOST[:SSH_PORT] --relay-port PORT [options]

  --relay HOST[:SSH_PORT]   the relay's name (its web address too) and SSH port (22)
  --relay-port PORT         the loopback port on the relay this site listens on; the
                            relay's administrator gives it (one per site)
  --site NAME               the site's name in the relay's URLs; default: the hostname
  --relay-host-key KEY      the relay's SSH host key ("ssh-ed25519 AAAA...", or a file
                            holding it, e.g. a copy of its /etc/ssh/ssh_host_ed25519_key.pub);
                            without it the key is fetched once and its fingerprint shown:
                            compare it with the relay's before trusting the tunnel
  --relay-user NAME         the relay's tunnel account; default $RELAY_USER
  --conf-dir DIR            simedge's configuration folder; default $CONF_DIR
  --no-systemd              write the files, do not enable or start the unit
  -h, --help                this text

Prints the line to run on the relay (simedge-relay-add-site SITE PORT KEY).
USAGE
}

say() { echo "simedge tunnel: $*"; }
# A whole number from $2 to $3.
in_range() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

die() {
    echo "simedge tunnel: error: $*" >&2
    exit 1
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --relay) RELAY=${2:?--relay needs a host}; shift 2 ;;
            --relay-port) RELAY_PORT=${2:?--relay-port needs a port}; shift 2 ;;
            --site) SITE=${2:?--site needs a name}; shift 2 ;;
            --relay-host-key) RELAY_HOST_KEY=${2:?--relay-host-key needs a key or a file}; shift 2 ;;
            --relay-user) RELAY_USER=${2:?--relay-user needs a name}; shift 2 ;;
            --conf-dir) CONF_DIR=${2:?--conf-dir needs a folder}; shift 2 ;;
            --no-systemd) SYSTEMD=0; shift ;;
            -h | --help) usage; exit 0 ;;
            *) echo "simedge tunnel: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done
    RELAY_HOST=${RELAY%:*}
    RELAY_SSH_PORT=22
    if [[ "$RELAY" == *:* ]]; then RELAY_SSH_PORT=${RELAY##*:}; fi
    [[ "$RELAY_HOST" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] ||
        die "--relay: expected HOST or HOST:PORT (a DNS name or an IPv4 address), got \"$RELAY\""
    in_range "$RELAY_SSH_PORT" 1 65535 ||
        die "--relay: the SSH port must be a number from 1 to 65535, got \"$RELAY_SSH_PORT\""
    in_range "$RELAY_PORT" 1024 65535 ||
        die "--relay-port: expected the relay's port for this site, 1024 to 65535, got \"$RELAY_PORT\""
    SITE=${SITE:-$(hostname | tr '[:upper:]' '[:lower:]')}
    [[ "$SITE" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
        die "--site: expected lower-case letters, digits and inner hyphens, got \"$SITE\""
    [[ "$RELAY_USER" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "--relay-user: \"$RELAY_USER\" is not a valid user name"
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
    TUNNEL_DIR=$CONF_DIR/tunnel
}

ensure_user() {
    getent passwd "$TUNNEL_USER" >/dev/null && return 0
    useradd --system --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin --comment "simedge tunnel to the relay" "$TUNNEL_USER"
    say "created the account $TUNNEL_USER"
}

ensure_key() {
    install -d -m 0750 -o root -g "$TUNNEL_USER" "$TUNNEL_DIR"
    if [ ! -e "$TUNNEL_DIR/id_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N "" -C "simedge-site:$SITE" -f "$TUNNEL_DIR/id_ed25519"
        say "made the tunnel's key $TUNNEL_DIR/id_ed25519"
    fi
    chown "$TUNNEL_USER:$TUNNEL_USER" "$TUNNEL_DIR/id_ed25519"
    chmod 0600 "$TUNNEL_DIR/id_ed25519"
    chmod 0644 "$TUNNEL_DIR/id_ed25519.pub"
}

# known_hosts names a host on another port than 22 as [host]:port.
known_host_name() {
    if [ "$RELAY_SSH_PORT" = 22 ]; then echo "$RELAY_HOST"; else echo "[$RELAY_HOST]:$RELAY_SSH_PORT"; fi
}

pin_host_key() {
    local known=$TUNNEL_DIR/known_hosts key
    if [ -n "$RELAY_HOST_KEY" ]; then
        key=$RELAY_HOST_KEY
        if [ -f "$key" ]; then key=$(head -n 1 "$key"); fi
        [[ "$key" =~ ^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ssh-rsa)\ [A-Za-z0-9+/]+=*(\ .*)?$ ]] ||
            die "--relay-host-key: expected an OpenSSH public key line (ssh-ed25519 AAAA...), got \"${key:0:40}\""
        printf '%s %s\n' "$(known_host_name)" "$(cut -d' ' -f1-2 <<<"$key")" >"$known.new"
    elif [ -s "$known" ] && grep -q "^$(known_host_name | sed 's/[][.]/\\&/g') " "$known"; then
        return 0 # pinned earlier: never replaced behind anyone's back
    else
        # Trust on first use, said loudly: the fingerprint must be compared by a person.
        ssh-keyscan -T 15 -t ed25519 -p "$RELAY_SSH_PORT" "$RELAY_HOST" 2>/dev/null | grep -v '^#' >"$known.new" || true
        [ -s "$known.new" ] || {
            rm -f "$known.new"
            die "could not fetch the relay's host key from $RELAY_HOST:$RELAY_SSH_PORT; give --relay-host-key"
        }
        say "WARNING: pinned the relay's host key as fetched now. Compare its fingerprint"
        say "  $(ssh-keygen -l -f "$known.new")"
        say "  with the relay's own: ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub"
    fi
    install -m 0644 "$known.new" "$known"
    rm -f "$known.new"
    say "relay host key pinned in $known"
}

# The webhook's port from [webhook] listen (the only "listen" key of simedge.toml).
webhook_port() {
    local listen
    listen=$(sed -n 's/^listen[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' "$CONF_DIR/simedge.toml" 2>/dev/null | head -n 1)
    listen=${listen:-0.0.0.0:8085}
    echo "${listen##*:}"
}

write_env() {
    printf 'RELAY_HOST=%s\nRELAY_SSH_PORT=%s\nRELAY_USER=%s\nRELAY_LISTEN_PORT=%s\nWEBHOOK_PORT=%s\n' \
        "$RELAY_HOST" "$RELAY_SSH_PORT" "$RELAY_USER" "$RELAY_PORT" "$(webhook_port)" >"$TUNNEL_DIR/tunnel.env.new"
    chmod 0644 "$TUNNEL_DIR/tunnel.env.new"
    mv -f "$TUNNEL_DIR/tunnel.env.new" "$TUNNEL_DIR/tunnel.env"
}

set_public_url() {
    local config=$CONF_DIR/simedge.toml url="https://$RELAY_HOST/$SITE"
    if [ ! -f "$config" ]; then
        say "no $config yet: set [webhook] public_url = \"$url\" there"
        return
    fi
    if grep -q '^public_url[[:space:]]*=' "$config"; then
        sed -i "0,/^public_url[[:space:]]*=.*/s##public_url = \"$url\"#" "$config"
    elif grep -q '^\[webhook\]' "$config"; then
        sed -i "0,/^\[webhook\]/s##[webhook]\npublic_url = \"$url\"#" "$config"
    else
        printf '\n[webhook]\npublic_url = "%s"\n' "$url" >>"$config"
    fi
    say "[webhook] public_url set to $url"
}

start_unit() {
    [ "$SYSTEMD" = 1 ] || return 0
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --quiet simedge-tunnel.service
        # --no-block: first boot runs this before the network is up, which the unit waits for.
        systemctl restart --no-block simedge-tunnel.service
        systemctl try-restart --no-block simedge.service # it reads public_url at start
        say "simedge-tunnel.service (re)started"
    else
        systemctl enable --quiet simedge-tunnel.service 2>/dev/null ||
            ln -sfn /etc/systemd/system/simedge-tunnel.service /etc/systemd/system/multi-user.target.wants/simedge-tunnel.service
        say "systemd is not running here: simedge-tunnel.service enabled, not started"
    fi
}

main() {
    parse_args "$@"
    ensure_user
    ensure_key
    pin_host_key
    write_env
    set_public_url
    start_unit
    say "on the relay, run:"
    say "  simedge-relay-add-site $SITE $RELAY_PORT \"$(cut -d' ' -f1-2 "$TUNNEL_DIR/id_ed25519.pub") simedge-site:$SITE\""
}

main "$@"; exit
