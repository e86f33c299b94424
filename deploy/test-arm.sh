#!/usr/bin/env bash
# `make test-arm`: simedge on the Pi's architectures, on this (x86-64) machine, through qemu
# user-mode emulation. For arm64 (Raspberry Pi OS 64-bit) and armhf (32-bit) in turn:
#   1. a Debian bookworm root of that architecture (debootstrap --foreign, the second stage
#      run inside it under qemu), cached in $WORK/<arch>-base;
#   2. deploy/install.sh run in a fresh copy of it exactly as on a Pi, timed; then what pip
#      took as wheels from the index and what it had to build on the spot;
#   3. simedge-firstboot applies a settings file, and `simedge run --check-config` passes as
#      the service user;
#   4. inside the root, on the installed package: the protocol tests, the end-to-end tests of
#      a whole site (emulated modems on ptys, the OnlineSim stand-in: exact SMS texts, the
#      numbers list), the agent as a process (/healthz) and the dashboard drawn in tmux;
#      timed.
# Every mount lives in a private mount namespace and ends with it; the binfmt_misc entries
# this script registers (and binfmt_misc itself, when it mounted it) are removed on exit,
# whatever happens. Needs root and the network (Debian mirror, PyPI). Heavy steps run
# under nice: this machine is shared.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SIMEDGE_TEST_ARM_DIR:-/var/cache/simedge-test}
SUITE=${SIMEDGE_TEST_ARM_SUITE:-bookworm}
MIRROR=${SIMEDGE_TEST_ARM_MIRROR:-http://deb.debian.org/debian}
ARCHES=${SIMEDGE_TEST_ARM_ARCHES:-arm64 armhf}
# What runs inside each root, on the installed package (paths from the source tree).
TESTS=(tests/protocol tests/e2e/test_site.py tests/e2e/test_agent_process.py tests/tui/test_tmux.py
    tests/tui/test_hangup.py)
# Under qemu-user a whole process starts several times slower than natively: the tests'
# limits on a process's start and stop are multiplied by this (tests/slowdown.py). 6×
# makes the agent's 30 s start limit systemd's own TimeoutStartSec (180 s).
TEST_SLOWDOWN=6
# The test runner's own packages, in a venv of their own beside the installed app: those of
# pyproject.toml's test extra that the tests run here need, at the versions it pins there
# (tests/conftest.py needs pytest-asyncio's 1.5 hook, for one).
TEST_RUNNER=(pytest pytest-timeout pytest-asyncio hypothesis)
mapfile -t TEST_TOOLS < <(python3 - "$REPO/pyproject.toml" "${TEST_RUNNER[@]}" <<'PY'
import re, sys, tomllib
with open(sys.argv[1], "rb") as file:
    extra = tomllib.load(file)["project"]["optional-dependencies"]["test"]
wanted = set(sys.argv[2:])
found = [r for r in extra if re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() in wanted]
missing = wanted - {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in found}
if missing:
    sys.exit(f"pyproject.toml's test extra lacks {sorted(missing)}")
print("\n".join(found))
PY
)
[ ${#TEST_TOOLS[@]} = ${#TEST_RUNNER[@]} ] || { echo "test-arm: cannot read the test extra" >&2; exit 1; }

usage() {
    cat <<USAGE
Usage: deploy/test-arm.sh [--fresh | --site-only]

Installs and runs simedge in Debian $SUITE roots of other architectures ($ARCHES) under
qemu-user, in $WORK.
  --fresh      debootstrap the base roots again instead of reusing the cached ones
  --site-only  in the roots the last run installed: upgrade with install.sh, then only
               the live site and the SSH dashboard login
  -h        this text
Environment: SIMEDGE_TEST_ARM_DIR, SIMEDGE_TEST_ARM_ARCHES, SIMEDGE_TEST_ARM_SUITE,
SIMEDGE_TEST_ARM_MIRROR.
USAGE
}

export SIMEDGE_TEST_ARM_STARTED=${SIMEDGE_TEST_ARM_STARTED:-$(date +%s)}
step() {
    echo
    echo "=== [$(($(date +%s) - SIMEDGE_TEST_ARM_STARTED))s] $*"
}
fail() {
    echo "test-arm: FAILED: $*" >&2
    exit 1
}

# shellcheck source=deploy/arm-root.sh
. "$REPO/deploy/arm-root.sh"

# Runs inside the private mount namespace of one root: mounts, then every check.
inside() {
    local arch=$1 root=$2 log=$WORK/$1
    enter_root "$root"
    trap stop_site EXIT

    step "$arch: $(in_root uname -m) under qemu, $(sed -n 's/^PRETTY_NAME=//p' "$root/etc/os-release")"

    step "$arch: install.sh, exactly as on a Pi"
    local started=$SECONDS
    if [ "$SITE_ONLY" = 1 ]; then
        # An upgrade of the root a full run installed: only what changed is installed again.
        in_root /usr/src/simedge/deploy/install.sh --source /usr/src/simedge --dashboard-user dashboard \
            --dashboard-key /usr/src/dashboard.pub 2>&1 | grep "^simedge install:"
        live_site_and_dashboard_login "$arch" "$root"
        offline_install "$arch" "$root"
        return
    fi
    in_root /usr/src/simedge/deploy/install.sh --source /usr/src/simedge \
        --dashboard-user dashboard --dashboard-key /usr/src/dashboard.pub >"$log-install.log" 2>&1 ||
        { tail -n 30 "$log-install.log"; fail "$arch: install.sh failed, see $log-install.log"; }
    local install_seconds=$((SECONDS - started))
    grep "^simedge install:" "$log-install.log"

    step "$arch: what pip installed, as wheels from the index or built here"
    in_root /opt/simedge/venv/bin/python - <<'PY' | tee "$log-wheels.log"
import importlib.metadata as md

built, platform, pure = [], [], []
for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
    name = f"{dist.metadata['Name']} {dist.version}"
    if not tags or all(tag.endswith("-any") for tag in tags):
        pure.append(name)
    # A wheel pip built on the spot carries the bare platform tag (linux_armv7l); the
    # index's carry manylinux/musllinux.
    elif any("-linux_" in tag for tag in tags):
        built.append(f"{name} ({tags[0]})")
    else:
        platform.append(f"{name} ({tags[0]})")
print(f"platform wheels from the index ({len(platform)}): " + ", ".join(platform))
print(f"built here from source ({len(built)}): " + (", ".join(built) or "none"))
print(f"pure Python ({len(pure)}): " + ", ".join(pure))
PY

    step "$arch: simedge-firstboot applies a settings file; check-config as the service user"
    mkdir -p "$root/boot/firmware"
    cat >"$root/boot/firmware/simedge.txt" <<'SETTINGS'
API_KEY=test-api-key-0123456789
BASE_URL=http://127.0.0.1:8080/api/resellers
SETTINGS
    in_root /opt/simedge/bin/simedge-firstboot >"$log-firstboot.log" 2>&1 ||
        { cat "$log-firstboot.log"; fail "$arch: simedge-firstboot failed"; }
    [ ! -e "$root/boot/firmware/simedge.txt" ] || fail "$arch: simedge.txt was left on the boot partition"
    in_root runuser -u simedge -- /opt/simedge/venv/bin/simedge run --check-config \
        --config /etc/simedge/simedge.toml | tee "$log-check-config.log"
    grep -q "configuration is valid" "$log-check-config.log" || fail "$arch: check-config did not validate"
    echo "ok  $(in_root simedge --version) on $(in_root uname -m)"

    step "$arch: the test runner beside the installed app (pytest, tmux)"
    started=$SECONDS
    if ! in_root dpkg-query -W tmux >/dev/null 2>&1; then
        in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tmux \
            >"$log-apt-tmux.log" 2>&1 || fail "$arch: apt-get install tmux failed, see $log-apt-tmux.log"
    fi
    in_root python3 -m venv /opt/simedge-tests
    in_root /opt/simedge-tests/bin/pip install -q --disable-pip-version-check "${TEST_TOOLS[@]}" \
        >"$log-test-tools.log" 2>&1 || { tail -n 20 "$log-test-tools.log"; fail "$arch: the test tools did not install"; }
    # The tests import the installed package, not the source: a .pth file (Python's site
    # module) puts the app's venv on the test venv's path.
    local app_site test_site
    app_site=$(in_root /opt/simedge/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    test_site=$(in_root /opt/simedge-tests/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    echo "$app_site" >"$root$test_site/simedge-app.pth"
    # The tests start `simedge` from beside their interpreter: the installed command.
    ln -sfn /opt/simedge/venv/bin/simedge "$root/opt/simedge-tests/bin/simedge"
    echo "ok  test tools in $((SECONDS - started))s"

    step "$arch: ${TESTS[*]} inside the root, on the installed package (process limits ×$TEST_SLOWDOWN)"
    # From a copy without agent/ and tui/: what is imported is what install.sh installed.
    rm -rf "$root/usr/src/simedge-tests" && mkdir -p "$root/usr/src/simedge-tests"
    cp -a "$root/usr/src/simedge/tests" "$root/usr/src/simedge/pyproject.toml" "$root/usr/src/simedge-tests/"
    started=$SECONDS
    in_root env SIMEDGE_TEST_SLOWDOWN=$TEST_SLOWDOWN sh -c 'cd /usr/src/simedge-tests && exec /opt/simedge-tests/bin/python -m pytest -q \
        -p no:cacheprovider -o timeout=600 "$@"' pytest "${TESTS[@]}" 2>&1 | tee "$log-pytest.log" ||
        fail "$arch: tests failed inside the root, see $log-pytest.log"
    local test_seconds=$((SECONDS - started))
    in_root /opt/simedge-tests/bin/python -c 'import agent, sys; sys.exit(not agent.__file__.startswith("/opt/simedge/venv/"))' ||
        fail "$arch: the tests did not import the installed package"

    started=$SECONDS
    live_site_and_dashboard_login "$arch" "$root"
    local site_seconds=$((SECONDS - started))
    offline_install "$arch" "$root"
    printf '%s: install.sh %ss, tests %ss (%s), live site and SSH checks %ss, offline reinstall %ss\n' \
        "$arch" "$install_seconds" "$test_seconds" "$(tail -n1 "$log-pytest.log")" "$site_seconds" \
        "$OFFLINE_SECONDS" >>"$SUMMARY"
}

# A wheelhouse made in the root (so for its architecture), then uninstall.sh and
# install.sh --wheelhouse in a network namespace of its own, where nothing is reachable.
offline_install() {
    local arch=$1 root=$2 log=$WORK/$1
    step "$arch: a wheelhouse built in the root; uninstall; install.sh --wheelhouse without any network"
    rm -rf "$root/usr/src/wheelhouse"
    in_root /opt/simedge/venv/bin/pip wheel -q --disable-pip-version-check --wheel-dir /usr/src/wheelhouse \
        /usr/src/simedge >"$log-wheelhouse.log" 2>&1 || { tail -n 20 "$log-wheelhouse.log"; fail "$arch: pip wheel failed"; }
    echo "wheelhouse: $(find "$root/usr/src/wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$root/usr/src/wheelhouse" | cut -f1)"
    in_root /usr/src/simedge/deploy/uninstall.sh >"$log-uninstall.log" 2>&1 || fail "$arch: uninstall.sh failed"
    [ ! -e "$root/opt/simedge/venv" ] || fail "$arch: uninstall.sh left the venv"
    local started=$SECONDS
    unshare --net nice -n 10 chroot "$root" /usr/bin/env -i "${ROOT_ENV[@]}" /usr/src/simedge/deploy/install.sh \
        --source /usr/src/simedge --wheelhouse /usr/src/wheelhouse >"$log-install-offline.log" 2>&1 ||
        { tail -n 20 "$log-install-offline.log"; fail "$arch: install.sh --wheelhouse failed without the network"; }
    OFFLINE_SECONDS=$((SECONDS - started))
    grep "^simedge install: installed simedge" "$log-install-offline.log"
    in_root runuser -u simedge -- /opt/simedge/venv/bin/simedge run --check-config --config /etc/simedge/simedge.toml ||
        fail "$arch: check-config failed after the offline install"
    echo "ok  installed from the wheelhouse with no network in ${OFFLINE_SECONDS}s"
}

# What the live site started: stopped when it is done, or on exit when a check failed.
SITE_PIDS=()
TMUX_SOCKET=simedge-test-arm-$$
# shellcheck disable=SC2317  # also run by the EXIT trap
stop_site() {
    local pid
    end_tmux "$TMUX_SOCKET"
    for pid in "${SITE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SITE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SITE_PIDS=()
}

# The installed site running inside the root as on a Pi, on emulated hardware: the
# OnlineSim stand-in, two emulated modems and the agent (all as the service user), then
# from outside the root: /healthz, an SMS forwarded with its exact text, the numbers
# list; and the SSH dashboard login for real, through the root's own sshd with the
# shipped drop-in, from this machine's ssh client under tmux.
live_site_and_dashboard_login() {
    local arch=$1 root=$2 log=$WORK/$1
    local api_port webhook_port ssh_port token
    read -r api_port webhook_port ssh_port < <(python3 -c '
import socket
probes = [socket.socket() for _ in range(3)]
for probe in probes:
    probe.bind(("127.0.0.1", 0))
print(*(probe.getsockname()[1] for probe in probes))')

    step "$arch: the site inside the root: stand-in, 2 emulated modems, the agent (as simedge)"
    token=$(cat "$root/etc/simedge/webhook_token")
    echo "http://127.0.0.1:$api_port/api/resellers" |
        in_root simedge config set --config /etc/simedge/simedge.toml onlinesim.base_url
    echo "127.0.0.1:$webhook_port" | in_root simedge config set --config /etc/simedge/simedge.toml webhook.listen
    sed -i 's#^ports = \[\]$#ports = ["/run/simedge-modems/*"]#' "$root/etc/simedge/simedge.toml"
    grep -qx 'ports = \["/run/simedge-modems/\*"\]' "$root/etc/simedge/simedge.toml" ||
        fail "$arch: could not point [modems] ports at the emulated modems"
    install -d -o "$(stat -c %u "$root/var/lib/simedge")" -g "$(stat -c %g "$root/var/lib/simedge")" -m 0750 \
        "$root/run/simedge" "$root/run/simedge-modems"
    "${IN_ROOT[@]}" runuser -u simedge -- simedge emulate onlinesim --listen "127.0.0.1:$api_port" \
        --key test-api-key-0123456789 --webhook "http://127.0.0.1:$webhook_port/onlinesim/numbers?token=$token" \
        --webhook-interval 10 --record /run/simedge/standin.jsonl >"$log-standin.log" 2>&1 &
    SITE_PIDS+=($!)
    "${IN_ROOT[@]}" runuser -u simedge -- simedge emulate modems --count 2 --dir /run/simedge-modems \
        >"$log-modems.log" 2>&1 &
    SITE_PIDS+=($!)
    wait_for_line "$log-modems.log" . 120 || fail "$arch: the emulated modems did not start, see $log-modems.log"
    "${IN_ROOT[@]}" runuser -u simedge -- simedge run --config /etc/simedge/simedge.toml >"$log-agent.log" 2>&1 &
    SITE_PIDS+=($!)
    local started=$SECONDS
    curl -s --retry 120 --retry-all-errors --retry-delay 1 --max-time 10 -o "$log-healthz.json" \
        -w '%{http_code}\n' "http://127.0.0.1:$webhook_port/healthz" | grep -qx 200 ||
        { tail -n 20 "$log-agent.log"; fail "$arch: /healthz did not answer 200"; }
    echo "ok  /healthz 200 after $((SECONDS - started))s from outside the root: $(head -c 300 "$log-healthz.json")"

    local text="Код 482913 — never share it; <b>&amp;</b> 🙂"
    in_root runuser -u simedge -- simedge emulate inject --dir /run/simedge-modems --modem 1 \
        --sender VKcom --text "$text" >/dev/null
    started=$SECONDS
    wait_for_line "$root/run/simedge/standin.jsonl" '"path": "[^"]*addMessage"' 180 ||
        { tail -n 20 "$log-agent.log"; fail "$arch: no addMessage reached the stand-in"; }
    wait_for_line "$root/run/simedge/standin.jsonl" '"path": "[^"]*sendNumbersOnline"' 180 ||
        fail "$arch: no numbers list reached the stand-in"
    python3 - "$root/run/simedge/standin.jsonl" "$text" <<'PY' || fail "$arch: the SMS text did not arrive exactly"
import json, sys

records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
texts = [json.loads(r["body"]).get("message") for r in records if r["path"].endswith("addMessage")]
numbers = [r for r in records if r["path"].endswith("sendNumbersOnline")]
assert sys.argv[2] in texts, f"texts received: {texts!r}"
print(f"ok  addMessage with the exact text; {len(numbers)} sendNumbersOnline; requests: {len(records)}")
PY
    echo "ok  SMS forwarded within $((SECONDS - started))s of injection"

    step "$arch: the SSH dashboard login for real (the root's sshd, deploy/ssh's drop-in)"
    in_root ssh-keygen -A >/dev/null
    # sshd's privilege separation folder, which ssh.service would make.
    install -d -m 0755 "$root/run/sshd"
    "${IN_ROOT[@]}" /usr/sbin/sshd -D -e -p "$ssh_port" -o ListenAddress=127.0.0.1 >"$log-sshd.log" 2>&1 &
    SITE_PIDS+=($!)
    wait_for_line "$log-sshd.log" "Server listening" 120 || fail "$arch: sshd did not start, see $log-sshd.log"
    dashboard_ssh_options "$WORK/dashboard_ed25519"
    dashboard_login "$TMUX_SOCKET" "$log-ssh-dashboard.txt" 120 ssh -p "$ssh_port" "${DASHBOARD_SSH_OPTIONS[@]}"
    dashboard_refusals "$ssh_port" "127.0.0.1:$ssh_port" "$log"
    # Every dashboard the logins started has ended: none outlives its connection.
    local pid
    for pid in $(pgrep -f "simedge tui" || true); do
        if [ "$(readlink "/proc/$pid/root")" = "$root" ]; then fail "$arch: a dashboard outlived its SSH login ($pid)"; fi
    done
    stop_site
    echo "ok  no dashboard left running"
}

main() {
    FRESH=0
    SITE_ONLY=${SITE_ONLY:-0}
    while [ $# -gt 0 ]; do
        case $1 in
            --fresh) FRESH=1; shift ;;
            --site-only) export SITE_ONLY=1; shift ;;
            --inside) shift; inside "$@"; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "test-arm: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [ "$(id -u)" = 0 ] || fail "needs root (binfmt_misc, debootstrap, chroot, mounts): sudo make test-arm"
    mkdir -p "$WORK"
    # One per set of architectures: runs for different ones may go on side by side.
    export SUMMARY=$WORK/summary-${ARCHES// /-}.txt
    : >"$SUMMARY"
    ensure_packages debootstrap qemu-user-static
    trap cleanup_binfmt EXIT
    # The key of the dashboard login the SSH check uses, as a reseller's laptop has one.
    [ -e "$WORK/dashboard_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C dashboard@test-arm -f "$WORK/dashboard_ed25519"

    local arch base root
    for arch in $ARCHES; do
        register_binfmt "$(qemu_arch "$arch")"
        base=$WORK/$arch-base
        root=$WORK/$arch-root
        if [ "$SITE_ONLY" = 1 ]; then
            [ -x "$root/opt/simedge/venv/bin/simedge" ] || fail "--site-only: no installed root at $root (run without it first)"
            step "$arch: the installed root of the last run, source copied again"
            rm -rf "$root/usr/src/simedge"
        else
            step "$arch: debootstrap $SUITE (cached in $base)"
            make_base "$arch" "$base"
            step "$arch: fresh root from the base, source copied to /usr/src/simedge"
            rm -rf "$root"
            cp -a "$base" "$root"
        fi
        copy_source "$root/usr/src/simedge"
        cp "$WORK/dashboard_ed25519.pub" "$root/usr/src/dashboard.pub"
        unshare --mount --propagation private "$0" --inside "$arch" "$root"
    done
    echo
    cat "$SUMMARY"
    echo "test-arm: PASSED in $(($(date +%s) - SIMEDGE_TEST_ARM_STARTED))s (roots and logs: $WORK)"
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
