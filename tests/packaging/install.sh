#!/usr/bin/env bash
# Install anywhere: `cmake --install` into two prefixes (neither is the
# configure-time one), a DESTDIR root for /usr and one for /opt, and a moved
# install tree. Each bin/routerd must find its own plugins without
# plugin_dir and pass --check-config on the installed example manifests.
set -euo pipefail
build=$1 src=$2
. "$(dirname "$0")/common.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t plugins < <(cd "$build/plugins" && ls -- *.so | sed 's/\.so$//' | sort)
[[ ${#plugins[@]} -gt 0 ]] || fail "no plugins built in $build/plugins"

check() { # PREFIX_DIR ETC_DIR
    local p=$1 etc=$2 bin=$1/bin/routerd want out
    [[ -x $bin ]] || fail "$bin missing"
    want=$(realpath "$p/lib/routerd")
    out=$(cd / && "$bin" --list-plugins) || fail "$bin --list-plugins failed"
    for pl in "${plugins[@]}"; do
        grep -q "${pl#*_}" <<<"$out" || fail "$bin --list-plugins does not show $pl"
    done
    for m in dev staging production; do
        [[ -f $etc/$m.ini ]] || fail "$etc/$m.ini not installed"
    done
    [[ -f $etc/routerd.env.example ]] || fail "$etc/routerd.env.example not installed"
    out=$(cd / && "$bin" -c "$etc/staging.ini" --env-file "$etc/routerd.env.example" --check-config) ||
        fail "$bin --check-config on $etc/staging.ini failed"
    grep -q "^configuration OK" <<<"$out" || fail "no OK from --check-config: $out"
    out=$(cd / && "$bin" -c "$etc/production.ini" --env-file "$etc/routerd.env.example" --print-config)
    grep -qx "; plugin_dir in use: $want" <<<"$out" ||
        fail "$bin did not use $want: $(grep 'plugin_dir in use' <<<"$out")"
    # The pkg-config file points into the same prefix.
    local pc
    pc=$(find "$p" -name routerd-plugin.pc -printf '%h\n' | head -1)
    [[ -n $pc ]] || fail "routerd-plugin.pc not installed under $p"
    [[ $(realpath "$(PKG_CONFIG_PATH=$pc pkg-config --variable=plugindir routerd-plugin)") == "$want" ]] ||
        fail "pkg-config plugindir is not $want"
    [[ -f $(PKG_CONFIG_PATH=$pc pkg-config --variable=includedir routerd-plugin)/routerd/plugin.h ]] ||
        fail "pkg-config includedir has no routerd/plugin.h"
    # The plugin test kit and the CMake package config come along.
    [[ -f $(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir routerd-plugintest)/librouterd-plugintest.a ]] ||
        fail "pkg-config libdir of routerd-plugintest has no librouterd-plugintest.a"
    [[ -n $(find "$p" -path '*/cmake/routerd/routerd-config.cmake') ]] || fail "routerd-config.cmake not installed"
    echo "ok: $bin"
}

cmake --install "$build" --prefix "$tmp/p1" >/dev/null
check "$tmp/p1" "$tmp/p1/etc/routerd"
cmake --install "$build" --prefix "$tmp/other-place/p2" >/dev/null
check "$tmp/other-place/p2" "$tmp/other-place/p2/etc/routerd"
# A /usr install keeps its configuration in /etc/routerd.
DESTDIR=$tmp/root cmake --install "$build" --prefix /usr >/dev/null
[[ ! -e $tmp/root/usr/etc ]] || fail "a /usr install wrote usr/etc"
check "$tmp/root/usr" "$tmp/root/etc/routerd"
DESTDIR=$tmp/root2 cmake --install "$build" --prefix /opt/routerd >/dev/null
check "$tmp/root2/opt/routerd" "$tmp/root2/opt/routerd/etc/routerd"
# An install tree moved elsewhere still finds its plugins.
mv "$tmp/p1" "$tmp/moved"
check "$tmp/moved" "$tmp/moved/etc/routerd"
echo "install anywhere: ok"
