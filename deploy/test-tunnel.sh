#!/usr/bin/env bash
# `make test-tunnel`: a site behind NAT reached through the relay, on this machine, in
# three network namespaces of its own:
#
#     site 10.231.1.2 ── 10.231.1.1  "the internet"  10.231.2.1 ── 10.231.2.2 relay
#     (agent, ssh tunnel)             (OnlineSim stand-in,           (sshd, Caddy with
#                                      the test itself)               tls internal)
#
# "The internet" routes between the two and, like a carrier's NAT, lets the site open
# connections out but drops every new connection towards it. The relay's name relay.test
# resolves through /etc/netns/<ns>/hosts, which `ip netns exec` shows as /etc/hosts.
# This script builds the network and runs tests/tunnel/ inside "the internet"; the test
# starts sshd, Caddy, the agent and the tunnel from deploy/relay and deploy/tunnel and
# cuts the tunnel (see the test's docstring). Needs root, ip, nft, sshd, ssh and caddy
# (the Makefile target installs them). Only these namespaces' own addresses are used.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
PREFIX=se$$
SITE_NS=$PREFIX-site
RELAY_NS=$PREFIX-relay
INET_NS=$PREFIX-inet
# veth names: at most 15 characters.
SITE_LINK=${PREFIX}s
SITE_PEER=${PREFIX}si
RELAY_LINK=${PREFIX}r
RELAY_PEER=${PREFIX}ri

usage() {
    cat <<USAGE
Usage: deploy/test-tunnel.sh [PYTEST_ARGS...]

Builds the site / relay / internet namespaces and runs tests/tunnel/ in them (minutes).
Needs root and: ip, nft, sshd, ssh, caddy (make test-tunnel installs them).
USAGE
}

cleanup() {
    local ns
    for ns in "$SITE_NS" "$RELAY_NS" "$INET_NS"; do
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

build_network() {
    local ns
    for ns in "$SITE_NS" "$RELAY_NS" "$INET_NS"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        # ip netns exec bind-mounts these over /etc/hosts inside the namespace only.
        install -d -m 0755 "/etc/netns/$ns"
        printf '127.0.0.1\tlocalhost\n10.231.2.2\trelay.test\n' >"/etc/netns/$ns/hosts"
    done
    ip link add "$SITE_LINK" type veth peer name "$SITE_PEER"
    ip link add "$RELAY_LINK" type veth peer name "$RELAY_PEER"
    ip link set "$SITE_LINK" netns "$SITE_NS"
    ip link set "$SITE_PEER" netns "$INET_NS"
    ip link set "$RELAY_LINK" netns "$RELAY_NS"
    ip link set "$RELAY_PEER" netns "$INET_NS"

    in_ns "$INET_NS" ip addr add 10.231.1.1/24 dev "$SITE_PEER"
    in_ns "$INET_NS" ip addr add 10.231.2.1/24 dev "$RELAY_PEER"
    in_ns "$INET_NS" ip link set "$SITE_PEER" up
    in_ns "$INET_NS" ip link set "$RELAY_PEER" up
    in_ns "$INET_NS" sysctl -q -w net.ipv4.ip_forward=1

    in_ns "$SITE_NS" ip addr add 10.231.1.2/24 dev "$SITE_LINK"
    in_ns "$SITE_NS" ip link set "$SITE_LINK" up
    in_ns "$SITE_NS" ip route add default via 10.231.1.1

    in_ns "$RELAY_NS" ip addr add 10.231.2.2/24 dev "$RELAY_LINK"
    in_ns "$RELAY_NS" ip link set "$RELAY_LINK" up
    in_ns "$RELAY_NS" ip route add default via 10.231.2.1

    # The carrier's NAT: towards the site only answers pass, from the relay or from "the
    # internet" itself; nothing may open a connection to it.
    in_ns "$INET_NS" nft -f - <<NFT
table inet carrier {
    chain forward {
        type filter hook forward priority 0; policy accept;
        oifname "$SITE_PEER" ct state established,related accept
        oifname "$SITE_PEER" counter drop
    }
    chain output {
        type filter hook output priority 0; policy accept;
        oifname "$SITE_PEER" ct state established,related accept
        oifname "$SITE_PEER" counter drop
    }
}
NFT
}

main() {
    case ${1:-} in -h | --help) usage; exit 0 ;; esac
    [ "$(id -u)" = 0 ] || { echo "test-tunnel: run as root" >&2; exit 1; }
    local tool
    for tool in ip nft sshd ssh ssh-keygen caddy runuser; do
        command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null ||
            { echo "test-tunnel: $tool is missing (make test-tunnel installs it)" >&2; exit 1; }
    done
    trap cleanup EXIT
    build_network
    cd "$REPO"
    in_ns "$INET_NS" env SIMEDGE_TUNNEL_SITE_NS="$SITE_NS" SIMEDGE_TUNNEL_RELAY_NS="$RELAY_NS" \
        SIMEDGE_TUNNEL_SITE_LINK="$SITE_PEER" \
        "$PYTHON" -m pytest -q -s -p no:cacheprovider tests/tunnel "$@"
}

main "$@"
