#!/usr/bin/env bash
# make-local-base-images.sh - build the Docker base images used by this
# project's Dockerfiles locally, without pulling from any registry.
#
# ONLY for machines whose Docker engine cannot reach an image registry
# (`docker pull debian:bookworm-slim` fails) but which can reach the Debian
# package mirrors and have a Rust toolchain installed with rustup.
# Users with internet access never need this: `docker build` pulls the
# official `debian:bookworm-slim` and `rust:1-bookworm` images by itself.
#
# It creates, under the tags the Dockerfiles name:
#
#   debian:bookworm-slim  minimal Debian bookworm root file system made with
#                         `debootstrap --variant=minbase`, imported with
#                         `docker import` (no docs, man pages or locales;
#                         ca-certificates installed).
#   rust:1-bookworm       FROM the local debian:bookworm-slim, with gcc, g++,
#                         make, cmake, perl, pkg-config, libc6-dev, git and
#                         ca-certificates from Debian, plus a copy of this
#                         host's default rustup toolchain laid out like the
#                         official image (RUSTUP_HOME=/usr/local/rustup,
#                         CARGO_HOME=/usr/local/cargo, cargo on PATH).
#
# Extra CA certificates that this host trusts locally
# (/usr/local/share/ca-certificates/*.crt, e.g. the CA of a TLS-intercepting
# egress proxy) are copied into both images, so that containers can reach the
# same HTTPS services (crates.io) as the host. Disable with --no-host-ca.
#
# Idempotent: an image that already exists is left alone unless --force is
# given. Must run as root (debootstrap). Non-interactive; safe for CI.
#
# Usage: scripts/make-local-base-images.sh [--force] [--no-host-ca]
#
# Environment:
#   DEBIAN_MIRROR   Debian mirror           (default http://deb.debian.org/debian)
#   DEBIAN_SECURITY Debian security mirror  (default http://deb.debian.org/debian-security)
#   RUSTUP_HOME     host rustup directory   (default $HOME/.rustup)
#   CARGO_HOME      host cargo directory    (default $HOME/.cargo)
#   TMPDIR          where the temporary work directory goes (default /var/tmp)

set -euo pipefail

DEBIAN_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1-bookworm
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
HOST_RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
HOST_CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
HOST_CA_DIR=/usr/local/share/ca-certificates
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUST_APT_PACKAGES="ca-certificates gcc g++ make cmake perl pkg-config libc6-dev git"

FORCE=0
HOST_CA=1

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --no-host-ca) HOST_CA=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
# The classic builder is what this script is written and tested against.
export DOCKER_BUILDKIT=0

log() { printf '[make-local-base-images] %s\n' "$*"; }
die() { printf '[make-local-base-images] ERROR: %s\n' "$*" >&2; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

step_start() { STEP_T0=$(date +%s); log "== $*"; }
step_end() {
    local size
    size=$(docker image inspect -f '{{.Size}}' "$1" 2>/dev/null || echo 0)
    log "== $1 done in $(( $(date +%s) - STEP_T0 ))s, size $(( size / 1000000 )) MB"
}

WORK=""
cleanup() {
    [ -n "$WORK" ] && [ -d "$WORK" ] || return 0
    # debootstrap may leave /proc etc. mounted inside the chroot on failure.
    local m
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

work_dir() {
    if [ -z "$WORK" ]; then
        WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/local-base-images.XXXXXX")
        log "work directory: $WORK"
    fi
}

host_cas() {
    [ "$HOST_CA" = 1 ] || return 0
    compgen -G "$HOST_CA_DIR/*.crt" || true
}

# ---------------------------------------------------------------------------
# debian:bookworm-slim
# ---------------------------------------------------------------------------
build_debian() {
    [ "$(id -u)" = 0 ] || die "building $DEBIAN_IMAGE needs root (debootstrap)"
    step_start "building $DEBIAN_IMAGE with debootstrap ($DEBIAN_MIRROR)"

    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap with apt-get"
        apt-get update
        apt-get install -y --no-install-recommends debootstrap
    fi

    work_dir
    local root="$WORK/rootfs"
    log "debootstrap --variant=minbase $SUITE (log: $WORK/debootstrap.log)"
    if ! debootstrap --variant=minbase --include=ca-certificates \
            "$SUITE" "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        die "debootstrap failed"
    fi

    log "configuring the root file system"
    # apt sources as in the official image (deb822, with updates and security).
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Keep later `apt-get install`s small too, like the official slim image.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"

    # Point-release and security updates, as the official image has them.
    log "apt-get upgrade inside the new root (bookworm-updates, bookworm-security)"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    chroot "$root" apt-get -q update
    chroot "$root" apt-get -q -y -o Dpkg::Use-Pty=0 upgrade
    chroot "$root" apt-get clean
    umount "$root/proc"

    # Remove what the dpkg excludes above would not have installed.
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    local d
    for d in man groff info lintian linda; do
        rm -rf "${root:?}/usr/share/$d"/*
    done
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf {} +

    # Locally trusted extra CAs (see header).
    local cas
    cas=$(host_cas)
    if [ -n "$cas" ]; then
        log "adding host CA certificates: $(echo "$cas" | xargs -n1 basename | xargs)"
        # shellcheck disable=SC2086
        cp $cas "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null
    fi

    # Host-specific and cache files that do not belong in an image.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
    mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial"
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    : >"$root/etc/machine-id"

    log "docker import -> $DEBIAN_IMAGE"
    tar --numeric-owner --xattrs -C "$root" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
        docker import \
            --change "ENV PATH=$BASE_PATH" \
            --change 'CMD ["bash"]' \
            --message "local debootstrap --variant=minbase $SUITE ($DEBIAN_MIRROR)" \
            - "$DEBIAN_IMAGE" >/dev/null
    rm -rf --one-file-system "$root"

    docker run --rm "$DEBIAN_IMAGE" bash -c '. /etc/os-release; echo "  $PRETTY_NAME"'
    step_end "$DEBIAN_IMAGE"
}

# ---------------------------------------------------------------------------
# rust:1-bookworm
# ---------------------------------------------------------------------------
build_rust() {
    step_start "building $RUST_IMAGE from $DEBIAN_IMAGE and the host toolchain"

    local rustup_bin="$HOST_CARGO_HOME/bin/rustup"
    [ -x "$rustup_bin" ] || die "no rustup at $rustup_bin (set CARGO_HOME/RUSTUP_HOME)"
    [ -d "$HOST_RUSTUP_HOME/toolchains" ] || die "no toolchains in $HOST_RUSTUP_HOME"

    local default_tc tc_dir triple version tc_name
    default_tc=$(cd / && RUSTUP_HOME=$HOST_RUSTUP_HOME "$rustup_bin" default | awk '{print $1; exit}')
    [ -n "$default_tc" ] || die "rustup has no default toolchain"
    tc_dir=$(readlink -f "$HOST_RUSTUP_HOME/toolchains/$default_tc")
    [ -x "$tc_dir/bin/rustc" ] || die "default toolchain $default_tc has no rustc ($tc_dir)"
    triple=$("$tc_dir/bin/rustc" -vV | sed -n 's/^host: //p')
    version=$("$tc_dir/bin/rustc" -vV | sed -n 's/^release: //p')
    case "$version" in
        *-*) tc_name=$default_tc ;;            # nightly/beta: keep the host name
        *)   tc_name="$version-$triple" ;;     # official image layout, e.g. 1.95.0-x86_64-unknown-linux-gnu
    esac
    log "host default toolchain: $default_tc (rustc $version, $triple) -> $tc_name"

    work_dir
    local ctx="$WORK/rust-context"
    local rh="$ctx/rustup" ch="$ctx/cargo"
    mkdir -p "$rh/toolchains" "$ch/bin"

    log "copying the toolchain (without the rust-docs component)"
    # Only the default toolchain; no registry caches, no other toolchains.
    mkdir "$rh/toolchains/$tc_name"
    tar -C "$tc_dir" --exclude=./share/doc/rust/html -c . | tar -C "$rh/toolchains/$tc_name" -x
    local rustlib="$rh/toolchains/$tc_name/lib/rustlib"
    if grep -q "^rust-docs-" "$rustlib/components" 2>/dev/null; then
        sed -i '/^rust-docs-/d' "$rustlib/components"
        rm -f "$rustlib"/manifest-rust-docs-*
        if [ -f "$rustlib/multirust-config.toml" ]; then
            awk 'BEGIN { RS = ""; ORS = "\n\n" } !/pkg = "rust-docs"/' \
                "$rustlib/multirust-config.toml" >"$rustlib/multirust-config.toml.new"
            mv "$rustlib/multirust-config.toml.new" "$rustlib/multirust-config.toml"
        fi
    fi
    if [ "$default_tc" != "$tc_name" ]; then
        ln -s "$tc_name" "$rh/toolchains/$default_tc"
    fi

    local settings_version
    settings_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$HOST_RUSTUP_HOME/settings.toml" 2>/dev/null || true)
    cat >"$rh/settings.toml" <<EOF
version = "${settings_version:-12}"
default_toolchain = "$tc_name"
profile = "minimal"
auto_self_update = "disable"

[overrides]
EOF

    # rustup itself plus its proxies (cargo, rustc, ...), as in the official image.
    cp "$rustup_bin" "$ch/bin/rustup"
    local f
    for f in "$HOST_CARGO_HOME"/bin/*; do
        if [ -L "$f" ] && [ "$(basename "$(readlink "$f")")" = rustup ]; then
            ln -s rustup "$ch/bin/$(basename "$f")"
        fi
    done
    # The official image makes both homes world-writable (non-root users).
    chmod -R a+w "$rh" "$ch"

    cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:$BASE_PATH \\
    RUST_VERSION=$version
RUN set -eux; \\
    apt-get -q update; \\
    DEBIAN_FRONTEND=noninteractive apt-get -q install -y -o Dpkg::Use-Pty=0 \\
        --no-install-recommends $RUST_APT_PACKAGES; \\
    rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
# COPY creates the two top directories 0755; the contents are already a+w.
RUN chmod a+w /usr/local/rustup /usr/local/cargo; \\
    rustup --version; cargo --version; rustc --version
EOF

    log "docker build -> $RUST_IMAGE (context $(du -sh "$ctx" | cut -f1))"
    # Host network: the apt step needs exactly what the host can reach.
    docker build --network host --force-rm -t "$RUST_IMAGE" "$ctx"
    rm -rf --one-file-system "$ctx"

    docker run --rm "$RUST_IMAGE" bash -c 'echo "  $(rustc --version) / $(cargo --version) / gcc $(gcc -dumpversion)"'
    step_end "$RUST_IMAGE"
}

# ---------------------------------------------------------------------------
command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine"

T0=$(date +%s)
# Images replaced by --force are removed at the end (if nothing uses them).
OLD_IMAGES=$(docker image inspect -f '{{.Id}}' "$RUST_IMAGE" "$DEBIAN_IMAGE" 2>/dev/null || true)
if [ "$FORCE" = 0 ] && image_exists "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE exists, skipping (use --force to rebuild)"
else
    build_debian
    REBUILT_DEBIAN=1
fi

if [ "$FORCE" = 0 ] && [ -z "${REBUILT_DEBIAN:-}" ] && image_exists "$RUST_IMAGE"; then
    log "$RUST_IMAGE exists, skipping (use --force to rebuild)"
else
    build_rust
fi

for id in $OLD_IMAGES; do
    if ! docker image inspect -f '{{.RepoTags}}' "$id" 2>/dev/null | grep -q ':'; then
        docker rmi "$id" >/dev/null 2>&1 && log "removed replaced image $id" || true
    fi
done

log "done in $(( $(date +%s) - T0 ))s"
docker image ls --filter "reference=$DEBIAN_IMAGE" --filter "reference=$RUST_IMAGE" \
    --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
