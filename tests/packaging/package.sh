#!/usr/bin/env bash
# Fixture for the packaging tests: scripts/package.sh run on the source
# tree, into WORK/a (build directory and dist/).
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
rm -rf "$work/a"
kit_identity "$src"
mkdir -p "$work/a"
# The later tests build and check against this identity, even if the tree
# changes meanwhile.
printf 'SOURCE_DATE_EPOCH=%s\nROUTERD_BUILD_SHA=%s\n' "$SOURCE_DATE_EPOCH" "$ROUTERD_BUILD_SHA" >"$work/a/identity"
"$src/scripts/package.sh" --no-deps --build "$work/a/build" --out "$work/a/dist" | tee "$work/a/package.out"
v=$(kit_version "$src")
for f in "routerd_${v}_$(dpkg --print-architecture).deb" "routerd-$v-oci.tar" "routerd-$v-oci.spdx.json"; do
    [[ -s $work/a/dist/$f ]] || fail "package.sh did not write dist/$f"
    d=$(sha256sum "$work/a/dist/$f" | cut -d' ' -f1)
    grep -q "^$d  .*/$f\$" "$work/a/package.out" || fail "package.sh did not print the digest of $f"
done
echo "package.sh: ok"
