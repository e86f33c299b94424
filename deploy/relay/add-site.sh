#!/usr/bin/env bash
# Add (or change) one simedge site on the relay: its tunnel key may listen on one
# loopback port and nothing else, and Caddy publishes that port as https://DOMAIN/SITE/.
# Installed by setup-relay.sh as /usr/local/sbin/simedge-relay-add-site. Idempotent: the
# site's key line and Caddy file are replaced, never added twice.
set -euo pipefail

RELAY_ENV=${SIMEDGE_RELAY_ENV:-/etc/simedge-relay/relay.env}
WEBHOOK_PATH=/onlinesim/numbers
METRICS_FROM=""
RELOAD=1

usage() {
    cat <<USAGE
Usage: simedge-relay-add-site [options] SITE PORT PUBLIC_KEY

  SITE          the site's name in URLs: lower-case letters, digits, inner hyphens
  PORT          the relay loopback port its tunnel listens on (1024-65535, one per site)
  PUBLIC_KEY    the site's tunnel key: "ssh-ed25519 AAAA... comment", or a file holding it
                (simedge-tunnel-setup prints it on the site)
  --webhook-path PATH   the site's [webhook] path; default $WEBHOOK_PATH
  --metrics CIDR        publish /SITE/metrics to these addresses (the central Prometheus)
  --no-reload           do not reload Caddy
  -h, --help            this text

The site's webhook is then https://DOMAIN/SITE$WEBHOOK_PATH?token=... and its
[webhook] public_url is https://DOMAIN/SITE. Reads $RELAY_ENV (from setup-relay.sh).
USAGE
}

# A whole number from $2 to $3.
in_range() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

die() {
    echo "simedge-relay-add-site: error: $*" >&2
    exit 1
}

main() {
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --webhook-path) WEBHOOK_PATH=${2:?--webhook-path needs a path}; shift 2 ;;
            --metrics) METRICS_FROM=${2:?--metrics needs an address or CIDR}; shift 2 ;;
            --no-reload) RELOAD=0; shift ;;
            -h | --help) usage; exit 0 ;;
            -*) echo "simedge-relay-add-site: unknown option $1 (see --help)" >&2; exit 2 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    [ ${#args[@]} = 3 ] || die "expected SITE PORT PUBLIC_KEY (see --help)"
    local site=${args[0]} port=${args[1]} key=${args[2]}
    [ -r "$RELAY_ENV" ] || die "no $RELAY_ENV: run setup-relay.sh first"
    local STATE_DIR="" CADDYFILE="" DOMAIN=""
    STATE_DIR=$(sed -n 's/^STATE_DIR=//p' "$RELAY_ENV")
    CADDYFILE=$(sed -n 's/^CADDYFILE=//p' "$RELAY_ENV")
    DOMAIN=$(sed -n 's/^DOMAIN=//p' "$RELAY_ENV")

    [[ "$site" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
        die "SITE: expected lower-case letters, digits and inner hyphens, got \"$site\""
    in_range "$port" 1024 65535 ||
        die "PORT: expected a number from 1024 to 65535, got \"$port\""
    [[ "$WEBHOOK_PATH" =~ ^/[A-Za-z0-9._/-]*$ ]] ||
        die "--webhook-path: expected a path of letters, digits and . _ - /, got \"$WEBHOOK_PATH\""
    if [ -n "$METRICS_FROM" ] && [[ ! "$METRICS_FROM" =~ ^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$ ]]; then
        die "--metrics: expected an address or CIDR, got \"$METRICS_FROM\""
    fi
    if [ -f "$key" ]; then key=$(head -n 1 "$key"); fi
    [[ "$key" =~ ^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ssh-rsa)\ [A-Za-z0-9+/]+=*(\ .*)?$ ]] ||
        die "PUBLIC_KEY: expected one OpenSSH public key line (ssh-ed25519 AAAA...), got \"${key:0:40}\""
    local type_and_blob
    type_and_blob=$(cut -d' ' -f1-2 <<<"$key")

    local keys=$STATE_DIR/authorized_keys other
    # One port, one site: another site's line with this port would share its tunnel.
    other=$(grep -v " simedge-site:$site\$" "$keys" | grep -o "permitlisten=\"$port\".* simedge-site:[a-z0-9-]*" | sed 's/.*simedge-site://' || true)
    [ -z "$other" ] || die "PORT $port is already the site $other's"

    # restrict: no pty, no agent/X11/port forwarding, no ~/.ssh/rc; port-forwarding gives
    # back -R only (sshd allows no other kind for this account), and permitlisten narrows
    # it to this one port.
    local line="restrict,port-forwarding,permitlisten=\"$port\" $type_and_blob simedge-site:$site"
    local tmp
    tmp=$(mktemp)
    grep -v " simedge-site:$site\$" "$keys" >"$tmp" || true
    printf '%s\n' "$line" >>"$tmp"
    install -m 0644 "$tmp" "$keys"
    rm -f "$tmp"

    local rendered=$STATE_DIR/sites/$site.caddy
    {
        sed -e "s#@SITE@#$site#g" -e "s#@PORT@#$port#g" -e "s#@WEBHOOK_PATH@#$WEBHOOK_PATH#g" \
            "$STATE_DIR/templates/site.caddy"
        if [ -n "$METRICS_FROM" ]; then
            sed -e "s#@SITE@#$site#g" -e "s#@PORT@#$port#g" -e "s#@METRICS_FROM@#$METRICS_FROM#g" \
                "$STATE_DIR/templates/site-metrics.caddy"
        fi
    } >"$rendered.new"
    mv -f "$rendered.new" "$rendered"
    if [ "$RELOAD" = 1 ] && [ -d /run/systemd/system ]; then
        systemctl reload caddy.service
    fi
    echo "simedge-relay-add-site: $site listens on 127.0.0.1:$port; its public_url: https://$DOMAIN/$site"
    echo "  (Caddy: $CADDYFILE)"
}

main "$@"; exit
