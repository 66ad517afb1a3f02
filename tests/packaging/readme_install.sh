#!/usr/bin/env bash
# The README's "Building and installing" recipe, run as written in a copy
# of the source tree, with DESTDIR set in the environment so that it lands
# in a scratch root instead of /usr; the result must run and find its
# plugins and example manifests.
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
t=$work/readme
rm -rf "$t"
kit_copy_tree "$src" "$t/src"
awk '/^## Building and installing/ {s=1} s && /^```sh$/ {c=1; next} c && /^```$/ {exit} c' "$src/README.md" >"$t/recipe.sh"
grep -q 'cmake --install' "$t/recipe.sh" || fail "no install recipe found in README.md"
cat "$t/recipe.sh"
(cd "$t/src" && DESTDIR=$t/root bash -euo pipefail "$t/recipe.sh") >"$t/log" 2>&1 || {
    tail -30 "$t/log"
    fail "the README's recipe failed"
}
prefix=$(sed -n 's/.*cmake --install .* --prefix \([^ ]*\).*/\1/p' "$t/recipe.sh")
bin=$t/root$prefix/bin/routerd
etc=$t/root/etc/routerd
[[ $prefix == /usr ]] || etc=$t/root$prefix/etc/routerd
out=$(cd / && "$bin" -c "$etc/staging.ini" --env-file "$etc/routerd.env.example" --check-config) ||
    fail "the installed routerd failed --check-config"
grep -q "^configuration OK" <<<"$out" || fail "$out"
[[ -f $t/root$prefix/include/routerd/plugin.h ]] || fail "header not installed"
rm -rf "$t"
echo "README recipe: ok"
