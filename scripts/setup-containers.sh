#!/usr/bin/env bash
# Makes what the container test (tests/api/container.rs) needs: podman and runc (Debian's
# packages), and a local Debian base image, since no container registry is reachable from the
# machines this suite runs on. The base is `debootstrap --variant=minbase bookworm` from the
# Debian mirror this machine's apt sources already use, imported as
# localhost/kinesis-proxy-test-base:bookworm. It has glibc, libgcc and the CA certificates, as
# distroless `cc` does (the AWS SDK loads the system's roots at start: without any, a debug build
# panics), so the image's runtime stage runs on it unchanged. Made once: podman keeps the image.
set -euo pipefail

BASE_IMAGE="localhost/kinesis-proxy-test-base:bookworm"
ROOTFS_CACHE="${KINESIS_PROXY_ROOTFS_CACHE:-/var/cache/kinesis-proxy-test/rootfs-bookworm-ca.tar}"

need_install=()
command -v podman >/dev/null 2>&1 || need_install+=(podman)
command -v runc >/dev/null 2>&1 || need_install+=(runc)
command -v debootstrap >/dev/null 2>&1 || need_install+=(debootstrap)
if ((${#need_install[@]})); then
    source "$(dirname "$0")/lib/apt-install.sh"
    apt_install "${need_install[@]}"
fi

if podman image exists "$BASE_IMAGE"; then
    exit 0
fi

if [[ ! -s "$ROOTFS_CACHE" ]]; then
    # The first Debian mirror of the apt sources (deb822 or one-line form).
    mirror="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
    if [[ -z "$mirror" ]]; then
        mirror="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
    fi
    if [[ -z "$mirror" ]]; then
        echo "setup-containers: no Debian mirror found in the apt sources" >&2
        exit 1
    fi
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "setup-containers: debootstrap --variant=minbase bookworm from $mirror (about 20 s)" >&2
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
    mkdir -p "$(dirname "$ROOTFS_CACHE")"
    tar -C "$rootfs" -cf "$ROOTFS_CACHE.partial" .
    mv "$ROOTFS_CACHE.partial" "$ROOTFS_CACHE"
fi
podman import --quiet "$ROOTFS_CACHE" "$BASE_IMAGE" >/dev/null
echo "setup-containers: made $BASE_IMAGE" >&2
