#!/usr/bin/env bash
# The "python:3.11-slim" of forge bench, built offline from the Debian archive with debootstrap.
#
# Usage (root): slim-rootfs.sh OUT.tar MIRROR [KEYRING]
#   OUT.tar  the root filesystem as a tar (what `docker import` takes)
#   MIRROR   a Debian archive URI; forge bench reads it from this machine's apt sources
#            (/etc/apt/sources.list.d/*.sources) at run time: none is written down here.
#   KEYRING  the archive keyring to verify the Release file with (apt's Signed-By).
#
# python:3.11-slim is debian:bookworm-slim (debootstrap --variant=minbase, then "slimified": the
# documentation, man pages and translations deleted and a dpkg config that keeps them out of later
# installs) plus ca-certificates, netbase and tzdata, plus CPython built from source in /usr/local.
# Here the interpreter is Debian's python3 package (3.11.2, the same version as forge's SDK) instead
# of a source build; everything else follows the same recipe. The Python test suites that the
# official image deletes are separate Debian packages (libpython3.11-testsuite), so not installed.
set -euo pipefail

out=${1:?usage: slim-rootfs.sh OUT.tar MIRROR [KEYRING]}
mirror=${2:?usage: slim-rootfs.sh OUT.tar MIRROR [KEYRING]}
keyring=${3:-}
suite=bookworm
packages=python3,ca-certificates,netbase,tzdata
# Required by minbase but useless in an image that runs one Python process and is never booted or
# administered in place (debian:bookworm-slim keeps them; so does this recipe: excluding packages
# from the Essential set breaks dpkg's own scripts). The list exists to document the choice.
exclude=

root=$(mktemp -d "${TMPDIR:-/tmp}/forge-slim-rootfs.XXXXXX")
cleanup() {
  for m in proc sys dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

args=(--variant=minbase --include="$packages" --components=main)
[ -n "$exclude" ] && args+=(--exclude="$exclude")
[ -n "$keyring" ] && args+=(--keyring="$keyring")
debootstrap "${args[@]}" "$suite" "$root" "$mirror" >&2

# --- slimify, as debuerreotype does for debian:*-slim ------------------------------------------------
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
# as debian:bookworm-slim: keep documentation, man pages and translations out of later installs
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{groff,info,linda,lintian,man}/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# what apt-get clean and `rm -rf /var/lib/apt/lists/*` remove in every official image
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
rm -rf "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/*.log \
       "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
rm -rf "$root"/debootstrap
# The engine provides /dev, /proc, /sys and the resolver files.
find "$root/dev" -mindepth 1 -delete
: >"$root/etc/resolv.conf"; : >"$root/etc/hostname"

tar --numeric-owner --sort=name --xattrs -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
