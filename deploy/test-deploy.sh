#!/usr/bin/env bash
# `make test-deploy`: install simedge for real into a Debian root made with debootstrap,
# the way a reseller's Pi gets it, and check the result:
#   1. deploy/install.sh (with a dashboard user) in the root through chroot, where no
#      systemd runs, so services are enabled, not started;
#   2. simedge-firstboot applies a settings file with a test API key, token and base URL;
#   3. a second install.sh run, without options, must report "no changes" (idempotence,
#      and the earlier choices are kept);
#   4. `simedge run --check-config` succeeds as the service user; modes and owners of the
#      secrets, groups, enabled units, the installed unit through systemd-analyze verify;
#   5. the Ansible playbook in check mode against the installed root, then for real twice
#      (the second run must change nothing): ansible-playbook runs inside the root with
#      connection=local (as ansible-pull does on a site), because ansible-core has no
#      chroot connection and a local connection from outside would touch this machine;
#   6. uninstall.sh keeps /etc/simedge and /var/lib/simedge; --purge removes them.
# Everything runs in private mount and UTS namespaces, so no mount and no hostname change
# outlives the run. Needs root and the network (Debian mirror, PyPI). The debootstrapped
# base is cached in $WORK/<suite>-base; --fresh builds it again.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SIMEDGE_TEST_DEPLOY_DIR:-/tmp/simedge-test-deploy}
SUITE=${SIMEDGE_TEST_DEPLOY_SUITE:-bookworm}
MIRROR=${SIMEDGE_TEST_DEPLOY_MIRROR:-http://deb.debian.org/debian}
FRESH=0

usage() {
    cat <<USAGE
Usage: deploy/test-deploy.sh [--fresh]

Installs simedge into a debootstrapped Debian root ($SUITE, under $WORK) and checks it.
  --fresh   debootstrap the base root again instead of reusing the cached one
  -h        this text
Environment: SIMEDGE_TEST_DEPLOY_DIR, SIMEDGE_TEST_DEPLOY_SUITE, SIMEDGE_TEST_DEPLOY_MIRROR.
USAGE
}

# Seconds since the start, across the re-executed namespace part too.
export SIMEDGE_TEST_DEPLOY_STARTED=${SIMEDGE_TEST_DEPLOY_STARTED:-$(date +%s)}
step() {
    echo
    echo "=== [$(($(date +%s) - SIMEDGE_TEST_DEPLOY_STARTED))s] $*"
}
fail() {
    echo "test-deploy: FAILED: $*" >&2
    exit 1
}

# Runs inside the private namespaces (see main): mounts, then every check.
inside() {
    local root=$1
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/run"
    # Read-only: udevadm test walks it; nothing in the root may change this machine's /sys.
    mount -t sysfs -o ro sysfs "$root/sys"
    mount -t tmpfs tmpfs "$root/tmp"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    hostname simedge-test-deploy

    # The root's environment is built from scratch; only pip's trust store comes along, for
    # machines whose HTTPS goes through an intercepting proxy (PIP_CERT on the host).
    local root_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
    if [ -n "${PIP_CERT:-}" ] && [ -r "$PIP_CERT" ]; then
        cp "$PIP_CERT" "$root/usr/src/host-pip-cert.pem"
        root_env+=(PIP_CERT=/usr/src/host-pip-cert.pem)
    fi
    in_root() { chroot "$root" /usr/bin/env -i "${root_env[@]}" "$@"; }

    step "install.sh (first run)"
    in_root /usr/src/simedge/deploy/install.sh --source /usr/src/simedge \
        --dashboard-user dashboard --dashboard-key /usr/src/dashboard.pub 2>&1 | tee "$WORK/install-1.log"

    step "simedge-firstboot applies a settings file"
    cat >"$root/boot/firmware/simedge.txt" <<'SETTINGS'
# test settings, as a reseller writes them on the boot partition
API_KEY="test-api-key-0123456789"
WEBHOOK_TOKEN=test-webhook-token-0123456789
BASE_URL=http://127.0.0.1:8080/api/resellers
DASHBOARD_SSH_KEY=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsecondtestkey second@test
SETTINGS
    in_root /opt/simedge/bin/simedge-firstboot 2>&1 | tee "$WORK/firstboot.log"
    [ ! -e "$root/boot/firmware/simedge.txt" ] || fail "simedge.txt was left on the boot partition"
    grep -q "check: .*configuration is valid" "$root/boot/firmware/simedge-firstboot.log" ||
        fail "firstboot log does not report a valid configuration"
    if grep -q "test-api-key" "$root/boot/firmware/simedge-firstboot.log"; then
        fail "firstboot log holds the API key"
    fi

    step "install.sh again, without options (an upgrade keeps the choices): must change nothing"
    in_root /usr/src/simedge/deploy/install.sh --source /usr/src/simedge 2>&1 | tee "$WORK/install-2.log"
    tail -n1 "$WORK/install-2.log" | grep -qx "simedge install: no changes" ||
        fail "the second install.sh run changed something"

    step "simedge run --check-config as the service user"
    in_root runuser -u simedge -- /opt/simedge/venv/bin/simedge run --check-config \
        --config /etc/simedge/simedge.toml | tee "$WORK/check-config.log"
    grep -q "configuration is valid" "$WORK/check-config.log" || fail "check-config did not validate"
    in_root simedge --version || fail "simedge is not on PATH (/usr/local/bin/simedge)"

    step "files, users, units"
    local expect line
    for expect in "/etc/simedge/api_key 600 simedge:simedge" "/etc/simedge/webhook_token 600 simedge:simedge" \
        "/etc/simedge 750 root:simedge" "/etc/simedge/simedge.toml 640 root:simedge" \
        "/var/lib/simedge 750 simedge:simedge" "/home/dashboard/.ssh/authorized_keys 600 dashboard:dashboard"; do
        line=$(in_root stat -c '%n %a %U:%G' "${expect%% *}")
        [ "$line" = "$expect" ] || fail "expected \"$expect\", found \"$line\""
        echo "ok  $line"
    done
    [[ " $(in_root id -nG simedge) " == *" dialout "* ]] || fail "simedge is not in dialout"
    [[ " $(in_root id -nG dashboard) " == *" simedge "* ]] || fail "dashboard is not in simedge"
    echo "ok  groups: simedge in dialout, dashboard in simedge"
    grep -c "ssh-ed25519" "$root/home/dashboard/.ssh/authorized_keys" | grep -qx 2 ||
        fail "authorized_keys should hold the install key and the firstboot key"
    for line in simedge.service simedge-firstboot.service; do
        [ "$(in_root systemctl is-enabled "$line")" = enabled ] || fail "$line is not enabled"
        echo "ok  $line enabled"
    done
    if in_root dpkg-query -W brltty >/dev/null 2>&1; then fail "brltty is installed"; fi
    in_root sshd -t || fail "sshd rejects its configuration"
    # Whole outputs first: grep -q closing the pipe early would fail sshd under pipefail.
    local effective
    effective=$(in_root sshd -T -C user=dashboard,host=site,addr=127.0.0.1)
    grep -qx "forcecommand /opt/simedge/venv/bin/simedge tui" <<<"$effective" ||
        fail "sshd does not force the dashboard on the dashboard user"
    effective=$(in_root sshd -T -C user=root,host=site,addr=127.0.0.1)
    grep -qx "forcecommand none" <<<"$effective" ||
        fail "the ForceCommand reaches users other than the dashboard user"
    echo "ok  sshd -t accepts the dashboard drop-in; ForceCommand for the dashboard user only"
    in_root systemd-analyze verify /etc/systemd/system/simedge.service /etc/systemd/system/simedge-firstboot.service \
        2>&1 | tee "$WORK/verify.log"
    if grep -q "simedge" "$WORK/verify.log"; then fail "systemd-analyze verify complains about the units"; fi
    echo "ok  systemd-analyze verify (installed units, real ExecStart)"
    # udev reports a rules file it cannot parse while it processes any event: replay one.
    in_root udevadm test --action=add /sys/class/tty/ptmx >"$WORK/udev-test.log" 2>&1 || true
    grep -q "Reading rules file: /etc/udev/rules.d/77-simedge-modems.rules" "$WORK/udev-test.log" ||
        fail "udevadm did not read the simedge rules"
    if grep -E "^/etc/udev/rules.d/7[78]-simedge" "$WORK/udev-test.log"; then
        fail "udevadm complains about the simedge rules"
    fi
    echo "ok  udevadm parses the simedge rules without a complaint"

    step "ansible-playbook --check inside the root (connection=local, as ansible-pull)"
    if ! in_root dpkg-query -W ansible-core >/dev/null 2>&1; then
        in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ansible-core >/dev/null
    fi
    cat >"$root/usr/src/ansible-test-vars.yml" <<'VARS'
simedge_api_key: test-api-key-0123456789
simedge_webhook_token: test-webhook-token-0123456789
simedge_base_url: http://127.0.0.1:8080/api/resellers
simedge_source_dir: /usr/src/simedge
simedge_dashboard_user: dashboard
simedge_slot_labels:
  "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0": A1
simedge_dashboard_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirsttestkeyfortheinstallscript first@test
simedge_ussd:
  "25001": {code: "*111*0887#", pattern: '(\+?7\d{10})', region: RU}
VARS
    printf '[simedge_sites]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n' \
        >"$root/usr/src/ansible-test-inventory.ini"
    in_root ansible-playbook --version | head -n1
    in_root env ANSIBLE_NOCOLOR=1 ansible-playbook --check --diff -i /usr/src/ansible-test-inventory.ini \
        -e @/usr/src/ansible-test-vars.yml /usr/src/simedge/deploy/ansible/site.yml 2>&1 | tee "$WORK/ansible-check.log"
    grep -Eq "localhost +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0" "$WORK/ansible-check.log" ||
        fail "the playbook failed in check mode"

    step "ansible-playbook for real, twice: the second run must change nothing"
    in_root env ANSIBLE_NOCOLOR=1 ansible-playbook -i /usr/src/ansible-test-inventory.ini \
        -e @/usr/src/ansible-test-vars.yml /usr/src/simedge/deploy/ansible/site.yml >"$WORK/ansible-apply-1.log" 2>&1 ||
        { cat "$WORK/ansible-apply-1.log"; fail "the playbook failed"; }
    grep -E "^localhost +:" "$WORK/ansible-apply-1.log"
    in_root env ANSIBLE_NOCOLOR=1 ansible-playbook -i /usr/src/ansible-test-inventory.ini \
        -e @/usr/src/ansible-test-vars.yml /usr/src/simedge/deploy/ansible/site.yml 2>&1 | tee "$WORK/ansible-apply-2.log" |
        grep -E "^localhost +:"
    grep -Eq "localhost +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0" "$WORK/ansible-apply-2.log" ||
        fail "the second playbook run changed something (see $WORK/ansible-apply-2.log)"
    in_root runuser -u simedge -- /opt/simedge/venv/bin/simedge run --check-config --config /etc/simedge/simedge.toml ||
        fail "the configuration the playbook wrote does not pass --check-config"
    grep -q '^"platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0" = "A1"$' "$root/etc/simedge/simedge.toml" ||
        fail "the slot label from the inventory is not in simedge.toml"

    step "uninstall.sh keeps configuration and data; --purge removes them"
    in_root /usr/src/simedge/deploy/uninstall.sh | tee "$WORK/uninstall.log"
    [ ! -e "$root/opt/simedge" ] || fail "/opt/simedge is still there"
    [ ! -e "$root/etc/systemd/system/simedge.service" ] || fail "the unit is still there"
    if [ ! -s "$root/etc/simedge/api_key" ] || [ ! -d "$root/var/lib/simedge" ]; then
        fail "uninstall removed the kept data"
    fi
    in_root /usr/src/simedge/deploy/uninstall.sh | tail -n1 | grep -qx "simedge uninstall: nothing to remove" ||
        fail "a second uninstall.sh run changed something"
    in_root /usr/src/simedge/deploy/uninstall.sh --purge | tee -a "$WORK/uninstall.log"
    if [ -e "$root/etc/simedge" ] || [ -e "$root/var/lib/simedge" ]; then fail "--purge left data behind"; fi
    if in_root getent passwd simedge >/dev/null; then fail "--purge left the simedge user"; fi
    echo "ok  uninstall and purge"
}

main() {
    while [ $# -gt 0 ]; do
        case $1 in
            --fresh) FRESH=1; shift ;;
            --inside) shift; inside "$@"; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "test-deploy: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, mounts): sudo make test-deploy"
    local base=$WORK/$SUITE-base root=$WORK/root
    mkdir -p "$WORK"

    step "debootstrap $SUITE (cached in $base)"
    if ! command -v debootstrap >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    fi
    if [ "$FRESH" = 1 ] || [ ! -e "$base/.complete" ]; then
        rm -rf "$base" "$base.partial"
        debootstrap --variant=minbase "$SUITE" "$base.partial" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
            fail "debootstrap failed, see $WORK/debootstrap.log"
        touch "$base.partial/.complete"
        mv "$base.partial" "$base"
    fi

    step "fresh root from the base, source copied to /usr/src/simedge"
    rm -rf "$root"
    cp -a "$base" "$root"
    mkdir -p "$root/usr/src/simedge" "$root/boot/firmware"
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        # Tracked files and new ones not ignored: what a checkout of this tree would hold.
        git -C "$REPO" ls-files -z --cached --others --exclude-standard |
            tar -C "$REPO" --null --ignore-failed-read -T - -cf - | tar -C "$root/usr/src/simedge" -xf -
    else
        tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=build --exclude=__pycache__ -cf - . |
            tar -C "$root/usr/src/simedge" -xf -
    fi
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirsttestkeyfortheinstallscript first@test" >"$root/usr/src/dashboard.pub"

    unshare --mount --uts --propagation private "$0" --inside "$root"
    echo
    echo "test-deploy: PASSED in $(($(date +%s) - SIMEDGE_TEST_DEPLOY_STARTED))s (root: $root, logs: $WORK/*.log)"
}

# One line: bash reads a script as it runs, and this file may be replaced meanwhile.
main "$@"; exit
