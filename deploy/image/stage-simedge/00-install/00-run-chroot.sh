#!/bin/bash -e
# pi-gen, inside the image's root: the same install as on a running Pi. No systemd runs
# here, so install.sh enables the services without starting them; they start on first
# boot, after simedge-firstboot has applied simedge.txt from the boot partition.
# SIMEDGE_DASHBOARD_USER and SIMEDGE_MODEMMANAGER come from pi-gen's config (exported).
# pi-gen feeds this script to bash on stdin: install.sh gets /dev/null, so that apt or
# pip cannot read the rest of the script as their input.
set -euo pipefail
/usr/local/src/simedge/deploy/install.sh \
    --source /usr/local/src/simedge \
    --no-start \
    --dashboard-user "${SIMEDGE_DASHBOARD_USER:-dashboard}" \
    --modemmanager "${SIMEDGE_MODEMMANAGER:-ignore}" </dev/null
# pip's and apt's caches are dead weight on the card.
rm -rf /root/.cache/pip
apt-get clean
