#!/bin/bash -e
# pi-gen, on the build host: copy the simedge source into the image and put the settings
# template on the boot partition, where the reseller edits it. pi-gen runs this from the
# sub-stage folder, deploy/image/stage-simedge/00-install/ of the simedge checkout.
set -euo pipefail
SOURCE=$(cd ../../../.. && pwd)
[ -f "${SOURCE}/pyproject.toml" ] || { echo "simedge stage: no simedge checkout at ${SOURCE}" >&2; exit 1; }

rm -rf "${ROOTFS_DIR}/usr/local/src/simedge"
install -d "${ROOTFS_DIR}/usr/local/src/simedge"
tar -C "${SOURCE}" --exclude=.git --exclude=.venv --exclude=build --exclude=__pycache__ \
    --exclude=demo-data -cf - . | tar -C "${ROOTFS_DIR}/usr/local/src/simedge" -xf -

BOOT_DIR="${ROOTFS_DIR}/boot/firmware"
[ -d "${BOOT_DIR}" ] || BOOT_DIR="${ROOTFS_DIR}/boot"
install -m 0644 files/simedge.txt.example "${BOOT_DIR}/simedge.txt.example"
