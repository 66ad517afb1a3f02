#!/usr/bin/env bash
# docs/plugin-guide.md as written: its files (marked <!-- file: NAME -->)
# built against an installed routerd, moved after installing, once with
# find_package (and the plugin test kit's test run by ctest) and once with
# pkg-config; then the installed routerd runs the guide's manifest, which
# loads the backend by name from the author's folder before the installed
# one, and answers a line on standard input.
set -euo pipefail
build=$1 src=$2
. "$(dirname "$0")/common.sh"
umask 022 # routerd refuses plugin folders others may write
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/x" >/dev/null
mv "$tmp/x" "$tmp/routerd"
prefix=$tmp/routerd
pc=$(find "$prefix" -name routerd-plugin.pc -printf '%h\n' | head -1)
[[ -n $pc ]] || fail "routerd-plugin.pc not installed"

extract() { # DIR: every marked block of the guide into DIR/NAME
    mkdir -p "$1"
    awk -v dir="$1" '
        /^<!-- file: [^ ]+ -->$/ { name = $3; next }
        name != "" && /^```/ { if (out) { close(out); out = ""; name = "" } else out = dir "/" name; next }
        out { print > out }' "$src/docs/plugin-guide.md"
    for f in hello.c hello_test.c CMakeLists.txt build.sh hello.ini run.sh; do
        [[ -s $1/$f ]] || fail "the guide has no block marked <!-- file: $f -->"
    done
}

# find_package, the kit's test through ctest.
extract "$tmp/cm"
(cd "$tmp/cm" && cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" \
    >"$tmp/cm.log" 2>&1 && cmake --build build >>"$tmp/cm.log" 2>&1 &&
    ctest --test-dir build --output-on-failure >>"$tmp/cm.log" 2>&1) || { cat "$tmp/cm.log"; fail "CMake build"; }
grep -q "100% tests passed" "$tmp/cm.log" || { cat "$tmp/cm.log"; fail "ctest"; }

# pkg-config, the guide's commands as written.
extract "$tmp/pc"
out=$(cd "$tmp/pc" && PKG_CONFIG_PATH=$pc bash -euo pipefail build.sh 2>&1) || { echo "$out"; fail "pkg-config build"; }
grep -qx "hello_test: ok" <<<"$out" || { echo "$out"; fail "the kit's test did not pass"; }

# The installed routerd, the guide's manifest and run command.
for d in cm pc; do
    out=$(cd "$tmp/$d" && PATH=$prefix/bin:$PATH PKG_CONFIG_PATH=$pc bash -euo pipefail run.sh 2>"$tmp/err") ||
        { cat "$tmp/err"; fail "run.sh ($d)"; }
    [[ $out == "Hi, there" ]] || { cat "$tmp/err"; fail "reply '$out' ($d)"; }
done
# It was the author's folder that had it, and routerd checks its schema.
cd "$tmp/cm"
export ROUTERD_PLUGIN_DIR=$(PKG_CONFIG_PATH=$pc pkg-config --variable=plugindir routerd-plugin)
[[ $(realpath "$ROUTERD_PLUGIN_DIR") == $(realpath "$prefix")/lib/routerd ]] || fail "plugindir $ROUTERD_PLUGIN_DIR"
out=$("$prefix/bin/routerd" --list-plugins --plugin-dir "build,$ROUTERD_PLUGIN_DIR")
grep -q "^backend hello 1.0.0: greets" <<<"$out" || fail "--list-plugins: $out"
grep -q "(build/backend_hello.so)" <<<"$out" || fail "--list-plugins does not show build/: $out"
sed 's/^greeting = Hi$/gretting = Hi/' hello.ini >bad.ini
if "$prefix/bin/routerd" -c bad.ini --check-config 2>"$tmp/err"; then fail "a misspelt key was accepted"; fi
grep -q "did you mean 'greeting'" "$tmp/err" || { cat "$tmp/err"; fail "no did-you-mean"; }
echo "plugin guide: ok"
