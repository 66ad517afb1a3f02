#!/usr/bin/env bash
# Builds the release artifacts from this source tree:
#   dist/routerd_<version>_<arch>.deb          Debian package
#   dist/routerd-<version>-oci.tar             OCI image layout (tar)
#   dist/routerd-<version>-oci.spdx.json       SPDX SBOM of the image
#   dist/SHA256SUMS
# and prints their SHA-256 digests. Reproducible: the same commit and
# SOURCE_DATE_EPOCH give the same bytes (see docs/packaging.md).
# Usage: scripts/package.sh [--out DIR] [--build DIR] [--no-deps]
# Environment: SOURCE_DATE_EPOCH (default: the commit's time),
# ROUTERD_BUILD_SHA (default: from git), ROUTERD_WERROR=ON|OFF (OFF),
# ROUTERD_MAINTAINER ("Name <address>" for the package's Maintainer field).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=$src/dist
build=$src/build-package
deps=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-deps) deps=0; shift ;;
    *) echo "usage: scripts/package.sh [--out DIR] [--build DIR] [--no-deps]" >&2; exit 64 ;;
    esac
done
[[ $deps == 1 ]] && "$src/scripts/deps.sh" --package
mkdir -p "$out"
out=$(cd "$out" && pwd)

export LC_ALL=C TZ=UTC
umask 022
version=$(sed -n 's/^project(routerd VERSION \([0-9][0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $version ]] || { echo "package.sh: no version in CMakeLists.txt" >&2; exit 1; }
arch=$(dpkg --print-architecture)

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null || true)
    [[ -n $SOURCE_DATE_EPOCH ]] || { echo "package.sh: set SOURCE_DATE_EPOCH (no git here)" >&2; exit 1; }
fi
if [[ -z ${ROUTERD_BUILD_SHA:-} ]]; then
    ROUTERD_BUILD_SHA=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [[ $ROUTERD_BUILD_SHA != unknown && -n $(git -C "$src" status --porcelain --untracked-files=no) ]]; then
        ROUTERD_BUILD_SHA+=-dirty
    fi
fi
export SOURCE_DATE_EPOCH ROUTERD_BUILD_SHA
revision=$ROUTERD_BUILD_SHA
maintainer=${ROUTERD_MAINTAINER:-routerd maintainers <routerd@example.org>}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# ---- build with Debian's hardening flags, install into a staging root ----
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)
rm -rf "$build"
CFLAGS=$cflags LDFLAGS=$ldflags cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX=/usr -DROUTERD_TESTS=OFF -DROUTERD_WERROR="${ROUTERD_WERROR:-OFF}" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
root=$build/deb
DESTDIR=$root cmake --install "$build" --strip >/dev/null
# Debian 12 keeps systemd units under /lib (dh_installsystemd does the same).
mkdir -p "$root/lib/systemd"
mv "$root/usr/lib/systemd/system" "$root/lib/systemd/system"
rmdir "$root/usr/lib/systemd"

# ---- Debian package --------------------------------------------------------
doc=$root/usr/share/doc/routerd
mkdir -p "$doc"
cp "$src"/docs/*.md "$doc/"
mkdir -p "$doc/examples"
cp "$src"/docs/examples/*.c "$doc/examples/"
install -m 0644 "$src/packaging/deb/copyright" "$doc/copyright"
{
    printf 'routerd (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Release %s, built from %s.\n\n' "$version" "$revision"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
find "$doc" -name '*.md' -size +4k -exec gzip -9n {} +
gzip -9n "$root"/usr/share/man/man8/routerd.8

mkdir -p "$root/DEBIAN"
for s in postinst postrm; do install -m 0755 "$src/packaging/deb/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"

# Runtime dependencies from the libraries the ELF files need.
shl=$build/shlibdeps
mkdir -p "$shl/debian"
printf 'Source: routerd\n\nPackage: routerd\nArchitecture: any\n' >"$shl/debian/control"
mapfile -t elves < <(cd "$root" && find usr -type f \( -path 'usr/bin/*' -o -name '*.so' \) | sort)
depends=$(cd "$shl" && dpkg-shlibdeps -O "${elves[@]/#/$root/}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n $depends ]] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
rm -rf "$shl"

# Installed-Size in KiB, counted per file so that it does not depend on the
# file system the build ran on.
size=$(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%s\n' | awk '{k+=int(($1+1023)/1024)} END {print k+0}')
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
    -e "s/@SIZE@/$size/" -e "s|@MAINTAINER@|$maintainer|" "$src/packaging/deb/control.in" >"$root/DEBIAN/control"

find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod go-w,u+rw {} +
deb=$out/routerd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

# ---- OCI image ------------------------------------------------------------
"$src/packaging/oci/build-image.sh" "$root" "$build/oci" "$out" "$version" "$revision" "$created"

oci=$out/routerd-$version-oci.tar
sbom=$out/routerd-$version-oci.spdx.json
(cd "$out" && sha256sum "$(basename "$deb")" "$(basename "$oci")" "$(basename "$sbom")" >SHA256SUMS)
echo "routerd $version ($revision), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
sed "s|  |  $out/|" "$out/SHA256SUMS"
