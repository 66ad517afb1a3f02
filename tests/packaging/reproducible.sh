#!/usr/bin/env bash
# Reproducibility: a copy of the source tree at another path, built in
# another build directory with the same SOURCE_DATE_EPOCH and build SHA,
# gives byte-identical binaries, plugins, .deb, OCI image and SBOM.
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
kit_identity "$src" "$work"
[[ -d $work/a/dist ]] || fail "$work/a/dist missing (kit_package fixture)"
b=$work/b
rm -rf "$b"
kit_copy_tree "$src" "$b/another/path/to/routerd-src"
# A different umask and locale must not matter either.
(umask 077 && LANG=C.UTF-8 "$b/another/path/to/routerd-src/scripts/package.sh" --no-deps \
    --build "$b/elsewhere-build" --out "$b/dist") >/dev/null

bad=0
for f in "$work"/a/build/routerd "$work"/a/build/plugins/*.so; do
    rel=${f#"$work"/a/build/}
    cmp -s "$f" "$b/elsewhere-build/$rel" || { echo "differs: $rel (unstripped build output)"; bad=1; }
done
for f in "$work"/a/dist/*; do
    n=$(basename "$f")
    if cmp -s "$f" "$b/dist/$n"; then
        echo "identical: $n $(sha256sum "$f" | cut -d' ' -f1)"
    else
        echo "differs: $n"
        bad=1
    fi
done
if [[ $bad != 0 ]]; then
    # Name the members that differ, to help whoever fixes it.
    for r in a b; do
        d=$(ls "$work/$r"/dist/*.deb)
        mkdir -p "$work/$r/x"
        dpkg-deb -x "$d" "$work/$r/x/deb"
        dpkg-deb -e "$d" "$work/$r/x/deb/DEBIAN"
    done
    diff -r "$work/a/x/deb" "$work/b/x/deb" || true
    fail "two builds of the same source differ"
fi
echo "reproducible: ok"
