#!/usr/bin/env bash
# Make the debian:12-slim base image available to buildah without a container
# registry. When the local image store lacks docker.io/library/debian:12-slim,
# build a minimal Debian 12 root file system with debootstrap from the Debian
# mirror and commit it under that name.
#
#   debian_base_image.sh WORK_DIR
#
# Storage follows buildah's usual settings (CONTAINERS_STORAGE_CONF).
set -euo pipefail

name=docker.io/library/debian:12-slim
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="${1:?usage: $0 WORK_DIR}"

if buildah inspect --type image "$name" >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$work"
rootfs="$work/rootfs"
rm -rf "$rootfs"
echo "building $name with debootstrap from $mirror" >&2
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "debootstrap failed; its log: $work/debootstrap.log" >&2
    exit 1
}
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
mount_point="$(buildah mount "$container")"
tar -C "$rootfs" -cf - . | tar -C "$mount_point" -xf -
buildah umount "$container" >/dev/null
buildah config --cmd /bin/bash "$container"
buildah commit --quiet "$container" "$name" >/dev/null
rm -rf "$rootfs"
