#!/usr/bin/env bash
# Set up a relay for simedge sites behind NAT (hardware.md, "Reaching the webhook"): a
# small Debian server with a public address that OpenSSH lets each site's tunnel listen on
# one loopback port of, and that Caddy publishes as https://DOMAIN/SITE/... with a
# certificate it gets by itself. Idempotent. Sites are added with simedge-relay-add-site
# (installed by this script), by hand or by deploy/ansible/relay.yml.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=""
DOMAIN=""
TLS_INTERNAL=0
PACKAGES=1
ACCOUNT=1
RELAY_USER=simedge-relay

usage() {
    cat <<USAGE
Usage: setup-relay.sh --domain NAME [options]

  --domain NAME      the relay's public DNS name (Caddy gets its certificate by ACME)
  --tls-internal     certificates from Caddy's own CA instead of ACME (tests, no DNS name)
  --user NAME        the account the sites' tunnels log in as; default $RELAY_USER
  --root DIR         write every file under DIR instead of / (tests); implies --no-packages
  --no-packages      do not apt-get install openssh-server and caddy
  --no-account       do not create or change the tunnel account (static checks)
  -h, --help         this text

Writes /etc/ssh/sshd_config.d/simedge-relay.conf, /etc/caddy/Caddyfile,
/etc/simedge-relay/ (authorized_keys, sites/, relay.env) and
/usr/local/sbin/simedge-relay-add-site; creates the tunnel account (no shell, no password);
reloads sshd and Caddy when they run under systemd.
USAGE
}

say() { echo "simedge relay: $*"; }
die() {
    echo "simedge relay: error: $*" >&2
    exit 1
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --domain) DOMAIN=${2:?--domain needs a name}; shift 2 ;;
            --tls-internal) TLS_INTERNAL=1; shift ;;
            --user) RELAY_USER=${2:?--user needs a name}; shift 2 ;;
            --root) ROOT=${2:?--root needs a folder}; PACKAGES=0; shift 2 ;;
            --no-packages) PACKAGES=0; shift ;;
            --no-account) ACCOUNT=0; shift ;;
            -h | --help) usage; exit 0 ;;
            *) echo "simedge relay: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done
    [[ "$DOMAIN" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] ||
        die "--domain: expected a DNS name or an address, got \"$DOMAIN\""
    [[ "$RELAY_USER" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "--user: \"$RELAY_USER\" is not a valid user name"
    if [ -n "$ROOT" ]; then ROOT=$(cd "$ROOT" && pwd) || die "--root: no such folder"; fi
    if [ -z "$ROOT" ] || [ "$ACCOUNT" = 1 ]; then
        [ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
    fi
}

# The relay's layout, under ROOT; simedge-relay-add-site reads the same from relay.env.
state_dir() { echo "$ROOT/etc/simedge-relay"; }

install_packages() {
    [ "$PACKAGES" = 1 ] || return 0
    # Both come from Debian; apt-get leaves them alone when they are there already.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends openssh-server caddy
}

ensure_user() {
    [ "$ACCOUNT" = 1 ] || return 0
    if ! getent passwd "$RELAY_USER" >/dev/null; then
        # A real, executable shell is required by sshd to let the account in at all;
        # nologin is one, and MaxSessions 0 means it is never run anyway.
        useradd --system --user-group --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin --comment "simedge site tunnels" "$RELAY_USER"
        say "created the tunnel account $RELAY_USER"
    fi
    # useradd leaves the password "!" (locked), and sshd without PAM refuses a locked
    # account even a key; "*" is no password at all, without the lock.
    if [ "$(getent shadow "$RELAY_USER" | cut -d: -f2)" != "*" ]; then
        usermod -p '*' "$RELAY_USER"
    fi
}

render() {
    sed -e "s#@RELAY_USER@#$RELAY_USER#g" -e "s#@STATE_DIR@#$(state_dir)#g" \
        -e "s#@DOMAIN@#$DOMAIN#g" -e "s#@SITES_DIR@#$(state_dir)/sites#g" \
        -e "s#@CADDY_DIR@#$ROOT/etc/caddy#g" \
        -e "s|@TLS@|$([ "$TLS_INTERNAL" = 1 ] && echo "tls internal" || echo "# tls: by ACME")|g" "$1"
}

write_files() {
    local state sshd_conf=$ROOT/etc/ssh/sshd_config.d/simedge-relay.conf
    state=$(state_dir)
    # sshd reads authorized_keys as the tunnel account and refuses a file in a folder
    # that others may write (StrictModes): root's, 0755 / 0644.
    install -d -m 0755 "$state" "$state/sites" "$ROOT/etc/ssh/sshd_config.d" "$ROOT/etc/caddy"
    [ -e "$state/authorized_keys" ] || install -m 0644 /dev/null "$state/authorized_keys"
    # Caddy needs at least one file to import.
    [ -e "$state/sites/.none.caddy" ] || printf '# no site yet\n' >"$state/sites/.none.caddy"
    render "$SCRIPT_DIR/simedge-relay-sshd.conf" >"$sshd_conf"
    render "$SCRIPT_DIR/Caddyfile" >"$ROOT/etc/caddy/Caddyfile"
    printf 'RELAY_USER=%s\nSTATE_DIR=%s\nCADDYFILE=%s\nDOMAIN=%s\n' "$RELAY_USER" "$state" \
        "$ROOT/etc/caddy/Caddyfile" "$DOMAIN" >"$state/relay.env"
    install -D -m 0644 "$SCRIPT_DIR/site.caddy" "$state/templates/site.caddy"
    install -D -m 0644 "$SCRIPT_DIR/site-metrics.caddy" "$state/templates/site-metrics.caddy"
    install -D -m 0755 "$SCRIPT_DIR/add-site.sh" "$ROOT/usr/local/sbin/simedge-relay-add-site"
    say "wrote $sshd_conf, $ROOT/etc/caddy/Caddyfile, $state and simedge-relay-add-site"
}

check_and_reload() {
    if [ -z "$ROOT" ]; then
        install -d -m 0755 /run/sshd # sshd -t wants it; only a running ssh.service makes it
        sshd -t || die "sshd rejects the configuration (see above)"
        caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile >/dev/null 2>&1 ||
            die "caddy rejects /etc/caddy/Caddyfile: $(caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile 2>&1 | tail -1)"
        if [ -d /run/systemd/system ]; then
            systemctl reload-or-restart ssh.service
            systemctl enable --quiet --now caddy.service
            systemctl reload caddy.service
        fi
    fi
    say "done; add a site with: simedge-relay-add-site --help"
}

main() {
    parse_args "$@"
    install_packages
    ensure_user
    write_files
    check_and_reload
}

main "$@"; exit
