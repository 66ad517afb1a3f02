#!/usr/bin/env bash
# Installs routerd into a temporary prefix, builds the plugin-guide example
# out of tree with pkg-config, and routes a message through it.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name routerd-plugin.pc -printf '%h')
cflags="$(PKG_CONFIG_PATH=$pc pkg-config --cflags routerd-plugin) $(PKG_CONFIG_PATH=$pc pkg-config --variable=plugin_cflags routerd-plugin)"
plugindir=$(PKG_CONFIG_PATH=$pc pkg-config --variable=plugindir routerd-plugin)
cc -std=c11 -Wall -Wextra -Werror -shared $cflags -o "$tmp/backend_hello.so" \
    "$src/docs/examples/backend_hello.c" -Wl,--no-undefined
cat >"$tmp/hello.ini" <<INI
[router]
admin_listen = off
state_dir = $tmp/state
plugin_dir = $plugindir
[transport.console]
plugin = console
[backend.greeter]
plugin = $tmp/backend_hello.so
greeting = Hi
[persona.p]
backend = greeter
chats = *
INI
out=$(echo "there" | "$tmp/prefix/bin/routerd" -c "$tmp/hello.ini" 2>"$tmp/err") || {
    cat "$tmp/err"; exit 1; }
[[ "$out" == "Hi, there" ]] || { echo "unexpected reply: '$out'"; cat "$tmp/err"; exit 1; }
# The schema is enforced for out-of-tree plugins too.
sed -i 's/^greeting = Hi$/greeting = Hi\ngretting = x/' "$tmp/hello.ini"
if "$tmp/prefix/bin/routerd" -c "$tmp/hello.ini" --check-config 2>"$tmp/err"; then
    echo "a misspelt key was accepted"; exit 1
fi
grep -q "did you mean 'greeting'" "$tmp/err" || { cat "$tmp/err"; exit 1; }
echo "out-of-tree plugin: ok"
