#!/usr/bin/env bash
# Build the pxserve container image on this machine.
#
#   deploy/build-image.sh              # CPU image  -> pxserve:latest
#   VARIANT=gpu deploy/build-image.sh  # GPU image  -> pxserve:latest-gpu
#
# With access to a container registry, plain `docker build -t pxserve .` does
# the same. Without one (an air-gapped build host that still reaches Debian's
# and PyPI's package servers), the base image cannot be pulled, so this script
# makes it from Debian's packages with debootstrap and `docker import`, then
# builds the Dockerfile on top of it. The locally made base trusts the same
# certificate authorities as this host, so pip works behind its TLS proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANT=${VARIANT:-cpu}
case "$VARIANT" in
    cpu) TAG=${TAG:-pxserve:latest} ;;
    gpu) TAG=${TAG:-pxserve:latest-gpu} ;;
    *) echo "build-image: VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 2 ;;
esac
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
LOCAL_BASE=pxserve-base:bookworm
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf 'build-image: %s\n' "$*" >&2; }

command -v docker >/dev/null || { say "docker is not installed (apt-get install docker.io)"; exit 1; }
docker info >/dev/null 2>&1 || { say "no Docker daemon answers (start dockerd)"; exit 1; }

make_local_base() {
    command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    local root
    root=$(mktemp -d /var/tmp/pxserve-base.XXXXXX)
    chmod 755 "$root" # it becomes the image's /, which every user must be able to enter
    trap 'rm -rf "$root"' RETURN
    say "making $LOCAL_BASE from Debian $SUITE packages with debootstrap (a few minutes, once)"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >&2
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
    # Trust what this host trusts (a TLS-inspecting proxy's CA, if any), and
    # keep it across update-ca-certificates runs inside the build.
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/build-host.crt"
        chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    fi
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$LOCAL_BASE" >/dev/null
    say "made $LOCAL_BASE"
}

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "using the base image $BASE_IMAGE"
elif timeout 120 docker pull "$BASE_IMAGE" >/dev/null 2>&1; then
    say "pulled the base image $BASE_IMAGE"
else
    say "cannot pull $BASE_IMAGE (no registry reachable); using a locally made base"
    docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 || make_local_base
    BASE_IMAGE=$LOCAL_BASE
fi

say "building $TAG ($VARIANT) on $BASE_IMAGE"
started=$SECONDS
DOCKER_BUILDKIT=0 docker build --network host \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VARIANT=$VARIANT" \
    -t "$TAG" . >&2
size=$(docker image inspect --format '{{.Size}}' "$TAG")
say "built $TAG in $((SECONDS - started)) s; $((size / 1000000)) MB"
